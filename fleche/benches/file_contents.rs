//! `FileContents` of a large file next to raw blake3 of the same file (memory-mapped, on every
//! core, which is the fastest blake3 offers, and with large buffered reads on one thread).
//!
//! Run with `cargo bench -p fleche --bench file_contents`; `FLECHE_BENCH_FILE_MIB` sets the
//! file's size (default 1024, 1 GiB). The file is written once and read warm from the page
//! cache, so every row measures hashing, not the disk. Compare the rows of one run.

#![allow(clippy::panic)] // a benchmark that cannot set up has nothing to measure

use std::hint::black_box;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::OnceLock;

use divan::Bencher;
use divan::counter::BytesCount;

fn main() {
    divan::main();
}

struct Input {
    _dir: tempfile::TempDir,
    path: PathBuf,
    len: u64,
}

fn input() -> &'static Input {
    static INPUT: OnceLock<Input> = OnceLock::new();
    INPUT.get_or_init(|| {
        let mib: u64 = std::env::var("FLECHE_BENCH_FILE_MIB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1024);
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("input.bin");
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&path).unwrap_or_else(|e| panic!("create: {e}")),
        );
        let mut block = vec![0u8; 1 << 20];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..mib {
            for b in block.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            f.write_all(&block).unwrap_or_else(|e| panic!("write: {e}"));
        }
        f.flush().unwrap_or_else(|e| panic!("flush: {e}"));
        Input {
            _dir: dir,
            path,
            len: mib << 20,
        }
    })
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn file_contents(b: Bencher<'_, '_>) {
    let i = input();
    b.counter(BytesCount::new(i.len))
        .bench(|| black_box(fleche::FileContents::new(&i.path)));
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn raw_blake3_mmap_rayon(b: Bencher<'_, '_>) {
    let i = input();
    b.counter(BytesCount::new(i.len)).bench(|| {
        let mut h = blake3::Hasher::new();
        h.update_mmap_rayon(&i.path)
            .unwrap_or_else(|e| panic!("hash: {e}"));
        black_box(h.finalize())
    });
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn raw_blake3_buffered_reads(b: Bencher<'_, '_>) {
    let i = input();
    b.counter(BytesCount::new(i.len)).bench(|| {
        let mut f = std::fs::File::open(&i.path).unwrap_or_else(|e| panic!("open: {e}"));
        let mut buf = vec![0u8; 1 << 20];
        let mut h = blake3::Hasher::new();
        loop {
            let n = f.read(&mut buf).unwrap_or_else(|e| panic!("read: {e}"));
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        black_box(h.finalize())
    });
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn raw_blake3_buffered_rayon(b: Bencher<'_, '_>) {
    let i = input();
    b.counter(BytesCount::new(i.len)).bench(|| {
        let mut f = std::fs::File::open(&i.path).unwrap_or_else(|e| panic!("open: {e}"));
        let mut buf = vec![0u8; 8 << 20];
        let mut h = blake3::Hasher::new();
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                let n = f
                    .read(&mut buf[filled..])
                    .unwrap_or_else(|e| panic!("read: {e}"));
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            h.update_rayon(&buf[..filled]);
        }
        black_box(h.finalize())
    });
}
