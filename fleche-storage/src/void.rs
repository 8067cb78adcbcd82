//! The backend that stores nothing: every load misses, every save succeeds and is dropped.

use crate::{CallRecord, CallStorage, Digest, StorageError, ValueStorage};

/// Values that are never kept.
#[derive(Debug, Default, Clone, Copy)]
pub struct VoidValues;

impl ValueStorage for VoidValues {
    fn load(&self, _: &Digest) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(None)
    }
    fn save(&self, _: &Digest, _: &[u8]) -> Result<(), StorageError> {
        Ok(())
    }
    fn contains(&self, _: &Digest) -> Result<bool, StorageError> {
        Ok(false)
    }
    fn evict(&self, _: &Digest) -> Result<bool, StorageError> {
        Ok(false)
    }
    fn digests(&self) -> Result<Vec<Digest>, StorageError> {
        Ok(Vec::new())
    }
}

/// Call records that are never kept.
#[derive(Debug, Default, Clone, Copy)]
pub struct VoidCalls;

impl CallStorage for VoidCalls {
    fn result_of(&self, _: &Digest) -> Result<Option<Digest>, StorageError> {
        Ok(None)
    }
    fn load(&self, _: &Digest) -> Result<Option<CallRecord>, StorageError> {
        Ok(None)
    }
    fn save(&self, _: CallRecord) -> Result<(), StorageError> {
        Ok(())
    }
    fn evict(&self, _: &Digest) -> Result<bool, StorageError> {
        Ok(false)
    }
    fn records(&self) -> Result<Vec<CallRecord>, StorageError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn void_keeps_nothing() -> Result<(), StorageError> {
        let d = Digest::from_bytes([7; 32]);
        VoidValues.save(&d, b"x")?;
        assert_eq!(VoidValues.load(&d)?, None);
        VoidCalls.save(CallRecord::new(d, "f", d))?;
        assert_eq!(VoidCalls.result_of(&d)?, None);
        assert!(VoidCalls.records()?.is_empty());
        Ok(())
    }
}

/// `type = "void"`: stores nothing. It takes no keys.
#[derive(Debug, Clone, Copy)]
pub struct VoidBackend;

#[derive(Debug)]
struct VoidSpec;

impl crate::backend::Backend for VoidBackend {
    fn name(&self) -> &'static str {
        "void"
    }
    fn keys(&self, _template: bool) -> &'static [&'static str] {
        &[]
    }
    fn parse(
        &self,
        _: &crate::backend::Settings<'_>,
    ) -> Option<Box<dyn crate::backend::StorageSpec>> {
        Some(Box::new(VoidSpec))
    }
}

impl crate::backend::StorageSpec for VoidSpec {
    fn open_values(&self) -> Result<Box<dyn ValueStorage>, StorageError> {
        Ok(Box::new(VoidValues))
    }
    fn open_calls(&self) -> Result<Box<dyn CallStorage>, StorageError> {
        Ok(Box::new(VoidCalls))
    }
    fn persistent(&self) -> bool {
        false
    }
}
