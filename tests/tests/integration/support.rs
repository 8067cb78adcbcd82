//! Shared test support: a call counter, a capture of `tracing` warnings, and sweeps run by the
//! `fleche-stress` helper in several processes.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Counts how often a body ran.
#[derive(Default)]
pub(crate) struct Counter(AtomicUsize);

impl Counter {
    pub(crate) const fn new() -> Self {
        Self(AtomicUsize::new(0))
    }
    pub(crate) fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Runs `f` with a subscriber that records every event at WARN or above, and returns the text.
pub(crate) fn capture_warnings<R>(f: impl FnOnce() -> R) -> (R, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let r = tracing::subscriber::with_default(subscriber, f);
    let text =
        String::from_utf8_lossy(&buf.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned();
    (r, text)
}

/// The helper binary the multi-process tests start.
pub(crate) const STRESS: &str = env!("CARGO_BIN_EXE_fleche-stress");

/// Runs `fleche-stress COMMAND TARGET CALLS SEED` in `processes` processes at once (seeds
/// `0..processes`) and asserts that each succeeds with nothing on stderr (no error, no warning).
pub(crate) fn sweep_in_processes(
    command: &str,
    target: &std::path::Path,
    calls: u32,
    processes: u32,
) {
    let target = target.display().to_string();
    let children: Vec<_> = (0..processes)
        .map(|seed| {
            std::process::Command::new(STRESS)
                .args([command, &target, &calls.to_string(), &seed.to_string()])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {STRESS}: {e}"))
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{command}: {stderr}");
        assert!(
            out.stderr.is_empty(),
            "{command}: no errors or warnings: {stderr}"
        );
    }
}
