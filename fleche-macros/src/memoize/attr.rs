//! The options of `#[memoize(..)]`. Every option is checked, and every problem reported.

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitStr, Meta, Path, Token};

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
    /// `meta(Git, Environment, my::Stamp)`: metadata recorded for this function besides the
    /// configured ones.
    pub(crate) meta: Vec<MetaKind>,
}

/// One entry of `meta(..)`.
pub(crate) enum MetaKind {
    /// A metadata kind fleche records itself, by its name (`Git`, `Environment`, ...).
    Builtin(syn::Ident),
    /// A value of a type implementing `fleche::Metadata` (a unit struct or a constant).
    Custom(Path),
}

/// The metadata kinds fleche records itself.
pub(crate) const BUILTIN_META: [&str; 5] = ["Runtime", "Environment", "Git", "Tags", "Lineage"];

const OPTIONS: &str = "`name = \"..\"`, `version = ..`, `hash_code`, `meta(..)`, `crate = path`";

pub(crate) fn parse(cx: &mut Ctxt, attr: TokenStream) -> Options {
    let mut options = Options {
        name: None,
        version: None,
        hash_code: false,
        meta: Vec::new(),
        krate: syn::parse_quote_spanned!(Span::call_site()=> ::fleche),
    };
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(attr) {
        Ok(metas) => metas,
        Err(e) => {
            cx.push(e);
            return options;
        }
    };
    let mut seen: Vec<String> = Vec::new();
    for meta in metas {
        let key = meta
            .path()
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        if !key.is_empty() && seen.contains(&key) {
            cx.error(
                meta.path(),
                format_args!("duplicate option `{key}`: give it once"),
            );
            continue;
        }
        seen.push(key.clone());
        match key.as_str() {
            "name" => match string_value(&meta) {
                Some(lit) if lit.value().trim().is_empty() => {
                    cx.error(&lit, "`name` must not be empty");
                }
                Some(lit) => options.name = Some(lit),
                None => cx.error(&meta, "`name` takes a string: `name = \"sweep.fit\"`"),
            },
            "version" => match value(&meta) {
                Some(Expr::Lit(ExprLit {
                    lit: Lit::Int(n), ..
                })) => match n.base10_parse::<u64>() {
                    Ok(v) => options.version = Some(v.to_string()),
                    Err(_) => cx.error(n, "`version` must be a non-negative integer or a string"),
                },
                Some(Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                })) => options.version = Some(s.value()),
                Some(other) => cx.error(
                    other,
                    "`version` takes an integer or a string: `version = 2` or `version = \"2b\"`",
                ),
                None => cx.error(&meta, "`version` takes a value: `version = 2`"),
            },
            "hash_code" => {
                if matches!(meta, Meta::Path(_)) {
                    options.hash_code = true;
                } else {
                    cx.error(&meta, "`hash_code` takes no value: write `hash_code`");
                }
            }
            "meta" => match &meta {
                Meta::List(list) => {
                    match list.parse_args_with(Punctuated::<Path, Token![,]>::parse_terminated) {
                        Ok(paths) if paths.is_empty() => cx.error(
                            list,
                            "`meta` lists metadata kinds: `meta(Git, Environment)`",
                        ),
                        Ok(paths) => {
                            for path in paths {
                                let builtin = path
                                    .get_ident()
                                    .filter(|i| BUILTIN_META.contains(&i.to_string().as_str()));
                                options.meta.push(match builtin {
                                    Some(i) => MetaKind::Builtin(i.clone()),
                                    None => MetaKind::Custom(path),
                                });
                            }
                        }
                        Err(e) => cx.push(syn::Error::new(
                            e.span(),
                            format_args!(
                                "`meta` lists metadata kinds ({} or a path to a value implementing `fleche::Metadata`): {e}",
                                BUILTIN_META.join(", ")
                            ),
                        )),
                    }
                }
                _ => cx.error(&meta, "`meta` takes a list: `meta(Git, Environment)`"),
            },
            "crate" => match value(&meta) {
                Some(Expr::Path(p)) if p.qself.is_none() => options.krate = p.path.clone(),
                _ => cx.error(&meta, "`crate` takes a path: `crate = my_reexport::fleche`"),
            },
            _ => {
                let shown = quote::ToTokens::to_token_stream(meta.path()).to_string();
                cx.error(
                    meta.path(),
                    format_args!("unknown option `{shown}`: #[memoize] takes {OPTIONS}"),
                );
            }
        }
    }
    options
}

fn value(meta: &Meta) -> Option<&Expr> {
    match meta {
        Meta::NameValue(nv) => Some(&nv.value),
        _ => None,
    }
}

fn string_value(meta: &Meta) -> Option<LitStr> {
    match value(meta)? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s.clone()),
        _ => None,
    }
}
