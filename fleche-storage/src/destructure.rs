//! Destructuring: storing the sub-collections of a result under their own digests, so parts
//! shared between results are stored once (`docs/format.md`, "Destructured values").
//!
//! It works on the MessagePack encoding of a value, whatever its Rust type: arrays and maps are
//! collections; everything else is a scalar. The *depth* of a scalar is 0 and of a collection one
//! more than its deepest element. With `remaining_depth = n`, every element of a collection whose
//! depth is at least `n` is stored as its own entry and replaced in its parent by a reference;
//! shallower elements stay inline. So `0` splits everything, scalars included, and `1` keeps
//! scalars inline but stores every nested collection separately.
//!
//! Every entry is addressed by the blake3 digest of its plain encoding, whatever the depth it was
//! split at, so any depth reads what any other depth wrote. An entry that contains references is
//! wrapped in an extension marker; one that does not is stored plain.

use rmpv::Value as Mp;

use crate::{Digest, StorageError};

/// MessagePack extension type of a reference: 32 bytes, the referenced entry's digest.
pub const REF_EXT: i8 = 0x46;
/// MessagePack extension type wrapping an entry that contains references: its payload is the
/// entry's MessagePack encoding, with references in place of the split elements.
pub const SPLIT_EXT: i8 = 0x47;

/// Loads a stored entry by digest: what [`join`] reads parts with.
pub type Loader<'a> = dyn FnMut(&Digest) -> Result<Option<Vec<u8>>, StorageError> + 'a;

/// How deep MessagePack may nest inside one entry.
const MAX_NESTING: usize = crate::codec::MAX_DECODE_DEPTH;

/// What reassembling one value may cost: references are followed at most `depth` deep and
/// `loads` times in all, and the parts loaded add up to at most `bytes`. A handful of small
/// parts that reference each other repeatedly would otherwise expand exponentially.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Budget {
    /// Total bytes of the parts loaded (the reassembled value is about as large).
    pub bytes: u64,
    /// Part loads.
    pub loads: usize,
    /// Nesting of references.
    pub depth: usize,
}

impl Default for Budget {
    /// `max_entry_size`'s default, 100 000 loads, 32 levels.
    fn default() -> Self {
        Self {
            bytes: crate::integrity::DEFAULT_MAX_ENTRY_SIZE,
            loads: 100_000,
            depth: 32,
        }
    }
}

impl Budget {
    /// The default budget with at most `bytes` reassembled.
    #[must_use]
    pub fn with_bytes(bytes: u64) -> Self {
        Self {
            bytes,
            ..Self::default()
        }
    }
}

/// What is left of a budget while reassembling.
struct Spent {
    budget: Budget,
    bytes: u64,
    loads: usize,
}

/// The result of splitting one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// What to store under the value's own digest.
    pub root: Vec<u8>,
    /// The split-off entries: digest of the plain encoding, stored bytes.
    pub children: Vec<(Digest, Vec<u8>)>,
}

/// Why a value could not be split ([`split`]): its bytes are not MessagePack.
#[derive(Debug, thiserror::Error)]
#[error("the value to split is not MessagePack: {source}")]
#[non_exhaustive]
pub struct SplitError {
    /// The decoder's error.
    #[source]
    pub source: rmpv::decode::Error,
}

fn encode(v: &Mp) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, v);
    out
}

fn digest(bytes: &[u8]) -> Digest {
    Digest::from_bytes(*blake3::hash(bytes).as_bytes())
}

fn depth(v: &Mp) -> usize {
    match v {
        Mp::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Mp::Map(entries) => 1 + entries.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
        _ => 0,
    }
}

fn wrap(inner: &Mp) -> Vec<u8> {
    encode(&Mp::Ext(SPLIT_EXT, encode(inner)))
}

/// Splits the encoded value `bytes` at `remaining_depth`. A value that is not a collection, or
/// has nothing deep enough to split, comes back as it was, with no children.
///
/// # Errors
///
/// [`SplitError`] for bytes that are not MessagePack.
pub fn split(bytes: &[u8], remaining_depth: usize) -> Result<Split, SplitError> {
    let value = rmpv::decode::read_value_with_max_depth(&mut &bytes[..], MAX_NESTING)
        .map_err(|source| SplitError { source })?;
    let mut children = Vec::new();
    let (split, any) = split_children(value, remaining_depth, &mut children);
    let root = if any { wrap(&split) } else { bytes.to_vec() };
    Ok(Split { root, children })
}

/// Replaces the deep-enough elements of a collection by references; says whether it did.
fn split_children(v: Mp, limit: usize, out: &mut Vec<(Digest, Vec<u8>)>) -> (Mp, bool) {
    let mut any = false;
    let mut element = |e: Mp, out: &mut Vec<(Digest, Vec<u8>)>| {
        if depth(&e) >= limit {
            any = true;
            Mp::Ext(REF_EXT, store(e, limit, out).as_bytes().to_vec())
        } else {
            e
        }
    };
    let v = match v {
        Mp::Array(items) => Mp::Array(items.into_iter().map(|e| element(e, out)).collect()),
        Mp::Map(entries) => Mp::Map(
            entries
                .into_iter()
                .map(|(k, e)| (k, element(e, out)))
                .collect(),
        ),
        other => other,
    };
    (v, any)
}

/// Stores an element as its own entry; returns its address.
fn store(v: Mp, limit: usize, out: &mut Vec<(Digest, Vec<u8>)>) -> Digest {
    let plain = encode(&v);
    let address = digest(&plain);
    let (split, any) = split_children(v, limit, out);
    out.push((address, if any { wrap(&split) } else { plain }));
    address
}

/// Whether stored bytes are a split entry (containing references).
#[must_use]
pub fn is_split(bytes: &[u8]) -> bool {
    // ext 8/16/32 headers: 0xc7, 0xc8, 0xc9; the type byte follows the length.
    match bytes.first() {
        Some(0xc7) => bytes.get(2) == Some(&(SPLIT_EXT as u8)),
        Some(0xc8) => bytes.get(3) == Some(&(SPLIT_EXT as u8)),
        Some(0xc9) => bytes.get(5) == Some(&(SPLIT_EXT as u8)),
        Some(0xd4..=0xd8) => bytes.get(1) == Some(&(SPLIT_EXT as u8)),
        _ => false,
    }
}

fn corrupt(digest: &Digest, reason: impl Into<String>) -> StorageError {
    StorageError::corrupt("destructured value", digest, reason)
}

/// Reassembles a split entry, loading the entries it references with `load`, within the
/// default [`Budget`]. Plain bytes come back unchanged.
///
/// # Errors
///
/// A referenced entry that is missing or unreadable, or a value past its budget.
pub fn join(digest: &Digest, bytes: &[u8], load: &mut Loader<'_>) -> Result<Vec<u8>, StorageError> {
    join_within(digest, bytes, load, Budget::default())
}

/// [`join`] within `budget`.
///
/// # Errors
///
/// A referenced entry that is missing or unreadable, or a value past its budget.
pub fn join_within(
    digest: &Digest,
    bytes: &[u8],
    load: &mut Loader<'_>,
    budget: Budget,
) -> Result<Vec<u8>, StorageError> {
    if !is_split(bytes) {
        return Ok(bytes.to_vec());
    }
    let mut spent = Spent {
        budget,
        bytes: bytes.len() as u64,
        loads: 0,
    };
    let value = resolve_bytes(digest, bytes, load, 0, &mut spent)?;
    Ok(encode(&value))
}

fn parse(digest: &Digest, bytes: &[u8]) -> Result<Mp, StorageError> {
    rmpv::decode::read_value_with_max_depth(&mut &bytes[..], MAX_NESTING)
        .map_err(|e| StorageError::corrupt_by("destructured value", digest, "not MessagePack", e))
}

fn resolve_bytes(
    digest: &Digest,
    bytes: &[u8],
    load: &mut Loader<'_>,
    nesting: usize,
    spent: &mut Spent,
) -> Result<Mp, StorageError> {
    if nesting > spent.budget.depth {
        return Err(corrupt(
            digest,
            format!("references nest more than {} deep", spent.budget.depth),
        ));
    }
    let value = match parse(digest, bytes)? {
        Mp::Ext(SPLIT_EXT, inner) => parse(digest, &inner)?,
        plain => return Ok(plain),
    };
    resolve(digest, value, load, nesting, spent)
}

fn resolve(
    at: &Digest,
    v: Mp,
    load: &mut Loader<'_>,
    nesting: usize,
    spent: &mut Spent,
) -> Result<Mp, StorageError> {
    Ok(match v {
        Mp::Ext(REF_EXT, raw) => {
            let child = <[u8; 32]>::try_from(raw.as_slice())
                .map(Digest::from_bytes)
                .map_err(|_| corrupt(at, "a reference is not 32 bytes"))?;
            spent.loads += 1;
            if spent.loads > spent.budget.loads {
                return Err(corrupt(
                    at,
                    format!(
                        "reassembly needs more than {} part loads",
                        spent.budget.loads
                    ),
                ));
            }
            let bytes = load(&child)?
                .ok_or_else(|| corrupt(at, format!("referenced entry {child} is missing")))?;
            spent.bytes = spent.bytes.saturating_add(bytes.len() as u64);
            if spent.bytes > spent.budget.bytes {
                return Err(corrupt(
                    at,
                    format!(
                        "reassembles to more than {} bytes (max_entry_size)",
                        spent.budget.bytes
                    ),
                ));
            }
            resolve_bytes(&child, &bytes, load, nesting + 1, spent)?
        }
        Mp::Array(items) => Mp::Array(
            items
                .into_iter()
                .map(|e| resolve(at, e, load, nesting, spent))
                .collect::<Result<_, _>>()?,
        ),
        Mp::Map(entries) => Mp::Map(
            entries
                .into_iter()
                .map(|(k, e)| Ok((k, resolve(at, e, load, nesting, spent)?)))
                .collect::<Result<_, StorageError>>()?,
        ),
        other => other,
    })
}

/// The digests a stored entry references directly (none for a plain entry).
#[must_use]
pub fn references(bytes: &[u8]) -> Vec<Digest> {
    fn walk(v: &Mp, out: &mut Vec<Digest>) {
        match v {
            Mp::Ext(REF_EXT, raw) => {
                if let Ok(d) = <[u8; 32]>::try_from(raw.as_slice()) {
                    out.push(Digest::from_bytes(d));
                }
            }
            Mp::Array(items) => items.iter().for_each(|e| walk(e, out)),
            Mp::Map(entries) => entries.iter().for_each(|(_, e)| walk(e, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if !is_split(bytes) {
        return out;
    }
    if let Ok(Mp::Ext(SPLIT_EXT, inner)) =
        rmpv::decode::read_value_with_max_depth(&mut &bytes[..], MAX_NESTING)
        && let Ok(v) = rmpv::decode::read_value_with_max_depth(&mut &inner[..], MAX_NESTING)
    {
        walk(&v, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn store_all(s: &Split, at: Digest, into: &mut HashMap<Digest, Vec<u8>>) {
        into.entry(at).or_insert_with(|| s.root.clone());
        for (d, b) in &s.children {
            into.entry(*d).or_insert_with(|| b.clone());
        }
    }

    fn read(at: &Digest, from: &HashMap<Digest, Vec<u8>>) -> Result<Vec<u8>, StorageError> {
        let root = from.get(at).cloned().unwrap_or_default();
        join(at, &root, &mut |d| Ok(from.get(d).cloned()))
    }

    #[test]
    fn every_depth_reads_every_other() -> Result<(), StorageError> {
        let value: (Vec<Vec<f64>>, Vec<u8>, String) = (
            vec![vec![1.0, 2.0], vec![], vec![3.5]],
            vec![9, 8],
            "s".into(),
        );
        let bytes = rmp_serde::to_vec_named(&value).unwrap_or_default();
        let at = digest(&bytes);
        for write_depth in 0..5 {
            let mut store = HashMap::new();
            let s = split(&bytes, write_depth).unwrap_or_else(|e| panic!("{e}"));
            store_all(&s, at, &mut store);
            let back: (Vec<Vec<f64>>, Vec<u8>, String) =
                rmp_serde::from_slice(&read(&at, &store)?).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back, value, "written at depth {write_depth}");
            if write_depth >= 3 {
                assert!(s.children.is_empty(), "nothing is that deep");
                assert_eq!(s.root, bytes);
            } else {
                assert!(!s.children.is_empty());
            }
        }
        Ok(())
    }

    #[test]
    fn shared_parts_are_stored_once() {
        let shared = vec![1u64, 2, 3];
        let a = rmp_serde::to_vec(&(shared.clone(), 1u8)).unwrap_or_default();
        let b = rmp_serde::to_vec(&(shared, 2u8)).unwrap_or_default();
        let mut store = HashMap::new();
        for bytes in [&a, &b] {
            let s = split(bytes, 1).unwrap_or_else(|e| panic!("{e}"));
            store_all(&s, digest(bytes), &mut store);
        }
        // Two roots and one shared child.
        assert_eq!(store.len(), 3);
        let refs_a = references(&store[&digest(&a)]);
        let refs_b = references(&store[&digest(&b)]);
        assert_eq!(refs_a, refs_b);
        assert_eq!(refs_a.len(), 1);
    }

    #[test]
    fn missing_children_and_garbage_are_errors() {
        let bytes = rmp_serde::to_vec(&vec![vec![1u8]]).unwrap_or_default();
        let s = split(&bytes, 1).unwrap_or_else(|e| panic!("{e}"));
        let at = digest(&bytes);
        let missing = join(&at, &s.root, &mut |_| Ok(None));
        assert!(matches!(missing, Err(StorageError::Corrupt { .. })));
        let garbage = join(&at, &s.root, &mut |_| Ok(Some(vec![0xc7, 0xff])));
        assert!(garbage.is_err());
        assert!(split(&[0x92], 0).is_err(), "a truncated array");
        // A plain value passes through untouched.
        assert_eq!(join(&at, &bytes, &mut |_| Ok(None)).ok(), Some(bytes));
    }

    /// Parts that reference each other `fan` times per level, `levels` deep: tiny on disk,
    /// `fan^levels` loads to reassemble.
    fn bomb(fan: usize, levels: usize) -> (Digest, HashMap<Digest, Vec<u8>>) {
        let mut store = HashMap::new();
        let leaf = rmp_serde::to_vec(&vec![1u8; 8]).unwrap_or_default();
        let mut below = digest(&leaf);
        store.insert(below, leaf);
        for _ in 0..levels {
            let refs = Mp::Array(
                (0..fan)
                    .map(|_| Mp::Ext(REF_EXT, below.as_bytes().to_vec()))
                    .collect(),
            );
            let part = wrap(&refs);
            below = digest(&part);
            store.insert(below, part);
        }
        (below, store)
    }

    #[test]
    fn reassembly_is_bounded() {
        // 8^7 = 2 097 152 loads: refused after 100 000.
        let (top, store) = bomb(8, 7);
        assert!(
            store.values().map(Vec::len).sum::<usize>() < 4096,
            "small on disk"
        );
        let err = read(&top, &store)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("more than 100000 part loads"), "{err}");
        // Within the load budget but over a byte budget.
        let (top, store) = bomb(4, 5);
        let root = store.get(&top).cloned().unwrap_or_default();
        let err = join_within(
            &top,
            &root,
            &mut |d| Ok(store.get(d).cloned()),
            Budget::with_bytes(10_000),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            err.contains("reassembles to more than 10000 bytes"),
            "{err}"
        );
        assert!(read(&top, &store).is_ok(), "fine within the default budget");
        // A chain deeper than 32 references.
        let (top, store) = bomb(1, 40);
        let err = read(&top, &store)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("nest more than 32 deep"), "{err}");
        // A reference loop ends at the depth bound too.
        let mut looped = HashMap::new();
        let me = Digest::from_bytes([9; 32]);
        looped.insert(
            me,
            wrap(&Mp::Array(vec![Mp::Ext(REF_EXT, me.as_bytes().to_vec())])),
        );
        assert!(read(&me, &looped).is_err());
    }
}
