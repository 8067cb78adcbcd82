//! Turning checked TOML into caches. Every error names the file and the dotted key.

use std::path::{Path, PathBuf};

use fleche_storage::{
    CallStorage, FileCalls, FileOptions, FileValues, MemoryCalls, MemoryValues, SigningKey,
    ValueStorage, VoidCalls, VoidValues,
};
#[cfg(feature = "hdf5")]
use fleche_storage::{Hdf5Calls, Hdf5Values};
#[cfg(feature = "sqlite")]
use fleche_storage::{SqlDatabase, SqlTarget};
use toml::Value;

use super::{ConfigError, Env, SECRET_KEY_ENV};
use crate::{Cache, RESERVED_NAMES};

/// The metadata `[default] metadata` may list.
pub(crate) const KNOWN_METADATA: [&str; 1] = ["Runtime"];

/// The `[default]` table.
#[derive(Debug)]
pub(crate) struct Defaults {
    pub(crate) cache: Option<DefaultRef>,
    pub(crate) metadata: Vec<String>,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            cache: None,
            metadata: vec!["Runtime".to_owned()],
        }
    }
}

#[derive(Debug)]
pub(crate) enum DefaultRef {
    Name(String),
    Inline(Value, PathBuf),
}

/// A key path for messages: `fast.values.root`.
fn key(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_owned()
    } else {
        format!("{prefix}.{k}")
    }
}

fn table<'a>(v: &'a Value, file: &Path, at: &str) -> Result<&'a toml::Table, ConfigError> {
    v.as_table().ok_or_else(|| {
        ConfigError::new(
            file,
            Some(at),
            format!("expected a table, found {}", v.type_str()),
        )
    })
}

fn unknown_keys(
    t: &toml::Table,
    allowed: &[&str],
    file: &Path,
    at: &str,
) -> Result<(), ConfigError> {
    match t.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(ConfigError::new(
            file,
            Some(&key(at, k)),
            format!("unknown key; expected one of {}", allowed.join(", ")),
        )),
    }
}

fn bool_of(t: &toml::Table, k: &str, file: &Path, at: &str) -> Result<Option<bool>, ConfigError> {
    match t.get(k) {
        None => Ok(None),
        Some(Value::Boolean(b)) => Ok(Some(*b)),
        Some(v) => Err(ConfigError::new(
            file,
            Some(&key(at, k)),
            format!("expected a boolean, found {}", v.type_str()),
        )),
    }
}

fn str_of<'a>(
    t: &'a toml::Table,
    k: &str,
    file: &Path,
    at: &str,
) -> Result<Option<&'a str>, ConfigError> {
    match t.get(k) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(ConfigError::new(
            file,
            Some(&key(at, k)),
            format!("expected a string, found {}", v.type_str()),
        )),
    }
}

pub(crate) fn defaults(v: &Value, file: &Path) -> Result<Defaults, ConfigError> {
    let t = table(v, file, "default")?;
    unknown_keys(t, &["cache", "metadata", "root"], file, "default")?;
    bool_of(t, "root", file, "default")?;
    let cache = match t.get("cache") {
        None => None,
        Some(Value::String(s)) => Some(DefaultRef::Name(s.clone())),
        Some(v @ (Value::Table(_) | Value::Array(_))) => {
            Some(DefaultRef::Inline(v.clone(), file.to_owned()))
        }
        Some(v) => {
            return Err(ConfigError::new(
                file,
                Some("default.cache"),
                format!(
                    "expected a cache name or an inline cache table, found {}",
                    v.type_str()
                ),
            ));
        }
    };
    let mut metadata = Vec::new();
    match t.get("metadata") {
        None => metadata.push("Runtime".to_owned()),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("default.metadata[{i}]");
                let Value::String(name) = item else {
                    return Err(ConfigError::new(
                        file,
                        Some(&at),
                        "expected a metadata name (a string)",
                    ));
                };
                if name == "Tags" {
                    return Err(ConfigError::new(
                        file,
                        Some(&at),
                        "`Tags` takes arguments and cannot be configured in a file: set tags in code",
                    ));
                }
                if !KNOWN_METADATA.contains(&name.as_str()) {
                    return Err(ConfigError::new(
                        file,
                        Some(&at),
                        format!(
                            "unknown metadata `{name}`; known: {}",
                            KNOWN_METADATA.join(", ")
                        ),
                    ));
                }
                metadata.push(name.clone());
            }
        }
        Some(v) => {
            return Err(ConfigError::new(
                file,
                Some("default.metadata"),
                format!("expected a list of metadata names, found {}", v.type_str()),
            ));
        }
    }
    Ok(Defaults { cache, metadata })
}

pub(crate) fn check_name(name: &str, file: &Path) -> Result<(), ConfigError> {
    if RESERVED_NAMES.contains(&name) {
        return Err(ConfigError::new(
            file,
            Some(name),
            format!("`{name}` is a reserved cache name; choose another name for this section"),
        ));
    }
    Ok(())
}

/// The cache a section (or an inline `[default.cache]`) defines.
pub(crate) fn cache(name: &str, v: &Value, file: &Path, env: &Env) -> Result<Cache, ConfigError> {
    let composition = |e: crate::Error| ConfigError::new(file, Some(name), e);
    match v {
        Value::Array(items) => {
            let layers = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let at = format!("{name}[{i}]");
                    single(name, table(item, file, &at)?, file, &at, env)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Cache::stack(name, layers).map_err(composition)
        }
        Value::Table(t) if t.contains_key("pool") => {
            unknown_keys(t, &["pool"], file, name)?;
            let at = key(name, "pool");
            let Some(Value::Array(items)) = t.get("pool") else {
                return Err(ConfigError::new(
                    file,
                    Some(&at),
                    "expected an array of tables: `[[name.pool]]`",
                ));
            };
            let members = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let at = format!("{at}[{i}]");
                    single(name, table(item, file, &at)?, file, &at, env)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Cache::pool(name, members).map_err(composition)
        }
        Value::Table(t) => single(name, t, file, name, env),
        other => Err(ConfigError::new(
            file,
            Some(name),
            format!("expected a cache table, found {}", other.type_str()),
        )),
    }
}

const SINGLE_KEYS: [&str; 12] = [
    "values",
    "prefix_length",
    "url",
    "calls",
    "read_only",
    "max_size",
    "template",
    "root",
    "compress",
    "secret_key",
    "durable",
    "lock_timeout",
];

/// One values + calls pair, with its wrappers.
fn single(
    name: &str,
    t: &toml::Table,
    file: &Path,
    at: &str,
    env: &Env,
) -> Result<Cache, ConfigError> {
    unknown_keys(t, &SINGLE_KEYS, file, at)?;
    let read_only = bool_of(t, "read_only", file, at)?.unwrap_or(false);
    let max_size = match t.get("max_size") {
        None => None,
        Some(Value::Integer(n)) if *n >= 0 => usize::try_from(*n).ok(),
        Some(v) => {
            return Err(ConfigError::new(
                file,
                Some(&key(at, "max_size")),
                format!("expected a non-negative integer, found {v}"),
            ));
        }
    };
    let mut cache = match str_of(t, "template", file, at)? {
        Some(template) => {
            for k in ["values", "calls"] {
                if t.contains_key(k) {
                    return Err(ConfigError::new(
                        file,
                        Some(&key(at, k)),
                        "give either `template` or `values` and `calls`, not both",
                    ));
                }
            }
            from_template(name, template, t, file, at, env)?
        }
        None => {
            for k in [
                "root",
                "url",
                "prefix_length",
                "compress",
                "secret_key",
                "durable",
                "lock_timeout",
            ] {
                if t.contains_key(k) {
                    return Err(ConfigError::new(
                        file,
                        Some(&key(at, k)),
                        "this key belongs in `values` or `calls`, or goes with `template`",
                    ));
                }
            }
            let values_at = key(at, "values");
            let calls_at = key(at, "calls");
            let values = t.get("values").ok_or_else(|| {
                ConfigError::new(
                    file,
                    Some(&values_at),
                    "missing: every cache needs `values` and `calls` (or a `template`)",
                )
            })?;
            let calls = t.get("calls").ok_or_else(|| {
                ConfigError::new(
                    file,
                    Some(&calls_at),
                    "missing: every cache needs `values` and `calls` (or a `template`)",
                )
            })?;
            let values_table = table(values, file, &values_at)?;
            let depth = remaining_depth(values_table, file, &values_at)?;
            let values = value_storage(values_table, file, &values_at, env)?;
            let calls = call_storage(table(calls, file, &calls_at)?, file, &calls_at, env)?;
            let cache = Cache::from_storages(name, values, calls);
            match depth {
                Some(d) => cache
                    .remaining_depth(d)
                    .map_err(|e| ConfigError::new(file, Some(&values_at), e))?,
                None => cache,
            }
        }
    };
    let wrap = |e: crate::Error| ConfigError::new(file, Some(at), e);
    if let Some(max) = max_size {
        cache = cache.max_size(max).map_err(wrap)?;
    }
    if read_only {
        cache = cache.read_only().map_err(wrap)?;
    }
    Ok(cache)
}

/// `remaining_depth` of a values table: a non-negative integer.
fn remaining_depth(t: &toml::Table, file: &Path, at: &str) -> Result<Option<usize>, ConfigError> {
    match t.get("remaining_depth") {
        None => Ok(None),
        Some(Value::Integer(n)) if *n >= 0 => Ok(usize::try_from(*n).ok()),
        Some(v) => Err(ConfigError::new(
            file,
            Some(&key(at, "remaining_depth")),
            format!("expected a non-negative integer, found {v}"),
        )),
    }
}

/// The backend a `type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    Void,
    Msgpack,
    #[cfg(feature = "sqlite")]
    Sql,
    #[cfg(feature = "hdf5")]
    Hdf5,
}

fn backend(t: &toml::Table, k: &str, file: &Path, at: &str) -> Result<Backend, ConfigError> {
    let at_type = key(at, k);
    let name = str_of(t, k, file, at)?.ok_or_else(|| {
        ConfigError::new(file, Some(&at_type), "missing: give the storage `type`")
    })?;
    match name {
        "memory" => Ok(Backend::Memory),
        "void" => Ok(Backend::Void),
        "msgpack" | "pickle" | "cloudpickle" | "dill" => Ok(Backend::Msgpack),
        #[cfg(feature = "sqlite")]
        "sql" => Ok(Backend::Sql),
        #[cfg(feature = "hdf5")]
        "hdf5" | "bagofholding_hdf" => Ok(Backend::Hdf5),
        #[cfg(not(feature = "sqlite"))]
        "sql" => Err(ConfigError::new(
            file,
            Some(&at_type),
            "type `sql` needs fleche built with the `sqlite` feature",
        )),
        #[cfg(not(feature = "hdf5"))]
        name @ ("hdf5" | "bagofholding_hdf") => Err(ConfigError::new(
            file,
            Some(&at_type),
            format!("type `{name}` needs fleche built with the `hdf5` feature"),
        )),
        other => Err(ConfigError::new(
            file,
            Some(&at_type),
            format!(
                "unknown storage type `{other}`; expected memory, void, msgpack (or pickle, cloudpickle, dill), sql, hdf5 (or bagofholding_hdf)"
            ),
        )),
    }
}

const FILE_KEYS: [&str; 6] = [
    "type",
    "root",
    "compress",
    "secret_key",
    "durable",
    "lock_timeout",
];

fn check_keys(kind: Backend, t: &toml::Table, file: &Path, at: &str) -> Result<(), ConfigError> {
    let mut t = t.clone();
    if at.ends_with("values") {
        // Destructuring applies to values, on every backend.
        t.remove("remaining_depth");
    } else if t.contains_key("remaining_depth") {
        return Err(ConfigError::new(
            file,
            Some(&key(at, "remaining_depth")),
            "`remaining_depth` applies to `values`, not to `calls`",
        ));
    }
    let t = &t;
    match kind {
        Backend::Memory | Backend::Void => unknown_keys(t, &["type"], file, at),
        Backend::Msgpack => unknown_keys(t, &FILE_KEYS, file, at),
        #[cfg(feature = "sqlite")]
        Backend::Sql => unknown_keys(t, &["type", "url"], file, at),
        #[cfg(feature = "hdf5")]
        Backend::Hdf5 => unknown_keys(
            t,
            &["type", "root", "prefix_length", "lock_timeout"],
            file,
            at,
        ),
    }
}

/// Every key any storage type takes: a key outside it is reported before a missing `type`.
const STORAGE_KEYS: [&str; 9] = [
    "type",
    "prefix_length",
    "url",
    "root",
    "compress",
    "secret_key",
    "durable",
    "lock_timeout",
    "remaining_depth",
];

/// A storage table, checked and resolved; the values and calls storages are built from it.
enum Spec {
    Memory,
    Void,
    Files(PathBuf, FileOptions),
    #[cfg(feature = "sqlite")]
    Sql(SqlDatabase),
    #[cfg(feature = "hdf5")]
    Hdf5(PathBuf, usize),
}

fn spec(t: &toml::Table, file: &Path, at: &str, env: &Env) -> Result<Spec, ConfigError> {
    unknown_keys(t, &STORAGE_KEYS, file, at)?;
    let kind = backend(t, "type", file, at)?;
    check_keys(kind, t, file, at)?;
    Ok(match kind {
        Backend::Memory => Spec::Memory,
        Backend::Void => Spec::Void,
        Backend::Msgpack => {
            let (root, options) = file_settings(t, file, at, env)?;
            Spec::Files(root, options)
        }
        #[cfg(feature = "sqlite")]
        Backend::Sql => Spec::Sql(database(t, file, at, env)?),
        #[cfg(feature = "hdf5")]
        Backend::Hdf5 => {
            let (root, prefix) = hdf5_settings(t, file, at, env)?;
            Spec::Hdf5(root, prefix)
        }
    })
}

fn value_storage(
    t: &toml::Table,
    file: &Path,
    at: &str,
    env: &Env,
) -> Result<Box<dyn ValueStorage>, ConfigError> {
    let opened = |e| ConfigError::new(file, Some(&key(at, "root")), e);
    Ok(match spec(t, file, at, env)? {
        Spec::Memory => Box::new(MemoryValues::new()),
        Spec::Void => Box::new(VoidValues),
        Spec::Files(root, options) => Box::new(FileValues::open(&root, options).map_err(opened)?),
        #[cfg(feature = "sqlite")]
        Spec::Sql(db) => Box::new(db.values()),
        #[cfg(feature = "hdf5")]
        Spec::Hdf5(root, prefix) => Box::new(Hdf5Values::open(&root, prefix).map_err(opened)?),
    })
}

fn call_storage(
    t: &toml::Table,
    file: &Path,
    at: &str,
    env: &Env,
) -> Result<Box<dyn CallStorage>, ConfigError> {
    let opened = |e| ConfigError::new(file, Some(&key(at, "root")), e);
    Ok(match spec(t, file, at, env)? {
        Spec::Memory => Box::new(MemoryCalls::new()),
        Spec::Void => Box::new(VoidCalls),
        Spec::Files(root, options) => Box::new(FileCalls::open(&root, options).map_err(opened)?),
        #[cfg(feature = "sqlite")]
        Spec::Sql(db) => Box::new(db.calls()),
        #[cfg(feature = "hdf5")]
        Spec::Hdf5(root, prefix) => Box::new(Hdf5Calls::open(&root, prefix).map_err(opened)?),
    })
}

/// `root` (required) and `prefix_length` (default 2) of an HDF5 storage.
#[cfg(feature = "hdf5")]
fn hdf5_settings(
    t: &toml::Table,
    file: &Path,
    at: &str,
    env: &Env,
) -> Result<(PathBuf, usize), ConfigError> {
    let raw = str_of(t, "root", file, at)?.ok_or_else(|| {
        ConfigError::new(
            file,
            Some(&key(at, "root")),
            "missing: an HDF5 storage needs a `root` directory",
        )
    })?;
    let root = env.resolve(raw, file.parent().unwrap_or(Path::new(".")));
    let prefix = match t.get("prefix_length") {
        None => fleche_storage::hdf5::DEFAULT_PREFIX_LENGTH,
        Some(Value::Integer(n)) if (1..=64).contains(n) => usize::try_from(*n).unwrap_or(2),
        Some(v) => {
            return Err(ConfigError::new(
                file,
                Some(&key(at, "prefix_length")),
                format!("expected an integer from 1 to 64, found {v}"),
            ));
        }
    };
    Ok((root, prefix))
}

/// The database a `url` (required) names, opened; relative paths resolve against the file's
/// directory.
#[cfg(feature = "sqlite")]
fn database(t: &toml::Table, file: &Path, at: &str, env: &Env) -> Result<SqlDatabase, ConfigError> {
    let at_url = key(at, "url");
    let url = str_of(t, "url", file, at)?.ok_or_else(|| {
        ConfigError::new(
            file,
            Some(&at_url),
            "missing: an `sql` storage needs a `url`, as `sqlite:///cache.db`",
        )
    })?;
    let base = file.parent().unwrap_or(Path::new("."));
    let target = SqlTarget::from_url(url, base, env.home.as_deref())
        .map_err(|m| ConfigError::new(file, Some(&at_url), m))?;
    SqlDatabase::open(&target).map_err(|e| ConfigError::new(file, Some(&at_url), e))
}

/// `root` (required, resolved against the file's directory) and the file backend's options.
fn file_settings(
    t: &toml::Table,
    file: &Path,
    at: &str,
    env: &Env,
) -> Result<(PathBuf, FileOptions), ConfigError> {
    let raw = str_of(t, "root", file, at)?.ok_or_else(|| {
        ConfigError::new(
            file,
            Some(&key(at, "root")),
            "missing: a file backend needs a `root` directory",
        )
    })?;
    let base = file.parent().unwrap_or(Path::new("."));
    let root = env.resolve(raw, base);
    let mut options = FileOptions::new();
    match t.get("compress") {
        None | Some(Value::Boolean(false)) => {}
        Some(Value::Boolean(true)) => options = options.compress(3),
        Some(Value::Integer(level)) if (1..=22).contains(level) => {
            options = options.compress(i32::try_from(*level).unwrap_or(3));
        }
        Some(v) => {
            return Err(ConfigError::new(
                file,
                Some(&key(at, "compress")),
                format!("expected true, false or a zstd level from 1 to 22, found {v}"),
            ));
        }
    }
    options = options.durable(bool_of(t, "durable", file, at)?.unwrap_or(false));
    match t.get("lock_timeout") {
        None | Some(Value::Float(_) | Value::Integer(_)) => {}
        Some(v) => {
            return Err(ConfigError::new(
                file,
                Some(&key(at, "lock_timeout")),
                format!("expected a number of seconds, found {}", v.type_str()),
            ));
        }
    }
    let keys = match t.get("secret_key") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let at = format!("{}[{i}]", key(at, "secret_key"));
                match item {
                    Value::String(hex) => {
                        SigningKey::from_hex(hex).map_err(|m| ConfigError::new(file, Some(&at), m))
                    }
                    v => Err(ConfigError::new(
                        file,
                        Some(&at),
                        format!("expected a hexadecimal string, found {}", v.type_str()),
                    )),
                }
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(v) => {
            return Err(ConfigError::new(
                file,
                Some(&key(at, "secret_key")),
                format!(
                    "expected a list of hexadecimal strings, found {}",
                    v.type_str()
                ),
            ));
        }
        None => match &env.secret_keys {
            Some(list) => list
                .split([',', ' ', '\n', '\t'])
                .filter(|s| !s.is_empty())
                .map(|hex| {
                    SigningKey::from_hex(hex)
                        .map_err(|m| ConfigError::new(Path::new(SECRET_KEY_ENV), None, m))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        },
    };
    Ok((root, options.keys(keys)))
}

/// `template = "msgpack"` with `root = R`: values in `R/values`, calls in `R/calls`.
fn from_template(
    name: &str,
    template: &str,
    t: &toml::Table,
    file: &Path,
    at: &str,
    env: &Env,
) -> Result<Cache, ConfigError> {
    let mut spec = toml::Table::new();
    spec.insert("type".to_owned(), Value::String(template.to_owned()));
    let kind = backend(&spec, "type", file, at).map_err(|e| ConfigError {
        key: Some(key(at, "template")),
        ..e
    })?;
    match kind {
        Backend::Memory => {
            unknown_keys(t, &["template", "read_only", "max_size"], file, at)?;
            Ok(Cache::memory())
        }
        Backend::Void => {
            unknown_keys(t, &["template", "read_only", "max_size"], file, at)?;
            Ok(Cache::void())
        }
        Backend::Msgpack => {
            unknown_keys(
                t,
                &[
                    "template",
                    "root",
                    "compress",
                    "secret_key",
                    "durable",
                    "lock_timeout",
                    "read_only",
                    "max_size",
                ],
                file,
                at,
            )?;
            let (root, options) = file_settings(t, file, at, env)?;
            let values = FileValues::open(root.join("values"), options.clone())
                .map_err(|e| ConfigError::new(file, Some(&key(at, "root")), e))?;
            let calls = FileCalls::open(root.join("calls"), options)
                .map_err(|e| ConfigError::new(file, Some(&key(at, "root")), e))?;
            Ok(Cache::from_storages(name, values, calls))
        }
        #[cfg(feature = "hdf5")]
        Backend::Hdf5 => {
            unknown_keys(
                t,
                &[
                    "template",
                    "root",
                    "prefix_length",
                    "lock_timeout",
                    "read_only",
                    "max_size",
                ],
                file,
                at,
            )?;
            let (root, prefix) = hdf5_settings(t, file, at, env)?;
            let fail = |e| ConfigError::new(file, Some(&key(at, "root")), e);
            let values = Hdf5Values::open(root.join("values"), prefix).map_err(fail)?;
            let calls = Hdf5Calls::open(root.join("calls"), prefix).map_err(fail)?;
            Ok(Cache::from_storages(name, values, calls))
        }
        #[cfg(feature = "sqlite")]
        Backend::Sql => {
            // One database for both: `url`, or `root` for `<root>/fleche.db`.
            unknown_keys(
                t,
                &["template", "url", "root", "read_only", "max_size"],
                file,
                at,
            )?;
            let db = match (t.get("url"), str_of(t, "root", file, at)?) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(
                        file,
                        Some(&key(at, "root")),
                        "give either `url` or `root`, not both",
                    ));
                }
                (_, Some(root)) => {
                    let path = env
                        .resolve(root, file.parent().unwrap_or(Path::new(".")))
                        .join("fleche.db");
                    SqlDatabase::open(&SqlTarget::File(path))
                        .map_err(|e| ConfigError::new(file, Some(&key(at, "root")), e))?
                }
                (_, None) => database(t, file, at, env)?,
            };
            Ok(Cache::from_storages(name, db.values(), db.calls()))
        }
    }
}
