//! `fleche run`, driven through the built binary: each test has its own working directory and
//! its own `XDG_CACHE_HOME`, so the default run cache starts empty.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const FLECHE: &str = env!("CARGO_BIN_EXE_fleche");

struct Here {
    dir: tempfile::TempDir,
}

impl Here {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        Self { dir }
    }

    /// A path in the working directory.
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join("work").join(rel)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.program(FLECHE);
        c.args(args);
        c
    }

    /// `program` run in the working directory, with this test's home and caches.
    fn program(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.current_dir(self.path(""))
            .env("HOME", self.dir.path())
            .env("XDG_CACHE_HOME", self.dir.path().join("xdg"))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("FLECHE_CONFIG")
            .env_remove("FLECHE_CACHE")
            .env_remove("FLECHE_DISABLE")
            .env_remove("FLECHE_LOG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// The run cache these tests use (no configuration: the default one).
    fn run_cache(&self) -> fleche::Cache {
        fleche::Cache::msgpack(
            self.dir.path().join("xdg/fleche/run"),
            fleche::storage::FileOptions::new(),
        )
        .unwrap()
    }

    /// How many times the test commands ran (each appends a line to `ran.log`).
    fn runs(&self) -> usize {
        std::fs::read_to_string(self.path("ran.log")).map_or(0, |s| s.lines().count())
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The key an `--explain` run printed first.
fn explained_key(o: &Output) -> fleche::Digest {
    stderr(o)
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("fleche run: key "))
        .unwrap_or_else(|| panic!("no key in {}", stderr(o)))
        .parse()
        .unwrap()
}

/// A command that records that it ran, then prints `text`.
fn counted(text: &str) -> String {
    format!("echo ran >> ran.log; printf '%s' '{text}'")
}

#[test]
fn a_second_identical_run_replays_without_running() {
    let h = Here::new();
    let script = counted("hello\n");
    let first = h.run(&["run", "--", "sh", "-c", &script]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    assert_eq!(first.stdout, b"hello\n");
    let second = h.run(&["run", "--", "sh", "-c", &script]);
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    assert_eq!(second.stdout, b"hello\n");
    assert_eq!(h.runs(), 1, "the second run is a hit");
    // Another argument is another call.
    let other = h.run(&["run", "--", "sh", "-c", &counted("bye\n")]);
    assert_eq!(other.stdout, b"bye\n");
    assert_eq!(h.runs(), 2);
}

#[test]
fn runs_are_call_records_of_fleche_run() {
    let h = Here::new();
    let r = h.run(&["run", "--scope", "nightly", "--", "sh", "-c", &counted("x")]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let ls = h.run(&["ls", "--fn", "fleche.run", "--format", "json"]);
    assert_eq!(code(&ls), 0, "{}", stderr(&ls));
    let listed: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let calls = listed.as_array().unwrap();
    assert_eq!(calls.len(), 1, "{listed}");
    let text = listed.to_string();
    assert!(
        text.contains("nightly") && text.contains("echo ran"),
        "{text}"
    );
    // Another function's name finds nothing.
    let none = h.run(&["ls", "--fn", "other", "--format", "json"]);
    let none: serde_json::Value = serde_json::from_slice(&none.stdout).unwrap();
    assert_eq!(none.as_array().map(Vec::len), Some(0));
}

#[test]
fn an_edited_dependency_reruns_by_content_and_by_stamp() {
    let h = Here::new();
    std::fs::write(h.path("input.txt"), "one\n").unwrap();
    let script = "echo ran >> ran.log; cat input.txt";
    for (mode, expected_runs) in [("content", [1, 1, 2, 2]), ("stamp", [3, 3, 4, 4])] {
        let args = [
            "run",
            "--dep",
            "input.txt",
            "--dep-mode",
            mode,
            "--",
            "sh",
            "-c",
            script,
        ];
        std::fs::write(h.path("input.txt"), format!("one {mode}\n")).unwrap();
        assert_eq!(h.run(&args).stdout, format!("one {mode}\n").as_bytes());
        assert_eq!(h.runs(), expected_runs[0]);
        assert_eq!(h.run(&args).stdout, format!("one {mode}\n").as_bytes());
        assert_eq!(h.runs(), expected_runs[1], "{mode}: unchanged input hits");
        // Same length, new content, a later mtime.
        std::fs::write(h.path("input.txt"), format!("two {mode}\n")).unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(h.path("input.txt"))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() + Duration::from_secs(10))
            .unwrap();
        assert_eq!(h.run(&args).stdout, format!("two {mode}\n").as_bytes());
        assert_eq!(h.runs(), expected_runs[2], "{mode}: edited input reruns");
        assert_eq!(h.run(&args).stdout, format!("two {mode}\n").as_bytes());
        assert_eq!(h.runs(), expected_runs[3]);
    }
}

#[test]
fn a_missing_dependency_is_a_key_not_an_error() {
    let h = Here::new();
    let args = [
        "run",
        "--dep",
        "later.txt",
        "--",
        "sh",
        "-c",
        "echo ran >> ran.log; echo ok",
    ];
    assert_eq!(code(&h.run(&args)), 0);
    assert_eq!(code(&h.run(&args)), 0);
    assert_eq!(h.runs(), 1);
    std::fs::write(h.path("later.txt"), "now").unwrap();
    assert_eq!(code(&h.run(&args)), 0);
    assert_eq!(h.runs(), 2, "the file appearing changes the key");
}

#[test]
fn directory_dependencies_hash_their_tree() {
    let h = Here::new();
    std::fs::create_dir_all(h.path("src/deep")).unwrap();
    std::fs::write(h.path("src/deep/a.rs"), "fn a() {}").unwrap();
    let args = [
        "run",
        "--dep",
        "src",
        "--",
        "sh",
        "-c",
        "echo ran >> ran.log",
    ];
    h.run(&args);
    h.run(&args);
    assert_eq!(h.runs(), 1);
    std::fs::write(h.path("src/deep/b.rs"), "fn b() {}").unwrap();
    h.run(&args);
    assert_eq!(h.runs(), 2, "a new file in the tree reruns");
}

#[test]
fn output_files_are_restored_byte_identical() {
    let h = Here::new();
    let script = "echo ran >> ran.log; mkdir -p out; printf '\\000\\377\\376binary\\n' > out/data.bin; echo built";
    let args = ["run", "--out", "out/data.bin", "--", "sh", "-c", script];
    let first = h.run(&args);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let made = std::fs::read(h.path("out/data.bin")).unwrap();
    assert_eq!(made, b"\x00\xff\xfebinary\n");
    std::fs::remove_dir_all(h.path("out")).unwrap();
    let second = h.run(&args);
    assert_eq!(second.stdout, b"built\n");
    assert_eq!(std::fs::read(h.path("out/data.bin")).unwrap(), made);
    // A file that differs (same length) is replaced too.
    std::fs::write(h.path("out/data.bin"), b"XXXXXXXXXXX").unwrap();
    h.run(&args);
    assert_eq!(std::fs::read(h.path("out/data.bin")).unwrap(), made);
    assert_eq!(h.runs(), 1, "restoring runs nothing");
    // A declared output the command does not write: the run is not stored.
    let bad = [
        "run",
        "--out",
        "never.txt",
        "--",
        "sh",
        "-c",
        "echo ran >> ran.log",
    ];
    h.run(&bad);
    h.run(&bad);
    assert_eq!(h.runs(), 3);
}

#[test]
fn binary_and_interleaved_output_replays_exactly() {
    let h = Here::new();
    // Both streams into one file: the replay keeps their order.
    let script = "echo ran >> ran.log; printf 'a\\377\\n'; sleep 0.1; printf 'b\\000\\n' >&2; sleep 0.1; printf 'c\\n'";
    let mut outputs = Vec::new();
    for i in 0..2 {
        let log = h.path(&format!("both{i}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let status = h
            .command(&["run", "--", "sh", "-c", script])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .status()
            .unwrap();
        assert!(status.success());
        outputs.push(std::fs::read(&log).unwrap());
    }
    assert_eq!(outputs[0], b"a\xff\nb\x00\nc\n");
    assert_eq!(outputs[1], outputs[0]);
    assert_eq!(h.runs(), 1);
    // Separately, each stream is byte-exact.
    let sep = h.run(&["run", "--", "sh", "-c", script]);
    assert_eq!(sep.stdout, b"a\xff\nc\n");
    assert_eq!(sep.stderr, b"b\x00\n");
}

#[test]
fn exit_codes_pass_through_and_only_chosen_ones_are_cached() {
    let h = Here::new();
    let fail = [
        "run",
        "--",
        "sh",
        "-c",
        "echo ran >> ran.log; echo no >&2; exit 3",
    ];
    assert_eq!(code(&h.run(&fail)), 3);
    assert_eq!(code(&h.run(&fail)), 3);
    assert_eq!(h.runs(), 2, "exit 3 is not cached by default");
    let cached = [
        "run",
        "--cache-exit-codes",
        "0,3",
        "--",
        "sh",
        "-c",
        "echo ran >> ran.log; echo no >&2; exit 3",
    ];
    assert_eq!(code(&h.run(&cached)), 3);
    let hit = h.run(&cached);
    assert_eq!(code(&hit), 3);
    assert_eq!(hit.stderr, b"no\n");
    assert_eq!(h.runs(), 3);
    // Stored with exit 3, but this run caches only 0: a miss.
    assert_eq!(code(&h.run(&fail)), 3);
    assert_eq!(h.runs(), 4);
}

#[test]
fn a_signal_death_is_128_plus_n_and_never_cached() {
    let h = Here::new();
    let args = [
        "run",
        "--cache-exit-codes",
        "0,143",
        "--",
        "sh",
        "-c",
        "echo ran >> ran.log; kill -TERM $$",
    ];
    assert_eq!(code(&h.run(&args)), 143);
    assert_eq!(code(&h.run(&args)), 143);
    assert_eq!(h.runs(), 2);
}

/// Starts `fleche run -- sh -c script` (the script prints `ready` once it is set up), sends
/// fleche `signal` then, and returns fleche's exit status. Panics if fleche outlives 20 s.
fn signalled(h: &Here, script: &str, signal: &str) -> std::process::ExitStatus {
    use std::io::BufRead;
    let mut child = h
        .command(&["run", "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(
        line, "ready\n",
        "the command starts and its output streams live"
    );
    let kill = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("fleche did not end after SIG{signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` still exists (a zombie counts as gone).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
#[cfg(target_os = "linux")]
fn a_signal_to_fleche_reaches_the_command_and_the_run_is_not_stored() {
    let h = Here::new();
    // The command dies of the signal: fleche waits for it and passes its status on.
    let script = "echo ran >> ran.log; echo $$ > child.pid; echo ready; exec sleep 30";
    let status = signalled(&h, script, "TERM");
    assert_eq!(status.code(), Some(143), "{status:?}");
    let pid = std::fs::read_to_string(h.path("child.pid")).unwrap();
    assert!(!alive(&pid), "the command was stopped with fleche");
    // The command catches it, cleans up and exits 0: still not stored, it was asked to stop.
    let script = "echo ran >> ran.log; trap 'echo cleaned > cleaned; exit 0' HUP; echo ready; \
                  while :; do sleep 0.05; done";
    let status = signalled(&h, script, "HUP");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(std::fs::read(h.path("cleaned")).unwrap(), b"cleaned\n");
    let o = h.run(&["run", "--check", "--", "sh", "-c", script]);
    assert_eq!(code(&o), 1, "an interrupted run is not stored");
    // And after it, fleche's own signal handling is back to normal: a hit still replays.
    let o = h.run(&["run", "--", "sh", "-c", &counted("fine")]);
    let again = h.run(&["run", "--", "sh", "-c", &counted("fine")]);
    assert_eq!(
        (o.stdout, again.stdout),
        (b"fine".to_vec(), b"fine".to_vec())
    );
    assert_eq!(h.runs(), 3);
}

#[test]
fn identical_concurrent_runs_execute_once() {
    let h = Here::new();
    let script = "echo ran >> ran.log; sleep 1; echo done";
    let children: Vec<_> = (0..4)
        .map(|_| {
            h.command(&["run", "--", "sh", "-c", script])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(out.stdout, b"done\n");
    }
    assert_eq!(h.runs(), 1, "the others waited and replayed");
    let locks: Vec<_> = std::fs::read_dir(h.dir.path().join("xdg/fleche/locks"))
        .unwrap()
        .collect();
    assert!(locks.is_empty(), "lock files are removed: {locks:?}");
}

#[test]
fn max_age_force_and_check() {
    let h = Here::new();
    let script = counted("v\n");
    let check = |extra: &[&str]| {
        let mut args = vec!["run", "--check"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "sh", "-c", &script]);
        code(&h.run(&args))
    };
    assert_eq!(check(&[]), 1, "nothing stored yet");
    assert_eq!(h.runs(), 0, "--check runs nothing");
    h.run(&["run", "--", "sh", "-c", &script]);
    assert_eq!(check(&[]), 0);
    assert_eq!(h.runs(), 1);
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(check(&["--max-age", "1s"]), 1);
    assert_eq!(check(&["--max-age", "1h"]), 0);
    h.run(&["run", "--max-age", "1s", "--", "sh", "-c", &script]);
    assert_eq!(h.runs(), 2, "older than --max-age reruns");
    assert_eq!(check(&["--max-age", "1s"]), 0, "and stores the new run");
    h.run(&["run", "--force", "--", "sh", "-c", &script]);
    assert_eq!(h.runs(), 3, "--force reruns");
    h.run(&["run", "--", "sh", "-c", &script]);
    assert_eq!(h.runs(), 3);
}

#[test]
fn key_parts_cwd_env_stdin_scope() {
    let h = Here::new();
    std::fs::create_dir(h.path("sub")).unwrap();
    let script = "echo ran >> \"$LOG\"; echo \"$COLOR\"; cat";
    let log = h.path("ran.log");
    let go = |dir: &Path, extra: &[&str], color: &str, input: &[u8]| {
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "sh", "-c", script]);
        let mut c = h.command(&args);
        c.current_dir(dir)
            .env("LOG", &log)
            .env("COLOR", color)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap().stdout
    };
    let (top, sub) = (h.path(""), h.path("sub"));
    go(&top, &[], "red", b"");
    go(&sub, &[], "red", b"");
    assert_eq!(h.runs(), 2, "the working directory is part of the key");
    go(&top, &["--no-cwd"], "red", b"");
    go(&sub, &["--no-cwd"], "red", b"");
    assert_eq!(h.runs(), 3, "--no-cwd leaves it out");
    assert_eq!(go(&top, &["--env", "COLOR"], "red", b""), b"red\n");
    assert_eq!(go(&top, &["--env", "COLOR"], "blue", b""), b"blue\n");
    assert_eq!(go(&top, &["--env", "COLOR"], "red", b""), b"red\n");
    assert_eq!(h.runs(), 5, "--env keys the variable's value");
    // Without --stdin the command's stdin is empty and not keyed; with it, keyed.
    assert_eq!(go(&top, &["--env", "COLOR"], "red", b"ignored"), b"red\n");
    assert_eq!(go(&top, &["--stdin"], "red", b"in 1"), b"red\nin 1");
    assert_eq!(go(&top, &["--stdin"], "red", b"in 2"), b"red\nin 2");
    assert_eq!(go(&top, &["--stdin"], "red", b"in 1"), b"red\nin 1");
    assert_eq!(h.runs(), 7);
    go(&top, &["--scope", "a"], "red", b"");
    go(&top, &["--scope", "b"], "red", b"");
    assert_eq!(h.runs(), 9, "--scope separates");
}

#[test]
fn explain_shows_each_part_and_the_outcome() {
    let h = Here::new();
    std::fs::write(h.path("dep.txt"), "d").unwrap();
    let args = [
        "run",
        "--explain",
        "--dep",
        "dep.txt",
        "--env",
        "HOME",
        "--",
        "true",
    ];
    let first = h.run(&args);
    let text = stderr(&first);
    for part in [
        "argv",
        "exe",
        "cwd",
        "env",
        "stdin",
        "dep",
        "scope",
        "miss (not stored)",
    ] {
        assert!(text.contains(part), "{part} missing in {text}");
    }
    let key_line = text.lines().next().unwrap().to_owned();
    assert!(key_line.starts_with("fleche run: key "), "{key_line}");
    let again = stderr(&h.run(&args));
    assert!(again.contains("hit (exit code 0"), "{again}");
    assert!(again.starts_with(&key_line), "the same key: {again}");
}

#[test]
fn debug_logging_says_why() {
    let h = Here::new();
    let args = ["run", "--", "true"];
    let miss = h
        .command(&args)
        .env("FLECHE_LOG", "debug")
        .output()
        .unwrap();
    assert!(
        stderr(&miss).contains("miss: not stored"),
        "{}",
        stderr(&miss)
    );
    let hit = h
        .command(&args)
        .env("FLECHE_LOG", "debug")
        .output()
        .unwrap();
    assert!(stderr(&hit).contains("hit"), "{}", stderr(&hit));
    let quiet = h.run(&args);
    assert!(quiet.stderr.is_empty(), "{}", stderr(&quiet));
}

#[test]
fn fleche_disable_runs_uncached() {
    let h = Here::new();
    let script = counted("x");
    for _ in 0..2 {
        let o = h
            .command(&["run", "--", "sh", "-c", &script])
            .env("FLECHE_DISABLE", "1")
            .output()
            .unwrap();
        assert_eq!(o.stdout, b"x");
    }
    assert_eq!(h.runs(), 2);
    assert!(
        !h.dir.path().join("xdg/fleche/run").exists(),
        "nothing stored"
    );
}

#[test]
fn a_broken_cache_still_runs_the_command() {
    let h = Here::new();
    // XDG_CACHE_HOME is a file: no cache can be made there.
    std::fs::write(h.dir.path().join("xdg"), "not a directory").unwrap();
    let o = h.run(&["run", "--", "sh", "-c", &counted("still\n")]);
    assert_eq!(code(&o), 0);
    assert_eq!(o.stdout, b"still\n");
    assert!(stderr(&o).contains("running uncached"), "{}", stderr(&o));
    assert_eq!(h.runs(), 1);
    // --explain says why nothing was looked up.
    let o = h.run(&["run", "--explain", "--", "sh", "-c", &counted("still\n")]);
    assert!(
        stderr(&o).contains("cache  (none): miss (no cache could be opened)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(h.runs(), 2);
}

#[test]
fn a_corrupt_entry_is_a_miss_and_the_rerun_repairs_it() {
    let h = Here::new();
    let script = counted("good\n");
    h.run(&["run", "--", "sh", "-c", &script]);
    // Damage every stored file.
    let root = h.dir.path().join("xdg/fleche/run");
    let mut damaged = 0;
    for entry in walk(&root) {
        let mut bytes = std::fs::read(&entry).unwrap();
        if bytes.len() > 8 {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x55;
            std::fs::write(&entry, bytes).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0);
    let o = h.run(&["run", "--", "sh", "-c", &script]);
    assert_eq!(o.stdout, b"good\n");
    assert!(stderr(&o).contains("WARN"), "a warning: {}", stderr(&o));
    assert_eq!(h.runs(), 2);
    let o = h.run(&["run", "--", "sh", "-c", &script]);
    assert_eq!(o.stdout, b"good\n");
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    assert_eq!(h.runs(), 2, "repaired: a hit again");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn usage_errors_and_unknown_commands() {
    let h = Here::new();
    let none = h.run(&["run"]);
    assert_eq!(code(&none), 2, "{}", stderr(&none));
    let missing = h.run(&["run", "--", "no-such-command-anywhere"]);
    assert_eq!(code(&missing), 1);
    assert!(stderr(&missing).contains("command not found"));
    let both = h.run(&["run", "--check", "--force", "--", "true"]);
    assert_eq!(code(&both), 2);
}

#[test]
fn a_configured_cache_is_used() {
    let h = Here::new();
    std::fs::write(
        h.path("fleche.toml"),
        "[default]\ncache = \"team\"\n\n[team]\ntemplate = \"msgpack\"\nroot = \"team-cache\"\n",
    )
    .unwrap();
    let script = counted("t\n");
    let first = h.run(&["run", "--", "sh", "-c", &script]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    h.run(&["run", "--", "sh", "-c", &script]);
    assert_eq!(h.runs(), 1);
    assert!(h.path("team-cache").exists());
    assert!(!h.dir.path().join("xdg/fleche/run").exists());
}

#[test]
fn a_bad_configuration_is_an_error_naming_file_and_key() {
    let h = Here::new();
    std::fs::write(
        h.path("fleche.toml"),
        "[default]\ncache = \"team\"\n\n[team]\ntype = \"msgpack\"\npath = \"x\"\n",
    )
    .unwrap();
    let o = h.run(&["run", "--", "sh", "-c", &counted("t\n")]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(err.contains("fleche.toml") && err.contains("path"), "{err}");
    assert_eq!(
        h.runs(),
        0,
        "fleche's own failure: the command does not start"
    );
}

/// An entry crafted by someone who can write the cache (here through the library, so its
/// checksums are valid) cannot make a hit write files the invocation did not declare.
#[test]
fn a_crafted_entry_cannot_write_undeclared_files() {
    #[derive(serde::Serialize)]
    struct Crafted {
        exit_code: i32,
        output: Vec<()>,
        files: Vec<fleche::Artifact>,
    }
    let h = Here::new();
    let args = [
        "run",
        "--explain",
        "--out",
        "out.txt",
        "--",
        "sh",
        "-c",
        "echo ran >> ran.log; echo ok > out.txt",
    ];
    let key = explained_key(&h.run(&args));
    let victim = h.dir.path().join("victim.txt");
    let evil = fleche::Artifact::write(&victim, "owned").unwrap();
    std::fs::remove_file(&victim).unwrap();
    let cache = h.run_cache();
    let record = cache.record(&key).unwrap().unwrap();
    let value = fleche::storage::encoding::to_vec(&Crafted {
        exit_code: 0,
        output: Vec::new(),
        files: vec![evil],
    })
    .unwrap();
    cache.store_record(record, &value).unwrap();
    let second = h.run(&args);
    assert_eq!(code(&second), 0);
    assert!(!victim.exists(), "an undeclared path was written");
    assert!(
        stderr(&second).contains("not the declared --out paths"),
        "{}",
        stderr(&second)
    );
    assert_eq!(h.runs(), 2, "the crafted entry is a miss");
}

/// Runs `mount ARGS`; false (with a note) when this process may not mount (not root).
fn mount(args: &[&str]) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    if !root {
        eprintln!("not root: skipping a test that needs mount {args:?}");
        return false;
    }
    let status = Command::new("mount").args(args).status().unwrap();
    assert!(status.success(), "mount {args:?} failed as root");
    true
}

fn umount(path: &Path) {
    let _ = Command::new("umount").arg(path).status();
}

/// A read-only cache (a read-only bind mount: root ignores permission bits) still serves hits;
/// a miss runs the command and warns that it cannot store.
#[test]
fn a_read_only_cache_serves_hits_and_misses_still_run() {
    let h = Here::new();
    let script = counted("stored\n");
    assert_eq!(
        h.run(&["run", "--", "sh", "-c", &script]).stdout,
        b"stored\n"
    );
    let run_dir = h.dir.path().join("xdg/fleche/run");
    let target = run_dir.to_str().unwrap();
    if !mount(&["--bind", target, target]) {
        return;
    }
    let remounted = mount(&["-o", "remount,bind,ro", target]);
    let hit = h.run(&["run", "--", "sh", "-c", &script]);
    let miss = h.run(&["run", "--", "sh", "-c", &counted("new\n")]);
    umount(&run_dir);
    assert!(remounted);
    assert_eq!(hit.stdout, b"stored\n");
    assert_eq!(h.runs(), 2, "the hit ran nothing; the miss ran once");
    assert_eq!(code(&miss), 0);
    assert_eq!(miss.stdout, b"new\n");
    assert!(stderr(&miss).contains("cannot store"), "{}", stderr(&miss));
}

/// A full disk: the run's output is shown whole and its exit status kept; nothing half-written
/// is served afterwards.
#[test]
fn a_full_disk_loses_nothing_of_the_run() {
    let h = Here::new();
    let xdg = h.dir.path().join("xdg");
    std::fs::create_dir_all(&xdg).unwrap();
    if !mount(&[
        "-t",
        "tmpfs",
        "-o",
        "size=256k",
        "tmpfs",
        xdg.to_str().unwrap(),
    ]) {
        return;
    }
    // 1 MiB of output cannot be stored in 256 KiB.
    let script = "echo ran >> ran.log; head -c 1048576 /dev/zero | tr '\\0' 'x'; exit 0";
    let first = h.run(&["run", "--", "sh", "-c", script]);
    let second = h.run(&["run", "--", "sh", "-c", script]);
    let small = h.run(&["run", "--", "sh", "-c", &counted("fits\n")]);
    let small_again = h.run(&["run", "--", "sh", "-c", &counted("fits\n")]);
    umount(&xdg);
    for o in [&first, &second] {
        assert_eq!(code(o), 0);
        assert_eq!(o.stdout.len(), 1 << 20);
        assert!(o.stdout.iter().all(|&b| b == b'x'));
    }
    assert!(
        stderr(&first).contains("cannot store"),
        "{}",
        stderr(&first)
    );
    assert_eq!(small_again.stdout, b"fits\n");
    assert_eq!(small.stdout, b"fits\n");
    assert_eq!(
        h.runs(),
        3,
        "the big run ran twice (never stored), the small one once"
    );
}

/// `fleche run` killed mid-run: nothing is stored, its lock dies with it, and the next run
/// neither waits for the dead one nor replays anything.
#[test]
fn a_killed_run_leaves_no_result_and_no_stuck_lock() {
    let h = Here::new();
    // The killed run's command outlives it: it sleeps far longer than the next run may take, so
    // a next run that waited for it could not pass the bound below, however loaded the machine.
    let script =
        "echo ran >> ran.log; [ -f fast ] || { echo $$ > orphan.pid; exec sleep 60; }; echo done";
    let mut victim = h
        .command(&["run", "--", "sh", "-c", script])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while h.runs() == 0 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    std::fs::write(h.path("fast"), "").unwrap();
    let t = std::time::Instant::now();
    let next = h.run(&["run", "--", "sh", "-c", script]);
    assert_eq!(next.stdout, b"done\n");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "waited for a dead run"
    );
    assert_eq!(h.runs(), 2);
    let again = h.run(&["run", "--", "sh", "-c", script]);
    assert_eq!(again.stdout, b"done\n");
    assert_eq!(h.runs(), 2, "the finished run was stored");
    // The killed run's command is an orphan now; end it.
    if let Ok(pid) = std::fs::read_to_string(h.path("orphan.pid")) {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
}

#[test]
fn a_named_cache_must_exist_and_be_configured_right() {
    let h = Here::new();
    std::fs::write(
        h.path("fleche.toml"),
        "[team]\ntemplate = \"msgpack\"\npath = \"x\"\n",
    )
    .unwrap();
    let script = counted("t\n");
    let bad = h.run(&["run", "--cache", "team", "--", "sh", "-c", &script]);
    assert_eq!(code(&bad), 1, "{}", stderr(&bad));
    assert!(stderr(&bad).contains("fleche.toml"), "{}", stderr(&bad));
    let unknown = h.run(&["run", "--cache", "nope", "--", "sh", "-c", &script]);
    assert_eq!(code(&unknown), 2, "{}", stderr(&unknown));
    let memory = h.run(&["run", "--cache", "memory", "--", "sh", "-c", &script]);
    assert_eq!(code(&memory), 2, "{}", stderr(&memory));
    assert_eq!(h.runs(), 0, "fleche's own failures: nothing ran");
}

/// Whether an ELF executable names a dynamic loader (has a `PT_INTERP` program header).
fn names_a_loader(elf: &[u8]) -> bool {
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[4], 2, "a 64-bit ELF");
    assert_eq!(elf[5], 1, "little-endian");
    let table = usize::try_from(u64_at(0x20)).unwrap();
    let entry = usize::from(u16_at(0x36));
    (0..usize::from(u16_at(0x38))).any(|i| u32_at(table + i * entry) == 3)
}

/// A hit is a whole process start, so on Linux with glibc the binary is linked statically
/// (see `build.rs`) whenever the toolchain has the archives, unless the build asked otherwise.
#[test]
#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn the_binary_starts_without_a_dynamic_loader() {
    if matches!(option_env!("FLECHE_LINK"), Some(l) if !l.is_empty() && l != "static") {
        return;
    }
    let cc = option_env!("CC").unwrap_or("cc");
    let archive = Command::new(cc)
        .arg("-print-file-name=libc.a")
        .output()
        .unwrap();
    let archive = PathBuf::from(String::from_utf8(archive.stdout).unwrap().trim());
    // This test binary is linked the usual way: it names its loader.
    assert!(names_a_loader(
        &std::fs::read(std::env::current_exe().unwrap()).unwrap()
    ));
    let elf = std::fs::read(FLECHE).unwrap();
    assert_eq!(
        !names_a_loader(&elf),
        archive.is_absolute() && archive.exists(),
        "static linking should follow from {} being there",
        archive.display()
    );
    // A static binary still finds its way around: a run, a hit and a panic-free exit.
    let h = Here::new();
    for _ in 0..2 {
        let o = h.run(&["run", "--", "sh", "-c", &counted("static\n")]);
        assert_eq!((code(&o), o.stdout.as_slice()), (0, &b"static\n"[..]));
    }
    assert_eq!(h.runs(), 1);
}

/// Without HOME (and XDG_CACHE_HOME), the run cache is under the home directory the user
/// database names. The run is scoped uniquely and evicted afterwards.
#[test]
fn without_home_the_run_cache_is_in_the_users_home_directory() {
    let Some(home) = std::env::home_dir() else {
        return;
    };
    let h = Here::new();
    let scope = format!("no-home-test-{}", h.dir.path().display());
    let without_home = |args: &[&str]| {
        h.command(args)
            .env_remove("HOME")
            .env_remove("XDG_CACHE_HOME")
            .output()
            .unwrap()
    };
    for _ in 0..2 {
        let o = without_home(&["run", "--scope", &scope, "--", "sh", "-c", &counted("hi")]);
        assert_eq!(
            (code(&o), o.stdout.as_slice()),
            (0, &b"hi"[..]),
            "{}",
            stderr(&o)
        );
    }
    assert_eq!(h.runs(), 1, "the second run replays");
    let o = without_home(&[
        "evict",
        "--fn",
        "fleche.run",
        "--arg",
        &format!("scope={scope}"),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(home.join(".cache/fleche/run").is_dir());
    let o = without_home(&[
        "run",
        "--check",
        "--scope",
        &scope,
        "--",
        "sh",
        "-c",
        &counted("hi"),
    ]);
    assert_eq!(code(&o), 1, "evicted: {}", stderr(&o));
}

/// The command sees the same stdin whether or not a cache is used: the input with `--stdin`,
/// nothing without it.
#[test]
fn stdin_is_the_same_cached_uncached_and_with_a_broken_cache() {
    let (h, broken) = (Here::new(), Here::new());
    // XDG_CACHE_HOME is a file: no cache can be made there.
    std::fs::write(broken.dir.path().join("xdg"), "not a directory").unwrap();
    let feed = |h: &Here, extra: &[&str], env: &[(&str, &str)], input: &[u8]| {
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "sh", "-c", "echo ran >> ran.log; cat"]);
        let mut c = h.command(&args);
        c.stdin(Stdio::piped()).stdout(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 0);
        out.stdout
    };
    let disabled = [("FLECHE_DISABLE", "1")];
    for (h, env) in [(&h, &[][..]), (&h, &disabled[..]), (&broken, &[][..])] {
        assert_eq!(feed(h, &["--stdin"], env, b"given"), b"given", "{env:?}");
        assert_eq!(feed(h, &[], env, b"not given"), b"", "{env:?}");
    }
    assert_eq!(h.runs(), 4, "two cached runs, two with FLECHE_DISABLE");
    assert_eq!(broken.runs(), 2);
}

/// `--stdin` input is keyed and fed to the command without being held in memory: 256 MiB of
/// input through a process whose peak resident size stays far below it.
#[test]
#[cfg(target_os = "linux")]
fn a_large_stdin_is_streamed_not_held_in_memory() {
    let h = Here::new();
    let size: u64 = 256 << 20;
    // Python reports the peak resident size of the largest process it waited for, directly or
    // through the shell: fleche, `head`, `wc` and the shells.
    let measure = format!(
        "import resource, subprocess, sys\n\
         r = subprocess.run(['sh', '-c', 'head -c {size} /dev/zero | \"$0\" run --stdin -- sh -c \"echo ran >> ran.log; wc -c\"', sys.argv[1]], capture_output=True)\n\
         print(r.returncode, r.stdout.decode().strip(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    );
    let run = || {
        let o = h
            .program("python3")
            .args(["-c", &measure, FLECHE])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let text = String::from_utf8(o.stdout).unwrap();
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "{text}");
        assert_eq!(fields[0], "0", "{text}");
        assert_eq!(fields[1], size.to_string(), "the command read all of it");
        let peak_kib: u64 = fields[2].parse().unwrap();
        assert!(
            peak_kib < 64 << 10,
            "peak resident size {peak_kib} KiB for {size} bytes of stdin"
        );
    };
    run();
    run();
    assert_eq!(h.runs(), 1, "the same input is a hit");
}

/// Starts `fleche run -- sh -c script`, reads the first line of its output (`y`), then closes
/// the pipe, as `| head -1` does.
fn first_line_then_close(h: &Here, script: &str) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    let mut child = h
        .command(&["run", "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "y\n");
    child
}

/// `fleche run -- yes | head -1` ends as `yes | head -1` does: once the reader is gone, the
/// command meets the closed pipe, and the cut run is not stored.
#[test]
fn a_closed_output_pipe_ends_the_command_and_is_not_stored() {
    let h = Here::new();
    let script = "echo ran >> ran.log; yes";
    let mut child = first_line_then_close(&h, script);
    // The reader is dropped: the pipe is closed.
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("fleche run kept the command running after its reader left");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(128 + 13), "SIGPIPE, as without fleche");
    let check = h.run(&["run", "--check", "--", "sh", "-c", script]);
    assert_eq!(code(&check), 1, "a cut run is not stored");
    // A command that exits 0 after its output was cut is not stored either.
    let tolerant = "echo ran >> ran.log; trap '' PIPE; yes 2>/dev/null; exit 0";
    let child = first_line_then_close(&h, tolerant);
    assert_eq!(code(&child.wait_with_output().unwrap()), 0);
    let check = h.run(&["run", "--check", "--", "sh", "-c", tolerant]);
    assert_eq!(
        code(&check),
        1,
        "a cut run is not stored, whatever its exit code"
    );
}

/// `--out DIR`: the directory's tree (files, subdirectories, empty ones too, and links) is
/// stored and written back on a hit; what else the directory holds is left alone.
#[test]
fn an_output_directory_is_restored_whole() {
    let h = Here::new();
    let script = "echo ran >> ran.log; mkdir -p dist/js dist/empty; \
                  printf 'body\\000' > dist/index.html; printf 'code' > dist/js/app.js; \
                  chmod 755 dist/js/app.js; ln -s js/app.js dist/latest; echo built";
    let args = ["run", "--out", "dist", "--", "sh", "-c", script];
    let first = h.run(&args);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    std::fs::remove_dir_all(h.path("dist")).unwrap();
    let second = h.run(&args);
    assert_eq!(second.stdout, b"built\n", "{}", stderr(&second));
    assert_eq!(h.runs(), 1, "a hit");
    assert_eq!(std::fs::read(h.path("dist/index.html")).unwrap(), b"body\0");
    assert_eq!(std::fs::read(h.path("dist/js/app.js")).unwrap(), b"code");
    assert!(h.path("dist/empty").is_dir());
    assert_eq!(
        std::fs::read_link(h.path("dist/latest")).unwrap(),
        Path::new("js/app.js")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(h.path("dist/js/app.js"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }
    // One changed file is put back; a file the run did not make stays.
    std::fs::write(h.path("dist/js/app.js"), b"edit").unwrap();
    std::fs::write(h.path("dist/extra.txt"), b"mine").unwrap();
    h.run(&args);
    assert_eq!(std::fs::read(h.path("dist/js/app.js")).unwrap(), b"code");
    assert_eq!(std::fs::read(h.path("dist/extra.txt")).unwrap(), b"mine");
    assert_eq!(h.runs(), 1);
    // A file where a recorded directory was is not replaced: the command runs instead.
    std::fs::remove_dir_all(h.path("dist/js")).unwrap();
    std::fs::write(h.path("dist/js"), b"in the way").unwrap();
    let blocked = h.run(&args);
    assert_eq!(h.runs(), 2, "{}", stderr(&blocked));
}

/// A crafted entry naming a file inside a declared output directory, but through a parent it
/// does not record (so one that may be a link out of it), or outside it, is not a hit, and
/// nothing is written there.
#[test]
#[cfg(unix)]
fn a_crafted_tree_cannot_write_outside_the_declared_directory() {
    /// What a stored run looks like, with any paths.
    #[derive(serde::Serialize)]
    struct Crafted {
        exit_code: i32,
        output: Vec<()>,
        files: Vec<File>,
        tree: Vec<Entry>,
    }
    /// An artifact's stored shape.
    #[derive(serde::Serialize)]
    struct File {
        path: String,
        mode: Option<u32>,
        bytes: String,
    }
    #[derive(serde::Serialize)]
    struct Entry {
        path: String,
        link: Option<String>,
    }
    let h = Here::new();
    let args = [
        "run",
        "--explain",
        "--out",
        "dist",
        "--",
        "sh",
        "-c",
        "echo ran >> ran.log; mkdir -p dist; echo ok > dist/a",
    ];
    let key = explained_key(&h.run(&args));
    let cache = h.run_cache();
    let outside = h.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    // `dist/hop` is a link out of the directory.
    std::os::unix::fs::symlink(&outside, h.path("dist/hop")).unwrap();
    let dist = || Entry {
        path: "dist".into(),
        link: None,
    };
    let file = |path: &str| File {
        path: path.into(),
        mode: None,
        bytes: "owned".into(),
    };
    let outside_victim = outside.join("victim").display().to_string();
    for (files, tree, why) in [
        (
            vec![file("dist/hop/victim")],
            vec![dist()],
            "a parent not recorded",
        ),
        (
            vec![file("dist/hop/victim")],
            vec![
                dist(),
                Entry {
                    path: "dist/hop".into(),
                    link: None,
                },
            ],
            "a recorded directory that is a link now",
        ),
        (vec![file("dist/../outside/victim")], vec![dist()], "a `..`"),
        (vec![file(&outside_victim)], vec![dist()], "a path outside"),
    ] {
        let record = cache.record(&key).unwrap().unwrap();
        let value = fleche::storage::encoding::to_vec(&Crafted {
            exit_code: 0,
            output: Vec::new(),
            files,
            tree,
        })
        .unwrap();
        cache.store_record(record, &value).unwrap();
        let before = h.runs();
        let again = h.run(&args);
        assert_eq!(code(&again), 0, "{why}: {}", stderr(&again));
        assert!(!outside.join("victim").exists(), "{why}: written outside");
        assert_eq!(h.runs(), before + 1, "{why}: the crafted entry is a miss");
    }
}
