//! [`Artifact`]: a file a memoized function writes, stored as its bytes and written back on a hit.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fleche_storage::Digest;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use crate::Error;

/// A file produced by a memoized function: its path and its bytes, stored as part of the result.
///
/// On a hit, each `Artifact` in the result (alone, or as fields of a struct, in a `Vec`, ...) is
/// written back to its path when the file there is missing or differs from the stored bytes
/// (compared by length, then by blake3 digest), atomically: a reader sees the old file or the
/// whole new one, never a part. A restore that fails makes the hit a miss (with a warning), so
/// the function runs and writes the file itself. [`Artifact::restore`] does the same on demand,
/// for results got with `load`.
///
/// A hit writes to the paths stored in the cache: whoever can write a cache can name the files
/// its hits write. Share a cache holding artifacts only with writers you trust, or sign it
/// (`secret_key` in `fleche.toml`), so that entries made elsewhere are refused.
///
/// ```
/// use fleche::Artifact;
/// use std::path::PathBuf;
///
/// #[fleche::memoize]
/// fn render(text: String, out: PathBuf) -> Result<Artifact, fleche::Error> {
///     Artifact::write(&out, text.to_uppercase())
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let out = dir.path().join("page.txt");
/// let cache = fleche::Cache::memory();
/// fleche::with_cache(&cache, || -> Result<(), Box<dyn std::error::Error>> {
///     render("hi".into(), out.clone())?;                  // runs, writes page.txt
///     std::fs::remove_file(&out)?;
///     let again = render("hi".into(), out.clone())?;      // a hit: page.txt is written back
///     assert_eq!(std::fs::read(&out)?, b"HI");
///     assert_eq!(again.bytes(), b"HI");
///     Ok(())
/// })?;
/// # Ok(()) }
/// ```
#[derive(PartialEq, Eq)]
pub struct Artifact {
    path: PathBuf,
    bytes: Arc<[u8]>,
    /// Unix permission bits of the file when it was read or written.
    mode: Option<u32>,
    digest: Digest,
}

impl Artifact {
    /// The file at `path` as the function left it: its bytes and permissions.
    ///
    /// # Errors
    ///
    /// [`Error::File`] when it cannot be read.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let failed = |source| Error::File {
            path: path.to_path_buf(),
            operation: "read",
            source,
        };
        let bytes = std::fs::read(path).map_err(failed)?;
        let mode = std::fs::metadata(path).ok().and_then(|m| mode_of(&m));
        Ok(Self::from_parts(path.to_path_buf(), bytes.into(), mode))
    }

    /// Writes `bytes` to `path` (atomically, creating missing parent directories) and returns
    /// the artifact.
    ///
    /// # Errors
    ///
    /// [`Error::File`] when it cannot be written.
    pub fn write(path: impl AsRef<Path>, bytes: impl Into<Vec<u8>>) -> Result<Self, Error> {
        let path = path.as_ref();
        let bytes: Vec<u8> = bytes.into();
        write_atomically(path, &bytes, None).map_err(|source| Error::File {
            path: path.to_path_buf(),
            operation: "write",
            source,
        })?;
        let mode = std::fs::metadata(path).ok().and_then(|m| mode_of(&m));
        Ok(Self::from_parts(path.to_path_buf(), bytes.into(), mode))
    }

    fn from_parts(path: PathBuf, bytes: Arc<[u8]>, mode: Option<u32>) -> Self {
        let digest = Digest::from_bytes(*blake3::hash(&bytes).as_bytes());
        Self {
            path,
            bytes,
            mode,
            digest,
        }
    }

    /// The file's path, as given.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's bytes.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The blake3 digest of the bytes.
    #[must_use]
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Writes the file back when it is missing or differs from the stored bytes (or only its
    /// permissions differ). `Ok(true)` when something was written.
    ///
    /// # Errors
    ///
    /// [`Error::File`] when the file cannot be compared or written.
    pub fn restore(&self) -> Result<bool, Error> {
        let failed = |operation, source| Error::File {
            path: self.path.clone(),
            operation,
            source,
        };
        match std::fs::metadata(&self.path) {
            Ok(m) if m.is_file() && m.len() == self.bytes.len() as u64 => {
                let on_disk =
                    crate::files::content_digest(&self.path).map_err(|e| failed("read", e))?;
                if on_disk == self.digest {
                    if let Some(mode) = self.mode
                        && mode_of(&m) != Some(mode)
                    {
                        set_mode(&self.path, mode).map_err(|e| failed("chmod", e))?;
                        return Ok(true);
                    }
                    return Ok(false);
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(failed("stat", e)),
        }
        write_atomically(&self.path, &self.bytes, self.mode).map_err(|e| failed("write", e))?;
        Ok(true)
    }

    /// On a hit being decoded: restore, and record a failure for the hit to become a miss.
    fn restore_on_hit(&self) {
        if RESTORE.with(Cell::get) != Restore::On {
            return;
        }
        match self.restore() {
            Ok(true) => {
                tracing::debug!(path = %self.path.display(), "artifact restored from the cache");
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot restore an artifact; the call runs instead");
                RESTORE.with(|r| r.set(Restore::Failed));
            }
        }
    }
}

impl Clone for Artifact {
    /// A clone shares the bytes. (A memory cache's hit is a clone: while it is being made, the
    /// file is restored, as for a hit decoded from bytes.)
    fn clone(&self) -> Self {
        let copy = Self {
            path: self.path.clone(),
            bytes: Arc::clone(&self.bytes),
            mode: self.mode,
            digest: self.digest,
        };
        copy.restore_on_hit();
        copy
    }
}

impl fmt::Debug for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Artifact")
            .field("path", &self.path)
            .field("len", &self.bytes.len())
            .field("digest", &self.digest)
            .finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Restore {
    Off,
    On,
    Failed,
}

thread_local! {
    static RESTORE: Cell<Restore> = const { Cell::new(Restore::Off) };
}

/// Runs `decode` (a hit being decoded) with artifacts restoring their files; `false` when one
/// could not, so the hit must become a miss.
pub(crate) fn restoring<R>(decode: impl FnOnce() -> R) -> (R, bool) {
    struct Reset(Restore);
    impl Drop for Reset {
        fn drop(&mut self) {
            RESTORE.with(|r| r.set(self.0));
        }
    }
    let outer = RESTORE.with(|r| r.replace(Restore::On));
    let reset = Reset(outer);
    let out = decode();
    let ok = RESTORE.with(Cell::get) != Restore::Failed;
    drop(reset);
    (out, ok)
}

impl Serialize for Artifact {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Artifact", 3)?;
        match self.path.to_str() {
            Some(p) => s.serialize_field("path", p)?,
            None => {
                s.serialize_field("path", &RawBytes(self.path.as_os_str().as_encoded_bytes()))?
            }
        }
        s.serialize_field("mode", &self.mode)?;
        s.serialize_field("bytes", &RawBytes(&self.bytes))?;
        s.end()
    }
}

struct RawBytes<'a>(&'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// Bytes, from a byte string or a sequence of numbers.
struct ByteBuf(Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.as_bytes().to_vec()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
                // Bounded by what the sequence really holds, not by its claimed length.
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(ByteBuf(out))
            }
        }
        deserializer.deserialize_byte_buf(V)
    }
}

impl<'de> Deserialize<'de> for Artifact {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Artifact;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an artifact (path, mode, bytes)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Artifact, A::Error> {
                let (mut path, mut mode, mut bytes) = (None, None, None);
                while let Some(field) = map.next_key::<String>()? {
                    match field.as_str() {
                        "path" => path = Some(map.next_value::<ByteBuf>()?.0),
                        "mode" => mode = Some(map.next_value::<Option<u32>>()?),
                        "bytes" => bytes = Some(map.next_value::<ByteBuf>()?.0),
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                let path = path.ok_or_else(|| de::Error::missing_field("path"))?;
                let bytes = bytes.ok_or_else(|| de::Error::missing_field("bytes"))?;
                Ok(build(path, bytes, mode.flatten()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Artifact, A::Error> {
                let path = seq
                    .next_element::<ByteBuf>()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let mode = seq
                    .next_element::<Option<u32>>()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let bytes = seq
                    .next_element::<ByteBuf>()?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?;
                Ok(build(path.0, bytes.0, mode))
            }
        }
        fn build(path: Vec<u8>, bytes: Vec<u8>, mode: Option<u32>) -> Artifact {
            let path = match String::from_utf8(path) {
                Ok(s) => PathBuf::from(s),
                Err(e) => path_from_raw(e.into_bytes()),
            };
            let a = Artifact::from_parts(path, bytes.into(), mode);
            a.restore_on_hit();
            a
        }
        deserializer.deserialize_struct("Artifact", &["path", "mode", "bytes"], V)
    }
}

#[cfg(unix)]
fn path_from_raw(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

#[cfg(not(unix))]
fn path_from_raw(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(unix)]
fn mode_of(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(meta.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn mode_of(_meta: &std::fs::Metadata) -> Option<u32> {
    None
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".{}.{}.fleche-tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut f = std::fs::File::create_new(&tmp)?;
        f.write_all(bytes)?;
        if let Some(mode) = mode {
            set_mode(&tmp, mode)?;
        }
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_writes_only_what_differs() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("sub/out.bin");
        let a = Artifact::write(&p, vec![0u8, 159, 146, 150])?;
        assert!(!a.restore()?);
        std::fs::write(&p, [1u8, 2, 3, 4])?; // same length, other bytes
        assert!(a.restore()?);
        assert_eq!(std::fs::read(&p)?, vec![0u8, 159, 146, 150]);
        std::fs::remove_dir_all(dir.path().join("sub"))?;
        assert!(a.restore()?);
        assert_eq!(std::fs::read(&p)?, a.bytes());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("sub"))?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".fleche-tmp"))
            .collect();
        assert!(leftovers.is_empty());
        Ok(())
    }

    #[test]
    fn round_trips_through_the_value_format() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("x");
        let a = Artifact::write(&p, b"payload".to_vec())?;
        let bytes = fleche_storage::encoding::to_vec(&a)?;
        std::fs::remove_file(&p)?;
        let back: Artifact = fleche_storage::encoding::from_slice(&bytes)?;
        assert_eq!(back, a);
        assert!(!p.exists(), "decoding outside a hit restores nothing");
        let ((), ok) = restoring(|| {
            let _: Artifact = fleche_storage::encoding::from_slice(&bytes).unwrap_or(back);
        });
        assert!(ok);
        assert_eq!(std::fs::read(&p)?, b"payload");
        Ok(())
    }
}
