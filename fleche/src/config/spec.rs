//! Checking one cache definition into a [`CacheSpec`]: statically, opening nothing. The storage
//! tables are checked by the backends themselves (`fleche_storage::backend`); this module knows
//! only the shapes around them (single, stack, pool, template) and the keys that apply to a whole
//! layer (`read_only`, `max_size`, `remaining_depth`).

use std::fmt;
use std::path::{Path, PathBuf};

use fleche_storage::backend::{Settings, StorageSpec};
use fleche_storage::registry;
use toml::Value;

use super::{ConfigError, Env};

/// The keys of a layer given as `template = "<type>"`, besides the backend's own.
const TEMPLATE_LAYER_KEYS: [&str; 3] = ["read_only", "max_size", "verify"];
/// The keys of a layer given as `values` and `calls` tables.
const SPLIT_LAYER_KEYS: [&str; 5] = ["values", "calls", "read_only", "max_size", "verify"];

/// A checked cache definition: what [`Cache::named`](crate::Cache::named) opens on first use.
#[derive(Debug)]
pub struct CacheSpec {
    pub(crate) name: String,
    pub(crate) file: PathBuf,
    pub(crate) shape: Shape,
}

#[derive(Debug)]
pub(crate) enum Shape {
    Single(LayerSpec),
    Stack(Vec<LayerSpec>),
    Pool(Vec<LayerSpec>),
}

/// One values + calls pair and the settings that wrap it.
pub(crate) struct LayerSpec {
    /// The dotted key of the layer's table, for errors when it is opened.
    pub(crate) key: String,
    pub(crate) storages: Storages,
    pub(crate) read_only: bool,
    pub(crate) max_size: Option<usize>,
    pub(crate) remaining_depth: Option<usize>,
    /// `verify = "digest"`: recompute every loaded value's digest.
    pub(crate) verify_digest: bool,
}

impl fmt::Debug for LayerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerSpec")
            .field("key", &self.key)
            .field("storages", &self.storages)
            .field("read_only", &self.read_only)
            .field("max_size", &self.max_size)
            .field("remaining_depth", &self.remaining_depth)
            .field("verify_digest", &self.verify_digest)
            .finish()
    }
}

#[derive(Debug)]
pub(crate) enum Storages {
    /// `template = "<type>"`: one spec for both.
    Template(Box<dyn StorageSpec>),
    Split {
        values: Box<dyn StorageSpec>,
        calls: Box<dyn StorageSpec>,
    },
}

impl CacheSpec {
    /// The cache's name (its section).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file that defines it.
    #[must_use]
    pub fn file(&self) -> &Path {
        &self.file
    }

    pub(crate) fn layers(&self) -> &[LayerSpec] {
        match &self.shape {
            Shape::Single(l) => std::slice::from_ref(l),
            Shape::Stack(ls) | Shape::Pool(ls) => ls,
        }
    }

    /// Warnings that do not stop the cache from working: signing keys from `FLECHE_SECRET_KEY`
    /// that a persistent storage of this cache cannot use.
    pub(crate) fn warnings(&self, env: &Env) -> Vec<ConfigError> {
        if env.secret_keys.is_none() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for layer in self.layers() {
            let specs: Vec<(&dyn StorageSpec, String)> = match &layer.storages {
                Storages::Template(s) => vec![(s.as_ref(), layer.key.clone())],
                Storages::Split { values, calls } => vec![
                    (values.as_ref(), format!("{}.values", layer.key)),
                    (calls.as_ref(), format!("{}.calls", layer.key)),
                ],
            };
            for (spec, key) in specs {
                if spec.persistent() && !spec.can_sign() {
                    out.push(ConfigError::new(
                        &self.file,
                        Some(&self.name),
                        Some(&key),
                        "FLECHE_SECRET_KEY is set, but this storage cannot sign its entries: they are stored unsigned",
                    ));
                }
            }
        }
        out
    }
}

/// Checks the definition of cache `name` (a section, or `default.cache`), recording every problem.
pub(crate) fn parse(
    name: &str,
    value: &Value,
    file: &Path,
    env: &Env,
) -> Result<CacheSpec, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut ctx = Ctx {
        name,
        file,
        env,
        errors: &mut errors,
    };
    let shape = match value {
        Value::Array(items) => {
            let layers = ctx.layers(items, name);
            Shape::Stack(layers)
        }
        Value::Table(t) if t.contains_key("pool") => {
            for k in t.keys().filter(|k| *k != "pool") {
                ctx.error(
                    &format!("{name}.{k}"),
                    "a pool takes only `[[name.pool]]` members",
                );
            }
            let at = format!("{name}.pool");
            match t.get("pool") {
                Some(Value::Array(items)) => Shape::Pool(ctx.layers(items, &at)),
                _ => {
                    ctx.error(&at, "expected an array of tables: `[[name.pool]]`");
                    Shape::Pool(Vec::new())
                }
            }
        }
        Value::Table(t) => match ctx.layer(t, name) {
            Some(l) => Shape::Single(l),
            None => Shape::Pool(Vec::new()),
        },
        other => {
            ctx.error(
                name,
                format!("expected a cache table, found {}", other.type_str()),
            );
            Shape::Pool(Vec::new())
        }
    };
    if let Shape::Stack(ls) | Shape::Pool(ls) = &shape
        && ls.is_empty()
        && errors.is_empty()
    {
        errors.push(ConfigError::new(
            file,
            Some(name),
            Some(name),
            "a stack or a pool needs at least one member",
        ));
    }
    if errors.is_empty() {
        Ok(CacheSpec {
            name: name.to_owned(),
            file: file.to_owned(),
            shape,
        })
    } else {
        Err(errors)
    }
}

struct Ctx<'a> {
    name: &'a str,
    file: &'a Path,
    env: &'a Env,
    errors: &'a mut Vec<ConfigError>,
}

impl Ctx<'_> {
    fn error(&mut self, key: &str, message: impl fmt::Display) {
        self.errors.push(ConfigError::new(
            self.file,
            Some(self.name),
            Some(key),
            message,
        ));
    }

    fn layers(&mut self, items: &[Value], at: &str) -> Vec<LayerSpec> {
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("{at}[{i}]");
            match item {
                Value::Table(t) => out.extend(self.layer(t, &at)),
                v => self.error(
                    &at,
                    format!("expected a cache table, found {}", v.type_str()),
                ),
            }
        }
        out
    }

    /// The settings of a storage table (or of a template layer).
    fn settings<'t>(&self, table: &'t toml::Table, at: &str) -> Settings<'t> {
        let base = self.file.parent().unwrap_or(Path::new("."));
        Settings::new(table, at, base, self.env.home.as_deref())
            .secret_keys(self.env.secret_keys.as_deref())
    }

    fn absorb(&mut self, settings: Settings<'_>) {
        for e in settings.into_errors() {
            self.errors.push(ConfigError {
                file: self.file.to_owned(),
                cache: Some(self.name.to_owned()),
                key: e.key,
                message: e.message,
            });
        }
    }

    fn layer(&mut self, t: &toml::Table, at: &str) -> Option<LayerSpec> {
        let before = self.errors.len();
        let read_only = match t.get("read_only") {
            None => false,
            Some(Value::Boolean(b)) => *b,
            Some(v) => {
                self.error(
                    &format!("{at}.read_only"),
                    format!("expected a boolean, found {}", v.type_str()),
                );
                false
            }
        };
        let max_size = self.non_negative(t, "max_size", at);
        let verify_digest = match t.get("verify") {
            None => false,
            Some(Value::String(v)) if v == "digest" => true,
            Some(Value::String(v)) if v == "checksum" => false,
            Some(v) => {
                self.error(
                    &format!("{at}.verify"),
                    format!(
                        "expected \"checksum\" (the default: every entry's checksum or signature) or \"digest\" (also recompute each value's blake3 digest), found {v}"
                    ),
                );
                false
            }
        };
        let storages = if t.contains_key("template") {
            for k in ["values", "calls"]
                .into_iter()
                .filter(|k| t.contains_key(*k))
            {
                self.error(
                    &format!("{at}.{k}"),
                    "give either `template` or `values` and `calls`, not both",
                );
            }
            let settings = self.settings(t, at).template(&TEMPLATE_LAYER_KEYS);
            let spec = registry::parse(&settings);
            self.absorb(settings);
            (None, spec.map(Storages::Template))
        } else {
            for k in t.keys().filter(|k| !SPLIT_LAYER_KEYS.contains(&k.as_str())) {
                let message = if registry::BACKENDS
                    .iter()
                    .any(|b| b.keys(true).contains(&k.as_str()))
                {
                    "this key belongs in `values` or `calls`, or goes with `template`".to_owned()
                } else {
                    format!(
                        "unknown key; expected one of template, {}",
                        SPLIT_LAYER_KEYS.join(", ")
                    )
                };
                self.error(&format!("{at}.{k}"), message);
            }
            let values = self.storage(t, "values", at);
            let calls = self.storage(t, "calls", at);
            let depth = values.as_ref().and_then(|(table, _)| {
                self.non_negative(table, "remaining_depth", &format!("{at}.values"))
            });
            match (values, calls) {
                (Some((_, Some(values))), Some((_, Some(calls)))) => {
                    (depth, Some(Storages::Split { values, calls }))
                }
                _ => (depth, None),
            }
        };
        let (remaining_depth, storages) = storages;
        if self.errors.len() > before {
            return None;
        }
        Some(LayerSpec {
            key: at.to_owned(),
            storages: storages?,
            read_only,
            max_size,
            remaining_depth,
            verify_digest,
        })
    }

    /// The `values` or `calls` table of a layer, checked by its backend.
    fn storage<'t>(
        &mut self,
        t: &'t toml::Table,
        part: &str,
        at: &str,
    ) -> Option<(&'t toml::Table, Option<Box<dyn StorageSpec>>)> {
        let key = format!("{at}.{part}");
        match t.get(part) {
            None => {
                self.error(
                    &key,
                    "missing: every cache needs `values` and `calls` (or a `template`)",
                );
                None
            }
            Some(Value::Table(table)) => {
                let settings = self.settings(table, &key);
                let settings = if part == "calls" {
                    settings.calls()
                } else {
                    settings
                };
                let spec = registry::parse(&settings);
                self.absorb(settings);
                Some((table, spec))
            }
            Some(v) => {
                self.error(&key, format!("expected a table, found {}", v.type_str()));
                None
            }
        }
    }

    fn non_negative(&mut self, t: &toml::Table, k: &str, at: &str) -> Option<usize> {
        match t.get(k)? {
            Value::Integer(n) if *n >= 0 => usize::try_from(*n).ok(),
            v => {
                self.error(
                    &format!("{at}.{k}"),
                    format!("expected a non-negative integer, found {v}"),
                );
                None
            }
        }
    }
}
