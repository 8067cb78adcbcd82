//! The route for types that implement `serde::Serialize` but not [`Key`].
//!
//! [`Serde<T>`] wraps such a value; [`key_serialize`] feeds one to a hasher from a hand-written
//! [`Key`] impl. Both drive a `serde::Serializer` that writes the same tags as the native
//! encoding (`docs/format.md`, "The serde route"): maps stay order-independent, struct fields are
//! named. Sequences of numbers are written element by element, so the serde route is slower than a
//! derived [`Key`] for large numeric data, and its digests differ from a derived impl's (the whole
//! encoding is prefixed by its own tag).

use std::fmt;
use std::ops::{Deref, DerefMut};

use fleche_storage::Value;
use serde::Serialize;
use serde::ser;

use super::{Key, KeyHasher, entry_digest, tag};

/// Makes any `serde::Serialize` type usable as a memoization key.
///
/// ```
/// use fleche::{memoize, Serde};
/// use serde::Serialize;
///
/// #[derive(Serialize)]
/// struct Spec { steps: u32, label: String }   // no `Key` impl
///
/// #[memoize]
/// fn run(spec: &Serde<Spec>) -> u32 {
///     spec.steps * 2
/// }
///
/// # fn main() {
/// let spec = Serde(Spec { steps: 3, label: "a".into() });
/// assert_eq!(fleche::with_cache(&fleche::Cache::memory(), || run(&spec)), 6);
/// # }
/// ```
///
/// If serialization itself fails (a hand-written `Serialize` that returns an error), the key
/// records the error message and a warning is logged: such values are distinguished only by
/// their message.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serde<T>(pub T);

impl<T: fmt::Debug> fmt::Debug for Serde<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T> Deref for Serde<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Serde<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Serialize> Key for Serde<T> {
    fn key(&self, h: &mut KeyHasher) {
        key_serialize(&self.0, h);
    }

    /// The serialized structure (fields by name, maps sorted by key); the key digest if
    /// serialization fails.
    fn to_value(&self) -> Value {
        super::serde_value::to_value(&self.0).unwrap_or_else(|| Value::Digest(super::digest(self)))
    }
}

/// Feeds the serde-route encoding of `value` to `h`: the building block of [`Serde`], for
/// hand-written [`Key`] impls of types that implement `serde::Serialize`.
pub fn key_serialize<T: Serialize + ?Sized>(value: &T, h: &mut KeyHasher) {
    let mut out = Vec::with_capacity(64);
    match value.serialize(Encoder { out: &mut out }) {
        Ok(()) => {
            h.write_tag(tag::SERDE);
            h.write_len(out.len());
            h.write_raw(&out);
        }
        Err(EncodeError(message)) => {
            tracing::warn!(
                type_name = std::any::type_name::<T>(),
                error = %message,
                "serializing a key through serde failed; the key records the error message"
            );
            h.write_tag(tag::SERDE_ERROR);
            h.write_str(&message);
        }
    }
}

/// The serde-route encoding of a map key, kept until its value arrives.
fn encode_to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    value.serialize(Encoder { out: &mut out })?;
    Ok(out)
}

#[derive(Debug)]
struct EncodeError(String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}

impl ser::Error for EncodeError {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        EncodeError(msg.to_string())
    }
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
}

impl Encoder<'_> {
    fn tag(&mut self, t: u8) {
        self.out.push(t);
    }
    fn len(&mut self, n: usize) {
        self.out.extend_from_slice(&(n as u64).to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.tag(tag::STR);
        self.len(s.len());
        self.out.extend_from_slice(s.as_bytes());
    }
    fn num(&mut self, kind: u8, le: &[u8]) -> Result<(), EncodeError> {
        self.out.extend_from_slice(&[tag::NUM, kind]);
        self.out.extend_from_slice(le);
        Ok(())
    }
    fn nested<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(Encoder { out: self.out })
    }
}

/// Collects the items of a compound value, then writes the header with the true count.
struct Compound<'a> {
    out: &'a mut Vec<u8>,
    header: Vec<u8>,
    body: Vec<u8>,
    count: usize,
    /// For maps: entry digests, sorted at the end; a pending key's encoding.
    entries: Vec<[u8; 32]>,
    pending_key: Option<Vec<u8>>,
}

impl<'a> Compound<'a> {
    fn new(out: &'a mut Vec<u8>, header: Vec<u8>) -> Self {
        Self {
            out,
            header,
            body: Vec::new(),
            count: 0,
            entries: Vec::new(),
            pending_key: None,
        }
    }

    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.count += 1;
        value.serialize(Encoder {
            out: &mut self.body,
        })
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), EncodeError> {
        let mut e = Encoder {
            out: &mut self.body,
        };
        e.str(name);
        self.count += 1;
        value.serialize(Encoder {
            out: &mut self.body,
        })
    }

    fn finish(self) -> Result<(), EncodeError> {
        self.out.extend_from_slice(&self.header);
        self.out
            .extend_from_slice(&(self.count as u64).to_le_bytes());
        self.out.extend_from_slice(&self.body);
        Ok(())
    }

    fn finish_unordered(mut self, t: u8) -> Result<(), EncodeError> {
        self.entries.sort_unstable();
        self.out.push(t);
        self.out
            .extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            self.out.extend_from_slice(e);
        }
        Ok(())
    }
}

fn raw_digest(bytes: &[u8]) -> [u8; 32] {
    entry_digest(|h| h.write_raw(bytes))
}

impl<'a> ser::Serializer for Encoder<'a> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), EncodeError> {
        self.out.extend_from_slice(&[tag::BOOL, u8::from(v)]);
        Ok(())
    }
    fn serialize_i8(mut self, v: i8) -> Result<(), EncodeError> {
        self.num(0x11, &v.to_le_bytes())
    }
    fn serialize_i16(mut self, v: i16) -> Result<(), EncodeError> {
        self.num(0x12, &v.to_le_bytes())
    }
    fn serialize_i32(mut self, v: i32) -> Result<(), EncodeError> {
        self.num(0x13, &v.to_le_bytes())
    }
    fn serialize_i64(mut self, v: i64) -> Result<(), EncodeError> {
        self.num(0x14, &v.to_le_bytes())
    }
    fn serialize_i128(mut self, v: i128) -> Result<(), EncodeError> {
        self.num(0x15, &v.to_le_bytes())
    }
    fn serialize_u8(mut self, v: u8) -> Result<(), EncodeError> {
        self.num(0x01, &v.to_le_bytes())
    }
    fn serialize_u16(mut self, v: u16) -> Result<(), EncodeError> {
        self.num(0x02, &v.to_le_bytes())
    }
    fn serialize_u32(mut self, v: u32) -> Result<(), EncodeError> {
        self.num(0x03, &v.to_le_bytes())
    }
    fn serialize_u64(mut self, v: u64) -> Result<(), EncodeError> {
        self.num(0x04, &v.to_le_bytes())
    }
    fn serialize_u128(mut self, v: u128) -> Result<(), EncodeError> {
        self.num(0x05, &v.to_le_bytes())
    }
    fn serialize_f32(mut self, v: f32) -> Result<(), EncodeError> {
        self.num(0x21, &v.to_le_bytes())
    }
    fn serialize_f64(mut self, v: f64) -> Result<(), EncodeError> {
        self.num(0x22, &v.to_le_bytes())
    }
    fn serialize_char(mut self, v: char) -> Result<(), EncodeError> {
        self.tag(tag::CHAR);
        self.out.extend_from_slice(&u32::from(v).to_le_bytes());
        Ok(())
    }
    fn serialize_str(mut self, v: &str) -> Result<(), EncodeError> {
        self.str(v);
        Ok(())
    }
    fn serialize_bytes(mut self, v: &[u8]) -> Result<(), EncodeError> {
        self.out.extend_from_slice(&[tag::NUM_ARRAY, 0x01]);
        self.len(v.len());
        self.out.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), EncodeError> {
        self.out.extend_from_slice(&[tag::OPTION, 0]);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(mut self, value: &T) -> Result<(), EncodeError> {
        self.out.extend_from_slice(&[tag::OPTION, 1]);
        self.nested(value)
    }
    fn serialize_unit(mut self) -> Result<(), EncodeError> {
        self.tag(tag::UNIT);
        Ok(())
    }
    fn serialize_unit_struct(mut self, _name: &'static str) -> Result<(), EncodeError> {
        self.tag(tag::STRUCT);
        self.len(0);
        Ok(())
    }
    fn serialize_unit_variant(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), EncodeError> {
        self.tag(tag::VARIANT);
        self.str(variant);
        self.len(0);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        mut self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.tag(tag::STRUCT);
        self.len(1);
        self.str("0");
        self.nested(value)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.tag(tag::VARIANT);
        self.str(variant);
        self.len(1);
        self.str("0");
        self.nested(value)
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, EncodeError> {
        Ok(Compound::new(self.out, vec![tag::SEQ]))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Compound<'a>, EncodeError> {
        Ok(Compound::new(self.out, vec![tag::TUPLE]))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        Ok(Compound::new(self.out, vec![tag::STRUCT]))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        let mut header = vec![tag::VARIANT];
        Encoder { out: &mut header }.str(variant);
        Ok(Compound::new(self.out, header))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>, EncodeError> {
        Ok(Compound::new(self.out, vec![tag::MAP]))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        Ok(Compound::new(self.out, vec![tag::STRUCT]))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        let mut header = vec![tag::VARIANT];
        Encoder { out: &mut header }.str(variant);
        Ok(Compound::new(self.out, header))
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.item(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.item(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

/// Tuple structs and tuple variants name their fields `"0"`, `"1"`, ... like derived keys.
impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        let name = self.count.to_string();
        self.field(&name, value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        let name = self.count.to_string();
        self.field(&name, value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), EncodeError> {
        self.pending_key = Some(encode_to_vec(key)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        let mut entry = self
            .pending_key
            .take()
            .ok_or_else(|| EncodeError("map value serialized before its key".into()))?;
        value.serialize(Encoder { out: &mut entry })?;
        self.entries.push(raw_digest(&entry));
        Ok(())
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish_unordered(tag::MAP)
    }
}
