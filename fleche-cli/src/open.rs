//! Finding the configuration, the cache and the call a command works on.

use std::io;
use std::path::{Path, PathBuf};

use fleche::config::{Config, DefaultCache, Env};
use fleche::storage::FileOptions;
use fleche::{Cache, CallRecord, Digest};

use crate::Failure;

/// The configuration: `path` alone when given, else the files discovered from here.
pub(crate) fn config(path: Option<&Path>) -> Result<Config, Failure> {
    let mut env = Env::from_process();
    if let Some(p) = path {
        if !p.is_file() {
            return Err(Failure::Usage(format!(
                "--config {}: no such file",
                p.display()
            )));
        }
        env.config_file = Some(env.cwd.join(p));
    }
    Ok(Config::discover(&env))
}

/// The cache `name`, else the configured default cache, else (nothing configured) the run cache
/// of `fleche run`; a process-local memory cache is refused, since it holds nothing another
/// process stored.
pub(crate) fn cache(config: &Config, name: Option<&str>) -> Result<Cache, Failure> {
    let name = match name {
        Some(n) => n.to_owned(),
        None => match config.default_cache()? {
            DefaultCache::Named(n) => n,
            DefaultCache::Inline(spec) => return Ok(Cache::open(spec)?),
            // Nothing configured: the cache `fleche run` keeps its runs in.
            DefaultCache::Memory => return Ok(run_cache()?),
        },
    };
    if matches!(name.as_str(), "memory" | "void") {
        return Err(Failure::Usage(format!(
            "`{name}` holds nothing another process stored; name a persistent cache"
        )));
    }
    match config.spec(&name)? {
        Some(spec) => Ok(Cache::open(spec)?),
        None => {
            let defined = config.cache_names();
            Err(Failure::Usage(format!(
                "no cache named `{name}`; defined: {}",
                if defined.is_empty() {
                    "none".to_owned()
                } else {
                    defined.join(", ")
                }
            )))
        }
    }
}

/// The record whose key is `prefix` or starts with it.
pub(crate) fn record(cache: &Cache, prefix: &str) -> Result<CallRecord, Failure> {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Failure::Usage(format!(
            "`{prefix}` is not a call key: expected hexadecimal digits"
        )));
    }
    if let Ok(key) = prefix.parse::<Digest>()
        && let Some(r) = cache.record(&key)?
    {
        return Ok(r);
    }
    let mut found: Vec<CallRecord> = cache
        .records()?
        .into_iter()
        .filter(|r| r.key.to_string().starts_with(&prefix))
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Failure::Failed(format!(
            "no stored call has a key starting with `{prefix}`"
        ))),
        n => {
            found.sort_by_key(|r| r.key);
            let list: Vec<String> = found
                .iter()
                .map(|r| format!("  {}  {}", r.key, r.function))
                .collect();
            Err(Failure::Failed(format!(
                "`{prefix}` is the start of {n} keys; give more digits:\n{}",
                list.join("\n")
            )))
        }
    }
}

/// `$XDG_CACHE_HOME/fleche` (else `~/.cache/fleche`, `~` being `HOME` or else the user's home
/// directory in the system's user database): the per-user base of the run cache and the
/// run locks.
pub(crate) fn user_cache_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        // Without HOME, the user's home from the system's user database, as the configuration
        // files are found.
        _ => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(std::env::home_dir)?
            .join(".cache"),
    };
    Some(base.join("fleche"))
}

/// Creates `dir` and its missing parents, private (0700) where it creates them.
pub(crate) fn private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// The persistent msgpack cache at `$XDG_CACHE_HOME/fleche/run`.
pub(crate) fn run_cache() -> Result<Cache, fleche::Error> {
    let dir = user_cache_dir()
        .ok_or_else(|| fleche::Error::File {
            path: PathBuf::from("~/.cache/fleche"),
            operation: "locate (neither XDG_CACHE_HOME nor HOME is set, and the user has no home directory)",
            source: io::Error::from(io::ErrorKind::NotFound),
        })?
        .join("run");
    // The store creates what is missing of the path private (0700).
    Cache::msgpack(&dir, FileOptions::new())
}
