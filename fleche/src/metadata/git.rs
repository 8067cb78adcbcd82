//! [`Git`]: the commit a call's program was run from.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use fleche_storage::{CallRecord, Value};

/// The git commit, branch and dirty flag of the repository holding the process's working
/// directory, computed once per process (with the `git` command, on first use). Absent outside a
/// repository, or when `git` cannot be run. Recorded when asked for (`[default] metadata =
/// ["Git"]` or `#[memoize(meta(Git))]`) under the metadata name [`Git::NAME`].
///
/// Stored as a struct: `commit` (hex), `branch` (absent on a detached head), `dirty` (tracked
/// files differ from the commit; untracked files do not count).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Git {
    /// The commit `HEAD` names, in hex.
    pub commit: String,
    /// The branch checked out, if any.
    pub branch: Option<String>,
    /// Whether tracked files have changes not committed.
    pub dirty: bool,
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Git {
    /// The metadata name under which call records keep it.
    pub const NAME: &'static str = "git";

    /// The state of the repository holding this process's working directory, as it was when
    /// first asked (once per process); `None` outside a repository.
    #[must_use]
    pub fn current() -> Option<&'static Git> {
        static CURRENT: OnceLock<Option<Git>> = OnceLock::new();
        CURRENT
            .get_or_init(|| Self::of(&std::env::current_dir().ok()?))
            .as_ref()
    }

    /// The state of the repository holding `dir`, now; `None` outside a repository.
    #[must_use]
    pub fn of(dir: &Path) -> Option<Git> {
        let commit = git(dir, &["rev-parse", "--verify", "-q", "HEAD"])?;
        if commit.is_empty() {
            return None;
        }
        let branch = git(dir, &["symbolic-ref", "--short", "-q", "HEAD"]).filter(|b| !b.is_empty());
        let dirty = git(dir, &["status", "--porcelain", "--untracked-files=no"])
            .is_some_and(|s| !s.is_empty());
        Some(Git {
            commit,
            branch,
            dirty,
        })
    }

    /// The git state stored in `record`, if any.
    #[must_use]
    pub fn from_record(record: &CallRecord) -> Option<Self> {
        Self::from_value(record.metadata.get(Self::NAME)?)
    }

    /// Parses the stored form.
    #[must_use]
    pub fn from_value(value: &Value) -> Option<Self> {
        Some(Self {
            commit: value.field("commit")?.as_str()?.to_owned(),
            branch: value
                .field("branch")
                .and_then(Value::as_str)
                .map(str::to_owned),
            dirty: matches!(value.field("dirty")?, Value::Bool(true)),
        })
    }

    /// The stored form.
    #[must_use]
    pub fn to_value(&self) -> Value {
        let mut fields = vec![("commit".to_owned(), Value::Str(self.commit.clone()))];
        if let Some(b) = &self.branch {
            fields.push(("branch".to_owned(), Value::Str(b.clone())));
        }
        fields.push(("dirty".to_owned(), Value::Bool(self.dirty)));
        Value::Struct(fields)
    }
}
