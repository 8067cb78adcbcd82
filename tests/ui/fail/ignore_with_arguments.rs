#[fleche::memoize]
fn fit(x: u64, #[ignore(reason)] verbose: bool) -> u64 {
    let _ = verbose;
    x
}

fn main() {}
