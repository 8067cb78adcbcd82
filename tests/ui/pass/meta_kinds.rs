//! `meta(..)` with built-in kinds and a custom one at a path.

mod kinds {
    pub struct Stamp;

    impl fleche::Metadata for Stamp {
        fn name(&self) -> &'static str {
            "stamp"
        }
        fn collect(&self) -> Option<fleche::Value> {
            Some(fleche::Value::Int(1))
        }
    }
}

#[fleche::memoize(meta(Runtime, Environment, Git, Tags, Lineage, kinds::Stamp))]
fn f(x: u64) -> u64 {
    x
}

fn main() {
    assert_eq!(f(1), 1);
}
