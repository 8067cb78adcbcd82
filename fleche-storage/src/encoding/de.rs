//! The value format's deserializer, over a byte slice: MessagePack as `rmp_serde` reads it,
//! plus numeric blocks, which are visited as sequences of their elements.
//!
//! Nothing is allocated for a declared length: strings and binaries are borrowed from the input
//! after their length has been checked against what is left, arrays and maps hand out elements
//! one by one (serde caps what a collection preallocates), and a block's element count is its
//! payload's length, which is there.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

use super::{BlockKind, DecodeError, block_at};
use crate::codec::MAX_DECODE_DEPTH;

/// Reads one value of the format from a byte slice.
#[derive(Debug)]
pub struct Deserializer<'de> {
    input: &'de [u8],
    pos: usize,
    depth: usize,
}

impl<'de> Deserializer<'de> {
    /// A deserializer reading `input`.
    #[must_use]
    pub fn new(input: &'de [u8]) -> Self {
        Self {
            input,
            pos: 0,
            depth: 0,
        }
    }

    /// Checks that the whole input was read.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Trailing`] when bytes are left.
    pub fn end(&self) -> Result<(), DecodeError> {
        match self.input.len() - self.pos {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }

    fn eof(&self) -> DecodeError {
        DecodeError::Eof { at: self.pos }
    }

    fn invalid(&self, what: &'static str) -> DecodeError {
        DecodeError::Invalid { at: self.pos, what }
    }

    #[inline]
    fn peek(&self) -> Result<u8, DecodeError> {
        self.input.get(self.pos).copied().ok_or_else(|| self.eof())
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'de [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.eof())?;
        let s = self.input.get(self.pos..end).ok_or_else(|| self.eof())?;
        self.pos = end;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn len(&mut self, n: usize) -> Result<usize, DecodeError> {
        let v = self.be(n)?;
        usize::try_from(v).map_err(|_| self.eof())
    }

    fn enter(&mut self) -> Result<(), DecodeError> {
        self.depth += 1;
        if self.depth > MAX_DECODE_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        Ok(())
    }

    /// The block starting here, if any: its kind and payload, consumed.
    fn block(&mut self) -> Result<Option<(BlockKind, &'de [u8])>, DecodeError> {
        let Some((kind, start, len)) = block_at(&self.input[self.pos..]) else {
            return Ok(None);
        };
        self.pos += start;
        let payload = self.take(len)?;
        if len % kind.width() != 0 {
            return Err(self.invalid("a block whose length is not a multiple of its element width"));
        }
        Ok(Some((kind, payload)))
    }

    fn visit_block<V: Visitor<'de>>(
        &mut self,
        kind: BlockKind,
        payload: &'de [u8],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.enter()?;
        let at = self.pos - payload.len();
        // One monomorphic loop per element type: no per-element dispatch on the kind.
        let v = match kind {
            BlockKind::F64 => visitor.visit_seq(Elements::<f64>::new(payload, at)),
            BlockKind::F32 => visitor.visit_seq(Elements::<f32>::new(payload, at)),
            BlockKind::I64 => visitor.visit_seq(Elements::<i64>::new(payload, at)),
            BlockKind::I32 => visitor.visit_seq(Elements::<i32>::new(payload, at)),
            BlockKind::I16 => visitor.visit_seq(Elements::<i16>::new(payload, at)),
            BlockKind::I8 => visitor.visit_seq(Elements::<i8>::new(payload, at)),
            BlockKind::U64 => visitor.visit_seq(Elements::<u64>::new(payload, at)),
            BlockKind::U32 => visitor.visit_seq(Elements::<u32>::new(payload, at)),
            BlockKind::U16 => visitor.visit_seq(Elements::<u16>::new(payload, at)),
            BlockKind::U8 => visitor.visit_seq(Elements::<u8>::new(payload, at)),
            BlockKind::Bool => visitor.visit_seq(Elements::<bool>::new(payload, at)),
        }?;
        self.depth -= 1;
        Ok(v)
    }

    fn visit_array<V: Visitor<'de>>(
        &mut self,
        n: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.enter()?;
        let mut access = Items { de: self, left: n };
        let v = visitor.visit_seq(&mut access)?;
        if access.left != 0 {
            return Err(DecodeError::Custom(format!(
                "{} array elements were not read",
                access.left
            )));
        }
        self.depth -= 1;
        Ok(v)
    }

    fn visit_map_of<V: Visitor<'de>>(
        &mut self,
        n: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.enter()?;
        let mut access = Items { de: self, left: n };
        let v = visitor.visit_map(&mut access)?;
        if access.left != 0 {
            return Err(DecodeError::Custom(format!(
                "{} map entries were not read",
                access.left
            )));
        }
        self.depth -= 1;
        Ok(v)
    }

    /// An array or map header here: `(is_map, count)`, consumed; `None` if there is none.
    fn collection(&mut self) -> Result<Option<(bool, usize)>, DecodeError> {
        let m = self.peek()?;
        let found = match m {
            0x80..=0x8f => (true, usize::from(m & 0x0f)),
            0x90..=0x9f => (false, usize::from(m & 0x0f)),
            0xdc..=0xdf => {
                self.pos += 1;
                let n = self.len(if m & 1 == 0 { 2 } else { 4 })?;
                return Ok(Some((m >= 0xde, n)));
            }
            _ => return Ok(None),
        };
        self.pos += 1;
        Ok(Some(found))
    }

    fn str_len(&mut self, m: u8) -> Result<Option<usize>, DecodeError> {
        Ok(Some(match m {
            0xa0..=0xbf => {
                self.pos += 1;
                usize::from(m & 0x1f)
            }
            0xd9..=0xdb => {
                self.pos += 1;
                self.len(1 << (m - 0xd9))?
            }
            _ => return Ok(None),
        }))
    }

    fn any<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, DecodeError> {
        let m = self.peek()?;
        match m {
            0x00..=0x7f => {
                self.pos += 1;
                visitor.visit_u64(u64::from(m))
            }
            0xe0..=0xff => {
                self.pos += 1;
                visitor.visit_i64(i64::from(m as i8))
            }
            0x80..=0x9f | 0xdc..=0xdf => match self.collection()? {
                Some((true, n)) => self.visit_map_of(n, visitor),
                Some((false, n)) => self.visit_array(n, visitor),
                None => Err(self.invalid("a collection header")),
            },
            0xa0..=0xbf | 0xd9..=0xdb => {
                let n = self.str_len(m)?.unwrap_or(0);
                let at = self.pos;
                let bytes = self.take(n)?;
                match std::str::from_utf8(bytes) {
                    Ok(s) => visitor.visit_borrowed_str(s),
                    Err(_) => Err(DecodeError::Invalid {
                        at,
                        what: "a string that is not UTF-8",
                    }),
                }
            }
            0xc0 => {
                self.pos += 1;
                visitor.visit_unit()
            }
            0xc2 | 0xc3 => {
                self.pos += 1;
                visitor.visit_bool(m == 0xc3)
            }
            0xc4..=0xc9 | 0xd4..=0xd8 => match self.block()? {
                Some((kind, payload)) => self.visit_block(kind, payload, visitor),
                None => Err(self.invalid("an extension type this format does not have")),
            },
            0xca => {
                self.pos += 1;
                let b = self.take(4)?;
                visitor.visit_f32(f32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            0xcb => {
                self.pos += 1;
                let v = self.be(8)?;
                visitor.visit_f64(f64::from_bits(v))
            }
            0xcc..=0xcf => {
                self.pos += 1;
                let v = self.be(1 << (m - 0xcc))?;
                visitor.visit_u64(v)
            }
            0xd0..=0xd3 => {
                self.pos += 1;
                let n = 1usize << (m - 0xd0);
                let v = self.be(n)?;
                // Sign-extend from n bytes.
                let shift = 64 - 8 * n as u32;
                visitor.visit_i64(((v << shift) as i64) >> shift)
            }
            0xc1 => Err(self.invalid("the reserved marker 0xc1")),
        }
    }

    /// A binary's bytes here, consumed, if there is a binary.
    fn bin(&mut self) -> Result<Option<&'de [u8]>, DecodeError> {
        match self.peek()? {
            0xc4..=0xc6 => Ok(self.block()?.map(|(_, payload)| payload)),
            _ => Ok(None),
        }
    }
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = DecodeError;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.any(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        if self.peek()? == 0xc0 {
            self.pos += 1;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        match self.peek()? {
            0x90 | 0xc0 => {
                self.pos += 1;
                visitor.visit_unit()
            }
            _ => self.any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.bin()? {
            Some(b) => {
                let b: [u8; 16] = b
                    .try_into()
                    .map_err(|_| self.invalid("an i128 binary of other than 16 bytes"))?;
                visitor.visit_i128(i128::from_be_bytes(b))
            }
            None => self.any(visitor),
        }
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.bin()? {
            Some(b) => {
                let b: [u8; 16] = b
                    .try_into()
                    .map_err(|_| self.invalid("a u128 binary of other than 16 bytes"))?;
                visitor.visit_u128(u128::from_be_bytes(b))
            }
            None => self.any(visitor),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.bin()? {
            Some(b) => visitor.visit_borrowed_bytes(b),
            None => self.any(visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        let m = self.peek()?;
        if let Some(n) = self.str_len(m)? {
            let at = self.pos;
            let s = std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError::Invalid {
                at,
                what: "a variant name that is not UTF-8",
            })?;
            return visitor.visit_enum(s.into_deserializer());
        }
        match self.collection()? {
            Some((true, 1)) => {
                self.enter()?;
                let v = visitor.visit_enum(Variant { de: &mut *self })?;
                self.depth -= 1;
                Ok(v)
            }
            _ => Err(self.invalid("an enum: a variant name, or a map of one entry")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        de::Deserializer::deserialize_any(&mut *self, de::IgnoredAny)?;
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 u8 u16 u32 u64 f32 f64 char str string unit seq tuple tuple_struct
        map struct identifier
    }
}

/// The elements of an array, or the entries of a map.
struct Items<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for &mut Items<'_, 'de> {
    type Error = DecodeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        // Never more than the bytes left could hold: a claim is not an allocation.
        Some(self.left.min(self.de.input.len() - self.de.pos))
    }
}

impl<'de> de::MapAccess<'de> for &mut Items<'_, 'de> {
    type Error = DecodeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        seed.deserialize(&mut *self.de)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min((self.de.input.len() - self.de.pos) / 2))
    }
}

/// An enum written as a map of one entry: `{variant: payload}`.
struct Variant<'a, 'de> {
    de: &'a mut Deserializer<'de>,
}

impl<'de> de::EnumAccess<'de> for Variant<'_, 'de> {
    type Error = DecodeError;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self), DecodeError> {
        let v = seed.deserialize(&mut *self.de)?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = DecodeError;
    fn unit_variant(self) -> Result<(), DecodeError> {
        de::Deserialize::deserialize(&mut *self.de)
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, DecodeError> {
        seed.deserialize(&mut *self.de)
    }
    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        de::Deserializer::deserialize_any(&mut *self.de, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        de::Deserializer::deserialize_any(&mut *self.de, visitor)
    }
}

/// An element type of a block, read from its little-endian bytes and handed to a visitor as
/// the primitive it is.
trait LeElement: Copy {
    const WIDTH: usize;
    /// The element in `bytes` (exactly `WIDTH` of them), or `None` if they are no element.
    fn read(bytes: &[u8]) -> Option<Self>;
    fn visit<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError>;
}

macro_rules! le_element {
    ($($t:ty => $visit:ident),* $(,)?) => {$(
        impl LeElement for $t {
            const WIDTH: usize = size_of::<$t>();
            #[inline(always)]
            fn read(bytes: &[u8]) -> Option<Self> {
                bytes.try_into().ok().map(<$t>::from_le_bytes)
            }
            #[inline(always)]
            fn visit<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
                visitor.$visit(self)
            }
        }
    )*};
}

le_element!(f64 => visit_f64, f32 => visit_f32, i64 => visit_i64, i32 => visit_i32,
    i16 => visit_i16, i8 => visit_i8, u64 => visit_u64, u32 => visit_u32, u16 => visit_u16,
    u8 => visit_u8);

impl LeElement for bool {
    const WIDTH: usize = 1;
    #[inline(always)]
    fn read(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0] => Some(false),
            [1] => Some(true),
            _ => None,
        }
    }
    #[inline(always)]
    fn visit<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_bool(self)
    }
}

/// The elements of a numeric block, one by one.
struct Elements<'de, T> {
    chunks: std::slice::ChunksExact<'de, u8>,
    /// Where the payload starts in the input, for errors.
    at: usize,
    _t: std::marker::PhantomData<T>,
}

impl<'de, T: LeElement> Elements<'de, T> {
    fn new(payload: &'de [u8], at: usize) -> Self {
        Self {
            chunks: payload.chunks_exact(T::WIDTH),
            at,
            _t: std::marker::PhantomData,
        }
    }
}

impl<'de, T: LeElement> de::SeqAccess<'de> for Elements<'de, T> {
    type Error = DecodeError;

    #[inline]
    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, DecodeError> {
        let Some(bytes) = self.chunks.next() else {
            return Ok(None);
        };
        match T::read(bytes) {
            Some(v) => seed.deserialize(One(v)).map(Some),
            None => Err(DecodeError::Invalid {
                at: self.at,
                what: "a bool block byte other than 0 and 1",
            }),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.chunks.len())
    }
}

/// One element of a block, as a deserializer of a primitive.
#[derive(Clone, Copy)]
struct One<T>(T);

impl<'de, T: LeElement> de::Deserializer<'de> for One<T> {
    type Error = DecodeError;

    #[inline(always)]
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.0.visit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_newtype_struct(self)
    }

    fn is_human_readable(&self) -> bool {
        false
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}
