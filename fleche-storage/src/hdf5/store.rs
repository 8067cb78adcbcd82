//! The HDF5 storages (feature `hdf5`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdf5_pure::{AttrValue, File, FileBuilder};
use rmpv::Value as Mp;

use super::PREFIX_LENGTHS;
use crate::fs::io_error;
use crate::{CallRecord, CallStorage, Digest, StorageError, ValueStorage};

/// A directory of HDF5 files holding entries by digest.
#[derive(Debug, Clone)]
struct H5Dir {
    root: PathBuf,
    prefix_length: usize,
    shared: bool,
    /// How long to wait for another process's lock on a file; `None` waits as long as it takes.
    lock_timeout: Option<Duration>,
}

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

impl H5Dir {
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
        })
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn file_of(&self, digest: &Digest) -> PathBuf {
        self.root
            .join(format!("{}.h5", digest.hex_prefix(self.prefix_length)))
    }

    fn corrupt(&self, digest: &Digest, reason: impl Into<String>) -> StorageError {
        StorageError::corrupt(self.location(), digest, reason)
    }

    /// The entry `digest` is unreadable: its file is damaged as `source` says.
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

    /// Runs `f` holding the file's lock (shared for readers, exclusive for writers).
    fn locked<T>(
        &self,
        path: &Path,
        exclusive: bool,
        f: impl FnOnce() -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let lock_path = path.with_extension("h5.lock");
        let lock = crate::fs::open_or_create(&lock_path, self.shared)?;
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

    /// Opens the file holding `digest` for reading; `None` when it does not exist.
    fn read_file(&self, digest: &Digest) -> Result<Option<File>, StorageError> {
        let path = self.file_of(digest);
        if !path.exists() {
            return Ok(None);
        }
        self.locked(&path, false, || {
            File::open(&path)
                .map(Some)
                .map_err(|e| self.damaged(digest, e))
        })
    }

    /// Adds the group `digest` (built by `build`) to its file unless it is there already.
    fn write(
        &self,
        digest: &Digest,
        build: impl Fn(&mut dyn GroupSink) -> Result<(), hdf5_pure::Error>,
    ) -> Result<(), StorageError> {
        let path = self.file_of(digest);
        let name = digest.to_hex();
        let damaged = |e: hdf5_pure::Error| self.damaged(digest, e);
        let fail = |e: hdf5_pure::Error| hdf5_error(&path, e);
        self.locked(&path, true, || {
            if !path.exists() {
                // A new file is written whole to a temporary file, then renamed into place.
                let mut builder = FileBuilder::new();
                let mut group = builder.create_group(&name);
                build(&mut NewGroup(&mut group)).map_err(fail)?;
                builder.add_group(group.finish());
                let mut tmp = crate::fs::temp_file_in(&self.root, self.shared)
                    .map_err(|e| io_error(&self.root, e))?;
                builder
                    .finish_to(tmp.as_file_mut())
                    .map_err(|e| hdf5_error(tmp.path(), e))?;
                tmp.persist(&path).map_err(|e| io_error(&path, e.error))?;
                return Ok(());
            }
            let file = File::open_rw(&path).map_err(damaged)?;
            match file.group(&name) {
                Ok(_) => return Ok(()),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(damaged(e)),
            }
            let group = file.root().create_group(&name).map_err(fail)?;
            build(&mut EditGroup(&group)).map_err(fail)?;
            file.commit().map_err(fail)
        })
    }

    fn remove(&self, digest: &Digest) -> Result<bool, StorageError> {
        let path = self.file_of(digest);
        if !path.exists() {
            return Ok(false);
        }
        let name = digest.to_hex();
        let damaged = |e: hdf5_pure::Error| self.damaged(digest, e);
        let fail = |e: hdf5_pure::Error| hdf5_error(&path, e);
        self.locked(&path, true, || {
            let file = File::open_rw(&path).map_err(damaged)?;
            match file.group(&name) {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Ok(false),
                Err(e) => return Err(damaged(e)),
            }
            file.root().delete(&name).map_err(fail)?;
            file.commit().map_err(fail)?;
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
            let groups = self.locked(&path, false, || {
                File::open(&path)
                    .and_then(|f| f.root().groups())
                    .map_err(|e| hdf5_error(&path, e))
            });
            match groups {
                Ok(names) => out.extend(names.iter().filter_map(|n| n.parse::<Digest>().ok())),
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable HDF5 file"),
            }
        }
        Ok(out)
    }
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
}

/// How a value is laid out in its group.
enum Layout {
    F64(Vec<f64>),
    I64(Vec<i64>),
    F64Matrix(Vec<f64>, [u64; 2]),
    Blob,
}

/// A MessagePack array of float64 (the encoding of a `Vec<f64>`), read without building a
/// value tree: the common large numeric result.
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
    if n == 0 || rest.len() != n.checked_mul(9)? {
        return None;
    }
    rest.chunks_exact(9)
        .map(|c| (c[0] == 0xcb).then(|| c[1..].try_into().ok().map(f64::from_be_bytes))?)
        .collect()
}

/// The MessagePack encoding of an array of float64, as `rmp` writes it.
fn encode_f64_array(values: &[f64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + values.len() * 9);
    match values.len() {
        n @ 0..=15 => out.push(0x90 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(0xdc);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0xdd);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    for v in values {
        out.push(0xcb);
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

/// Recognizes the numeric shapes that become typed datasets.
fn layout(bytes: &[u8]) -> Layout {
    if let Some(v) = f64_array(bytes) {
        return Layout::F64(v);
    }
    let Ok(Mp::Array(items)) = rmpv::decode::read_value(&mut &bytes[..]) else {
        return Layout::Blob;
    };
    if items.is_empty() {
        return Layout::Blob;
    }
    if items.iter().all(|v| matches!(v, Mp::F64(_))) {
        return Layout::F64(items.iter().filter_map(Mp::as_f64).collect());
    }
    if items
        .iter()
        .all(|v| v.as_i64().is_some() && matches!(v, Mp::Integer(_)))
    {
        return Layout::I64(items.iter().filter_map(Mp::as_i64).collect());
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
    if let Some(rows) = rows {
        let cols = rows[0].len();
        if rows.iter().all(|r| r.len() == cols) {
            let flat = rows
                .iter()
                .flat_map(|r| r.iter().filter_map(Mp::as_f64))
                .collect();
            return Layout::F64Matrix(flat, [rows.len() as u64, cols as u64]);
        }
    }
    Layout::Blob
}

fn encode(v: &Mp) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = rmpv::encode::write_value(&mut out, v);
    out
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

    /// The HDF5 file an entry is (or would be) stored in.
    #[must_use]
    pub fn file_of(&self, digest: &Digest) -> PathBuf {
        self.dir.file_of(digest)
    }
}

impl ValueStorage for Hdf5Values {
    fn load(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(file) = self.dir.read_file(digest)? else {
            return Ok(None);
        };
        let name = digest.to_hex();
        let corrupt = |e: hdf5_pure::Error| self.dir.damaged(digest, e);
        let group = match file.group(&name) {
            Ok(g) => g,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(corrupt(e)),
        };
        let attrs = group.attrs().map_err(corrupt)?;
        let kind = attrs
            .get("fleche")
            .and_then(AttrValue::as_str)
            .unwrap_or("");
        let path = |ds: &str| format!("{name}/{ds}");
        let bytes = match kind {
            "msgpack" => file
                .dataset(&path("msgpack"))
                .and_then(|d| d.read_u8())
                .map_err(corrupt)?,
            "f64" => {
                let v = file
                    .dataset(&path("data"))
                    .and_then(|d| d.read_f64())
                    .map_err(corrupt)?;
                encode_f64_array(&v)
            }
            "i64" => {
                let v = file
                    .dataset(&path("data"))
                    .and_then(|d| d.read_i64())
                    .map_err(corrupt)?;
                encode(&Mp::Array(v.into_iter().map(Mp::from).collect()))
            }
            "f64-2d" => {
                let ds = file.dataset(&path("data")).map_err(corrupt)?;
                let shape = ds.shape().map_err(corrupt)?;
                let flat = ds.read_f64().map_err(corrupt)?;
                let cols = shape.get(1).copied().unwrap_or(0) as usize;
                if shape.len() != 2 || cols == 0 || flat.len() != shape[0] as usize * cols {
                    return Err(self
                        .dir
                        .corrupt(digest, "a 2-D dataset whose shape does not match its data"));
                }
                let rows = flat
                    .chunks(cols)
                    .map(|r| Mp::Array(r.iter().copied().map(Mp::F64).collect()))
                    .collect();
                encode(&Mp::Array(rows))
            }
            other => {
                return Err(self
                    .dir
                    .corrupt(digest, format!("unknown layout `{other}`")));
            }
        };
        Ok(Some(bytes))
    }

    fn save(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StorageError> {
        let layout = layout(bytes);
        self.dir.write(digest, |g| match &layout {
            Layout::F64(v) => {
                g.attr("fleche", AttrValue::VarLenString("f64".into()))?;
                g.f64s("data", v, None)
            }
            Layout::I64(v) => {
                g.attr("fleche", AttrValue::VarLenString("i64".into()))?;
                g.i64s("data", v)
            }
            Layout::F64Matrix(v, shape) => {
                g.attr("fleche", AttrValue::VarLenString("f64-2d".into()))?;
                g.f64s("data", v, Some(*shape))
            }
            Layout::Blob => {
                g.attr("fleche", AttrValue::VarLenString("msgpack".into()))?;
                g.bytes("msgpack", bytes)
            }
        })
    }

    fn contains(&self, digest: &Digest) -> Result<bool, StorageError> {
        let Some(file) = self.dir.read_file(digest)? else {
            return Ok(false);
        };
        match file.group(&digest.to_hex()) {
            Ok(_) => Ok(true),
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
}

impl CallStorage for Hdf5Calls {
    fn result_of(&self, key: &Digest) -> Result<Option<Digest>, StorageError> {
        Ok(self.load(key)?.map(|r| r.result))
    }

    fn load(&self, key: &Digest) -> Result<Option<CallRecord>, StorageError> {
        let Some(file) = self.dir.read_file(key)? else {
            return Ok(None);
        };
        let blob = match file.dataset(&format!("{}/record", key.to_hex())) {
            Ok(ds) => ds.read_u8().map_err(|e| self.dir.damaged(key, e))?,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(self.dir.damaged(key, e)),
        };
        let record = CallRecord::decode_for(key, &blob).map_err(|e| self.dir.damaged(key, e))?;
        Ok(Some(record))
    }

    fn save(&self, record: CallRecord) -> Result<(), StorageError> {
        let blob = rmp_serde::to_vec_named(&record).map_err(|source| StorageError::Encode {
            location: self.dir.location(),
            key: record.key,
            source,
        })?;
        // Overwrite: remove the old group first (a record is not content-addressed).
        self.dir.remove(&record.key)?;
        self.dir.write(&record.key, |g| {
            g.attr("function", AttrValue::VarLenString(record.function.clone()))?;
            g.attr("result", AttrValue::VarLenString(record.result.to_hex()))?;
            g.bytes("record", &blob)
        })
    }

    fn evict(&self, key: &Digest) -> Result<bool, StorageError> {
        self.dir.remove(key)
    }

    fn records(&self) -> Result<Vec<CallRecord>, StorageError> {
        Ok(crate::record::readable(self.dir.digests()?, |k| {
            self.load(k)
        }))
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
}
