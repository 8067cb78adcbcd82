#[fleche::memoize(nmae = "fit")]
fn fit(x: u64) -> u64 {
    x
}

fn main() {}
