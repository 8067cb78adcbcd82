//! The value format (`docs/format.md`, "Values", version 2): MessagePack as `rmp-serde` writes it
//! with named struct fields, except that a non-empty sequence whose elements are all of one
//! primitive numeric type (or `bool`) is one little-endian block instead of an array of
//! individually tagged numbers.
//!
//! | elements | stored as |
//! |---|---|
//! | `u8` | a MessagePack binary (`bin 8/16/32`) of the bytes |
//! | `f64` `f32` `i64` `i32` `i16` `i8` `u64` `u32` `u16` `bool` | a MessagePack extension (`fixext`, `ext 8/16/32`) of type [`BlockKind::ext_type`], whose payload is the elements in order, little-endian, `bool` as one byte 0 or 1 |
//!
//! This covers `Vec<T>`, slices, arrays, `VecDeque<T>`, `Box<[T]>` and sets of those `T`, at any
//! depth: in structs, enums, maps and other sequences. Everything else is exactly the
//! MessagePack `rmp_serde::to_vec_named` writes, so values of version 1 without numeric
//! sequences keep their bytes and their digests, and version-1 arrays still decode.
//!
//! [`to_vec`] and [`from_slice`] work for any serde type. [`encode_vec`] and [`decode_vec`] (and
//! [`read_vec`], which reads a block from a stream straight into the vector's memory) are the
//! fast paths for a `Vec<T>` of a block type: one copy each way, with the same bytes as the
//! general path.

mod de;
mod ser;

use std::io::Read;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use de::Deserializer;
pub use ser::Serializer;

/// The element type of a numeric block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlockKind {
    /// `f64`, extension type `0x50`.
    F64,
    /// `f32`, extension type `0x51`.
    F32,
    /// `i64`, extension type `0x52`.
    I64,
    /// `i32`, extension type `0x53`.
    I32,
    /// `i16`, extension type `0x54`.
    I16,
    /// `i8`, extension type `0x55`.
    I8,
    /// `u64`, extension type `0x56`.
    U64,
    /// `u32`, extension type `0x57`.
    U32,
    /// `u16`, extension type `0x58`.
    U16,
    /// `bool` (one byte, 0 or 1), extension type `0x59`.
    Bool,
    /// `u8`: a MessagePack binary, not an extension.
    U8,
}

impl BlockKind {
    /// Every kind.
    pub const ALL: [BlockKind; 11] = [
        BlockKind::F64,
        BlockKind::F32,
        BlockKind::I64,
        BlockKind::I32,
        BlockKind::I16,
        BlockKind::I8,
        BlockKind::U64,
        BlockKind::U32,
        BlockKind::U16,
        BlockKind::Bool,
        BlockKind::U8,
    ];

    /// The bytes one element takes.
    #[must_use]
    pub const fn width(self) -> usize {
        match self {
            BlockKind::F64 | BlockKind::I64 | BlockKind::U64 => 8,
            BlockKind::F32 | BlockKind::I32 | BlockKind::U32 => 4,
            BlockKind::I16 | BlockKind::U16 => 2,
            BlockKind::I8 | BlockKind::U8 | BlockKind::Bool => 1,
        }
    }

    /// The MessagePack extension type of the block (`None` for `u8`, stored as a binary).
    #[must_use]
    pub const fn ext_type(self) -> Option<i8> {
        Some(match self {
            BlockKind::F64 => 0x50,
            BlockKind::F32 => 0x51,
            BlockKind::I64 => 0x52,
            BlockKind::I32 => 0x53,
            BlockKind::I16 => 0x54,
            BlockKind::I8 => 0x55,
            BlockKind::U64 => 0x56,
            BlockKind::U32 => 0x57,
            BlockKind::U16 => 0x58,
            BlockKind::Bool => 0x59,
            BlockKind::U8 => return None,
        })
    }

    /// The kind of extension type `t`, if it is a block.
    #[must_use]
    pub const fn from_ext_type(t: i8) -> Option<BlockKind> {
        Some(match t {
            0x50 => BlockKind::F64,
            0x51 => BlockKind::F32,
            0x52 => BlockKind::I64,
            0x53 => BlockKind::I32,
            0x54 => BlockKind::I16,
            0x55 => BlockKind::I8,
            0x56 => BlockKind::U64,
            0x57 => BlockKind::U32,
            0x58 => BlockKind::U16,
            0x59 => BlockKind::Bool,
            _ => return None,
        })
    }

    /// The name used in documentation and HDF5 layouts: `f64`, `i32`, `bool`, ...
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            BlockKind::F64 => "f64",
            BlockKind::F32 => "f32",
            BlockKind::I64 => "i64",
            BlockKind::I32 => "i32",
            BlockKind::I16 => "i16",
            BlockKind::I8 => "i8",
            BlockKind::U64 => "u64",
            BlockKind::U32 => "u32",
            BlockKind::U16 => "u16",
            BlockKind::Bool => "bool",
            BlockKind::U8 => "u8",
        }
    }
}

/// Why a value cannot be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The value's `Serialize` implementation failed.
    #[error("{0}")]
    Custom(String),
    /// A string, binary, block, array or map longer than MessagePack can say (2^32 - 1).
    #[error("a length of {0} does not fit MessagePack's 32 bits")]
    TooLong(usize),
}

impl serde::ser::Error for EncodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        EncodeError::Custom(msg.to_string())
    }
}

/// Why bytes cannot be decoded as a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes end inside a value.
    #[error("unexpected end of data at byte {at}")]
    Eof {
        /// Where the missing bytes should be.
        at: usize,
    },
    /// A marker or extension type this format does not have, or a block whose length is not a
    /// multiple of its element width, or a `bool` byte other than 0 and 1.
    #[error("invalid data at byte {at}: {what}")]
    Invalid {
        /// Where.
        at: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// Nested deeper than [`crate::codec::MAX_DECODE_DEPTH`].
    #[error("nested deeper than {} levels", crate::codec::MAX_DECODE_DEPTH)]
    TooDeep,
    /// Bytes after the value.
    #[error("{0} bytes after the value")]
    Trailing(usize),
    /// The bytes are well formed but not a value of the type asked for.
    #[error("{0}")]
    Custom(String),
    /// A stream failed while a block was read from it.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
}

impl serde::de::Error for DecodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        DecodeError::Custom(msg.to_string())
    }
}

/// Encodes `value` in the value format.
///
/// # Errors
///
/// What the value's `Serialize` reports, or a length MessagePack cannot hold.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut ser = Serializer::new();
    value.serialize(&mut ser)?;
    Ok(ser.into_inner())
}

/// Decodes `bytes` (one whole value, nothing after it) as a `T`, nesting at most
/// [`crate::codec::MAX_DECODE_DEPTH`] deep and allocating nothing a declared length asks for
/// before its bytes are there.
///
/// # Errors
///
/// Bytes that are not one value of the format, or not a `T`.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut de = Deserializer::new(bytes);
    let value = T::deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

mod sealed {
    pub trait Sealed {}
}

/// An element type of a numeric block: `f64`, `f32`, `i64`, `i32`, `i16`, `i8`, `u64`, `u32`,
/// `u16`, `u8` and `bool`. Sealed.
pub trait Element: sealed::Sealed + Copy + Send + Sync + 'static {
    /// The block kind.
    const KIND: BlockKind;
    /// Appends the elements, little-endian.
    fn write_le(values: &[Self], out: &mut Vec<u8>);
    /// The elements of a block's payload (`bytes.len()` a multiple of the width), or `None`
    /// when a byte is not a valid element (a `bool` other than 0 or 1).
    fn from_le(bytes: &[u8]) -> Option<Vec<Self>>;
    /// Reads `n` elements from `reader` straight into a new vector's memory.
    ///
    /// # Errors
    ///
    /// The reader's, or [`DecodeError::Invalid`] for an invalid element.
    fn read_le(reader: &mut dyn Read, n: usize) -> Result<Vec<Self>, DecodeError>;
}

macro_rules! numeric_element {
    ($($t:ty => $kind:ident),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const KIND: BlockKind = BlockKind::$kind;
            fn write_le(values: &[Self], out: &mut Vec<u8>) {
                if cfg!(target_endian = "little") {
                    out.extend_from_slice(bytemuck::cast_slice(values));
                } else {
                    out.reserve(values.len() * size_of::<$t>());
                    for v in values {
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
            fn from_le(bytes: &[u8]) -> Option<Vec<Self>> {
                let mut v: Vec<$t> = vec![<$t>::default(); bytes.len() / size_of::<$t>()];
                bytemuck::cast_slice_mut::<$t, u8>(&mut v).copy_from_slice(bytes);
                from_le_in_place(&mut v);
                Some(v)
            }
            fn read_le(reader: &mut dyn Read, n: usize) -> Result<Vec<Self>, DecodeError> {
                let mut v: Vec<$t> = vec![<$t>::default(); n];
                reader.read_exact(bytemuck::cast_slice_mut::<$t, u8>(&mut v))?;
                from_le_in_place(&mut v);
                Ok(v)
            }
        }
    )*};
}

numeric_element!(f64 => F64, f32 => F32, i64 => I64, i32 => I32, i16 => I16, i8 => I8,
    u64 => U64, u32 => U32, u16 => U16, u8 => U8);

/// Little-endian element bytes read as native values: nothing to do on little-endian machines.
fn from_le_in_place<T: bytemuck::Pod>(values: &mut [T]) {
    if cfg!(target_endian = "big") {
        for v in values {
            bytemuck::bytes_of_mut(v).reverse();
        }
    }
}

impl sealed::Sealed for bool {}
impl Element for bool {
    const KIND: BlockKind = BlockKind::Bool;
    fn write_le(values: &[Self], out: &mut Vec<u8>) {
        out.extend(values.iter().map(|&b| u8::from(b)));
    }
    fn from_le(bytes: &[u8]) -> Option<Vec<Self>> {
        bytes
            .iter()
            .map(|&b| match b {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            })
            .collect()
    }
    fn read_le(reader: &mut dyn Read, n: usize) -> Result<Vec<Self>, DecodeError> {
        let mut bytes = vec![0u8; n];
        reader.read_exact(&mut bytes)?;
        Self::from_le(&bytes).ok_or(DecodeError::Invalid {
            at: 0,
            what: "a bool block byte other than 0 and 1",
        })
    }
}

/// The header of a block of `len` payload bytes of `kind`, shortest form.
pub(crate) fn block_header(kind: BlockKind, len: usize) -> Result<([u8; 6], usize), EncodeError> {
    let mut h = [0u8; 6];
    let n = u32::try_from(len).map_err(|_| EncodeError::TooLong(len))?;
    let Some(t) = kind.ext_type() else {
        // bin 8/16/32
        return Ok(match n {
            0..=0xff => {
                h[..2].copy_from_slice(&[0xc4, n as u8]);
                (h, 2)
            }
            0x100..=0xffff => {
                h[0] = 0xc5;
                h[1..3].copy_from_slice(&(n as u16).to_be_bytes());
                (h, 3)
            }
            _ => {
                h[0] = 0xc6;
                h[1..5].copy_from_slice(&n.to_be_bytes());
                (h, 5)
            }
        });
    };
    let t = t as u8;
    Ok(match n {
        1 => ([0xd4, t, 0, 0, 0, 0], 2),
        2 => ([0xd5, t, 0, 0, 0, 0], 2),
        4 => ([0xd6, t, 0, 0, 0, 0], 2),
        8 => ([0xd7, t, 0, 0, 0, 0], 2),
        16 => ([0xd8, t, 0, 0, 0, 0], 2),
        0..=0xff => ([0xc7, n as u8, t, 0, 0, 0], 3),
        0x100..=0xffff => {
            let b = (n as u16).to_be_bytes();
            ([0xc8, b[0], b[1], t, 0, 0], 4)
        }
        _ => {
            let b = n.to_be_bytes();
            ([0xc9, b[0], b[1], b[2], b[3], t], 6)
        }
    })
}

/// What a block header says: its kind, where its payload starts and how long it is. `None`
/// when `bytes` does not start with a block (of any kind) header.
#[must_use]
pub fn block_at(bytes: &[u8]) -> Option<(BlockKind, usize, usize)> {
    let b = |i: usize| bytes.get(i).copied();
    let be = |from: usize, n: usize| -> Option<usize> {
        let s = bytes.get(from..from + n)?;
        Some(s.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    };
    let (kind, start, len) = match b(0)? {
        0xc4 => (BlockKind::U8, 2, be(1, 1)?),
        0xc5 => (BlockKind::U8, 3, be(1, 2)?),
        0xc6 => (BlockKind::U8, 5, be(1, 4)?),
        m @ 0xd4..=0xd8 => (
            BlockKind::from_ext_type(b(1)? as i8)?,
            2,
            1usize << (m - 0xd4),
        ),
        0xc7 => (BlockKind::from_ext_type(b(2)? as i8)?, 3, be(1, 1)?),
        0xc8 => (BlockKind::from_ext_type(b(3)? as i8)?, 4, be(1, 2)?),
        0xc9 => (BlockKind::from_ext_type(b(5)? as i8)?, 6, be(1, 4)?),
        _ => return None,
    };
    Some((kind, start, len))
}

/// Encodes a `Vec<E>` (or slice) of a block type: the same bytes as [`to_vec`], with one copy.
///
/// # Errors
///
/// [`EncodeError::TooLong`] past 4 GiB of elements.
pub fn encode_vec<E: Element>(values: &[E]) -> Result<Vec<u8>, EncodeError> {
    if values.is_empty() {
        return Ok(vec![0x90]);
    }
    let len = values.len() * E::KIND.width();
    let (h, n) = block_header(E::KIND, len)?;
    let mut out = Vec::with_capacity(n + len);
    out.extend_from_slice(&h[..n]);
    E::write_le(values, &mut out);
    Ok(out)
}

/// Decodes a `Vec<E>`: a block of `E` with one copy; anything else (a version-1 array, an empty
/// array, a block of another type) through [`from_slice`].
///
/// # Errors
///
/// As [`from_slice`].
pub fn decode_vec<E: Element + DeserializeOwned>(bytes: &[u8]) -> Result<Vec<E>, DecodeError> {
    if let Some((kind, start, len)) = block_at(bytes)
        && kind == E::KIND
        && bytes.len() == start + len
        && len % kind.width() == 0
    {
        return E::from_le(&bytes[start..]).ok_or(DecodeError::Invalid {
            at: start,
            what: "a bool block byte other than 0 and 1",
        });
    }
    from_slice(bytes)
}

/// Decodes a `Vec<E>` from a stream of exactly `len` bytes: a block of `E` is read straight into
/// the vector's memory after its header; anything else is read whole and decoded by
/// [`from_slice`]. Nothing larger than `len` is allocated.
///
/// # Errors
///
/// As [`from_slice`], or the stream's error.
pub fn read_vec<E: Element + DeserializeOwned>(
    reader: &mut dyn Read,
    len: u64,
) -> Result<Vec<E>, DecodeError> {
    let total = usize::try_from(len).map_err(|_| DecodeError::Invalid {
        at: 0,
        what: "longer than this machine can address",
    })?;
    let mut head = [0u8; 6];
    let got = total.min(6);
    reader.read_exact(&mut head[..got])?;
    if let Some((kind, start, n)) = block_at(&head[..got])
        && kind == E::KIND
        && total.checked_sub(start) == Some(n)
        && n % kind.width() == 0
    {
        // The header's bytes past `start` (if any) are the first payload bytes.
        let mut rest = std::io::Cursor::new(&head[start..got]).chain(reader);
        return E::read_le(&mut rest, n / kind.width());
    }
    let mut bytes = Vec::with_capacity(total.min(1 << 20));
    bytes.extend_from_slice(&head[..got]);
    reader.take(len - got as u64).read_to_end(&mut bytes)?;
    if bytes.len() != total {
        return Err(DecodeError::Eof { at: bytes.len() });
    }
    from_slice(&bytes)
}

#[cfg(test)]
mod tests;
