#[fleche::memoize]
struct Spec;

fn main() {}
