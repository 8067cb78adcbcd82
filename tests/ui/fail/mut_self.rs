#[derive(fleche::Key)]
struct Counter {
    n: u64,
}

impl Counter {
    #[fleche::memoize]
    fn bump(&mut self) -> u64 {
        self.n += 1;
        self.n
    }
}

fn main() {}
