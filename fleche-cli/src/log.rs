//! Logging to stderr, filtered by `FLECHE_LOG`: a small subscriber (no span registry), so that a
//! `fleche run` hit pays next to nothing for it.

use std::fmt::{self, Write as _};
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};

/// Installs the logger: `FLECHE_LOG` (`warn` by default; `debug`, `off`, or per target such as
/// `fleche=debug,warn`). A filter that does not parse is reported and the default used.
pub(crate) fn init() {
    let default = || Targets::new().with_default(LevelFilter::WARN);
    let mut bad = None;
    let filter = match std::env::var("FLECHE_LOG") {
        Ok(text) if !text.trim().is_empty() => match text.trim().parse::<Targets>() {
            Ok(t) => t,
            Err(e) => {
                bad = Some(format!("FLECHE_LOG=`{text}`: {e}; logging warnings"));
                default()
            }
        },
        _ => default(),
    };
    let _ = tracing::subscriber::set_global_default(Logger { filter });
    if let Some(m) = bad {
        eprintln!("warning: {m}");
    }
}

struct Logger {
    filter: Targets,
}

impl Subscriber for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter
            .would_enable(metadata.target(), metadata.level())
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(
            self.filter.default_level().unwrap_or(LevelFilter::OFF).max(
                self.filter
                    .iter()
                    .map(|(_, level)| level)
                    .max()
                    .unwrap_or(LevelFilter::OFF),
            ),
        )
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let level = *event.metadata().level();
        let mut line = Line::default();
        event.record(&mut line);
        let tag = match level {
            Level::ERROR => "ERROR",
            Level::WARN => " WARN",
            Level::INFO => " INFO",
            Level::DEBUG => "DEBUG",
            Level::TRACE => "TRACE",
        };
        let text = format!("{tag} {}{}\n", line.message, line.fields);
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// An event's message and its other fields, as `name=value`.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}
