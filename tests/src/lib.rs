//! Cross-crate tests for fleche live in `tests/`; this crate's binary `fleche-stress` is the
//! helper process the multi-process tests start.
