//! Backends by configuration type name: the registry that configuration files are checked
//! against and storages are opened from.
//!
//! Each backend module knows its own `type` name and aliases, the keys its tables take (with their
//! defaults and ranges), and its on-disk layout; it implements [`Backend`] to turn a checked table
//! into a [`StorageSpec`], which opens the storages when the cache is
//! first used. Adding a backend means writing its module and adding one line to [`BACKENDS`].
//!
//! A backend that was compiled out (a cargo feature switched off) stays in the registry, so a
//! configuration naming it says which feature it needs instead of calling the type unknown.
//!
//! ```
//! use fleche_storage::backend::Settings;
//! use fleche_storage::registry;
//!
//! let table: toml::Table = toml::from_str("type = \"msgpack\"\nroot = \"cache\"\ncompress = 99").unwrap();
//! let settings = Settings::new(&table, "fast.values", "/project".as_ref(), None);
//! assert!(registry::parse(&settings).is_none());
//! let errors = settings.into_errors();
//! assert_eq!(errors[0].key.as_deref(), Some("fast.values.compress"));
//! ```

use crate::backend::{Backend, Settings, StorageSpec};

/// Every backend, compiled in or not: one line each.
pub static BACKENDS: &[&dyn Backend] = &[
    &crate::memory::MemoryBackend,
    &crate::void::VoidBackend,
    &crate::file::FileBackend,
    &crate::sql::SqlBackend,
    &crate::hdf5::Hdf5Backend,
];

/// The backend `type_name` names (by name or alias), compiled in or not.
#[must_use]
pub fn find(type_name: &str) -> Option<&'static dyn Backend> {
    BACKENDS
        .iter()
        .copied()
        .find(|b| b.name() == type_name || b.aliases().contains(&type_name))
}

/// Every accepted `type` name, for messages: `memory, void, msgpack (or pickle, ...), ...`.
#[must_use]
pub fn type_names() -> String {
    BACKENDS
        .iter()
        .map(|b| match b.aliases() {
            [] => b.name().to_owned(),
            aliases => format!("{} (or {})", b.name(), aliases.join(", ")),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a storage table (or, with [`Settings::template`], a whole cache given as a template):
/// its `type`, that the backend is compiled in, that every key is one it takes, and the backend's
/// own checks. Problems are recorded in `settings`.
pub fn parse(settings: &Settings<'_>) -> Option<Box<dyn StorageSpec>> {
    let type_key = if settings.template {
        "template"
    } else {
        "type"
    };
    let Some(name) = settings.string(type_key) else {
        // No backend to ask: report the keys no backend takes, then the missing type.
        for k in settings.table.keys() {
            let known = k == type_key
                || settings.extra.contains(&k.as_str())
                || BACKENDS
                    .iter()
                    .any(|b| b.keys(settings.template).contains(&k.as_str()));
            if !known {
                settings.error(Some(k), "unknown key for a storage");
            }
        }
        if !settings.table.contains_key(type_key) {
            settings.error(Some(type_key), "missing: give the storage `type`");
        }
        return None;
    };
    let Some(backend) = find(name) else {
        settings.error(
            Some(type_key),
            format!("unknown storage type `{name}`; expected {}", type_names()),
        );
        return None;
    };
    if !backend.enabled() {
        let feature = backend.feature().unwrap_or(name);
        settings.error(
            Some(type_key),
            format!("type `{name}` needs fleche built with the `{feature}` feature"),
        );
        return None;
    }
    let own = backend.keys(settings.template);
    let allowed = |k: &str| k == type_key || settings.extra.contains(&k) || own.contains(&k);
    let mut unknown = false;
    for k in settings.table.keys().filter(|k| !allowed(k)) {
        unknown = true;
        if k == "remaining_depth" && !settings.template {
            settings.error(
                Some(k),
                "`remaining_depth` applies to `values`, not to `calls`",
            );
            continue;
        }
        let expected: Vec<&str> = std::iter::once(type_key)
            .chain(own.iter().copied())
            .chain(settings.extra.iter().copied())
            .collect();
        settings.error(
            Some(k),
            format!(
                "unknown key for a `{}` storage; expected one of {}",
                backend.name(),
                expected.join(", ")
            ),
        );
    }
    let spec = backend.parse(settings);
    if unknown { None } else { spec }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn errors(text: &str) -> Vec<String> {
        let table: toml::Table = toml::from_str(text).unwrap_or_default();
        let s = Settings::new(&table, "c.values", Path::new("/p"), None);
        assert!(parse(&s).is_none());
        s.into_errors().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let e = errors("type = \"msgpack\"\ncompress = 99\ndurable = 1\nbogus = 2");
        assert!(e.iter().any(|m| m.starts_with("`c.values.root`: missing")));
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.starts_with("`c.values.bogus`: unknown key"))
        );
        assert!(e.iter().any(|m| m.starts_with("`c.values.compress`")));
        assert!(
            e.iter()
                .any(|m| m.starts_with("`c.values.durable`: expected a boolean"))
        );
    }

    #[test]
    fn sizes_take_units() {
        assert!(
            errors("type = \"msgpack\"\nroot = \"r\"\nmax_entry_size = 0")[0]
                .contains("`c.values.max_entry_size`: expected a positive size")
        );
        assert!(
            errors("type = \"msgpack\"\nroot = \"r\"\nmax_entry_size = \"3 parsecs\"")[0]
                .contains("expected a positive size")
        );
        let table: toml::Table =
            toml::from_str("type = \"msgpack\"\nroot = \"r\"\nmax_entry_size = \"512 MiB\"")
                .unwrap_or_default();
        let s = Settings::new(&table, "c.values", Path::new("/p"), None);
        assert_eq!(s.bytes("max_entry_size"), Some(512 << 20));
        assert!(parse(&s).is_some() && !s.failed());
    }

    #[test]
    fn unknown_and_missing_types() {
        assert!(errors("type = \"redis\"")[0].contains("unknown storage type `redis`"));
        assert!(errors("root = \"x\"")[0].contains("missing: give the storage `type`"));
    }

    #[test]
    fn aliases_find_their_backend() {
        assert_eq!(find("pickle").map(|b| b.name()), Some("msgpack"));
        assert_eq!(find("bagofholding_hdf").map(|b| b.name()), Some("hdf5"));
        assert!(find("nope").is_none());
    }
}
