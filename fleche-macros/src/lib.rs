//! Procedural macros for fleche. Use them through the `fleche` crate.
use proc_macro::TokenStream;

/// See `fleche::memoize`.
#[proc_macro_attribute]
pub fn memoize(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}

/// See `fleche::Key`.
#[proc_macro_derive(Key, attributes(key))]
pub fn derive_key(_item: TokenStream) -> TokenStream {
    TokenStream::new()
}
