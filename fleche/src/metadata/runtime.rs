//! [`Runtime`]: when a call ran, for how long, and how much CPU it used.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fleche_storage::{CallRecord, Value};

/// When a call ran and how long it took: recorded for every stored call under the metadata name
/// [`Runtime::NAME`].
///
/// Stored as a struct of floats: `start` and `stop` in seconds since the Unix epoch,
/// `wall_time` in seconds (monotonic clock) and, where the platform tells it, `cpu_time` in
/// seconds (the calling thread's).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Runtime {
    /// When the body started.
    pub start: SystemTime,
    /// When the body returned.
    pub stop: SystemTime,
    /// How long the body ran, measured with a monotonic clock.
    pub wall_time: Duration,
    /// The CPU time the calling thread spent in the body (user and system), where the platform
    /// tells it. Work the body hands to other threads is not counted.
    pub cpu_time: Option<Duration>,
}

impl Runtime {
    /// The metadata name under which call records keep it.
    pub const NAME: &'static str = "runtime";

    /// A runtime measured outside `#[memoize]` (by `fleche run`, say), to store in a record's
    /// metadata under [`Runtime::NAME`] with [`Runtime::to_value`].
    #[must_use]
    pub fn new(
        start: SystemTime,
        stop: SystemTime,
        wall_time: Duration,
        cpu_time: Option<Duration>,
    ) -> Self {
        Self {
            start,
            stop,
            wall_time,
            cpu_time,
        }
    }

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
            Duration::try_from_secs_f64(s).ok()
        };
        Some(Self {
            start: UNIX_EPOCH + secs("start")?,
            stop: UNIX_EPOCH + secs("stop")?,
            wall_time: secs("wall_time")?,
            cpu_time: secs("cpu_time"),
        })
    }

    /// The stored form.
    #[must_use]
    pub fn to_value(&self) -> Value {
        let epoch = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        };
        let mut fields = vec![
            ("start".to_owned(), Value::Float(epoch(self.start))),
            ("stop".to_owned(), Value::Float(epoch(self.stop))),
            (
                "wall_time".to_owned(),
                Value::Float(self.wall_time.as_secs_f64()),
            ),
        ];
        if let Some(cpu) = self.cpu_time {
            fields.push(("cpu_time".to_owned(), Value::Float(cpu.as_secs_f64())));
        }
        Value::Struct(fields)
    }
}

/// The CPU time the calling thread had used when a body started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThreadClock(Option<Duration>);

impl ThreadClock {
    /// Starts counting (nothing where the platform does not tell).
    pub(crate) fn start() -> Self {
        Self(thread_cpu())
    }

    /// Counts nothing: for bodies that may move between threads (`async`).
    pub(crate) fn none() -> Self {
        Self(None)
    }

    /// The CPU time this thread used since [`start`](ThreadClock::start).
    pub(crate) fn elapsed(&self) -> Option<Duration> {
        thread_cpu()?.checked_sub(self.0?)
    }
}

fn thread_cpu() -> Option<Duration> {
    cpu_time::ThreadTime::try_now()
        .ok()
        .map(|t| t.as_duration())
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
            cpu_time: Some(Duration::from_millis(250)),
        };
        let back = Runtime::from_value(&r.to_value());
        let back = back.map(|b| {
            (
                b.wall_time.as_millis(),
                b.stop.duration_since(b.start).ok(),
                b.cpu_time.map(|c| c.as_millis()),
            )
        });
        assert_eq!(
            back,
            Some((1500, Some(Duration::from_millis(1500)), Some(250)))
        );
        assert_eq!(Runtime::from_value(&Value::Null), None);
    }
}
