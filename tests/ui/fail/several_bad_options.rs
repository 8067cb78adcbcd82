// Every bad option is reported, each at its own token.
#[fleche::memoize(nmae = "fit", version = true, hash_code = 1, name = "")]
fn fit(x: u64) -> u64 {
    x
}

fn main() {}
