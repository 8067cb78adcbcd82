#[fleche::memoize(meta())]
fn f(x: u64) -> u64 {
    x
}

#[fleche::memoize(meta = "Git")]
fn g(x: u64) -> u64 {
    x
}

fn main() {}
