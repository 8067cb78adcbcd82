//! Persistent backends: hits and misses of a ~1 KiB and a ~1 MiB result on the msgpack file
//! backend, on SQLite, on SQLite calls with msgpack values, and on HDF5, next to the `cached` crate's redb disk store on the same workloads and
//! raw `std::fs` reads and writes of the same bytes (the floor). Also: storing a 1M-element
//! `Vec<f64>` against a raw 8 MB write, and SQLite call saves per second.
//!
//! Run with `cargo bench -p fleche --bench storage`. Compare rows within a group: they run in the
//! same process, on the same disk, in the same run.

// A benchmark whose setup fails has nothing to measure: it stops.
#![allow(clippy::panic)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use cached::{ConcurrentCached, RedbCache};
use divan::Bencher;
use divan::counter::ItemsCount;
use fleche::storage::{CallRecord, CallStorage, Digest, FileOptions, SqlDatabase, SqlTarget};
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

/// A fresh key for every miss.
static NEXT: AtomicU64 = AtomicU64::new(1);

fn next() -> u64 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

const KIB_LEN: usize = 128; // 128 u64: 1 KiB of data
const MIB_LEN: usize = 128 * 1024; // 1 MiB of data

#[memoize(name = "bench.kib")]
fn kib(i: u64) -> Vec<u64> {
    vec![i; KIB_LEN]
}

#[memoize(name = "bench.mib")]
fn mib(i: u64) -> Vec<u64> {
    vec![i; MIB_LEN]
}

#[memoize(name = "bench.series")]
fn series(i: u64) -> Vec<f64> {
    (0..1u64 << 20).map(|j| (i + j) as f64).collect()
}

fn open(what: &str) -> Cache {
    let made = match what {
        "msgpack" => Cache::msgpack(dir("msgpack"), FileOptions::new()),
        "sqlite" => Cache::sqlite(dir("sqlite.db")),
        // SQLite for the call records, msgpack files for the values.
        "sql+msgpack" => SqlDatabase::open(&SqlTarget::File(dir("calls.db")))
            .map_err(|e| fleche::Error::Storage {
                cache: "sql+msgpack".into(),
                source: e,
            })
            .and_then(|db| {
                let values = fleche::storage::FileValues::open(dir("values"), FileOptions::new())
                    .map_err(|e| fleche::Error::Storage {
                    cache: "sql+msgpack".into(),
                    source: e,
                })?;
                Ok(Cache::from_storages("sql+msgpack", values, db.calls()))
            }),
        "hdf5" => Cache::hdf5(dir("hdf5"), 2),
        other => panic!("unknown backend {other}"),
    };
    made.unwrap_or_else(|e| panic!("cannot open {what}: {e}"))
}

fn redb<V>(name: &str) -> RedbCache<u64, V>
where
    V: serde::Serialize + serde::de::DeserializeOwned + Clone,
{
    RedbCache::builder(name)
        .disk_dir(dir("redb"))
        .durable(false)
        .build()
        .unwrap_or_else(|e| panic!("cannot open redb: {e}"))
}

/// The two files a msgpack hit reads: the call record and the value.
fn msgpack_files(key: &Digest, result: &Digest) -> [PathBuf; 2] {
    let path = |sub: &str, d: &Digest| {
        let h = d.to_hex();
        dir("msgpack").join(sub).join(&h[..2]).join(h)
    };
    [path("calls", key), path("values", result)]
}

fn hit_floor(bencher: Bencher<'_, '_>, f: fn(u64) -> Vec<u64>, key: fn(u64) -> Digest) {
    let cache = open("msgpack");
    with_cache(&cache, || f(0));
    let k = with_cache(&cache, || key(0));
    let record = cache
        .record(&k)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("record missing"));
    let [a, b] = msgpack_files(&k, &record.result);
    bencher.bench_local(|| {
        let x = std::fs::read(black_box(&a)).map(|v| v.len()).unwrap_or(0);
        let y = std::fs::read(black_box(&b)).map(|v| v.len()).unwrap_or(0);
        x + y
    });
}

/// Flushes every dirty page to disk, so a row that writes does not pay for the writeback of
/// what an earlier row wrote (the machine's disk is shared by every row).
fn settle_disk() {
    let _ = std::process::Command::new("sync").status();
}

fn write_floor(bencher: Bencher<'_, '_>, sizes: [usize; 2]) {
    settle_disk();
    let target = dir("raw");
    let _ = std::fs::create_dir_all(&target);
    let data: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![7u8; n]).collect();
    bencher.with_inputs(next).bench_local_values(|i| {
        for (j, bytes) in data.iter().enumerate() {
            let _ = std::fs::write(target.join(format!("{i}-{j}")), bytes);
        }
    });
}

/// The sizes a msgpack miss writes: the encoded value, and the call record file.
fn miss_sizes(f: fn(u64) -> Vec<u64>, key: fn(u64) -> Digest) -> [usize; 2] {
    let cache = open("msgpack");
    let i = next();
    with_cache(&cache, || f(i));
    let k = with_cache(&cache, || key(i));
    let record = cache.record(&k).ok().flatten();
    let files = record.map(|r| msgpack_files(&k, &r.result));
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len() as usize).unwrap_or(0);
    files.map_or([0, 0], |[a, b]| [size(&b), size(&a)])
}

#[divan::bench_group(name = "1 KiB hit", sample_size = 16)]
mod kib_hit {
    use super::*;

    #[divan::bench(args = ["msgpack", "sqlite", "sql+msgpack", "hdf5"])]
    fn fleche(bencher: Bencher<'_, '_>, backend: &str) {
        let cache = open(backend);
        with_cache(&cache, || {
            kib(0);
            // A hit of an entry stored a moment ago, as by an earlier run (a store reuses a
            // parse of a file only once it has been left alone for a while).
            std::thread::sleep(std::time::Duration::from_millis(200));
            bencher.bench_local(|| kib(black_box(0)));
        });
    }

    #[divan::bench]
    fn cached_redb(bencher: Bencher<'_, '_>) {
        let c = redb::<Vec<u64>>("kib");
        let _ = c.cache_set(0, vec![0; KIB_LEN]);
        bencher.bench_local(|| c.cache_get(black_box(&0)).ok().flatten());
    }

    #[divan::bench]
    fn raw_two_file_reads(bencher: Bencher<'_, '_>) {
        hit_floor(bencher, kib, kib::digest);
    }
}

#[divan::bench_group(name = "1 KiB miss", max_time = 3)]
mod kib_miss {
    use super::*;

    #[divan::bench(args = ["msgpack", "sqlite", "sql+msgpack", "hdf5"])]
    fn fleche(bencher: Bencher<'_, '_>, backend: &str) {
        let cache = open(backend);
        settle_disk();
        with_cache(&cache, || bencher.with_inputs(next).bench_local_values(kib));
    }

    #[divan::bench]
    fn cached_redb(bencher: Bencher<'_, '_>) {
        let c = redb::<Vec<u64>>("kib-miss");
        bencher
            .with_inputs(next)
            .bench_local_values(|i| c.cache_set(i, vec![i; KIB_LEN]).ok());
    }

    #[divan::bench]
    fn raw_writes(bencher: Bencher<'_, '_>) {
        write_floor(bencher, miss_sizes(kib, kib::digest));
    }
}

#[divan::bench_group(name = "1 MiB hit", sample_count = 30)]
mod mib_hit {
    use super::*;

    #[divan::bench(args = ["msgpack", "sqlite", "sql+msgpack", "hdf5"])]
    fn fleche(bencher: Bencher<'_, '_>, backend: &str) {
        let cache = open(backend);
        with_cache(&cache, || {
            mib(0);
            bencher.bench_local(|| mib(black_box(0)));
        });
    }

    #[divan::bench]
    fn cached_redb(bencher: Bencher<'_, '_>) {
        let c = redb::<Vec<u64>>("mib");
        let _ = c.cache_set(0, vec![0; MIB_LEN]);
        bencher.bench_local(|| c.cache_get(black_box(&0)).ok().flatten());
    }

    #[divan::bench]
    fn raw_two_file_reads(bencher: Bencher<'_, '_>) {
        hit_floor(bencher, mib, mib::digest);
    }
}

#[divan::bench_group(name = "1 MiB miss", sample_count = 20, sample_size = 1)]
mod mib_miss {
    use super::*;

    #[divan::bench(args = ["msgpack", "sqlite", "sql+msgpack", "hdf5"])]
    fn fleche(bencher: Bencher<'_, '_>, backend: &str) {
        let cache = open(backend);
        settle_disk();
        with_cache(&cache, || bencher.with_inputs(next).bench_local_values(mib));
    }

    #[divan::bench]
    fn cached_redb(bencher: Bencher<'_, '_>) {
        let c = redb::<Vec<u64>>("mib-miss");
        bencher
            .with_inputs(next)
            .bench_local_values(|i| c.cache_set(i, vec![i; MIB_LEN]).ok());
    }

    #[divan::bench]
    fn raw_writes(bencher: Bencher<'_, '_>) {
        write_floor(bencher, miss_sizes(mib, mib::digest));
    }
}

#[divan::bench_group(name = "store Vec<f64> of 1M", sample_count = 15, sample_size = 1)]
mod vec_f64 {
    use super::*;

    #[divan::bench(args = ["msgpack", "hdf5"])]
    fn fleche(bencher: Bencher<'_, '_>, backend: &str) {
        let cache = open(backend);
        with_cache(&cache, || {
            bencher.with_inputs(next).bench_local_values(series)
        });
    }

    #[divan::bench]
    fn raw_write_8mb(bencher: Bencher<'_, '_>) {
        write_floor(bencher, [8 << 20, 0]);
    }
}

#[divan::bench_group(name = "SQLite call saves")]
mod sql_saves {
    use super::*;

    #[divan::bench]
    fn save(bencher: Bencher<'_, '_>) {
        let db =
            SqlDatabase::open(&SqlTarget::File(dir("saves.db"))).unwrap_or_else(|e| panic!("{e}"));
        let calls = db.calls();
        bencher
            .counter(ItemsCount::new(1usize))
            .with_inputs(|| {
                let i = next();
                let mut key = [0u8; 32];
                key[..8].copy_from_slice(&i.to_le_bytes());
                let mut r = CallRecord::new(
                    Digest::from_bytes(key),
                    "bench.f",
                    Digest::from_bytes([1; 32]),
                );
                r.arguments = vec![("i".into(), fleche::Value::from(i))];
                r
            })
            .bench_local_values(|r| calls.save(r));
    }
}
