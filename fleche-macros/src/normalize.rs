//! The normalized source of a function, for `hash_code`: tokens separated by single spaces, so
//! whitespace, line breaks and comments do not change it.

use proc_macro2::{Delimiter, TokenStream, TokenTree};

pub(crate) fn normalize(tokens: TokenStream) -> String {
    let mut out = String::new();
    write(&mut out, tokens);
    out
}

fn write(out: &mut String, tokens: TokenStream) {
    for tt in tokens {
        if !out.is_empty() {
            out.push(' ');
        }
        match tt {
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                out.push_str(open);
                let mut inner = String::new();
                write(&mut inner, g.stream());
                out.push_str(&inner);
                out.push_str(close);
            }
            TokenTree::Ident(i) => out.push_str(&i.to_string()),
            TokenTree::Punct(p) => out.push(p.as_char()),
            TokenTree::Literal(l) => out.push_str(&l.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;
    use quote::quote;

    #[test]
    fn whitespace_and_comments_do_not_matter() {
        let a = quote! { fn f(x: u64) -> u64 { x + 1 } };
        let b: proc_macro2::TokenStream = "fn f( x :u64 )->u64{\n  // comment\n  x+1 }"
            .parse()
            .unwrap_or_default();
        assert_eq!(normalize(a), normalize(b));
    }

    #[test]
    fn different_code_differs() {
        assert_ne!(normalize(quote! { x + 1 }), normalize(quote! { x + 2 }));
        assert_ne!(normalize(quote! { (a) b }), normalize(quote! { (a b) }));
    }
}
