//! [`Environment`]: where a call ran.

use std::sync::OnceLock;

use fleche_storage::{CallRecord, Value};

/// Where a call ran: the host, the user, the process, its working directory, the fleche version
/// and the calling crate's name and version. Recorded only when asked for (`[default] metadata
/// = ["Environment"]` or `#[memoize(meta(Environment))]`), under the metadata name
/// [`Environment::NAME`], since host, user and directory say who ran what.
///
/// Stored as a struct of strings (`pid` an integer); a field the process cannot tell is left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Environment {
    /// The host name.
    pub host: Option<String>,
    /// The user name (`$USER`, else `$LOGNAME`, else `$USERNAME`).
    pub user: Option<String>,
    /// The process id.
    pub pid: u32,
    /// The working directory, when the call was stored.
    pub cwd: Option<String>,
    /// The version of fleche that stored the call.
    pub fleche_version: String,
    /// The name of the crate that declares the memoized function (its `CARGO_PKG_NAME`).
    pub crate_name: Option<String>,
    /// That crate's version (its `CARGO_PKG_VERSION`).
    pub crate_version: Option<String>,
}

/// Host and user: read once per process.
struct Fixed {
    host: Option<String>,
    user: Option<String>,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let host = gethostname::gethostname().into_string().ok();
        let user = ["USER", "LOGNAME", "USERNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()));
        Fixed {
            host: host.filter(|h| !h.is_empty()),
            user,
        }
    })
}

impl Environment {
    /// The metadata name under which call records keep it.
    pub const NAME: &'static str = "environment";

    /// This process's environment, for a function declared in the crate `package` (name,
    /// version).
    #[must_use]
    pub fn current(package: (Option<&str>, Option<&str>)) -> Self {
        let f = fixed();
        Self {
            host: f.host.clone(),
            user: f.user.clone(),
            pid: std::process::id(),
            cwd: std::env::current_dir()
                .ok()
                .map(|d| d.to_string_lossy().into_owned()),
            fleche_version: env!("CARGO_PKG_VERSION").to_owned(),
            crate_name: package.0.map(str::to_owned),
            crate_version: package.1.map(str::to_owned),
        }
    }

    /// The environment stored in `record`, if any.
    #[must_use]
    pub fn from_record(record: &CallRecord) -> Option<Self> {
        Self::from_value(record.metadata.get(Self::NAME)?)
    }

    /// Parses the stored form.
    #[must_use]
    pub fn from_value(value: &Value) -> Option<Self> {
        let text = |name| value.field(name)?.as_str().map(str::to_owned);
        let pid = match value.field("pid")? {
            Value::Int(p) => u32::try_from(*p).ok()?,
            _ => return None,
        };
        Some(Self {
            host: text("host"),
            user: text("user"),
            pid,
            cwd: text("cwd"),
            fleche_version: text("fleche_version")?,
            crate_name: text("crate_name"),
            crate_version: text("crate_version"),
        })
    }

    /// The stored form.
    #[must_use]
    pub fn to_value(&self) -> Value {
        let mut fields = Vec::new();
        let mut text = |name: &str, v: &Option<String>| {
            if let Some(v) = v {
                fields.push((name.to_owned(), Value::Str(v.clone())));
            }
        };
        text("host", &self.host);
        text("user", &self.user);
        text("cwd", &self.cwd);
        text("fleche_version", &Some(self.fleche_version.clone()));
        text("crate_name", &self.crate_name);
        text("crate_version", &self.crate_version);
        fields.push(("pid".to_owned(), Value::Int(self.pid.into())));
        Value::Struct(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_value() {
        let e = Environment::current((Some("demo"), Some("1.2.3")));
        assert_eq!(e.pid, std::process::id());
        assert_eq!(e.fleche_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(Environment::from_value(&e.to_value()), Some(e));
        assert_eq!(Environment::from_value(&Value::Null), None);
    }
}
