//! A cached command's hit: `fleche run -- true` next to `bkt --ttl 1d -- true`, both served
//! from their persistent caches, each a whole process start to exit.
//!
//! `BKT=$(scripts/install-bkt) cargo bench -p fleche-cli --bench run_hit`. Without `BKT` the bkt
//! row is skipped. Compare the rows of one run: both spawn a process that reads one cached
//! entry and replays it.

#![allow(clippy::panic)] // a benchmark that cannot set up has nothing to measure

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use divan::Bencher;

fn main() {
    divan::main();
}

struct Scratch {
    dir: tempfile::TempDir,
}

fn scratch() -> &'static Scratch {
    static S: OnceLock<Scratch> = OnceLock::new();
    S.get_or_init(|| Scratch {
        dir: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")),
    })
}

fn fleche_cmd() -> Command {
    let s = scratch();
    let mut c = Command::new(env!("CARGO_BIN_EXE_fleche"));
    c.args(["run", "--", "true"])
        .current_dir(s.dir.path())
        .env("XDG_CACHE_HOME", s.dir.path().join("xdg"))
        .env("HOME", s.dir.path())
        .env_remove("FLECHE_LOG")
        .env_remove("FLECHE_CONFIG")
        .env_remove("FLECHE_CACHE")
        .env_remove("FLECHE_DISABLE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn bkt_cmd(bkt: &PathBuf) -> Command {
    let s = scratch();
    let mut c = Command::new(bkt);
    c.args(["--ttl", "1d", "--", "true"])
        .current_dir(s.dir.path())
        .env("BKT_CACHE_DIR", s.dir.path().join("bkt"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn run(mut c: Command) {
    let status = c.status().unwrap_or_else(|e| panic!("spawn: {e}"));
    assert!(status.success(), "{c:?}: {status}");
}

#[divan::bench(sample_count = 200)]
fn fleche_run_hit(b: Bencher<'_, '_>) {
    run(fleche_cmd()); // the miss that stores it
    b.bench(|| run(fleche_cmd()));
}

#[divan::bench(sample_count = 200)]
fn bkt_hit(b: Bencher<'_, '_>) {
    let Some(bkt) = std::env::var_os("BKT").map(PathBuf::from) else {
        eprintln!("BKT is not set: run `BKT=$(scripts/install-bkt) cargo bench ...` for this row");
        return;
    };
    run(bkt_cmd(&bkt));
    b.bench(|| run(bkt_cmd(&bkt)));
}

/// The floor: spawning `true` itself.
#[divan::bench(sample_count = 200)]
fn spawn_true(b: Bencher<'_, '_>) {
    b.bench(|| {
        run({
            let mut c = Command::new("true");
            c.stdin(Stdio::null()).stdout(Stdio::null());
            c
        })
    });
}
