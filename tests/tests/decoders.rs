//! Every decoder fed 100 000 random and mutated entries (S02): none panics, and none asks the
//! allocator for more than a bound, whatever the bytes claim. A counting global allocator, in
//! this test binary alone, records the largest single request.

#![allow(clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use fleche::storage::file::envelope;
use fleche::storage::{CallRecord, Digest, SigningKey, codec, destructure, encoding};

/// The system allocator, remembering the largest request while `WATCHING`.
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// xorshift64*: reproducible inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Flips, overwrites, truncates, extends or splices `good`.
fn mutate(rng: &mut Rng, good: &[u8]) -> Vec<u8> {
    let mut b = good.to_vec();
    match rng.below(6) {
        0 if !b.is_empty() => {
            let i = rng.below(b.len());
            b[i] ^= 1 << rng.below(8);
        }
        1 if !b.is_empty() => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
        }
        2 => b.truncate(rng.below(b.len() + 1)),
        3 => {
            let n = 1 + rng.below(64);
            let extra = rng.bytes(n);
            b.extend(extra);
        }
        4 if b.len() >= 8 => {
            // A length field set to something huge.
            let i = rng.below(b.len() - 7);
            b[i..i + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        }
        _ => {
            let i = rng.below(b.len() + 1);
            let insert = [0xdd, 0xff, 0xff, 0xff, 0xff];
            b.splice(i..i, insert);
        }
    }
    b
}

const CASES: usize = 100_000;
/// The largest payload the decoders are told to accept.
const MAX: u64 = 1 << 20;
/// What any single allocation may be: the limit plus slack for buffers of the inputs.
const BOUND: usize = 2 << 20;

#[test]
fn every_decoder_survives_random_and_mutated_entries() {
    let mut rng = Rng(0x5eed_f1ec_4e00_0001);
    let key = SigningKey::from_secret(b"fuzz key");
    let at = Digest::from_bytes([0x42; 32]);
    // Sound entries to mutate: envelopes of every kind, records, split values.
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for n in [0usize, 1, 17, 300] {
        let payload = rng.bytes(n);
        for compress in [None, Some(1)] {
            for signer in [None, Some(&key)] {
                if let Ok(e) = envelope::seal(&payload, &at, compress, signer) {
                    seeds.push(e);
                }
            }
        }
    }
    let record = CallRecord::new(at, "fuzz.f", Digest::from_bytes([7; 32]));
    let record_bytes = rmp_serde::to_vec_named(&record).unwrap_or_default();
    seeds.push(record_bytes.clone());
    let nested: Vec<Vec<u64>> = vec![vec![1, 2, 3], vec![4, 5], vec![]];
    let plain = rmp_serde::to_vec_named(&nested).unwrap_or_default();
    let split = destructure::split(&plain, 1).unwrap_or_else(|e| panic!("{e}"));
    seeds.push(split.root.clone());
    let parts: Vec<Vec<u8>> = split.children.iter().map(|(_, b)| b.clone()).collect();
    // Values of format 2: blocks of every kind, alone and nested.
    seeds.push(encoding::to_vec(&vec![1.5f64, -2.0, 3.25]).unwrap_or_default());
    seeds.push(encoding::to_vec(&vec![vec![1i32, 2], vec![3, 4]]).unwrap_or_default());
    seeds.push(encoding::to_vec(&(vec![true, false], vec![7u8; 40], "x")).unwrap_or_default());
    seeds.push(encoding::to_vec(&vec![9u16; 300]).unwrap_or_default());

    LARGEST.store(0, Ordering::Relaxed);
    let mut opened = 0usize;
    for case in 0..CASES {
        let input = if case % 2 == 0 {
            let n = rng.below(512);
            rng.bytes(n)
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, seed)
        };
        let keys: &[SigningKey] = if case % 3 == 0 {
            std::slice::from_ref(&key)
        } else {
            &[]
        };
        opened += usize::from(envelope::open(&input, &at, keys, MAX).is_ok());
        let _ = CallRecord::decode_for(&at, &input);
        let _ = codec::decode::<Vec<Vec<u64>>>(&input);
        let _ = codec::parse(&input);
        let _ = encoding::from_slice::<serde::de::IgnoredAny>(&input);
        let _ = encoding::from_slice::<Vec<Vec<i32>>>(&input);
        let _ = encoding::decode_vec::<f64>(&input);
        let _ = encoding::decode_vec::<bool>(&input);
        let _ = encoding::read_vec::<u16>(&mut &input[..], input.len() as u64);
        let _ = destructure::references(&input);
        // Reassembly with parts that are themselves damaged now and then.
        let _ = destructure::join(&at, &input, &mut |_| {
            let part = &parts[case % parts.len().max(1)];
            Ok(Some(if case % 5 == 0 {
                mutate(&mut Rng(case as u64 + 1), part)
            } else {
                part.clone()
            }))
        });
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest > 0, "the allocator was watched");
    assert!(largest <= BOUND, "an allocation of {largest} bytes");
    // The mutations left some entries intact (extension past the end is refused, flips are not
    // all in the payload): the sound ones still open.
    assert!(opened > 0);
}
