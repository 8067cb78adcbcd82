//! Caches by name: the reserved ones, and those this process's configuration defines, each
//! opened on first use and then shared. This layer sits above both [`cache`](crate::Cache) and
//! [`config`](crate::config): configuration produces checked specs, and the caches are assembled
//! here.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::config::{CacheSpec, Config, ConfigError, DefaultCache, Env, LayerSpec, Storages};
use crate::metadata::{Chosen, MetaKind};
use crate::sync::lock;
use crate::{Cache, Error};

impl Cache {
    /// The cache called `name`: a reserved name, or a cache defined in the `fleche.toml` files
    /// of this process (see [`config`](crate::config)). A defined cache is opened on the first
    /// call with its name; every later call returns the same instance.
    ///
    /// The reserved names work everywhere: `"memory"` is this process's shared in-memory cache,
    /// `"void"` stores nothing, and `"default"` is the cache a memoized call uses when no scope or
    /// sticky cache is set (`FLECHE_CACHE`, else `[default] cache`, else `"memory"`).
    ///
    /// A broken definition fails only its own cache: the other caches of the same file work.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the definition of `name` is broken (naming the file and the key), or
    /// when `name` is not found and a configuration file could not be read or parsed;
    /// [`Error::Open`] when its storages cannot be opened; [`Error::UnknownCache`] for a name that
    /// is neither reserved nor configured, listing the names that exist and the files read.
    pub fn named(name: &str) -> Result<Self, Error> {
        match name {
            "memory" => Ok(shared_memory().clone()),
            "void" => Ok(shared_void().clone()),
            "default" => Ok(default_cache().clone()),
            _ => configured(name),
        }
    }

    /// A cache from the text of one cache definition (what goes under `[name]` in
    /// `fleche.toml`); relative paths resolve against the working directory.
    ///
    /// ```
    /// let c = fleche::Cache::from_toml_str("values.type = \"memory\"\ncalls.type = \"memory\"\nmax_size = 10")?;
    /// # Ok::<(), fleche::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the key that is wrong; [`Error::Open`] when a storage cannot be
    /// opened.
    pub fn from_toml_str(text: &str) -> Result<Self, Error> {
        let env = Env::from_process();
        let origin = env.cwd.join("<string>");
        let definition: toml::Table = toml::from_str(text)
            .map_err(|e| ConfigError::new(&origin, None, None, e.to_string().trim_end()))?;
        let spec = crate::config::parse_definition(
            "cache",
            &toml::Value::Table(definition),
            &origin,
            &env,
        )
        .map_err(|errors| {
            ConfigError::first_of(&errors)
                .unwrap_or_else(|| ConfigError::new(&origin, None, None, "no cache definition"))
        })?;
        Cache::open(&spec)
    }

    /// Opens the storages a checked definition describes and assembles the cache.
    ///
    /// # Errors
    ///
    /// [`Error::Open`] naming the file and key of the storage that cannot be opened;
    /// [`Error::Composition`] for shapes that do not combine.
    pub fn open(spec: &CacheSpec) -> Result<Self, Error> {
        let name = spec.name();
        let layers = spec
            .layers()
            .iter()
            .map(|l| open_layer(spec, l))
            .collect::<Result<Vec<_>, _>>()?;
        match &spec.shape {
            crate::config::Shape::Single(_) => {
                layers.into_iter().next().ok_or_else(|| Error::Composition {
                    cache: name.to_owned(),
                    message: "no storages".to_owned(),
                })
            }
            crate::config::Shape::Stack(_) => Cache::stack(name, layers),
            crate::config::Shape::Pool(_) => Cache::pool(name, layers),
        }
    }
}

fn open_layer(spec: &CacheSpec, layer: &LayerSpec) -> Result<Cache, Error> {
    let failed = |key: String| {
        let file = spec.file().to_owned();
        let cache = spec.name().to_owned();
        move |source| Error::Open {
            cache,
            file,
            key,
            source: Box::new(source),
        }
    };
    let (values, calls) = match &layer.storages {
        Storages::Template(s) => s.open_both().map_err(failed(layer.key.clone()))?,
        Storages::Split { values, calls } => (
            values
                .open_values()
                .map_err(failed(format!("{}.values", layer.key)))?,
            calls
                .open_calls()
                .map_err(failed(format!("{}.calls", layer.key)))?,
        ),
    };
    let mut cache = Cache::from_boxed(spec.name(), values, calls);
    if let Some(depth) = layer.remaining_depth {
        cache = cache.remaining_depth(depth)?;
    }
    if layer.verify_digest {
        cache = cache.verify_digest()?;
    }
    if let Some(max) = layer.max_size {
        cache = cache.max_size(max)?;
    }
    if layer.read_only {
        cache = cache.read_only()?;
    }
    Ok(cache)
}

/// This process's configuration, discovered once.
pub(crate) fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let config = Config::discover(&Env::from_process());
        for w in config.warnings() {
            warn(&w.to_string());
        }
        config
    })
}

fn configured(name: &str) -> Result<Cache, Error> {
    static OPENED: OnceLock<Mutex<HashMap<String, Cache>>> = OnceLock::new();
    let config = config();
    // Held while opening, so two threads asking at once open the cache once.
    let mut opened = lock(OPENED.get_or_init(Default::default));
    if let Some(c) = opened.get(name) {
        return Ok(c.clone());
    }
    match config.spec(name)? {
        Some(spec) => {
            let cache = Cache::open(spec)?;
            opened.insert(name.to_owned(), cache.clone());
            Ok(cache)
        }
        None => match config.broken_files().first() {
            Some(e) => Err(Error::Config(e.clone())),
            None => Err(Error::UnknownCache {
                name: name.to_owned(),
                known: config.known_names(),
                config_files: config.files().to_vec(),
            }),
        },
    }
}

fn shared_memory() -> &'static Cache {
    static MEMORY: OnceLock<Cache> = OnceLock::new();
    MEMORY.get_or_init(Cache::memory)
}

fn shared_void() -> &'static Cache {
    static VOID: OnceLock<Cache> = OnceLock::new();
    VOID.get_or_init(Cache::void)
}

/// The cache used when no scope or sticky cache is set: `FLECHE_CACHE`, else the configuration's
/// `[default] cache`, else the shared memory cache. A broken default cannot stop a memoized
/// call: memoized calls use the memory cache, with one warning naming the file and the key.
pub(crate) fn default_cache() -> &'static Cache {
    static DEFAULT: OnceLock<Cache> = OnceLock::new();
    DEFAULT.get_or_init(|| {
        let resolved = match config().default_cache() {
            Ok(DefaultCache::Memory) => Ok(shared_memory().clone()),
            Ok(DefaultCache::Named(n)) if n == "default" => Ok(shared_memory().clone()),
            Ok(DefaultCache::Named(n)) => Cache::named(&n),
            Ok(DefaultCache::Inline(spec)) => Cache::open(spec),
            Err(e) => Err(Error::Config(e)),
        };
        resolved.unwrap_or_else(|e| {
            warn(&format!(
                "the default cache is unusable, so memoized calls outside a scope use the memory cache: {e}"
            ));
            shared_memory().clone()
        })
    })
}

/// Which metadata memoized calls record, from `[default] metadata` (`Runtime` when the
/// configuration says nothing or is broken).
pub(crate) fn configured_metadata() -> Chosen {
    static CHOSEN: OnceLock<Chosen> = OnceLock::new();
    *CHOSEN.get_or_init(|| match config().metadata() {
        Ok(names) => Chosen::of(names.iter().filter_map(|n| MetaKind::named(n))),
        Err(e) => {
            warn(&format!("{e}; recording `Runtime` only"));
            Chosen::DEFAULT
        }
    })
}

/// A warning through `tracing`, or on stderr when no subscriber would show it.
pub(crate) fn warn(message: &str) {
    let unseen = tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>());
    if unseen {
        // Each distinct message once: stderr is read by people.
        static SAID: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
        let mut said = lock(SAID.get_or_init(Default::default));
        if !said.iter().any(|m| m == message) {
            said.push(message.to_owned());
            eprintln!("fleche: warning: {message}");
        }
    } else {
        tracing::warn!("{message}");
    }
}

/// Anything that names or is a cache: `&str` and `String` (a name for [`Cache::named`]), `Cache`
/// and `&Cache`.
pub trait IntoCache {
    /// Resolves to a cache.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownCache`] for a name that does not exist, [`Error::Config`] for a broken one.
    fn into_cache(self) -> Result<Cache, Error>;
}

impl IntoCache for Cache {
    fn into_cache(self) -> Result<Cache, Error> {
        Ok(self)
    }
}

impl IntoCache for &Cache {
    fn into_cache(self) -> Result<Cache, Error> {
        Ok(self.clone())
    }
}

impl IntoCache for &str {
    fn into_cache(self) -> Result<Cache, Error> {
        Cache::named(self)
    }
}

impl IntoCache for String {
    fn into_cache(self) -> Result<Cache, Error> {
        Cache::named(&self)
    }
}

impl IntoCache for &String {
    fn into_cache(self) -> Result<Cache, Error> {
        Cache::named(self)
    }
}
