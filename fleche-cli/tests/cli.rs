//! The `fleche` command line (F08: `fleche config check` reports a broken file and key).

#![allow(clippy::panic)]

use std::process::Command;

const FLECHE: &str = env!("CARGO_BIN_EXE_fleche");

fn check(dir: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(FLECHE)
        .args(["config", "check"])
        .current_dir(dir)
        .env("HOME", dir)
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
