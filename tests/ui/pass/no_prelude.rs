//! The expansion names everything by absolute path: it works without the prelude.
#![deny(warnings)]
#![no_implicit_prelude]

extern crate fleche;
extern crate std;

#[fleche::memoize]
fn add(a: u32, b: u32) -> u32 {
    a + b
}

#[derive(fleche::Key)]
struct Pair(u8, u8);

#[fleche::memoize]
fn first(p: &Pair) -> ::std::option::Option<u8> {
    ::std::option::Option::Some(p.0)
}

fn main() {
    let cache = fleche::Cache::memory();
    fleche::with_cache(&cache, || {
        ::std::assert_eq!(add(1, 2), 3);
        ::std::assert!(add::contains(1, 2));
        ::std::assert_eq!(first(&Pair(4, 5)), ::std::option::Option::Some(4));
    });
}
