//! Canonical keys: K02 (equal inputs, equal keys), K03 (golden vectors), the byte-level format of
//! `docs/format.md`, and proptest properties.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use fleche::{Key, Serde, digest};
use proptest::prelude::*;
use serde::Serialize;

/// `blake3("fleche key encoding v1")`: the key of every value digest (`docs/format.md`).
fn value_domain() -> [u8; 32] {
    *blake3::hash(b"fleche key encoding v1").as_bytes()
}

/// The digest of hand-written encoding bytes, per `docs/format.md`.
fn spec(bytes: &[u8]) -> String {
    blake3::keyed_hash(&value_domain(), bytes)
        .to_hex()
        .to_string()
}

fn hex<T: Key + ?Sized>(v: &T) -> String {
    digest(v).to_string()
}

fn le(n: u64) -> [u8; 8] {
    n.to_le_bytes()
}

#[test]
fn k02_strings_are_container_independent() {
    let s = String::from("abc");
    assert_eq!(digest("abc"), digest(&s));
    assert_eq!(digest(&Box::<str>::from("abc")), digest(&s));
    assert_eq!(digest(&Cow::Borrowed("abc")), digest(&s));
    assert_eq!(
        digest(&Arc::<str>::from("abc")),
        digest(&Rc::<str>::from("abc"))
    );
}

#[test]
fn k02_sequences_are_container_independent() {
    let v = vec![1u64, 2, 3];
    let a = [1u64, 2, 3];
    let d: VecDeque<u64> = v.iter().copied().collect();
    assert_eq!(digest(&v), digest(&a));
    assert_eq!(digest(&v), digest(&a[..]));
    assert_eq!(digest(&v), digest(&d));
    // A VecDeque whose storage wraps around hashes its two halves as one sequence.
    let mut wrapped = VecDeque::with_capacity(4);
    wrapped.extend([0u64, 0, 1]);
    wrapped.pop_front();
    wrapped.pop_front();
    wrapped.extend([2, 3]);
    assert!(
        !wrapped.as_slices().1.is_empty(),
        "test setup: deque must wrap"
    );
    assert_eq!(digest(&v), digest(&wrapped));
    // Non-numeric elements too.
    let names = vec!["a".to_owned(), "b".to_owned()];
    assert_eq!(digest(&names), digest(&["a", "b"]));
}

#[test]
fn k02_maps_and_sets_ignore_order_and_container() {
    let mut h1 = HashMap::new();
    let mut h2 = HashMap::new();
    for i in 0..50u32 {
        h1.insert(format!("k{i}"), i);
    }
    for i in (0..50u32).rev() {
        h2.insert(format!("k{i}"), i);
    }
    let b: BTreeMap<String, u32> = h1.clone().into_iter().collect();
    assert_eq!(digest(&h1), digest(&h2));
    assert_eq!(digest(&h1), digest(&b));
    let hs: HashSet<i32> = [3, 1, 2].into_iter().collect();
    let bs: BTreeSet<i32> = [1, 2, 3].into_iter().collect();
    assert_eq!(digest(&hs), digest(&bs));
    // A map differs from a set of its pairs and from a sequence of them.
    let pairs: Vec<(String, u32)> = b.clone().into_iter().collect();
    assert_ne!(digest(&b), digest(&pairs));
}

#[test]
fn k02_unequal_values_differ() {
    assert_ne!(digest(&("ab", "c")), digest(&("a", "bc")));
    assert_ne!(digest(&1.0f64), digest(&-1.0f64));
    assert_ne!(digest(&0.5f64), digest(&2f64.powi(60)));
    assert_ne!(digest(&0.0f64), digest(&-0.0f64));
    assert_ne!(digest(&vec![1u8, 2]), digest(&(1u8, 2u8)));
    assert_ne!(digest(&Some(0u8)), digest(&None::<u8>));
    assert_ne!(digest(&Ok::<u8, u8>(1)), digest(&Err::<u8, u8>(1)));
    assert_ne!(
        digest(&vec![vec![1u8], vec![]]),
        digest(&vec![vec![], vec![1u8]])
    );
    assert_ne!(digest("1"), digest(&1u64));
    assert_ne!(digest(&1u32), digest(&1i32));
    assert_ne!(digest(&()), digest(&Vec::<u8>::new()));
    assert_ne!(digest(&Path::new("a")), digest("a"));
}

#[test]
fn k02_pointer_sized_integers_are_platform_independent() {
    assert_eq!(digest(&7usize), digest(&7u64));
    assert_eq!(digest(&-7isize), digest(&-7i64));
    assert_eq!(digest(&vec![1usize, 2]), digest(&vec![1u64, 2]));
}

#[test]
fn format_scalars_match_the_documented_bytes() {
    assert_eq!(hex(&()), spec(&[0x00]));
    assert_eq!(hex(&true), spec(&[0x01, 0x01]));
    assert_eq!(hex(&false), spec(&[0x01, 0x00]));
    assert_eq!(hex(&1u64), spec(&[0x02, 0x04, 1, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(hex(&-2i8), spec(&[0x02, 0x11, 0xfe]));
    assert_eq!(hex(&300u16), spec(&[0x02, 0x02, 0x2c, 0x01]));
    let mut f = vec![0x02, 0x22];
    f.extend_from_slice(&1.5f64.to_le_bytes());
    assert_eq!(hex(&1.5f64), spec(&f));
    assert_eq!(hex(&'é'), spec(&[0x03, 0xe9, 0, 0, 0]));
    let mut s = vec![0x04];
    s.extend_from_slice(&le(2));
    s.extend_from_slice(b"hi");
    assert_eq!(hex("hi"), spec(&s));
    let mut d = vec![0x0f];
    d.extend_from_slice(&le(3));
    d.extend_from_slice(&7u32.to_le_bytes());
    assert_eq!(hex(&Duration::new(3, 7)), spec(&d));
    let mut p = vec![0x0e];
    p.extend_from_slice(&le(5));
    p.extend_from_slice(b"/tmp/");
    assert_eq!(hex(&PathBuf::from("/tmp/")), spec(&p));
}

#[test]
fn format_compounds_match_the_documented_bytes() {
    // Numeric arrays: tag, kind, count, raw little-endian elements.
    let mut a = vec![0x06, 0x22];
    a.extend_from_slice(&le(2));
    a.extend_from_slice(&0.5f64.to_le_bytes());
    a.extend_from_slice(&(-1.0f64).to_le_bytes());
    assert_eq!(hex(&vec![0.5f64, -1.0]), spec(&a));
    // Other sequences: tag, count, encoded elements.
    let mut s = vec![0x05];
    s.extend_from_slice(&le(2));
    s.extend_from_slice(&[0x01, 0x01, 0x01, 0x00]);
    assert_eq!(hex(&[true, false]), spec(&s));
    // Tuples: tag, arity, elements.
    let mut t = vec![0x07];
    t.extend_from_slice(&le(2));
    t.extend_from_slice(&[0x01, 0x01, 0x00]);
    assert_eq!(hex(&(true, ())), spec(&t));
    // Option and Result.
    assert_eq!(hex(&None::<bool>), spec(&[0x08, 0x00]));
    assert_eq!(hex(&Some(true)), spec(&[0x08, 0x01, 0x01, 0x01]));
    assert_eq!(hex(&Err::<(), bool>(true)), spec(&[0x09, 0x01, 0x01, 0x01]));
    // Maps: tag, count, sorted digests of key-then-value encodings.
    let entry = |k: &[u8], v: &[u8]| {
        let mut b = k.to_vec();
        b.extend_from_slice(v);
        *blake3::keyed_hash(&value_domain(), &b).as_bytes()
    };
    let mut entries = [entry(&[0x01, 0x01], &[0x00]), entry(&[0x01, 0x00], &[0x00])];
    entries.sort();
    let mut m = vec![0x0a];
    m.extend_from_slice(&le(2));
    for e in &entries {
        m.extend_from_slice(e);
    }
    let map: HashMap<bool, ()> = [(true, ()), (false, ())].into_iter().collect();
    assert_eq!(hex(&map), spec(&m));
}

#[derive(Key)]
struct Point {
    x: u8,
    #[key(skip)]
    #[allow(dead_code)]
    cache: Vec<u8>,
    y: u8,
}

#[derive(Key)]
struct Meters(f64);

#[derive(Key)]
enum Shape {
    Dot,
    Circle { r: u8 },
    Pair(u8, u8),
}

#[derive(Key)]
struct Wrapper<T> {
    inner: T,
}

#[test]
fn format_derived_types_match_the_documented_bytes() {
    let field = |name: &str, value: &[u8]| {
        let mut b = vec![0x04];
        b.extend_from_slice(&le(name.len() as u64));
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(value);
        b
    };
    let mut p = vec![0x0c];
    p.extend_from_slice(&le(2));
    p.extend(field("x", &[0x02, 0x01, 1]));
    p.extend(field("y", &[0x02, 0x01, 2]));
    assert_eq!(
        hex(&Point {
            x: 1,
            y: 2,
            cache: vec![9]
        }),
        spec(&p)
    );
    // Skipped fields do not count.
    assert_eq!(
        digest(&Point {
            x: 1,
            y: 2,
            cache: vec![]
        }),
        digest(&Point {
            x: 1,
            y: 2,
            cache: vec![1, 2, 3]
        })
    );

    let mut c = vec![0x0d];
    c.extend(field("Circle", &[]));
    c.extend_from_slice(&le(1));
    c.extend(field("r", &[0x02, 0x01, 3]));
    assert_eq!(hex(&Shape::Circle { r: 3 }), spec(&c));
    let mut dot = vec![0x0d];
    dot.extend(field("Dot", &[]));
    dot.extend_from_slice(&le(0));
    assert_eq!(hex(&Shape::Dot), spec(&dot));
    let mut pair = vec![0x0d];
    pair.extend(field("Pair", &[]));
    pair.extend_from_slice(&le(2));
    pair.extend(field("0", &[0x02, 0x01, 1]));
    pair.extend(field("1", &[0x02, 0x01, 2]));
    assert_eq!(hex(&Shape::Pair(1, 2)), spec(&pair));

    let mut m = vec![0x0c];
    m.extend_from_slice(&le(1));
    let mut v = vec![0x02, 0x22];
    v.extend_from_slice(&2.5f64.to_le_bytes());
    m.extend(field("0", &v));
    assert_eq!(hex(&Meters(2.5)), spec(&m));

    // Generic parameters need `Key` and encode like any field.
    assert_ne!(
        digest(&Wrapper { inner: 1u8 }),
        digest(&Wrapper { inner: 2u8 })
    );
}

#[derive(Serialize)]
struct SerdeOnly {
    name: String,
    weights: Vec<f64>,
    table: HashMap<String, u32>,
    #[serde(skip)]
    #[allow(dead_code)]
    scratch: u8,
}

#[test]
fn serde_route_is_canonical() {
    let table_a: HashMap<String, u32> = (0..20).map(|i| (format!("k{i}"), i)).collect();
    let table_b: HashMap<String, u32> = (0..20).rev().map(|i| (format!("k{i}"), i)).collect();
    let a = SerdeOnly {
        name: "a".into(),
        weights: vec![0.5],
        table: table_a,
        scratch: 1,
    };
    let b = SerdeOnly {
        name: "a".into(),
        weights: vec![0.5],
        table: table_b,
        scratch: 2,
    };
    assert_eq!(digest(&Serde(&a)), digest(&Serde(&b)));
    let c = SerdeOnly {
        name: "a".into(),
        weights: vec![0.25],
        table: HashMap::new(),
        scratch: 0,
    };
    assert_ne!(digest(&Serde(&a)), digest(&Serde(&c)));
    // Struct fields are framed like derived keys, inside the serde envelope.
    #[derive(Serialize)]
    struct Two {
        a: String,
        b: String,
    }
    assert_ne!(
        digest(&Serde(Two {
            a: "ab".into(),
            b: "c".into()
        })),
        digest(&Serde(Two {
            a: "a".into(),
            b: "bc".into()
        }))
    );
}

/// K03: these digests are part of the on-disk contract. If this test fails, the key encoding
/// changed: bump `KEY_FORMAT_VERSION` and document the change in `docs/format.md`.
#[test]
fn k03_golden_vectors() {
    assert_eq!(fleche::KEY_FORMAT_VERSION, 1);
    let mut map = BTreeMap::new();
    map.insert("alpha".to_owned(), vec![1.0f64, 2.0]);
    map.insert("beta".to_owned(), vec![]);
    let golden: Vec<(&str, String, &str)> = vec![
        ("unit", hex(&()), GOLDEN[0]),
        ("u64 42", hex(&42u64), GOLDEN[1]),
        ("i32 -1", hex(&-1i32), GOLDEN[2]),
        ("f64 0.1", hex(&0.1f64), GOLDEN[3]),
        ("str", hex("fleche"), GOLDEN[4]),
        ("vec f64", hex(&vec![0.5f64, 1.5, -2.0]), GOLDEN[5]),
        ("tuple", hex(&(1u8, "a", Some(true))), GOLDEN[6]),
        ("map", hex(&map), GOLDEN[7]),
        ("derived", hex(&Shape::Circle { r: 7 }), GOLDEN[8]),
        ("call", crate::macros::golden_call_digest(), GOLDEN[9]),
    ];
    let wrong: Vec<_> = golden.iter().filter(|(_, got, want)| got != want).collect();
    assert!(wrong.is_empty(), "golden digests changed: {wrong:#?}");
}

const GOLDEN: [&str; 10] = [
    "be1c19791d47e50975a9b6560b4609fe4039df6dd675256c5b5b2261fa81ae6c",
    "18b80b461cc71b53ee6eff9b5bfe0030142c9112bc184c1a6ca42e42a1ec7553",
    "a808337427635db0fe829deca4bb167f6030768f56b7da0dfe395096efa8d023",
    "3efffc904356efad1baa27a55b59870f77b652b67092e2175c649992c8c44b03",
    "f2534c3ccd0c34bce4fe0eae4c5ecdae42a5052582cfffe78ec70347bc389434",
    "f79f29f6a0f800384981a63a081173cf8d9963ef512438c96031837b68d5d555",
    "cc429ba04fcd7e284121b16b127ffe0343761448fe261837253d6bfce034ea04",
    "a5bffb2170eda705557c7688c225763152bc9bc43f363f8f24ed6c40eac2ddae",
    "1562d3a6cb69def10bb4abf46f713f28a85606e5a64387bdaf4618ba0385b354",
    "8b003bbf97fde2e692f29f2a3058a99e606c6349adee1c6068cd99751b2c7aaa",
];

proptest! {
    #[test]
    fn digest_is_deterministic(v in proptest::collection::vec(any::<i64>(), 0..64), s in ".*") {
        prop_assert_eq!(digest(&(&v, &s)), digest(&(v.clone(), s.clone())));
    }

    #[test]
    fn equal_values_equal_digests_across_containers(v in proptest::collection::vec(any::<f64>(), 0..64)) {
        let d: VecDeque<f64> = v.iter().copied().collect();
        let boxed: Box<[f64]> = v.clone().into_boxed_slice();
        prop_assert_eq!(digest(&v), digest(&v[..]));
        prop_assert_eq!(digest(&v), digest(&d));
        prop_assert_eq!(digest(&v), digest(&boxed));
    }

    #[test]
    fn maps_equal_across_containers_and_orders(entries in proptest::collection::btree_map(".{0,8}", any::<u32>(), 0..32)) {
        let forward: HashMap<String, u32> = entries.clone().into_iter().collect();
        let mut reversed = HashMap::with_capacity(1);
        for (k, v) in entries.iter().rev() {
            reversed.insert(k.clone(), *v);
        }
        prop_assert_eq!(digest(&entries), digest(&forward));
        prop_assert_eq!(digest(&forward), digest(&reversed));
    }

    #[test]
    fn no_concatenation_ambiguity(a in ".{0,12}", b in ".{0,12}", cut in 0usize..24) {
        let joined = format!("{a}{b}");
        let cut = (0..=cut.min(joined.len())).rev().find(|&i| joined.is_char_boundary(i)).unwrap_or(0);
        let (c, d) = joined.split_at(cut);
        if c != a {
            prop_assert_ne!(digest(&(a.as_str(), b.as_str())), digest(&(c, d)));
            prop_assert_ne!(digest(&vec![a.clone(), b.clone()]), digest(&vec![c, d]));
        }
    }

    #[test]
    fn different_values_different_digests(x in proptest::collection::vec(any::<u64>(), 0..16), y in proptest::collection::vec(any::<u64>(), 0..16)) {
        if x != y {
            prop_assert_ne!(digest(&x), digest(&y));
        }
    }

    #[test]
    fn floats_differ_by_bits(a in any::<f64>(), b in any::<f64>()) {
        if a.to_bits() != b.to_bits() {
            prop_assert_ne!(digest(&a), digest(&b));
        }
    }
}

#[test]
fn format_call_key_matches_the_documented_construction() {
    // identity = digest(("fleche.fn", name, version, code digest, type arguments))
    let identity = digest(&(
        "fleche.fn",
        "golden.call",
        Some("1"),
        None::<fleche::Digest>,
        Vec::<&str>::new(),
    ));
    // call key = blake3_keyed(identity, TUPLE n, then each hashed argument)
    let mut bytes = vec![0x07];
    bytes.extend_from_slice(&le(2));
    bytes.extend_from_slice(&[0x02, 0x04]);
    bytes.extend_from_slice(&le(7));
    bytes.push(0x04);
    bytes.extend_from_slice(&le(1));
    bytes.push(b'x');
    let expected = blake3::keyed_hash(identity.as_bytes(), &bytes)
        .to_hex()
        .to_string();
    assert_eq!(crate::macros::golden_call_digest(), expected);
}

#[test]
fn serde_route_arguments_are_queryable() {
    #[derive(Serialize)]
    enum Mode {
        Exact { tolerance: u32 },
    }
    #[derive(Serialize)]
    struct Job {
        name: String,
        mode: Mode,
        weights: Vec<f64>,
        table: BTreeMap<String, u8>,
    }
    let job = Serde(Job {
        name: "a".into(),
        mode: Mode::Exact { tolerance: 3 },
        weights: vec![0.5],
        table: [("z".to_owned(), 1), ("a".to_owned(), 2)]
            .into_iter()
            .collect(),
    });
    let v = job.to_value();
    assert_eq!(v.field("name"), Some(&fleche::Value::Str("a".into())));
    assert_eq!(
        v.field("weights"),
        Some(&fleche::Value::Seq(vec![fleche::Value::Float(0.5)]))
    );
    assert_eq!(
        v.field("mode").map(ToString::to_string).as_deref(),
        Some("Exact({tolerance: 3})")
    );
    assert_eq!(
        v.field("table").map(ToString::to_string).as_deref(),
        Some("{\"a\": 2, \"z\": 1}")
    );
}
