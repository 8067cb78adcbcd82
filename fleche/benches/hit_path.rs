//! The hot path of a memoized call, next to the `cached` crate on the same functions, and the key
//! digest of a large numeric vector next to raw blake3 of its bytes.
//!
//! Run with `cargo bench -p fleche --bench hit_path`. Ratios between rows of one group are what
//! matter: every row of a group is measured in the same run.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use divan::Bencher;
use divan::counter::BytesCount;

fn main() {
    divan::main();
}

/// `fn(u64) -> u64`, memoized by each library.
mod scalar {
    #[fleche::memoize]
    pub(crate) fn fleche_f(x: u64) -> u64 {
        x.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    #[cached::macros::cached]
    pub(crate) fn cached_f(x: u64) -> u64 {
        x.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// `fn(&str, &[u64]) -> Vec<u64>`, memoized by each library (`cached` needs an owned key).
mod slices {
    #[fleche::memoize]
    pub(crate) fn fleche_g(label: &str, xs: &[u64]) -> Vec<u64> {
        xs.iter().map(|x| x + label.len() as u64).collect()
    }

    #[cached::macros::cached(
        key = "(String, Vec<u64>)",
        convert = { (label.to_owned(), xs.to_vec()) }
    )]
    pub(crate) fn cached_g(label: &str, xs: &[u64]) -> Vec<u64> {
        xs.iter().map(|x| x + label.len() as u64).collect()
    }
}

const XS: [u64; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

// Hits are a few hundred nanoseconds: many per sample, so the timer is not what is measured.
#[divan::bench_group(name = "fn(u64) hit", sample_size = 512)]
mod scalar_hit {
    use super::*;

    #[divan::bench]
    fn fleche_memory(bencher: Bencher<'_, '_>) {
        let cache = fleche::Cache::memory();
        fleche::with_cache(&cache, || {
            scalar::fleche_f(7);
            bencher.bench_local(|| scalar::fleche_f(black_box(7)));
        });
    }

    #[divan::bench]
    fn cached_unbounded(bencher: Bencher<'_, '_>) {
        scalar::cached_f(7);
        bencher.bench_local(|| scalar::cached_f(black_box(7)));
    }
}

/// The same hits cycling over 64 distinct keys, so no row is served from one hot slot.
// Hits are a few hundred nanoseconds: many per sample, so the timer is not what is measured.
#[divan::bench_group(name = "fn(u64) hit, 64 keys", sample_size = 512)]
mod scalar_hit_64 {
    use super::*;

    #[divan::bench]
    fn fleche_memory(bencher: Bencher<'_, '_>) {
        let cache = fleche::Cache::memory();
        fleche::with_cache(&cache, || {
            (0..64).for_each(|k| {
                scalar::fleche_f(k);
            });
            let mut k = 0u64;
            bencher.bench_local(|| {
                k = (k + 1) & 63;
                scalar::fleche_f(black_box(k))
            });
        });
    }

    #[divan::bench]
    fn cached_unbounded(bencher: Bencher<'_, '_>) {
        (0..64).for_each(|k| {
            scalar::cached_f(k);
        });
        let mut k = 0u64;
        bencher.bench_local(|| {
            k = (k + 1) & 63;
            scalar::cached_f(black_box(k))
        });
    }
}

#[divan::bench_group(name = "fn(u64) miss", max_time = 2)]
mod scalar_miss {
    use super::*;

    static NEXT: AtomicU64 = AtomicU64::new(1 << 40);

    #[divan::bench]
    fn fleche_memory(bencher: Bencher<'_, '_>) {
        let cache = fleche::Cache::memory();
        fleche::with_cache(&cache, || {
            bencher
                .with_inputs(|| NEXT.fetch_add(1, Ordering::Relaxed))
                .bench_local_values(scalar::fleche_f);
        });
    }

    #[divan::bench]
    fn cached_unbounded(bencher: Bencher<'_, '_>) {
        bencher
            .with_inputs(|| NEXT.fetch_add(1, Ordering::Relaxed))
            .bench_local_values(scalar::cached_f);
    }
}

// Hits are a few hundred nanoseconds: many per sample, so the timer is not what is measured.
#[divan::bench_group(name = "fn(&str, &[u64]) hit", sample_size = 512)]
mod slices_hit {
    use super::*;

    #[divan::bench]
    fn fleche_memory(bencher: Bencher<'_, '_>) {
        let cache = fleche::Cache::memory();
        fleche::with_cache(&cache, || {
            slices::fleche_g("label", &XS);
            bencher.bench_local(|| slices::fleche_g(black_box("label"), black_box(&XS)));
        });
    }

    #[divan::bench]
    fn cached_unbounded(bencher: Bencher<'_, '_>) {
        slices::cached_g("label", &XS);
        bencher.bench_local(|| slices::cached_g(black_box("label"), black_box(&XS)));
    }
}

#[divan::bench_group(name = "fn(&str, &[u64]) miss", max_time = 2)]
mod slices_miss {
    use super::*;

    static NEXT: AtomicU64 = AtomicU64::new(1 << 40);

    fn input() -> [u64; 16] {
        let mut xs = XS;
        xs[0] = NEXT.fetch_add(1, Ordering::Relaxed);
        xs
    }

    #[divan::bench]
    fn fleche_memory(bencher: Bencher<'_, '_>) {
        let cache = fleche::Cache::memory();
        fleche::with_cache(&cache, || {
            bencher
                .with_inputs(input)
                .bench_local_refs(|xs| slices::fleche_g("label", xs));
        });
    }

    #[divan::bench]
    fn cached_unbounded(bencher: Bencher<'_, '_>) {
        bencher
            .with_inputs(input)
            .bench_local_refs(|xs| slices::cached_g("label", xs));
    }
}

/// 64 MiB of `f64`: the key digest against raw blake3 of the same bytes.
#[divan::bench_group(name = "digest of 64 MiB Vec<f64>", sample_count = 20, sample_size = 1)]
mod bulk {
    use super::*;

    const LEN: usize = 64 * 1024 * 1024 / 8;

    fn data() -> Vec<f64> {
        (0..LEN).map(|i| i as f64 * 0.5).collect()
    }

    #[divan::bench]
    fn raw_blake3(bencher: Bencher<'_, '_>) {
        let v = data();
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        bencher
            .counter(BytesCount::new(bytes.len()))
            .bench_local(|| blake3::hash(black_box(&bytes)));
    }

    #[divan::bench]
    fn fleche_digest(bencher: Bencher<'_, '_>) {
        let v = data();
        bencher
            .counter(BytesCount::new(v.len() * 8))
            .bench_local(|| fleche::digest(black_box(&v)));
    }
}

/// The one cost a hit cannot cut: the blake3 call key of one `u64` argument (keyed mode, one
/// block), measured alone.
// Hits are a few hundred nanoseconds: many per sample, so the timer is not what is measured.
#[divan::bench_group(name = "floor: call key of fn(u64)", sample_size = 512)]
mod key_floor {
    use super::*;

    #[divan::bench]
    fn blake3_keyed_18_bytes(bencher: Bencher<'_, '_>) {
        let key = [7u8; 32];
        let mut k = 0u64;
        bencher.bench_local(|| {
            k = (k + 1) & 63;
            let mut input = [0u8; 18];
            input[10..].copy_from_slice(&k.to_le_bytes());
            blake3::keyed_hash(black_box(&key), black_box(&input))
        });
    }

    /// The call key as a hit computes it (active cache, identity, key): `f::digest`.
    #[divan::bench]
    fn fleche_call_key(bencher: Bencher<'_, '_>) {
        let cache = fleche::Cache::memory();
        fleche::with_cache(&cache, || {
            let mut k = 0u64;
            bencher.bench_local(|| {
                k = (k + 1) & 63;
                scalar::fleche_f::digest(black_box(k))
            });
        });
    }
}
