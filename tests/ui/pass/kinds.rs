//! Every kind of function K12 lists compiles without warnings.
#![deny(warnings)]

use std::fmt::Debug;

#[derive(fleche::Key, serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
struct Grid<T> {
    cells: Vec<T>,
}

impl<T: fleche::Key + Clone + serde::Serialize + serde::de::DeserializeOwned> Grid<T> {
    #[fleche::memoize]
    fn doubled(&self) -> Vec<T> {
        let mut v = self.cells.clone();
        v.extend(self.cells.iter().cloned());
        v
    }
}

#[fleche::memoize]
fn generic<T, const N: usize>(x: T) -> usize
where
    T: fleche::Key + Debug,
{
    format!("{x:?}").len() + N
}

#[fleche::memoize]
async fn later(x: u64) -> u64 {
    x
}

#[fleche::memoize]
fn shapes((a, b): (u8, u8), _: bool, x: impl fleche::Key + Into<u64>) -> u64 {
    u64::from(a) + u64::from(b) + x.into()
}

#[fleche::memoize]
fn borrow<'a>(xs: &'a [u64]) -> u64 {
    xs.iter().sum()
}

#[fleche::memoize]
fn nothing() {}

fn main() {
    fleche::with_cache(&fleche::Cache::memory(), || {
        assert_eq!(Grid { cells: vec![1u8] }.doubled(), vec![1, 1]);
        assert_eq!(generic::<_, 2>(5u8), 3);
        assert_eq!(pollster::block_on(later(3)), 3);
        assert_eq!(shapes((1, 2), true, 3u8), 6);
        assert_eq!(borrow(&[1, 2]), 3);
        nothing();
        assert!(nothing::contains());
    });
}
