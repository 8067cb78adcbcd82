//! What the macros expand to. Not public API: no stability promise.

pub use crate::call::{
    Call, CallRef, Codec, FnInfo, Lookup, Mode, NotStorable, Pending, Probe, Sealed, Storable,
    ViaBulk, ViaSerde, ViaTyped, bulk_codec, codec, set_mode, typed_codec,
};

/// The recorded arguments of a call.
#[inline]
pub fn args<const N: usize>(
    entries: [(&'static str, crate::Value); N],
) -> Vec<(&'static str, crate::Value)> {
    Vec::from(entries)
}

/// The fields of a derived struct's queryable form.
#[inline]
pub fn fields<const N: usize>(entries: [(String, crate::Value); N]) -> crate::Value {
    crate::Value::Struct(Vec::from(entries))
}
pub use crate::metadata::{MetaKind, metadata_kind};
pub use crate::{Digest, Key, KeyHasher, Query, Value};
pub use core::any::{type_name, type_name_of_val};
pub use core::option::Option::{self, None, Some};
pub use core::result::Result::{Err, Ok};
pub use std::borrow::ToOwned;
pub use std::boxed::Box;
pub use std::string::String;
pub use std::vec::Vec;

/// Pins the output type of a memoized `async fn`'s body, so `?` in it infers.
#[inline(always)]
pub fn async_output<R, F: core::future::Future<Output = R>>(f: F) -> F {
    f
}
