//! `#[derive(Key)]`: the canonical key of a struct or enum, field by field.
//!
//! A struct encodes as `STRUCT`, its field count, then each field as its name and its value
//! (tuple fields are named `"0"`, `"1"`, ...); an enum variant as `VARIANT`, the variant's name,
//! then its fields likewise. The type's own name is not part of the key, so renaming a type does
//! not orphan its cache entries; renaming or adding a field does change the key.
//!
//! Field attributes: `#[key(skip)]` leaves a field out of the key. Type attributes:
//! `#[key(crate = path)]` names the fleche crate.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::{Data, DeriveInput, Fields, Path};

use crate::ctxt::{Ctxt, with_item};

pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let mut input: DeriveInput = match syn::parse2(input) {
        Ok(i) => i,
        Err(e) => return e.to_compile_error(),
    };
    let mut cx = Ctxt::default();
    let krate = type_attrs(&mut cx, &input.attrs);
    let pv = quote!(#krate::__private);
    let body = match &input.data {
        Data::Struct(s) => {
            let fields = fields(&mut cx, &s.fields);
            let (pattern, key, value) = encode_fields(&pv, &fields, &s.fields);
            let path = quote!(Self);
            Some((
                quote! {
                    let #path #pattern = self;
                    #key
                },
                quote! {
                    let #path #pattern = self;
                    #value
                },
            ))
        }
        Data::Enum(e) => {
            let mut key_arms = Vec::new();
            let mut value_arms = Vec::new();
            for v in &e.variants {
                for a in &v.attrs {
                    if a.path().is_ident("key") {
                        cx.error(
                            a,
                            "`#[key(..)]` goes on fields or on the type, not on variants",
                        );
                    }
                }
                let fields = fields(&mut cx, &v.fields);
                let (pattern, key, value) = encode_variant(&pv, &fields, &v.fields);
                let ident = &v.ident;
                let name = ident.to_string();
                let n = fields.iter().filter(|f| !f.skip).count();
                key_arms.push(quote! {
                    Self::#ident #pattern => {
                        __fleche_h.write_variant_header(#name, #n);
                        #key
                    }
                });
                let payload = if matches!(v.fields, Fields::Unit) {
                    quote!(#pv::Value::Null)
                } else {
                    value
                };
                value_arms.push(quote! {
                    Self::#ident #pattern => #pv::Value::Variant(
                        #pv::ToOwned::to_owned(#name),
                        #pv::Box::new(#payload),
                    ),
                });
            }
            Some((
                quote! { match self { #(#key_arms)* } },
                quote! { match self { #(#value_arms)* } },
            ))
        }
        Data::Union(u) => {
            cx.error(
                u.union_token,
                "`Key` cannot be derived for a union: implement `fleche::Key` by hand",
            );
            None
        }
    };
    if let Err(e) = cx.finish() {
        return with_item(&e, TokenStream::new());
    }
    let Some((key_body, value_body)) = body else {
        return TokenStream::new();
    };

    // Every type parameter must itself be a key.
    let params: Vec<_> = input
        .generics
        .type_params()
        .map(|t| t.ident.clone())
        .collect();
    let where_clause = input.generics.make_where_clause();
    for p in params {
        where_clause
            .predicates
            .push(syn::parse_quote!(#p: #krate::Key));
    }
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let ident = &input.ident;
    quote! {
        #[allow(non_shorthand_field_patterns, unused_variables, clippy::all)]
        const _: () = {
            impl #impl_generics #krate::Key for #ident #ty_generics #where_clause {
                fn key(&self, __fleche_h: &mut #krate::KeyHasher) {
                    #key_body
                }
                fn to_value(&self) -> #krate::Value {
                    #value_body
                }
            }
        };
    }
}

struct Field {
    /// The name in the key: the field's identifier or its index.
    name: String,
    /// The binding in the generated pattern.
    binding: syn::Ident,
    /// The field's identifier, for named fields.
    ident: Option<syn::Ident>,
    skip: bool,
}

fn type_attrs(cx: &mut Ctxt, attrs: &[syn::Attribute]) -> Path {
    let mut krate: Option<Path> = None;
    for a in attrs.iter().filter(|a| a.path().is_ident("key")) {
        let r = a.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                if krate.is_some() {
                    return Err(meta.error("duplicate `crate`: give it once"));
                }
                krate = Some(meta.value()?.parse()?);
                Ok(())
            } else if meta.path.is_ident("skip") {
                Err(meta.error("`skip` goes on a field, not on the type"))
            } else {
                Err(meta.error("unknown `key` attribute on a type: expected `crate = path`"))
            }
        });
        if let Err(e) = r {
            cx.push(e);
        }
    }
    krate.unwrap_or_else(|| syn::parse_quote_spanned!(Span::call_site()=> ::fleche))
}

fn fields(cx: &mut Ctxt, fields: &Fields) -> Vec<Field> {
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut skip = false;
            for a in f.attrs.iter().filter(|a| a.path().is_ident("key")) {
                let r = a.parse_nested_meta(|meta| {
                    if meta.path.is_ident("skip") {
                        if skip {
                            return Err(meta.error("duplicate `skip`: give it once"));
                        }
                        skip = true;
                        Ok(())
                    } else {
                        Err(meta.error("unknown `key` attribute on a field: expected `skip`"))
                    }
                });
                if let Err(e) = r {
                    cx.push(e);
                }
            }
            Field {
                name: f
                    .ident
                    .as_ref()
                    .map_or_else(|| i.to_string(), ToString::to_string),
                binding: format_ident!("__fleche_f{}", i),
                ident: f.ident.clone(),
                skip,
            }
        })
        .collect()
}

/// The destructuring pattern, the key statements of the fields (after a header) and the value
/// expression.
fn field_parts(
    pv: &TokenStream,
    fields: &[Field],
    shape: &Fields,
) -> (TokenStream, TokenStream, TokenStream) {
    let pattern = match shape {
        Fields::Named(_) => {
            let parts = fields.iter().map(|f| {
                let ident = &f.ident;
                let b = &f.binding;
                quote!(#ident: #b)
            });
            quote!({ #(#parts),* })
        }
        Fields::Unnamed(_) => {
            let parts = fields.iter().map(|f| &f.binding);
            quote!(( #(#parts),* ))
        }
        Fields::Unit => quote!(),
    };
    let kept: Vec<_> = fields.iter().filter(|f| !f.skip).collect();
    let names: Vec<_> = kept.iter().map(|f| &f.name).collect();
    let bindings: Vec<_> = kept.iter().map(|f| &f.binding).collect();
    let key = quote! {
        #(
            __fleche_h.write_str(#names);
            #pv::Key::key(#bindings, __fleche_h);
        )*
    };
    let value = quote! {
        #pv::fields([
            #((#pv::ToOwned::to_owned(#names), #pv::Key::to_value(#bindings))),*
        ])
    };
    (pattern, key, value)
}

fn encode_fields(
    pv: &TokenStream,
    fields: &[Field],
    shape: &Fields,
) -> (TokenStream, TokenStream, TokenStream) {
    let (pattern, key, value) = field_parts(pv, fields, shape);
    let n = fields.iter().filter(|f| !f.skip).count();
    let key = quote! {
        __fleche_h.write_struct_header(#n);
        #key
    };
    (pattern, key, value)
}

fn encode_variant(
    pv: &TokenStream,
    fields: &[Field],
    shape: &Fields,
) -> (TokenStream, TokenStream, TokenStream) {
    field_parts(pv, fields, shape)
}
