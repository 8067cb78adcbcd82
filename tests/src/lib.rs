//! Cross-crate tests for fleche live in `tests/`. This library holds what they share with the
//! crate's helper binaries (`fleche-stress`, `fleche-probe`), which the multi-process and
//! configuration tests start.

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
