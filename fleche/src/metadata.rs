//! Metadata recorded with every stored call.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fleche_storage::{CallRecord, Value};

/// When a call ran and how long it took: recorded for every stored call under the metadata name
/// [`Runtime::NAME`].
///
/// Stored as a struct of three floats: `start` and `stop` in seconds since the Unix epoch and
/// `wall_time` in seconds (monotonic clock).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Runtime {
    /// When the body started.
    pub start: SystemTime,
    /// When the body returned.
    pub stop: SystemTime,
    /// How long the body ran, measured with a monotonic clock.
    pub wall_time: Duration,
}

impl Runtime {
    /// The metadata name under which call records keep it.
    pub const NAME: &'static str = "runtime";

    /// The runtime stored in `record`, if any.
    #[must_use]
    pub fn from_record(record: &CallRecord) -> Option<Self> {
        Self::from_value(record.metadata.get(Self::NAME)?)
    }

    /// Parses the stored form.
    #[must_use]
    pub fn from_value(value: &Value) -> Option<Self> {
        let secs = |name| {
            let s = value.field(name)?.as_f64()?;
            (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s))
        };
        Some(Self {
            start: UNIX_EPOCH + secs("start")?,
            stop: UNIX_EPOCH + secs("stop")?,
            wall_time: secs("wall_time")?,
        })
    }

    /// The stored form.
    #[must_use]
    pub fn to_value(&self) -> Value {
        let epoch = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        };
        Value::Struct(vec![
            ("start".to_owned(), Value::Float(epoch(self.start))),
            ("stop".to_owned(), Value::Float(epoch(self.stop))),
            (
                "wall_time".to_owned(),
                Value::Float(self.wall_time.as_secs_f64()),
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_value() {
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let r = Runtime {
            start,
            stop: start + Duration::from_millis(1500),
            wall_time: Duration::from_millis(1500),
        };
        let back = Runtime::from_value(&r.to_value());
        let back = back.map(|b| (b.wall_time.as_millis(), b.stop.duration_since(b.start).ok()));
        assert_eq!(back, Some((1500, Some(Duration::from_millis(1500)))));
        assert_eq!(Runtime::from_value(&Value::Null), None);
    }
}
