//! The queryable form ([`Value`]) of a `serde::Serialize` value, for [`Serde`](super::Serde)
//! arguments: call records of functions that take them list their fields like derived keys do.

use std::fmt;

use fleche_storage::Value;
use serde::Serialize;
use serde::ser;

/// The queryable form of `value`, or `None` if its `Serialize` impl fails.
pub(crate) fn to_value<T: Serialize + ?Sized>(value: &T) -> Option<Value> {
    value.serialize(ValueSerializer).ok()
}

#[derive(Debug)]
pub(crate) struct Failed(String);

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failed {}

impl ser::Error for Failed {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        Failed(msg.to_string())
    }
}

struct ValueSerializer;

/// A sequence, tuple, struct or variant being built.
pub(crate) struct Collect {
    items: Vec<Value>,
    fields: Vec<(String, Value)>,
    entries: Vec<(Value, Value)>,
    key: Option<Value>,
    variant: Option<&'static str>,
}

impl Collect {
    fn new(variant: Option<&'static str>) -> Self {
        Self {
            items: Vec::new(),
            fields: Vec::new(),
            entries: Vec::new(),
            key: None,
            variant,
        }
    }

    fn wrap(&self, v: Value) -> Value {
        match self.variant {
            Some(name) => Value::Variant(name.to_owned(), Box::new(v)),
            None => v,
        }
    }

    /// Tuple fields become named fields `"0"`, `"1"`, .. like derived keys.
    fn positional_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Failed> {
        let name = self.fields.len().to_string();
        self.fields.push((name, value.serialize(ValueSerializer)?));
        Ok(())
    }
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = Failed;
    type SerializeSeq = Collect;
    type SerializeTuple = Collect;
    type SerializeTupleStruct = Collect;
    type SerializeTupleVariant = Collect;
    type SerializeMap = Collect;
    type SerializeStruct = Collect;
    type SerializeStructVariant = Collect;

    fn serialize_bool(self, v: bool) -> Result<Value, Failed> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, Failed> {
        Ok(Value::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, Failed> {
        Ok(Value::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, Failed> {
        Ok(Value::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, Failed> {
        Ok(Value::from(v))
    }
    fn serialize_i128(self, v: i128) -> Result<Value, Failed> {
        Ok(Value::from(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Value, Failed> {
        Ok(Value::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, Failed> {
        Ok(Value::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, Failed> {
        Ok(Value::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, Failed> {
        Ok(Value::from(v))
    }
    fn serialize_u128(self, v: u128) -> Result<Value, Failed> {
        Ok(Value::from(v))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, Failed> {
        Ok(Value::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, Failed> {
        Ok(Value::from(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, Failed> {
        Ok(Value::Char(v))
    }
    fn serialize_str(self, v: &str) -> Result<Value, Failed> {
        Ok(Value::Str(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, Failed> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn serialize_none(self) -> Result<Value, Failed> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, Failed> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, Failed> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, Failed> {
        Ok(Value::Struct(Vec::new()))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Value, Failed> {
        Ok(Value::Variant(variant.to_owned(), Box::new(Value::Null)))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Value, Failed> {
        Ok(Value::Struct(vec![(
            "0".to_owned(),
            value.serialize(self)?,
        )]))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, Failed> {
        let inner = Value::Struct(vec![("0".to_owned(), value.serialize(self)?)]);
        Ok(Value::Variant(variant.to_owned(), Box::new(inner)))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Collect, Failed> {
        Ok(Collect::new(None))
    }
    fn serialize_tuple(self, _: usize) -> Result<Collect, Failed> {
        Ok(Collect::new(None))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Collect, Failed> {
        Ok(Collect::new(None))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Collect, Failed> {
        Ok(Collect::new(Some(variant)))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Collect, Failed> {
        Ok(Collect::new(None))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Collect, Failed> {
        Ok(Collect::new(None))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Collect, Failed> {
        Ok(Collect::new(Some(variant)))
    }
}

impl ser::SerializeSeq for Collect {
    type Ok = Value;
    type Error = Failed;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Failed> {
        self.items.push(value.serialize(ValueSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Value, Failed> {
        Ok(Value::Seq(self.items))
    }
}

impl ser::SerializeTuple for Collect {
    type Ok = Value;
    type Error = Failed;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Failed> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Value, Failed> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for Collect {
    type Ok = Value;
    type Error = Failed;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Failed> {
        self.positional_field(value)
    }
    fn end(self) -> Result<Value, Failed> {
        Ok(Value::Struct(self.fields))
    }
}

impl ser::SerializeTupleVariant for Collect {
    type Ok = Value;
    type Error = Failed;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Failed> {
        self.positional_field(value)
    }
    fn end(self) -> Result<Value, Failed> {
        let fields = Value::Struct(self.fields.clone());
        Ok(self.wrap(fields))
    }
}

impl ser::SerializeStruct for Collect {
    type Ok = Value;
    type Error = Failed;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Failed> {
        self.fields
            .push((key.to_owned(), value.serialize(ValueSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Value, Failed> {
        Ok(Value::Struct(self.fields))
    }
}

impl ser::SerializeStructVariant for Collect {
    type Ok = Value;
    type Error = Failed;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Failed> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }
    fn end(self) -> Result<Value, Failed> {
        let fields = Value::Struct(self.fields.clone());
        Ok(self.wrap(fields))
    }
}

impl ser::SerializeMap for Collect {
    type Ok = Value;
    type Error = Failed;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Failed> {
        self.key = Some(key.serialize(ValueSerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Failed> {
        let key = self
            .key
            .take()
            .ok_or_else(|| Failed("map value serialized before its key".into()))?;
        self.entries.push((key, value.serialize(ValueSerializer)?));
        Ok(())
    }
    fn end(mut self) -> Result<Value, Failed> {
        self.entries.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(Value::Map(self.entries))
    }
}
