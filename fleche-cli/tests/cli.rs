//! The `fleche` command line (F08: `fleche config check` reports every broken file and key).

#![allow(clippy::panic)]

use std::process::Command;

const FLECHE: &str = env!("CARGO_BIN_EXE_fleche");

fn check(dir: &std::path::Path) -> (bool, String, String) {
    check_in(dir, dir)
}

/// Runs `fleche config check` in `cwd` with `home` as `HOME`.
fn check_in(cwd: &std::path::Path, home: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(FLECHE)
        .args(["config", "check"])
        .current_dir(cwd)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("FLECHE_CONFIG")
        .env_remove("FLECHE_CACHE")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {FLECHE}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_check_reports_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("fleche.toml"),
        "[fast]\nvalues.type = \"memory\"\ncalls.type = \"memory\"\n[slow]\ntemplate = \"msgpack\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (ok, _, err) = check(dir.path());
    assert!(!ok);
    assert!(err.contains("fleche.toml: `slow.root`: missing"), "{err}");
    assert!(err.contains("cache `slow` in "), "{err}");

    std::fs::write(
        dir.path().join("fleche.toml"),
        "[default]\ncache = \"fast\"\n[fast]\nvalues.type = \"memory\"\ncalls.type = \"memory\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (ok, out, err) = check(dir.path());
    assert!(ok, "{err}");
    assert!(
        out.contains("caches: fast")
            && out.contains("default cache: fast")
            && out.ends_with("ok\n"),
        "{out}"
    );
}

fn write(path: &std::path::Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
#[cfg(feature = "hdf5")]
fn config_check_reports_every_problem_of_every_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(
        &dir.path().join("fleche.toml"),
        "[a]\ntemplate = \"msgpack\"\ncompress = 99\n[b]\nvalues.type = \"redis\"\ncalls.type = \"memory\"\n",
    );
    write(
        &dir.path().join("sub/fleche.toml"),
        "[c]\ntemplate = \"hdf5\"\nroot = \"h\"\nprefix_length = 0\n[d]\ntemplate = \"memory\"\n",
    );
    let (ok, out, err) = check_in(&dir.path().join("sub"), dir.path());
    assert!(!ok, "{out}");
    for expected in [
        "`a.root`: missing",
        "`a.compress`: expected true, false or a zstd level",
        "`b.values.type`: unknown storage type `redis`",
        "`c.prefix_length`: expected an integer from 1 to 64, found 0",
    ] {
        assert!(err.contains(expected), "{expected:?} in {err}");
    }
    assert!(err.contains("4 problems found"), "{err}");
    assert!(out.contains("caches: a, b, c, d"), "{out}");
}

#[test]
fn config_check_fails_when_the_default_cache_is_not_defined() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(
        &dir.path().join("fleche.toml"),
        "[default]\ncache = \"fsat\"\n[fast]\ntemplate = \"memory\"\n",
    );
    let (ok, _, err) = check(dir.path());
    assert!(!ok);
    assert!(
        err.contains("`default.cache`: names the cache `fsat`, which is not defined; defined: memory, void, default, fast"),
        "{err}"
    );
    write(
        &dir.path().join("fleche.toml"),
        "[default]\ncache = \"void\"\n",
    );
    let (ok, out, err) = check(dir.path());
    assert!(ok, "{err}");
    assert!(out.ends_with("ok\n"), "{out}");
}
