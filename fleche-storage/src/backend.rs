//! What a storage backend implements to be configured by name: [`Backend`] checks a table of
//! `fleche.toml` into a [`StorageSpec`], which opens the storages when the cache is first used.
//! [`Settings`] gives typed access to the table and records every problem with its dotted key.
//! The backends themselves are listed in [`registry`](crate::registry).

use std::cell::RefCell;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{CallStorage, StorageError, ValueStorage};

/// A values storage and a calls storage, as a template opens them.
pub type Storages = (Box<dyn ValueStorage>, Box<dyn CallStorage>);

/// A storage backend as configuration files name it.
pub trait Backend: Sync {
    /// The `type` name (`msgpack`).
    fn name(&self) -> &'static str;
    /// Other names accepted for the same backend (`pickle`, ...).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    /// The cargo feature that builds this backend, when it is optional.
    fn feature(&self) -> Option<&'static str> {
        None
    }
    /// Whether this build of fleche contains the backend.
    fn enabled(&self) -> bool {
        true
    }
    /// The keys a table of this backend takes (besides `type`, and `remaining_depth` in a values table, which destructuring above the storage takes); `template` for a whole
    /// cache given as `template = "<type>"`.
    fn keys(&self, template: bool) -> &'static [&'static str];
    /// Checks `settings` and describes the storages they configure; every problem is recorded in
    /// `settings` (see [`Settings::into_errors`]) and `None` returned.
    fn parse(&self, settings: &Settings<'_>) -> Option<Box<dyn StorageSpec>>;
}

/// A checked storage configuration: opens the storages it describes when the cache is first
/// used (nothing is created or opened before).
pub trait StorageSpec: fmt::Debug + Send + Sync {
    /// Opens the values storage.
    ///
    /// # Errors
    ///
    /// When the storage cannot be created or opened.
    fn open_values(&self) -> Result<Box<dyn ValueStorage>, StorageError>;
    /// Opens the calls storage.
    ///
    /// # Errors
    ///
    /// When the storage cannot be created or opened.
    fn open_calls(&self) -> Result<Box<dyn CallStorage>, StorageError>;
    /// Opens both, for a template (one root or one database holding a whole cache).
    ///
    /// # Errors
    ///
    /// When a storage cannot be created or opened.
    fn open_both(&self) -> Result<Storages, StorageError> {
        Ok((self.open_values()?, self.open_calls()?))
    }
    /// Whether the storage can sign its entries (`secret_key`, `FLECHE_SECRET_KEY`).
    fn can_sign(&self) -> bool {
        false
    }
    /// Whether the storage persists anything outside the process.
    fn persistent(&self) -> bool {
        true
    }
}

/// A configuration problem of one key (or of the whole table when `key` is `None`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", key.as_ref().map(|k| format!("`{k}`: ")).unwrap_or_default())]
#[non_exhaustive]
pub struct SettingError {
    /// The dotted key (`fast.values.root`).
    pub key: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

/// One storage table being checked: typed access to its keys, every problem recorded with its
/// dotted key.
#[derive(Debug)]
pub struct Settings<'a> {
    pub(crate) table: &'a toml::Table,
    at: String,
    base: PathBuf,
    home: Option<PathBuf>,
    secret_keys: Option<String>,
    pub(crate) template: bool,
    /// Keys handled above the storage that the table may also hold.
    pub(crate) extra: &'a [&'a str],
    errors: RefCell<Vec<SettingError>>,
}

impl<'a> Settings<'a> {
    /// The table at dotted key `at`, whose relative paths resolve against `base` and `~` against
    /// `home`.
    #[must_use]
    pub fn new(table: &'a toml::Table, at: &str, base: &Path, home: Option<&Path>) -> Self {
        Self {
            table,
            at: at.to_owned(),
            base: base.to_owned(),
            home: home.map(Path::to_owned),
            secret_keys: None,
            template: false,
            extra: &["remaining_depth"],
            errors: RefCell::new(Vec::new()),
        }
    }

    /// Signing keys from the environment (`FLECHE_SECRET_KEY`), used by backends that sign when
    /// the table gives none.
    #[must_use]
    pub fn secret_keys(mut self, keys: Option<&str>) -> Self {
        self.secret_keys = keys.map(str::to_owned);
        self
    }

    /// The table is a whole cache given as `template = "<type>"`; `extra` are the cache-level
    /// keys it may hold besides the backend's (`read_only`, `max_size`).
    #[must_use]
    pub fn template(mut self, extra: &'a [&'a str]) -> Self {
        self.template = true;
        self.extra = extra;
        self
    }

    /// A table of calls: `remaining_depth` is refused.
    #[must_use]
    pub fn calls(mut self) -> Self {
        self.extra = &[];
        self
    }

    /// Whether the table is a whole-cache template.
    #[must_use]
    pub fn is_template(&self) -> bool {
        self.template
    }

    /// The dotted key of `k` in this table.
    #[must_use]
    pub fn key(&self, k: &str) -> String {
        if self.at.is_empty() {
            k.to_owned()
        } else {
            format!("{}.{k}", self.at)
        }
    }

    /// Records a problem with key `k` (or with the whole table).
    pub fn error(&self, k: Option<&str>, message: impl fmt::Display) {
        let key = match k {
            Some(k) => Some(self.key(k)),
            None if self.at.is_empty() => None,
            None => Some(self.at.clone()),
        };
        self.errors.borrow_mut().push(SettingError {
            key,
            message: message.to_string(),
        });
    }

    /// Whether a problem has been recorded.
    #[must_use]
    pub fn failed(&self) -> bool {
        !self.errors.borrow().is_empty()
    }

    /// The problems recorded, in the order found.
    #[must_use]
    pub fn into_errors(self) -> Vec<SettingError> {
        self.errors.into_inner()
    }

    fn wrong(&self, k: &str, expected: &str, found: &toml::Value) {
        self.error(
            Some(k),
            format!("expected {expected}, found {}", describe(found)),
        );
    }

    /// The raw value of `k`.
    #[must_use]
    pub fn get(&self, k: &str) -> Option<&'a toml::Value> {
        self.table.get(k)
    }

    /// A boolean.
    #[must_use]
    pub fn bool(&self, k: &str) -> Option<bool> {
        match self.table.get(k)? {
            toml::Value::Boolean(b) => Some(*b),
            v => {
                self.wrong(k, "a boolean", v);
                None
            }
        }
    }

    /// A string.
    #[must_use]
    pub fn string(&self, k: &str) -> Option<&'a str> {
        match self.table.get(k)? {
            toml::Value::String(s) => Some(s),
            v => {
                self.wrong(k, "a string", v);
                None
            }
        }
    }

    /// A path: `~` is the home directory, a relative path is relative to the configuration
    /// file's directory.
    #[must_use]
    pub fn path(&self, k: &str) -> Option<PathBuf> {
        self.string(k).map(|raw| self.resolve(raw))
    }

    /// A path that must be given; `what` says what it is for.
    #[must_use]
    pub fn required_path(&self, k: &str, what: &str) -> Option<PathBuf> {
        if !self.table.contains_key(k) {
            self.error(Some(k), format!("missing: {what}"));
            return None;
        }
        self.path(k)
    }

    /// `raw` as a path resolved like [`path`](Settings::path).
    #[must_use]
    pub fn resolve(&self, raw: &str) -> PathBuf {
        if raw == "~"
            && let Some(h) = &self.home
        {
            return h.clone();
        }
        if let (Some(rest), Some(h)) = (raw.strip_prefix("~/"), &self.home) {
            return h.join(rest);
        }
        self.base.join(raw)
    }

    /// The directory relative paths resolve against.
    #[must_use]
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The home directory, when known.
    #[must_use]
    pub fn home(&self) -> Option<&Path> {
        self.home.as_deref()
    }

    /// An integer within `range`.
    #[must_use]
    pub fn integer(&self, k: &str, range: RangeInclusive<i64>) -> Option<i64> {
        match self.table.get(k)? {
            toml::Value::Integer(n) if range.contains(n) => Some(*n),
            v => {
                let expected = if *range.end() == i64::MAX {
                    format!("an integer of at least {}", range.start())
                } else {
                    format!("an integer from {} to {}", range.start(), range.end())
                };
                self.wrong(k, &expected, v);
                None
            }
        }
    }

    /// A size in bytes: a positive integer, or a string with a unit (`"512 MiB"`, `"2GB"`; the
    /// units are B, KB, MB, GB, TB and KiB, MiB, GiB, TiB).
    #[must_use]
    pub fn bytes(&self, k: &str) -> Option<u64> {
        let v = self.table.get(k)?;
        let parsed = match v {
            toml::Value::Integer(n) => u64::try_from(*n).ok().filter(|n| *n > 0),
            toml::Value::String(text) => parse_size(text),
            _ => None,
        };
        if parsed.is_none() {
            self.wrong(k, "a positive size in bytes, as 1048576 or \"512 MiB\"", v);
        }
        parsed
    }

    /// A duration in seconds (an integer or a float, not negative).
    #[must_use]
    pub fn seconds(&self, k: &str) -> Option<Duration> {
        let v = self.table.get(k)?;
        let secs = match v {
            toml::Value::Integer(n) => *n as f64,
            toml::Value::Float(f) => *f,
            _ => {
                self.wrong(k, "a number of seconds", v);
                return None;
            }
        };
        match Duration::try_from_secs_f64(secs) {
            Ok(d) => Some(d),
            Err(_) => {
                self.wrong(k, "a number of seconds, not negative", v);
                None
            }
        }
    }

    /// A list of strings.
    #[must_use]
    pub fn strings(&self, k: &str) -> Option<Vec<(String, &'a str)>> {
        match self.table.get(k)? {
            toml::Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let at = format!("{k}[{i}]");
                    match item {
                        toml::Value::String(s) => out.push((at, s.as_str())),
                        v => self.wrong(&at, "a string", v),
                    }
                }
                Some(out)
            }
            v => {
                self.wrong(k, "a list of strings", v);
                None
            }
        }
    }

    /// `FLECHE_SECRET_KEY`, when given.
    #[must_use]
    pub fn env_secret_keys(&self) -> Option<&str> {
        self.secret_keys.as_deref()
    }
}

/// `"512 MiB"` as bytes; `None` for anything else, zero included.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(scale).filter(|n| *n > 0)
}

/// `a string`, `an integer 7`, ... for messages.
fn describe(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("the string \"{s}\""),
        toml::Value::Integer(n) => format!("{n}"),
        toml::Value::Float(f) => format!("{f}"),
        toml::Value::Boolean(b) => format!("{b}"),
        other => other.type_str().to_owned(),
    }
}
