struct Stamp;

#[fleche::memoize(meta(Git, Stamp))]
fn f(x: u64) -> u64 {
    x
}

fn main() {}
