//! `fleche.toml` (F01–F10). Every case runs `fleche-probe` in its own process, with its own
//! `HOME`, working directory and environment.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

const PROBE: &str = env!("CARGO_BIN_EXE_fleche-probe");

/// A temporary world: `<tmp>/home` is `HOME`; files are written relative to `<tmp>`.
struct World {
    tmp: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl World {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir_all(tmp.path().join("home")).unwrap_or_else(|e| panic!("{e}"));
        Self {
            tmp,
            env: Vec::new(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn home(&self) -> PathBuf {
        self.path("home")
    }

    fn write(&self, rel: &str, text: &str) -> &Self {
        let p = self.path(rel);
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        }
        fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
        self
    }

    fn set(&mut self, k: &str, v: &str) -> &mut Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    /// Runs the probe in `cwd` (relative to the world) for `names`; returns its output.
    fn probe(&self, cwd: &str, names: &[&str]) -> String {
        self.probe_with_stderr(cwd, names).0
    }

    /// Like `probe`, also returning what the probe printed on stderr.
    fn probe_with_stderr(&self, cwd: &str, names: &[&str]) -> (String, String) {
        let dir = self.path(cwd);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new(PROBE);
        cmd.args(names)
            .current_dir(&dir)
            .env_clear()
            .env("HOME", self.home())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {PROBE}: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    }
}

/// The line the probe printed for `name`.
fn line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{name} =>")) || l.starts_with(&format!("{name} !!")))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{out}"))
}

const MEMORY: &str = "values.type = \"memory\"\ncalls.type = \"memory\"\n";

#[test]
fn f01_no_config_is_memory_with_runtime() {
    let w = World::new();
    let out = w.probe("home/project", &["default", "memory"]);
    assert!(out.contains("files: \n"), "{out}");
    assert!(out.contains("metadata: Runtime"), "{out}");
    assert!(line(&out, "default").contains("name: \"memory\""), "{out}");
}

#[test]
fn f03_closer_file_wins_whole_tables_and_disjoint_ones_merge() {
    let w = World::new();
    w.write(
        "home/fleche.toml",
        &format!("[a]\n{MEMORY}max_size = 5\n[b]\n{MEMORY}"),
    );
    w.write("home/proj/fleche.toml", "[a]\ntemplate = \"void\"\n");
    let out = w.probe("home/proj/sub", &["a", "b"]);
    let a = line(&out, "a");
    assert!(
        a.contains("VoidValues") && !a.contains("max_size: Some"),
        "closer table wins whole: {a}"
    );
    assert!(line(&out, "b").contains("MemoryValues"), "{out}");
    assert!(
        out.contains("home/proj/fleche.toml, ") && out.contains("home/fleche.toml"),
        "{out}"
    );
}

#[test]
fn f04_xdg_is_the_lowest_layer_and_works_alone() {
    let mut w = World::new();
    w.write("home/.config/fleche/cache.toml", &format!("[x]\n{MEMORY}"));
    assert!(line(&w.probe("home", &["x"]), "x").contains("MemoryValues"));
    w.set("XDG_CONFIG_HOME", "");
    assert!(
        line(&w.probe("home", &["x"]), "x").contains("MemoryValues"),
        "empty means unset"
    );
    w.write(
        "xdg/fleche/cache.toml",
        &format!("[y]\n{MEMORY}[x]\ntemplate = \"void\"\n"),
    );
    w.set("XDG_CONFIG_HOME", &w.path("xdg").display().to_string());
    w.write("home/fleche.toml", &format!("[x]\n{MEMORY}"));
    let out = w.probe("home", &["x", "y"]);
    assert!(
        line(&out, "x").contains("MemoryValues"),
        "a fleche.toml beats XDG: {out}"
    );
    assert!(line(&out, "y").contains("MemoryValues"), "{out}");
}

#[test]
fn f05_the_walk_stops_at_home() {
    let w = World::new();
    w.write("fleche.toml", &format!("[above]\n{MEMORY}"));
    let out = w.probe("home/a/b", &["above"]);
    assert!(
        line(&out, "above").contains("unknown cache `above`"),
        "{out}"
    );
}

#[test]
fn f06_root_true_stops_the_walk() {
    let mut w = World::new();
    w.set("XDG_CONFIG_HOME", &w.path("xdg").display().to_string());
    w.write("xdg/fleche/cache.toml", &format!("[xdg]\n{MEMORY}"));
    w.write("home/fleche.toml", &format!("[far]\n{MEMORY}"));
    w.write(
        "home/proj/fleche.toml",
        &format!("[default]\nroot = true\n[mid]\n{MEMORY}"),
    );
    w.write("home/proj/sub/fleche.toml", &format!("[near]\n{MEMORY}"));
    let out = w.probe("home/proj/sub", &["near", "mid", "far", "xdg"]);
    assert!(line(&out, "near").contains("=>"), "{out}");
    assert!(line(&out, "mid").contains("=>"), "{out}");
    assert!(line(&out, "far").contains("unknown cache"), "{out}");
    assert!(line(&out, "xdg").contains("unknown cache"), "{out}");
    w.write(
        "home/proj/fleche.toml",
        &format!("[default]\nroot = false\n[mid]\n{MEMORY}"),
    );
    let out = w.probe("home/proj/sub", &["far", "xdg"]);
    assert!(
        line(&out, "far").contains("=>") && line(&out, "xdg").contains("=>"),
        "{out}"
    );
}

#[cfg(feature = "sqlite")]
#[test]
fn f07_relative_paths_resolve_against_their_file() {
    let w = World::new();
    w.write(
        "home/proj/fleche.toml",
        "[rel]\nvalues = { type = \"msgpack\", root = \"cache/v\" }\ncalls = { type = \"msgpack\", root = \"~/c\" }\n\
         [abs]\ntemplate = \"msgpack\"\nroot = \"/tmp/fleche-f07-abs\"\n\
         [db]\nvalues.type = \"memory\"\ncalls = { type = \"sql\", url = \"sqlite:///db/calls.db\" }\n\
         [mem]\ntemplate = \"sql\"\nurl = \"sqlite:///:memory:\"\n",
    );
    let out = w.probe("home/proj/sub/deeper", &["rel", "abs", "db", "mem"]);
    let rel = line(&out, "rel");
    let expected_values = w.path("home/proj/cache/v");
    let expected_calls = w.home().join("c");
    assert!(rel.contains(&format!("{:?}", expected_values)), "{rel}");
    assert!(rel.contains(&format!("{:?}", expected_calls)), "{rel}");
    assert!(expected_values.is_dir(), "created");
    assert!(
        line(&out, "abs").contains("\"/tmp/fleche-f07-abs/values\""),
        "{out}"
    );
    let _ = fs::remove_dir_all("/tmp/fleche-f07-abs");
}

fn bad(text: &str) -> String {
    let w = World::new();
    w.write("home/fleche.toml", text);
    let out = w.probe("home", &["x"]);
    line(&out, "x").to_owned()
}

#[test]
fn f08_bad_configs_name_the_file_and_the_key() {
    let mut cases: Vec<(&str, &str)> = vec![
        ("[x\nvalues.type = 1", "fleche.toml: TOML parse error"),
        (
            "[x]\nvalues.type = \"redis\"\ncalls.type = \"memory\"",
            "fleche.toml: `x.values.type`: unknown storage type `redis`",
        ),
        (
            "[x]\nvalues.type = \"memory\"\ncalls = { type = \"memory\", remaining_depth = 1 }",
            "`x.calls.remaining_depth`: `remaining_depth` applies to `values`",
        ),
        (
            "[x]\nvalues.type = \"msgpack\"\ncalls.type = \"memory\"",
            "`x.values.root`: missing",
        ),
        (
            "[x]\nvalues.type = \"memory\"\ncalls.type = \"memory\"\nmax_size = \"3\"",
            "`x.max_size`: expected a non-negative integer",
        ),
        (
            "[x]\nvalues.type = \"memory\"\ncalls.tpye = \"memory\"",
            "`x.calls.tpye`: unknown key",
        ),
        (
            "[x]\ntemplate = \"msgpack\"\nroot = \"r\"\nlock_timeout = -1",
            "`x.lock_timeout`: expected a number of seconds, not negative, found -1",
        ),
        ("[x]\nvalues.type = \"memory\"", "`x.calls`: missing"),
    ];
    #[cfg(not(feature = "zstd"))]
    cases.push((
        "[x]\ntemplate = \"msgpack\"\nroot = \"r\"\ncompress = true",
        "`x.compress`: compression needs fleche built with the `zstd` feature",
    ));
    #[cfg(feature = "hdf5")]
    cases.push((
        "[x]\ntemplate = \"hdf5\"\nroot = \"h\"\nprefix_length = 99",
        "`x.prefix_length`: expected an integer from 1 to 64, found 99",
    ));
    #[cfg(feature = "hdf5")]
    cases.push((
        "[x]\nvalues.type = \"hdf5\"\ncalls.type = \"memory\"",
        "`x.values.root`: missing: an HDF5 storage needs a `root`",
    ));
    #[cfg(not(feature = "hdf5"))]
    cases.push((
        "[x]\nvalues.type = \"hdf5\"\ncalls.type = \"memory\"",
        "`x.values.type`: type `hdf5` needs fleche built with the `hdf5` feature",
    ));
    #[cfg(feature = "sqlite")]
    cases.extend([
        (
            "[x]\nvalues.type = \"memory\"\ncalls.type = \"sql\"",
            "`x.calls.url`: missing",
        ),
        (
            "[x]\nvalues.type = \"memory\"\ncalls = { type = \"sql\", url = \"mysql://h\" }",
            "`x.calls.url`: `mysql://h` is not an SQLite URL",
        ),
    ]);
    #[cfg(not(feature = "sqlite"))]
    cases.push((
        "[x]\nvalues.type = \"memory\"\ncalls.type = \"sql\"",
        "`x.calls.type`: type `sql` needs fleche built with the `sqlite` feature",
    ));
    for (text, expected) in cases {
        let got = bad(text);
        assert!(
            got.contains(expected),
            "for {text:?}\n  expected {expected:?}\n  got {got:?}"
        );
        assert!(got.contains("home/fleche.toml"), "names the file: {got}");
    }
}

#[test]
fn reserved_names_cannot_be_redefined() {
    let w = World::new();
    w.write("home/fleche.toml", "[memory]\ntemplate = \"void\"\n");
    let out = w.probe("home", &["memory"]);
    assert!(
        out.contains("problem: cache `memory` in ")
            && out.contains("home/fleche.toml: `memory`: `memory` is a reserved cache name"),
        "{out}"
    );
    assert!(
        line(&out, "memory").contains("MemoryValues"),
        "the reserved cache still works: {out}"
    );
}

#[cfg(all(feature = "sqlite", feature = "hdf5", feature = "zstd"))]
#[test]
fn f09_shapes() {
    let w = World::new();
    w.write(
        "home/fleche.toml",
        &format!(
            "[ro]\n{MEMORY}read_only = true\n\
             [limited]\n{MEMORY}max_size = 100\n\
             [both]\n{MEMORY}read_only = true\nmax_size = 7\n\
             [[stack]]\n{MEMORY}\n[[stack]]\ntemplate = \"msgpack\"\nroot = \"store\"\ncompress = true\n\
             [[shared.pool]]\n{MEMORY}\n[[shared.pool]]\n{MEMORY}\n\
             [files]\ntemplate = \"msgpack\"\nroot = \"r\"\n\
             [sqlite]\ntemplate = \"sql\"\nroot = \"s\"\n\
             [h5]\ntemplate = \"bagofholding_hdf\"\nroot = \"h\"\nprefix_length = 3\n\
             [deep]\nvalues = {{ type = \"memory\", remaining_depth = 1 }}\ncalls.type = \"memory\"\n\
             [default.cache]\n{MEMORY}max_size = 3\n"
        ),
    );
    let out = w.probe(
        "home",
        &[
            "ro", "limited", "both", "stack", "shared", "files", "default",
        ],
    );
    assert!(line(&out, "ro").contains("read_only: true"), "{out}");
    assert!(
        line(&out, "limited").contains("max_size: Some(100)"),
        "{out}"
    );
    let both = line(&out, "both");
    assert!(
        both.contains("read_only: true") && both.contains("max_size: Some(7)"),
        "{both}"
    );
    let stack = line(&out, "stack");
    assert!(
        stack.contains("stack: [")
            && stack.contains("MemoryValues")
            && stack.contains("FileValues"),
        "{stack}"
    );
    assert!(stack.contains("compress: Some(3)"), "{stack}");
    assert!(line(&out, "shared").contains("pool: ["), "{out}");
    let files = line(&out, "files");
    assert!(
        files.contains(&format!("{:?}", w.home().join("r/values"))),
        "{files}"
    );
    assert!(
        files.contains(&format!("{:?}", w.home().join("r/calls"))),
        "{files}"
    );
    assert!(line(&out, "default").contains("max_size: Some(3)"), "{out}");
}

#[test]
fn f10_environment_overrides() {
    let mut w = World::new();
    w.write(
        "home/fleche.toml",
        &format!(
            "[default]\ncache = \"a\"\n[a]\n{MEMORY}max_size = 1\n[b]\n{MEMORY}max_size = 2\n"
        ),
    );
    assert!(line(&w.probe("home", &["default"]), "default").contains("max_size: Some(1)"));
    w.set("FLECHE_CACHE", "b");
    assert!(line(&w.probe("home", &["default"]), "default").contains("max_size: Some(2)"));
    w.write(
        "elsewhere/explicit.toml",
        &format!("[c]\n{MEMORY}max_size = 9\n"),
    );
    w.set(
        "FLECHE_CONFIG",
        &w.path("elsewhere/explicit.toml").display().to_string(),
    );
    w.set("FLECHE_CACHE", "c");
    let out = w.probe("home", &["default", "a"]);
    assert!(line(&out, "default").contains("max_size: Some(9)"), "{out}");
    assert!(
        line(&out, "a").contains("unknown cache"),
        "discovery is skipped: {out}"
    );
    assert!(out.contains("explicit.toml"), "{out}");
}

#[test]
fn secret_keys_come_from_the_file_or_the_environment() {
    let mut w = World::new();
    w.write(
        "home/fleche.toml",
        "[signed]\ntemplate = \"msgpack\"\nroot = \"s\"\nsecret_key = [\"00112233445566778899aabbccddeeff\"]\n\
         [plain]\ntemplate = \"msgpack\"\nroot = \"p\"\n",
    );
    let out = w.probe("home", &["signed", "plain"]);
    assert!(
        line(&out, "signed").contains("keys: [SigningKey(..)]"),
        "{out}"
    );
    assert!(line(&out, "plain").contains("keys: []"), "{out}");
    w.set(
        "FLECHE_SECRET_KEY",
        "ffeeddccbbaa99887766554433221100, 0123456789abcdef0123456789abcdef",
    );
    let out = w.probe("home", &["plain"]);
    assert!(
        line(&out, "plain").contains("keys: [SigningKey(..), SigningKey(..)]"),
        "{out}"
    );
    w.set("FLECHE_SECRET_KEY", "not-hex");
    let out = w.probe("home", &["plain"]);
    assert!(line(&out, "plain").contains("FLECHE_SECRET_KEY"), "{out}");
    assert!(!out.contains("not-hex"), "a secret is never printed: {out}");
}

#[test]
fn unknown_names_list_caches_and_files() {
    let w = World::new();
    w.write("home/fleche.toml", &format!("[fast]\n{MEMORY}"));
    let out = w.probe("home", &["slow"]);
    let l = line(&out, "slow");
    assert!(l.contains("memory, void, default, fast"), "{l}");
    assert!(
        l.contains(&w.home().join("fleche.toml").display().to_string()),
        "{l}"
    );
}

#[test]
fn a_bad_section_fails_only_itself() {
    let w = World::new();
    w.write(
        "home/fleche.toml",
        &format!("[good]\n{MEMORY}[bad]\ntemplate = \"msgpack\"\ncompress = \"yes\"\n"),
    );
    let out = w.probe("home", &["good", "bad", "with:bad", "with:good"]);
    assert!(line(&out, "good").contains("=> Cache"), "{out}");
    let file = w.home().join("fleche.toml").display().to_string();
    let expected = format!("cache `bad` in {file}: `bad.root`: missing");
    assert!(line(&out, "bad").contains(&expected), "{out}");
    assert!(
        line(&out, "bad").contains("and 1 more problems"),
        "the other problem is counted: {out}"
    );
    assert!(line(&out, "with:bad try").contains(&expected), "{out}");
    assert!(
        line(&out, "with:bad panic").contains(&format!("fleche::with_cache: {expected}")),
        "{out}"
    );
    assert!(line(&out, "with:good try").contains("=> ok"), "{out}");
    assert!(
        out.contains(&format!(
            "problem: cache `bad` in {file}: `bad.compress`: expected true, false or a zstd level"
        )),
        "every problem is listed: {out}"
    );
}

#[test]
fn a_syntax_error_fails_only_its_file() {
    let w = World::new();
    w.write("home/fleche.toml", &format!("[far]\n{MEMORY}"));
    w.write("home/proj/fleche.toml", "[near\nvalues.type = 1\n");
    let out = w.probe("home/proj", &["far", "near"]);
    assert!(line(&out, "far").contains("=> Cache"), "{out}");
    let near = line(&out, "near");
    assert!(
        near.contains("proj/fleche.toml: TOML parse error at line 1"),
        "the broken file and the line: {near}"
    );
}

#[test]
fn a_broken_default_cache_warns_once_and_uses_memory() {
    let w = World::new();
    w.write(
        "home/fleche.toml",
        "[default]\ncache = \"bad\"\n[bad]\ntemplate = \"msgpack\"\n",
    );
    let (out, err) = w.probe_with_stderr("home", &["call"]);
    assert!(
        line(&out, "call").contains("runs: 1"),
        "the memory cache hits: {out}"
    );
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("fleche: warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {err}");
    assert!(
        warnings[0].contains("memory cache") && warnings[0].contains("`bad.root`: missing"),
        "names the file and the key: {err}"
    );
    assert!(warnings[0].contains("home/fleche.toml"), "{err}");
}

#[test]
fn default_metadata_is_honoured() {
    let w = World::new();
    let out = w.probe("home", &["call"]);
    assert!(
        line(&out, "call").contains("metadata: Some([\"runtime\"])"),
        "{out}"
    );
    w.write("home/fleche.toml", "[default]\nmetadata = []\n");
    let out = w.probe("home", &["call"]);
    assert!(
        line(&out, "call").contains("metadata: Some([])"),
        "none: {out}"
    );
    w.write(
        "home/fleche.toml",
        "[default]\nmetadata = [\"Runtime\", \"Tags\"]\n",
    );
    let out = w.probe("home", &["call"]);
    assert!(out.contains("metadata: Runtime, Tags"), "{out}");
    assert!(
        line(&out, "call").contains("metadata: Some([\"runtime\"])"),
        "{out}"
    );
    // Outside a git repository `Git` records nothing; `Lineage` nothing at top level.
    w.write(
        "home/fleche.toml",
        "[default]\nmetadata = [\"Environment\", \"Git\", \"Lineage\"]\n",
    );
    let out = w.probe("home", &["call"]);
    assert!(
        line(&out, "call").contains("metadata: Some([\"environment\"])"),
        "{out}"
    );
    w.write("home/fleche.toml", "[default]\nmetadata = [\"Bogus\"]\n");
    let out = w.probe("home", &["call"]);
    assert!(
        out.contains("`default.metadata[0]`: unknown metadata `Bogus`"),
        "{out}"
    );
}

#[test]
#[cfg(feature = "sqlite")]
fn a_bare_sqlite_path_resolves_against_its_file() {
    let w = World::new();
    w.write(
        "home/proj/fleche.toml",
        "[db]\nvalues.type = \"memory\"\ncalls = { type = \"sql\", url = \"fleche/calls.db\" }\n",
    );
    let out = w.probe("home/proj/sub", &["db"]);
    assert!(line(&out, "db").contains("SqlCalls"), "{out}");
    assert!(w.path("home/proj/fleche/calls.db").is_file(), "{out}");
}

#[test]
fn caches_open_on_first_use() {
    let w = World::new();
    w.write(
        "home/fleche.toml",
        &format!("[files]\ntemplate = \"msgpack\"\nroot = \"r\"\n[other]\n{MEMORY}"),
    );
    let out = w.probe("home", &["other"]);
    assert!(line(&out, "other").contains("=> Cache"), "{out}");
    assert!(
        !w.path("home/r").exists(),
        "an unused cache creates nothing"
    );
    w.probe("home", &["files"]);
    assert!(w.path("home/r/values").is_dir());
}

#[test]
#[cfg(feature = "sqlite")]
fn a_signing_key_for_a_storage_that_cannot_sign_warns() {
    let mut w = World::new();
    w.write(
        "home/fleche.toml",
        "[db]\ntemplate = \"sql\"\nroot = \"s\"\n[files]\ntemplate = \"msgpack\"\nroot = \"f\"\n",
    );
    w.set("FLECHE_SECRET_KEY", "00112233445566778899aabbccddeeff");
    let (_, err) = w.probe_with_stderr("home", &["db", "files"]);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("cannot sign")).collect();
    assert_eq!(warnings.len(), 1, "only the SQLite cache: {err}");
    assert!(
        warnings[0].contains("cache `db`") && warnings[0].contains("`db`"),
        "{err}"
    );
}

#[test]
fn verify_digest_is_configured_per_layer() {
    let w = World::new();
    w.write(
        "home/fleche.toml",
        &format!(
            "[checked]\n{MEMORY}verify = \"digest\"\n[plain]\n{MEMORY}verify = \"checksum\"\n[bad]\n{MEMORY}verify = \"sometimes\"\n"
        ),
    );
    let out = w.probe("home", &["checked", "plain", "bad"]);
    assert!(
        line(&out, "checked").contains("verify_digest: true"),
        "{out}"
    );
    assert!(
        line(&out, "plain").contains("verify_digest: false"),
        "{out}"
    );
    assert!(
        line(&out, "bad").contains("`bad.verify`: expected \"checksum\""),
        "{out}"
    );
}

#[test]
fn fleche_disable_runs_every_memoized_call_uncached() {
    let mut w = World::new();
    w.write(
        "home/fleche.toml",
        "[default]\ncache = \"disk\"\n[disk]\ntemplate = \"msgpack\"\nroot = \"cache\"\n",
    );
    w.set("FLECHE_DISABLE", "1");
    let out = w.probe("home", &["call"]);
    assert!(
        line(&out, "call").contains("runs: 2, metadata: None"),
        "both calls ran, nothing stored: {out}"
    );
    w.set("FLECHE_DISABLE", "0");
    let out = w.probe("home", &["call"]);
    assert!(
        line(&out, "call").contains("runs: 1"),
        "enabled again: {out}"
    );
}
