//! The HDF5 backend (S06): a stored `Vec<f64>` is a float dataset h5py reads; keys sharing a
//! prefix share a file; a corrupt file is a miss.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use fleche::{Cache, memoize, with_cache};

use crate::support::{Counter, capture_warnings};

static RUNS: Counter = Counter::new();

#[memoize(name = "hdf5.wave")]
fn wave(n: u32) -> Vec<f64> {
    RUNS.hit();
    (0..n).map(|i| f64::from(i) * 0.25).collect()
}

/// A Python with h5py: the system's, or one installed with pip into a virtual environment under
/// the build directory (once).
///
/// Tests run in parallel threads (and, under nextest, in parallel processes), so the environment
/// is made once per process behind a `OnceLock`, under an exclusive file lock across processes,
/// in a staging directory that is renamed into place only once h5py imports: a half-made
/// environment is never seen, and a crashed attempt is retried.
fn python_with_h5py() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(find_or_install_h5py)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn has_h5py(py: &Path) -> bool {
    Command::new(py)
        .args(["-c", "import h5py"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn find_or_install_h5py() -> Result<PathBuf, String> {
    let system = PathBuf::from("python3");
    if has_h5py(&system) {
        return Ok(system);
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let venv = tmp.join("h5py-venv");
    let py = venv.join("bin").join("python");
    let lock_path = tmp.join("h5py-venv.lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    if has_h5py(&py) {
        return Ok(py);
    }
    let staging = tmp.join(format!("h5py-venv.{}", std::process::id()));
    for stale in [&staging, &venv] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .map_err(|e| format!("cannot remove {}: {e}", stale.display()))?;
        }
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&staging)
        .status();
    if !made.is_ok_and(|s| s.success()) {
        return Err(format!(
            "cannot create a virtual environment in {}",
            staging.display()
        ));
    }
    let pip = Command::new(staging.join("bin").join("python"))
        .args(["-m", "pip", "install", "--quiet", "h5py"])
        .status();
    if !pip.is_ok_and(|s| s.success()) {
        return Err("cannot install h5py with pip".to_owned());
    }
    std::fs::rename(&staging, &venv).map_err(|e| {
        format!(
            "cannot move {} to {}: {e}",
            staging.display(),
            venv.display()
        )
    })?;
    if has_h5py(&py) {
        Ok(py)
    } else {
        Err(format!("{} cannot import h5py", py.display()))
    }
}

#[test]
fn s06_h5py_reads_a_stored_vec_f64() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = Cache::hdf5(dir.path(), 2).unwrap_or_else(|e| panic!("{e}"));
    let stored = with_cache(&cache, || wave(5));
    let record = cache
        .records()
        .unwrap_or_default()
        .pop()
        .unwrap_or_else(|| panic!("no record"));
    let hex = record.result.to_hex();
    let file = dir.path().join("values").join(format!("{}.h5", &hex[..2]));
    let script = format!(
        "import h5py\nf = h5py.File({file:?}, 'r')\nd = f['{hex}/data']\n\
         print(d.dtype, d.shape, ','.join(repr(float(x)) for x in d[()]))\n\
         print(f['{hex}'].attrs['fleche'])\n",
        file = file.display().to_string(),
    );
    let out = Command::new(python_with_h5py())
        .args(["-c", &script])
        .output()
        .unwrap_or_else(|e| panic!("cannot run python: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<String> = stored.iter().map(|x| format!("{x:?}")).collect();
    assert_eq!(
        stdout.lines().next(),
        Some(format!("float64 (5,) {}", expected.join(",")).as_str()),
        "{stdout}"
    );
    assert_eq!(stdout.lines().nth(1), Some("block-f64"));
}

#[test]
fn s06_prefixes_share_files_and_corrupt_files_are_misses() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = Cache::hdf5(dir.path(), 1).unwrap_or_else(|e| panic!("{e}"));
    let ((), stored) = capture_warnings(|| {
        with_cache(&cache, || {
            for n in 0..40 {
                wave(n);
            }
        })
    });
    assert!(stored.is_empty(), "every call is stored: {stored}");
    let files = std::fs::read_dir(dir.path().join("calls"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "h5"))
                .count()
        })
        .unwrap_or(0);
    assert!(files <= 16, "40 calls in at most 16 files: {files}");
    assert_eq!(cache.records().map(|r| r.len()).unwrap_or(0), 40);
    for f in std::fs::read_dir(dir.path().join("calls"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if f.path().extension().is_some_and(|x| x == "h5") {
            std::fs::write(f.path(), b"not hdf5").unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let before = RUNS.get();
    let (r, warnings) = capture_warnings(|| with_cache(&cache, || wave(3)));
    assert_eq!(r.len(), 3);
    assert!(RUNS.get() > before, "a corrupt file is a miss");
    assert!(warnings.contains("corrupt entry"), "{warnings}");
}

/// A result holding a number that appears once in its HDF5 file, so a test can find and change
/// it in the file's bytes.
fn marked_values(n: u32) -> Vec<f64> {
    (0..n).map(|i| 1234.5678 + f64::from(i)).collect()
}

static MARKED_RUNS: Counter = Counter::new();

#[memoize(name = "hdf5.marked")]
fn marked(n: u32) -> Vec<f64> {
    MARKED_RUNS.hit();
    marked_values(n)
}

static HEALED_RUNS: Counter = Counter::new();

#[memoize(name = "hdf5.healed")]
fn healed(n: u32) -> Vec<f64> {
    HEALED_RUNS.hit();
    marked_values(n)
}

static BOUNDED_RUNS: Counter = Counter::new();

#[memoize(name = "hdf5.bounded")]
fn bounded(n: u32) -> Vec<f64> {
    BOUNDED_RUNS.hit();
    marked_values(n)
}

fn h5_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "h5"))
        .collect()
}

#[test]
fn hdf5_a_number_changed_in_a_dataset_is_a_miss_not_a_wrong_result() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = Cache::hdf5(dir.path(), 2).unwrap_or_else(|e| panic!("{e}"));
    let stored = with_cache(&cache, || marked(3));
    let needle = 1234.5678f64.to_le_bytes();
    let mut changed = 0;
    for file in h5_files(&dir.path().join("values")) {
        let mut bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{e}"));
        if let Some(at) = bytes.windows(8).position(|w| w == needle) {
            bytes[at..at + 8].copy_from_slice(&(-1.0f64).to_le_bytes());
            std::fs::write(&file, &bytes).unwrap_or_else(|e| panic!("{e}"));
            changed += 1;
        }
    }
    assert_eq!(changed, 1, "the number is stored once, as a float64");
    let before = MARKED_RUNS.get();
    let (again, warnings) = capture_warnings(|| with_cache(&cache, || marked(3)));
    assert_eq!(again, stored, "never the changed value");
    assert_eq!(MARKED_RUNS.get(), before + 1, "a miss");
    assert!(warnings.contains("checksum mismatch"), "{warnings}");
    // The next store repaired it.
    let (third, warnings) = capture_warnings(|| with_cache(&cache, || marked(3)));
    assert_eq!(third, stored);
    assert_eq!(MARKED_RUNS.get(), before + 1, "a hit");
    assert!(warnings.is_empty(), "{warnings}");
}

#[test]
fn hdf5_an_unparseable_file_is_moved_aside_and_the_cache_heals() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = Cache::hdf5(dir.path(), 1).unwrap_or_else(|e| panic!("{e}"));
    with_cache(&cache, || healed(5));
    for part in ["values", "calls"] {
        for file in h5_files(&dir.path().join(part)) {
            std::fs::write(&file, b"not hdf5").unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let before = HEALED_RUNS.get();
    let (_, warnings) = capture_warnings(|| with_cache(&cache, || healed(5)));
    assert_eq!(HEALED_RUNS.get(), before + 1, "a miss");
    assert!(warnings.contains("moved aside"), "{warnings}");
    let (_, warnings) = capture_warnings(|| with_cache(&cache, || healed(5)));
    assert_eq!(HEALED_RUNS.get(), before + 1, "stored again: a hit");
    assert!(warnings.is_empty(), "{warnings}");
    for part in ["values", "calls"] {
        let aside: Vec<_> = std::fs::read_dir(dir.path().join(part))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".h5.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{part}: the damaged file is kept");
        let kept = std::fs::read(aside[0].path()).unwrap_or_default();
        assert_eq!(kept, b"not hdf5");
    }
    assert_eq!(cache.records().map(|r| r.len()).unwrap_or(0), 1);
}

#[test]
fn hdf5_max_entry_size_is_configured() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let toml = format!(
        "template = \"hdf5\"\nroot = {:?}\nmax_entry_size = \"64 KiB\"\n",
        dir.path().display().to_string()
    );
    let cache = Cache::from_toml_str(&toml).unwrap_or_else(|e| panic!("{e}"));
    let before = BOUNDED_RUNS.get();
    let (_, warnings) = capture_warnings(|| with_cache(&cache, || bounded(10_000)));
    assert!(warnings.contains("max_entry_size"), "{warnings}");
    with_cache(&cache, || bounded(10_000));
    assert_eq!(
        BOUNDED_RUNS.get(),
        before + 2,
        "90 KB of floats is not stored"
    );
    with_cache(&cache, || (bounded(10), bounded(10)));
    assert_eq!(BOUNDED_RUNS.get(), before + 3, "a small result is");
}

#[memoize(name = "hdf5.counts")]
fn counts(n: i32) -> Vec<i32> {
    (0..n).map(|i| i - 2).collect()
}

#[memoize(name = "hdf5.mask")]
fn mask(n: u32) -> Vec<bool> {
    (0..n).map(|i| i.is_multiple_of(3)).collect()
}

#[memoize(name = "hdf5.image")]
fn image(w: usize) -> Vec<Vec<f32>> {
    (0..3)
        .map(|r| (0..w).map(|c| (r * w + c) as f32 * 0.5).collect())
        .collect()
}

/// What h5py says of the dataset of the result of the call stored under `key`: dtype, shape,
/// values, and the group's `fleche` attribute.
fn h5py_view(root: &Path, cache: &Cache, key: &fleche::Digest) -> Vec<String> {
    let record = cache
        .record(key)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no record"));
    let hex = record.result.to_hex();
    let file = root.join("values").join(format!("{}.h5", &hex[..2]));
    let script = format!(
        "import h5py\nf = h5py.File({file:?}, 'r')\nd = f['{hex}/data']\n\
         print(d.dtype, d.shape)\nprint(d[()].tolist())\nprint(f['{hex}'].attrs['fleche'])\n",
        file = file.display().to_string(),
    );
    let out = Command::new(python_with_h5py())
        .args(["-c", &script])
        .output()
        .unwrap_or_else(|e| panic!("cannot run python: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn s06_h5py_reads_integer_bool_and_two_dimensional_results_as_numpy_arrays() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = Cache::hdf5(dir.path(), 2).unwrap_or_else(|e| panic!("{e}"));
    let (c, m, i) = with_cache(&cache, || (counts(4), mask(5), image(2)));
    assert_eq!(c, vec![-2, -1, 0, 1]);
    // And they hit, read back from the datasets.
    let again = with_cache(&cache, || (counts(4), mask(5), image(2)));
    assert_eq!(again, (c, m, i));
    let keys = with_cache(&cache, || {
        (counts::digest(4), mask::digest(5), image::digest(2))
    });
    assert_eq!(
        h5py_view(dir.path(), &cache, &keys.0),
        ["int32 (4,)", "[-2, -1, 0, 1]", "block-i32"]
    );
    assert_eq!(
        h5py_view(dir.path(), &cache, &keys.1),
        [
            "bool (5,)",
            "[True, False, False, True, False]",
            "block-bool"
        ]
    );
    assert_eq!(
        h5py_view(dir.path(), &cache, &keys.2),
        [
            "float32 (3, 2)",
            "[[0.0, 0.5], [1.0, 1.5], [2.0, 2.5]]",
            "block-f32-2d"
        ]
    );
}
