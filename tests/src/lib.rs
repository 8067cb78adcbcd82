//! Cross-crate tests for fleche live in `tests/`. This library holds what they share with the
//! crate's helper binaries (`fleche-stress`, `fleche-probe`), which the multi-process and
//! configuration tests start.
//!
//! # Scenario IDs
//!
//! Test names start with the ID of the acceptance scenario they check:
//!
//! | ID | scenario | ID | scenario |
//! |---|---|---|---|
//! | K01 | basic hit | C01 | read-only cache |
//! | K02 | equal inputs give one key, whatever the container | C02 | stack back-fill |
//! | K03 | stable keys (golden vectors) | C03 | stack over a read-only first layer |
//! | K04 | `version` invalidates | C04 | pool |
//! | K05 | the name is in the key | C05 | `max_size` |
//! | K06 | `hash_code` | C06 | void |
//! | K07 | `#[ignore]`d arguments | C07 | overwrite leaves one record |
//! | K08 | errors and panics are not cached | C08 | transfer |
//! | K09 | inputs sealed before the body runs | C09 | garbage collection |
//! | K10 | a failing cache degrades to uncached | S01 | tampered and signed entries |
//! | K11 | compile errors (trybuild) | S02 | corrupt entries are misses |
//! | K12 | methods, generics, `async fn` | S03 | a writer killed mid-write |
//! | K13 | single-flight | S04 | compression detected on read |
//! | K14 | companion helpers | S05 | destructuring (`remaining_depth`) |
//! | F01 | no configuration | S06 | HDF5 datasets h5py reads |
//! | F02 | reserved names | S07 | many processes on one cache |
//! | F03 | the closer file wins whole tables | S08 | SQL under many threads |
//! | F04 | the XDG file is the lowest layer | Q01 | query by argument |
//! | F05 | the walk stops at `$HOME` | Q02 | query by metadata |
//! | F06 | `root = true` stops the walk | Q03 | take, skip, order, only, count |
//! | F07 | relative paths resolve against their file | Q04 | metadata kinds |
//! | F08 | bad configuration names the file and the key | | |
//! | F09 | shapes: read-only, limits, stacks, pools, inline default | | |
//! | F10 | environment overrides | | |

/// The memoized functions the multi-process tests run in several processes: the helper binary
/// and the test that checks its work share these definitions, hence their identities.
pub mod stress {
    use fleche::memoize;

    /// A cheap call, for sweeps of many keys.
    #[memoize(name = "stress.square")]
    pub fn square(i: u64) -> u64 {
        i * i
    }

    /// 4 MiB of data per entry, so that a writer killed at a random moment is most likely
    /// killed in the middle of a write.
    #[memoize(name = "stress.block")]
    pub fn block(i: u64) -> Vec<f64> {
        (0..512 * 1024u64)
            .map(|j| (i * 1_000_003 + j) as f64)
            .collect()
    }
}
