//! Metadata (Q04): `Runtime` with CPU time by default; `Environment`, `Git` and `Lineage` when a
//! function asks with `meta(..)`; custom kinds; nothing else unless chosen.

use std::sync::atomic::{AtomicBool, Ordering};

use fleche::{
    Cache, Environment, Error, Git, Lineage, Metadata, Runtime, Value, memoize, with_cache,
};

#[memoize(name = "meta.plain")]
fn plain(n: u64) -> u64 {
    // Enough work for the CPU clock to see.
    (0..n).fold(0u64, |a, i| a.wrapping_mul(31).wrapping_add(i))
}

#[memoize(name = "meta.env", meta(Environment, Git))]
fn located(x: u64) -> u64 {
    x + 1
}

#[memoize(name = "meta.inner", meta(Lineage))]
fn inner(x: u64) -> u64 {
    x * 10
}

#[memoize(name = "meta.outer")]
fn outer(x: u64) -> u64 {
    inner(x) + inner(x + 1)
}

static FAIL: AtomicBool = AtomicBool::new(false);

#[memoize(name = "meta.failing")]
fn failing(x: u64) -> u64 {
    let v = inner(x);
    if FAIL.load(Ordering::SeqCst) {
        panic!("failing on purpose");
    }
    v
}

struct Stamp;

impl Metadata for Stamp {
    fn name(&self) -> &'static str {
        "stamp"
    }
    fn collect(&self) -> Option<Value> {
        Some(Value::Str("stamped".into()))
    }
}

struct Nothing;

impl Metadata for Nothing {
    fn name(&self) -> &'static str {
        "nothing"
    }
    fn collect(&self) -> Option<Value> {
        None
    }
}

/// A custom kind that takes a built-in name: the built-in kind wins.
struct Impostor;

impl Metadata for Impostor {
    fn name(&self) -> &'static str {
        "runtime"
    }
    fn collect(&self) -> Option<Value> {
        Some(Value::Str("fake".into()))
    }
}

#[memoize(name = "meta.custom", meta(Stamp, Nothing, Impostor))]
fn custom(x: u64) -> u64 {
    x
}

#[test]
fn q04_runtime_by_default_and_nothing_else() -> Result<(), Error> {
    let c = Cache::memory();
    with_cache(&c, || plain(3_000_000));
    let r = c.query().function("meta.plain").only()?;
    let names: Vec<&str> = r.metadata.keys().map(String::as_str).collect();
    assert_eq!(names, ["runtime"]);
    let rt = Runtime::from_record(&r).unwrap_or_else(|| panic!("no runtime: {r:?}"));
    assert!(rt.stop >= rt.start);
    let cpu = rt
        .cpu_time
        .unwrap_or_else(|| panic!("no cpu time on Linux: {rt:?}"));
    assert!(cpu > std::time::Duration::ZERO, "{rt:?}");
    // The thread cannot have used more CPU than the wall time (with clock granularity slack).
    assert!(
        cpu <= rt.wall_time + std::time::Duration::from_millis(10),
        "{rt:?}"
    );
    Ok(())
}

#[test]
fn q04_environment_and_git_when_asked() -> Result<(), Error> {
    let c = Cache::memory();
    with_cache(&c, || located(1));
    let r = c.query().function("meta.env").only()?;
    let env = Environment::from_record(&r).unwrap_or_else(|| panic!("no environment: {r:?}"));
    assert_eq!(env.pid, std::process::id());
    assert_eq!(env.fleche_version, "0.1.0");
    assert_eq!(env.crate_name.as_deref(), Some("fleche-tests"));
    assert_eq!(
        env.crate_version.as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    let cwd = std::env::current_dir()
        .map(|d| d.to_string_lossy().into_owned())
        .ok();
    assert_eq!(env.cwd, cwd);
    assert!(env.host.is_some(), "{env:?}");
    // The tests run inside the project's checkout when it is a git repository.
    let here = std::env::current_dir().ok().and_then(|d| Git::of(&d));
    assert_eq!(Git::from_record(&r), here, "{r:?}");
    if let Some(g) = here {
        assert_eq!(g.commit.len(), 40, "{g:?}");
    }
    assert!(!r.metadata.contains_key("lineage"));
    Ok(())
}

#[test]
fn git_is_absent_outside_a_repository_and_reads_one() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(Git::of(tmp.path()), None);
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(tmp.path())
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !git(&["--version"]) {
        eprintln!("git is not installed: only the absent case is checked");
        return;
    }
    assert!(git(&["init", "-q", "-b", "main"]));
    std::fs::write(tmp.path().join("a.txt"), "one").unwrap_or_else(|e| panic!("{e}"));
    // A repository without commits has no commit to record.
    assert_eq!(Git::of(tmp.path()), None);
    assert!(git(&["add", "a.txt"]) && git(&["commit", "-q", "-m", "one"]));
    let clean = Git::of(tmp.path()).unwrap_or_else(|| panic!("a repository"));
    assert_eq!(clean.branch.as_deref(), Some("main"));
    assert!(!clean.dirty);
    std::fs::write(tmp.path().join("untracked.txt"), "x").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !Git::of(tmp.path()).is_some_and(|g| g.dirty),
        "untracked files do not count"
    );
    std::fs::write(tmp.path().join("a.txt"), "two").unwrap_or_else(|e| panic!("{e}"));
    let dirty = Git::of(tmp.path()).unwrap_or_else(|| panic!("a repository"));
    assert!(dirty.dirty);
    assert_eq!(dirty.commit, clean.commit);
    assert!(git(&["checkout", "-q", "--detach"]));
    assert_eq!(Git::of(tmp.path()).and_then(|g| g.branch), None);
    assert_eq!(Git::from_value(&dirty.to_value()), Some(dirty));
}

#[test]
fn lineage_records_the_running_call_as_parent() -> Result<(), Error> {
    let c = Cache::memory();
    with_cache(&c, || {
        outer(1);
        inner(7);
    });
    let parent = c.query().function("meta.outer").only()?;
    let children = c
        .query()
        .function("meta.inner")
        .arg_in("x", [1u64, 2])
        .records()?;
    assert_eq!(children.len(), 2);
    for child in &children {
        let l = Lineage::from_record(child).unwrap_or_else(|| panic!("no lineage: {child:?}"));
        assert_eq!(l.parent, parent.key);
        assert_eq!(l.function, "meta.outer");
    }
    // Called at top level: no parent. The parent itself did not ask for lineage.
    let top = c.query().function("meta.inner").arg("x", 7u64).only()?;
    assert_eq!(Lineage::from_record(&top), None);
    assert_eq!(Lineage::from_record(&parent), None);
    assert!(c.query().has_meta("lineage").count()? == 2);
    Ok(())
}

#[test]
fn a_panicking_body_leaves_no_parent_behind() -> Result<(), Error> {
    let c = Cache::memory();
    FAIL.store(true, Ordering::SeqCst);
    let caught = std::panic::catch_unwind(|| with_cache(&c, || failing(100)));
    FAIL.store(false, Ordering::SeqCst);
    assert!(caught.is_err());
    // The inner call finished inside the failing body: its parent is the failing call.
    let child = c.query().function("meta.inner").arg("x", 100u64).only()?;
    assert_eq!(
        Lineage::from_record(&child).map(|l| l.function).as_deref(),
        Some("meta.failing")
    );
    // After the panic, a top-level call has no parent.
    with_cache(&c, || inner(101));
    let after = c.query().function("meta.inner").arg("x", 101u64).only()?;
    assert_eq!(Lineage::from_record(&after), None);
    Ok(())
}

#[test]
fn custom_kinds_are_collected_and_built_in_names_win() -> Result<(), Error> {
    let c = Cache::memory();
    with_cache(&c, || custom(5));
    let r = c.query().function("meta.custom").only()?;
    assert_eq!(r.metadata.get("stamp"), Some(&Value::Str("stamped".into())));
    assert!(!r.metadata.contains_key("nothing"));
    assert!(Runtime::from_record(&r).is_some(), "{r:?}");
    assert_eq!(c.query().has_meta("stamp").count()?, 1);
    Ok(())
}
