//! `fleche.toml`: discovery, merging, and building the caches it names.
//!
//! Discovery ([`Config::discover`]) walks up from the working directory collecting `fleche.toml`
//! files, stopping at `$HOME` (inclusive) or `/`, then adds `$XDG_CONFIG_HOME/fleche/cache.toml`
//! (or `~/.config/fleche/cache.toml`) as the lowest layer. Files merge shallowly: the closest
//! file's top-level table wins whole. `[default] root = true` stops the walk. `FLECHE_CONFIG`
//! names one file to use instead of discovery; `FLECHE_CACHE` names the default cache.
//!
//! Every top-level table remembers the file it came from, so every error names a file and a key.

mod env;
mod spec;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use env::Env;
pub use spec::CacheSpec;
pub(crate) use spec::{LayerSpec, Shape, Storages, parse as parse_definition};

/// The name of the files discovered by walking up from the working directory.
pub const FILE_NAME: &str = "fleche.toml";
/// The environment variable naming the default cache.
pub const CACHE_ENV: &str = "FLECHE_CACHE";
/// The environment variable naming an explicit configuration file (discovery is skipped).
pub const CONFIG_ENV: &str = "FLECHE_CONFIG";
/// The environment variable holding signing keys (hexadecimal, separated by commas or spaces)
/// for caches that configure none.
pub const SECRET_KEY_ENV: &str = "FLECHE_SECRET_KEY";
/// The names every program can use without a configuration file.
pub const RESERVED_NAMES: [&str; 3] = ["memory", "void", "default"];
/// The metadata `[default] metadata` may list. `Tags` is accepted and changes nothing: tags set
/// with a scope are always recorded.
pub const KNOWN_METADATA: [&str; 5] = ["Runtime", "Environment", "Git", "Tags", "Lineage"];

/// A configuration problem: always names the file and, where there is one, the cache and the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{}{}{}: {message}",
    cache.as_ref().map(|c| format!("cache `{c}` in ")).unwrap_or_default(),
    file.display(),
    key.as_ref().map(|k| format!(": `{k}`")).unwrap_or_default()
)]
#[non_exhaustive]
pub struct ConfigError {
    /// The file (or `<string>` under the working directory for text not from a file).
    pub file: PathBuf,
    /// The cache whose definition is wrong, when the problem is in one.
    pub cache: Option<String>,
    /// The key, as a dotted path (`fast.values.type`), when the problem has one.
    pub key: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(
        file: &Path,
        cache: Option<&str>,
        key: Option<&str>,
        message: impl fmt::Display,
    ) -> Self {
        Self {
            file: file.to_owned(),
            cache: cache.map(str::to_owned),
            key: key.map(str::to_owned),
            message: message.to_string(),
        }
    }

    /// The first of `errors`, saying how many more there are.
    pub(crate) fn first_of(errors: &[ConfigError]) -> Option<ConfigError> {
        let mut first = errors.first()?.clone();
        if errors.len() > 1 {
            first.message = format!(
                "{} (and {} more problems; `fleche config check` lists them)",
                first.message,
                errors.len() - 1
            );
        }
        Some(first)
    }
}

/// One cache definition, checked: the file it came from and its spec or its problems.
#[derive(Debug)]
struct Section {
    file: PathBuf,
    spec: Result<CacheSpec, Vec<ConfigError>>,
}

/// The `[default]` table, checked.
#[derive(Debug)]
struct Defaults {
    /// The file holding `[default]`, when one does.
    file: Option<PathBuf>,
    cache: Option<DefaultRef>,
    metadata: Vec<String>,
    errors: Vec<ConfigError>,
}

#[derive(Debug)]
enum DefaultRef {
    Name(String),
    Inline(Result<CacheSpec, Vec<ConfigError>>),
}

/// The merged configuration: every file found, every cache definition checked (nothing is
/// opened until a cache is used), every problem kept with its file and key.
#[derive(Debug)]
pub struct Config {
    /// The files that apply, closest first.
    files: Vec<PathBuf>,
    /// Files that could not be read or parsed: their definitions are missing.
    broken: Vec<ConfigError>,
    sections: BTreeMap<String, Section>,
    defaults: Defaults,
    /// The merged top-level tables as written, with their files.
    tables: Vec<(String, PathBuf, toml::Value)>,
    env: Env,
}

impl Config {
    /// Discovers, merges and checks the configuration files for `env` (see the module docs). A
    /// file that cannot be read or parsed contributes nothing and is reported by
    /// [`problems`](Config::problems); a broken definition fails only its own cache.
    #[must_use]
    pub fn discover(env: &Env) -> Self {
        let mut layers: Vec<(PathBuf, toml::Table)> = Vec::new();
        let mut files = Vec::new();
        let mut broken = Vec::new();
        let mut add = |path: PathBuf, layers: &mut Vec<_>| -> bool {
            files.push(path.clone());
            match read(&path).and_then(|t| is_root(&t, &path).map(|root| (t, root))) {
                Ok((table, root)) => {
                    layers.push((path, table));
                    root
                }
                Err(e) => {
                    broken.push(e);
                    false
                }
            }
        };
        if let Some(explicit) = &env.config_file {
            add(explicit.clone(), &mut layers);
        } else {
            let mut stopped = false;
            for dir in walk(&env.cwd, env.home.as_deref()) {
                let path = dir.join(FILE_NAME);
                if path.is_file() && add(path, &mut layers) {
                    stopped = true;
                    break;
                }
            }
            if !stopped
                && let Some(xdg) = env.xdg_file()
                && xdg.is_file()
            {
                add(xdg, &mut layers);
            }
        }
        // Farthest first, so closer files replace whole tables.
        let mut merged: BTreeMap<String, (toml::Value, PathBuf)> = BTreeMap::new();
        for (file, table) in layers.into_iter().rev() {
            for (name, value) in table {
                merged.insert(name, (value, file.clone()));
            }
        }
        Self::from_merged(files, broken, merged, env)
    }

    /// A configuration made of one TOML text (for tests and programs that build their own).
    /// Relative paths resolve against `base`.
    ///
    /// # Errors
    ///
    /// Text that does not parse. Problems in the definitions are kept, as for files.
    pub fn from_toml_str(text: &str, base: &Path, env: &Env) -> Result<Self, ConfigError> {
        let origin = base.join("<string>");
        let table = parse_toml(text, &origin)?;
        let merged = table
            .into_iter()
            .map(|(name, value)| (name, (value, origin.clone())))
            .collect();
        Ok(Self::from_merged(Vec::new(), Vec::new(), merged, env))
    }

    fn from_merged(
        files: Vec<PathBuf>,
        broken: Vec<ConfigError>,
        mut merged: BTreeMap<String, (toml::Value, PathBuf)>,
        env: &Env,
    ) -> Self {
        let tables = merged
            .iter()
            .map(|(name, (value, file))| (name.clone(), file.clone(), value.clone()))
            .collect();
        let defaults = match merged.remove("default") {
            Some((value, file)) => defaults(&value, &file, env),
            None => Defaults {
                file: None,
                cache: None,
                metadata: vec!["Runtime".to_owned()],
                errors: Vec::new(),
            },
        };
        let sections = merged
            .into_iter()
            .map(|(name, (value, file))| {
                let spec = if RESERVED_NAMES.contains(&name.as_str()) {
                    Err(vec![ConfigError::new(
                        &file,
                        Some(&name),
                        Some(&name),
                        format!("`{name}` is a reserved cache name; choose another name for this section"),
                    )])
                } else {
                    spec::parse(&name, &value, &file, env)
                };
                (name, Section { file, spec })
            })
            .collect();
        Self {
            files,
            broken,
            sections,
            defaults,
            tables,
            env: env.clone(),
        }
    }

    /// The merged top-level tables, by name, each with the file it came from (merging is by
    /// whole table, so every value in a table comes from that file): what `fleche config show`
    /// prints.
    #[must_use]
    pub fn tables(&self) -> &[(String, PathBuf, toml::Value)] {
        &self.tables
    }

    /// The files that apply, closest first (including any that could not be read).
    #[must_use]
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The environment the configuration was read for.
    #[must_use]
    pub fn env(&self) -> &Env {
        &self.env
    }

    /// The names of the caches defined (broken ones included), in order.
    #[must_use]
    pub fn cache_names(&self) -> Vec<String> {
        self.sections.keys().cloned().collect()
    }

    /// Every problem of every file: files that cannot be read or parsed, every broken key of
    /// every cache definition and of `[default]`, and a `[default] cache` that names no cache.
    #[must_use]
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut out = self.broken.clone();
        out.extend(self.defaults.errors.iter().cloned());
        if let Some(DefaultRef::Inline(Err(errors))) = &self.defaults.cache {
            out.extend(errors.iter().cloned());
        }
        if let (Some(DefaultRef::Name(name)), Some(file)) =
            (&self.defaults.cache, &self.defaults.file)
            && !RESERVED_NAMES.contains(&name.as_str())
            && !self.sections.contains_key(name)
        {
            out.push(ConfigError::new(
                file,
                None,
                Some("default.cache"),
                format!(
                    "names the cache `{name}`, which is not defined; defined: {}",
                    self.known_names().join(", ")
                ),
            ));
        }
        for section in self.sections.values() {
            if let Err(errors) = &section.spec {
                out.extend(errors.iter().cloned());
            }
        }
        out
    }

    /// Warnings: settings that work but probably not as meant (signing keys from
    /// `FLECHE_SECRET_KEY` for a storage that cannot sign).
    #[must_use]
    pub fn warnings(&self) -> Vec<ConfigError> {
        let inline = match &self.defaults.cache {
            Some(DefaultRef::Inline(Ok(spec))) => Some(spec),
            _ => None,
        };
        self.sections
            .values()
            .filter_map(|s| s.spec.as_ref().ok())
            .chain(inline)
            .flat_map(|spec| spec.warnings(&self.env))
            .collect()
    }

    /// The names that resolve: the reserved ones, then the defined ones.
    pub(crate) fn known_names(&self) -> Vec<String> {
        RESERVED_NAMES
            .iter()
            .map(|s| (*s).to_owned())
            .chain(
                self.sections
                    .keys()
                    .filter(|k| !RESERVED_NAMES.contains(&k.as_str()))
                    .cloned(),
            )
            .collect()
    }

    /// The checked definition of the cache `name`; `Ok(None)` when no section has that name.
    ///
    /// # Errors
    ///
    /// The definition's problems (the first, with a count of the others).
    pub fn spec(&self, name: &str) -> Result<Option<&CacheSpec>, ConfigError> {
        match self.sections.get(name) {
            None => Ok(None),
            Some(Section { spec: Ok(spec), .. }) => Ok(Some(spec)),
            Some(Section {
                spec: Err(errors),
                file,
            }) => Err(ConfigError::first_of(errors)
                .unwrap_or_else(|| ConfigError::new(file, Some(name), None, "broken definition"))),
        }
    }

    /// Files that could not be read or parsed: a name that is not found may have been defined
    /// in one of them.
    #[must_use]
    pub fn broken_files(&self) -> &[ConfigError] {
        &self.broken
    }

    /// The default cache's definition: `FLECHE_CACHE`, else `[default] cache`, else none.
    ///
    /// # Errors
    ///
    /// A malformed `[default]` table or inline cache.
    pub fn default_cache(&self) -> Result<DefaultCache<'_>, ConfigError> {
        if let Some(name) = &self.env.cache {
            return Ok(DefaultCache::Named(name.clone()));
        }
        if let Some(e) = self
            .defaults
            .errors
            .iter()
            .find(|e| e.key.as_deref() == Some("default.cache"))
        {
            return Err(e.clone());
        }
        match &self.defaults.cache {
            Some(DefaultRef::Name(n)) => Ok(DefaultCache::Named(n.clone())),
            Some(DefaultRef::Inline(Ok(spec))) => Ok(DefaultCache::Inline(spec)),
            Some(DefaultRef::Inline(Err(errors))) => Err(ConfigError::first_of(errors)
                .unwrap_or_else(|| {
                    ConfigError::new(
                        Path::new("<default>"),
                        None,
                        Some("default.cache"),
                        "broken",
                    )
                })),
            None => Ok(DefaultCache::Memory),
        }
    }

    /// The metadata names `[default] metadata` lists (`["Runtime"]` when absent).
    ///
    /// # Errors
    ///
    /// A malformed `[default] metadata`.
    pub fn metadata(&self) -> Result<Vec<String>, ConfigError> {
        match self.defaults.errors.iter().find(|e| {
            e.key
                .as_deref()
                .is_some_and(|k| k.starts_with("default.metadata"))
        }) {
            Some(e) => Err(e.clone()),
            None => Ok(self.defaults.metadata.clone()),
        }
    }
}

/// What the default cache is.
#[derive(Debug, Clone)]
pub enum DefaultCache<'a> {
    /// No configuration names one: the process's memory cache.
    Memory,
    /// A cache by name (a section, or a reserved name).
    Named(String),
    /// An inline `[default.cache]` table.
    Inline(&'a CacheSpec),
}

fn parse_toml(text: &str, origin: &Path) -> Result<toml::Table, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::new(origin, None, None, e.to_string().trim_end()))
}

fn read(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, None, None, format!("cannot read: {e}")))?;
    parse_toml(&text, path)
}

/// Whether the file's `[default] root` is `true`.
fn is_root(table: &toml::Table, path: &Path) -> Result<bool, ConfigError> {
    match table.get("default").and_then(|d| d.get("root")) {
        None => Ok(false),
        Some(toml::Value::Boolean(b)) => Ok(*b),
        Some(other) => Err(ConfigError::new(
            path,
            None,
            Some("default.root"),
            format!("expected a boolean, found {}", other.type_str()),
        )),
    }
}

/// The `[default]` table: `cache`, `metadata`, `root`; every problem kept.
fn defaults(v: &toml::Value, file: &Path, env: &Env) -> Defaults {
    let mut d = Defaults {
        file: Some(file.to_owned()),
        cache: None,
        metadata: vec!["Runtime".to_owned()],
        errors: Vec::new(),
    };
    let error = |key: &str, message: String| ConfigError::new(file, None, Some(key), message);
    let Some(t) = v.as_table() else {
        d.errors.push(error(
            "default",
            format!("expected a table, found {}", v.type_str()),
        ));
        return d;
    };
    for k in t
        .keys()
        .filter(|k| !["cache", "metadata", "root"].contains(&k.as_str()))
    {
        d.errors.push(error(
            &format!("default.{k}"),
            "unknown key; expected one of cache, metadata, root".to_owned(),
        ));
    }
    match t.get("cache") {
        None => {}
        Some(toml::Value::String(s)) => d.cache = Some(DefaultRef::Name(s.clone())),
        Some(v @ (toml::Value::Table(_) | toml::Value::Array(_))) => {
            d.cache = Some(DefaultRef::Inline(spec::parse(
                "default.cache",
                v,
                file,
                env,
            )));
        }
        Some(v) => d.errors.push(error(
            "default.cache",
            format!(
                "expected a cache name or an inline cache table, found {}",
                v.type_str()
            ),
        )),
    }
    match t.get("metadata") {
        None => {}
        Some(toml::Value::Array(items)) => {
            d.metadata.clear();
            for (i, item) in items.iter().enumerate() {
                let at = format!("default.metadata[{i}]");
                match item {
                    toml::Value::String(name) if KNOWN_METADATA.contains(&name.as_str()) => {
                        d.metadata.push(name.clone());
                    }
                    toml::Value::String(name) => d.errors.push(error(
                        &at,
                        format!(
                            "unknown metadata `{name}`; this version of fleche records {}",
                            KNOWN_METADATA.join(", ")
                        ),
                    )),
                    _ => d
                        .errors
                        .push(error(&at, "expected a metadata name (a string)".to_owned())),
                }
            }
        }
        Some(v) => d.errors.push(error(
            "default.metadata",
            format!("expected a list of metadata names, found {}", v.type_str()),
        )),
    }
    d
}

/// The directories to look in: `cwd` and its ancestors, up to and including `home` when `cwd`
/// is inside it, else up to `/`.
fn walk(cwd: &Path, home: Option<&Path>) -> Vec<PathBuf> {
    let inside_home = home.filter(|h| cwd.starts_with(h));
    let mut out = Vec::new();
    for dir in cwd.ancestors() {
        out.push(dir.to_owned());
        if inside_home == Some(dir) {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_stops_at_home_inclusive() {
        let dirs = walk(Path::new("/h/user/a/b"), Some(Path::new("/h/user")));
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/h/user/a/b"),
                PathBuf::from("/h/user/a"),
                PathBuf::from("/h/user")
            ]
        );
        let outside = walk(Path::new("/srv/x"), Some(Path::new("/h/user")));
        assert_eq!(outside.last().map(PathBuf::as_path), Some(Path::new("/")));
    }
}
