//! Integration tests for fleche; scenario IDs (K01, ...) refer to the acceptance scenarios.
mod smoke {
    use fleche::{Key, memoize};
    use serde::{Deserialize, Serialize};
    use std::sync::atomic::{AtomicUsize, Ordering};

    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[derive(Key, Serialize, Deserialize, Debug, PartialEq)]
    struct Spec {
        steps: u32,
        dt: f64,
    }

    #[memoize]
    fn f(x: u64) -> u64 {
        RUNS.fetch_add(1, Ordering::SeqCst);
        x * 2
    }

    #[memoize(version = 2, name = "smoke.g", hash_code)]
    fn g(spec: &Spec, #[ignore] _p: &mut Vec<u8>) -> Result<Vec<f64>, String> {
        Ok(vec![spec.dt; spec.steps as usize])
    }

    #[test]
    fn smoke() {
        let c = fleche::Cache::memory();
        fleche::with_cache(&c, || {
            assert_eq!(f(2), 4);
            assert_eq!(f(2), 4);
            assert!(f::contains(2));
            let mut p = Vec::new();
            let s = Spec { steps: 2, dt: 0.5 };
            assert_eq!(g(&s, &mut p), Ok(vec![0.5, 0.5]));
            assert_eq!(g::load(&s, &mut p), Some(vec![0.5, 0.5]));
        });
        assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    }
}
