//! File inputs of memoized functions: [`FileContents`] (what a file holds) and [`FileStamp`]
//! (its length and modification time), both keys (`docs/format.md`, "File keys").

use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use fleche_storage::{Digest, Value};

use crate::key::{Key, KeyHasher};

/// A file's content as a key: a memoized function taking one reruns when the file's bytes
/// change, and only then (touching it, or copying it elsewhere with its content, keeps the key).
///
/// The content is hashed with blake3 once, when the `FileContents` is made: memory-mapped (on
/// several threads for large files), never read whole into memory. A directory is hashed as its
/// tree: every entry below it, sorted by name, with its path relative to the directory, its
/// kind, and a file's content digest or a symbolic link's target (links are not followed inside
/// a tree). The path, as given, is part of the key too.
///
/// A missing path is a key of its own (a function may well create what is missing). A path that
/// cannot be read, a special file (a FIFO, a device) or a file that changed while it was hashed
/// gives a key no other call has, so that call always runs, with a warning: an unread input never
/// produces a hit.
///
/// Memory-mapping is what makes hashing run at blake3's full speed (large buffered reads on every
/// core reach about two thirds of it). A file that another process truncates while it is mapped
/// would make the operating system stop this process (`SIGBUS`); on Linux fleche catches that:
/// the first time it maps a file it installs a `SIGBUS` handler that answers a fault inside one of
/// its own mappings with zero pages, and the file counts as changed while it was hashed (a key no
/// other call has, with a warning). A fault anywhere else goes on to the handler installed before
/// (Rust's own, or the program's) or the default action, as if fleche's were not there. A program
/// that installs its own `SIGBUS` handler later replaces fleche's, and the guard with it. On other
/// systems a file truncated while it is hashed still stops the process; a file rewritten by
/// writing a new one and renaming it over the old, as most tools do, is safe everywhere.
///
/// The stored argument records the path, the kind, the length and the content digest:
///
/// ```
/// use fleche::FileContents;
///
/// #[fleche::memoize]
/// fn line_count(input: FileContents) -> usize {
///     std::fs::read_to_string(input.path()).map_or(0, |s| s.lines().count())
/// }
///
/// # fn main() -> std::io::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("data.csv");
/// std::fs::write(&path, "a\nb\n")?;
/// fleche::with_cache(fleche::Cache::memory(), || {
///     assert_eq!(line_count(FileContents::new(&path)), 2);   // runs
///     assert_eq!(line_count(FileContents::new(&path)), 2);   // hit
///     std::fs::write(&path, "a\nb\nc\n").unwrap();
///     assert_eq!(line_count(FileContents::new(&path)), 3);   // content changed: runs
/// });
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileContents {
    path: PathBuf,
    state: State,
}

/// A file's length and modification time as a key: the cheap way to notice a change (one
/// `stat`), as `make` does; a rewrite with the same length within the file system's time
/// resolution goes unnoticed, which [`FileContents`] would notice.
///
/// A directory is keyed by the stamps of every entry below it, sorted, with relative paths. A
/// missing path is a key of its own; an unreadable path a key no other call has.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("log.txt");
/// let missing = fleche::FileStamp::new(&path);
/// assert!(!missing.exists());
/// std::fs::write(&path, "x")?;
/// let written = fleche::FileStamp::new(&path);
/// assert_eq!(written.len(), Some(1));
/// assert_ne!(fleche::digest(&missing), fleche::digest(&written));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    path: PathBuf,
    state: State,
}

/// What a path held when it was hashed or stamped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// A regular file (symbolic links followed): its length, and its content digest or stamp.
    File { len: u64, mark: Mark },
    /// A directory: the digest of its tree, and how many entries it holds.
    Dir { tree: Digest, entries: u64 },
    /// Nothing at the path.
    Missing,
    /// Could not be read: a key of its own, never repeated.
    Unreadable { nonce: Digest, reason: String },
}

/// A file's identity: its content digest, or its modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Content(Digest),
    /// Nanoseconds since the Unix epoch (negative before it).
    Modified(i128),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Content,
    Stamp,
}

/// The accessors [`FileContents`] and [`FileStamp`] share.
macro_rules! common_accessors {
    ($($ty:ident),*) => {$(
        impl $ty {
            /// The path, as given.
            #[must_use]
            pub fn path(&self) -> &Path {
                &self.path
            }

            /// Whether a file or directory was there.
            #[must_use]
            pub fn exists(&self) -> bool {
                matches!(self.state, State::File { .. } | State::Dir { .. })
            }

            /// A file's length in bytes (`None` for a directory, a missing or an unreadable
            /// path).
            #[must_use]
            pub fn len(&self) -> Option<u64> {
                self.state.len()
            }

            /// Whether the path was a file of zero bytes.
            #[must_use]
            pub fn is_empty(&self) -> bool {
                self.len() == Some(0)
            }
        }
    )*};
}

common_accessors!(FileContents, FileStamp);

impl FileContents {
    /// Hashes what `path` holds now.
    pub fn new(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref().to_path_buf();
        let state = inspect(&path, Method::Content);
        Self { path, state }
    }

    /// The blake3 digest of the file's content, or of the directory's tree; `None` when missing
    /// or unreadable.
    #[must_use]
    pub fn digest(&self) -> Option<Digest> {
        match &self.state {
            State::File {
                mark: Mark::Content(d),
                ..
            } => Some(*d),
            State::Dir { tree, .. } => Some(*tree),
            _ => None,
        }
    }
}

impl FileStamp {
    /// Stamps what `path` holds now.
    pub fn new(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref().to_path_buf();
        let state = inspect(&path, Method::Stamp);
        Self { path, state }
    }

    /// The stamp of the regular file at `path` from its `metadata`, already read (symbolic links
    /// followed), without reading it again. Metadata of anything but a regular file stamps `path`
    /// afresh, as [`FileStamp::new`] does.
    pub fn from_metadata(path: impl AsRef<Path>, metadata: &Metadata) -> Self {
        let path = path.as_ref().to_path_buf();
        let state = if metadata.is_file() {
            file_mark(&path, metadata, Method::Stamp)
                .map(|(len, mark)| State::File { len, mark })
                .unwrap_or_else(|reason| unreadable(&path, reason))
        } else {
            inspect(&path, Method::Stamp)
        };
        Self { path, state }
    }

    /// A file's modification time.
    #[must_use]
    pub fn modified(&self) -> Option<SystemTime> {
        match self.state {
            State::File {
                mark: Mark::Modified(ns),
                ..
            } => Some(time_of(ns)),
            _ => None,
        }
    }
}

impl State {
    fn len(&self) -> Option<u64> {
        match self {
            State::File { len, .. } => Some(*len),
            _ => None,
        }
    }

    /// `docs/format.md`, "File keys": the variant `kind` and its fields.
    fn key(&self, h: &mut KeyHasher) {
        match self {
            State::File { len, mark } => {
                h.write_variant_header("file", 2);
                h.write_str("len");
                len.key(h);
                match mark {
                    Mark::Content(d) => {
                        h.write_str("blake3");
                        d.key(h);
                    }
                    Mark::Modified(ns) => {
                        h.write_str("mtime_ns");
                        ns.key(h);
                    }
                }
            }
            State::Dir { tree, .. } => {
                h.write_variant_header("dir", 1);
                h.write_str("tree");
                tree.key(h);
            }
            State::Missing => h.write_variant_header("missing", 0),
            State::Unreadable { nonce, .. } => {
                h.write_variant_header("unreadable", 1);
                h.write_str("nonce");
                nonce.key(h);
            }
        }
    }

    fn to_value(&self, path: &Path) -> Value {
        let mut fields = vec![("path".to_owned(), path.to_value())];
        let mut put = |name: &str, v: Value| fields.push((name.to_owned(), v));
        match self {
            State::File { len, mark } => {
                put("kind", Value::Str("file".into()));
                put("len", Value::UInt(u128::from(*len)));
                match mark {
                    Mark::Content(d) => put("blake3", Value::Digest(*d)),
                    Mark::Modified(ns) => {
                        put("mtime", Value::Float(*ns as f64 / 1e9));
                        put("mtime_ns", Value::Int(*ns));
                    }
                }
            }
            State::Dir { tree, entries } => {
                put("kind", Value::Str("dir".into()));
                put("entries", Value::UInt(u128::from(*entries)));
                put("tree", Value::Digest(*tree));
            }
            State::Missing => put("kind", Value::Str("missing".into())),
            State::Unreadable { reason, .. } => {
                put("kind", Value::Str("unreadable".into()));
                put("error", Value::Str(reason.clone()));
            }
        }
        Value::Struct(fields)
    }
}

impl Key for FileContents {
    fn key(&self, h: &mut KeyHasher) {
        h.write_variant_header("fleche.FileContents", 2);
        h.write_str("path");
        self.path.key(h);
        h.write_str("content");
        self.state.key(h);
    }
    fn to_value(&self) -> Value {
        self.state.to_value(&self.path)
    }
}

impl Key for FileStamp {
    fn key(&self, h: &mut KeyHasher) {
        h.write_variant_header("fleche.FileStamp", 2);
        h.write_str("path");
        self.path.key(h);
        h.write_str("stamp");
        self.state.key(h);
    }
    fn to_value(&self) -> Value {
        self.state.to_value(&self.path)
    }
}

/// What `path` holds, by `method`.
fn inspect(path: &Path, method: Method) -> State {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // A dangling symbolic link is missing too, but say why it is.
            return match std::fs::symlink_metadata(path) {
                Ok(_) => unreadable(path, "a symbolic link to nothing".into()),
                Err(_) => State::Missing,
            };
        }
        Err(e) => return unreadable(path, e.to_string()),
    };
    let result = if meta.is_dir() {
        tree(path, method).map(|(tree, entries)| State::Dir { tree, entries })
    } else if meta.is_file() {
        file_mark(path, &meta, method).map(|(len, mark)| State::File { len, mark })
    } else {
        Err("not a regular file or a directory".to_owned())
    };
    result.unwrap_or_else(|reason| unreadable(path, reason))
}

/// A regular file's length and mark; an error when it cannot be read or changed meanwhile.
fn file_mark(path: &Path, before: &Metadata, method: Method) -> Result<(u64, Mark), String> {
    let len = before.len();
    match method {
        Method::Stamp => Ok((len, Mark::Modified(modified_ns(before)?))),
        Method::Content => {
            let digest = content_digest(path).map_err(|e| e.to_string())?;
            // A file rewritten while it was read may have been hashed half old, half new.
            let after = std::fs::metadata(path).map_err(|e| e.to_string())?;
            if after.len() != len || modified_ns(&after)? != modified_ns(before)? {
                return Err("the file changed while it was hashed".into());
            }
            Ok((len, Mark::Content(digest)))
        }
    }
}

/// The blake3 digest of a regular file's bytes: memory-mapped, on several threads when it is
/// large (small files are read). On Linux a file truncated while it is mapped is an error, not
/// a SIGBUS (`mapped`); a path that is no regular file (a FIFO swapped in) is an error, without
/// blocking on it.
pub(crate) fn content_digest(path: &Path) -> io::Result<Digest> {
    let file = open_regular(path)?;
    let len = file.metadata()?.len();
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        crate::mapped::digest(&file, len)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = len;
        let mut hasher = blake3::Hasher::new();
        hasher.update_mmap_rayon(path)?;
        Ok(Digest::from_bytes(*hasher.finalize().as_bytes()))
    }
}

/// `path` opened for reading when it is a regular file. On Unix it is opened without blocking
/// (a FIFO would wait for a writer), then checked.
fn open_regular(path: &Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
}

fn modified_ns(meta: &Metadata) -> Result<i128, String> {
    let t = meta.modified().map_err(|e| e.to_string())?;
    Ok(match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    })
}

fn time_of(ns: i128) -> SystemTime {
    let magnitude =
        std::time::Duration::from_nanos(ns.unsigned_abs().min(u128::from(u64::MAX)) as u64);
    if ns >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// The tree digest of directory `root` (`docs/format.md`, "File keys") and its entry count.
fn tree(root: &Path, method: Method) -> Result<(Digest, u64), String> {
    let mut h = blake3::Hasher::new();
    h.update(b"fleche.tree.1\0");
    h.update(match method {
        Method::Content => b"content\0",
        Method::Stamp => b"stamp\0\0\0",
    });
    let mut entries = 0u64;
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by(|a, b| a.file_name().cmp(b.file_name()))
        .min_depth(1);
    for entry in walk {
        let entry = entry.map_err(|e| e.to_string())?;
        let rel = entry.path().strip_prefix(root).map_err(|e| e.to_string())?;
        let mut name = Vec::new();
        for (i, part) in rel.components().enumerate() {
            if i > 0 {
                name.push(b'/');
            }
            name.extend_from_slice(part.as_os_str().as_encoded_bytes());
        }
        let kind = entry.file_type();
        let tag: &[u8; 1] = if kind.is_dir() {
            b"d"
        } else if kind.is_file() {
            b"f"
        } else if kind.is_symlink() {
            b"l"
        } else {
            b"o"
        };
        h.update(tag);
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(&name);
        if kind.is_file() {
            let meta = entry
                .metadata()
                .map_err(|e| format!("{}: {e}", rel.display()))?;
            let (len, mark) = file_mark(entry.path(), &meta, method)
                .map_err(|e| format!("{}: {e}", rel.display()))?;
            h.update(&len.to_le_bytes());
            match mark {
                Mark::Content(d) => h.update(d.as_bytes()),
                Mark::Modified(ns) => h.update(&ns.to_le_bytes()),
            };
        } else if kind.is_symlink() {
            let target =
                std::fs::read_link(entry.path()).map_err(|e| format!("{}: {e}", rel.display()))?;
            let target = target.as_os_str().as_encoded_bytes();
            h.update(&(target.len() as u64).to_le_bytes());
            h.update(target);
        }
        entries += 1;
    }
    Ok((Digest::from_bytes(*h.finalize().as_bytes()), entries))
}

/// A key never made before: for inputs that could not be read.
fn unreadable(path: &Path, reason: String) -> State {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    tracing::warn!(path = %path.display(), reason = %reason,
        "file input unreadable: the call runs and is never a hit");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = blake3::Hasher::new();
    h.update(b"fleche.unreadable\0");
    h.update(&now.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.update(path.as_os_str().as_encoded_bytes());
    State::Unreadable {
        nonce: Digest::from_bytes(*h.finalize().as_bytes()),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest;

    #[test]
    fn content_keys_follow_content_not_time() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("a");
        std::fs::write(&p, b"one")?;
        let a = FileContents::new(&p);
        std::fs::write(&p, b"one")?;
        assert_eq!(digest(&a), digest(&FileContents::new(&p)));
        std::fs::write(&p, b"two")?;
        assert_ne!(digest(&a), digest(&FileContents::new(&p)));
        assert_eq!(
            a.digest(),
            Some(Digest::from_bytes(*blake3::hash(b"one").as_bytes()))
        );
        Ok(())
    }

    #[test]
    fn missing_is_a_key_of_its_own_and_unreadable_never_repeats() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("nothing");
        let a = FileContents::new(&p);
        assert!(!a.exists());
        assert_eq!(digest(&a), digest(&FileContents::new(&p)));
        std::fs::write(&p, b"")?;
        assert_ne!(digest(&a), digest(&FileContents::new(&p)));
        #[cfg(unix)]
        {
            let link = dir.path().join("dangling");
            std::os::unix::fs::symlink(dir.path().join("gone"), &link)?;
            let u = FileContents::new(&link);
            assert!(!u.exists());
            assert_ne!(digest(&u), digest(&FileContents::new(&link)));
        }
        Ok(())
    }

    #[test]
    fn trees_hash_relative_sorted_entries() -> io::Result<()> {
        let a = tempfile::tempdir()?;
        let b = tempfile::tempdir()?;
        for root in [a.path(), b.path()] {
            std::fs::create_dir_all(root.join("sub"))?;
            std::fs::write(root.join("sub/x"), b"x")?;
            std::fs::write(root.join("y"), b"y")?;
        }
        let (ta, tb) = (FileContents::new(a.path()), FileContents::new(b.path()));
        assert_eq!(ta.digest(), tb.digest());
        std::fs::write(b.path().join("sub/x"), b"X")?;
        assert_ne!(ta.digest(), FileContents::new(b.path()).digest());
        std::fs::write(b.path().join("sub/x"), b"x")?;
        std::fs::rename(b.path().join("y"), b.path().join("z"))?;
        assert_ne!(ta.digest(), FileContents::new(b.path()).digest());
        Ok(())
    }

    #[test]
    fn stamps_see_length_and_time() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("s");
        std::fs::write(&p, b"abc")?;
        let s = FileStamp::new(&p);
        assert_eq!(s.len(), Some(3));
        let f = std::fs::File::options().write(true).open(&p)?;
        f.set_modified(SystemTime::now() + std::time::Duration::from_secs(5))?;
        assert_ne!(digest(&s), digest(&FileStamp::new(&p)));
        assert!(s.modified().is_some());
        Ok(())
    }
}
