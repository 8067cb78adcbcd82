//! Directories and files with the modes a cache promises, shared by every file-based backend.
//!
//! On Unix a *private* cache (the default) creates directories `0700` and files `0600`; a
//! *shared* one creates directories `2770` (setgid, so what is created inside inherits the
//! directory's group) and files `0660`, for a team's group. Because the umask would strip the
//! group bits, the exact mode is set on every directory and file this code creates itself — and
//! never on one it did not create, such as an existing root or one of its parents. Elsewhere the
//! modes do not apply.

use std::fs;
use std::io;
use std::path::Path;

use crate::StorageError;

/// An I/O error on `path`.
pub(crate) fn io_error(path: &Path, source: io::Error) -> StorageError {
    StorageError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The mode of a directory this code creates.
#[cfg(unix)]
const fn dir_mode(shared: bool) -> u32 {
    if shared { 0o2770 } else { 0o700 }
}

/// The mode of a file this code creates.
#[cfg(unix)]
const fn file_mode(shared: bool) -> u32 {
    if shared { 0o660 } else { 0o600 }
}

/// Creates `dir` and its missing parents, one level at a time, and gives each level it created
/// the directory mode. Levels that already exist keep their mode.
pub(crate) fn create_dir_all(dir: &Path, shared: bool) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut level = Some(dir);
    while let Some(p) = level {
        if p.as_os_str().is_empty() || p.is_dir() {
            break;
        }
        missing.push(p);
        level = p.parent();
    }
    for p in missing.into_iter().rev() {
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, dir_mode(shared));
        match builder.create(p) {
            Ok(()) => set_dir_mode(p, shared)?,
            // Another process created it meanwhile: not ours to change.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && p.is_dir() => {}
            Err(e) => return Err(io_error(p, e)),
        }
    }
    Ok(())
}

/// Sets the directory mode on `dir`, which this code has just created.
#[cfg(unix)]
fn set_dir_mode(dir: &Path, shared: bool) -> Result<(), StorageError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(dir_mode(shared)))
        .map_err(|e| io_error(dir, e))
}

#[cfg(not(unix))]
fn set_dir_mode(_dir: &Path, _shared: bool) -> Result<(), StorageError> {
    Ok(())
}

/// Sets the file mode on `file` (open at `path`), which this code has just created, through its
/// handle.
#[cfg(all(unix, any(feature = "sqlite", feature = "hdf5")))]
pub(crate) fn set_file_mode(
    file: &fs::File,
    path: &Path,
    shared: bool,
) -> Result<(), StorageError> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(file_mode(shared)))
        .map_err(|e| io_error(path, e))
}

#[cfg(all(not(unix), any(feature = "sqlite", feature = "hdf5")))]
pub(crate) fn set_file_mode(
    _file: &fs::File,
    _path: &Path,
    _shared: bool,
) -> Result<(), StorageError> {
    Ok(())
}

/// Creates the file `path` with the file mode, unless it exists: then `None`, and the existing
/// file is left as it is.
#[cfg(any(feature = "sqlite", feature = "hdf5"))]
pub(crate) fn create_new(path: &Path, shared: bool) -> Result<Option<fs::File>, StorageError> {
    let mut create = fs::OpenOptions::new();
    create.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut create, file_mode(shared));
    match create.open(path) {
        Ok(file) => {
            set_file_mode(&file, path, shared)?;
            Ok(Some(file))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

/// Opens `path` for reading and writing, creating it with the file mode if it is missing. An
/// existing file keeps its mode and contents.
#[cfg(feature = "hdf5")]
pub(crate) fn open_or_create(path: &Path, shared: bool) -> Result<fs::File, StorageError> {
    loop {
        if let Some(file) = create_new(path, shared)? {
            return Ok(file);
        }
        match fs::OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => return Ok(file),
            // Removed between the two opens: create it after all.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(path, e)),
        }
    }
}

/// A temporary file in `dir` (named `.tmp-…`, created `0600` by `tempfile`), given the file mode
/// when the cache is shared.
pub(crate) fn temp_file_in(dir: &Path, shared: bool) -> Result<tempfile::NamedTempFile, io::Error> {
    let tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    #[cfg(unix)]
    if shared {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(file_mode(shared)))?;
    }
    Ok(tmp)
}

/// Removes, among `paths`, the temporary files (named `.tmp-*`) last modified more than
/// `older_than` ago: what writers killed between creating and renaming them left behind.
/// Returns how many were removed.
pub(crate) fn reclaim_temporary(
    paths: impl IntoIterator<Item = std::path::PathBuf>,
    older_than: std::time::Duration,
) -> Result<usize, crate::StorageError> {
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for path in paths {
        let temporary = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(".tmp-"));
        if !temporary {
            continue;
        }
        let stale = fs::symlink_metadata(&path)
            .ok()
            .filter(fs::Metadata::is_file)
            .and_then(|m| m.modified().ok())
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > older_than);
        if stale {
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path, e)),
            }
        }
    }
    Ok(removed)
}

/// Why an entry's path is not read ([`open_regular`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A symbolic link: not followed.
    Link,
    /// A directory, FIFO, device or socket.
    NotRegular,
    /// Longer than the reader's bound.
    TooLarge { size: u64 },
}

/// The file at `path` opened for reading, and its metadata: without following a symbolic link,
/// without blocking on a FIFO or device, only when it is a regular file no longer than `max`.
/// `Ok(Ok(None))` when there is no file.
pub(crate) fn open_regular(
    path: &Path,
    max: u64,
) -> Result<Result<Option<(fs::File, fs::Metadata)>, Refusal>, StorageError> {
    let mut open = fs::OpenOptions::new();
    open.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut open, libc::O_NOFOLLOW | libc::O_NONBLOCK);
    #[cfg(not(unix))]
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => return Ok(Err(Refusal::Link)),
        _ => {}
    }
    let file = match open.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ok(None)),
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(Err(Refusal::Link)),
        Err(e) => return Err(io_error(path, e)),
    };
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Ok(Err(Refusal::NotRegular));
    }
    if meta.len() > max {
        return Ok(Err(Refusal::TooLarge { size: meta.len() }));
    }
    Ok(Ok(Some((file, meta))))
}

/// The most a [`Checked`] reader reads at once: what was read is checked while it is still in
/// the processor's cache.
const CHECK_CHUNK: usize = 256 * 1024;

/// Reads at least this much at once with the check computed on another thread.
const PARALLEL_FROM: usize = 2 << 20;

/// At most `left` bytes of `inner`, each fed to `check` as it is read: how the persistent
/// backends stream a large entry to its reader and verify it on the way. A read of at least
/// 2 MiB at once computes the check on another thread, chunk by chunk behind the reads, so the
/// check of a large entry costs no time of its own.
pub(crate) struct Checked<'a, R> {
    inner: R,
    check: &'a mut (dyn FnMut(&[u8]) + Send),
    left: u64,
}

impl<'a, R: io::Read> Checked<'a, R> {
    pub(crate) fn new(inner: R, check: &'a mut (dyn FnMut(&[u8]) + Send), len: u64) -> Self {
        Self {
            inner,
            check,
            left: len,
        }
    }

    /// The bytes not read yet.
    pub(crate) fn left(&self) -> u64 {
        self.left
    }
}

impl<R: io::Read> io::Read for Checked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let most = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if most == 0 {
            return Ok(0);
        }
        let n = if most >= PARALLEL_FROM {
            read_checking_in_parallel(&mut self.inner, &mut *self.check, &mut buf[..most])?
        } else {
            let n = self.inner.read(&mut buf[..most.min(CHECK_CHUNK)])?;
            (self.check)(&buf[..n]);
            n
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// Fills `buf` from `inner` (short only at its end) chunk by chunk, while another thread feeds
/// each filled chunk to `check`; on this thread alone if no thread can be started.
fn read_checking_in_parallel(
    inner: &mut impl io::Read,
    check: &mut (dyn FnMut(&[u8]) + Send),
    buf: &mut [u8],
) -> io::Result<usize> {
    let parallel = std::thread::scope(|scope| {
        let (filled, chunks) = std::sync::mpsc::sync_channel::<&[u8]>(8);
        let checker = &mut *check;
        let hasher = std::thread::Builder::new()
            .name("fleche-check".into())
            .spawn_scoped(scope, move || {
                for chunk in chunks {
                    checker(chunk);
                }
            });
        let Ok(hasher) = hasher else {
            return None;
        };
        let mut total = 0;
        let mut outcome = Ok(());
        for chunk in buf.chunks_mut(CHECK_CHUNK) {
            let n = match fill(inner, chunk) {
                Ok(n) => n,
                Err(e) => {
                    outcome = Err(e);
                    0
                }
            };
            let whole = n == chunk.len();
            let chunk: &[u8] = chunk;
            total += n;
            // The hasher ends only when the channel closes: a send cannot fail before.
            let _ = filled.send(&chunk[..n]);
            if !whole || outcome.is_err() {
                break;
            }
        }
        drop(filled);
        if hasher.join().is_err() {
            return Some(Err(io::Error::other("the checking thread panicked")));
        }
        Some(outcome.map(|()| total))
    });
    if let Some(done) = parallel {
        return done;
    }
    let mut total = 0;
    for chunk in buf.chunks_mut(CHECK_CHUNK) {
        let n = fill(inner, chunk)?;
        check(&chunk[..n]);
        total += n;
        if n < chunk.len() {
            break;
        }
    }
    Ok(total)
}

/// Reads into `chunk` until it is full or `inner` ends; how much was read.
fn fill(inner: &mut impl io::Read, chunk: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < chunk.len() {
        match inner.read(&mut chunk[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A file read from an offset on, by positioned reads: the file's own position (which another
/// handle of the same open file may share) is not used (on Unix; elsewhere it is moved).
#[cfg_attr(not(feature = "hdf5"), allow(dead_code))]
pub(crate) struct ReadAt<'a> {
    file: &'a fs::File,
    at: u64,
}

#[cfg_attr(not(feature = "hdf5"), allow(dead_code))]
impl<'a> ReadAt<'a> {
    pub(crate) fn new(file: &'a fs::File, at: u64) -> Self {
        Self { file, at }
    }
}

impl io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(unix)]
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.at)?;
        #[cfg(not(unix))]
        let n = {
            let mut f = self.file;
            io::Seek::seek(&mut f, io::SeekFrom::Start(self.at))?;
            f.read(buf)?
        };
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
#[cfg(unix)]
pub(crate) mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// The permission bits of `path` (setgid included).
    pub(crate) fn mode(path: &Path) -> u32 {
        fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A directory with the mode `0755`, as a user's own directory would be.
    pub(crate) fn existing_dir(path: &Path) {
        fs::create_dir_all(path).unwrap_or_else(|e| panic!("{e}"));
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn only_created_levels_get_the_mode() -> Result<(), StorageError> {
        let tmp = tempfile::tempdir().map_err(|e| io_error(Path::new("tmp"), e))?;
        let parent = tmp.path().join("home");
        existing_dir(&parent);
        for (shared, expected) in [(false, 0o700), (true, 0o2770)] {
            let top = parent.join(format!("a-{shared}"));
            let leaf = top.join("b").join("c");
            create_dir_all(&leaf, shared)?;
            assert_eq!(mode(&parent), 0o755, "an existing parent is untouched");
            for dir in [&top, &top.join("b"), &leaf] {
                assert_eq!(mode(dir), expected, "{}", dir.display());
            }
            // Again: everything exists, nothing changes.
            fs::set_permissions(&top, fs::Permissions::from_mode(0o750))
                .map_err(|e| io_error(&top, e))?;
            create_dir_all(&leaf, !shared)?;
            assert_eq!(mode(&top), 0o750);
            assert_eq!(mode(&leaf), expected);
        }
        Ok(())
    }

    #[test]
    fn temporary_files_get_the_mode() -> Result<(), StorageError> {
        let tmp = tempfile::tempdir().map_err(|e| io_error(Path::new("tmp"), e))?;
        let t = temp_file_in(tmp.path(), false).map_err(|e| io_error(tmp.path(), e))?;
        assert_eq!(mode(t.path()), 0o600);
        let t = temp_file_in(tmp.path(), true).map_err(|e| io_error(tmp.path(), e))?;
        assert_eq!(mode(t.path()), 0o660);
        Ok(())
    }

    #[cfg(feature = "hdf5")]
    #[test]
    fn files_are_created_with_the_mode_and_existing_ones_kept() -> Result<(), StorageError> {
        let tmp = tempfile::tempdir().map_err(|e| io_error(Path::new("tmp"), e))?;
        let (private, shared) = (tmp.path().join("private"), tmp.path().join("shared"));
        open_or_create(&private, false)?;
        open_or_create(&shared, true)?;
        assert_eq!(mode(&private), 0o600);
        assert_eq!(mode(&shared), 0o660);
        let foreign = tmp.path().join("foreign");
        fs::write(&foreign, b"x").map_err(|e| io_error(&foreign, e))?;
        fs::set_permissions(&foreign, fs::Permissions::from_mode(0o644))
            .map_err(|e| io_error(&foreign, e))?;
        open_or_create(&foreign, true)?;
        assert_eq!(mode(&foreign), 0o644, "an existing file keeps its mode");
        assert_eq!(fs::read(&foreign).ok().as_deref(), Some(&b"x"[..]));
        Ok(())
    }
}

#[cfg(test)]
mod checked_tests {
    use std::io::Read;

    use super::*;

    fn sum_of(bytes: &[u8]) -> u128 {
        xxhash_rust::xxh3::xxh3_128(bytes)
    }

    #[test]
    fn a_checked_read_feeds_every_byte_once_in_order_whatever_the_read_sizes() {
        let data: Vec<u8> = (0..(5 << 20) + 12_345u32)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        for (len, read_at_once) in [
            (data.len(), data.len()),     // one large read: the parallel path
            (data.len(), 1000),           // many small reads
            (data.len() - 7, data.len()), // a limit inside the data
            (3 << 20, 3 << 20),           // exactly a limit that is a chunk multiple
        ] {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            let mut update = |b: &[u8]| h.update(b);
            let mut r = Checked::new(&data[..], &mut update, len as u64);
            let mut out = vec![0u8; len];
            let mut got = 0;
            while got < len {
                let end = (got + read_at_once).min(len);
                let n = r.read(&mut out[got..end]).unwrap_or(0);
                assert!(n > 0, "short read at {got}");
                got += n;
            }
            assert_eq!(r.read(&mut [0u8; 8]).ok(), Some(0), "reads past the limit");
            assert_eq!(r.left(), 0);
            assert_eq!(&out[..], &data[..len]);
            assert_eq!(
                h.digest128(),
                sum_of(&data[..len]),
                "{len} by {read_at_once}"
            );
        }
        // A source shorter than the limit: what is there, checked, and the rest left unread.
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        let mut update = |b: &[u8]| h.update(b);
        let short = &data[..(3 << 20) + 5];
        let mut r = Checked::new(short, &mut update, data.len() as u64);
        let mut out = vec![0u8; data.len()];
        let n = r.read(&mut out).unwrap_or(0);
        assert_eq!(n, short.len());
        assert_eq!(r.left(), (data.len() - short.len()) as u64);
        assert_eq!(h.digest128(), sum_of(short));
    }
}
