//! Canonical keys: the [`Key`] trait, the [`KeyHasher`] it writes to, and [`digest`].
//!
//! Every value that can be a memoization key has one canonical byte encoding, fed to blake3. The
//! encoding is documented byte by byte in `docs/format.md` (key format version
//! [`KEY_FORMAT_VERSION`]) and pinned by golden tests, so a digest computed today is the digest
//! computed by every later version of fleche on every platform.
//!
//! Properties the encoding guarantees:
//!
//! - **Self-delimiting.** Every value's encoding carries its own tag and length, so the encodings
//!   of a sequence of values can be concatenated without ambiguity: `("ab", "c")` and
//!   `("a", "bc")` differ.
//! - **Container-independent.** `&str` and `String`, `&[T]`, `Vec<T>`, `[T; N]` and
//!   `VecDeque<T>`, `HashMap` and `BTreeMap` (in any insertion order), `HashSet` and `BTreeSet`
//!   encode alike; `Box`, `Arc`, `Rc`, `Cow` and references are transparent.
//! - **Exact.** Integers by value and width class, floats by their IEEE-754 bits (so `0.5` and
//!   `2^60` differ, and so do `0.0` and `-0.0`).
//! - **Fast.** Slices of numbers are hashed as their little-endian bytes in one piece.

mod impls;
mod serde_route;
mod serde_value;

use fleche_storage::{Digest, Value};

pub use serde_route::{Serde, key_serialize};

/// The version of the canonical key encoding. Any change to the bytes a value encodes to bumps it.
pub const KEY_FORMAT_VERSION: u32 = 1;

/// The blake3 key under which [`digest`] hashes a value's encoding:
/// `blake3("fleche key encoding v1")`, pinned by a golden test.
pub(crate) const VALUE_DOMAIN: [u8; 32] = [
    0x54, 0xcf, 0x15, 0x62, 0xa5, 0x38, 0xfb, 0x3c, 0x6d, 0xb9, 0xc6, 0xe8, 0xe9, 0x29, 0xdf, 0x7c,
    0x56, 0x5a, 0xdf, 0x5f, 0x1a, 0x70, 0xbc, 0x86, 0xff, 0x1e, 0x17, 0x53, 0x61, 0x5b, 0x56, 0xfc,
];

/// Type tags: the first byte of every encoded value (`docs/format.md`, "Tags").
pub(crate) mod tag {
    pub(crate) const UNIT: u8 = 0x00;
    pub(crate) const BOOL: u8 = 0x01;
    pub(crate) const NUM: u8 = 0x02;
    pub(crate) const CHAR: u8 = 0x03;
    pub(crate) const STR: u8 = 0x04;
    pub(crate) const SEQ: u8 = 0x05;
    pub(crate) const NUM_ARRAY: u8 = 0x06;
    pub(crate) const TUPLE: u8 = 0x07;
    pub(crate) const OPTION: u8 = 0x08;
    pub(crate) const RESULT: u8 = 0x09;
    pub(crate) const MAP: u8 = 0x0a;
    pub(crate) const SET: u8 = 0x0b;
    pub(crate) const STRUCT: u8 = 0x0c;
    pub(crate) const VARIANT: u8 = 0x0d;
    pub(crate) const PATH: u8 = 0x0e;
    pub(crate) const DURATION: u8 = 0x0f;
    pub(crate) const SERDE: u8 = 0x10;
    pub(crate) const SERDE_ERROR: u8 = 0x11;
}

/// A value that can be part of a memoization key.
///
/// Implemented for the standard types listed in the crate documentation, derivable with
/// `#[derive(fleche::Key)]` for structs and enums, and reachable for any `serde::Serialize` type
/// through [`Serde`].
///
/// A hand-written implementation should feed its components, in a fixed order, to their own
/// `key` methods; every encoding is self-delimiting, so that is canonical:
///
/// ```
/// use fleche::{Key, KeyHasher};
///
/// struct Interval { lo: f64, hi: f64, label: String }
///
/// impl Key for Interval {
///     fn key(&self, h: &mut KeyHasher) {
///         (self.lo, self.hi, &self.label).key(h);
///     }
/// }
///
/// let a = Interval { lo: 0.0, hi: 1.0, label: "unit".into() };
/// assert_eq!(fleche::digest(&a), fleche::digest(&(0.0, 1.0, "unit")));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a memoization key: derive `fleche::Key` or mark the parameter `#[ignore]`",
    label = "not a `fleche::Key`",
    note = "a type that implements `serde::Serialize` can be passed as `fleche::Serde<{Self}>`"
)]
pub trait Key {
    /// Feeds the canonical encoding of `self` to `h`.
    fn key(&self, h: &mut KeyHasher);

    /// The queryable form of `self`, stored in call records. By default the value's digest.
    fn to_value(&self) -> Value {
        Value::Digest(digest(self))
    }

    /// Encodes a slice of `Self` (`[T]`, `Vec<T>`, `[T; N]`): the header, then
    /// [`__key_seq_items`](Key::__key_seq_items). Numeric types override both to hash the
    /// slice as raw little-endian bytes.
    #[doc(hidden)]
    fn __key_seq_header(len: usize, h: &mut KeyHasher)
    where
        Self: Sized,
    {
        h.write_tag(tag::SEQ);
        h.write_len(len);
    }

    /// Encodes the items of a slice after [`__key_seq_header`](Key::__key_seq_header); may be
    /// called more than once for one header (a `VecDeque`'s two halves).
    #[doc(hidden)]
    fn __key_seq_items(items: &[Self], h: &mut KeyHasher)
    where
        Self: Sized,
    {
        for item in items {
            item.key(h);
        }
    }

    /// The queryable form of a slice of `Self`.
    #[doc(hidden)]
    fn __value_seq(items: &[Self]) -> Value
    where
        Self: Sized,
    {
        Value::Seq(items.iter().map(Key::to_value).collect())
    }
}

/// Large enough for the keys of typical calls (a few scalars and short strings) to reach blake3
/// in one update; small enough to set up cheaply on every call.
const BUF: usize = 256;

/// The sink a [`Key`] writes its canonical encoding to: a small buffer in front of blake3, so
/// the many tiny writes of a structured value cost little, and a short key (the common case: a
/// few scalars) is hashed in one call without ever setting up an incremental hasher.
pub struct KeyHasher {
    key: [u8; 32],
    /// Created on the first flush: only keys longer than the buffer need it.
    inner: Option<Box<blake3::Hasher>>,
    buf: [u8; BUF],
    len: usize,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyHasher").finish_non_exhaustive()
    }
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyHasher {
    /// A hasher for a value digest (the one [`digest`] uses).
    #[must_use]
    pub fn new() -> Self {
        Self::keyed(&VALUE_DOMAIN)
    }

    /// A hasher in blake3 keyed mode.
    pub(crate) fn keyed(key: &[u8; 32]) -> Self {
        Self {
            key: *key,
            inner: None,
            buf: [0; BUF],
            len: 0,
        }
    }

    /// Writes raw bytes. Not self-delimiting: hand-written [`Key`] impls should call `key` on
    /// their components instead.
    #[doc(hidden)]
    #[inline]
    pub fn write_raw(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end <= BUF {
            self.buf[self.len..end].copy_from_slice(bytes);
            self.len = end;
        } else {
            self.write_slow(bytes);
        }
    }

    #[cold]
    fn write_slow(&mut self, bytes: &[u8]) {
        let key = self.key;
        let inner = self
            .inner
            .get_or_insert_with(|| Box::new(blake3::Hasher::new_keyed(&key)));
        inner.update(&self.buf[..self.len]);
        self.len = 0;
        if bytes.len() >= BUF {
            inner.update(bytes);
        } else {
            self.buf[..bytes.len()].copy_from_slice(bytes);
            self.len = bytes.len();
        }
    }

    #[doc(hidden)]
    #[inline]
    pub fn write_tag(&mut self, tag: u8) {
        self.write_raw(&[tag]);
    }

    /// A length or count: `u64` little-endian.
    #[doc(hidden)]
    #[inline]
    pub fn write_len(&mut self, len: usize) {
        self.write_raw(&(len as u64).to_le_bytes());
    }

    /// A string framed as a `str` value: tag, length, UTF-8 bytes.
    #[doc(hidden)]
    #[inline]
    pub fn write_str(&mut self, s: &str) {
        self.write_tag(tag::STR);
        self.write_len(s.len());
        self.write_raw(s.as_bytes());
    }

    /// The start of a struct with `fields` fields; each field follows as its name
    /// ([`write_str`](Self::write_str)) and its value.
    #[doc(hidden)]
    #[inline]
    pub fn write_struct_header(&mut self, fields: usize) {
        self.write_tag(tag::STRUCT);
        self.write_len(fields);
    }

    /// The start of an enum variant named `name` with `fields` fields, which follow as in a
    /// struct.
    #[doc(hidden)]
    #[inline]
    pub fn write_variant_header(&mut self, name: &str, fields: usize) {
        self.write_tag(tag::VARIANT);
        self.write_str(name);
        self.write_len(fields);
    }

    /// Finishes and returns the digest.
    #[must_use]
    pub fn finalize(self) -> Digest {
        let tail = &self.buf[..self.len];
        let hash = match self.inner {
            None => blake3::keyed_hash(&self.key, tail),
            Some(mut inner) => {
                inner.update(tail);
                inner.finalize()
            }
        };
        Digest::from_bytes(*hash.as_bytes())
    }
}

/// The digest of `value`'s canonical encoding: blake3 in keyed mode under the key-format domain
/// key, over the bytes `docs/format.md` specifies.
///
/// ```
/// use std::collections::{BTreeMap, HashMap};
///
/// assert_eq!(fleche::digest("abc"), fleche::digest(&String::from("abc")));
/// assert_eq!(fleche::digest(&[1u64, 2, 3][..]), fleche::digest(&vec![1u64, 2, 3]));
/// let h: HashMap<_, _> = [("a", 1), ("b", 2)].into_iter().collect();
/// let b: BTreeMap<_, _> = [("b", 2), ("a", 1)].into_iter().collect();
/// assert_eq!(fleche::digest(&h), fleche::digest(&b));
/// assert_ne!(fleche::digest(&("ab", "c")), fleche::digest(&("a", "bc")));
/// ```
#[must_use]
pub fn digest<T: Key + ?Sized>(value: &T) -> Digest {
    let mut h = KeyHasher::new();
    value.key(&mut h);
    h.finalize()
}

/// The digest of one entry of a map or set, for the order-independent encodings.
pub(crate) fn entry_digest(write: impl FnOnce(&mut KeyHasher)) -> [u8; 32] {
    let mut h = KeyHasher::new();
    write(&mut h);
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_domain_is_the_hash_of_its_context_string() {
        assert_eq!(
            *blake3::hash(b"fleche key encoding v1").as_bytes(),
            VALUE_DOMAIN
        );
    }
}
