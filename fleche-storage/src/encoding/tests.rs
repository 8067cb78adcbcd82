use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::*;

fn rmp<T: Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(v).unwrap_or_default()
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) -> Vec<u8> {
    let bytes = to_vec(v).unwrap_or_default();
    let back: T = from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {bytes:02x?}"));
    assert_eq!(&back, v);
    bytes
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Shape {
    Unit,
    Newtype(String),
    Tuple(u8, String),
    Struct { name: String, id: i64 },
    Samples(Vec<f32>),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Unit;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Meters(f64);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Frame {
    name: String,
    time: Vec<f64>,
    counts: Vec<u32>,
    flags: Vec<bool>,
    raw: Vec<u8>,
    tags: BTreeMap<String, Vec<i16>>,
    shape: Shape,
    lengths: Vec<Meters>,
    grid: [[i8; 3]; 2],
    queue: VecDeque<u64>,
    boxed: Box<[i32]>,
    empty: Vec<f64>,
    maybe: Option<Vec<f64>>,
}

#[test]
fn values_without_numeric_sequences_are_written_as_rmp_serde_writes_them() {
    #[derive(Serialize)]
    struct Mixed {
        a: String,
        b: Option<u8>,
        c: (u8, String, f64),
        d: i128,
        e: u128,
        f: char,
        g: Unit,
        h: BTreeMap<String, String>,
        i: Vec<String>,
        j: Vec<Shape>,
        k: (),
        l: i64,
        m: Vec<(u8, f64)>,
    }
    let m = Mixed {
        a: "hello".into(),
        b: None,
        c: (1, "x".into(), 2.5),
        d: -5,
        e: u128::MAX,
        f: 'é',
        g: Unit,
        h: [("k".to_owned(), "v".to_owned())].into(),
        i: vec!["a".into(), "b".repeat(40)],
        j: vec![
            Shape::Unit,
            Shape::Newtype("n".into()),
            Shape::Tuple(3, "t".into()),
            Shape::Struct {
                name: "s".into(),
                id: -70_000,
            },
        ],
        k: (),
        l: i64::MIN,
        m: vec![(1, 1.5), (200, -0.0)],
    };
    assert_eq!(to_vec(&m).unwrap_or_default(), rmp(&m));
    for n in [
        0i64,
        1,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        -1,
        -32,
        -33,
        -128,
        -129,
        -32_768,
        -32_769,
        i64::from(i32::MIN) - 1,
    ] {
        assert_eq!(to_vec(&n).unwrap_or_default(), rmp(&n), "{n}");
    }
    for s in [
        "",
        &"x".repeat(31),
        &"x".repeat(32),
        &"x".repeat(256),
        &"x".repeat(70_000),
    ] {
        assert_eq!(to_vec(s).unwrap_or_default(), rmp(&s));
    }
}

#[test]
fn golden_blocks() {
    let b = |v: Vec<u8>| v;
    // Two f64: fixext 16 of type 0x50.
    let mut two = b(vec![0xd8, 0x50]);
    two.extend_from_slice(&1.0f64.to_le_bytes());
    two.extend_from_slice(&(-2.5f64).to_le_bytes());
    assert_eq!(to_vec(&vec![1.0f64, -2.5]).unwrap_or_default(), two);
    // Bytes: bin 8.
    assert_eq!(
        to_vec(&vec![1u8, 2, 3]).unwrap_or_default(),
        b(vec![0xc4, 3, 1, 2, 3])
    );
    // Bools: fixext 2 of type 0x59.
    assert_eq!(
        to_vec(&[true, false]).unwrap_or_default(),
        b(vec![0xd5, 0x59, 1, 0])
    );
    // Three i32: ext 8 of 12 bytes, type 0x53.
    assert_eq!(
        to_vec(&vec![1i32, -1, 256]).unwrap_or_default(),
        b(vec![
            0xc7, 12, 0x53, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 1, 0, 0
        ])
    );
    // One i8: fixext 1 of type 0x55.
    assert_eq!(
        to_vec(&vec![-2i8]).unwrap_or_default(),
        b(vec![0xd4, 0x55, 0xfe])
    );
    // 300 u16: ext 16 of 600 bytes, type 0x58.
    let many = to_vec(&vec![7u16; 300]).unwrap_or_default();
    assert_eq!(&many[..4], &[0xc8, 0x02, 0x58, 0x58][..]);
    assert_eq!(many.len(), 4 + 600);
    // 20 000 u64: ext 32, type 0x56.
    let big = to_vec(&vec![1u64; 20_000]).unwrap_or_default();
    assert_eq!(&big[..6], &[0xc9, 0x00, 0x02, 0x71, 0x00, 0x56][..]);
    // Empty: an empty array, as before.
    assert_eq!(
        to_vec(&Vec::<f64>::new()).unwrap_or_default(),
        b(vec![0x90])
    );
    // A struct holding a block: the map as rmp-serde writes it, the block inside.
    #[derive(Serialize)]
    struct S {
        x: Vec<f32>,
    }
    assert_eq!(
        to_vec(&S { x: vec![1.0] }).unwrap_or_default(),
        b(vec![0x81, 0xa1, b'x', 0xd6, 0x51, 0, 0, 0x80, 0x3f])
    );
}

#[test]
fn numeric_sequences_round_trip_at_every_depth() {
    let frame = Frame {
        name: "run 1".into(),
        time: (0..1000).map(|i| f64::from(i) * 0.25).collect(),
        counts: vec![0, u32::MAX, 7],
        flags: vec![true, false, true],
        raw: (0..=255).collect(),
        tags: [("a".to_owned(), vec![-1i16, 300]), ("b".to_owned(), vec![])].into(),
        shape: Shape::Samples(vec![f32::NAN.copysign(1.0), -0.0, f32::INFINITY]),
        lengths: vec![Meters(1.5), Meters(-3.0)],
        grid: [[1, -2, 3], [-4, 5, -6]],
        queue: [1u64, u64::MAX].into(),
        boxed: vec![i32::MIN, 0, i32::MAX].into_boxed_slice(),
        empty: vec![],
        maybe: Some(vec![f64::MAX]),
    };
    let bytes = to_vec(&frame).unwrap_or_default();
    let back: Frame = from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
    // NaN != NaN: compare that field by bits.
    let Shape::Samples(s) = &back.shape else {
        panic!("wrong variant")
    };
    assert!(s[0].is_nan() && s[1].to_bits() == (-0.0f32).to_bits());
    assert_eq!(back.time, frame.time);
    assert_eq!(back.tags, frame.tags);
    assert_eq!(back.grid, frame.grid);
    assert_eq!(back.queue, frame.queue);
    assert_eq!(back.boxed, frame.boxed);
    assert_eq!(back.lengths, frame.lengths);
    assert_eq!(back.raw, frame.raw);
    assert_eq!(back.flags, frame.flags);
    assert_eq!(back.maybe, frame.maybe);
    // The 1000 floats take 8 000 bytes plus a header, not 9 000.
    assert!(bytes.len() < 8000 + 1000, "{} bytes", bytes.len());
}

#[test]
fn mixed_sequences_fall_back_to_arrays() {
    // A tuple of a u8 and an f64, a JSON array of integers and a string, a sequence of numbers
    // of two widths: ordinary arrays, byte for byte as rmp-serde writes them.
    let t = (1u8, 2.5f64);
    assert_eq!(round_trip(&t), rmp(&t));
    let j = serde_json::json!([1, 2, "three", [4.5, 5.5], -6]);
    let bytes = to_vec(&j).unwrap_or_default();
    assert_eq!(from_slice::<serde_json::Value>(&bytes).ok(), Some(j));
    let signs = serde_json::json!([1, -1]);
    assert_eq!(to_vec(&signs).unwrap_or_default(), rmp(&signs));
    let one_then_struct = vec![Shape::Unit];
    assert_eq!(round_trip(&one_then_struct), rmp(&one_then_struct));
    // A homogeneous tuple is a block, and reads back as a tuple.
    round_trip(&(1.0f64, 2.0f64, 3.0f64));
}

#[test]
fn version_1_values_still_decode() {
    let v: Vec<f64> = (0..100).map(f64::from).collect();
    assert_eq!(from_slice::<Vec<f64>>(&rmp(&v)).ok(), Some(v.clone()));
    assert_eq!(decode_vec::<f64>(&rmp(&v)).ok(), Some(v));
    let bytes: Vec<u8> = vec![1, 2, 3];
    assert_eq!(decode_vec::<u8>(&rmp(&bytes)).ok(), Some(bytes));
    let s = Shape::Struct {
        name: "n".into(),
        id: 3,
    };
    assert_eq!(from_slice::<Shape>(&rmp(&s)).ok(), Some(s));
}

#[test]
fn blocks_read_as_other_numeric_types_where_the_values_fit() {
    let bytes = to_vec(&vec![1u8, 2, 200]).unwrap_or_default();
    assert_eq!(from_slice::<Vec<u64>>(&bytes).ok(), Some(vec![1, 2, 200]));
    assert!(from_slice::<Vec<i8>>(&bytes).is_err());
    let bytes = to_vec(&vec![1i32, -2]).unwrap_or_default();
    assert_eq!(from_slice::<Vec<i64>>(&bytes).ok(), Some(vec![1, -2]));
    assert_eq!(from_slice::<(i64, i64)>(&bytes).ok(), Some((1, -2)));
    assert_eq!(decode_vec::<i64>(&bytes).ok(), Some(vec![1, -2]));
    assert!(from_slice::<Vec<String>>(&bytes).is_err());
}

#[test]
fn damaged_blocks_are_errors() {
    // A bool that is 2, a block one byte short of its element width, a truncated block, an
    // unknown extension, trailing bytes.
    assert!(from_slice::<Vec<bool>>(&[0xd5, 0x59, 1, 2]).is_err());
    assert!(decode_vec::<bool>(&[0xd5, 0x59, 1, 2]).is_err());
    assert!(from_slice::<Vec<f64>>(&[0xc7, 7, 0x50, 0, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(decode_vec::<f64>(&[0xc7, 7, 0x50, 0, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(from_slice::<Vec<f64>>(&[0xc9, 0xff, 0xff, 0xff, 0xf8, 0x50, 0]).is_err());
    assert!(decode_vec::<f64>(&[0xc9, 0xff, 0xff, 0xff, 0xf8, 0x50, 0]).is_err());
    assert!(from_slice::<Vec<f64>>(&[0xd4, 0x33, 0]).is_err());
    assert!(from_slice::<u8>(&[1, 2]).is_err());
    assert!(from_slice::<serde_json::Value>(&[0xc1]).is_err());
    let mut deep = vec![0x91; 10_000];
    deep.push(0);
    assert!(matches!(
        from_slice::<serde_json::Value>(&deep),
        Err(DecodeError::TooDeep)
    ));
}

fn check_fast_paths<E>(values: &[E])
where
    E: Element + Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let general = to_vec(values).unwrap_or_default();
    let fast = encode_vec(values).unwrap_or_default();
    assert_eq!(fast, general, "{} x{}", E::KIND.name(), values.len());
    assert_eq!(decode_vec::<E>(&fast).ok().as_deref(), Some(values));
    assert_eq!(from_slice::<Vec<E>>(&fast).ok().as_deref(), Some(values));
    let mut reader = &fast[..];
    let read = read_vec::<E>(&mut reader, fast.len() as u64).ok();
    assert_eq!(read.as_deref(), Some(values));
}

proptest! {
    #[test]
    fn fast_paths_write_and_read_what_the_general_path_does(
        n in prop_oneof![0usize..40, Just(255), Just(256), Just(8191), Just(8192), Just(65_536), Just(70_000)],
        seed in any::<u64>(),
    ) {
        let mut x = seed | 1;
        let mut next = move || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
        let raw: Vec<u64> = (0..n).map(|_| next()).collect();
        check_fast_paths(&raw.iter().map(|&v| f64::from_bits(v & !(0x7ff << 52) | (0x3ff << 52))).collect::<Vec<_>>());
        check_fast_paths(&raw.iter().map(|&v| v as f32 * 0.5).collect::<Vec<_>>());
        check_fast_paths(&raw.iter().map(|&v| v as i64).collect::<Vec<_>>());
        check_fast_paths(&raw.iter().map(|&v| v as i32).collect::<Vec<_>>());
        check_fast_paths(&raw.iter().map(|&v| v as i16).collect::<Vec<_>>());
        check_fast_paths(&raw.iter().map(|&v| v as i8).collect::<Vec<_>>());
        check_fast_paths(&raw.clone());
        check_fast_paths(&raw.iter().map(|&v| v as u32).collect::<Vec<_>>());
        check_fast_paths(&raw.iter().map(|&v| v as u16).collect::<Vec<_>>());
        check_fast_paths(&raw.iter().map(|&v| v as u8).collect::<Vec<_>>());
        check_fast_paths(&raw.iter().map(|&v| v & 1 == 1).collect::<Vec<_>>());
    }

    #[test]
    fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = from_slice::<serde_json::Value>(&bytes);
        let _ = from_slice::<Frame>(&bytes);
        let _ = decode_vec::<f64>(&bytes);
        let _ = decode_vec::<bool>(&bytes);
        let mut r = &bytes[..];
        let _ = read_vec::<i16>(&mut r, bytes.len() as u64);
    }
}
