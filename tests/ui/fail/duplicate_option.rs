#[fleche::memoize(version = 1, version = 2)]
fn fit(x: u64) -> u64 {
    x
}

fn main() {}
