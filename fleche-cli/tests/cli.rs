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

// ---------------------------------------------------------------------------------------------
// Commands over a cache: `ls`, `show`, `cat`, `stats`, `evict`, `gc`, `verify`, `transfer`.

use fleche::Value;
use fleche::storage::{
    CallRecord, CallStorage, Digest, FileCalls, FileOptions, FileValues, ValueStorage,
};

/// A directory with a fleche.toml defining `runs` (msgpack, the default) and `copy` (msgpack),
/// and three calls of `sim.run` plus one of `sim.prep` (its parent) stored in `runs`, with fixed
/// keys and times.
struct Fixture {
    dir: tempfile::TempDir,
}

fn key(n: u8) -> Digest {
    Digest::from_bytes(*blake3::hash(&[n]).as_bytes())
}

fn runtime(start: f64, wall: f64) -> Value {
    Value::Struct(vec![
        ("start".into(), Value::Float(start)),
        ("stop".into(), Value::Float(start + wall)),
        ("wall_time".into(), Value::Float(wall)),
    ])
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write(
            &dir.path().join("fleche.toml"),
            "[default]\ncache = \"runs\"\n[runs]\ntemplate = \"msgpack\"\nroot = \"runs\"\n[copy]\ntemplate = \"msgpack\"\nroot = \"copy\"\n",
        );
        let values = FileValues::open(dir.path().join("runs/values"), FileOptions::new())
            .unwrap_or_else(|e| panic!("{e}"));
        let calls = FileCalls::open(dir.path().join("runs/calls"), FileOptions::new())
            .unwrap_or_else(|e| panic!("{e}"));
        let store = |k: u8,
                     function: &str,
                     args: Vec<(&str, Value)>,
                     result: Vec<f64>,
                     start: f64,
                     parent: Option<u8>| {
            let bytes =
                fleche::storage::encoding::to_vec(&result).unwrap_or_else(|e| panic!("{e}"));
            let digest = Digest::from_bytes(*blake3::hash(&bytes).as_bytes());
            values
                .save(&digest, &bytes)
                .unwrap_or_else(|e| panic!("{e}"));
            let mut r = CallRecord::new(key(k), function, digest);
            r.arguments = args.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
            r.metadata.insert("runtime".into(), runtime(start, 0.25));
            if let Some(p) = parent {
                r.metadata.insert(
                    "lineage".into(),
                    Value::Struct(vec![
                        ("parent".into(), Value::Str(key(p).to_string())),
                        ("function".into(), Value::Str("sim.prep".into())),
                    ]),
                );
            }
            if k == 2 {
                r.metadata.insert(
                    "tags".into(),
                    Value::Map(vec![(
                        Value::Str("project".into()),
                        Value::Str("alpha".into()),
                    )]),
                );
            }
            calls.save(r).unwrap_or_else(|e| panic!("{e}"));
        };
        store(
            0,
            "sim.prep",
            vec![("n", Value::Int(3))],
            vec![0.5],
            1_796_245_000.0,
            None,
        );
        store(
            1,
            "sim.run",
            vec![
                ("steps", Value::Int(100)),
                ("label", Value::Str("a,b".into())),
            ],
            vec![1.0, 2.0],
            1_796_245_001.0,
            Some(0),
        );
        store(
            2,
            "sim.run",
            vec![
                ("steps", Value::Int(200)),
                ("label", Value::Str("b".into())),
            ],
            vec![3.0],
            1_796_245_002.0,
            Some(0),
        );
        store(
            3,
            "sim.run",
            vec![
                ("steps", Value::Int(100)),
                ("label", Value::Str("c".into())),
            ],
            vec![1.0, 2.0],
            1_796_245_003.0,
            None,
        );
        Self { dir }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs `fleche ARGS` here: (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(FLECHE)
            .args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("FLECHE_CONFIG")
            .env_remove("FLECHE_CACHE")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {FLECHE}: {e}"));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "fleche {args:?}: {err}");
        out
    }
}

fn short(k: u8) -> String {
    key(k).to_string()[..12].to_owned()
}

#[test]
fn ls_prints_an_aligned_table_with_a_column_per_argument() {
    let f = Fixture::new();
    let out = f.ok(&["ls", "--fn", "sim.run"]);
    let k = |n| short(n);
    let r = |v: &[f64]| {
        let bytes = fleche::storage::encoding::to_vec(v).unwrap_or_else(|e| panic!("{e}"));
        blake3::hash(&bytes).to_hex()[..12].to_owned()
    };
    let expected = format!(
        "KEY           FUNCTION  steps  label  STARTED (UTC)        WALL     RESULT\n\
         {}  sim.run   100    a,b    2026-12-02 20:56:41  250.0ms  {}\n\
         {}  sim.run   200    b      2026-12-02 20:56:42  250.0ms  {}\n\
         {}  sim.run   100    c      2026-12-02 20:56:43  250.0ms  {}\n",
        k(1),
        r(&[1.0, 2.0]),
        k(2),
        r(&[3.0]),
        k(3),
        r(&[1.0, 2.0]),
    );
    assert_eq!(out, expected);
    // The alias, filters, order and limit.
    let out = f.ok(&["query", "--arg", "steps=100", "--newest", "--limit", "1"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines().nth(1).is_some_and(|l| l.starts_with(&short(3))),
        "{out}"
    );
    let out = f.ok(&["ls", "--arg", "label=b"]);
    assert!(
        out.lines().nth(1).is_some_and(|l| l.starts_with(&short(2))) && out.lines().count() == 2,
        "{out}"
    );
    let out = f.ok(&["ls", "--tag", "project=alpha"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    // Stored in 2026: nothing in the last 2 days once that is past, everything within 100 weeks.
    let out = f.ok(&["ls", "--since", "5200w"]);
    assert_eq!(out.lines().count(), 5, "{out}");
}

#[test]
fn ls_formats_json_and_csv() {
    let f = Fixture::new();
    let out = f.ok(&[
        "ls",
        "--fn",
        "sim.run",
        "--arg",
        "steps=200",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let rows = v.as_array().unwrap_or_else(|| panic!("an array: {out}"));
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["key"], key(2).to_string());
    assert_eq!(r["function"], "sim.run");
    assert_eq!(r["version"], serde_json::Value::Null);
    assert_eq!(
        r["arguments"],
        serde_json::json!({"steps": 200, "label": "b"})
    );
    assert_eq!(
        r["metadata"]["tags"],
        serde_json::json!({"project": "alpha"})
    );
    assert_eq!(r["metadata"]["runtime"]["wall_time"], 0.25);
    assert_eq!(r["result"].as_str().map(str::len), Some(64));
    let out = f.ok(&["ls", "--fn", "sim.run", "--format", "csv"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "key,function,version,steps,label,start,wall_time,result"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{},sim.run,,100,\"a,b\",2026-12-02 20:56:41,250.0ms,",
            key(1)
        )),
        "{out}"
    );
    assert_eq!(lines.len(), 4);
}

#[test]
fn show_takes_a_unique_prefix_and_prints_the_lineage_tree() {
    let f = Fixture::new();
    let out = f.ok(&["show", &short(1)]);
    assert!(
        out.starts_with(&format!("key       {}\nfunction  sim.run\n", key(1))),
        "{out}"
    );
    assert!(out.contains("  steps = 100\n  label = a,b\n"), "{out}");
    assert!(
        out.contains(&format!(
            "lineage\n  {} sim.prep(n=3)\n     {} sim.run(steps=100, label=a,b)  <- this call\n",
            short(0),
            short(1)
        )),
        "{out}"
    );
    let out = f.ok(&["show", &short(0)]);
    assert!(
        out.contains(&format!(
            "lineage\n  {} sim.prep(n=3)  <- this call\n     {} sim.run(steps=100, label=a,b)\n     {} sim.run(steps=200, label=b)\n",
            short(0), short(1), short(2)
        )),
        "{out}"
    );
    let (code, _, err) = f.run(&["show", "ffffffffffffffff"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no stored call has a key starting with"),
        "{err}"
    );
    let (code, _, err) = f.run(&["show", "xyz"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn an_ambiguous_prefix_lists_the_candidates() {
    let f = Fixture::new();
    // Find a one-digit prefix shared by two of the four keys, if any; else two digits of none.
    let keys: Vec<String> = (0..4).map(|n| key(n).to_string()).collect();
    let shared = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|p| keys.iter().filter(|k| k.starts_with(p.as_str())).count() >= 2);
    let Some(p) = shared else { return };
    let (code, _, err) = f.run(&["show", &p]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("`{p}` is the start of")), "{err}");
    for k in keys.iter().filter(|k| k.starts_with(p.as_str())) {
        assert!(err.contains(k.as_str()), "{k} in {err}");
    }
}

#[test]
fn cat_prints_the_result_as_json() {
    let f = Fixture::new();
    let out = f.ok(&["cat", &short(1)]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v, serde_json::json!([1.0, 2.0]));
}

#[test]
fn stats_count_calls_values_and_bytes_per_function() {
    let f = Fixture::new();
    let out = f.ok(&["stats"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("FUNCTION"), "{out}");
    let cols = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let run = lines
        .iter()
        .find(|l| l.starts_with("sim.run"))
        .map(|l| cols(l));
    // Two of the three runs returned the same value: stored once.
    assert_eq!(
        run.as_ref().map(|c| (c[1].as_str(), c[2].as_str())),
        Some(("3", "2")),
        "{out}"
    );
    let all = lines
        .iter()
        .find(|l| l.starts_with("(all)"))
        .map(|l| cols(l));
    assert_eq!(
        all.as_ref().map(|c| (c[1].as_str(), c[2].as_str())),
        Some(("4", "3")),
        "{out}"
    );
}

#[test]
fn evict_refuses_without_filters_and_dry_runs() {
    let f = Fixture::new();
    let (code, _, err) = f.run(&["evict"]);
    assert_eq!(code, 2);
    assert!(err.contains("--all"), "{err}");
    let out = f.ok(&["evict", "--arg", "steps=100", "--dry-run"]);
    assert!(out.ends_with("would evict 2 calls\n"), "{out}");
    assert_eq!(f.ok(&["ls"]).lines().count(), 5);
    let out = f.ok(&["evict", "--arg", "steps=100"]);
    assert!(out.starts_with("evicted 2 calls"), "{out}");
    assert_eq!(f.ok(&["ls"]).lines().count(), 3);
    // The value of the evicted calls is no longer used: gc removes it.
    let out = f.ok(&["gc"]);
    assert!(out.starts_with("removed 1 "), "{out}");
    let out = f.ok(&["evict", "--all"]);
    assert!(out.starts_with("evicted 2 calls"), "{out}");
}

#[test]
fn verify_finds_damage_exits_1_and_repairs() {
    let f = Fixture::new();
    let out = f.ok(&["verify"]);
    assert!(
        out.contains("checked 4 calls and 3 values: 0 corrupt"),
        "{out}"
    );
    // Damage one call file and one value file.
    let file_of = |dir: &str, d: &Digest| {
        let h = d.to_string();
        f.path(&format!("runs/{dir}/{}/{h}", &h[..2]))
    };
    let call = file_of("calls", &key(3));
    let mut bytes = std::fs::read(&call).unwrap_or_else(|e| panic!("{e}"));
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&call, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let (code, out, _) = f.run(&["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("corrupt call {}", key(3))), "{out}");
    assert!(out.contains("1 corrupt"), "{out}");
    let (code, out, _) = f.run(&["verify", "--repair"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 corrupt, 1 removed"), "{out}");
    let out = f.ok(&["verify"]);
    assert!(
        out.contains("checked 3 calls and 3 values: 0 corrupt"),
        "{out}"
    );
}

#[test]
fn transfer_copies_the_matching_calls() {
    let f = Fixture::new();
    let out = f.ok(&[
        "transfer",
        "--to",
        "copy",
        "--fn",
        "sim.run",
        "--arg",
        "steps=100",
    ]);
    assert!(out.starts_with("copied 2 calls to `copy`"), "{out}");
    let out = f.ok(&["--cache", "copy", "ls"]);
    assert_eq!(out.lines().count(), 3, "{out}");
    let out = f.ok(&["--cache", "copy", "cat", &short(3)]);
    assert!(out.contains("1.0"), "{out}");
}

#[test]
fn global_flags_and_usage_errors() {
    let f = Fixture::new();
    let (code, _, err) = f.run(&["--cache", "nope", "ls"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no cache named `nope`; defined: copy, runs"),
        "{err}"
    );
    let (code, _, _) = f.run(&["ls", "--bogus"]);
    assert_eq!(code, 2);
    // --config: another file, elsewhere.
    let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = other.path().join("elsewhere.toml");
    write(
        &file,
        &format!(
            "[default]\ncache = \"r\"\n[r]\ntemplate = \"msgpack\"\nroot = \"{}\"\n",
            f.path("runs").display()
        ),
    );
    let out = f.ok(&[
        "--config",
        file.to_str().unwrap_or_default(),
        "ls",
        "--fn",
        "sim.prep",
    ]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let (code, _, err) = f.run(&["--config", "/nonexistent/fleche.toml", "ls"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn config_show_names_the_file_of_every_table() {
    let f = Fixture::new();
    let out = f.ok(&["config", "show"]);
    let file = f.path("fleche.toml");
    assert!(
        out.contains(&format!("# from {}\n[runs]\n", file.display())),
        "{out}"
    );
    assert!(out.contains("template = \"msgpack\""), "{out}");
    assert!(out.contains("[default]\ncache = \"runs\""), "{out}");
}

#[test]
fn completions_are_generated() {
    let f = Fixture::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = f.ok(&["completions", shell]);
        assert!(
            out.contains("verify") && out.contains("transfer"),
            "{shell}: {out}"
        );
    }
    let (code, _, _) = f.run(&["completions", "tcsh"]);
    assert_eq!(code, 2);
}
