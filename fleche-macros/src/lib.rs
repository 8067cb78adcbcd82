//! Procedural macros for [fleche](https://docs.rs/fleche): `#[memoize]` and `#[derive(Key)]`.
//!
//! Use them through the `fleche` crate, which re-exports both and documents them. The expansion
//! refers to the runtime only through `::fleche::__private` (or the path given with `crate = ..`),
//! so it works whatever the calling module imports or shadows.
//!
//! Both macros follow the same pipeline: parse the input, check it (collecting every problem as a
//! spanned error), then expand. When the check fails, the original item is emitted unchanged next
//! to the errors, so a bad attribute does not cascade into errors elsewhere.

mod ctxt;
mod derive_key;
mod memoize;
mod normalize;

use proc_macro::TokenStream;

/// Memoizes a function.
#[proc_macro_attribute]
pub fn memoize(attr: TokenStream, item: TokenStream) -> TokenStream {
    memoize::memoize(attr.into(), item.into()).into()
}

/// Derives `fleche::Key` for a struct or enum.
#[proc_macro_derive(Key, attributes(key))]
pub fn derive_key(item: TokenStream) -> TokenStream {
    derive_key::derive(item.into()).into()
}
