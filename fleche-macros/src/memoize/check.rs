//! Checks the function and builds the model the expansion works from.

use proc_macro2::{Ident, TokenStream, TokenTree};
use quote::{ToTokens, format_ident};
use syn::{FnArg, GenericArgument, GenericParam, ItemFn, Pat, PathArguments, ReturnType, Type};

use super::attr::Options;
use crate::ctxt::Ctxt;

/// A hashed or ignored parameter.
pub(crate) struct Param {
    /// The name the parameter has in the expanded signature.
    pub(crate) binding: Ident,
    /// A pattern the body destructures the parameter with (`(a, b)`, `_`), when it is not a
    /// plain identifier.
    pub(crate) pattern: Option<Pat>,
    /// The name recorded in call records.
    pub(crate) record_name: String,
    pub(crate) ty: Type,
    pub(crate) ignored: bool,
    /// The type is `impl Trait`: its concrete type is part of the function identity.
    pub(crate) impl_trait: bool,
}

/// What the function returns and what is stored.
pub(crate) struct Ret {
    /// The declared return type (`()` when there is none).
    pub(crate) full: Type,
    /// For `Result<T, E>`, `T`: only the value of an `Ok` is stored. `None`: the whole return
    /// value is stored.
    pub(crate) ok: Option<Type>,
}

impl Ret {
    pub(crate) fn stored(&self) -> &Type {
        self.ok.as_ref().unwrap_or(&self.full)
    }
}

pub(crate) struct Model {
    /// Inside an `impl` (a receiver, or `Self` in the signature): no companion module.
    pub(crate) in_impl: bool,
    pub(crate) has_receiver: bool,
    /// The `self` token, where a receiver that is not a key is reported.
    pub(crate) receiver_span: proc_macro2::Span,
    pub(crate) params: Vec<Param>,
    pub(crate) ret: Ret,
    pub(crate) is_async: bool,
    pub(crate) type_params: Vec<Ident>,
    pub(crate) const_params: Vec<Ident>,
}

pub(crate) fn check(cx: &mut Ctxt, _options: &Options, func: &ItemFn) -> Model {
    let sig = &func.sig;
    if let Some(c) = &sig.constness {
        cx.error(
            c,
            "a `const fn` cannot be memoized: remove `const` (the cache is looked up at run time)",
        );
    }
    if let Some(v) = &sig.variadic {
        cx.error(v, "variadic functions cannot be memoized");
    }
    let mut has_receiver = false;
    let mut receiver_span = proc_macro2::Span::call_site();
    let mut params = Vec::new();
    for (index, arg) in sig.inputs.iter().enumerate() {
        match arg {
            FnArg::Receiver(r) => {
                has_receiver = true;
                receiver_span = r.self_token.span;
                for a in &r.attrs {
                    if a.path().is_ident("ignore") {
                        cx.error(
                            a,
                            "the receiver cannot be `#[ignore]`d: `self` is part of every key",
                        );
                    }
                }
                if let syn::ReceiverKind::Reference(_, _, Some(m)) = &r.kind {
                    cx.error(
                        m,
                        "`&mut self` methods cannot be memoized: the body could change `self` after it \
                         was hashed; take `&self`",
                    );
                }
            }
            FnArg::Typed(pt) => {
                let ignored = ignore_attr(cx, &pt.attrs);
                if !ignored
                    && let Type::Reference(r) = &*pt.ty
                    && let Some(m) = &r.mutability
                {
                    cx.error(
                        m,
                        "`&mut` arguments cannot be memoized: the body could change the input \
                         after it was hashed; take `&T`, or mark the parameter `#[ignore]` if it \
                         does not affect the result",
                    );
                }
                let (binding, pattern, record_name) = match &*pt.pat {
                    Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                        (pi.ident.clone(), None, pi.ident.to_string())
                    }
                    other => (
                        format_ident!("__fleche_arg{}", index),
                        Some(other.clone()),
                        pattern_name(other, index),
                    ),
                };
                params.push(Param {
                    binding,
                    pattern,
                    record_name,
                    ty: (*pt.ty).clone(),
                    ignored,
                    impl_trait: contains_impl_trait(&pt.ty),
                });
            }
        }
    }
    let ret = match &sig.output {
        ReturnType::Default => Ret {
            full: syn::parse_quote!(()),
            ok: None,
        },
        ReturnType::Type(_, ty) => {
            if contains_impl_trait(ty) {
                cx.error(
                    ty,
                    "a memoized function cannot return `impl Trait`: name the concrete type so it \
                     can be stored and loaded",
                );
            }
            Ret {
                full: (**ty).clone(),
                ok: result_ok_type(ty),
            }
        }
    };
    let mut type_params = Vec::new();
    let mut const_params = Vec::new();
    for p in &sig.generics.params {
        match p {
            GenericParam::Type(t) => type_params.push(t.ident.clone()),
            GenericParam::Const(c) => const_params.push(c.ident.clone()),
            GenericParam::Lifetime(_) => {}
        }
    }
    let in_impl = has_receiver || mentions_self(sig.to_token_stream());
    Model {
        in_impl,
        has_receiver,
        receiver_span,
        params,
        ret,
        is_async: sig.asyncness.is_some(),
        type_params,
        const_params,
    }
}

/// Whether `#[ignore]` is among the attributes; reports misuse.
fn ignore_attr(cx: &mut Ctxt, attrs: &[syn::Attribute]) -> bool {
    let mut found = false;
    for a in attrs {
        if !a.path().is_ident("ignore") {
            continue;
        }
        if found {
            cx.error(a, "duplicate `#[ignore]`: give it once");
        } else if !matches!(a.meta, syn::Meta::Path(_)) {
            cx.error(a, "`#[ignore]` takes no arguments: write `#[ignore]`");
        }
        found = true;
    }
    found
}

/// Removes `#[ignore]` from the parameters, which rustc would reject there.
pub(crate) fn strip_ignore(mut func: ItemFn) -> TokenStream {
    for arg in &mut func.sig.inputs {
        match arg {
            FnArg::Typed(pt) => pt.attrs.retain(|a| !a.path().is_ident("ignore")),
            FnArg::Receiver(r) => r.attrs.retain(|a| !a.path().is_ident("ignore")),
        }
    }
    func.into_token_stream()
}

fn pattern_name(pat: &Pat, index: usize) -> String {
    match pat {
        Pat::Wild(_) => format!("_{index}"),
        other => {
            let mut s = String::new();
            for tt in other.to_token_stream() {
                s.push_str(&tt.to_string());
            }
            s
        }
    }
}

/// `T` when `ty` is a path ending in `Result<T, ..>` (`Result`, `io::Result`, `anyhow::Result`).
fn result_ok_type(ty: &Type) -> Option<Type> {
    let Type::Path(tp) = ty else { return None };
    if tp.qself.is_some() {
        return None;
    }
    let last = tp.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    args.args.iter().find_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    })
}

fn contains_impl_trait(ty: &Type) -> bool {
    nested_impl(ty.to_token_stream())
}

fn nested_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => i == "impl",
        TokenTree::Group(g) => nested_impl(g.stream()),
        _ => false,
    })
}

fn mentions_self(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => i == "Self" || i == "self",
        TokenTree::Group(g) => mentions_self(g.stream()),
        _ => false,
    })
}
