//! `fleche.toml`: discovery, merging, and building the caches it names.
//!
//! Discovery ([`Config::discover`]) walks up from the working directory collecting `fleche.toml`
//! files, stopping at `$HOME` (inclusive) or `/`, then adds `$XDG_CONFIG_HOME/fleche/cache.toml`
//! (or `~/.config/fleche/cache.toml`) as the lowest layer. Files merge shallowly: the closest
//! file's top-level table wins whole. `[default] root = true` stops the walk. `FLECHE_CONFIG`
//! names one file to use instead of discovery; `FLECHE_CACHE` names the default cache.
//!
//! Every top-level table remembers the file it came from, so every error names a file and a key.

mod build;
mod env;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub(crate) use build::cache as build_cache;
pub use env::Env;

use crate::Cache;

/// The name of the files discovered by walking up from the working directory.
pub const FILE_NAME: &str = "fleche.toml";
/// The environment variable naming the default cache.
pub const CACHE_ENV: &str = "FLECHE_CACHE";
/// The environment variable naming an explicit configuration file (discovery is skipped).
pub const CONFIG_ENV: &str = "FLECHE_CONFIG";
/// The environment variable holding signing keys (hexadecimal, separated by commas or spaces)
/// for caches that configure none.
pub const SECRET_KEY_ENV: &str = "FLECHE_SECRET_KEY";

/// A configuration problem: always names the file and, where there is one, the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", file.display(), key.as_ref().map(|k| format!(": `{k}`")).unwrap_or_default())]
pub struct ConfigError {
    /// The file (or `<FLECHE_CACHE>`, `<string>` for text not from a file).
    pub file: PathBuf,
    /// The key, as a dotted path (`fast.values.type`), when the problem has one.
    pub key: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(file: &Path, key: Option<&str>, message: impl fmt::Display) -> Self {
        Self {
            file: file.to_owned(),
            key: key.map(str::to_owned),
            message: message.to_string(),
        }
    }
}

/// One top-level table and the file it came from.
#[derive(Debug, Clone)]
struct Section {
    value: toml::Value,
    file: PathBuf,
}

/// The merged configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The files read, closest first.
    files: Vec<PathBuf>,
    sections: BTreeMap<String, Section>,
    env: Env,
}

impl Config {
    /// Discovers and merges the configuration files for `env` (see the module docs).
    ///
    /// # Errors
    ///
    /// A file that cannot be read or parsed, or whose `[default]` table is malformed.
    pub fn discover(env: &Env) -> Result<Self, ConfigError> {
        let mut layers: Vec<(PathBuf, toml::Table)> = Vec::new();
        if let Some(explicit) = &env.config_file {
            let table = read(explicit)?;
            layers.push((explicit.clone(), table));
        } else {
            let mut stopped = false;
            for dir in walk(&env.cwd, env.home.as_deref()) {
                let path = dir.join(FILE_NAME);
                if !path.is_file() {
                    continue;
                }
                let table = read(&path)?;
                let root = is_root(&table, &path)?;
                layers.push((path, table));
                if root {
                    stopped = true;
                    break;
                }
            }
            if !stopped
                && let Some(xdg) = env.xdg_file()
                && xdg.is_file()
            {
                let table = read(&xdg)?;
                is_root(&table, &xdg)?;
                layers.push((xdg, table));
            }
        }
        let mut sections = BTreeMap::new();
        // Farthest first, so closer files replace whole tables.
        for (file, table) in layers.iter().rev() {
            for (name, value) in table {
                sections.insert(
                    name.clone(),
                    Section {
                        value: value.clone(),
                        file: file.clone(),
                    },
                );
            }
        }
        let config = Self {
            files: layers.into_iter().map(|(f, _)| f).collect(),
            sections,
            env: env.clone(),
        };
        config.check()?;
        Ok(config)
    }

    /// A configuration made of one TOML text (for tests and programs that build their own).
    /// Relative paths resolve against `base`.
    ///
    /// # Errors
    ///
    /// Text that does not parse, or a malformed `[default]` table.
    pub fn from_toml_str(text: &str, base: &Path, env: &Env) -> Result<Self, ConfigError> {
        let origin = base.join("<string>");
        let table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::new(&origin, None, e))?;
        let sections = table
            .into_iter()
            .map(|(name, value)| {
                (
                    name,
                    Section {
                        value,
                        file: origin.clone(),
                    },
                )
            })
            .collect();
        let config = Self {
            files: Vec::new(),
            sections,
            env: env.clone(),
        };
        config.check()?;
        Ok(config)
    }

    /// The files read, closest first.
    #[must_use]
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The names of the caches defined, in order.
    #[must_use]
    pub fn cache_names(&self) -> Vec<String> {
        self.sections
            .keys()
            .filter(|k| k.as_str() != "default")
            .cloned()
            .collect()
    }

    /// Checks everything: the `[default]` table and every cache definition, so a broken file is
    /// reported up front rather than when the broken cache is first used.
    fn check(&self) -> Result<(), ConfigError> {
        self.default_section()?;
        for name in self.cache_names() {
            build::check_name(&name, &self.sections[&name].file)?;
            self.build(&name)?;
        }
        Ok(())
    }

    fn default_section(&self) -> Result<build::Defaults, ConfigError> {
        match self.sections.get("default") {
            Some(s) => build::defaults(&s.value, &s.file),
            None => Ok(build::Defaults::default()),
        }
    }

    /// The cache named `name` in the configuration, built anew (callers keep the instances).
    ///
    /// # Errors
    ///
    /// A malformed definition; `Ok(None)` when there is no such section.
    pub fn build(&self, name: &str) -> Result<Option<Cache>, ConfigError> {
        let Some(section) = self.sections.get(name) else {
            return Ok(None);
        };
        build::cache(name, &section.value, &section.file, &self.env).map(Some)
    }

    /// The default cache's definition: `FLECHE_CACHE`, else `[default] cache`, else none.
    ///
    /// # Errors
    ///
    /// A malformed `[default]` table or inline cache.
    pub fn default_cache(&self) -> Result<DefaultCache, ConfigError> {
        if let Some(name) = &self.env.cache {
            return Ok(DefaultCache::Named(name.clone()));
        }
        let defaults = self.default_section()?;
        match defaults.cache {
            Some(build::DefaultRef::Name(n)) => Ok(DefaultCache::Named(n)),
            Some(build::DefaultRef::Inline(value, file)) => {
                build::cache("default.cache", &value, &file, &self.env).map(DefaultCache::Inline)
            }
            None => Ok(DefaultCache::Memory),
        }
    }

    /// The metadata names `[default] metadata` lists (`["Runtime"]` when absent).
    ///
    /// # Errors
    ///
    /// A malformed `[default]` table.
    pub fn metadata(&self) -> Result<Vec<String>, ConfigError> {
        Ok(self.default_section()?.metadata)
    }
}

/// What the default cache is.
#[derive(Debug, Clone)]
pub enum DefaultCache {
    /// No configuration names one: the process's memory cache.
    Memory,
    /// A cache by name (a section, or a reserved name).
    Named(String),
    /// An inline `[default.cache]` table.
    Inline(Cache),
}

fn read(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, None, format!("cannot read: {e}")))?;
    toml::from_str(&text).map_err(|e| ConfigError::new(path, None, e.to_string().trim_end()))
}

/// Whether the file's `[default] root` is `true`.
fn is_root(table: &toml::Table, path: &Path) -> Result<bool, ConfigError> {
    match table.get("default").and_then(|d| d.get("root")) {
        None => Ok(false),
        Some(toml::Value::Boolean(b)) => Ok(*b),
        Some(other) => Err(ConfigError::new(
            path,
            Some("default.root"),
            format!("expected a boolean, found {}", other.type_str()),
        )),
    }
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
