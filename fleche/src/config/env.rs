//! What configuration depends on from the environment, read once at the edge.

use std::path::PathBuf;

use super::{CACHE_ENV, CONFIG_ENV, SECRET_KEY_ENV};

/// The working directory, home, XDG directory and fleche's environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Env {
    /// Where discovery starts.
    pub cwd: PathBuf,
    /// `$HOME`: where discovery stops, and what `~` means.
    pub home: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`, when set and not empty.
    pub xdg_config_home: Option<PathBuf>,
    /// `$FLECHE_CONFIG`: one file used instead of discovery.
    pub config_file: Option<PathBuf>,
    /// `$FLECHE_CACHE`: the default cache's name.
    pub cache: Option<String>,
    /// `$FLECHE_SECRET_KEY`: signing keys for caches that configure none.
    pub secret_keys: Option<String>,
}

impl Env {
    /// This process's environment.
    #[must_use]
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let config_file = var(CONFIG_ENV).map(|p| cwd.join(p));
        Self {
            home: var("HOME").map(PathBuf::from).or_else(std::env::home_dir),
            xdg_config_home: var("XDG_CONFIG_HOME").map(PathBuf::from),
            config_file,
            cache: var(CACHE_ENV).map(|v| v.to_string_lossy().into_owned()),
            secret_keys: var(SECRET_KEY_ENV).map(|v| v.to_string_lossy().into_owned()),
            cwd,
        }
    }

    /// An environment with only a working directory and a home (for tests and tools).
    #[must_use]
    pub fn new(cwd: impl Into<PathBuf>, home: Option<PathBuf>) -> Self {
        Self {
            cwd: cwd.into(),
            home,
            ..Self::default()
        }
    }

    /// The lowest configuration layer: `$XDG_CONFIG_HOME/fleche/cache.toml`, or
    /// `~/.config/fleche/cache.toml`.
    pub(crate) fn xdg_file(&self) -> Option<PathBuf> {
        let base = self
            .xdg_config_home
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".config")))?;
        Some(base.join("fleche").join("cache.toml"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdg_falls_back_to_dot_config() {
        let mut env = Env::new("/w", Some(PathBuf::from("/home/u")));
        assert_eq!(
            env.xdg_file(),
            Some(PathBuf::from("/home/u/.config/fleche/cache.toml"))
        );
        env.xdg_config_home = Some(PathBuf::from("/x"));
        assert_eq!(env.xdg_file(), Some(PathBuf::from("/x/fleche/cache.toml")));
    }
}
