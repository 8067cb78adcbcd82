//! The options of `#[memoize(..)]`.

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::{LitInt, LitStr, Path};

use crate::ctxt::Ctxt;

/// What the user asked for.
pub(crate) struct Options {
    /// `name = ".."`: the function's stable name.
    pub(crate) name: Option<LitStr>,
    /// `version = N` or `version = ".."`, as a string.
    pub(crate) version: Option<String>,
    /// `hash_code`: the function's normalized source is part of its identity.
    pub(crate) hash_code: bool,
    /// `crate = path`: where the runtime lives.
    pub(crate) krate: Path,
}

const OPTIONS: &str = "`name = \"..\"`, `version = ..`, `hash_code`, `crate = path`";

pub(crate) fn parse(cx: &mut Ctxt, attr: TokenStream) -> Options {
    let mut name: Option<LitStr> = None;
    let mut version: Option<String> = None;
    let mut hash_code = false;
    let mut krate: Option<Path> = None;
    let mut seen: Vec<String> = Vec::new();

    let parser = syn::meta::parser(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        if seen.contains(&key) {
            return Err(meta.error(format_args!("duplicate option `{key}`: give it once")));
        }
        match key.as_str() {
            "name" => {
                let lit: LitStr = meta.value()?.parse().map_err(|e| {
                    syn::Error::new(e.span(), "`name` takes a string: `name = \"crate::fit\"`")
                })?;
                if lit.value().trim().is_empty() {
                    return Err(syn::Error::new(lit.span(), "`name` must not be empty"));
                }
                name = Some(lit);
            }
            "version" => {
                let input = meta.value()?;
                if input.peek(LitInt) {
                    let lit: LitInt = input.parse()?;
                    let n: u64 = lit.base10_parse().map_err(|_| {
                        syn::Error::new(
                            lit.span(),
                            "`version` must be a non-negative integer or a string",
                        )
                    })?;
                    version = Some(n.to_string());
                } else if input.peek(LitStr) {
                    let lit: LitStr = input.parse()?;
                    version = Some(lit.value());
                } else {
                    return Err(input.error(
                        "`version` takes an integer or a string: `version = 2` or `version = \"2b\"`",
                    ));
                }
            }
            "hash_code" => {
                if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
                    return Err(meta.error("`hash_code` takes no value: write `hash_code`"));
                }
                hash_code = true;
            }
            "crate" => {
                let path: Path = meta.value()?.parse()?;
                krate = Some(path);
            }
            _ => {
                let shown = if key.is_empty() {
                    quote::ToTokens::to_token_stream(&meta.path).to_string()
                } else {
                    key.clone()
                };
                return Err(meta.error(format_args!(
                    "unknown option `{shown}`: #[memoize] takes {OPTIONS}"
                )));
            }
        }
        seen.push(key);
        Ok(())
    });
    if let Err(e) = parser.parse2(attr) {
        cx.push(e);
    }
    Options {
        name,
        version,
        hash_code,
        krate: krate.unwrap_or_else(|| syn::parse_quote_spanned!(Span::call_site()=> ::fleche)),
    }
}
