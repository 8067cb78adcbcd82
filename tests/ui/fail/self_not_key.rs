struct Model;

impl Model {
    #[fleche::memoize]
    fn score(&self, x: u64) -> u64 {
        x
    }
}

fn main() {}
