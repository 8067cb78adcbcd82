//! The value format's serializer: `rmp_serde::to_vec_named`'s MessagePack, with numeric
//! sequences as blocks.
//!
//! A sequence is written speculatively as a block: its header's room is reserved, and each
//! element is offered to [`Probe`], which appends the element's little-endian bytes when it is a
//! primitive of the block's kind. The first element that is not (a struct, a string, a number
//! of another type) turns the sequence into an ordinary array: the elements already in the block
//! are rewritten as MessagePack, and the rest are serialized normally.

use serde::ser::{self, Impossible, Serialize};

use super::{BlockKind, EncodeError, block_header};

/// Writes values in the value format into a byte vector.
#[derive(Debug, Default)]
pub struct Serializer {
    out: Vec<u8>,
}

impl Serializer {
    /// A serializer writing into a new vector.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written.
    #[must_use]
    pub fn into_inner(self) -> Vec<u8> {
        self.out
    }

    fn uint(&mut self, v: u64) {
        write_uint(&mut self.out, v);
    }

    fn sint(&mut self, v: i64) {
        write_sint(&mut self.out, v);
    }

    fn str_header(&mut self, len: usize) -> Result<(), EncodeError> {
        let n = u32::try_from(len).map_err(|_| EncodeError::TooLong(len))?;
        match n {
            0..=31 => self.out.push(0xa0 | n as u8),
            32..=0xff => self.out.extend_from_slice(&[0xd9, n as u8]),
            0x100..=0xffff => {
                self.out.push(0xda);
                self.out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ => {
                self.out.push(0xdb);
                self.out.extend_from_slice(&n.to_be_bytes());
            }
        }
        Ok(())
    }

    fn array_header(&mut self, len: usize) -> Result<(), EncodeError> {
        let h = collection_header(len, 0x90, 0xdc)?;
        self.out.extend_from_slice(&h.0[..h.1]);
        Ok(())
    }

    fn map_header(&mut self, len: usize) -> Result<(), EncodeError> {
        let h = collection_header(len, 0x80, 0xde)?;
        self.out.extend_from_slice(&h.0[..h.1]);
        Ok(())
    }
}

/// The header of an array (`fix` = 0x90, `wide` = 0xdc) or map (0x80, 0xde) of `len` items.
fn collection_header(len: usize, fix: u8, wide: u8) -> Result<([u8; 5], usize), EncodeError> {
    let n = u32::try_from(len).map_err(|_| EncodeError::TooLong(len))?;
    let mut h = [0u8; 5];
    Ok(match n {
        0..=15 => {
            h[0] = fix | n as u8;
            (h, 1)
        }
        16..=0xffff => {
            h[0] = wide;
            h[1..3].copy_from_slice(&(n as u16).to_be_bytes());
            (h, 3)
        }
        _ => {
            h[0] = wide + 1;
            h[1..5].copy_from_slice(&n.to_be_bytes());
            (h, 5)
        }
    })
}

/// An unsigned integer in its shortest MessagePack form.
pub(crate) fn write_uint(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0x7f => out.push(v as u8),
        0x80..=0xff => out.extend_from_slice(&[0xcc, v as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        }
        _ => {
            out.push(0xcf);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// A signed integer in its shortest MessagePack form (non-negative ones as unsigned).
pub(crate) fn write_sint(out: &mut Vec<u8>, v: i64) {
    match v {
        0.. => write_uint(out, v as u64),
        -32..=-1 => out.push(v as i8 as u8),
        -128..=-33 => out.extend_from_slice(&[0xd0, v as i8 as u8]),
        -32768..=-129 => {
            out.push(0xd1);
            out.extend_from_slice(&(v as i16).to_be_bytes());
        }
        -2_147_483_648..=-32769 => {
            out.push(0xd2);
            out.extend_from_slice(&(v as i32).to_be_bytes());
        }
        _ => {
            out.push(0xd3);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// Rewrites the elements of a block payload as ordinary MessagePack items.
fn replay(kind: BlockKind, payload: &[u8], out: &mut Vec<u8>) {
    let w = kind.width();
    for c in payload.chunks_exact(w) {
        let mut b = [0u8; 8];
        b[..w].copy_from_slice(c);
        match kind {
            BlockKind::F64 => {
                out.push(0xcb);
                out.extend_from_slice(&f64::from_le_bytes(b).to_be_bytes());
            }
            BlockKind::F32 => {
                let mut f = [0u8; 4];
                f.copy_from_slice(&b[..4]);
                out.push(0xca);
                out.extend_from_slice(&f32::from_le_bytes(f).to_be_bytes());
            }
            BlockKind::I64 => write_sint(out, i64::from_le_bytes(b)),
            BlockKind::I32 => {
                write_sint(out, i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            BlockKind::I16 => write_sint(out, i64::from(i16::from_le_bytes([b[0], b[1]]))),
            BlockKind::I8 => write_sint(out, i64::from(b[0] as i8)),
            BlockKind::U64 | BlockKind::U32 | BlockKind::U16 | BlockKind::U8 => {
                write_uint(out, u64::from_le_bytes(b));
            }
            BlockKind::Bool => out.push(if b[0] != 0 { 0xc3 } else { 0xc2 }),
        }
    }
}

/// Room reserved for a block header: the longest, `ext 32`.
const RESERVED: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No element yet.
    Empty,
    /// Every element so far is of this kind, in the block after the reserved header.
    Block(BlockKind),
    /// An ordinary array; `header_at` is where its header goes when the length was not known.
    Array,
}

/// A sequence being written: a block until an element says otherwise.
#[derive(Debug)]
pub struct SeqSerializer<'a> {
    ser: &'a mut Serializer,
    /// Where the sequence starts in the output.
    start: usize,
    /// The declared length, if any.
    len: Option<usize>,
    state: State,
    /// Elements written so far.
    count: usize,
}

impl<'a> SeqSerializer<'a> {
    fn new(ser: &'a mut Serializer, len: Option<usize>) -> Self {
        let start = ser.out.len();
        ser.out.extend_from_slice(&[0; RESERVED]);
        Self {
            ser,
            start,
            len,
            state: State::Empty,
            count: 0,
        }
    }

    /// The block so far becomes an ordinary array.
    fn fall_back(&mut self) -> Result<(), EncodeError> {
        let tail = self.ser.out.split_off(self.start);
        let payload = &tail[RESERVED..];
        if let Some(n) = self.len {
            self.ser.array_header(n)?;
        }
        if let State::Block(kind) = self.state {
            replay(kind, payload, &mut self.ser.out);
        }
        self.state = State::Array;
        Ok(())
    }

    fn element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.count += 1;
        let want = match self.state {
            State::Array => return value.serialize(&mut *self.ser),
            State::Empty => None,
            State::Block(k) => Some(k),
        };
        match value.serialize(Probe {
            out: &mut self.ser.out,
            want,
        }) {
            Ok(kind) => {
                self.state = State::Block(kind);
                Ok(())
            }
            Err(NotElement) => {
                self.fall_back()?;
                value.serialize(&mut *self.ser)
            }
        }
    }

    fn finish(self) -> Result<(), EncodeError> {
        match self.state {
            State::Empty => {
                self.ser.out.truncate(self.start);
                self.ser.array_header(0)
            }
            State::Block(kind) => {
                let len = self.ser.out.len() - self.start - RESERVED;
                let (h, n) = block_header(kind, len)?;
                let out = &mut self.ser.out;
                if n < RESERVED {
                    out.copy_within(self.start + RESERVED.., self.start + n);
                    out.truncate(out.len() - (RESERVED - n));
                }
                out[self.start..self.start + n].copy_from_slice(&h[..n]);
                Ok(())
            }
            State::Array => {
                if self.len.is_none() {
                    let (h, n) = collection_header(self.count, 0x90, 0xdc)?;
                    self.ser
                        .out
                        .splice(self.start..self.start, h[..n].iter().copied());
                } else if self.len != Some(self.count) {
                    return Err(EncodeError::Custom(format!(
                        "a sequence declared {} elements and gave {}",
                        self.len.unwrap_or(0),
                        self.count
                    )));
                }
                Ok(())
            }
        }
    }
}

impl ser::SerializeSeq for SeqSerializer<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeTuple for SeqSerializer<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

/// An array, map or struct whose header is written (or, for a map of unknown length, inserted
/// at `start` when it ends).
#[derive(Debug)]
pub struct Compound<'a> {
    ser: &'a mut Serializer,
    /// For a map of unknown length: where its header goes, and how many entries it has.
    unknown: Option<(usize, usize)>,
}

impl Compound<'_> {
    fn finish(self) -> Result<(), EncodeError> {
        if let Some((at, count)) = self.unknown {
            let (h, n) = collection_header(count, 0x80, 0xde)?;
            self.ser.out.splice(at..at, h[..n].iter().copied());
        }
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), EncodeError> {
        if let Some((_, count)) = &mut self.unknown {
            *count += 1;
        }
        key.serialize(&mut *self.ser)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        ser::Serializer::serialize_str(&mut *self.ser, key)?;
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        ser::Serializer::serialize_str(&mut *self.ser, key)?;
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl<'a> ser::Serializer for &'a mut Serializer {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = SeqSerializer<'a>;
    type SerializeTuple = SeqSerializer<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<(), EncodeError> {
        self.out.push(if v { 0xc3 } else { 0xc2 });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), EncodeError> {
        self.sint(i64::from(v));
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), EncodeError> {
        self.sint(i64::from(v));
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), EncodeError> {
        self.sint(i64::from(v));
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), EncodeError> {
        self.sint(v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), EncodeError> {
        self.serialize_bytes(&v.to_be_bytes())
    }
    fn serialize_u8(self, v: u8) -> Result<(), EncodeError> {
        self.uint(u64::from(v));
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), EncodeError> {
        self.uint(u64::from(v));
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), EncodeError> {
        self.uint(u64::from(v));
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), EncodeError> {
        self.uint(v);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), EncodeError> {
        self.serialize_bytes(&v.to_be_bytes())
    }
    fn serialize_f32(self, v: f32) -> Result<(), EncodeError> {
        self.out.push(0xca);
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), EncodeError> {
        self.out.push(0xcb);
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), EncodeError> {
        let mut buf = [0; 4];
        self.serialize_str(v.encode_utf8(&mut buf))
    }
    fn serialize_str(self, v: &str) -> Result<(), EncodeError> {
        self.str_header(v.len())?;
        self.out.extend_from_slice(v.as_bytes());
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), EncodeError> {
        let (h, n) = block_header(BlockKind::U8, v.len())?;
        self.out.extend_from_slice(&h[..n]);
        self.out.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), EncodeError> {
        self.serialize_unit()
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), EncodeError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), EncodeError> {
        self.out.push(0xc0);
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), EncodeError> {
        self.array_header(0)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), EncodeError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.map_header(1)?;
        self.serialize_str(variant)?;
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSerializer<'a>, EncodeError> {
        Ok(SeqSerializer::new(self, len))
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqSerializer<'a>, EncodeError> {
        Ok(SeqSerializer::new(self, Some(len)))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        self.array_header(len)?;
        Ok(Compound {
            ser: self,
            unknown: None,
        })
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        self.map_header(1)?;
        self.serialize_str(variant)?;
        self.array_header(len)?;
        Ok(Compound {
            ser: self,
            unknown: None,
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'a>, EncodeError> {
        let unknown = match len {
            Some(n) => {
                self.map_header(n)?;
                None
            }
            None => Some((self.out.len(), 0)),
        };
        Ok(Compound { ser: self, unknown })
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        self.map_header(len)?;
        Ok(Compound {
            ser: self,
            unknown: None,
        })
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        self.map_header(1)?;
        self.serialize_str(variant)?;
        self.serialize_struct(variant, len)
    }
}

/// The element is not a primitive of the block's kind.
#[derive(Debug)]
struct NotElement;

impl std::fmt::Display for NotElement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a block element")
    }
}

impl std::error::Error for NotElement {}

impl ser::Error for NotElement {
    fn custom<T: std::fmt::Display>(_msg: T) -> Self {
        NotElement
    }
}

/// Appends a primitive element of the block's kind (any kind when `want` is `None`), or
/// refuses without writing anything.
struct Probe<'a> {
    out: &'a mut Vec<u8>,
    want: Option<BlockKind>,
}

impl Probe<'_> {
    #[inline]
    fn put(self, kind: BlockKind, bytes: &[u8]) -> Result<BlockKind, NotElement> {
        if self.want.is_some_and(|w| w != kind) {
            return Err(NotElement);
        }
        self.out.extend_from_slice(bytes);
        Ok(kind)
    }
}

impl ser::Serializer for Probe<'_> {
    type Ok = BlockKind;
    type Error = NotElement;
    type SerializeSeq = Impossible<BlockKind, NotElement>;
    type SerializeTuple = Impossible<BlockKind, NotElement>;
    type SerializeTupleStruct = Impossible<BlockKind, NotElement>;
    type SerializeTupleVariant = Impossible<BlockKind, NotElement>;
    type SerializeMap = Impossible<BlockKind, NotElement>;
    type SerializeStruct = Impossible<BlockKind, NotElement>;
    type SerializeStructVariant = Impossible<BlockKind, NotElement>;

    fn is_human_readable(&self) -> bool {
        false
    }

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<BlockKind, NotElement> {
        self.put(BlockKind::Bool, &[u8::from(v)])
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result<BlockKind, NotElement> {
        self.put(BlockKind::I8, &v.to_le_bytes())
    }
    #[inline]
    fn serialize_i16(self, v: i16) -> Result<BlockKind, NotElement> {
        self.put(BlockKind::I16, &v.to_le_bytes())
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> Result<BlockKind, NotElement> {
        self.put(BlockKind::I32, &v.to_le_bytes())
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<BlockKind, NotElement> {
        self.put(BlockKind::I64, &v.to_le_bytes())
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<BlockKind, NotElement> {
        self.put(BlockKind::U8, &[v])
    }
    #[inline]
    fn serialize_u16(self, v: u16) -> Result<BlockKind, NotElement> {
        self.put(BlockKind::U16, &v.to_le_bytes())
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> Result<BlockKind, NotElement> {
        self.put(BlockKind::U32, &v.to_le_bytes())
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result<BlockKind, NotElement> {
        self.put(BlockKind::U64, &v.to_le_bytes())
    }
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<BlockKind, NotElement> {
        self.put(BlockKind::F32, &v.to_le_bytes())
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<BlockKind, NotElement> {
        self.put(BlockKind::F64, &v.to_le_bytes())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<BlockKind, NotElement> {
        // A newtype is written as what it wraps, so a newtype of a number is a block element.
        value.serialize(self)
    }

    fn serialize_i128(self, _v: i128) -> Result<BlockKind, NotElement> {
        Err(NotElement)
    }
    fn serialize_u128(self, _v: u128) -> Result<BlockKind, NotElement> {
        Err(NotElement)
    }
    fn serialize_char(self, _v: char) -> Result<BlockKind, NotElement> {
        Err(NotElement)
    }
    fn serialize_str(self, _v: &str) -> Result<BlockKind, NotElement> {
        Err(NotElement)
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<BlockKind, NotElement> {
        Err(NotElement)
    }
    fn serialize_none(self) -> Result<BlockKind, NotElement> {
        Err(NotElement)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, _value: &T) -> Result<BlockKind, NotElement> {
        Err(NotElement)
    }
    fn serialize_unit(self) -> Result<BlockKind, NotElement> {
        Err(NotElement)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<BlockKind, NotElement> {
        Err(NotElement)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
    ) -> Result<BlockKind, NotElement> {
        Err(NotElement)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<BlockKind, NotElement> {
        Err(NotElement)
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, NotElement> {
        Err(NotElement)
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, NotElement> {
        Err(NotElement)
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, NotElement> {
        Err(NotElement)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, NotElement> {
        Err(NotElement)
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, NotElement> {
        Err(NotElement)
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, NotElement> {
        Err(NotElement)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, NotElement> {
        Err(NotElement)
    }
}
