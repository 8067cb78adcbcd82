//! Large numeric results: a 1M-element `Vec<f64>` of varied values (8 MB), hit and stored on
//! every backend, next to its physical floors measured in the same run: a warm `std::fs::read`
//! of an 8 MB file, a `std::fs::write` of one, and a plain `clone` of the vector. Integrity
//! checks are on in every row (the defaults). Also: decoding a block nested in a struct, per
//! element, and the small-int rows of the comparison with the Python reference
//! (`bash fleche/benches/python_peer.sh` prints the same rows for fleche 0.22.2 with numpy).
//!
//! Run with `cargo bench -p fleche --bench arrays`. Compare rows within a group: they run in
//! the same process, on the same disk, in the same run.

// A benchmark whose setup fails has nothing to measure: it stops.
#![allow(clippy::panic)]

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use divan::Bencher;
use divan::counter::ItemsCount;
use fleche::storage::{FileOptions, FileValues, SqlDatabase, SqlTarget};
use fleche::{Cache, memoize, with_cache};

fn main() {
    divan::main();
}

static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| match tempfile::tempdir() {
    Ok(d) => d,
    Err(e) => panic!("cannot create a temporary directory: {e}"),
});

fn dir(name: &str) -> PathBuf {
    DIR.path().join(name)
}

static NEXT: AtomicU64 = AtomicU64::new(1);

const LEN: usize = 1 << 20;

/// Varied values: no compressor or run-length trick can shortcut them.
fn data(i: u64) -> Vec<f64> {
    (0..LEN as u64)
        .map(|j| ((i + 1) as f64).mul_add(0.5, (j as f64).sqrt()))
        .collect()
}

/// The vector the stored rows return, built once: the rows measure caching, not building.
static ONE: LazyLock<Vec<f64>> = LazyLock::new(|| data(0));

#[memoize(name = "bench.arrays.series")]
fn series(i: u64) -> Vec<f64> {
    if i == 0 { ONE.clone() } else { data(i) }
}

/// A fresh result for every store, built before the clock starts.
static INPUTS: LazyLock<Vec<f64>> = LazyLock::new(|| data(1));

#[memoize(name = "bench.arrays.store")]
fn store(i: u64, #[ignore] v: Vec<f64>) -> Vec<f64> {
    let _ = i;
    v
}

fn open(what: &str) -> Cache {
    let err = |e| fleche::Error::Storage {
        cache: what.into(),
        source: e,
    };
    let made = match what {
        "memory" => Ok(Cache::memory()),
        "msgpack" => Cache::msgpack(dir("msgpack"), FileOptions::new()),
        "sql+msgpack" => SqlDatabase::open(&SqlTarget::File(dir("calls.db")))
            .map_err(err)
            .and_then(|db| {
                let values = FileValues::open(dir("values"), FileOptions::new()).map_err(err)?;
                Ok(Cache::from_storages("sql+msgpack", values, db.calls()))
            }),
        "sqlite" => Cache::sqlite(dir("sqlite.db")),
        "hdf5" => Cache::hdf5(dir("hdf5"), 2),
        other => panic!("unknown backend {other}"),
    };
    made.unwrap_or_else(|e| panic!("cannot open {what}: {e}"))
}

/// Flushes every dirty page to disk, so a row that writes does not pay for the writeback of
/// what an earlier row wrote (the machine's disk is shared by every row).
fn settle_disk() {
    let _ = std::process::Command::new("sync").status();
}

/// An 8 MB file of the vector's bytes, for the raw floors.
fn raw_file() -> PathBuf {
    let path = dir("raw.bin");
    if !path.exists() {
        let bytes: Vec<u8> = ONE.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
    }
    path
}

#[divan::bench_group(name = "hit Vec<f64> of 1M", sample_count = 40, sample_size = 5)]
mod hit {
    use super::*;

    #[divan::bench(args = ["memory", "msgpack", "sql+msgpack", "sqlite", "hdf5"])]
    fn fleche(bencher: Bencher<'_, '_>, backend: &str) {
        let cache = open(backend);
        with_cache(&cache, || {
            series(0);
            assert!(series::contains(0), "{backend}: not stored");
            // Every row drops what it made inside the timed closure, as a caller that uses and
            // drops its result does: no row is charged for memory another row keeps alive.
            bencher.bench_local(|| series(black_box(0)).len());
        });
    }

    #[divan::bench]
    fn raw_warm_read_8mb(bencher: Bencher<'_, '_>) {
        let path = raw_file();
        bencher.bench_local(|| std::fs::read(black_box(&path)).map(|v| v.len()));
    }

    #[divan::bench]
    fn plain_clone(bencher: Bencher<'_, '_>) {
        let v = ONE.clone();
        bencher.bench_local(|| black_box(black_box(&v).clone()).len());
    }
}

#[divan::bench_group(name = "store Vec<f64> of 1M", sample_count = 20, sample_size = 1)]
mod miss {
    use super::*;

    #[divan::bench(args = ["memory", "msgpack", "sql+msgpack", "sqlite", "hdf5"])]
    fn fleche(bencher: Bencher<'_, '_>, backend: &str) {
        let cache = open(backend);
        settle_disk();
        with_cache(&cache, || {
            bencher
                .with_inputs(|| (NEXT.fetch_add(1, Ordering::Relaxed), INPUTS.clone()))
                .bench_local_values(|(i, v)| store(i, v));
        });
    }

    #[divan::bench]
    fn raw_write_8mb(bencher: Bencher<'_, '_>) {
        let target = dir("raw-writes");
        let _ = std::fs::create_dir_all(&target);
        let bytes: Vec<u8> = INPUTS.iter().flat_map(|x| x.to_le_bytes()).collect();
        settle_disk();
        bencher
            .with_inputs(|| NEXT.fetch_add(1, Ordering::Relaxed))
            .bench_local_values(|i| std::fs::write(target.join(i.to_string()), &bytes));
    }
}

#[memoize(name = "bench.arrays.small")]
fn small(x: u64) -> u64 {
    x * 2 + 1
}

/// The small rows of the side-by-side comparison with the Python reference
/// (`benches/python_peer.sh`): `f(x: int) -> int`, hit and miss.
#[divan::bench_group(name = "small int")]
mod small_int {
    use super::*;

    #[divan::bench(args = ["memory", "msgpack", "sql+msgpack"])]
    fn hit(bencher: Bencher<'_, '_>, backend: &str) {
        let cache = open(backend);
        with_cache(&cache, || {
            small(3);
            bencher.bench_local(|| small(black_box(3)));
        });
    }

    #[divan::bench(args = ["memory", "msgpack", "sql+msgpack"], max_time = 3)]
    fn miss(bencher: Bencher<'_, '_>, backend: &str) {
        let cache = open(backend);
        settle_disk();
        with_cache(&cache, || {
            bencher
                .with_inputs(|| NEXT.fetch_add(1, Ordering::Relaxed))
                .bench_local_values(small);
        });
    }
}

/// A result that holds its floats one level down: decoded element by element from the block.
#[derive(serde::Serialize, serde::Deserialize)]
struct Frame {
    name: String,
    values: Vec<f64>,
}

#[divan::bench_group(name = "decode 1M f64")]
mod decode {
    use super::*;

    #[divan::bench]
    fn top_level_vec(bencher: Bencher<'_, '_>) {
        let bytes = fleche::storage::encoding::encode_vec(&ONE).unwrap_or_default();
        bencher
            .counter(ItemsCount::new(LEN))
            .bench_local(|| fleche::storage::encoding::decode_vec::<f64>(black_box(&bytes)));
    }

    #[divan::bench]
    fn nested_in_a_struct(bencher: Bencher<'_, '_>) {
        let frame = Frame {
            name: "f".into(),
            values: ONE.clone(),
        };
        let bytes = fleche::storage::encoding::to_vec(&frame).unwrap_or_default();
        bencher.counter(ItemsCount::new(LEN)).bench_local(|| {
            fleche::storage::encoding::from_slice::<Frame>(black_box(&bytes))
                .map(|f| f.values.len())
        });
    }

    #[divan::bench]
    fn version_1_array_of_floats(bencher: Bencher<'_, '_>) {
        let mut bytes = vec![0xdd];
        bytes.extend_from_slice(&(LEN as u32).to_be_bytes());
        for x in ONE.iter() {
            bytes.push(0xcb);
            bytes.extend_from_slice(&x.to_be_bytes());
        }
        bencher
            .counter(ItemsCount::new(LEN))
            .bench_local(|| fleche::storage::encoding::from_slice::<Vec<f64>>(black_box(&bytes)));
    }
}

/// What a hit's parts cost on this machine, for reading the rows above.
#[divan::bench_group(name = "floors 8 MB")]
mod floors {
    use super::*;

    fn bytes() -> Vec<u8> {
        ONE.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[divan::bench]
    fn xxh3_128(bencher: Bencher<'_, '_>) {
        let b = bytes();
        bencher.bench_local(|| xxhash_rust::xxh3::xxh3_128(black_box(&b)));
    }

    #[divan::bench]
    fn blake3(bencher: Bencher<'_, '_>) {
        let b = bytes();
        bencher.bench_local(|| blake3::hash(black_box(&b)));
    }

    #[divan::bench]
    fn zeroed_vec(bencher: Bencher<'_, '_>) {
        bencher.bench_local(|| black_box(vec![0.0f64; black_box(LEN)]).len());
    }

    #[divan::bench]
    fn read_into_zeroed_vec(bencher: Bencher<'_, '_>) {
        use std::io::Read;
        let path = raw_file();
        bencher.bench_local(|| {
            let mut v = vec![0.0f64; LEN];
            let mut f = std::fs::File::open(black_box(&path)).unwrap_or_else(|e| panic!("{e}"));
            f.read_exact(bytemuck::cast_slice_mut(&mut v))
                .map(|()| v.len())
        });
    }

    #[divan::bench]
    fn read_into_zeroed_vec_chunked(bencher: Bencher<'_, '_>) {
        use std::io::Read;
        let path = raw_file();
        bencher.bench_local(|| {
            let mut v = vec![0.0f64; LEN];
            let mut f = std::fs::File::open(black_box(&path)).unwrap_or_else(|e| panic!("{e}"));
            for c in bytemuck::cast_slice_mut::<f64, u8>(&mut v).chunks_mut(256 << 10) {
                f.read_exact(c).unwrap_or_else(|e| panic!("{e}"));
            }
            v.len()
        });
    }

    #[divan::bench]
    fn memcpy(bencher: Bencher<'_, '_>) {
        let b = bytes();
        bencher.bench_local(|| black_box(black_box(&b).clone()).len());
    }
}
