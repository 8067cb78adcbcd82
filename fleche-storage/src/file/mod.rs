//! The `msgpack` backend: one file per entry under a root directory.
//!
//! Layout: an entry with digest `abcdef…` lives at `root/ab/abcdef…`: 256 fan-out directories, so
//! a million entries leave about four thousand files per directory, which every current
//! filesystem indexes. The 256 directories are created when the store is first opened, so writes
//! never create one. Every file
//! is an [`envelope`]: magic, format version, flags, lengths and a blake3 checksum (or a
//! keyed MAC when signing keys are configured), then the MessagePack payload, zstd-compressed when
//! `compress` is on. Compression and signatures are detected on read whatever the settings.
//! Compression needs the `zstd` feature: without it, a save with `compress` set fails
//! ([`StorageError::Seal`]) and a compressed entry reads as [`StorageError::Corrupt`], a miss.
//!
//! Writes go to a temporary file in the entry's directory and are renamed into place, so readers
//! (in this or any other process) see either the old entry or the new one, never a partial one.
//! With `durable`, the file and its directory are fsync'ed before the write returns.
//!
//! Modes, on Unix: caches often hold private data, so by default every directory the store
//! creates is `0700` and every entry file `0600`. With [`FileOptions::shared`], directories are
//! `2770` (setgid: entries inherit the directory's group) and files `0660`, for a cache a group
//! shares. Directories the store did not create, such as an existing root, keep their mode.

mod config;
pub mod envelope;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::fs::io_error;
use crate::{CallRecord, CallStorage, Digest, StorageError, ValueStorage};
pub use config::{CALLS_DIR, FileBackend, VALUES_DIR};
use envelope::{EnvelopeError, SigningKey};

/// Settings of a file backend.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct FileOptions {
    /// Compress new entries with zstd at this level (1–22; 3 is zstd's default). Entries are read
    /// whatever their compression. Needs the `zstd` feature: without it, saves fail.
    pub compress: Option<i32>,
    /// Signing keys: new entries are signed with the first; an entry verifies with any. When
    /// empty, entries carry a plain checksum and signed entries are refused.
    pub keys: Vec<SigningKey>,
    /// fsync every written file and its directory before a save returns.
    pub durable: bool,
    /// Share the cache with the group: directories the store creates are `2770` and files
    /// `0660`, instead of `0700` and `0600` (Unix only).
    pub shared: bool,
    /// The largest payload, in bytes, that is stored or read back (decompressed); `None` means
    /// [`DEFAULT_MAX_ENTRY_SIZE`](crate::integrity::DEFAULT_MAX_ENTRY_SIZE). A larger entry
    /// on disk is corrupt; a larger result is not stored.
    pub max_entry_size: Option<u64>,
}

impl FileOptions {
    /// Uncompressed, unsigned, not durable, private.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores and reads back no payload larger than `bytes`.
    #[must_use]
    pub fn max_entry_size(mut self, bytes: u64) -> Self {
        self.max_entry_size = Some(bytes);
        self
    }

    fn limit(&self) -> u64 {
        self.max_entry_size
            .unwrap_or(crate::integrity::DEFAULT_MAX_ENTRY_SIZE)
    }

    /// Compress new entries with zstd at `level`.
    #[must_use]
    pub fn compress(mut self, level: i32) -> Self {
        self.compress = Some(level);
        self
    }

    /// Sign with `keys` (the first signs; any verifies).
    #[must_use]
    pub fn keys(mut self, keys: Vec<SigningKey>) -> Self {
        self.keys = keys;
        self
    }

    /// fsync before a save returns.
    #[must_use]
    pub fn durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// Group-shared (`true`: directories `2770`, files `0660`) or private (`false`, the
    /// default: `0700` and `0600`) modes for what the store creates.
    #[must_use]
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }
}

/// A file at an entry's path that is not an entry at all.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NotAnEntry(&'static str);

/// A directory of enveloped entries named by digest: what both file storages are built on.
#[derive(Debug, Clone)]
struct EntryDir {
    root: PathBuf,
    options: FileOptions,
    /// Whether an entry of an older format has been reported (once per store).
    old_format_seen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl EntryDir {
    fn open(root: &Path, options: FileOptions) -> Result<Self, StorageError> {
        // All 256 fan-out directories up front (once per cache), so writes never create one;
        // the last one present means the root and the others are (one `stat` per open).
        if !root.join("ff").is_dir() {
            crate::fs::create_dir_all(root, options.shared)?;
            for i in 0..=255u8 {
                crate::fs::create_dir_all(&root.join(format!("{i:02x}")), options.shared)?;
            }
        }
        Ok(Self {
            root: root.to_owned(),
            options,
            old_format_seen: Default::default(),
        })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join(&hex[0..2]).join(hex)
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    /// The entry `digest` is corrupt: its file is damaged as `source` says.
    fn corrupt(
        &self,
        digest: &Digest,
        source: impl Into<crate::error::BoxedError>,
    ) -> StorageError {
        StorageError::corrupt_by(
            self.location(),
            digest,
            self.path(digest).display().to_string(),
            source,
        )
    }

    /// The payload stored under `digest`. An entry of an older format is a miss (reported once
    /// per store), which the next store of that digest rewrites.
    fn read(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(bytes) = self.read_file(digest)? else {
            return Ok(None);
        };
        match envelope::open_owned(bytes, digest, &self.options.keys, self.options.limit()) {
            Ok(payload) => Ok(Some(payload)),
            Err(EnvelopeError::OldFormat(version)) => {
                use std::sync::atomic::Ordering;
                if !self.old_format_seen.swap(true, Ordering::Relaxed) {
                    tracing::warn!(location = %self.location(), version,
                        "entries of an older format are misses here and are rewritten when next stored");
                }
                Ok(None)
            }
            Err(e) => Err(self.corrupt(digest, e)),
        }
    }

    /// The file of `digest` and its length, opened safely: without following a symbolic link,
    /// without blocking on a FIFO or device, only a regular file, and only when its length is
    /// within `max_entry_size` (plus the envelope's header).
    fn open_file(&self, digest: &Digest) -> Result<Option<(fs::File, u64)>, StorageError> {
        use crate::fs::Refusal;
        let max = self.options.limit().saturating_add(envelope::HEADER as u64);
        match crate::fs::open_regular(&self.path(digest), max)? {
            Ok(found) => Ok(found.map(|(file, meta)| (file, meta.len()))),
            Err(Refusal::Link) => Err(self.corrupt(digest, NotAnEntry("a symbolic link"))),
            Err(Refusal::NotRegular) => Err(self.corrupt(digest, NotAnEntry("not a regular file"))),
            Err(Refusal::TooLarge { size }) => {
                Err(self.corrupt(digest, EnvelopeError::TooLarge { size, max }))
            }
        }
    }

    /// The bytes of the file of `digest`, opened as [`EntryDir::open_file`] says.
    fn read_file(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StorageError> {
        use std::io::Read;
        let Some((file, len)) = self.open_file(digest)? else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(usize::MAX));
        // One byte more than the length seen, so a file that grew is noticed, not read on.
        file.take(len.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(&self.path(digest), e))?;
        Ok(Some(bytes))
    }

    /// Lends the payload of `digest` to `visit`: a large uncompressed entry as a stream read
    /// straight from its file and checked as it is read (the tag is compared after `visit`
    /// returns, and a mismatch fails the load); anything else as bytes, as [`EntryDir::read`]
    /// gives them.
    fn read_payload(
        &self,
        digest: &Digest,
        visit: &mut dyn FnMut(crate::Payload<'_>),
    ) -> Result<bool, StorageError> {
        use std::io::Read;
        let bytes = |visit: &mut dyn FnMut(crate::Payload<'_>)| {
            Ok(self
                .read(digest)?
                .map(|b| visit(crate::Payload::Bytes(&b)))
                .is_some())
        };
        let Some((mut file, len)) = self.open_file(digest)? else {
            return Ok(false);
        };
        // Small entries are read whole: one read, no stream to set up.
        if len < STREAM_FROM {
            drop(file);
            return bytes(visit);
        }
        let path = self.path(digest);
        let mut header = [0u8; envelope::HEADER];
        file.read_exact(&mut header)
            .map_err(|e| io_error(&path, e))?;
        let stored = len - envelope::HEADER as u64;
        let Ok(mut check) = envelope::Verifier::new(
            &header,
            digest,
            &self.options.keys,
            self.options.limit(),
            stored,
        ) else {
            // Compressed, of another version, or damaged: the whole-entry path says which.
            drop(file);
            return bytes(visit);
        };
        let mut update = |b: &[u8]| check.update(b);
        let mut reader = crate::fs::Checked::new(&mut file, &mut update, stored);
        let mut head = [0u8; 64];
        let head_len = usize::try_from(stored.min(64)).unwrap_or(64);
        reader
            .read_exact(&mut head[..head_len])
            .map_err(|e| self.corrupt(digest, e))?;
        visit(crate::Payload::Stream(crate::PayloadReader::new(
            &head[..head_len],
            &mut reader,
            stored,
        )));
        // Whatever the visit left unread still counts.
        io::copy(&mut reader, &mut io::sink()).map_err(|e| io_error(&path, e))?;
        if reader.left() != 0 {
            return Err(self.corrupt(digest, EnvelopeError::Truncated { len: 0 }));
        }
        // A file that grew while it was read is not the entry that was checked.
        let mut more = [0u8; 1];
        if file.read(&mut more).map_err(|e| io_error(&path, e))? != 0 {
            return Err(self.corrupt(digest, EnvelopeError::Truncated { len: 0 }));
        }
        check.finish().map_err(|e| self.corrupt(digest, e))?;
        Ok(true)
    }

    /// Writes `payload` under `digest` atomically: temporary file, then rename.
    fn write(&self, digest: &Digest, payload: &[u8]) -> Result<(), StorageError> {
        self.write_entry(digest, payload, true).map(|_| ())
    }

    /// Writes `payload` under `digest` unless an entry is there; `Ok(false)` when one was. The
    /// check and the write are one step (a hard link that fails on an existing name), so of
    /// several writers, in any processes, exactly one succeeds.
    fn write_new(&self, digest: &Digest, payload: &[u8]) -> Result<bool, StorageError> {
        self.write_entry(digest, payload, false)
    }

    /// Writes `payload` under `digest` atomically: temporary file, then rename (`replace`) or
    /// link (not `replace`, refusing an existing entry).
    fn write_entry(
        &self,
        digest: &Digest,
        payload: &[u8],
        replace: bool,
    ) -> Result<bool, StorageError> {
        let path = self.path(digest);
        let dir = path.parent().unwrap_or(&self.root);
        if payload.len() as u64 > self.options.limit() {
            return Err(StorageError::TooLarge {
                location: self.location(),
                digest: *digest,
                size: payload.len() as u64,
                max: self.options.limit(),
            });
        }
        let (header, stored) = envelope::seal_parts(
            payload,
            digest,
            self.options.compress,
            self.options.keys.first(),
        )
        .map_err(|source| StorageError::Seal {
            location: self.location(),
            digest: *digest,
            source,
        })?;
        let shared = self.options.shared;
        let temp = || crate::fs::temp_file_in(dir, shared);
        // The fan-out directory usually exists: create it only when the first try says so.
        let mut tmp = match temp() {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                crate::fs::create_dir_all(dir, shared)?;
                temp().map_err(|e| io_error(dir, e))?
            }
            Err(e) => return Err(io_error(dir, e)),
        };
        // One write for small entries (one syscall), two for large ones (no copy).
        let written = if stored.len() <= 64 * 1024 {
            let mut whole = Vec::with_capacity(header.len() + stored.len());
            whole.extend_from_slice(&header);
            whole.extend_from_slice(&stored);
            tmp.write_all(&whole)
        } else {
            tmp.write_all(&header).and_then(|()| tmp.write_all(&stored))
        };
        written.map_err(|e| io_error(tmp.path(), e))?;
        if self.options.durable {
            tmp.as_file()
                .sync_all()
                .map_err(|e| io_error(tmp.path(), e))?;
        }
        if replace {
            tmp.persist(&path).map_err(|e| io_error(&path, e.error))?;
        } else {
            match tmp.persist_noclobber(&path) {
                Ok(_) => {}
                Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
                Err(e) => return Err(io_error(&path, e.error)),
            }
        }
        if self.options.durable {
            sync_dir(dir)?;
        }
        Ok(true)
    }

    fn exists(&self, digest: &Digest) -> Result<bool, StorageError> {
        let path = self.path(digest);
        path.try_exists().map_err(|e| io_error(&path, e))
    }

    fn remove(&self, digest: &Digest) -> Result<bool, StorageError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    /// Removes the temporary files (`.tmp-*`) in the fan-out directories last modified more than
    /// `older_than` ago: what writers killed between creating and renaming them left behind.
    fn reclaim_temporary(&self, older_than: std::time::Duration) -> Result<usize, StorageError> {
        let paths = walkdir::WalkDir::new(&self.root)
            .min_depth(2)
            .max_depth(2)
            .into_iter()
            .filter_map(Result::ok)
            .map(walkdir::DirEntry::into_path);
        crate::fs::reclaim_temporary(paths, older_than)
    }

    /// Every entry's digest, read from the file names; temporary and foreign files are skipped.
    fn digests(&self) -> Result<Vec<Digest>, StorageError> {
        let mut out = Vec::new();
        for entry in walkdir::WalkDir::new(&self.root).min_depth(2).max_depth(2) {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let path = e
                        .path()
                        .map(Path::to_owned)
                        .unwrap_or_else(|| self.root.clone());
                    match e.into_io_error() {
                        Some(io) if io.kind() == io::ErrorKind::NotFound => continue,
                        Some(io) => return Err(io_error(&path, io)),
                        None => continue,
                    }
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            if let Some(d) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Digest>().ok())
            {
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// Entries at least this long (header included) are streamed to readers that can take a
/// stream ([`crate::Payload::Stream`]); shorter ones are read whole.
const STREAM_FROM: u64 = 256 * 1024;

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), StorageError> {
    Ok(())
}

/// Values stored one file per value under a root directory.
#[derive(Debug, Clone)]
pub struct FileValues {
    dir: EntryDir,
}

impl FileValues {
    /// The store rooted at `root`, created if missing.
    ///
    /// # Errors
    ///
    /// [`StorageError::Io`] when the directory cannot be created.
    pub fn open(root: impl AsRef<Path>, options: FileOptions) -> Result<Self, StorageError> {
        Ok(Self {
            dir: EntryDir::open(root.as_ref(), options)?,
        })
    }

    /// The file an entry is (or would be) stored in.
    #[must_use]
    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        self.dir.path(digest)
    }
}

impl ValueStorage for FileValues {
    fn load(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StorageError> {
        self.dir.read(digest)
    }

    fn load_payload(
        &self,
        digest: &Digest,
        visit: &mut dyn FnMut(crate::Payload<'_>),
    ) -> Result<bool, StorageError> {
        self.dir.read_payload(digest, visit)
    }

    fn save(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StorageError> {
        self.dir.write(digest, bytes)
    }

    fn contains(&self, digest: &Digest) -> Result<bool, StorageError> {
        self.dir.exists(digest)
    }

    fn evict(&self, digest: &Digest) -> Result<bool, StorageError> {
        self.dir.remove(digest)
    }

    fn digests(&self) -> Result<Vec<Digest>, StorageError> {
        self.dir.digests()
    }

    fn reclaim_temporary(&self, older_than: std::time::Duration) -> Result<usize, StorageError> {
        self.dir.reclaim_temporary(older_than)
    }
}

/// Call records stored one file per call under a root directory, as MessagePack with named
/// fields.
#[derive(Debug, Clone)]
pub struct FileCalls {
    dir: EntryDir,
}

impl FileCalls {
    /// The store rooted at `root`, created if missing.
    ///
    /// # Errors
    ///
    /// [`StorageError::Io`] when the directory cannot be created.
    pub fn open(root: impl AsRef<Path>, options: FileOptions) -> Result<Self, StorageError> {
        Ok(Self {
            dir: EntryDir::open(root.as_ref(), options)?,
        })
    }

    /// The file a record is (or would be) stored in.
    #[must_use]
    pub fn path_of(&self, key: &Digest) -> PathBuf {
        self.dir.path(key)
    }
}

impl CallStorage for FileCalls {
    fn result_of(&self, key: &Digest) -> Result<Option<Digest>, StorageError> {
        Ok(self.load(key)?.map(|r| r.result))
    }

    fn load(&self, key: &Digest) -> Result<Option<CallRecord>, StorageError> {
        let Some(payload) = self.dir.read(key)? else {
            return Ok(None);
        };
        let record = CallRecord::decode_for(key, &payload).map_err(|e| self.dir.corrupt(key, e))?;
        Ok(Some(record))
    }

    fn save(&self, record: CallRecord) -> Result<(), StorageError> {
        let payload = rmp_serde::to_vec_named(&record).map_err(|source| StorageError::Encode {
            location: self.dir.location(),
            key: record.key,
            source,
        })?;
        self.dir.write(&record.key, &payload)
    }

    fn evict(&self, key: &Digest) -> Result<bool, StorageError> {
        self.dir.remove(key)
    }

    /// Every readable record; unreadable ones are skipped with a warning.
    fn records(&self) -> Result<Vec<CallRecord>, StorageError> {
        Ok(crate::record::readable_parallel(
            self.dir.digests()?,
            |k| self.load(k),
            |_| true,
        ))
    }

    fn keys(&self) -> Result<Vec<Digest>, StorageError> {
        self.dir.digests()
    }

    /// Reads the call files on every core, keeping only the matches.
    fn select(&self, selection: &crate::Selection) -> Result<Vec<CallRecord>, StorageError> {
        let matching = crate::record::readable_parallel(
            self.dir.digests()?,
            |k| self.load(k),
            |r| selection.matches(r),
        );
        Ok(selection.page(matching))
    }

    fn reclaim_temporary(&self, older_than: std::time::Duration) -> Result<usize, StorageError> {
        self.dir.reclaim_temporary(older_than)
    }

    fn save_new(&self, record: CallRecord) -> Result<bool, StorageError> {
        let payload = rmp_serde::to_vec_named(&record).map_err(|source| StorageError::Encode {
            location: self.dir.location(),
            key: record.key,
            source,
        })?;
        self.dir.write_new(&record.key, &payload)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::Value;

    fn d(b: u8) -> Digest {
        Digest::from_bytes([b; 32])
    }

    fn record(key: u8, result: u8) -> CallRecord {
        let mut r = CallRecord::new(d(key), "m::f", d(result));
        r.version = Some("2".into());
        r.arguments = vec![
            ("x".into(), Value::Int(-3)),
            ("big".into(), Value::UInt(u128::MAX)),
            (
                "s".into(),
                Value::Struct(vec![("a".into(), Value::Float(0.5))]),
            ),
        ];
        let mut meta = BTreeMap::new();
        meta.insert(
            "runtime".to_owned(),
            Value::Struct(vec![("wall_time".into(), Value::Float(1.5))]),
        );
        r.metadata = meta;
        r
    }

    #[test]
    fn values_round_trip_with_fan_out() -> Result<(), StorageError> {
        let tmp = tempfile::tempdir().map_err(|e| io_error(Path::new("tmp"), e))?;
        let v = FileValues::open(tmp.path().join("values"), FileOptions::new())?;
        assert_eq!(v.load(&d(0xab))?, None);
        v.save(&d(0xab), b"bytes")?;
        assert_eq!(v.load(&d(0xab))?.as_deref(), Some(&b"bytes"[..]));
        let path = v.path_of(&d(0xab));
        let rel = path
            .strip_prefix(tmp.path())
            .map(Path::to_owned)
            .unwrap_or_default();
        assert_eq!(rel, Path::new("values/ab").join(d(0xab).to_hex()));
        assert!(v.contains(&d(0xab))?);
        assert_eq!(v.digests()?, vec![d(0xab)]);
        assert!(v.evict(&d(0xab))?);
        assert!(!v.evict(&d(0xab))?);
        assert!(v.digests()?.is_empty());
        Ok(())
    }

    #[test]
    fn records_round_trip() -> Result<(), StorageError> {
        let tmp = tempfile::tempdir().map_err(|e| io_error(Path::new("tmp"), e))?;
        let options = if cfg!(feature = "zstd") {
            FileOptions::new().compress(3)
        } else {
            FileOptions::new()
        };
        let c = FileCalls::open(tmp.path(), options)?;
        c.save(record(1, 2))?;
        assert_eq!(c.load(&d(1))?, Some(record(1, 2)));
        assert_eq!(c.result_of(&d(1))?, Some(d(2)));
        c.save(record(1, 3))?;
        assert_eq!(
            c.records()?,
            vec![record(1, 3)],
            "overwrite keeps one record (C07)"
        );
        Ok(())
    }

    #[cfg(feature = "zstd")]
    #[test]
    fn compression_is_detected_on_read() -> Result<(), StorageError> {
        let tmp = tempfile::tempdir().map_err(|e| io_error(Path::new("tmp"), e))?;
        let compressed = FileValues::open(tmp.path(), FileOptions::new().compress(19))?;
        let plain = FileValues::open(tmp.path(), FileOptions::new())?;
        let data = vec![7u8; 10_000];
        compressed.save(&d(1), &data)?;
        plain.save(&d(2), &data)?;
        assert_eq!(plain.load(&d(1))?, Some(data.clone()));
        assert_eq!(compressed.load(&d(2))?, Some(data.clone()));
        let size = |p: PathBuf| fs::metadata(&p).map(|m| m.len()).unwrap_or_default();
        assert!(size(compressed.path_of(&d(1))) < size(plain.path_of(&d(2))) / 10);
        Ok(())
    }

    #[cfg(not(feature = "zstd"))]
    #[test]
    fn compression_needs_the_zstd_feature() -> Result<(), StorageError> {
        let tmp = tempfile::tempdir().map_err(|e| io_error(Path::new("tmp"), e))?;
        let v = FileValues::open(tmp.path(), FileOptions::new().compress(3))?;
        let saved = v.save(&d(1), b"x");
        assert!(
            matches!(&saved, Err(StorageError::Seal { .. })),
            "{saved:?}"
        );
        let message = saved.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("the `zstd` feature"), "{message}");
        // A compressed entry, as a build with zstd writes it.
        let stored = b"zstd frame";
        let mut header = [0u8; envelope::HEADER];
        header[..4].copy_from_slice(&envelope::MAGIC);
        header[4] = envelope::VERSION;
        header[5] = 0b01;
        header[8..16].copy_from_slice(&(stored.len() as u64).to_le_bytes());
        header[16..24].copy_from_slice(&64u64.to_le_bytes());
        header[24..56].copy_from_slice(d(2).as_bytes());
        let sum = crate::integrity::checksum(&header[..24], &d(2), stored);
        header[56..72].copy_from_slice(&sum.to_le_bytes());
        let path = v.path_of(&d(2));
        fs::write(&path, [&header[..], &stored[..]].concat()).map_err(|e| io_error(&path, e))?;
        let loaded = v.load(&d(2));
        assert!(
            matches!(&loaded, Err(StorageError::Corrupt { .. })),
            "{loaded:?}"
        );
        let message = loaded.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message
                .contains("entry is zstd-compressed; fleche was built without the `zstd` feature"),
            "{message}"
        );
        Ok(())
    }

    #[test]
    fn damaged_files_are_corrupt_not_panics() -> Result<(), StorageError> {
        let tmp = tempfile::tempdir().map_err(|e| io_error(Path::new("tmp"), e))?;
        let v = FileValues::open(tmp.path().join("v"), FileOptions::new())?;
        let c = FileCalls::open(tmp.path().join("c"), FileOptions::new())?;
        v.save(&d(1), b"value bytes")?;
        c.save(record(1, 1))?;
        type Damage = fn(&mut Vec<u8>);
        let damage: [(&str, Damage); 3] = [
            ("truncated", |b| b.truncate(b.len() / 2)),
            ("empty", Vec::clear),
            ("garbage", |b| {
                b.iter_mut()
                    .for_each(|x| *x = x.wrapping_mul(31).wrapping_add(7))
            }),
        ];
        for (what, f) in damage {
            for path in [v.path_of(&d(1)), c.path_of(&d(1))] {
                let mut bytes = fs::read(&path).map_err(|e| io_error(&path, e))?;
                let good = bytes.clone();
                f(&mut bytes);
                fs::write(&path, &bytes).map_err(|e| io_error(&path, e))?;
                let loaded = if path.starts_with(tmp.path().join("v")) {
                    v.load(&d(1)).map(|_| ())
                } else {
                    c.load(&d(1)).map(|_| ())
                };
                assert!(
                    matches!(loaded, Err(StorageError::Corrupt { .. })),
                    "{what} {}: {loaded:?}",
                    path.display()
                );
                let source = loaded.as_ref().err().and_then(std::error::Error::source);
                assert!(
                    source.is_some_and(|s| s.is::<EnvelopeError>()),
                    "{what}: the envelope error is kept as the source"
                );
                fs::write(&path, &good).map_err(|e| io_error(&path, e))?;
            }
        }
        Ok(())
    }

    #[test]
    fn a_record_under_the_wrong_name_is_corrupt() -> Result<(), StorageError> {
        let tmp = tempfile::tempdir().map_err(|e| io_error(Path::new("tmp"), e))?;
        let c = FileCalls::open(tmp.path(), FileOptions::new())?;
        c.save(record(1, 1))?;
        let (from, to) = (c.path_of(&d(1)), c.path_of(&d(2)));
        if let Some(parent) = to.parent() {
            crate::fs::create_dir_all(parent, false)?;
        }
        fs::copy(&from, &to).map_err(|e| io_error(&to, e))?;
        assert!(matches!(c.load(&d(2)), Err(StorageError::Corrupt { .. })));
        Ok(())
    }

    #[test]
    fn key_rotation() -> Result<(), StorageError> {
        let tmp = tempfile::tempdir().map_err(|e| io_error(Path::new("tmp"), e))?;
        let old = SigningKey::from_secret(b"old secret");
        let new = SigningKey::from_secret(b"new secret");
        let writer_old = FileValues::open(tmp.path(), FileOptions::new().keys(vec![old.clone()]))?;
        writer_old.save(&d(1), b"one")?;
        let rotated =
            FileValues::open(tmp.path(), FileOptions::new().keys(vec![new.clone(), old]))?;
        assert_eq!(rotated.load(&d(1))?.as_deref(), Some(&b"one"[..]));
        rotated.save(&d(2), b"two")?;
        let only_new = FileValues::open(tmp.path(), FileOptions::new().keys(vec![new]))?;
        assert_eq!(
            only_new.load(&d(2))?.as_deref(),
            Some(&b"two"[..]),
            "writes use the first key"
        );
        assert!(matches!(
            only_new.load(&d(1)),
            Err(StorageError::Corrupt { .. })
        ));
        let unsigned = FileValues::open(tmp.path(), FileOptions::new())?;
        assert!(matches!(
            unsigned.load(&d(2)),
            Err(StorageError::Corrupt { .. })
        ));
        unsigned.save(&d(3), b"three")?;
        assert!(
            matches!(only_new.load(&d(3)), Err(StorageError::Corrupt { .. })),
            "unsigned entries are refused when keys are set"
        );
        Ok(())
    }

    #[test]
    fn listing_skips_temporary_and_foreign_files() -> Result<(), StorageError> {
        let tmp = tempfile::tempdir().map_err(|e| io_error(Path::new("tmp"), e))?;
        let v = FileValues::open(tmp.path(), FileOptions::new())?;
        v.save(&d(1), b"x")?;
        let dir = v
            .path_of(&d(1))
            .parent()
            .map(Path::to_owned)
            .unwrap_or_default();
        fs::write(dir.join(".tmp-abc"), b"partial").map_err(|e| io_error(&dir, e))?;
        fs::write(dir.join("notes.txt"), b"hi").map_err(|e| io_error(&dir, e))?;
        assert_eq!(v.digests()?, vec![d(1)]);
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn modes_are_private_or_group_shared() -> Result<(), StorageError> {
        use crate::fs::tests::{existing_dir, mode};
        let tmp = tempfile::tempdir().map_err(|e| io_error(Path::new("tmp"), e))?;
        for (shared, dir_mode, file_mode) in [(false, 0o700, 0o600), (true, 0o2770, 0o660)] {
            // An existing root keeps its mode; a missing one is created with the cache's.
            let existing = tmp.path().join(format!("existing-{shared}"));
            existing_dir(&existing);
            let created = tmp.path().join(format!("created-{shared}")).join("cache");
            for root in [&existing, &created] {
                let options = FileOptions::new().durable(true).shared(shared);
                let v = FileValues::open(root, options.clone())?;
                let c = FileCalls::open(root.join("calls"), options)?;
                v.save(&d(1), b"x")?;
                c.save(record(2, 1))?;
                let fan = v
                    .path_of(&d(1))
                    .parent()
                    .map(Path::to_owned)
                    .unwrap_or_default();
                let expected_root = if root == &existing { 0o755 } else { dir_mode };
                assert_eq!(mode(root), expected_root, "{}", root.display());
                assert_eq!(mode(&fan), dir_mode, "{}", fan.display());
                assert_eq!(mode(&root.join("calls")), dir_mode);
                assert_eq!(mode(&v.path_of(&d(1))), file_mode);
                assert_eq!(mode(&c.path_of(&d(2))), file_mode);
            }
            assert_eq!(
                mode(&tmp.path().join(format!("created-{shared}"))),
                dir_mode
            );
        }
        Ok(())
    }

    #[test]
    fn an_entry_copied_to_another_address_is_corrupt() -> Result<(), StorageError> {
        let tmp = tempfile::tempdir().map_err(|e| io_error(Path::new("tmp"), e))?;
        let v = FileValues::open(tmp.path(), FileOptions::new())?;
        v.save(&d(1), b"the value of 1")?;
        v.save(&d(2), b"the value of 2")?;
        fs::copy(v.path_of(&d(1)), v.path_of(&d(2))).map_err(|e| io_error(tmp.path(), e))?;
        let loaded = v.load(&d(2));
        let message = loaded
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            matches!(loaded, Err(StorageError::Corrupt { .. })) && message.contains("the entry of"),
            "{message}"
        );
        // The next store repairs it.
        v.save(&d(2), b"the value of 2")?;
        assert_eq!(v.load(&d(2))?.as_deref(), Some(&b"the value of 2"[..]));
        Ok(())
    }

    #[test]
    fn old_format_entries_are_misses_that_the_next_store_rewrites() -> Result<(), StorageError> {
        let tmp = tempfile::tempdir().map_err(|e| io_error(Path::new("tmp"), e))?;
        let v = FileValues::open(tmp.path(), FileOptions::new())?;
        let path = v.path_of(&d(3));
        // Version 1: 56-byte header, blake3 tag, no address.
        let payload = b"old";
        let mut header = [0u8; 56];
        header[..4].copy_from_slice(&envelope::MAGIC);
        header[4] = 1;
        header[8..16].copy_from_slice(&3u64.to_le_bytes());
        header[16..24].copy_from_slice(&3u64.to_le_bytes());
        let mut tag = blake3::Hasher::new();
        tag.update(&header[..24]);
        tag.update(payload);
        header[24..].copy_from_slice(tag.finalize().as_bytes());
        fs::write(&path, [&header[..], &payload[..]].concat()).map_err(|e| io_error(&path, e))?;
        assert_eq!(v.load(&d(3))?, None, "a miss, not an error");
        v.save(&d(3), b"new")?;
        assert_eq!(v.load(&d(3))?.as_deref(), Some(&b"new"[..]));
        Ok(())
    }

    #[test]
    fn oversized_entries_are_neither_read_nor_written() -> Result<(), StorageError> {
        let tmp = tempfile::tempdir().map_err(|e| io_error(Path::new("tmp"), e))?;
        let v = FileValues::open(tmp.path(), FileOptions::new().max_entry_size(1000))?;
        let saved = v.save(&d(4), &[0u8; 1001]);
        assert!(
            matches!(saved, Err(StorageError::TooLarge { .. })),
            "{saved:?}"
        );
        v.save(&d(5), &[0u8; 1000])?;
        // A large file planted at an entry path is refused by its length, before reading.
        let path = v.path_of(&d(6));
        fs::write(&path, vec![0u8; 2000]).map_err(|e| io_error(&path, e))?;
        let loaded = v.load(&d(6));
        assert!(
            loaded
                .as_ref()
                .err()
                .is_some_and(|e| e.to_string().contains("more than max_entry_size")),
            "{loaded:?}"
        );
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn fifos_links_and_directories_at_entry_paths_are_corrupt_not_hangs() -> Result<(), StorageError>
    {
        let tmp = tempfile::tempdir().map_err(|e| io_error(Path::new("tmp"), e))?;
        let v = FileValues::open(tmp.path(), FileOptions::new())?;
        let fifo = v.path_of(&d(7));
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let link = v.path_of(&d(8));
        std::os::unix::fs::symlink("/dev/zero", &link).map_err(|e| io_error(&link, e))?;
        let dir = v.path_of(&d(9));
        fs::create_dir(&dir).map_err(|e| io_error(&dir, e))?;
        for (digest, why) in [
            (d(7), "not a regular file"),
            (d(8), "a symbolic link"),
            (d(9), "not a regular file"),
        ] {
            let loaded = v.load(&digest);
            let message = loaded
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(
                matches!(loaded, Err(StorageError::Corrupt { .. })) && message.contains(why),
                "{digest}: {message}"
            );
        }
        // A store replaces the FIFO and the link with real entries.
        v.save(&d(7), b"seven")?;
        v.save(&d(8), b"eight")?;
        assert_eq!(v.load(&d(7))?.as_deref(), Some(&b"seven"[..]));
        assert_eq!(v.load(&d(8))?.as_deref(), Some(&b"eight"[..]));
        Ok(())
    }

    #[test]
    fn stale_temporary_files_are_reclaimed() -> Result<(), StorageError> {
        let tmp = tempfile::tempdir().map_err(|e| io_error(Path::new("tmp"), e))?;
        let v = FileValues::open(tmp.path(), FileOptions::new())?;
        v.save(&d(1), b"kept")?;
        let old = tmp.path().join("ab").join(".tmp-killed");
        let fresh = tmp.path().join("ab").join(".tmp-writing");
        for p in [&old, &fresh] {
            fs::write(p, b"partial").map_err(|e| io_error(p, e))?;
        }
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        fs::File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(two_hours_ago))
            .map_err(|e| io_error(&old, e))?;
        assert_eq!(
            v.reclaim_temporary(std::time::Duration::from_secs(3600))?,
            1
        );
        assert!(!old.exists() && fresh.exists(), "only the old one goes");
        assert_eq!(v.load(&d(1))?.as_deref(), Some(&b"kept"[..]));
        Ok(())
    }
}
