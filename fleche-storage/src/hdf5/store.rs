//! The HDF5 storages (feature `hdf5`).
//!
//! Every group carries the address it was stored under and a checksum of the entry's MessagePack
//! bytes (`docs/format.md`, "HDF5 backend"); a load rebuilds the bytes, recomputes the checksum
//! and compares. Files are read whole, so they are read only when they are regular files within
//! `max_entry_size`, without following symbolic links.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdf5_pure::{AttrValue, File, FileBuilder};

use super::{LAYOUT_VERSION, PREFIX_LENGTHS};
use crate::encoding::{self, BlockKind};
use crate::fs::io_error;
use crate::integrity::{self, DEFAULT_MAX_ENTRY_SIZE};
use crate::{CallRecord, CallStorage, Digest, Payload, PayloadReader, StorageError, ValueStorage};

/// The value group attribute naming its layout (`f64`, `i64`, `f64-2d`, `msgpack`).
const ATTR_LAYOUT: &str = "fleche";
/// The group attribute holding the layout version ([`LAYOUT_VERSION`]), a `uint32`.
const ATTR_VERSION: &str = "layout_version";
/// The group attribute holding the address the entry was stored under, in hexadecimal.
const ATTR_ADDRESS: &str = "address";
/// The group attribute holding the entry's checksum, 16 `uint8` (xxh3-128, little-endian).
const ATTR_CHECKSUM: &str = "checksum";
/// The layout name a call record's checksum is computed under.
const RECORD: &str = "record";
/// What an in-place edit is taken to add to a file beyond the entry's data (object headers,
/// heaps, the rewritten root group), when checking that the file stays within `max_entry_size`.
const EDIT_ALLOWANCE: u64 = 16 * 1024;

/// A directory of HDF5 files holding entries by digest.
#[derive(Debug, Clone)]
struct H5Dir {
    root: PathBuf,
    prefix_length: usize,
    shared: bool,
    /// How long to wait for another process's lock on a file; `None` waits as long as it takes.
    lock_timeout: Option<Duration>,
    /// The largest entry stored or read, and the largest file read.
    max_entry_size: u64,
    /// Whether an entry of layout 1 has been reported (once per store, shared by its clones).
    old_layout_seen: Arc<AtomicBool>,
    /// Files parsed recently, reused while their stamp says they are unchanged.
    parsed: Arc<std::sync::Mutex<Vec<Parsed>>>,
}

/// A file opened for reading: the handle, its length and its metadata when opened.
type Opened = (fs::File, u64, fs::Metadata);

/// A file read and parsed, with what identified it then.
struct Parsed {
    path: PathBuf,
    stamp: Stamp,
    file: File,
}

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parsed").field("path", &self.path).finish()
    }
}

/// What identifies one version of a file: device, inode, length, and modification and change
/// times to the nanosecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    /// The stamp of a file, when the platform gives one.
    #[cfg(unix)]
    fn of(meta: &fs::Metadata) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        Some(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }

    #[cfg(not(unix))]
    fn of(_meta: &fs::Metadata) -> Option<Self> {
        None
    }

    /// Whether the file had been left alone long enough before `read` that a later change
    /// cannot carry the same times: file times come from a coarse clock, so a change made in the
    /// same clock tick as the read could look like the version read. (Git's index has the same
    /// rule for the same reason.)
    fn settled_before(&self, read: SystemTime) -> bool {
        let changed = self.mtime.max(self.ctime);
        let Ok(read) = read.duration_since(UNIX_EPOCH) else {
            return false;
        };
        let changed = Duration::new(
            u64::try_from(changed.0).unwrap_or(u64::MAX),
            u32::try_from(changed.1).unwrap_or(0),
        );
        read.checked_sub(changed).is_some_and(|d| d >= SETTLED)
    }
}

/// How long before a read a file must have last changed for its parse to be reused.
const SETTLED: Duration = Duration::from_millis(100);

/// The most parsed files a store keeps, and the largest it keeps.
const PARSED_FILES: usize = 16;
const PARSED_MAX_LEN: u64 = 1 << 20;

fn hdf5_error(path: &Path, source: hdf5_pure::Error) -> StorageError {
    StorageError::Hdf5 {
        location: path.display().to_string(),
        source,
    }
}

fn is_not_found(e: &hdf5_pure::Error) -> bool {
    matches!(
        e,
        hdf5_pure::Error::Format(hdf5_pure::FormatError::PathNotFound { .. })
    )
}

/// Whether `e` says the bytes of a file are not sound HDF5 — as opposed to an I/O failure, a
/// lock held elsewhere, or an edit the library does not support, which say nothing about the
/// file.
fn is_damage(e: &hdf5_pure::Error) -> bool {
    use hdf5_pure::Error as E;
    match e {
        E::Format(f) => !matches!(f, hdf5_pure::FormatError::PathNotFound { .. }),
        E::MissingMessage(_)
        | E::NotAGroup(_)
        | E::NotADataset(_)
        | E::CopyScreenUnreadable { .. } => true,
        _ => false,
    }
}

/// Why a file or an entry is not read (the source of a [`StorageError::Corrupt`]).
#[derive(Debug, thiserror::Error)]
enum Refused {
    /// The `.h5` path is a symbolic link: it is not followed.
    #[error("a symbolic link (not followed)")]
    Link,
    /// The `.h5` path is a directory, FIFO, device or socket.
    #[error("not a regular file")]
    NotRegular,
    /// The file is longer than `max_entry_size`, which bounds whole files (they are read whole).
    #[error("the file is {size} bytes, more than max_entry_size ({max})")]
    FileTooLarge { size: u64, max: u64 },
    /// A dataset that would take more than `max_entry_size` to read.
    #[error(
        "dataset `{dataset}` holds {elements} elements of {width} bytes, more than max_entry_size ({max})"
    )]
    DatasetTooLarge {
        dataset: String,
        elements: u64,
        width: u64,
        max: u64,
    },
    /// A dataset of another rank than its layout has.
    #[error("dataset `{dataset}` has shape {shape:?}, not of rank {rank}")]
    Shape {
        dataset: String,
        shape: Vec<u64>,
        rank: usize,
    },
    /// The rebuilt entry is larger than `max_entry_size`.
    #[error("{size} bytes, more than max_entry_size ({max})")]
    EntryTooLarge { size: u64, max: u64 },
    /// A group whose stamp (layout version, address, checksum attributes) is missing or wrong.
    #[error("{0}")]
    Stamp(String),
    /// The entry is sound HDF5 but was stored under another address.
    #[error("the entry of {found} is stored here")]
    WrongAddress { found: String },
    /// The rebuilt bytes do not match the stored checksum.
    #[error("checksum mismatch")]
    Checksum,
    /// The `fleche` attribute names no layout this version knows.
    #[error("unknown layout `{0}`")]
    UnknownLayout(String),
}

/// Whether a reader that cannot open or create a lock file, failing with `e`, reads without the
/// lock: on read-only media (`EROFS`), or where it may not create files (`EACCES`, `EPERM`).
/// Nobody can be writing there with fleche either, since a writer would need the same lock file.
fn reads_without_lock(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied
    )
}

/// The lock file a reader takes its shared lock on: the existing one opened read-only (a shared
/// lock needs no write access), or a new one; `None` when neither can be done for a reason
/// [`reads_without_lock`] accepts.
fn reader_lock(lock_path: &Path, shared: bool) -> Result<Option<fs::File>, StorageError> {
    let mut open = fs::OpenOptions::new();
    open.read(true);
    // Not blocking on a FIFO put in its place.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut open, libc::O_NONBLOCK);
    match open.open(lock_path) {
        Ok(file) => return Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) if reads_without_lock(&e) => return Ok(None),
        Err(e) => return Err(io_error(lock_path, e)),
    }
    match crate::fs::open_or_create(lock_path, shared) {
        Ok(file) => Ok(Some(file)),
        Err(StorageError::Io { source, .. }) if reads_without_lock(&source) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What an in-place edit of an existing file came to.
enum Edit {
    /// The entry is stored (now, or it already was).
    Done,
    /// There is no file: write a new one.
    Missing,
    /// The file is not a sound HDF5 file: move it aside and write a new one.
    Damaged(crate::error::BoxedError),
}

impl H5Dir {
    /// Removes the temporary files (`.tmp-*`, where new `.h5` files are written before they are
    /// renamed into place) last modified more than `older_than` ago.
    fn reclaim_temporary(&self, older_than: Duration) -> Result<usize, StorageError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_error(&self.root, e)),
        };
        let paths = entries.filter_map(Result::ok).map(|e| e.path());
        crate::fs::reclaim_temporary(paths, older_than)
    }

    fn open(root: &Path, prefix_length: usize, shared: bool) -> Result<Self, StorageError> {
        if !PREFIX_LENGTHS.contains(&prefix_length) {
            return Err(StorageError::Settings {
                location: root.display().to_string(),
                reason: format!("prefix_length must be between 1 and 64, not {prefix_length}"),
            });
        }
        crate::fs::create_dir_all(root, shared)?;
        // Files written with another prefix length would never be found: refuse them.
        for entry in fs::read_dir(root).map_err(|e| io_error(root, e))? {
            let entry = entry.map_err(|e| io_error(root, e))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".h5")) else {
                continue;
            };
            if stem.len() != prefix_length && stem.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(StorageError::Settings {
                    location: root.display().to_string(),
                    reason: format!(
                        "this directory holds files written with prefix_length {}, but prefix_length is {prefix_length}",
                        stem.len()
                    ),
                });
            }
        }
        Ok(Self {
            root: root.to_owned(),
            prefix_length,
            shared,
            lock_timeout: None,
            max_entry_size: DEFAULT_MAX_ENTRY_SIZE,
            old_layout_seen: Arc::default(),
            parsed: Arc::default(),
        })
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn file_of(&self, digest: &Digest) -> PathBuf {
        self.root
            .join(format!("{}.h5", digest.hex_prefix(self.prefix_length)))
    }

    /// The entry `digest` is unreadable: its file or group is damaged as `source` says.
    fn damaged(
        &self,
        digest: &Digest,
        source: impl Into<crate::error::BoxedError>,
    ) -> StorageError {
        StorageError::corrupt_by(
            self.location(),
            digest,
            self.file_of(digest).display().to_string(),
            source,
        )
    }

    /// Runs `f` holding the file's lock (shared for readers, exclusive for writers). A reader
    /// that can neither open nor create the lock file on read-only media reads without it.
    fn locked<T>(
        &self,
        path: &Path,
        exclusive: bool,
        f: impl FnOnce() -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let lock_path = path.with_extension("h5.lock");
        let lock = if exclusive {
            crate::fs::open_or_create(&lock_path, self.shared)?
        } else {
            match reader_lock(&lock_path, self.shared)? {
                Some(lock) => lock,
                None => {
                    tracing::debug!(lock = %lock_path.display(),
                        "reading without a lock: the lock file cannot be opened or created");
                    return f();
                }
            }
        };
        match self.lock_timeout {
            None if exclusive => lock.lock().map_err(|e| io_error(&lock_path, e))?,
            None => lock.lock_shared().map_err(|e| io_error(&lock_path, e))?,
            Some(timeout) => {
                let deadline = Instant::now() + timeout;
                loop {
                    let attempt = if exclusive {
                        lock.try_lock()
                    } else {
                        lock.try_lock_shared()
                    };
                    match attempt {
                        Ok(()) => break,
                        Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(fs::TryLockError::WouldBlock) => {
                            return Err(StorageError::LockTimeout {
                                path: lock_path,
                                waited: timeout,
                            });
                        }
                        Err(fs::TryLockError::Error(e)) => return Err(io_error(&lock_path, e)),
                    }
                }
            }
        }
        let out = f();
        let _ = lock.unlock();
        out
    }

    /// The bytes of the file at `path`, read safely: without following a symbolic link, without
    /// blocking on a FIFO or device, only from a regular file, and only when it is no longer than
    /// `max_entry_size`. `Ok(None)` when there is no file; the outer error is an I/O failure.
    fn read_bytes(&self, path: &Path) -> Result<Result<Option<Vec<u8>>, Refused>, StorageError> {
        match self.open_checked(path)? {
            Ok(Some((file, len, _))) => self.read_whole(path, &file, len),
            Ok(None) => Ok(Ok(None)),
            Err(refused) => Ok(Err(refused)),
        }
    }

    /// The file at `path` and its length, opened for reading without following a symbolic
    /// link or blocking on a FIFO, and only when it is a regular file within `max_entry_size`.
    fn open_checked(&self, path: &Path) -> Result<Result<Option<Opened>, Refused>, StorageError> {
        use crate::fs::Refusal;
        let max = self.max_entry_size;
        Ok(match crate::fs::open_regular(path, max)? {
            Ok(found) => Ok(found.map(|(file, meta)| (file, meta.len(), meta))),
            Err(Refusal::Link) => Err(Refused::Link),
            Err(Refusal::NotRegular) => Err(Refused::NotRegular),
            Err(Refusal::TooLarge { size }) => Err(Refused::FileTooLarge { size, max }),
        })
    }

    /// The bytes of an opened file of length `len` (as [`H5Dir::open_checked`] found it).
    fn read_whole(
        &self,
        path: &Path,
        mut file: &fs::File,
        len: u64,
    ) -> Result<Result<Option<Vec<u8>>, Refused>, StorageError> {
        let max = self.max_entry_size;
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        // One byte more than the length seen, so a file that grew is noticed, not read on.
        io::Seek::seek(&mut file, io::SeekFrom::Start(0)).map_err(|e| io_error(path, e))?;
        file.take(len.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(path, e))?;
        if bytes.len() as u64 > max {
            return Ok(Err(Refused::FileTooLarge {
                size: bytes.len() as u64,
                max,
            }));
        }
        Ok(Ok(Some(bytes)))
    }

    /// Opens the file holding `digest` for reading; `None` when it does not exist. A file read
    /// and parsed before, unchanged since (same device, inode, length and times, and last
    /// changed well before it was read), is not read again.
    fn read_file(&self, digest: &Digest) -> Result<Option<File>, StorageError> {
        let path = self.file_of(digest);
        // Opened before it is locked: a writer replacing the file leaves this handle on the
        // complete old version, and one editing it in place waits for the lock (or, once it
        // has written, has changed the file's stamp).
        let (handle, len, meta) = match self.open_checked(&path)? {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(None),
            Err(refused) => return Err(self.damaged(digest, refused)),
        };
        if let Some(file) = self.kept(&path, &meta) {
            return Ok(Some(file));
        }
        self.locked(&path, false, || self.parse(digest, &path, &handle, len))
    }

    /// The kept parse of the file at `path`, if its stamp is still `meta`'s: an unchanged file
    /// needs neither its lock nor a read.
    fn kept(&self, path: &Path, meta: &fs::Metadata) -> Option<File> {
        let stamp = Stamp::of(meta)?;
        let parsed = self
            .parsed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        parsed
            .iter()
            .find(|p| p.path == path && p.stamp == stamp)
            .map(|p| p.file.clone())
    }

    /// The parsed file `handle` (at `path`, `len` bytes long when opened), read under the
    /// file's lock, and kept for reuse when it had settled before it was read.
    fn parse(
        &self,
        digest: &Digest,
        path: &Path,
        handle: &fs::File,
        len: u64,
    ) -> Result<Option<File>, StorageError> {
        // The stamp under the lock: what is read next is this version.
        let stamp = handle.metadata().ok().as_ref().and_then(Stamp::of);
        let read_at = SystemTime::now();
        let bytes = match self.read_whole(path, handle, len)? {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(refused) => return Err(self.damaged(digest, refused)),
        };
        let file = File::from_bytes(bytes).map_err(|e| self.damaged(digest, e))?;
        if let Some(stamp) = stamp
            && stamp.len <= PARSED_MAX_LEN
            && stamp.settled_before(read_at)
        {
            let mut parsed = self
                .parsed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            parsed.retain(|p| p.path != path);
            if parsed.len() >= PARSED_FILES {
                parsed.remove(0);
            }
            parsed.push(Parsed {
                path: path.to_owned(),
                stamp,
                file: file.clone(),
            });
        }
        Ok(Some(file))
    }

    /// Checks a group's stamp: its layout version, the address it was stored under (`digest`),
    /// and the presence of its checksum, which it returns. `Ok(None)` for a group of layout 1 (no
    /// stamp at all): a miss, reported once per store.
    fn stamp(
        &self,
        digest: &Digest,
        attrs: &HashMap<String, AttrValue>,
    ) -> Result<Option<u128>, StorageError> {
        let stamp = |what: String| Err(self.damaged(digest, Refused::Stamp(what)));
        let Some(checksum) = attrs.get(ATTR_CHECKSUM) else {
            if attrs.contains_key(ATTR_VERSION) || attrs.contains_key(ATTR_ADDRESS) {
                return stamp(format!("no `{ATTR_CHECKSUM}` attribute"));
            }
            if !self.old_layout_seen.swap(true, Ordering::Relaxed) {
                tracing::warn!(location = %self.location(), layout_version = 1,
                    "HDF5 entries of an older layout are misses here and are rewritten when next stored");
            }
            return Ok(None);
        };
        match attrs.get(ATTR_VERSION) {
            Some(AttrValue::U32(v)) if *v == LAYOUT_VERSION => {}
            Some(AttrValue::U32(v)) => {
                return stamp(format!(
                    "layout version {v}; this fleche reads {LAYOUT_VERSION}"
                ));
            }
            _ => return stamp(format!("no `{ATTR_VERSION}` attribute of type uint32")),
        }
        match attrs.get(ATTR_ADDRESS).and_then(AttrValue::as_str) {
            Some(a) if a == digest.to_hex() => {}
            Some(a) => {
                return Err(self.damaged(
                    digest,
                    Refused::WrongAddress {
                        found: a.to_owned(),
                    },
                ));
            }
            None => return stamp(format!("no `{ATTR_ADDRESS}` string attribute")),
        }
        match checksum {
            AttrValue::U8Array(b) => match <[u8; 16]>::try_from(b.as_slice()) {
                Ok(b) => Ok(Some(u128::from_le_bytes(b))),
                Err(_) => stamp(format!("`{ATTR_CHECKSUM}` is {} bytes, not 16", b.len())),
            },
            _ => stamp(format!("`{ATTR_CHECKSUM}` is not an array of uint8")),
        }
    }

    /// The shape of dataset `name` of group `digest` after checking that it has `rank`
    /// dimensions and that reading it as elements `width` bytes wide (or its stored width, if
    /// wider) stays within `max_entry_size`: nothing is allocated for a larger one.
    fn bounded(
        &self,
        digest: &Digest,
        ds: &hdf5_pure::Dataset,
        name: &str,
        rank: usize,
        width: u64,
    ) -> Result<Vec<u64>, StorageError> {
        let damaged = |e: hdf5_pure::Error| self.damaged(digest, e);
        let shape = ds.shape().map_err(damaged)?;
        if shape.len() != rank {
            return Err(self.damaged(
                digest,
                Refused::Shape {
                    dataset: name.to_owned(),
                    shape,
                    rank,
                },
            ));
        }
        let width = width.max(ds.element_size().map_err(damaged)?);
        let elements = shape.iter().try_fold(1u64, |n, d| n.checked_mul(*d));
        let too_large = Refused::DatasetTooLarge {
            dataset: name.to_owned(),
            elements: elements.unwrap_or(u64::MAX),
            width,
            max: self.max_entry_size,
        };
        match elements.and_then(|n| n.checked_mul(width)) {
            Some(size) if size <= self.max_entry_size => Ok(shape),
            _ => Err(self.damaged(digest, too_large)),
        }
    }

    /// Fails unless `bytes`, rebuilt from group `digest` of layout `layout`, are what was stored.
    fn verify(
        &self,
        digest: &Digest,
        layout: &str,
        bytes: &[u8],
        expected: u128,
    ) -> Result<(), StorageError> {
        if bytes.len() as u64 > self.max_entry_size {
            return Err(self.damaged(
                digest,
                Refused::EntryTooLarge {
                    size: bytes.len() as u64,
                    max: self.max_entry_size,
                },
            ));
        }
        if checksum(layout, digest, bytes) == expected {
            Ok(())
        } else {
            Err(self.damaged(digest, Refused::Checksum))
        }
    }

    /// The uint8 dataset `name` of group `digest`, bounded as [`H5Dir::bounded`] says.
    fn read_u8s(&self, file: &File, digest: &Digest, name: &str) -> Result<Vec<u8>, StorageError> {
        let damaged = |e: hdf5_pure::Error| self.damaged(digest, e);
        let path = format!("{}/{name}", digest.to_hex());
        let ds = file.dataset(&path).map_err(damaged)?;
        self.bounded(digest, &ds, &path, 1, 1)?;
        ds.read_u8().map_err(damaged)
    }

    /// Stores group `digest` in its file, under the file's exclusive lock and in one commit:
    /// unless `current` says the group of that name already is this entry, it is deleted and the
    /// new one, built by `build`, added in the same edit session. `size` is what the entry adds
    /// to the file. A file that is not a regular file or is not sound HDF5 is moved aside and
    /// replaced by a new file holding this entry.
    fn write(
        &self,
        digest: &Digest,
        size: u64,
        current: impl Fn(&File) -> bool,
        build: impl Fn(&mut dyn GroupSink) -> Result<(), hdf5_pure::Error>,
    ) -> Result<(), StorageError> {
        let path = self.file_of(digest);
        self.locked(&path, true, || {
            match self.edit(&path, digest, size, &current, &build)? {
                Edit::Done => Ok(()),
                Edit::Missing => self.write_new(&path, digest, &build),
                Edit::Damaged(why) => {
                    self.move_aside(&path, &*why)?;
                    self.write_new(&path, digest, &build)
                }
            }
        })
    }

    /// The in-place half of [`H5Dir::write`].
    fn edit(
        &self,
        path: &Path,
        digest: &Digest,
        size: u64,
        current: &dyn Fn(&File) -> bool,
        build: &dyn Fn(&mut dyn GroupSink) -> Result<(), hdf5_pure::Error>,
    ) -> Result<Edit, StorageError> {
        let fail = |e: hdf5_pure::Error| {
            if is_damage(&e) {
                Ok(Edit::Damaged(e.into()))
            } else {
                Err(hdf5_error(path, e))
            }
        };
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Edit::Missing),
            Err(e) => return Err(io_error(path, e)),
        };
        if meta.file_type().is_symlink() {
            return Ok(Edit::Damaged(Refused::Link.into()));
        }
        if !meta.is_file() {
            return Ok(Edit::Damaged(Refused::NotRegular.into()));
        }
        let file = match File::open_rw(path) {
            Ok(file) => file,
            Err(e) => return fail(e),
        };
        let name = digest.to_hex();
        let exists = match file.group(&name) {
            Ok(_) => true,
            Err(e) if is_not_found(&e) => false,
            // A damaged group of that name is replaced like any other.
            Err(e) if is_damage(&e) => true,
            Err(e) => return Err(hdf5_error(path, e)),
        };
        if exists {
            if current(&file) {
                return Ok(Edit::Done);
            }
            if let Err(e) = file.root().delete(&name) {
                return fail(e);
            }
        }
        let grown = meta
            .len()
            .saturating_add(size)
            .saturating_add(EDIT_ALLOWANCE);
        if grown > self.max_entry_size {
            return Err(self.file_too_large(path, digest, grown));
        }
        let group = match file.root().create_group(&name) {
            Ok(group) => group,
            Err(e) => return fail(e),
        };
        build(&mut EditGroup(&group)).map_err(|e| hdf5_error(path, e))?;
        // The deletion of the old group and the new group are published together, or neither.
        if let Err(e) = file.commit() {
            return fail(e);
        }
        #[cfg(test)]
        hooks::committed(path)?;
        Ok(Edit::Done)
    }

    /// Writes a new file holding only group `digest`, whole, to a temporary file that is then
    /// renamed over `path`.
    fn write_new(
        &self,
        path: &Path,
        digest: &Digest,
        build: &dyn Fn(&mut dyn GroupSink) -> Result<(), hdf5_pure::Error>,
    ) -> Result<(), StorageError> {
        let mut builder = FileBuilder::new();
        let mut group = builder.create_group(&digest.to_hex());
        build(&mut NewGroup(&mut group)).map_err(|e| hdf5_error(path, e))?;
        builder.add_group(group.finish());
        let mut tmp = crate::fs::temp_file_in(&self.root, self.shared)
            .map_err(|e| io_error(&self.root, e))?;
        builder
            .finish_to(tmp.as_file_mut())
            .map_err(|e| hdf5_error(tmp.path(), e))?;
        let len = tmp
            .as_file()
            .metadata()
            .map_err(|e| io_error(tmp.path(), e))?
            .len();
        if len > self.max_entry_size {
            return Err(self.file_too_large(path, digest, len));
        }
        tmp.persist(path).map_err(|e| io_error(path, e.error))?;
        #[cfg(test)]
        hooks::committed(path)?;
        Ok(())
    }

    /// Storing `digest` would make the file at `path` about `size` bytes long, more than
    /// `max_entry_size`: readers would refuse it, so it is not stored.
    fn file_too_large(&self, path: &Path, digest: &Digest, size: u64) -> StorageError {
        StorageError::Settings {
            location: path.display().to_string(),
            reason: format!(
                "storing entry {digest} would make this file about {size} bytes long, more than \
                 max_entry_size ({}), which bounds whole HDF5 files; not stored (use a longer \
                 prefix_length or a larger max_entry_size)",
                self.max_entry_size
            ),
        }
    }

    /// Renames the damaged file (or link, or other non-file) at `path` to
    /// `<name>.corrupt-<unix time>`, where it is kept for inspection, with a warning.
    fn move_aside(
        &self,
        path: &Path,
        why: &(dyn std::error::Error + Send + Sync),
    ) -> Result<PathBuf, StorageError> {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for n in 0..1000u32 {
            let aside = path.with_file_name(match n {
                0 => format!("{name}.corrupt-{secs}"),
                n => format!("{name}.corrupt-{secs}-{n}"),
            });
            match fs::symlink_metadata(&aside) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&aside, e)),
                Ok(_) => continue,
            }
            fs::rename(path, &aside).map_err(|e| io_error(path, e))?;
            tracing::warn!(file = %path.display(), moved_to = %aside.display(), error = %why,
                "a damaged HDF5 file was moved aside; its entries are misses and a new file takes its place");
            return Ok(aside);
        }
        Err(io_error(
            path,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "cannot move the damaged file aside: too many .corrupt- files",
            ),
        ))
    }

    /// Removes group `digest`. A damaged file is moved aside (its entries were unreadable).
    fn remove(&self, digest: &Digest) -> Result<bool, StorageError> {
        let path = self.file_of(digest);
        if fs::symlink_metadata(&path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
            return Ok(false);
        }
        let name = digest.to_hex();
        self.locked(&path, true, || {
            let damaged =
                |why: crate::error::BoxedError| self.move_aside(&path, &*why).map(|_| false);
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(io_error(&path, e)),
            };
            if !meta.is_file() {
                return damaged(Refused::NotRegular.into());
            }
            let file = match File::open_rw(&path) {
                Ok(file) => file,
                Err(e) if is_damage(&e) => return damaged(e.into()),
                Err(e) => return Err(hdf5_error(&path, e)),
            };
            match file.group(&name) {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Ok(false),
                Err(e) if is_damage(&e) => {}
                Err(e) => return Err(hdf5_error(&path, e)),
            }
            match file.root().delete(&name).and_then(|()| file.commit()) {
                Ok(()) => {}
                Err(e) if is_damage(&e) => return damaged(e.into()),
                Err(e) => return Err(hdf5_error(&path, e)),
            }
            #[cfg(test)]
            hooks::committed(&path)?;
            Ok(true)
        })
    }

    /// Every entry's digest, from every file's group names; unreadable files are skipped with a
    /// warning.
    fn digests(&self) -> Result<Vec<Digest>, StorageError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(|e| io_error(&self.root, e))? {
            let path = entry.map_err(|e| io_error(&self.root, e))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("h5") {
                continue;
            }
            let groups = self.locked(&path, false, || match self.read_bytes(&path)? {
                Ok(None) => Ok(Vec::new()),
                Ok(Some(bytes)) => File::from_bytes(bytes)
                    .and_then(|f| f.root().groups())
                    .map_err(|e| hdf5_error(&path, e)),
                Err(refused) => Err(StorageError::Settings {
                    location: path.display().to_string(),
                    reason: refused.to_string(),
                }),
            });
            match groups {
                Ok(names) => out.extend(names.iter().filter_map(|n| n.parse::<Digest>().ok())),
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable HDF5 file"),
            }
        }
        Ok(out)
    }
}

/// The checksum of an entry's MessagePack `bytes` stored at `address` in layout `layout`: the
/// xxh3-128 of `"fleche-hdf5/2/<layout>"`, the address's 32 bytes and the bytes
/// (`docs/format.md`).
fn checksum(layout: &str, address: &Digest, bytes: &[u8]) -> u128 {
    let context = format!("fleche-hdf5/{LAYOUT_VERSION}/{layout}");
    integrity::checksum(context.as_bytes(), address, bytes)
}

/// [`checksum`] of the bytes that are `parts` one after the other.
fn checksum_parts(layout: &str, address: &Digest, parts: &[&[u8]]) -> u128 {
    let context = format!("fleche-hdf5/{LAYOUT_VERSION}/{layout}");
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(context.as_bytes());
    h.update(address.as_bytes());
    for p in parts {
        h.update(p);
    }
    h.digest128()
}

/// Writes the stamp every group carries: layout version, address and checksum.
fn stamp(g: &mut dyn GroupSink, address: &Digest, sum: u128) -> Result<(), hdf5_pure::Error> {
    g.attr(ATTR_VERSION, AttrValue::U32(LAYOUT_VERSION))?;
    g.attr(ATTR_ADDRESS, AttrValue::VarLenString(address.to_hex()))?;
    g.attr(
        ATTR_CHECKSUM,
        AttrValue::U8Array(sum.to_le_bytes().to_vec()),
    )
}

/// Where an entry's datasets and attributes go: a group of a new file, or one added in place.
trait GroupSink {
    fn attr(&mut self, name: &str, value: AttrValue) -> Result<(), hdf5_pure::Error>;
    fn f64s(
        &mut self,
        name: &str,
        data: &[f64],
        shape: Option<[u64; 2]>,
    ) -> Result<(), hdf5_pure::Error>;
    fn i64s(&mut self, name: &str, data: &[i64]) -> Result<(), hdf5_pure::Error>;
    fn bytes(&mut self, name: &str, data: &[u8]) -> Result<(), hdf5_pure::Error>;
    /// A dataset of `kind` elements whose little-endian bytes are `data`, of `shape` (1-D when
    /// `None`).
    fn block(
        &mut self,
        name: &str,
        kind: BlockKind,
        data: Vec<u8>,
        shape: Option<[u64; 2]>,
    ) -> Result<(), hdf5_pure::Error>;
}

/// The HDF5 datatype of a block's elements: little-endian numbers, and for `bool` the enum of
/// int8 `FALSE = 0`, `TRUE = 1` that h5py reads as numpy's `bool`.
fn datatype(kind: BlockKind) -> Result<hdf5_pure::Datatype, hdf5_pure::Error> {
    use hdf5_pure::*;
    Ok(match kind {
        BlockKind::F64 => make_f64_type(),
        BlockKind::F32 => make_f32_type(),
        BlockKind::I64 => make_i64_type(),
        BlockKind::I32 => make_i32_type(),
        BlockKind::I16 => make_i16_type(),
        BlockKind::I8 => make_i8_type(),
        BlockKind::U64 => make_u64_type(),
        BlockKind::U32 => make_u32_type(),
        BlockKind::U16 => make_u16_type(),
        BlockKind::U8 => make_u8_type(),
        BlockKind::Bool => EnumTypeBuilder::with_base(make_i8_type())
            .value("FALSE", 0)
            .value("TRUE", 1)
            .build()?,
    })
}

fn elements(data: &[u8], kind: BlockKind) -> u64 {
    (data.len() / kind.width()) as u64
}

struct NewGroup<'a>(&'a mut hdf5_pure::GroupBuilder);

impl GroupSink for NewGroup<'_> {
    fn attr(&mut self, name: &str, value: AttrValue) -> Result<(), hdf5_pure::Error> {
        self.0.set_attr(name, value);
        Ok(())
    }
    fn f64s(
        &mut self,
        name: &str,
        data: &[f64],
        shape: Option<[u64; 2]>,
    ) -> Result<(), hdf5_pure::Error> {
        let ds = self.0.create_dataset(name);
        ds.with_f64_data(data);
        if let Some(s) = shape {
            ds.with_shape(&s);
        }
        Ok(())
    }
    fn i64s(&mut self, name: &str, data: &[i64]) -> Result<(), hdf5_pure::Error> {
        self.0.create_dataset(name).with_i64_data(data);
        Ok(())
    }
    fn bytes(&mut self, name: &str, data: &[u8]) -> Result<(), hdf5_pure::Error> {
        self.0.create_dataset(name).with_u8_data(data);
        Ok(())
    }
    fn block(
        &mut self,
        name: &str,
        kind: BlockKind,
        data: Vec<u8>,
        shape: Option<[u64; 2]>,
    ) -> Result<(), hdf5_pure::Error> {
        let dt = datatype(kind)?;
        let n = elements(&data, kind);
        let ds = self.0.create_dataset(name);
        ds.with_raw_data(dt, data, n);
        if let Some(s) = shape {
            ds.with_shape(&s);
        }
        Ok(())
    }
}

struct EditGroup<'a>(&'a hdf5_pure::Group);

impl GroupSink for EditGroup<'_> {
    fn attr(&mut self, name: &str, value: AttrValue) -> Result<(), hdf5_pure::Error> {
        self.0.set_attr(name, value)
    }
    fn f64s(
        &mut self,
        name: &str,
        data: &[f64],
        shape: Option<[u64; 2]>,
    ) -> Result<(), hdf5_pure::Error> {
        self.0
            .create_dataset(name, |b| {
                b.with_f64_data(data);
                if let Some(s) = shape {
                    b.with_shape(&s);
                }
            })
            .map(|_| ())
    }
    fn i64s(&mut self, name: &str, data: &[i64]) -> Result<(), hdf5_pure::Error> {
        self.0
            .create_dataset(name, |b| {
                b.with_i64_data(data);
            })
            .map(|_| ())
    }
    fn bytes(&mut self, name: &str, data: &[u8]) -> Result<(), hdf5_pure::Error> {
        self.0
            .create_dataset(name, |b| {
                b.with_u8_data(data);
            })
            .map(|_| ())
    }
    fn block(
        &mut self,
        name: &str,
        kind: BlockKind,
        data: Vec<u8>,
        shape: Option<[u64; 2]>,
    ) -> Result<(), hdf5_pure::Error> {
        let dt = datatype(kind)?;
        let n = elements(&data, kind);
        self.0
            .create_dataset(name, |b| {
                b.with_raw_data(dt, data, n);
                if let Some(s) = shape {
                    b.with_shape(&s);
                }
            })
            .map(|_| ())
    }
}

/// How a value is laid out in its group.
enum Layout {
    /// A value that is one numeric block (`rows: None`), or an array of equally long blocks of
    /// one kind (`rows: Some(n)`): a typed dataset of the elements, 1-D or 2-D.
    Block {
        kind: BlockKind,
        data: Vec<u8>,
        rows: Option<u64>,
    },
    F64(Vec<f64>),
    I64(Vec<i64>),
    F64Matrix(Vec<f64>, [u64; 2]),
    Blob,
}

impl Layout {
    /// The value of the `fleche` attribute.
    fn name(&self) -> &'static str {
        match self {
            Layout::Block { kind, rows, .. } => block_layout_name(*kind, rows.is_some()),
            Layout::F64(_) => "f64",
            Layout::I64(_) => "i64",
            Layout::F64Matrix(..) => "f64-2d",
            Layout::Blob => "msgpack",
        }
    }

    /// The bytes its datasets take (`blob` is the MessagePack encoding).
    fn stored_size(&self, blob: &[u8]) -> u64 {
        match self {
            Layout::Block { data, .. } => data.len() as u64,
            Layout::F64(v) | Layout::F64Matrix(v, _) => (v.len() as u64).saturating_mul(8),
            Layout::I64(v) => (v.len() as u64).saturating_mul(8),
            Layout::Blob => blob.len() as u64,
        }
    }

    /// The MessagePack bytes a load rebuilds from the datasets.
    fn encode(&self) -> Option<Vec<u8>> {
        match self {
            Layout::F64(v) => Some(encode_f64_array(v)),
            Layout::I64(v) => Some(encode_i64_array(v)),
            Layout::F64Matrix(v, [_, cols]) => {
                usize::try_from(*cols).ok().map(|c| encode_f64_rows(v, c))
            }
            Layout::Block { kind, data, rows } => match rows {
                None => Some(block_bytes(*kind, data)),
                Some(r) => rows_bytes(*kind, data, *r),
            },
            Layout::Blob => None,
        }
    }
}

/// The layout names of numeric blocks: `block-<kind>` (1-D) and `block-<kind>-2d`.
fn block_layout_name(kind: BlockKind, two_d: bool) -> &'static str {
    macro_rules! names {
        ($($k:ident => $one:literal, $two:literal;)*) => {
            match kind {
                $(BlockKind::$k => if two_d { $two } else { $one },)*
            }
        };
    }
    names! {
        F64 => "block-f64", "block-f64-2d";
        F32 => "block-f32", "block-f32-2d";
        I64 => "block-i64", "block-i64-2d";
        I32 => "block-i32", "block-i32-2d";
        I16 => "block-i16", "block-i16-2d";
        I8 => "block-i8", "block-i8-2d";
        U64 => "block-u64", "block-u64-2d";
        U32 => "block-u32", "block-u32-2d";
        U16 => "block-u16", "block-u16-2d";
        U8 => "block-u8", "block-u8-2d";
        Bool => "block-bool", "block-bool-2d";
    }
}

/// The block kind and rank of a layout name, if it names a block layout.
fn parse_block_layout(name: &str) -> Option<(BlockKind, bool)> {
    BlockKind::ALL.into_iter().find_map(|k| {
        if block_layout_name(k, false) == name {
            Some((k, false))
        } else if block_layout_name(k, true) == name {
            Some((k, true))
        } else {
            None
        }
    })
}

/// The value bytes of one block: its header, then `data`.
fn block_bytes(kind: BlockKind, data: &[u8]) -> Vec<u8> {
    let (h, n) = encoding::block_header(kind, data.len()).unwrap_or(([0; 6], 0));
    let mut out = Vec::with_capacity(n + data.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(data);
    out
}

/// The value bytes of an array of `rows` equally long blocks cut from `data`.
fn rows_bytes(kind: BlockKind, data: &[u8], rows: u64) -> Option<Vec<u8>> {
    let rows = usize::try_from(rows).ok()?;
    if rows == 0 || !data.len().is_multiple_of(rows) || data.is_empty() {
        return None;
    }
    let row = data.len() / rows;
    let mut out = Vec::with_capacity(5 + rows * 6 + data.len());
    array_header(&mut out, rows);
    for chunk in data.chunks(row) {
        let (h, n) = encoding::block_header(kind, chunk.len()).ok()?;
        out.extend_from_slice(&h[..n]);
        out.extend_from_slice(chunk);
    }
    Some(out)
}

/// A value that is one block, or an array of equally long blocks of one kind.
fn block_layout(bytes: &[u8]) -> Option<Layout> {
    if let Some((kind, start, len)) = encoding::block_at(bytes)
        && start + len == bytes.len()
        && len > 0
        && len % kind.width() == 0
    {
        return Some(Layout::Block {
            kind,
            data: bytes[start..].to_vec(),
            rows: None,
        });
    }
    let (rows, mut at) = match *bytes.first()? {
        b @ 0x91..=0x9f => (usize::from(b & 0x0f), 1),
        0xdc => (
            usize::from(u16::from_be_bytes(bytes.get(1..3)?.try_into().ok()?)),
            3,
        ),
        0xdd => (
            usize::try_from(u32::from_be_bytes(bytes.get(1..5)?.try_into().ok()?)).ok()?,
            5,
        ),
        _ => return None,
    };
    let mut kind_len = None;
    let mut data = Vec::with_capacity(bytes.len());
    for _ in 0..rows {
        let (kind, start, len) = encoding::block_at(bytes.get(at..)?)?;
        if len == 0 || len % kind.width() != 0 || kind_len.is_some_and(|kl| kl != (kind, len)) {
            return None;
        }
        kind_len = Some((kind, len));
        data.extend_from_slice(bytes.get(at + start..at + start + len)?);
        at += start + len;
    }
    let (kind, _) = kind_len?;
    (at == bytes.len()).then_some(Layout::Block {
        kind,
        data,
        rows: Some(rows as u64),
    })
}

/// A MessagePack array of float64 (the encoding of a `Vec<f64>`), read without building a
/// value tree: the common large numeric result. Only the shortest array header `rmp` writes is
/// accepted, so [`encode_f64_array`] gives back exactly these bytes.
fn f64_array(bytes: &[u8]) -> Option<Vec<f64>> {
    let (n, rest) = match *bytes.first()? {
        b @ 0x90..=0x9f => (usize::from(b & 0x0f), bytes.get(1..)?),
        0xdc => (
            usize::from(u16::from_be_bytes(bytes.get(1..3)?.try_into().ok()?)),
            bytes.get(3..)?,
        ),
        0xdd => (
            usize::try_from(u32::from_be_bytes(bytes.get(1..5)?.try_into().ok()?)).ok()?,
            bytes.get(5..)?,
        ),
        _ => return None,
    };
    let shortest = match bytes[0] {
        0x90..=0x9f => true,
        0xdc => n > 15,
        _ => n > usize::from(u16::MAX),
    };
    if n == 0 || !shortest || rest.len() != n.checked_mul(9)? {
        return None;
    }
    rest.chunks_exact(9)
        .map(|c| (c[0] == 0xcb).then(|| c[1..].try_into().ok().map(f64::from_be_bytes))?)
        .collect()
}

/// The MessagePack array header for `n` items, as `rmp` writes it.
fn array_header(out: &mut Vec<u8>, n: usize) {
    match n {
        0..=15 => out.push(0x90 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(0xdc);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0xdd);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
}

/// The MessagePack encoding of an array of float64, as `rmp` writes it.
fn encode_f64_array(values: &[f64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + values.len() * 9);
    array_header(&mut out, values.len());
    for v in values {
        out.push(0xcb);
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

/// The MessagePack encoding of an array of integers, each in its shortest form.
fn encode_i64_array(values: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + values.len() * 9);
    array_header(&mut out, values.len());
    for v in values {
        let _ = rmpv::encode::write_value(&mut out, &rmpv::Value::from(*v));
    }
    out
}

/// The MessagePack encoding of an array of rows of float64, `flat` cut into rows of `cols`.
fn encode_f64_rows(flat: &[f64], cols: usize) -> Vec<u8> {
    let rows = flat.len().checked_div(cols).unwrap_or(0);
    let mut out = Vec::with_capacity(5 + rows * 5 + flat.len() * 9);
    array_header(&mut out, rows);
    for row in flat.chunks(cols.max(1)) {
        array_header(&mut out, row.len());
        for v in row {
            out.push(0xcb);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    out
}

/// The numeric shapes that become typed datasets: only when the datasets rebuild exactly
/// `bytes` (so a load returns what was stored, and the checksum covers it) and take at most
/// `max` bytes; anything else is a blob.
fn layout(bytes: &[u8], max: u64) -> Layout {
    // The float64 fast path accepts only what `encode_f64_array` writes back: no second copy.
    let exact = |l: &Layout| {
        matches!(l, Layout::F64(_) | Layout::Block { .. }) || l.encode().as_deref() == Some(bytes)
    };
    let typed = typed_layout(bytes).filter(|l| l.stored_size(bytes) <= max && exact(l));
    typed.unwrap_or(Layout::Blob)
}

fn typed_layout(bytes: &[u8]) -> Option<Layout> {
    use rmpv::Value as Mp;
    if let Some(block) = block_layout(bytes) {
        return Some(block);
    }
    if let Some(v) = f64_array(bytes) {
        return Some(Layout::F64(v));
    }
    let Ok(Mp::Array(items)) = rmpv::decode::read_value(&mut &bytes[..]) else {
        return None;
    };
    if items.is_empty() {
        return None;
    }
    if items
        .iter()
        .all(|v| matches!(v, Mp::Integer(i) if i.as_i64().is_some()))
    {
        return Some(Layout::I64(items.iter().filter_map(Mp::as_i64).collect()));
    }
    let rows: Option<Vec<&Vec<Mp>>> = items
        .iter()
        .map(|v| match v {
            Mp::Array(row) if !row.is_empty() && row.iter().all(|x| matches!(x, Mp::F64(_))) => {
                Some(row)
            }
            _ => None,
        })
        .collect();
    let rows = rows?;
    let cols = rows.first()?.len();
    if !rows.iter().all(|r| r.len() == cols) {
        return None;
    }
    let flat = rows
        .iter()
        .flat_map(|r| r.iter().filter_map(Mp::as_f64))
        .collect();
    Some(Layout::F64Matrix(flat, [rows.len() as u64, cols as u64]))
}

/// Values in HDF5 files, numeric sequences as typed datasets.
#[derive(Debug, Clone)]
pub struct Hdf5Values {
    dir: H5Dir,
}

impl Hdf5Values {
    /// The store rooted at `root` (created if missing), `prefix_length` digest characters per
    /// file name, private to the user: [`Hdf5Values::open_with`] with `shared` false.
    ///
    /// # Errors
    ///
    /// The directory cannot be created, or holds files of another prefix length.
    pub fn open(root: impl AsRef<Path>, prefix_length: usize) -> Result<Self, StorageError> {
        Self::open_with(root, prefix_length, false)
    }

    /// The store rooted at `root` (created if missing), `prefix_length` digest characters per
    /// file name. When `shared`, the directories it creates are `2770` and its files `0660`;
    /// otherwise `0700` and `0600` (Unix). An existing root keeps its mode.
    ///
    /// # Errors
    ///
    /// The directory cannot be created, or holds files of another prefix length.
    pub fn open_with(
        root: impl AsRef<Path>,
        prefix_length: usize,
        shared: bool,
    ) -> Result<Self, StorageError> {
        Ok(Self {
            dir: H5Dir::open(root.as_ref(), prefix_length, shared)?,
        })
    }

    /// Waits at most `timeout` for another process's lock on a file, then fails the operation
    /// with [`StorageError::LockTimeout`] (a memoized call then runs uncached, with a warning).
    /// `None`, the default, waits as long as it takes.
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.dir.lock_timeout = timeout;
        self
    }

    /// Stores no value larger than `bytes` ([`StorageError::TooLarge`]) and reads none back:
    /// neither a dataset that would take more to read, nor a file longer than that (files are
    /// read whole, so the limit bounds each `.h5` file, which holds every entry of its prefix).
    /// The default is [`DEFAULT_MAX_ENTRY_SIZE`].
    #[must_use]
    pub fn max_entry_size(mut self, bytes: u64) -> Self {
        self.dir.max_entry_size = bytes;
        self
    }

    /// The HDF5 file an entry is (or would be) stored in.
    #[must_use]
    pub fn file_of(&self, digest: &Digest) -> PathBuf {
        self.dir.file_of(digest)
    }

    /// The value stored as group `digest` of `file`, checked against its stamp.
    fn read(&self, file: &File, digest: &Digest) -> Result<Option<Vec<u8>>, StorageError> {
        let dir = &self.dir;
        let name = digest.to_hex();
        let damaged = |e: hdf5_pure::Error| dir.damaged(digest, e);
        let group = match file.group(&name) {
            Ok(g) => g,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(damaged(e)),
        };
        let attrs = group.attrs().map_err(damaged)?;
        let Some(expected) = dir.stamp(digest, &attrs)? else {
            return Ok(None);
        };
        let layout = attrs
            .get(ATTR_LAYOUT)
            .and_then(AttrValue::as_str)
            .unwrap_or("");
        let data = format!("{name}/data");
        let typed = |rank: usize| -> Result<(hdf5_pure::Dataset, Vec<u64>), StorageError> {
            let ds = file.dataset(&data).map_err(damaged)?;
            let shape = dir.bounded(digest, &ds, &data, rank, 8)?;
            Ok((ds, shape))
        };
        if let Some((kind, two_d)) = parse_block_layout(layout) {
            let (data, shape) = self.block_data(file, digest, kind, two_d)?;
            let bytes = match two_d {
                false => Some(block_bytes(kind, &data)),
                true => rows_bytes(kind, &data, shape[0]),
            };
            let bytes = bytes.ok_or_else(|| {
                dir.damaged(
                    digest,
                    Refused::Shape {
                        dataset: data_path(digest),
                        shape,
                        rank: 2,
                    },
                )
            })?;
            dir.verify(digest, layout, &bytes, expected)?;
            return Ok(Some(bytes));
        }
        let bytes = match layout {
            "msgpack" => dir.read_u8s(file, digest, "msgpack")?,
            "f64" => encode_f64_array(&typed(1)?.0.read_f64().map_err(damaged)?),
            "i64" => encode_i64_array(&typed(1)?.0.read_i64().map_err(damaged)?),
            "f64-2d" => {
                let (ds, shape) = typed(2)?;
                let flat = ds.read_f64().map_err(damaged)?;
                let cols = usize::try_from(shape[1]).unwrap_or(0);
                if cols == 0 || flat.len() != usize::try_from(shape[0]).unwrap_or(0) * cols {
                    return Err(dir.damaged(
                        digest,
                        Refused::Shape {
                            dataset: data,
                            shape,
                            rank: 2,
                        },
                    ));
                }
                encode_f64_rows(&flat, cols)
            }
            other => return Err(dir.damaged(digest, Refused::UnknownLayout(other.to_owned()))),
        };
        dir.verify(digest, layout, &bytes, expected)?;
        Ok(Some(bytes))
    }
}

impl Hdf5Values {
    /// The raw little-endian elements of the block dataset of group `digest` and its shape,
    /// borrowed from the file's bytes when the dataset is contiguous there; bounded as
    /// [`H5Dir::bounded`] says, and as long as its shape says.
    fn block_data<'f>(
        &self,
        file: &'f File,
        digest: &Digest,
        kind: BlockKind,
        two_d: bool,
    ) -> Result<(std::borrow::Cow<'f, [u8]>, Vec<u64>), StorageError> {
        let dir = &self.dir;
        let damaged = |e: hdf5_pure::Error| dir.damaged(digest, e);
        let name = data_path(digest);
        let ds = file.dataset(&name).map_err(damaged)?;
        let width = kind.width() as u64;
        let shape = dir.bounded(digest, &ds, &name, if two_d { 2 } else { 1 }, width)?;
        let want = shape.iter().product::<u64>().saturating_mul(width);
        let whole = file.as_bytes();
        let data = match ds.layout().map_err(damaged)? {
            hdf5_pure::Layout::Contiguous {
                address: Some(at),
                size,
            } if size == want => usize::try_from(at)
                .ok()
                .zip(usize::try_from(size).ok())
                .and_then(|(at, size)| whole.get(at..at.checked_add(size)?))
                .map(std::borrow::Cow::Borrowed),
            _ => None,
        };
        let data = match data {
            Some(d) => d,
            None => std::borrow::Cow::Owned(ds.read_raw().map_err(damaged)?),
        };
        if data.len() as u64 != want || want == 0 {
            return Err(dir.damaged(
                digest,
                Refused::Shape {
                    dataset: name,
                    shape,
                    rank: if two_d { 2 } else { 1 },
                },
            ));
        }
        Ok((data, shape))
    }

    /// A 1-D block of group `digest`, checked, lent to `visit` as a stream of its header and
    /// its elements straight from the file's bytes; `Ok(false)` when the group is not one.
    fn visit_block(
        &self,
        file: &File,
        digest: &Digest,
        visit: &mut dyn FnMut(Payload<'_>),
    ) -> Result<bool, StorageError> {
        let dir = &self.dir;
        let damaged = |e: hdf5_pure::Error| dir.damaged(digest, e);
        let group = match file.group(&digest.to_hex()) {
            Ok(g) => g,
            Err(_) => return Ok(false),
        };
        let attrs = group.attrs().map_err(damaged)?;
        let layout = attrs.get(ATTR_LAYOUT).and_then(AttrValue::as_str);
        let Some((kind, false)) = layout.and_then(parse_block_layout) else {
            return Ok(false);
        };
        let Some(expected) = dir.stamp(digest, &attrs)? else {
            return Ok(false);
        };
        let (data, _) = self.block_data(file, digest, kind, false)?;
        let (h, n) = encoding::block_header(kind, data.len())
            .map_err(|e| dir.damaged(digest, Refused::Stamp(e.to_string())))?;
        let total = (n + data.len()) as u64;
        if total > dir.max_entry_size {
            return Err(dir.damaged(
                digest,
                Refused::EntryTooLarge {
                    size: total,
                    max: dir.max_entry_size,
                },
            ));
        }
        let layout = block_layout_name(kind, false);
        if checksum_parts(layout, digest, &[&h[..n], &data]) != expected {
            return Err(dir.damaged(digest, Refused::Checksum));
        }
        let mut rest: &[u8] = &data;
        visit(Payload::Stream(PayloadReader::new(
            &h[..n],
            &mut rest,
            total,
        )));
        Ok(true)
    }
}

/// Files at least this long are opened lazily for a load, so a 1-D block can be streamed from
/// its place in the file; shorter ones are read whole.
const STREAM_FROM: u64 = 1 << 20;

impl Hdf5Values {
    /// Streams the 1-D block of group `digest` from `file` (of length `len`) into `visit`,
    /// checking it as it is read; `Ok(None)` when the group is anything else (or the file does
    /// not parse lazily), for the whole-file path to handle.
    fn stream_block(
        &self,
        file: &fs::File,
        len: u64,
        digest: &Digest,
        visit: &mut dyn FnMut(Payload<'_>),
    ) -> Result<Option<bool>, StorageError> {
        let dir = &self.dir;
        let Ok(h5) = file
            .try_clone()
            .map_err(|_| ())
            .and_then(|f| hdf5_pure::ReadSeekSource::new(f).map_err(|_| ()))
            .and_then(|src| File::from_source(src).map_err(|_| ()))
        else {
            return Ok(None);
        };
        let Ok(group) = h5.group(&digest.to_hex()) else {
            return Ok(None);
        };
        let Ok(attrs) = group.attrs() else {
            return Ok(None);
        };
        let layout = attrs.get(ATTR_LAYOUT).and_then(AttrValue::as_str);
        let Some((kind, false)) = layout.and_then(parse_block_layout) else {
            return Ok(None);
        };
        let Some(expected) = dir.stamp(digest, &attrs)? else {
            return Ok(Some(false));
        };
        let name = data_path(digest);
        let Ok(ds) = h5.dataset(&name) else {
            return Ok(None);
        };
        let width = kind.width() as u64;
        let shape = dir.bounded(digest, &ds, &name, 1, width)?;
        let want = shape.iter().product::<u64>().saturating_mul(width);
        let at = match ds.layout() {
            Ok(hdf5_pure::Layout::Contiguous {
                address: Some(at),
                size,
            }) if size == want
                && want > 0
                && at.checked_add(size).is_some_and(|end| end <= len) =>
            {
                at
            }
            _ => return Ok(None),
        };
        let (h, n) = encoding::block_header(kind, usize::try_from(want).unwrap_or(usize::MAX))
            .map_err(|e| dir.damaged(digest, Refused::Stamp(e.to_string())))?;
        let total = n as u64 + want;
        if total > dir.max_entry_size {
            return Err(dir.damaged(
                digest,
                Refused::EntryTooLarge {
                    size: total,
                    max: dir.max_entry_size,
                },
            ));
        }
        let context = format!(
            "fleche-hdf5/{LAYOUT_VERSION}/{}",
            block_layout_name(kind, false)
        );
        let mut sum = xxhash_rust::xxh3::Xxh3::new();
        sum.update(context.as_bytes());
        sum.update(digest.as_bytes());
        sum.update(&h[..n]);
        let mut update = |b: &[u8]| sum.update(b);
        let mut data = crate::fs::Checked::new(crate::fs::ReadAt::new(file, at), &mut update, want);
        visit(Payload::Stream(PayloadReader::new(
            &h[..n],
            &mut data,
            total,
        )));
        let path = dir.file_of(digest);
        io::copy(&mut data, &mut io::sink()).map_err(|e| io_error(&path, e))?;
        let short = data.left() != 0;
        if short {
            return Err(dir.damaged(
                digest,
                Refused::Shape {
                    dataset: name,
                    shape,
                    rank: 1,
                },
            ));
        }
        if sum.digest128() != expected {
            return Err(dir.damaged(digest, Refused::Checksum));
        }
        Ok(Some(true))
    }
}

impl Hdf5Values {
    /// Lends the value `digest` of the parsed `file` to `visit`: a numeric block straight from
    /// the file's bytes (checked first), anything else as the bytes a load rebuilds.
    fn visit_parsed(
        &self,
        file: &File,
        digest: &Digest,
        visit: &mut dyn FnMut(Payload<'_>),
    ) -> Result<bool, StorageError> {
        if self.visit_block(file, digest, visit)? {
            return Ok(true);
        }
        Ok(self
            .read(file, digest)?
            .map(|bytes| visit(Payload::Bytes(&bytes)))
            .is_some())
    }
}

/// The path of a value group's dataset.
fn data_path(digest: &Digest) -> String {
    format!("{}/data", digest.to_hex())
}

impl ValueStorage for Hdf5Values {
    fn load(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StorageError> {
        match self.dir.read_file(digest)? {
            Some(file) => self.read(&file, digest),
            None => Ok(None),
        }
    }

    fn load_payload(
        &self,
        digest: &Digest,
        visit: &mut dyn FnMut(Payload<'_>),
    ) -> Result<bool, StorageError> {
        let dir = &self.dir;
        let path = dir.file_of(digest);
        // Opened before it is locked, as `H5Dir::read_file` explains.
        let (handle, len, meta) = match dir.open_checked(&path)? {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(false),
            Err(refused) => return Err(dir.damaged(digest, refused)),
        };
        if let Some(file) = dir.kept(&path, &meta) {
            return self.visit_parsed(&file, digest, visit);
        }
        dir.locked(&path, false, || {
            // A large 1-D block is read from the file straight into the reader's memory.
            if len >= STREAM_FROM
                && let Some(done) = self.stream_block(&handle, len, digest, visit)?
            {
                return Ok(done);
            }
            let Some(file) = dir.parse(digest, &path, &handle, len)? else {
                return Ok(false);
            };
            self.visit_parsed(&file, digest, visit)
        })
    }

    fn save(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StorageError> {
        let max = self.dir.max_entry_size;
        if bytes.len() as u64 > max {
            return Err(StorageError::TooLarge {
                location: self.dir.location(),
                digest: *digest,
                size: bytes.len() as u64,
                max,
            });
        }
        let layout = layout(bytes, max);
        let sum = checksum(layout.name(), digest, bytes);
        let current = |file: &File| matches!(self.read(file, digest), Ok(Some(b)) if b == bytes);
        self.dir
            .write(digest, layout.stored_size(bytes), current, |g| {
                g.attr(ATTR_LAYOUT, AttrValue::VarLenString(layout.name().into()))?;
                stamp(g, digest, sum)?;
                match &layout {
                    Layout::Block { kind, data, rows } => {
                        let width = kind.width() as u64;
                        let shape = rows.map(|r| [r, data.len() as u64 / width / r.max(1)]);
                        g.block("data", *kind, data.clone(), shape)
                    }
                    Layout::F64(v) => g.f64s("data", v, None),
                    Layout::I64(v) => g.i64s("data", v),
                    Layout::F64Matrix(v, shape) => g.f64s("data", v, Some(*shape)),
                    Layout::Blob => g.bytes("msgpack", bytes),
                }
            })
    }

    /// Whether a group of the current layout is stored under `digest` (its data is checked by
    /// `load`, not here).
    fn contains(&self, digest: &Digest) -> Result<bool, StorageError> {
        let Some(file) = self.dir.read_file(digest)? else {
            return Ok(false);
        };
        match file.group(&digest.to_hex()) {
            Ok(group) => {
                let attrs = group.attrs().map_err(|e| self.dir.damaged(digest, e))?;
                Ok(self.dir.stamp(digest, &attrs)?.is_some())
            }
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(self.dir.damaged(digest, e)),
        }
    }

    fn evict(&self, digest: &Digest) -> Result<bool, StorageError> {
        self.dir.remove(digest)
    }

    fn digests(&self) -> Result<Vec<Digest>, StorageError> {
        self.dir.digests()
    }

    fn reclaim_temporary(&self, older_than: Duration) -> Result<usize, StorageError> {
        self.dir.reclaim_temporary(older_than)
    }
}

/// Call records in HDF5 files.
#[derive(Debug, Clone)]
pub struct Hdf5Calls {
    dir: H5Dir,
}

impl Hdf5Calls {
    /// The store rooted at `root` (created if missing), `prefix_length` digest characters per
    /// file name, private to the user: [`Hdf5Calls::open_with`] with `shared` false.
    ///
    /// # Errors
    ///
    /// The directory cannot be created, or holds files of another prefix length.
    pub fn open(root: impl AsRef<Path>, prefix_length: usize) -> Result<Self, StorageError> {
        Self::open_with(root, prefix_length, false)
    }

    /// The store rooted at `root` (created if missing), `prefix_length` digest characters per
    /// file name. When `shared`, the directories it creates are `2770` and its files `0660`;
    /// otherwise `0700` and `0600` (Unix). An existing root keeps its mode.
    ///
    /// # Errors
    ///
    /// The directory cannot be created, or holds files of another prefix length.
    pub fn open_with(
        root: impl AsRef<Path>,
        prefix_length: usize,
        shared: bool,
    ) -> Result<Self, StorageError> {
        Ok(Self {
            dir: H5Dir::open(root.as_ref(), prefix_length, shared)?,
        })
    }

    /// Waits at most `timeout` for another process's lock on a file, then fails the operation
    /// with [`StorageError::LockTimeout`] (a memoized call then runs uncached, with a warning).
    /// `None`, the default, waits as long as it takes.
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.dir.lock_timeout = timeout;
        self
    }

    /// Stores no record larger than `bytes` encoded ([`StorageError::TooLarge`]) and reads none
    /// back: neither a dataset that would take more to read, nor a file longer than that (files
    /// are read whole, so the limit bounds each `.h5` file, which holds every record of its
    /// prefix). The default is [`DEFAULT_MAX_ENTRY_SIZE`].
    #[must_use]
    pub fn max_entry_size(mut self, bytes: u64) -> Self {
        self.dir.max_entry_size = bytes;
        self
    }

    /// How many parsed files this store keeps for reuse.
    #[cfg(test)]
    fn parsed_files(&self) -> usize {
        self.dir.parsed.lock().map(|p| p.len()).unwrap_or_default()
    }

    /// The HDF5 file a record is (or would be) stored in.
    #[must_use]
    pub fn file_of(&self, key: &Digest) -> PathBuf {
        self.dir.file_of(key)
    }

    /// The MessagePack bytes of the record stored as group `key` of `file`, checked against its
    /// stamp.
    fn read(&self, file: &File, key: &Digest) -> Result<Option<Vec<u8>>, StorageError> {
        let damaged = |e: hdf5_pure::Error| self.dir.damaged(key, e);
        let group = match file.group(&key.to_hex()) {
            Ok(g) => g,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(damaged(e)),
        };
        let attrs = group.attrs().map_err(damaged)?;
        let Some(expected) = self.dir.stamp(key, &attrs)? else {
            return Ok(None);
        };
        let blob = self.dir.read_u8s(file, key, "record")?;
        self.dir.verify(key, RECORD, &blob, expected)?;
        Ok(Some(blob))
    }

    /// Stores `record` in one commit, replacing a record of the same key unless `keep_existing`
    /// (then a readable record of the key stays, and `Ok(false)` says so).
    fn store(&self, record: CallRecord, keep_existing: bool) -> Result<bool, StorageError> {
        let key = record.key;
        let blob = rmp_serde::to_vec_named(&record).map_err(|source| StorageError::Encode {
            location: self.dir.location(),
            key,
            source,
        })?;
        let max = self.dir.max_entry_size;
        if blob.len() as u64 > max {
            return Err(StorageError::TooLarge {
                location: self.dir.location(),
                digest: key,
                size: blob.len() as u64,
                max,
            });
        }
        let sum = checksum(RECORD, &key, &blob);
        let existed = std::cell::Cell::new(false);
        let current = |file: &File| match self.read(file, &key) {
            Ok(Some(_)) if keep_existing => {
                existed.set(true);
                true
            }
            Ok(Some(b)) => b == blob,
            _ => false,
        };
        self.dir.write(&key, blob.len() as u64, current, |g| {
            g.attr("function", AttrValue::VarLenString(record.function.clone()))?;
            g.attr("result", AttrValue::VarLenString(record.result.to_hex()))?;
            stamp(g, &key, sum)?;
            g.bytes("record", &blob)
        })?;
        Ok(!existed.get())
    }
}

impl CallStorage for Hdf5Calls {
    fn result_of(&self, key: &Digest) -> Result<Option<Digest>, StorageError> {
        Ok(self.load(key)?.map(|r| r.result))
    }

    fn load(&self, key: &Digest) -> Result<Option<CallRecord>, StorageError> {
        let Some(file) = self.dir.read_file(key)? else {
            return Ok(None);
        };
        let Some(blob) = self.read(&file, key)? else {
            return Ok(None);
        };
        let record = CallRecord::decode_for(key, &blob).map_err(|e| self.dir.damaged(key, e))?;
        Ok(Some(record))
    }

    /// Stores `record`, replacing a record of the same key in the same commit.
    fn save(&self, record: CallRecord) -> Result<(), StorageError> {
        self.store(record, false).map(|_| ())
    }

    /// Stores `record` unless a readable record of its key is there, decided under the file's
    /// exclusive lock (so across processes too).
    fn save_new(&self, record: CallRecord) -> Result<bool, StorageError> {
        self.store(record, true)
    }

    fn evict(&self, key: &Digest) -> Result<bool, StorageError> {
        self.dir.remove(key)
    }

    fn keys(&self) -> Result<Vec<Digest>, StorageError> {
        self.dir.digests()
    }

    fn records(&self) -> Result<Vec<CallRecord>, StorageError> {
        Ok(crate::record::readable(self.dir.digests()?, |k| {
            self.load(k)
        }))
    }

    fn reclaim_temporary(&self, older_than: Duration) -> Result<usize, StorageError> {
        self.dir.reclaim_temporary(older_than)
    }
}

/// Test hooks: every commit (an in-place commit, or the rename of a new file) is counted, and a
/// test can stop a sequence right after a commit, as if the process had been killed there.
#[cfg(test)]
mod hooks {
    use std::cell::Cell;
    use std::path::Path;

    use crate::StorageError;

    thread_local! {
        static COMMITS: Cell<usize> = const { Cell::new(0) };
        static CRASH_AFTER: Cell<Option<usize>> = const { Cell::new(None) };
    }

    /// Called after every commit.
    pub(super) fn committed(path: &Path) -> Result<(), StorageError> {
        COMMITS.with(|c| c.set(c.get() + 1));
        match CRASH_AFTER.with(Cell::get) {
            Some(1) => {
                CRASH_AFTER.with(|c| c.set(None));
                Err(StorageError::Backend {
                    location: path.display().to_string(),
                    message: "simulated crash right after a commit".into(),
                })
            }
            Some(n) => {
                CRASH_AFTER.with(|c| c.set(Some(n.saturating_sub(1))));
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// How many commits `f` made on this thread.
    pub(super) fn count_commits<R>(f: impl FnOnce() -> R) -> (R, usize) {
        let before = COMMITS.with(Cell::get);
        let r = f();
        (r, COMMITS.with(Cell::get) - before)
    }

    /// Runs `f`, which fails right after its `n`th commit as if the process died there.
    pub(super) fn crash_after_commits<R>(n: usize, f: impl FnOnce() -> R) -> R {
        CRASH_AFTER.with(|c| c.set(Some(n)));
        let r = f();
        CRASH_AFTER.with(|c| c.set(None));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(prefix: u8, rest: u8) -> Digest {
        let mut b = [rest; 32];
        b[0] = prefix;
        Digest::from_bytes(b)
    }

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
    }

    fn round_trip<T>(values: &Hdf5Values, at: Digest, value: &T) -> Result<T, StorageError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let bytes = rmp_serde::to_vec_named(value).unwrap_or_default();
        values.save(&at, &bytes)?;
        let back = values.load(&at)?.unwrap_or_default();
        Ok(rmp_serde::from_slice(&back).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn stale_temporary_files_are_reclaimed() -> Result<(), StorageError> {
        let dir = tmp();
        let c = Hdf5Calls::open(dir.path(), 2)?;
        let old = dir.path().join(".tmp-killed");
        let fresh = dir.path().join(".tmp-writing");
        for p in [&old, &fresh] {
            fs::write(p, b"partial").map_err(|e| io_error(p, e))?;
        }
        fs::File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(std::time::SystemTime::now() - Duration::from_secs(7200)))
            .map_err(|e| io_error(&old, e))?;
        assert_eq!(c.reclaim_temporary(Duration::from_secs(3600))?, 1);
        assert!(!old.exists() && fresh.exists());
        Ok(())
    }

    #[test]
    fn lock_timeout_bounds_the_wait_for_another_holder() -> Result<(), StorageError> {
        let dir = tmp();
        let v = Hdf5Values::open(dir.path(), 2)?.lock_timeout(Some(Duration::from_millis(50)));
        let at = d(7, 7);
        v.save(&at, &rmp_serde::to_vec(&1u8).unwrap_or_default())?;
        let lock_path = v.file_of(&at).with_extension("h5.lock");
        // Another holder: a separate open file description, as another process would have.
        let other = fs::File::open(&lock_path).map_err(|e| io_error(&lock_path, e))?;
        other.lock().map_err(|e| io_error(&lock_path, e))?;
        let started = Instant::now();
        let err = v.load(&at).err();
        assert!(
            matches!(err, Some(StorageError::LockTimeout { .. })),
            "{err:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(err.is_some_and(|e| e.to_string().contains("lock_timeout")));
        other.unlock().map_err(|e| io_error(&lock_path, e))?;
        assert!(
            v.load(&at)?.is_some(),
            "works again once the lock is released"
        );
        Ok(())
    }

    #[test]
    fn layouts_round_trip() -> Result<(), StorageError> {
        let dir = tmp();
        let v = Hdf5Values::open(dir.path(), 2)?;
        let floats = vec![0.5, -1.0, 1e300];
        assert_eq!(round_trip(&v, d(1, 1), &floats)?, floats);
        let ints = vec![-3i64, 0, i64::MAX];
        assert_eq!(round_trip(&v, d(1, 2), &ints)?, ints);
        let matrix = vec![vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0]];
        assert_eq!(round_trip(&v, d(1, 3), &matrix)?, matrix);
        let ragged = vec![vec![1.0], vec![2.0, 3.0]];
        assert_eq!(round_trip(&v, d(1, 4), &ragged)?, ragged);
        let mixed = (String::from("x"), vec![1u8, 2], Some(2.5f32));
        assert_eq!(round_trip(&v, d(1, 5), &mixed)?, mixed);
        let empty: Vec<f64> = Vec::new();
        assert_eq!(round_trip(&v, d(1, 6), &empty)?, empty);
        // Entries sharing a prefix share a file.
        let files: Vec<_> = fs::read_dir(dir.path())
            .map_err(|e| io_error(dir.path(), e))?
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "h5"))
            .collect();
        assert_eq!(files.len(), 1);
        let mut all = v.digests()?;
        all.sort();
        assert_eq!(all.len(), 6);
        assert!(v.contains(&d(1, 3))?);
        assert!(v.evict(&d(1, 3))?);
        assert!(!v.contains(&d(1, 3))?);
        assert_eq!(v.load(&d(1, 3))?, None);
        assert_eq!(v.load(&d(9, 9))?, None);
        Ok(())
    }

    #[test]
    fn the_f64_fast_path_matches_rmp() {
        for n in [1usize, 15, 16, 65_535, 65_536] {
            let v: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
            let bytes = rmp_serde::to_vec(&v).unwrap_or_default();
            assert_eq!(f64_array(&bytes), Some(v.clone()), "{n}");
            assert_eq!(encode_f64_array(&v), bytes, "{n}");
        }
        assert_eq!(
            f64_array(&rmp_serde::to_vec(&vec![1u8]).unwrap_or_default()),
            None
        );
        assert_eq!(f64_array(&[0xdd, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn a_parsed_file_is_reused_only_while_unchanged() -> Result<(), StorageError> {
        let dir = tmp();
        let a = Hdf5Calls::open(dir.path(), 1)?;
        // Another handle on the same files, as another process would have.
        let b = Hdf5Calls::open(dir.path(), 1)?;
        let key = d(1, 1);
        a.save(CallRecord::new(key, "f", d(2, 2)))?;
        std::thread::sleep(SETTLED + Duration::from_millis(50));
        assert_eq!(a.result_of(&key)?, Some(d(2, 2)));
        assert_eq!(a.parsed_files(), 1, "a settled file is kept parsed");
        assert_eq!(a.result_of(&key)?, Some(d(2, 2)));
        // Replaced, then evicted, through the other handle: never the kept parse.
        b.save(CallRecord::new(key, "f", d(3, 3)))?;
        assert_eq!(a.result_of(&key)?, Some(d(3, 3)));
        std::thread::sleep(SETTLED + Duration::from_millis(50));
        assert_eq!(a.result_of(&key)?, Some(d(3, 3)));
        assert!(b.evict(&key)?);
        assert_eq!(a.result_of(&key)?, None);
        // Changed in place by someone else, to a file of the same length.
        a.save(CallRecord::new(key, "f", d(4, 4)))?;
        std::thread::sleep(SETTLED + Duration::from_millis(50));
        assert_eq!(a.result_of(&key)?, Some(d(4, 4)));
        let path = a.file_of(&key);
        let mut bytes = std::fs::read(&path).map_err(|e| crate::fs::io_error(&path, e))?;
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).map_err(|e| crate::fs::io_error(&path, e))?;
        let fresh = Hdf5Calls::open(dir.path(), 1)?;
        assert_eq!(
            a.result_of(&key).map_err(|e| e.to_string()),
            fresh.result_of(&key).map_err(|e| e.to_string()),
            "the kept parse answers as a fresh read does"
        );
        Ok(())
    }

    #[test]
    fn calls_round_trip_and_overwrite() -> Result<(), StorageError> {
        let dir = tmp();
        let c = Hdf5Calls::open(dir.path(), 2)?;
        let mut r = CallRecord::new(d(4, 1), "m::f", d(5, 5));
        c.save(r.clone())?;
        assert_eq!(c.load(&d(4, 1))?, Some(r.clone()));
        r.version = Some("2".into());
        c.save(r.clone())?;
        assert_eq!(c.records()?, vec![r]);
        assert_eq!(c.result_of(&d(4, 1))?, Some(d(5, 5)));
        Ok(())
    }

    #[test]
    fn a_mismatched_prefix_length_is_an_error() -> Result<(), StorageError> {
        let dir = tmp();
        let v = Hdf5Values::open(dir.path(), 2)?;
        v.save(&d(1, 1), &rmp_serde::to_vec(&1u8).unwrap_or_default())?;
        let err = Hdf5Values::open(dir.path(), 3).err().map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("prefix_length 2"));
        assert!(Hdf5Values::open(dir.path(), 0).is_err());
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn modes_are_private_or_group_shared() -> Result<(), StorageError> {
        use crate::fs::tests::{existing_dir, mode};
        let dir = tmp();
        for (shared, dir_mode, file_mode) in [(false, 0o700, 0o600), (true, 0o2770, 0o660)] {
            let existing = dir.path().join(format!("existing-{shared}"));
            existing_dir(&existing);
            let created = dir.path().join(format!("created-{shared}")).join("values");
            for root in [&existing, &created] {
                let v = Hdf5Values::open_with(root, 2, shared)?;
                let c = Hdf5Calls::open_with(root.join("calls"), 2, shared)?;
                let one = rmp_serde::to_vec(&vec![1.0f64]).unwrap_or_default();
                // A new file, then an in-place edit of it.
                v.save(&d(1, 1), &one)?;
                v.save(&d(1, 2), &one)?;
                c.save(CallRecord::new(d(2, 1), "m::f", d(1, 1)))?;
                let expected_root = if root == &existing { 0o755 } else { dir_mode };
                assert_eq!(mode(root), expected_root, "{}", root.display());
                assert_eq!(mode(&root.join("calls")), dir_mode);
                let h5 = v.file_of(&d(1, 1));
                let calls_h5 = root.join("calls").join("02.h5");
                for file in [&h5, &h5.with_extension("h5.lock"), &calls_h5] {
                    assert_eq!(mode(file), file_mode, "{}", file.display());
                }
                let names: Vec<String> = fs::read_dir(root)
                    .map_err(|e| io_error(root, e))?
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                assert!(
                    names.iter().all(|n| !n.starts_with(".tmp-")),
                    "no temporary file is left: {names:?}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn a_corrupt_file_is_corrupt() -> Result<(), StorageError> {
        let dir = tmp();
        let v = Hdf5Values::open(dir.path(), 2)?;
        v.save(
            &d(1, 1),
            &rmp_serde::to_vec(&vec![1.0f64]).unwrap_or_default(),
        )?;
        let path = v.file_of(&d(1, 1));
        let mut bytes = fs::read(&path).map_err(|e| io_error(&path, e))?;
        bytes.truncate(bytes.len() / 2);
        fs::write(&path, &bytes).map_err(|e| io_error(&path, e))?;
        assert!(matches!(
            v.load(&d(1, 1)),
            Err(StorageError::Corrupt { .. })
        ));
        fs::write(&path, b"garbage").map_err(|e| io_error(&path, e))?;
        let err = v.load(&d(1, 1)).err();
        assert!(matches!(err, Some(StorageError::Corrupt { .. })), "{err:?}");
        let source = err.as_ref().and_then(std::error::Error::source);
        assert!(
            source.is_some_and(|s| s.is::<hdf5_pure::Error>()),
            "the HDF5 error is kept as the source"
        );
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains(&path.display().to_string()), "{message}");
        Ok(())
    }

    fn msgpack<T: serde::Serialize>(value: &T) -> Vec<u8> {
        rmp_serde::to_vec_named(value).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Edits the HDF5 file at `path` in place with `hdf5-pure`, as another tool would.
    fn edit(path: &Path, f: impl FnOnce(&File) -> Result<(), hdf5_pure::Error>) {
        let file = File::open_rw(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        f(&file).unwrap_or_else(|e| panic!("{e}"));
        file.commit().unwrap_or_else(|e| panic!("{e}"));
    }

    fn is_corrupt<T: std::fmt::Debug>(r: &Result<T, StorageError>) -> bool {
        matches!(r, Err(StorageError::Corrupt { .. }))
    }

    /// Runs `f` and counts the warnings it emits on this thread.
    fn count_warnings<R>(f: impl FnOnce() -> R) -> (R, usize) {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tracing::span;
        struct Count(Arc<AtomicUsize>);
        impl tracing::Subscriber for Count {
            fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
                *m.level() <= tracing::Level::WARN
            }
            fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
                span::Id::from_u64(1)
            }
            fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
            fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
            fn event(&self, e: &tracing::Event<'_>) {
                if *e.metadata().level() == tracing::Level::WARN {
                    self.0.fetch_add(1, Ordering::Relaxed);
                }
            }
            fn enter(&self, _: &span::Id) {}
            fn exit(&self, _: &span::Id) {}
        }
        let n = Arc::new(AtomicUsize::new(0));
        let r = tracing::subscriber::with_default(Count(Arc::clone(&n)), f);
        (r, n.load(Ordering::Relaxed))
    }

    fn calls_file(root: &Path, key: &Digest) -> PathBuf {
        root.join(format!("{}.h5", key.hex_prefix(2)))
    }

    #[test]
    fn a_group_copied_to_another_address_is_refused() -> Result<(), StorageError> {
        let dir = tmp();
        let v = Hdf5Values::open(dir.path(), 2)?;
        let values = [
            msgpack(&vec![1.5f64, 2.5]),
            msgpack(&vec![-1i64, 7]),
            msgpack(&vec![vec![1.0f64, 2.0], vec![3.0, 4.0]]),
            msgpack(&("x", 1u8)),
        ];
        for (i, value) in (0u8..).zip(&values) {
            let (from, to, relabelled) = (d(1, i), d(1, 100 + i), d(1, 200 + i));
            v.save(&from, value)?;
            let file = v.file_of(&from);
            // The whole group, attributes and all; then once more with its address rewritten.
            edit(&file, |f| f.copy(&from.to_hex(), &to.to_hex()));
            edit(&file, |f| f.copy(&from.to_hex(), &relabelled.to_hex()));
            edit(&file, |f| {
                f.group(&relabelled.to_hex())?
                    .set_attr("address", AttrValue::VarLenString(relabelled.to_hex()))
            });
            assert_eq!(v.load(&from)?.as_ref(), Some(value), "{i}");
            for at in [to, relabelled] {
                let loaded = v.load(&at);
                assert!(is_corrupt(&loaded), "{i}: {loaded:?}");
            }
        }
        let c = Hdf5Calls::open(dir.path().join("calls"), 2)?;
        let (key, other) = (d(4, 1), d(4, 2));
        c.save(CallRecord::new(key, "m::f", d(5, 5)))?;
        edit(&calls_file(&dir.path().join("calls"), &key), |f| {
            f.copy(&key.to_hex(), &other.to_hex())
        });
        assert!(is_corrupt(&c.load(&other)), "{:?}", c.load(&other));
        Ok(())
    }

    #[test]
    fn a_dataset_edited_in_place_is_refused() -> Result<(), StorageError> {
        let dir = tmp();
        let v = Hdf5Values::open(dir.path(), 2)?;
        let (f64s, i64s, matrix, blob) = (d(2, 1), d(2, 2), d(2, 3), d(2, 4));
        v.save(&f64s, &msgpack(&vec![1.0f64, 2.0, 3.0]))?;
        v.save(&i64s, &msgpack(&vec![1i64, -2, 3]))?;
        v.save(&matrix, &msgpack(&vec![vec![1.0f64, 2.0], vec![3.0, 4.0]]))?;
        v.save(&blob, &msgpack(&("hello", 1u8)))?;
        let file = v.file_of(&f64s);
        edit(&file, |f| {
            f.dataset(&format!("{}/data", f64s.to_hex()))?
                .write(&[1.0f64, 2.0, 4.0])?;
            f.dataset(&format!("{}/data", i64s.to_hex()))?
                .write(&[1i64, -2, 4])?;
            f.dataset(&format!("{}/data", matrix.to_hex()))?
                .write_staged(|b| {
                    b.with_f64_data(&[1.0, 2.0, 3.0, 5.0]).with_shape(&[2, 2]);
                })?;
            let mut blob_ds = f.dataset(&format!("{}/msgpack", blob.to_hex()))?;
            let mut bytes = blob_ds.read_u8()?;
            let at = bytes.iter().position(|&b| b == b'o').unwrap_or(0);
            bytes[at] = b'p'; // "hellp": still a valid encoding, of another value
            blob_ds.write(&bytes)
        });
        for at in [f64s, i64s, matrix, blob] {
            let loaded = v.load(&at);
            assert!(is_corrupt(&loaded), "{at}: {loaded:?}");
        }
        let root = dir.path().join("calls");
        let c = Hdf5Calls::open(&root, 2)?;
        let key = d(4, 1);
        c.save(CallRecord::new(key, "m::f", d(5, 5)))?;
        edit(&calls_file(&root, &key), |f| {
            let mut ds = f.dataset(&format!("{}/record", key.to_hex()))?;
            let mut bytes = ds.read_u8()?;
            let at = bytes.windows(4).position(|w| w == b"m::f").unwrap_or(0);
            bytes[at + 3] = b'g';
            ds.write(&bytes)
        });
        assert!(is_corrupt(&c.load(&key)), "{:?}", c.load(&key));
        Ok(())
    }

    /// A group of layout 1: its address, and the floats of a value or a call record.
    type Layout1<'a> = (Digest, Option<&'a [f64]>, Option<&'a CallRecord>);

    /// Writes entries in layout 1 (no address, no checksum), as fleche 0.1 did.
    fn write_layout_1(path: &Path, groups: &[Layout1<'_>]) {
        let mut builder = FileBuilder::new();
        for (at, floats, record) in groups {
            let mut g = builder.create_group(&at.to_hex());
            if let Some(floats) = floats {
                g.set_attr("fleche", AttrValue::VarLenString("f64".into()));
                g.create_dataset("data").with_f64_data(floats);
            }
            if let Some(r) = record {
                g.set_attr("function", AttrValue::VarLenString(r.function.clone()));
                g.set_attr("result", AttrValue::VarLenString(r.result.to_hex()));
                g.create_dataset("record").with_u8_data(&msgpack(r));
            }
            builder.add_group(g.finish());
        }
        builder.write(path).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn layout_1_entries_are_misses_warned_once_and_rewritten() -> Result<(), StorageError> {
        let dir = tmp();
        let v = Hdf5Values::open(dir.path(), 2)?;
        let (a, b) = (d(3, 1), d(3, 2));
        let floats = [1.0f64, 2.0];
        write_layout_1(
            &v.file_of(&a),
            &[(a, Some(&floats), None), (b, Some(&floats), None)],
        );
        let (loads, warnings) = count_warnings(|| [v.load(&a), v.load(&b), v.load(&a)]);
        for l in &loads {
            assert!(matches!(l, Ok(None)), "a miss, not an error: {l:?}");
        }
        assert_eq!(warnings, 1, "one warning per store, not per entry");
        v.save(&a, &msgpack(&floats.to_vec()))?;
        assert_eq!(v.load(&a)?, Some(msgpack(&floats.to_vec())), "rewritten");
        assert_eq!(v.load(&b)?, None);

        let root = dir.path().join("calls");
        let c = Hdf5Calls::open(&root, 2)?;
        let record = CallRecord::new(d(6, 1), "m::f", d(5, 5));
        write_layout_1(
            &calls_file(&root, &record.key),
            &[(record.key, None, Some(&record))],
        );
        let (loaded, warnings) = count_warnings(|| [c.load(&record.key), c.load(&record.key)]);
        assert!(loaded.iter().all(|l| matches!(l, Ok(None))), "{loaded:?}");
        assert_eq!(warnings, 1);
        c.save(record.clone())?;
        assert_eq!(c.load(&record.key)?, Some(record));
        Ok(())
    }

    #[test]
    fn replacing_a_record_is_one_commit() -> Result<(), StorageError> {
        let dir = tmp();
        let c = Hdf5Calls::open(dir.path(), 2)?;
        let key = d(4, 1);
        let first = CallRecord::new(key, "m::f", d(5, 5));
        c.save(first.clone())?;
        c.save(CallRecord::new(d(4, 2), "m::f", d(5, 5)))?;
        let second = CallRecord::new(key, "m::f", d(5, 6));
        let (saved, commits) = hooks::count_commits(|| c.save(second.clone()));
        saved?;
        assert_eq!(
            commits, 1,
            "the old record is replaced in the commit that adds the new"
        );
        assert_eq!(c.load(&key)?, Some(second));
        // A process killed right after the first commit of a replacement: the key is there.
        let third = CallRecord::new(key, "m::f", d(5, 7));
        let crashed = hooks::crash_after_commits(1, || c.save(third.clone()));
        assert!(crashed.is_err(), "the simulated crash");
        assert_eq!(c.load(&key)?, Some(third.clone()));
        assert_eq!(c.records()?.len(), 2);
        // Storing what is there already changes nothing.
        let (saved, commits) = hooks::count_commits(|| c.save(third.clone()));
        saved?;
        assert_eq!(commits, 0);
        let v = Hdf5Values::open(dir.path().join("values"), 2)?;
        let bytes = msgpack(&vec![1.0f64, 2.0]);
        v.save(&d(1, 1), &bytes)?;
        let (saved, commits) = hooks::count_commits(|| v.save(&d(1, 1), &bytes));
        saved?;
        assert_eq!(commits, 0, "a value is stored once");
        Ok(())
    }

    #[test]
    fn an_unparseable_file_is_moved_aside_and_a_new_one_written() -> Result<(), StorageError> {
        let dir = tmp();
        let root = dir.path().join("calls");
        let v = Hdf5Values::open(dir.path(), 2)?;
        let c = Hdf5Calls::open(&root, 2)?;
        let one = msgpack(&vec![1.0f64]);
        for (n, damage) in [&b"garbage"[..], b"", b"\x89HDF\r\n\x1a\n\x03"]
            .iter()
            .enumerate()
        {
            let n = u8::try_from(n).unwrap_or(0);
            let (old, new) = (d(10 + n, 1), d(10 + n, 2));
            v.save(&old, &one)?;
            c.save(CallRecord::new(old, "m::f", old))?;
            for file in [v.file_of(&old), calls_file(&root, &old)] {
                fs::write(&file, damage).map_err(|e| io_error(&file, e))?;
            }
            assert!(is_corrupt(&v.load(&old)), "{:?}", v.load(&old));
            assert!(is_corrupt(&c.load(&old)), "{:?}", c.load(&old));
            v.save(&new, &one)?;
            c.save(CallRecord::new(new, "m::f", new))?;
            assert_eq!(v.load(&new)?, Some(one.clone()));
            assert_eq!(c.load(&new)?.map(|r| r.result), Some(new));
            assert_eq!(v.load(&old)?, None, "what the damaged file held is gone");
            for (dir, file) in [
                (dir.path(), v.file_of(&old)),
                (&root, calls_file(&root, &old)),
            ] {
                let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
                let aside: Vec<PathBuf> = fs::read_dir(dir)
                    .map_err(|e| io_error(dir, e))?
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name().is_some_and(|f| {
                            f.to_string_lossy()
                                .starts_with(&format!("{}.corrupt-", name.as_deref().unwrap_or("")))
                        })
                    })
                    .collect();
                assert_eq!(aside.len(), 1, "{aside:?}");
                assert_eq!(
                    fs::read(&aside[0]).ok().as_deref(),
                    Some(*damage),
                    "kept as it was"
                );
            }
        }
        // The store opens again: the moved-aside files are not mistaken for entries.
        let again = Hdf5Values::open(dir.path(), 2)?;
        assert_eq!(again.digests()?.len(), 3);
        Ok(())
    }

    #[test]
    fn damage_anywhere_never_yields_a_wrong_entry_nor_blocks_writes() -> Result<(), StorageError> {
        let dir = tmp();
        let v = Hdf5Values::open(dir.path(), 2)?;
        let entries = [
            (
                d(1, 1),
                msgpack(&(0..64).map(f64::from).collect::<Vec<_>>()),
            ),
            (d(1, 2), msgpack(&(0..64i64).collect::<Vec<_>>())),
            (d(1, 3), msgpack(&("some text", vec![1u8; 40]))),
        ];
        for (at, bytes) in &entries {
            v.save(at, bytes)?;
        }
        let path = v.file_of(&d(1, 1));
        let pristine = fs::read(&path).map_err(|e| io_error(&path, e))?;
        let step = (pristine.len() / 499).max(1);
        for offset in (0..pristine.len()).step_by(step) {
            let mut damaged = pristine.clone();
            for b in damaged.iter_mut().skip(offset).take(4) {
                *b ^= 0x5a;
            }
            fs::write(&path, &damaged).map_err(|e| io_error(&path, e))?;
            for (at, bytes) in &entries {
                match v.load(at) {
                    Ok(Some(got)) => assert_eq!(&got, bytes, "offset {offset}: a wrong entry"),
                    Ok(None) | Err(StorageError::Corrupt { .. }) => {}
                    Err(e) => panic!("offset {offset}: {e}"),
                }
            }
            let (at, bytes) = (d(1, 9), msgpack(&vec![9.5f64]));
            v.save(&at, &bytes)
                .unwrap_or_else(|e| panic!("offset {offset}: a write fails: {e}"));
            assert_eq!(v.load(&at)?, Some(bytes), "offset {offset}");
            for p in fs::read_dir(dir.path()).map_err(|e| io_error(dir.path(), e))? {
                let p = p.map_err(|e| io_error(dir.path(), e))?.path();
                if p.to_string_lossy().contains(".corrupt-") {
                    fs::remove_file(&p).map_err(|e| io_error(&p, e))?;
                }
            }
        }
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn files_that_are_not_regular_are_refused_unread() -> Result<(), StorageError> {
        let dir = tmp();
        let elsewhere = tmp();
        let v = Hdf5Values::open(dir.path(), 2)?;
        let one = msgpack(&vec![1.0f64]);
        v.save(&d(1, 1), &one)?;
        // A link to a sound file elsewhere is not followed.
        let target = elsewhere.path().join("real.h5");
        let link = v.file_of(&d(1, 1));
        fs::rename(&link, &target).map_err(|e| io_error(&link, e))?;
        std::os::unix::fs::symlink(&target, &link).map_err(|e| io_error(&link, e))?;
        let before = fs::read(&target).map_err(|e| io_error(&target, e))?;
        let loaded = v.load(&d(1, 1));
        assert!(is_corrupt(&loaded), "{loaded:?}");
        // A write moves the link aside and leaves what it pointed at alone.
        v.save(&d(1, 2), &one)?;
        assert_eq!(v.load(&d(1, 2))?, Some(one.clone()));
        assert_eq!(fs::read(&target).ok(), Some(before));
        assert!(
            !fs::symlink_metadata(&link)
                .map_err(|e| io_error(&link, e))?
                .is_symlink()
        );
        // A FIFO is refused at once, not waited on.
        let fifo = v.file_of(&d(2, 1));
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let loaded = v.load(&d(2, 1));
            assert!(is_corrupt(&loaded), "{loaded:?}");
            v.save(&d(2, 2), &one)?;
            assert_eq!(v.load(&d(2, 2))?, Some(one));
        }
        Ok(())
    }

    /// The test below, run again inside a mount namespace where its cache is a read-only bind
    /// mount.
    const READ_ONLY_CHILD: &str = "FLECHE_TEST_HDF5_READ_ONLY_ROOT";

    #[cfg(target_os = "linux")]
    #[test]
    fn a_cache_on_read_only_media_can_be_read() -> Result<(), StorageError> {
        use std::process::Command;
        let (a, b) = (d(1, 1), d(2, 1));
        let one = msgpack(&vec![1.0f64]);
        if let Some(root) = std::env::var_os(READ_ONLY_CHILD) {
            let root = PathBuf::from(root);
            let v = Hdf5Values::open(root.join("values"), 2)?;
            let c = Hdf5Calls::open(root.join("calls"), 2)?;
            assert_eq!(v.load(&a)?, Some(one.clone()), "its lock file exists");
            assert_eq!(
                v.load(&b)?,
                Some(one.clone()),
                "its lock file cannot be created"
            );
            assert!(v.contains(&a)?);
            assert_eq!(v.digests()?.len(), 2);
            assert_eq!(c.load(&a)?.map(|r| r.result), Some(b));
            assert_eq!(c.records()?.len(), 1);
            assert!(v.save(&d(3, 1), &one).is_err(), "read-only");
            return Ok(());
        }
        let src = tmp();
        let mnt = tmp();
        let v = Hdf5Values::open(src.path().join("values"), 2)?;
        let c = Hdf5Calls::open(src.path().join("calls"), 2)?;
        v.save(&a, &one)?;
        v.save(&b, &one)?;
        c.save(CallRecord::new(a, "m::f", b))?;
        let lock = v.file_of(&b).with_extension("h5.lock");
        fs::remove_file(&lock).map_err(|e| io_error(&lock, e))?;
        let mount = |then: &str| {
            Command::new("unshare")
                .args(["-m", "sh", "-c"])
                .arg(format!("mount --bind -o ro \"$0\" \"$1\" {then}"))
                .arg(src.path())
                .arg(mnt.path())
                .env(READ_ONLY_CHILD, mnt.path())
                .status()
        };
        if !mount("").is_ok_and(|s| s.success()) {
            eprintln!("skipped: a read-only bind mount needs root and `unshare -m`");
            return Ok(());
        }
        let exe = std::env::current_exe().map_err(|e| io_error(Path::new("test binary"), e))?;
        let test = "hdf5::store::tests::a_cache_on_read_only_media_can_be_read";
        let status = mount(&format!(
            "&& exec '{}' --exact {test} --test-threads=1 --nocapture",
            exe.display()
        ));
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "reading the read-only cache failed: {status:?}"
        );
        Ok(())
    }

    #[test]
    fn values_come_back_byte_for_byte() -> Result<(), StorageError> {
        let dir = tmp();
        let v = Hdf5Values::open(dir.path(), 2)?;
        let floats = msgpack(&vec![1.0f64, 2.0]);
        let mut trailing = floats.clone();
        trailing.push(0xc0);
        // The same two floats behind a longer array header than rmp writes.
        let mut long_header = vec![0xdc, 0, 2];
        long_header.extend_from_slice(&floats[1..]);
        let ints = msgpack(&vec![0i64, -1, 200, -200, i64::MAX, i64::MIN]);
        // 1 as a uint64: an integer array, but not in the shortest form.
        let wide_int = vec![0x91, 0xcf, 0, 0, 0, 0, 0, 0, 0, 1];
        let matrix = msgpack(&vec![vec![1.0f64, 2.0], vec![3.0, 4.0]]);
        let values = [floats, trailing, long_header, ints, wide_int, matrix];
        for (i, bytes) in (0u8..).zip(&values) {
            v.save(&d(1, i), bytes)?;
            assert_eq!(v.load(&d(1, i))?.as_ref(), Some(bytes), "{i}");
        }
        let file = File::open(v.file_of(&d(1, 0))).unwrap_or_else(|e| panic!("{e}"));
        let kind = |i: u8| {
            let attrs = file.group(&d(1, i).to_hex()).and_then(|g| g.attrs());
            attrs.ok().and_then(|a| {
                a.get(ATTR_LAYOUT)
                    .and_then(|x| x.as_str().map(str::to_owned))
            })
        };
        let kinds: Vec<_> = (0..6).map(kind).collect();
        let expected = ["f64", "msgpack", "msgpack", "i64", "msgpack", "f64-2d"];
        assert_eq!(kinds, expected.map(|k| Some(k.to_owned())));
        Ok(())
    }

    #[test]
    fn entries_and_files_are_bounded_by_max_entry_size() -> Result<(), StorageError> {
        let dir = tmp();
        let max = 64 * 1024;
        let v = Hdf5Values::open(dir.path(), 2)?.max_entry_size(max);
        // Too large to store.
        let big = msgpack(&vec![0.5f64; 8000]);
        let err = v.save(&d(1, 1), &big).err();
        assert!(
            matches!(err, Some(StorageError::TooLarge { .. })),
            "{err:?}"
        );
        // Small integers: the MessagePack fits, an int64 dataset would not; stored as a blob.
        let ints = msgpack(&vec![1i64; 10_000]);
        v.save(&d(1, 2), &ints)?;
        assert_eq!(v.load(&d(1, 2))?, Some(ints));
        // A dataset whose shape says more than the limit, in a small (compressed) file: refused
        // from its shape, unread.
        let at = d(2, 1);
        v.save(&at, &msgpack(&vec![0.0f64; 10]))?;
        let path = v.file_of(&at);
        edit(&path, |f| {
            let data = format!("{}/data", at.to_hex());
            f.root().delete(&data)?;
            f.root().create_dataset(&data, |b| {
                b.with_f64_data(&vec![0.0; 1 << 20])
                    .with_chunks(&[1 << 16])
                    .with_deflate(9);
            })?;
            Ok(())
        });
        let len = fs::metadata(&path).map_err(|e| io_error(&path, e))?.len();
        assert!(len < max, "the file is small: {len}");
        let err = v.load(&at).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("1048576 elements") && err.contains("max_entry_size"),
            "{err}"
        );
        // A file longer than the limit is not read at all.
        let roomy = Hdf5Values::open(dir.path(), 2)?.max_entry_size(1 << 20);
        let at = d(3, 1);
        roomy.save(&at, &big)?;
        let err = v.load(&at).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("the file is") && err.contains("max_entry_size"),
            "{err}"
        );
        // Nor grown past it.
        let err = v.save(&d(3, 2), &msgpack(&vec![1.5f64; 10])).err();
        let err = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("would make this file"), "{err}");
        // Records too.
        let c = Hdf5Calls::open(dir.path().join("calls"), 2)?.max_entry_size(100);
        let mut r = CallRecord::new(d(4, 1), "m::f", d(5, 5));
        r.function = "f".repeat(200);
        assert!(matches!(c.save(r), Err(StorageError::TooLarge { .. })));
        Ok(())
    }

    #[test]
    fn evicting_from_a_damaged_file_moves_it_aside() -> Result<(), StorageError> {
        let dir = tmp();
        let v = Hdf5Values::open(dir.path(), 2)?;
        let one = msgpack(&vec![1.0f64]);
        v.save(&d(1, 1), &one)?;
        let path = v.file_of(&d(1, 1));
        fs::write(&path, b"garbage").map_err(|e| io_error(&path, e))?;
        assert!(!v.evict(&d(1, 1))?, "nothing readable was removed");
        assert!(!path.exists());
        v.save(&d(1, 1), &one)?;
        assert!(v.evict(&d(1, 1))?);
        assert_eq!(v.load(&d(1, 1))?, None);
        Ok(())
    }

    #[test]
    fn readers_without_a_lock_only_on_read_only_or_foreign_media() {
        use io::ErrorKind as K;
        for kind in [K::ReadOnlyFilesystem, K::PermissionDenied] {
            assert!(reads_without_lock(&io::Error::from(kind)), "{kind:?}");
        }
        for kind in [K::NotFound, K::StorageFull, K::Other, K::Interrupted] {
            assert!(!reads_without_lock(&io::Error::from(kind)), "{kind:?}");
        }
        #[cfg(target_os = "linux")]
        for (errno, reads) in [
            (libc::EROFS, true),
            (libc::EACCES, true),
            (libc::EPERM, true),
            (libc::EIO, false),
        ] {
            assert_eq!(
                reads_without_lock(&io::Error::from_raw_os_error(errno)),
                reads,
                "{errno}"
            );
        }
    }

    #[test]
    fn the_checksum_is_over_the_documented_bytes() -> Result<(), StorageError> {
        let dir = tmp();
        let v = Hdf5Values::open(dir.path(), 2)?;
        let c = Hdf5Calls::open(dir.path().join("calls"), 2)?;
        let (at, bytes) = (d(1, 1), msgpack(&vec![1.5f64, 2.5]));
        v.save(&at, &bytes)?;
        let record = CallRecord::new(d(2, 1), "m::f", at);
        c.save(record.clone())?;
        let stored = |path: PathBuf, at: &Digest| {
            let file = File::open(path).unwrap_or_else(|e| panic!("{e}"));
            let attrs = file.group(&at.to_hex()).and_then(|g| g.attrs());
            attrs.unwrap_or_else(|e| panic!("{e}"))
        };
        let attrs = stored(v.file_of(&at), &at);
        let sum = integrity::checksum(b"fleche-hdf5/2/f64", &at, &bytes);
        assert_eq!(
            attrs.get("checksum"),
            Some(&AttrValue::U8Array(sum.to_le_bytes().to_vec()))
        );
        assert_eq!(attrs.get("layout_version"), Some(&AttrValue::U32(2)));
        assert_eq!(
            attrs.get("address").and_then(AttrValue::as_str),
            Some(&*at.to_hex())
        );
        let attrs = stored(c.file_of(&record.key), &record.key);
        let sum = integrity::checksum(b"fleche-hdf5/2/record", &record.key, &msgpack(&record));
        assert_eq!(
            attrs.get("checksum"),
            Some(&AttrValue::U8Array(sum.to_le_bytes().to_vec()))
        );
        Ok(())
    }
}
