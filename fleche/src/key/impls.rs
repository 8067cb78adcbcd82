//! [`Key`] for the standard library's types.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use fleche_storage::{Digest, Value};

use super::{Key, KeyHasher, entry_digest, tag};

/// Numeric kinds: the byte after `NUM` / `NUM_ARRAY` (`docs/format.md`, "Numbers").
mod kind {
    pub(super) const U8: u8 = 0x01;
    pub(super) const U16: u8 = 0x02;
    pub(super) const U32: u8 = 0x03;
    pub(super) const U64: u8 = 0x04;
    pub(super) const U128: u8 = 0x05;
    pub(super) const I8: u8 = 0x11;
    pub(super) const I16: u8 = 0x12;
    pub(super) const I32: u8 = 0x13;
    pub(super) const I64: u8 = 0x14;
    pub(super) const I128: u8 = 0x15;
    pub(super) const F32: u8 = 0x21;
    pub(super) const F64: u8 = 0x22;
}

/// Numbers whose in-memory representation is their little-endian encoding on little-endian
/// targets: slices of them are hashed in one write.
macro_rules! numeric {
    ($($t:ty => $kind:expr),* $(,)?) => {$(
        impl Key for $t {
            #[inline]
            fn key(&self, h: &mut KeyHasher) {
                h.write_raw(&[tag::NUM, $kind]);
                h.write_raw(&self.to_le_bytes());
            }
            fn to_value(&self) -> Value {
                Value::from(*self)
            }
            fn __key_seq_header(len: usize, h: &mut KeyHasher) {
                h.write_raw(&[tag::NUM_ARRAY, $kind]);
                h.write_len(len);
            }
            #[inline]
            fn __key_seq_items(items: &[Self], h: &mut KeyHasher) {
                #[cfg(target_endian = "little")]
                h.write_raw(bytemuck::cast_slice(items));
                #[cfg(not(target_endian = "little"))]
                for item in items {
                    h.write_raw(&item.to_le_bytes());
                }
            }
            fn __value_seq(items: &[Self]) -> Value {
                numeric!(@seq $t, items)
            }
        }
    )*};
    (@seq u8, $items:ident) => { Value::Bytes($items.to_vec()) };
    (@seq $t:ty, $items:ident) => { Value::Seq($items.iter().map(|x| Value::from(*x)).collect()) };
}

numeric! {
    u8 => kind::U8, u16 => kind::U16, u32 => kind::U32, u64 => kind::U64, u128 => kind::U128,
    i8 => kind::I8, i16 => kind::I16, i32 => kind::I32, i64 => kind::I64, i128 => kind::I128,
    f32 => kind::F32, f64 => kind::F64,
}

/// `usize` and `isize` encode as `u64` and `i64` so keys do not depend on the pointer width.
macro_rules! pointer_sized {
    ($($t:ty => $wide:ty),*) => {$(
        impl Key for $t {
            #[inline]
            fn key(&self, h: &mut KeyHasher) {
                (*self as $wide).key(h);
            }
            fn to_value(&self) -> Value {
                Value::from(*self)
            }
            fn __key_seq_header(len: usize, h: &mut KeyHasher) {
                <$wide as Key>::__key_seq_header(len, h);
            }
            #[inline]
            fn __key_seq_items(items: &[Self], h: &mut KeyHasher) {
                #[cfg(all(target_endian = "little", target_pointer_width = "64"))]
                h.write_raw(bytemuck::cast_slice(items));
                #[cfg(not(all(target_endian = "little", target_pointer_width = "64")))]
                for item in items {
                    h.write_raw(&(*item as $wide).to_le_bytes());
                }
            }
            fn __value_seq(items: &[Self]) -> Value {
                Value::Seq(items.iter().map(|x| Value::from(*x)).collect())
            }
        }
    )*};
}

pointer_sized!(usize => u64, isize => i64);

impl Key for bool {
    #[inline]
    fn key(&self, h: &mut KeyHasher) {
        h.write_raw(&[tag::BOOL, u8::from(*self)]);
    }
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
}

impl Key for char {
    #[inline]
    fn key(&self, h: &mut KeyHasher) {
        h.write_tag(tag::CHAR);
        h.write_raw(&u32::from(*self).to_le_bytes());
    }
    fn to_value(&self) -> Value {
        Value::Char(*self)
    }
}

impl Key for str {
    #[inline]
    fn key(&self, h: &mut KeyHasher) {
        h.write_str(self);
    }
    fn to_value(&self) -> Value {
        Value::Str(self.to_owned())
    }
}

impl Key for String {
    #[inline]
    fn key(&self, h: &mut KeyHasher) {
        h.write_str(self);
    }
    fn to_value(&self) -> Value {
        Value::Str(self.clone())
    }
}

impl Key for () {
    #[inline]
    fn key(&self, h: &mut KeyHasher) {
        h.write_tag(tag::UNIT);
    }
    fn to_value(&self) -> Value {
        Value::Null
    }
}

impl<T: ?Sized> Key for PhantomData<T> {
    fn key(&self, h: &mut KeyHasher) {
        h.write_tag(tag::UNIT);
    }
    fn to_value(&self) -> Value {
        Value::Null
    }
}

impl<T: Key> Key for [T] {
    #[inline]
    fn key(&self, h: &mut KeyHasher) {
        T::__key_seq_header(self.len(), h);
        T::__key_seq_items(self, h);
    }
    fn to_value(&self) -> Value {
        T::__value_seq(self)
    }
}

impl<T: Key, const N: usize> Key for [T; N] {
    #[inline]
    fn key(&self, h: &mut KeyHasher) {
        self.as_slice().key(h);
    }
    fn to_value(&self) -> Value {
        T::__value_seq(self)
    }
}

impl<T: Key> Key for Vec<T> {
    #[inline]
    fn key(&self, h: &mut KeyHasher) {
        self.as_slice().key(h);
    }
    fn to_value(&self) -> Value {
        T::__value_seq(self)
    }
}

impl<T: Key> Key for VecDeque<T> {
    fn key(&self, h: &mut KeyHasher) {
        let (front, back) = self.as_slices();
        T::__key_seq_header(self.len(), h);
        T::__key_seq_items(front, h);
        T::__key_seq_items(back, h);
    }
    fn to_value(&self) -> Value {
        Value::Seq(self.iter().map(Key::to_value).collect())
    }
}

/// References and smart pointers are transparent: they encode as what they point to.
macro_rules! transparent {
    ($($(#[$m:meta])* [$($gen:tt)*] $t:ty),* $(,)?) => {$(
        $(#[$m])*
        impl<$($gen)*> Key for $t {
            #[inline]
            fn key(&self, h: &mut KeyHasher) {
                (**self).key(h);
            }
            fn to_value(&self) -> Value {
                (**self).to_value()
            }
        }
    )*};
}

transparent! {
    [T: Key + ?Sized] &T,
    [T: Key + ?Sized] &mut T,
    [T: Key + ?Sized] Box<T>,
    [T: Key + ?Sized] Arc<T>,
    [T: Key + ?Sized] Rc<T>,
    [T: Key + ?Sized + ToOwned] Cow<'_, T>,
}

impl<T: Key> Key for Option<T> {
    #[inline]
    fn key(&self, h: &mut KeyHasher) {
        match self {
            None => h.write_raw(&[tag::OPTION, 0]),
            Some(v) => {
                h.write_raw(&[tag::OPTION, 1]);
                v.key(h);
            }
        }
    }
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, Key::to_value)
    }
}

impl<T: Key, E: Key> Key for Result<T, E> {
    fn key(&self, h: &mut KeyHasher) {
        match self {
            Ok(v) => {
                h.write_raw(&[tag::RESULT, 0]);
                v.key(h);
            }
            Err(e) => {
                h.write_raw(&[tag::RESULT, 1]);
                e.key(h);
            }
        }
    }
    fn to_value(&self) -> Value {
        match self {
            Ok(v) => Value::Variant("Ok".into(), Box::new(v.to_value())),
            Err(e) => Value::Variant("Err".into(), Box::new(e.to_value())),
        }
    }
}

macro_rules! tuple {
    ($(($n:expr; $($name:ident),+))*) => {$(
        impl<$($name: Key),+> Key for ($($name,)+) {
            #[inline]
            #[allow(non_snake_case)]
            fn key(&self, h: &mut KeyHasher) {
                let ($($name,)+) = self;
                h.write_tag(tag::TUPLE);
                h.write_len($n);
                $($name.key(h);)+
            }
            #[allow(non_snake_case)]
            fn to_value(&self) -> Value {
                let ($($name,)+) = self;
                Value::Seq(vec![$($name.to_value()),+])
            }
        }
    )*};
}

tuple! {
    (1; A)
    (2; A, B)
    (3; A, B, C)
    (4; A, B, C, D)
    (5; A, B, C, D, E)
    (6; A, B, C, D, E, F)
    (7; A, B, C, D, E, F, G)
    (8; A, B, C, D, E, F, G, H)
    (9; A, B, C, D, E, F, G, H, I)
    (10; A, B, C, D, E, F, G, H, I, J)
    (11; A, B, C, D, E, F, G, H, I, J, K)
    (12; A, B, C, D, E, F, G, H, I, J, K, L)
}

/// Writes an order-independent collection: the tag, the count, then the sorted digests of the
/// entries' encodings.
fn unordered(h: &mut KeyHasher, tag: u8, mut entries: Vec<[u8; 32]>) {
    entries.sort_unstable();
    h.write_tag(tag);
    h.write_len(entries.len());
    for e in &entries {
        h.write_raw(e);
    }
}

fn map_key<'a, K: Key + 'a, V: Key + 'a>(
    h: &mut KeyHasher,
    entries: impl ExactSizeIterator<Item = (&'a K, &'a V)>,
) {
    let digests = entries
        .map(|(k, v)| {
            entry_digest(|eh| {
                k.key(eh);
                v.key(eh);
            })
        })
        .collect();
    unordered(h, tag::MAP, digests);
}

fn map_value<'a, K: Key + 'a, V: Key + 'a>(entries: impl Iterator<Item = (&'a K, &'a V)>) -> Value {
    let mut pairs: Vec<(Value, Value)> =
        entries.map(|(k, v)| (k.to_value(), v.to_value())).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    Value::Map(pairs)
}

fn set_key<'a, T: Key + 'a>(h: &mut KeyHasher, items: impl ExactSizeIterator<Item = &'a T>) {
    let digests = items.map(|x| entry_digest(|eh| x.key(eh))).collect();
    unordered(h, tag::SET, digests);
}

fn set_value<'a, T: Key + 'a>(items: impl Iterator<Item = &'a T>) -> Value {
    let mut values: Vec<Value> = items.map(Key::to_value).collect();
    values.sort_by(Value::total_cmp);
    Value::Seq(values)
}

impl<K: Key, V: Key, S> Key for HashMap<K, V, S> {
    fn key(&self, h: &mut KeyHasher) {
        map_key(h, self.iter());
    }
    fn to_value(&self) -> Value {
        map_value(self.iter())
    }
}

impl<K: Key, V: Key> Key for BTreeMap<K, V> {
    fn key(&self, h: &mut KeyHasher) {
        map_key(h, self.iter());
    }
    fn to_value(&self) -> Value {
        map_value(self.iter())
    }
}

impl<T: Key, S> Key for HashSet<T, S> {
    fn key(&self, h: &mut KeyHasher) {
        set_key(h, self.iter());
    }
    fn to_value(&self) -> Value {
        set_value(self.iter())
    }
}

impl<T: Key> Key for BTreeSet<T> {
    fn key(&self, h: &mut KeyHasher) {
        set_key(h, self.iter());
    }
    fn to_value(&self) -> Value {
        set_value(self.iter())
    }
}

impl Key for Path {
    fn key(&self, h: &mut KeyHasher) {
        let bytes = self.as_os_str().as_encoded_bytes();
        h.write_tag(tag::PATH);
        h.write_len(bytes.len());
        h.write_raw(bytes);
    }
    fn to_value(&self) -> Value {
        Value::Str(self.to_string_lossy().into_owned())
    }
}

impl Key for PathBuf {
    fn key(&self, h: &mut KeyHasher) {
        self.as_path().key(h);
    }
    fn to_value(&self) -> Value {
        self.as_path().to_value()
    }
}

impl Key for Duration {
    fn key(&self, h: &mut KeyHasher) {
        h.write_tag(tag::DURATION);
        h.write_raw(&self.as_secs().to_le_bytes());
        h.write_raw(&self.subsec_nanos().to_le_bytes());
    }
    fn to_value(&self) -> Value {
        Value::Float(self.as_secs_f64())
    }
}

impl Key for Digest {
    fn key(&self, h: &mut KeyHasher) {
        self.as_bytes().key(h);
    }
    fn to_value(&self) -> Value {
        Value::Digest(*self)
    }
}
