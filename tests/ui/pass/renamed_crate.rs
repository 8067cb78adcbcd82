//! `crate = path` points the expansion at a renamed fleche.
#![deny(warnings)]

use fleche as memo;

#[memo::memoize(crate = memo)]
fn twice(x: u64) -> u64 {
    x * 2
}

#[derive(memo::Key)]
#[key(crate = memo)]
struct Spec {
    n: u64,
}

#[memo::memoize(crate = memo)]
fn size(spec: &Spec) -> u64 {
    spec.n
}

fn main() {
    let c = memo::Cache::memory();
    memo::with_cache(&c, || {
        assert_eq!(twice(2), 4);
        assert_eq!(size(&Spec { n: 3 }), 3);
        assert!(twice::contains(2));
    });
}
