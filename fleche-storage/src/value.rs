//! The queryable form of an argument or a metadata field.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Digest;

/// A dynamically typed value: how call records keep arguments and metadata so they can be listed,
/// filtered and compared after the fact.
///
/// `Value` is for querying, not for keying: the lookup key of a call is the digest of its
/// arguments' canonical encoding, never of this form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Value {
    /// `()`, `None`, or an absent field.
    Null,
    /// A `bool`.
    Bool(bool),
    /// Any integer that fits an `i128` (every integer type but the top half of `u128`).
    Int(i128),
    /// A `u128` above `i128::MAX`.
    UInt(u128),
    /// An `f32` (widened exactly) or `f64`.
    Float(f64),
    /// A `char`.
    Char(char),
    /// A string, or a path as UTF-8 (lossily).
    Str(String),
    /// Raw bytes (`[u8]`).
    Bytes(Vec<u8>),
    /// A sequence, tuple, set or array.
    Seq(Vec<Value>),
    /// A map, entries sorted by key.
    Map(Vec<(Value, Value)>),
    /// A struct: its fields by name (tuple structs use `"0"`, `"1"`, ...).
    Struct(Vec<(String, Value)>),
    /// An enum variant with its payload (`Null` for unit variants).
    Variant(String, Box<Value>),
    /// A value known only by its key digest (a type that does not describe itself).
    Digest(Digest),
}

impl Value {
    /// A total order over values, used to sort map entries and set elements: variants order as
    /// declared, floats by [`f64::total_cmp`].
    #[must_use]
    pub fn total_cmp(&self, other: &Self) -> Ordering {
        use Value as V;
        fn rank(v: &Value) -> u8 {
            match v {
                V::Null => 0,
                V::Bool(_) => 1,
                V::Int(_) => 2,
                V::UInt(_) => 3,
                V::Float(_) => 4,
                V::Char(_) => 5,
                V::Str(_) => 6,
                V::Bytes(_) => 7,
                V::Seq(_) => 8,
                V::Map(_) => 9,
                V::Struct(_) => 10,
                V::Variant(..) => 11,
                V::Digest(_) => 12,
            }
        }
        fn seq(a: &[Value], b: &[Value]) -> Ordering {
            for (x, y) in a.iter().zip(b) {
                let o = x.total_cmp(y);
                if o != Ordering::Equal {
                    return o;
                }
            }
            a.len().cmp(&b.len())
        }
        match (self, other) {
            (V::Null, V::Null) => Ordering::Equal,
            (V::Bool(a), V::Bool(b)) => a.cmp(b),
            (V::Int(a), V::Int(b)) => a.cmp(b),
            (V::UInt(a), V::UInt(b)) => a.cmp(b),
            (V::Float(a), V::Float(b)) => a.total_cmp(b),
            (V::Char(a), V::Char(b)) => a.cmp(b),
            (V::Str(a), V::Str(b)) => a.cmp(b),
            (V::Bytes(a), V::Bytes(b)) => a.cmp(b),
            (V::Seq(a), V::Seq(b)) => seq(a, b),
            (V::Map(a), V::Map(b)) => {
                for ((ka, va), (kb, vb)) in a.iter().zip(b) {
                    let o = ka.total_cmp(kb).then_with(|| va.total_cmp(vb));
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                a.len().cmp(&b.len())
            }
            (V::Struct(a), V::Struct(b)) => {
                for ((na, va), (nb, vb)) in a.iter().zip(b) {
                    let o = na.cmp(nb).then_with(|| va.total_cmp(vb));
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                a.len().cmp(&b.len())
            }
            (V::Variant(na, va), V::Variant(nb, vb)) => na.cmp(nb).then_with(|| va.total_cmp(vb)),
            (V::Digest(a), V::Digest(b)) => a.cmp(b),
            _ => rank(self).cmp(&rank(other)),
        }
    }

    /// The field `name` of a [`Value::Struct`], or `None`.
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Struct(fields) => fields.iter().find_map(|(n, v)| (n == name).then_some(v)),
            _ => None,
        }
    }

    /// The value as an `f64`, for integers and floats.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(i) => Some(i as f64),
            Value::UInt(u) => Some(u as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    /// The value as an `i128`, for integers.
    #[must_use]
    pub fn as_i128(&self) -> Option<i128> {
        match *self {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The JSON form, as the `sql` backend stores arguments and metadata (`docs/format.md`, "SQL
    /// backend"): numbers as numbers (integers beyond 64 bits as strings), structs and maps as
    /// objects (map keys in their display form), enum variants as `{"Variant": payload}` (a bare
    /// string for unit variants), bytes and digests as hexadecimal strings.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => i64::try_from(*i).map_or_else(|_| J::String(i.to_string()), J::from),
            Value::UInt(u) => u64::try_from(*u).map_or_else(|_| J::String(u.to_string()), J::from),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or_else(|| J::String(f.to_string()), J::Number)
            }
            Value::Char(c) => J::String(c.to_string()),
            Value::Str(s) => J::String(s.clone()),
            Value::Bytes(b) => J::String(hex(b)),
            Value::Seq(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| {
                        let key = match k {
                            Value::Str(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (key, v.to_json())
                    })
                    .collect(),
            ),
            Value::Struct(fields) => J::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
            Value::Variant(name, payload) => match **payload {
                Value::Null => J::String(name.clone()),
                ref p => {
                    let mut m = serde_json::Map::new();
                    m.insert(name.clone(), p.to_json());
                    J::Object(m)
                }
            },
            Value::Digest(d) => J::String(d.to_hex()),
        }
    }

    /// The value as a string slice, for [`Value::Str`].
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list<T>(
            f: &mut fmt::Formatter<'_>,
            open: &str,
            items: &[T],
            close: &str,
            mut each: impl FnMut(&mut fmt::Formatter<'_>, &T) -> fmt::Result,
        ) -> fmt::Result {
            f.write_str(open)?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                each(f, item)?;
            }
            f.write_str(close)
        }
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Char(c) => write!(f, "{c:?}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Bytes(b) => write!(f, "<{} bytes>", b.len()),
            Value::Seq(items) => list(f, "[", items, "]", |f, v| write!(f, "{v}")),
            Value::Map(entries) => list(f, "{", entries, "}", |f, (k, v)| write!(f, "{k}: {v}")),
            Value::Struct(fields) => list(f, "{", fields, "}", |f, (k, v)| write!(f, "{k}: {v}")),
            Value::Variant(name, payload) => match **payload {
                Value::Null => f.write_str(name),
                ref p => write!(f, "{name}({p})"),
            },
            Value::Digest(d) => write!(f, "#{}", d.hex_prefix(16)),
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self { Value::Int(i128::from(v)) }
        }
    )*};
}
from_int!(i8, i16, i32, i64, i128, u8, u16, u32, u64);

impl From<u128> for Value {
    fn from(v: u128) -> Self {
        i128::try_from(v).map_or(Value::UInt(v), Value::Int)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        // usize is at most 64 bits on every supported platform.
        Value::from(v as u128)
    }
}

impl From<isize> for Value {
    fn from(v: isize) -> Self {
        Value::Int(v as i128)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Float(f64::from(v))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<char> for Value {
    fn from(v: char) -> Self {
        Value::Char(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}

/// Why a [`Value`] is not a value of the type asked for ([`Value::deserialize_into`],
/// [`crate::CallRecord::arg`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(String);

impl serde::de::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError(msg.to_string())
    }
}

impl Value {
    /// The value as a `T`, for any type whose serde form matches: integers as any integer type
    /// they fit, structs and maps as structs or maps, variants as enums, and so on.
    ///
    /// ```
    /// use fleche_storage::Value;
    ///
    /// let v = Value::Seq(vec![Value::from(1u8), Value::from(2u8)]);
    /// assert_eq!(v.deserialize_into::<Vec<u64>>(), Ok(vec![1, 2]));
    /// assert!(v.deserialize_into::<String>().is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// What does not match, as serde says it.
    pub fn deserialize_into<T: serde::de::DeserializeOwned>(&self) -> Result<T, ValueError> {
        T::deserialize(ValueDeserializer(self))
    }
}

/// A [`Value`] read through serde.
#[derive(Clone, Copy)]
struct ValueDeserializer<'a>(&'a Value);

impl<'de> serde::de::IntoDeserializer<'de, ValueError> for ValueDeserializer<'de> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> serde::Deserializer<'de> for ValueDeserializer<'de> {
    type Error = ValueError;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        use serde::de::value::{MapDeserializer, SeqDeserializer};
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => match (i64::try_from(*i), u64::try_from(*i)) {
                (_, Ok(u)) => visitor.visit_u64(u),
                (Ok(s), _) => visitor.visit_i64(s),
                _ => visitor.visit_i128(*i),
            },
            Value::UInt(u) => visitor.visit_u128(*u),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Char(c) => visitor.visit_char(*c),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Bytes(b) => visitor.visit_borrowed_bytes(b),
            Value::Seq(items) => {
                let mut seq = SeqDeserializer::new(items.iter().map(ValueDeserializer));
                let v = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(v)
            }
            Value::Map(entries) => {
                let mut map = MapDeserializer::new(
                    entries
                        .iter()
                        .map(|(k, v)| (ValueDeserializer(k), ValueDeserializer(v))),
                );
                let v = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(v)
            }
            Value::Struct(fields) => {
                let mut map = MapDeserializer::new(
                    fields
                        .iter()
                        .map(|(k, v)| (k.as_str(), ValueDeserializer(v))),
                );
                let v = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(v)
            }
            Value::Variant(name, payload) => {
                let mut map = MapDeserializer::new(std::iter::once((
                    name.as_str(),
                    ValueDeserializer(payload),
                )));
                let v = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(v)
            }
            Value::Digest(d) => visitor.visit_string(d.to_hex()),
        }
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self.0 {
            Value::Null | Value::Struct(_) => visitor.visit_unit(),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self.0 {
            Value::Variant(name, payload) => visitor.visit_enum(VariantAccess(name, payload)),
            Value::Str(name) => visitor.visit_enum(serde::de::IntoDeserializer::into_deserializer(
                name.as_str(),
            )),
            other => Err(serde::de::Error::custom(format!(
                "expected an enum variant, found {other}"
            ))),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// A variant and its payload, for `deserialize_enum`.
struct VariantAccess<'a>(&'a str, &'a Value);

impl<'de> serde::de::EnumAccess<'de> for VariantAccess<'de> {
    type Error = ValueError;
    type Variant = ValueDeserializer<'de>;
    fn variant_seed<S: serde::de::DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), ValueError> {
        let name =
            seed.deserialize(serde::de::IntoDeserializer::<ValueError>::into_deserializer(self.0))?;
        Ok((name, ValueDeserializer(self.1)))
    }
}

impl<'de> serde::de::VariantAccess<'de> for ValueDeserializer<'de> {
    type Error = ValueError;
    fn unit_variant(self) -> Result<(), ValueError> {
        Ok(())
    }
    fn newtype_variant_seed<S: serde::de::DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<S::Value, ValueError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: serde::de::Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        serde::Deserializer::deserialize_any(self, visitor)
    }
    fn struct_variant<V: serde::de::Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        serde::Deserializer::deserialize_any(self, visitor)
    }
}
