//! `#[memoize]`: parse the options and the function, check both, expand.

mod attr;
mod check;
mod expand;

use proc_macro2::TokenStream;

use crate::ctxt::{Ctxt, with_item};

pub(crate) fn memoize(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let options = attr::parse(&mut cx, attr);
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            let e = syn::Error::new(e.span(), "#[memoize] applies to functions and methods only");
            return with_item(&e, item);
        }
    };
    let model = check::check(&mut cx, &options, &func);
    match cx.finish() {
        Ok(()) => expand::expand(&options, &model, func),
        Err(e) => with_item(&e, check::strip_ignore(func)),
    }
}
