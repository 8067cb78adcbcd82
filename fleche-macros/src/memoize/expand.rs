//! The expansion of `#[memoize]`.
//!
//! A free function `f` becomes:
//!
//! - `f` itself, same signature and attributes, whose body digests the arguments, looks the call
//!   up, and on a miss seals the arguments, runs the original body (as a closure, or an `async`
//!   block, so `return` and `?` keep their meaning) and stores the result;
//! - a companion module `f` holding the function's static description and the helpers `digest`,
//!   `contains`, `load`, `evict`, `uncached`, `rerun` and `query`.
//!
//! A method (or an associated function that names `Self`) gets, instead of the module, one
//! associated function `<name>_call` returning a `CallRef` for the same arguments.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, PatIdent, Type};

use super::attr::{MetaKind, Options};
use super::check::{Model, Param};
use crate::normalize::normalize;

pub(crate) fn expand(options: &Options, m: &Model, func: ItemFn) -> TokenStream {
    let krate = &options.krate;
    let pv = quote!(#krate::__private);
    let code = options.hash_code.then(|| {
        let sig = &func.sig;
        let block = &func.block;
        normalize(quote!(#sig #block))
    });

    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
        ..
    } = func;
    let (outer, inner): (Vec<_>, Vec<_>) = attrs
        .into_iter()
        .partition(|a| matches!(a.style, syn::AttrStyle::Outer));
    rewrite_inputs(&mut sig, m);
    let fn_name = sig.ident.clone();
    let fn_name_str = fn_name.to_string();

    // The description of the function, shared by the function and its helpers.
    let name_expr = match &options.name {
        Some(lit) => lit.to_token_stream(),
        // In the companion module, `module_path!()` is the parent's path plus `::f`.
        None if !m.in_impl => quote!(::core::module_path!()),
        None => quote!(::core::concat!(::core::module_path!(), "::", #fn_name_str)),
    };
    let version = match &options.version {
        Some(v) => quote!(#pv::Some(#v)),
        None => quote!(#pv::None),
    };
    let code = match &code {
        Some(c) => quote!(#pv::Some(#c)),
        None => quote!(#pv::None),
    };
    let hashed: Vec<_> = m.params.iter().filter(|p| !p.ignored).collect();
    let mut param_names: Vec<String> = Vec::new();
    if m.has_receiver {
        param_names.push("self".to_owned());
    }
    param_names.extend(hashed.iter().map(|p| p.record_name.clone()));
    param_names.extend(m.const_params.iter().map(ToString::to_string));
    // In the companion module, the function (in the parent) must reach it.
    let info_vis = (!m.in_impl).then(|| quote!(pub(super)));
    let builtin_meta = options.meta.iter().filter_map(|k| match k {
        MetaKind::Builtin(i) => Some(quote!(#pv::MetaKind::#i)),
        MetaKind::Custom(_) => None,
    });
    let custom_meta = options.meta.iter().filter_map(|k| match k {
        // Spanned at the path, so a type that is not `Metadata` is reported there.
        MetaKind::Custom(p) => Some(quote_spanned!(p.span()=> #pv::metadata_kind(&#p))),
        MetaKind::Builtin(_) => None,
    });
    let info_static = quote! {
        #[doc(hidden)]
        #info_vis static __FLECHE_INFO: #pv::FnInfo =
            #pv::FnInfo::new(#name_expr, #version, #code, &[#(#param_names),*])
                .with_meta(&[#(#builtin_meta),*], &[#(#custom_meta),*])
                .with_package(
                    ::core::option_env!("CARGO_PKG_NAME"),
                    ::core::option_env!("CARGO_PKG_VERSION"),
                );
    };

    let own_binding = |_: usize, p: &Param| p.binding.clone();
    let type_args = type_args(m, &pv, own_binding);

    // Each hashed argument as `&dyn Key`: a non-`Key` type is reported once, at its type.
    let refs = ArgRefs::new(m, &pv, own_binding);
    let arg_refs = &refs.lets;
    let key_stmts = refs.key_stmts(&pv);
    let value_entries = refs.value_entries(&pv);

    let stored = m.ret.stored();
    let full = &m.ret.full;
    let codec = codec_expr(pv.clone(), stored, plainly_static(stored, m));
    let codec = quote!(let __fleche_codec = #codec;);

    let hit = match &m.ret.ok {
        None => quote!(__fleche_hit),
        Some(_) => quote!(#pv::Ok(__fleche_hit)),
    };
    let finish = match &m.ret.ok {
        None => quote!(__fleche_sealed.finish(&__fleche_codec, __fleche_result)),
        Some(_) => quote! {
            match __fleche_result {
                #pv::Ok(__fleche_ok) => #pv::Ok(__fleche_sealed.finish(&__fleche_codec, __fleche_ok)),
                #pv::Err(__fleche_err) => #pv::Err(__fleche_err),
            }
        },
    };
    let destructure = m.params.iter().filter_map(|p| {
        let pat = p.pattern.as_ref()?;
        let b = &p.binding;
        Some(quote!(let #pat = #b;))
    });
    // The body's statements are spliced after the destructuring of pattern parameters, in one
    // block, so a single-expression body is not wrapped in redundant braces.
    let stmts = &block.stmts;
    let run_body = if m.is_async {
        quote! {
            let __fleche_result: #full =
                #pv::async_output::<#full, _>(async move { #(#destructure)* #(#stmts)* }).await;
        }
    } else {
        quote! {
            let __fleche_result: #full =
                __fleche_sealed.run(move || -> #full { #(#destructure)* #(#stmts)* });
        }
    };
    let new_call = if m.is_async {
        quote!(#pv::Call::new_async)
    } else {
        quote!(#pv::Call::new)
    };
    let info_path = if m.in_impl {
        quote!(__FLECHE_INFO)
    } else {
        quote!(#fn_name::__FLECHE_INFO)
    };
    let local_info = m.in_impl.then(|| info_static.clone());

    let body = quote! {{
        #(#inner)*
        #local_info
        #codec
        #(#arg_refs)*
        let __fleche_pending = match #new_call(&#info_path, #type_args, #key_stmts)
            .lookup(&__fleche_codec)
        {
            #pv::Lookup::Hit(__fleche_hit) => return #hit,
            #pv::Lookup::Miss(__fleche_pending) => __fleche_pending,
        };
        let __fleche_sealed = __fleche_pending.seal(|| #pv::args([#(#value_entries),*]));
        #run_body
        #finish
    }};

    let function = quote! {
        #(#outer)*
        #vis #sig #body
    };

    let helpers = if m.in_impl {
        method_helper(m, &pv, &sig, &vis, &info_static, stored)
    } else {
        companion_module(m, &pv, &sig, &vis, &info_static, stored, full)
    };
    quote! {
        #function
        #helpers
    }
}

/// The result type's codec, spanned at the type: a type that is not storable is reported there,
/// once (identical diagnostics from the function and its helpers are merged by rustc).
///
/// The probe tries, in order: the bulk codec of a `Vec` of numbers, the typed codec (which lets
/// memory caches keep the value itself) when the type is `Clone + Send + Sync + 'static`, and
/// the plain serde codec. The typed level is offered only for types that visibly have no
/// lifetime and no generic parameter (`typed`): for the others, `'static` cannot be decided by
/// the probe, and asking would be an error instead of a fallback.
fn codec_expr(pv: TokenStream, stored: &Type, typed: bool) -> TokenStream {
    quote_spanned! {stored.span()=> {
        #[allow(unused_imports)]
        use #pv::{NotStorable as _, ViaBulk as _, ViaSerde as _, ViaTyped as _};
        (&&&#pv::Probe::<#stored, #typed>::new()).codec()
    }}
}

/// Whether `ty` is certainly free of lifetimes, references, `impl Trait`, `Self`, inferred parts
/// and the function's type parameters (conservatively: by its tokens). Inside an `impl`, any
/// name may be a parameter of the `impl`, which the macro cannot see: never.
fn plainly_static(ty: &Type, m: &Model) -> bool {
    fn walk(tokens: TokenStream, params: &[Ident]) -> bool {
        tokens.into_iter().all(|t| match t {
            proc_macro2::TokenTree::Group(g) => walk(g.stream(), params),
            proc_macro2::TokenTree::Ident(i) => {
                !(i == "Self" || i == "impl" || i == "dyn" || i == "_" || params.contains(&i))
            }
            proc_macro2::TokenTree::Punct(p) => p.as_char() != '\'' && p.as_char() != '&',
            proc_macro2::TokenTree::Literal(_) => true,
        })
    }
    !m.in_impl && walk(ty.to_token_stream(), &m.type_params)
}

/// The argument `ident` as seen from generated code spanned at its type, so a non-`Key` type is
/// reported at the type, identically from the function and from its helpers.
fn respan(ident: &Ident, ty: &Type) -> Ident {
    Ident::new(&ident.to_string(), key_span(ty))
}

/// Where a key error belongs: the referenced type, not the `&` in front of it.
fn key_span(ty: &Type) -> Span {
    match ty {
        Type::Reference(r) => key_span(&r.elem),
        Type::Paren(p) => key_span(&p.elem),
        other => other.span(),
    }
}

/// Renames pattern parameters to their bindings and drops `#[ignore]`.
fn rewrite_inputs(sig: &mut syn::Signature, m: &Model) {
    let mut typed = m.params.iter();
    for arg in &mut sig.inputs {
        match arg {
            FnArg::Receiver(r) => r.attrs.retain(|a| !a.path().is_ident("ignore")),
            FnArg::Typed(pt) => {
                pt.attrs.retain(|a| !a.path().is_ident("ignore"));
                if let Some(p) = typed.next()
                    && p.pattern.is_some()
                {
                    *pt.pat = ident_pat(p.binding.clone());
                }
            }
        }
    }
}

fn ident_pat(ident: Ident) -> Pat {
    Pat::Ident(PatIdent {
        attrs: Vec::new(),
        by_ref: None,
        mutability: None,
        ident,
        subpat: None,
    })
}

/// The `&dyn Key` views of the hashed arguments.
struct ArgRefs {
    lets: Vec<TokenStream>,
    /// `(record name, view)` in key order.
    views: Vec<(String, Ident)>,
}

impl ArgRefs {
    /// `binding(i, p)` names parameter `i` where the views are taken: its own name in the
    /// function, `__fleche_argN` in the helpers.
    fn new(m: &Model, pv: &TokenStream, binding: impl Fn(usize, &Param) -> Ident) -> Self {
        let mut lets = Vec::new();
        let mut views = Vec::new();
        if m.has_receiver {
            let v = format_ident!("__fleche_key_self");
            let this = Ident::new("self", m.receiver_span);
            lets.push(quote_spanned!(m.receiver_span=> let #v: &dyn #pv::Key = &#this;));
            views.push(("self".to_owned(), v));
        }
        for (i, p) in m.params.iter().enumerate().filter(|(_, p)| !p.ignored) {
            let v = format_ident!("__fleche_key_{}", i);
            let ty = &p.ty;
            let b = respan(&binding(i, p), ty);
            lets.push(quote_spanned!(key_span(ty)=> let #v: &dyn #pv::Key = &#b;));
            views.push((p.record_name.clone(), v));
        }
        for (i, c) in m.const_params.iter().enumerate() {
            let v = format_ident!("__fleche_key_const{}", i);
            lets.push(quote!(let #v: &dyn #pv::Key = &#c;));
            views.push((c.to_string(), v));
        }
        Self { lets, views }
    }

    /// The closure that feeds the views to the key hasher.
    fn key_stmts(&self, pv: &TokenStream) -> TokenStream {
        if self.views.is_empty() {
            return quote!(|_: &mut #pv::KeyHasher| {});
        }
        let views = self.views.iter().map(|(_, v)| v);
        quote!(|__fleche_h: &mut #pv::KeyHasher| { #(#pv::Key::key(#views, __fleche_h);)* })
    }

    fn value_entries(&self, pv: &TokenStream) -> Vec<TokenStream> {
        self.views
            .iter()
            .map(|(name, v)| quote!((#name, #pv::Key::to_value(#v))))
            .collect()
    }
}

/// Parameters for a helper's signature: every parameter as `__fleche_argN: Type`, ignored ones
/// as `_: Type`; and the arguments to forward.
fn helper_params(m: &Model) -> (Vec<TokenStream>, Vec<Ident>) {
    let mut params = Vec::new();
    let mut forward = Vec::new();
    for (i, p) in m.params.iter().enumerate() {
        let ty = &p.ty;
        let b = format_ident!("__fleche_arg{}", i);
        params.push(quote!(#b: #ty));
        forward.push(b);
    }
    (params, forward)
}

/// The generic instantiation: type parameters, `impl Trait` arguments (by their concrete type)
/// and `Self`, named through `binding` as in [`ArgRefs::new`].
fn type_args(m: &Model, pv: &TokenStream, binding: impl Fn(usize, &Param) -> Ident) -> TokenStream {
    let tys = m.type_params.iter().map(|t| quote!(#pv::type_name::<#t>()));
    let impls = m
        .params
        .iter()
        .enumerate()
        .filter(|(_, p)| p.impl_trait && !p.ignored)
        .map(|(i, p)| {
            let b = binding(i, p);
            quote!(#pv::type_name_of_val(&#b))
        });
    let this = m.in_impl.then(|| quote!(#pv::type_name::<Self>()));
    quote!(&[#(#tys,)* #(#impls,)* #this])
}

/// How the helpers name the parameters.
fn helper_binding(i: usize, _: &Param) -> Ident {
    format_ident!("__fleche_arg{}", i)
}

/// The body of a helper that returns the `CallRef` for its arguments (which are named by
/// [`helper_binding`]).
fn call_ref_body(m: &Model, pv: &TokenStream, stored: &Type) -> TokenStream {
    let refs = ArgRefs::new(m, pv, helper_binding);
    let lets = &refs.lets;
    let key_closure = refs.key_stmts(pv);
    let type_args = type_args(m, pv, helper_binding);
    let codec = codec_expr(pv.clone(), stored, plainly_static(stored, m));
    quote! {
        #(#lets)*
        #pv::CallRef::new(&__FLECHE_INFO, #codec, #type_args, #key_closure)
    }
}

fn companion_module(
    m: &Model,
    pv: &TokenStream,
    sig: &syn::Signature,
    vis: &syn::Visibility,
    info_static: &TokenStream,
    stored: &Type,
    full: &Type,
) -> TokenStream {
    let name = &sig.ident;
    let generics = &sig.generics;
    let where_clause = &sig.generics.where_clause;
    let (params, forward) = helper_params(m);
    let call_ref = call_ref_body(m, pv, stored);
    // Generic arguments are forwarded explicitly: a parameter that appears only in the return
    // type cannot be inferred from the arguments.
    let turbofish = {
        let args: Vec<&Ident> = sig
            .generics
            .params
            .iter()
            .filter_map(|p| match p {
                syn::GenericParam::Type(t) => Some(&t.ident),
                syn::GenericParam::Const(c) => Some(&c.ident),
                syn::GenericParam::Lifetime(_) => None,
            })
            .collect();
        if args.is_empty() {
            quote!()
        } else {
            quote!(::<#(#args),*>)
        }
    };
    let asyncness = &sig.asyncness;
    // An `async fn` runs nothing until polled: the mode is set right before the first poll,
    // which happens on this thread, inside this `.await`.
    let await_ = m.is_async.then(|| quote!(.await));
    let doc = format!(
        "Cache helpers of [`{name}()`](fn@{name}), generated by `#[fleche::memoize]`: each takes \
         the same arguments and works in the active cache."
    );
    let helper_vis = match vis {
        syn::Visibility::Inherited => quote!(pub(super)),
        _ => quote!(pub),
    };
    let span = Span::call_site();
    let store_ret = quote_spanned!(span=> #stored);
    quote! {
        #[doc = #doc]
        #[allow(unused_imports, unused_variables, clippy::all)]
        #vis mod #name {
            use super::*;

            #info_static

            #[doc(hidden)]
            fn __fleche_call #generics (#(#params),*) -> #pv::CallRef<#store_ret> #where_clause {
                #call_ref
            }

            /// The call's lookup key.
            #helper_vis fn digest #generics (#(#params),*) -> #pv::Digest #where_clause {
                __fleche_call #turbofish (#(#forward),*).digest()
            }

            /// Whether the call is stored in the active cache.
            #helper_vis fn contains #generics (#(#params),*) -> bool #where_clause {
                __fleche_call #turbofish (#(#forward),*).contains()
            }

            /// The stored result, without running the function (for a `Result`, the `Ok` value).
            #helper_vis fn load #generics (#(#params),*) -> #pv::Option<#store_ret> #where_clause {
                __fleche_call #turbofish (#(#forward),*).load()
            }

            /// Removes the stored call; `true` if there was one.
            #helper_vis fn evict #generics (#(#params),*) -> bool #where_clause {
                __fleche_call #turbofish (#(#forward),*).evict()
            }

            /// Runs the function without looking up or storing anything.
            #helper_vis #asyncness fn uncached #generics (#(#params),*) -> #full #where_clause {
                #pv::set_mode(#pv::Mode::Uncached);
                super::#name #turbofish (#(#forward),*) #await_
            }

            /// Recomputes the result and stores it over the stored one.
            #helper_vis #asyncness fn rerun #generics (#(#params),*) -> #full #where_clause {
                #pv::set_mode(#pv::Mode::Rerun);
                super::#name #turbofish (#(#forward),*) #await_
            }

            /// A query over this function's stored calls.
            #helper_vis fn query() -> #pv::Query {
                __FLECHE_INFO.query()
            }
        }
    }
}

fn method_helper(
    m: &Model,
    pv: &TokenStream,
    sig: &syn::Signature,
    vis: &syn::Visibility,
    info_static: &TokenStream,
    stored: &Type,
) -> TokenStream {
    let name = &sig.ident;
    let helper = format_ident!("{}_call", name);
    let generics = &sig.generics;
    let where_clause = &sig.generics.where_clause;
    let (params, _) = helper_params(m);
    let call_ref = call_ref_body(m, pv, stored);
    let receiver = m.has_receiver.then(|| quote!(&self,));
    let doc = format!(
        "A handle on the stored call of [`Self::{name}`] with these arguments, in the active \
         cache: its `digest`, `contains`, `load`, `record` and `evict`. Generated by \
         `#[fleche::memoize]`."
    );
    quote! {
        #[doc = #doc]
        #[allow(unused_variables, clippy::all)]
        #vis fn #helper #generics (#receiver #(#params),*) -> #pv::CallRef<#stored> #where_clause {
            #info_static
            #call_ref
        }
    }
}
