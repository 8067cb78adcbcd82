//! Make-like caching in memoized functions: file inputs keyed by content or stamp, and file
//! outputs (`Artifact`) restored on a hit, from memory and from disk.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use fleche::storage::FileOptions;
use fleche::{Artifact, Cache, FileContents, FileStamp, Value, memoize, with_cache};
use serde::{Deserialize, Serialize};

use crate::support::{Counter, capture_warnings};

static WORDS: Counter = Counter::new();

#[memoize(name = "make.words")]
fn words(input: FileContents) -> usize {
    WORDS.hit();
    fs::read_to_string(input.path()).map_or(0, |s| s.split_whitespace().count())
}

#[memoize(name = "make.bytes")]
fn byte_len(input: FileContents) -> u64 {
    input.len().unwrap_or(0)
}

static STAMPED: Counter = Counter::new();

#[memoize(name = "make.stamped")]
fn stamped(input: FileStamp) -> u64 {
    STAMPED.hit();
    input.len().unwrap_or(0)
}

fn tmp() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    }
}

fn write(p: &Path, bytes: &[u8]) {
    if let Err(e) = fs::write(p, bytes) {
        panic!("write {}: {e}", p.display());
    }
}

fn read(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn msgpack(dir: &Path) -> Cache {
    Cache::msgpack(dir, FileOptions::new()).unwrap_or_else(|e| panic!("open: {e}"))
}

#[test]
fn file_contents_rerun_when_the_content_changes_only() {
    let dir = tmp();
    let p = dir.path().join("text");
    write(&p, b"a b c");
    let cache = Cache::memory();
    with_cache(&cache, || {
        let before = WORDS.get();
        assert_eq!(words(FileContents::new(&p)), 3);
        assert_eq!(words(FileContents::new(&p)), 3);
        assert_eq!(WORDS.get(), before + 1);
        // Rewritten with the same bytes, a new mtime: still a hit.
        write(&p, b"a b c");
        assert_eq!(words(FileContents::new(&p)), 3);
        assert_eq!(WORDS.get(), before + 1);
        write(&p, b"a b c d");
        assert_eq!(words(FileContents::new(&p)), 4);
        assert_eq!(WORDS.get(), before + 2);
        // Missing: a key of its own, cached like any other.
        let gone = dir.path().join("gone");
        assert_eq!(words(FileContents::new(&gone)), 0);
        assert_eq!(words(FileContents::new(&gone)), 0);
        assert_eq!(WORDS.get(), before + 3);
    });
}

#[test]
fn file_contents_records_path_and_digest() {
    let dir = tmp();
    let p = dir.path().join("text");
    write(&p, b"x y");
    let cache = Cache::memory();
    with_cache(&cache, || byte_len(FileContents::new(&p)));
    let records = cache.records().unwrap_or_else(|e| panic!("{e}"));
    let record = records
        .iter()
        .find(|r| r.function == "make.bytes")
        .unwrap_or_else(|| panic!("no record"));
    let Some(Value::Struct(fields)) = record.argument("input") else {
        panic!("input not recorded as a struct: {:?}", record.arguments);
    };
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        get("path"),
        Some(Value::Str(p.to_string_lossy().into_owned()))
    );
    let expected = fleche::Digest::from_bytes(*blake3::hash(b"x y").as_bytes());
    assert_eq!(get("blake3"), Some(Value::Digest(expected)));
    assert_eq!(get("kind"), Some(Value::Str("file".into())));
}

#[test]
fn file_stamps_rerun_on_a_new_mtime() {
    let dir = tmp();
    let p = dir.path().join("s");
    write(&p, b"12345");
    let cache = Cache::memory();
    with_cache(&cache, || {
        let before = STAMPED.get();
        assert_eq!(stamped(FileStamp::new(&p)), 5);
        assert_eq!(stamped(FileStamp::new(&p)), 5);
        assert_eq!(STAMPED.get(), before + 1);
        let f = fs::File::options()
            .write(true)
            .open(&p)
            .unwrap_or_else(|e| panic!("{e}"));
        f.set_modified(SystemTime::now() + Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stamped(FileStamp::new(&p)), 5);
        assert_eq!(STAMPED.get(), before + 2, "a touch is a change for a stamp");
    });
}

/// A memoized renderer writing one artifact, and its run counter: one per test.
macro_rules! renderer {
    ($name:ident, $runs:ident) => {
        static $runs: Counter = Counter::new();

        #[memoize]
        fn $name(text: String, out: PathBuf) -> Result<Artifact, fleche::Error> {
            $runs.hit();
            let mut bytes = text.into_bytes();
            bytes.extend_from_slice(&[0, 0xff, 0xfe]);
            Artifact::write(&out, bytes)
        }
    };
}

renderer!(render_memory, RENDERS_MEMORY);
renderer!(render_disk, RENDERS_DISK);
renderer!(render_load, RENDERS_LOAD);

/// A result with two files.
#[derive(Clone, Serialize, Deserialize, PartialEq, Debug)]
struct Build {
    binary: Artifact,
    report: Artifact,
    warnings: u32,
}

static BUILDS: Counter = Counter::new();

#[memoize(name = "make.build")]
fn build(dir: PathBuf) -> Result<Build, fleche::Error> {
    BUILDS.hit();
    Ok(Build {
        binary: Artifact::write(dir.join("bin/app"), vec![0x7f, b'E', b'L', b'F'])?,
        report: Artifact::write(dir.join("report.txt"), "ok\n")?,
        warnings: 2,
    })
}

fn artifacts_restored_in(
    cache: &Cache,
    render: fn(String, PathBuf) -> Result<Artifact, fleche::Error>,
    runs: &Counter,
) {
    let dir = tmp();
    let out = dir.path().join("deep/page.bin");
    with_cache(cache, || {
        let first = render("hi".into(), out.clone()).unwrap_or_else(|e| panic!("{e}"));
        let made = read(&out);
        assert_eq!(first.bytes(), made.as_slice());
        // Missing: written back.
        fs::remove_dir_all(dir.path().join("deep")).unwrap_or_else(|e| panic!("{e}"));
        let again = render("hi".into(), out.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read(&out), made);
        assert_eq!(again, first);
        // Differs (same length): written back.
        write(&out, &vec![b'?'; made.len()]);
        render("hi".into(), out.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read(&out), made);
        assert_eq!(runs.get(), 1, "restoring is a hit");
    });
}

#[test]
fn an_artifact_is_written_back_on_a_memory_hit() {
    artifacts_restored_in(&Cache::memory(), render_memory, &RENDERS_MEMORY);
}

#[test]
fn an_artifact_is_written_back_on_a_disk_hit() {
    let dir = tmp();
    artifacts_restored_in(&msgpack(dir.path()), render_disk, &RENDERS_DISK);
}

#[test]
fn a_struct_of_artifacts_is_restored_from_another_process_cache() {
    let dir = tmp();
    let cache_dir = tmp();
    let first = with_cache(msgpack(cache_dir.path()), || {
        build(dir.path().to_path_buf())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    fs::remove_file(dir.path().join("bin/app")).unwrap_or_else(|e| panic!("{e}"));
    write(&dir.path().join("report.txt"), b"tampered by hand");
    // A new handle on the same directory: what another process sees.
    let second = with_cache(msgpack(cache_dir.path()), || {
        build(dir.path().to_path_buf())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(second, first);
    assert_eq!(read(&dir.path().join("bin/app")), b"\x7fELF");
    assert_eq!(read(&dir.path().join("report.txt")), b"ok\n");
    assert_eq!(BUILDS.get(), 1);
}

static BLOCKED: Counter = Counter::new();

#[memoize(name = "make.blocked")]
fn blocked(out: PathBuf) -> Result<Artifact, fleche::Error> {
    BLOCKED.hit();
    Artifact::write(&out, "data")
}

#[test]
fn an_artifact_that_cannot_be_restored_makes_the_hit_a_miss() {
    let dir = tmp();
    let out = dir.path().join("sub/file");
    let cache = Cache::memory();
    with_cache(&cache, || {
        assert!(blocked(out.clone()).is_ok());
        // The directory becomes a file: the artifact cannot be written back.
        fs::remove_dir_all(dir.path().join("sub")).unwrap_or_else(|e| panic!("{e}"));
        write(&dir.path().join("sub"), b"in the way");
        let (result, warnings) = capture_warnings(|| blocked(out.clone()));
        assert!(result.is_err(), "the body ran and failed as it would have");
        assert_eq!(BLOCKED.get(), 2);
        assert!(warnings.contains("cannot restore"), "{warnings:?}");
    });
}

#[test]
fn loading_does_not_write_files_but_restore_does() {
    let dir = tmp();
    let out = dir.path().join("x");
    let cache = Cache::memory();
    with_cache(&cache, || {
        render_load("load".into(), out.clone()).unwrap_or_else(|e| panic!("{e}"));
        fs::remove_file(&out).unwrap_or_else(|e| panic!("{e}"));
        let loaded = render_load::load("load".into(), out.clone());
        assert!(!out.exists(), "load restores nothing by itself");
        let Some(artifact) = loaded else {
            panic!("not stored: {loaded:?}");
        };
        assert!(artifact.restore().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(read(&out), artifact.bytes());
    });
}

/// `docs/format.md`, "File keys", followed byte by byte.
#[test]
fn file_keys_follow_the_documented_encoding() {
    use fleche::{Digest, Key, KeyHasher};
    let dir = tmp();
    let p = dir.path().join("f");
    write(&p, b"abc");
    let content = Digest::from_bytes(*blake3::hash(b"abc").as_bytes());
    let mut h = KeyHasher::new();
    h.write_variant_header("fleche.FileContents", 2);
    h.write_str("path");
    p.key(&mut h);
    h.write_str("content");
    h.write_variant_header("file", 2);
    h.write_str("len");
    3u64.key(&mut h);
    h.write_str("blake3");
    content.key(&mut h);
    assert_eq!(fleche::digest(&FileContents::new(&p)), h.finalize());

    let mtime = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123);
    fs::File::options()
        .write(true)
        .open(&p)
        .and_then(|f| f.set_modified(mtime))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut h = KeyHasher::new();
    h.write_variant_header("fleche.FileStamp", 2);
    h.write_str("path");
    p.key(&mut h);
    h.write_str("stamp");
    h.write_variant_header("file", 2);
    h.write_str("len");
    3u64.key(&mut h);
    h.write_str("mtime_ns");
    1_700_000_000_000_000_123i128.key(&mut h);
    assert_eq!(fleche::digest(&FileStamp::new(&p)), h.finalize());
}

#[test]
fn tree_digests_follow_the_documented_encoding() {
    let dir = tmp();
    fs::create_dir(dir.path().join("sub")).unwrap_or_else(|e| panic!("{e}"));
    write(&dir.path().join("sub/b"), b"yz");
    write(&dir.path().join("a"), b"x");
    let mut h = blake3::Hasher::new();
    h.update(b"fleche.tree.1\0content\0");
    h.update(b"f");
    h.update(&1u64.to_le_bytes());
    h.update(b"a");
    h.update(&1u64.to_le_bytes());
    h.update(blake3::hash(b"x").as_bytes());
    h.update(b"d");
    h.update(&3u64.to_le_bytes());
    h.update(b"sub");
    h.update(b"f");
    h.update(&5u64.to_le_bytes());
    h.update(b"sub/b");
    h.update(&2u64.to_le_bytes());
    h.update(blake3::hash(b"yz").as_bytes());
    let expected = fleche::Digest::from_bytes(*h.finalize().as_bytes());
    assert_eq!(FileContents::new(dir.path()).digest(), Some(expected));
}

/// Golden vectors: these keys must not change within key encoding version 1.
#[test]
fn file_key_golden_vectors() {
    let missing = FileContents::new("no/such/input.csv");
    let stamp = FileStamp::new("no/such/input.csv");
    let got = [
        fleche::digest(&missing).to_string(),
        fleche::digest(&stamp).to_string(),
    ];
    assert_eq!(got, FILE_GOLDEN, "golden file keys changed");
}

const FILE_GOLDEN: [&str; 2] = [
    "806cda6cea8c32bd232a0c1f164103813d9f72b24ae90d21ede6651dca96a155",
    "44c864a5bb7be589cc926f78d5b653aba8b7437b52c0e2bb2403a43622dd31eb",
];
