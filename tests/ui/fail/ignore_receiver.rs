#[derive(fleche::Key)]
struct Model;

impl Model {
    #[fleche::memoize]
    fn score(#[ignore] &self, x: u64) -> u64 {
        x
    }
}

fn main() {}
