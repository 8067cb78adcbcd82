//! Selections: the filters, order and paging of a query, as a calls storage receives them.
//!
//! [`CallStorage::select`](crate::CallStorage::select) gets a [`Selection`] and returns the
//! matching records. Its default runs [`Selection::apply`] over
//! [`CallStorage::records`](crate::CallStorage::records), so a backend that knows nothing of
//! selections answers every query correctly; the SQLite backend runs the same selection in SQL on
//! indexed columns, the file backend filters while it scans, in parallel. Every backend gives the
//! same answers on the same records.

use std::cmp::Ordering;
use std::ops::Bound;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{CallRecord, Digest, Value};

/// One condition on a call record. A selection matches a record when all its conditions do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Condition {
    /// The function's name is this.
    Function(String),
    /// The function's declared version is this.
    Version(String),
    /// The result is the value with this digest.
    Result(Digest),
    /// The argument `name` equals `value` (in stored form).
    Arg {
        /// The argument's name.
        name: String,
        /// Its value.
        value: Value,
    },
    /// The argument `name` equals one of `values`.
    ArgIn {
        /// The argument's name.
        name: String,
        /// The values it may have.
        values: Vec<Value>,
    },
    /// The argument `name` is a number within the bounds (integers of any width compare by
    /// value, floats and integers numerically).
    ArgRange {
        /// The argument's name.
        name: String,
        /// The lower bound.
        low: Bound<Value>,
        /// The upper bound.
        high: Bound<Value>,
    },
    /// The tag `key` (metadata `tags`) is `value`.
    Tag {
        /// The tag's name.
        key: String,
        /// Its value.
        value: Value,
    },
    /// The record carries the metadata `name`.
    HasMeta(String),
    /// The call started at this time or later (metadata `runtime.start`).
    Since(SystemTime),
    /// The call started at this time or earlier.
    Until(SystemTime),
    /// The call's body ran longer than this (metadata `runtime.wall_time`).
    SlowerThan(Duration),
}

/// Seconds since the Unix epoch, as the `runtime` metadata stores times.
#[must_use]
pub fn epoch_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

fn seconds(value: &Value, field: &str) -> Option<Duration> {
    let s = value.field(field)?.as_f64()?;
    Duration::try_from_secs_f64(s).ok()
}

/// When the call of `record` started (metadata `runtime.start`), if recorded.
#[must_use]
pub fn start_time(record: &CallRecord) -> Option<SystemTime> {
    seconds(record.metadata.get("runtime")?, "start").map(|d| UNIX_EPOCH + d)
}

/// How long the body of the call of `record` ran (metadata `runtime.wall_time`), if recorded.
#[must_use]
pub fn wall_time(record: &CallRecord) -> Option<Duration> {
    seconds(record.metadata.get("runtime")?, "wall_time")
}

/// The tag `key` of `record` (metadata `tags`, a map with string keys), if set.
#[must_use]
pub fn tag<'r>(record: &'r CallRecord, key: &str) -> Option<&'r Value> {
    let Value::Map(entries) = record.metadata.get("tags")? else {
        return None;
    };
    entries
        .iter()
        .find_map(|(k, v)| (k.as_str() == Some(key)).then_some(v))
}

/// Orders two numbers (integers of any width, floats), or says they are not comparable.
#[must_use]
pub fn numeric_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::UInt(x), Value::UInt(y)) => Some(x.cmp(y)),
        (Value::Int(_), Value::UInt(_)) => Some(Ordering::Less),
        (Value::UInt(_), Value::Int(_)) => Some(Ordering::Greater),
        (Value::Int(_) | Value::UInt(_) | Value::Float(_), _) => {
            a.as_f64()?.partial_cmp(&b.as_f64()?)
        }
        _ => None,
    }
}

fn is_number(v: &Value) -> bool {
    matches!(v, Value::Int(_) | Value::UInt(_) | Value::Float(_))
}

/// Whether the number `v` lies within `low`..`high`; a value that is not a number never does.
#[must_use]
pub fn within(v: &Value, low: &Bound<Value>, high: &Bound<Value>) -> bool {
    if !is_number(v) {
        return false;
    }
    let above = match low {
        Bound::Unbounded => true,
        Bound::Included(b) => {
            matches!(numeric_cmp(v, b), Some(Ordering::Greater | Ordering::Equal))
        }
        Bound::Excluded(b) => matches!(numeric_cmp(v, b), Some(Ordering::Greater)),
    };
    let below = match high {
        Bound::Unbounded => true,
        Bound::Included(b) => matches!(numeric_cmp(v, b), Some(Ordering::Less | Ordering::Equal)),
        Bound::Excluded(b) => matches!(numeric_cmp(v, b), Some(Ordering::Less)),
    };
    above && below
}

impl Condition {
    /// Whether `record` meets this condition.
    #[must_use]
    pub fn matches(&self, record: &CallRecord) -> bool {
        let r = record;
        match self {
            Condition::Function(f) => r.function == *f,
            Condition::Version(v) => r.version.as_deref() == Some(v.as_str()),
            Condition::Result(d) => r.result == *d,
            Condition::Arg { name, value } => r.argument(name) == Some(value),
            Condition::ArgIn { name, values } => {
                r.argument(name).is_some_and(|a| values.contains(a))
            }
            Condition::ArgRange { name, low, high } => {
                r.argument(name).is_some_and(|a| within(a, low, high))
            }
            Condition::Tag { key, value } => tag(r, key) == Some(value),
            Condition::HasMeta(name) => r.metadata.contains_key(name),
            Condition::Since(t) => start_time(r).is_some_and(|s| s >= *t),
            Condition::Until(t) => start_time(r).is_some_and(|s| s <= *t),
            Condition::SlowerThan(d) => wall_time(r).is_some_and(|w| w > *d),
        }
    }
}

/// The filters, order and paging of a query.
///
/// Records come ordered by start time (metadata `runtime.start`; records without one first),
/// ties by key, oldest first unless `newest_first`; then `skip` records are left out and at most
/// `take` are kept.
///
/// ```
/// use fleche_storage::select::{Condition, Selection};
/// use fleche_storage::{CallRecord, Digest, Value};
///
/// let mut r = CallRecord::new(Digest::from_bytes([1; 32]), "m::f", Digest::from_bytes([2; 32]));
/// r.arguments = vec![("x".into(), Value::Int(3))];
/// let s = Selection::new().with(Condition::Arg { name: "x".into(), value: Value::Int(3) });
/// assert!(s.matches(&r));
/// assert_eq!(s.apply(vec![r.clone(), r]).len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Selection {
    /// All must hold.
    pub conditions: Vec<Condition>,
    /// The newest calls first.
    pub newest_first: bool,
    /// How many records to leave out, after ordering.
    pub skip: usize,
    /// At most this many records, after skipping.
    pub take: Option<usize>,
}

impl Selection {
    /// A selection of every record, oldest first.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// With one more condition.
    #[must_use]
    pub fn with(mut self, condition: Condition) -> Self {
        self.conditions.push(condition);
        self
    }

    /// Whether `record` meets every condition.
    #[must_use]
    pub fn matches(&self, record: &CallRecord) -> bool {
        self.conditions.iter().all(|c| c.matches(record))
    }

    /// The same conditions and order, without paging.
    #[must_use]
    pub fn unpaged(&self) -> Self {
        Self {
            conditions: self.conditions.clone(),
            newest_first: self.newest_first,
            skip: 0,
            take: None,
        }
    }

    /// How many records of the ordered matches a page needs: `skip + take`, or all.
    #[must_use]
    pub fn needed(&self) -> Option<usize> {
        self.take.map(|t| t.saturating_add(self.skip))
    }

    /// Orders two records as this selection does.
    #[must_use]
    pub fn order(&self, a: &CallRecord, b: &CallRecord) -> Ordering {
        let o = start_time(a)
            .cmp(&start_time(b))
            .then_with(|| a.key.cmp(&b.key));
        if self.newest_first { o.reverse() } else { o }
    }

    /// Sorts `records` in this selection's order.
    pub fn sort(&self, records: &mut [CallRecord]) {
        records.sort_by(|a, b| self.order(a, b));
    }

    /// Orders `records` (all of them matching) and pages them.
    #[must_use]
    pub fn page(&self, mut records: Vec<CallRecord>) -> Vec<CallRecord> {
        self.sort(&mut records);
        let take = self.take.unwrap_or(usize::MAX);
        if self.skip == 0 && records.len() <= take {
            return records;
        }
        records.into_iter().skip(self.skip).take(take).collect()
    }

    /// The matching records of `records`, ordered and paged: what
    /// [`CallStorage::select`](crate::CallStorage::select) returns.
    #[must_use]
    pub fn apply(&self, mut records: Vec<CallRecord>) -> Vec<CallRecord> {
        records.retain(|r| self.matches(r));
        self.page(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: u8, x: Value, start: Option<f64>) -> CallRecord {
        let mut r = CallRecord::new(
            Digest::from_bytes([key; 32]),
            "m::f",
            Digest::from_bytes([0; 32]),
        );
        r.arguments = vec![("x".into(), x)];
        if let Some(s) = start {
            r.metadata.insert(
                "runtime".into(),
                Value::Struct(vec![
                    ("start".into(), Value::Float(s)),
                    ("stop".into(), Value::Float(s + 2.0)),
                    ("wall_time".into(), Value::Float(2.0)),
                ]),
            );
        }
        r
    }

    #[test]
    fn ranges_compare_numbers_only() {
        let r = |lo: i128, hi: i128| {
            (
                Bound::Included(Value::Int(lo)),
                Bound::Excluded(Value::Int(hi)),
            )
        };
        let (lo, hi) = r(2, 5);
        assert!(within(&Value::Int(2), &lo, &hi));
        assert!(!within(&Value::Int(5), &lo, &hi));
        assert!(within(&Value::Float(4.5), &lo, &hi));
        assert!(!within(&Value::Str("3".into()), &lo, &hi));
        assert!(!within(&Value::Float(f64::NAN), &lo, &hi));
        assert!(within(
            &Value::UInt(u128::MAX),
            &Bound::Included(Value::Int(0)),
            &Bound::Unbounded
        ));
        assert!(!within(
            &Value::Str("3".into()),
            &Bound::Unbounded,
            &Bound::Unbounded
        ));
    }

    #[test]
    fn order_is_start_then_key_and_paging_follows_it() {
        let records = vec![
            record(3, Value::Int(1), Some(20.0)),
            record(1, Value::Int(1), Some(30.0)),
            record(2, Value::Int(1), None),
            record(4, Value::Int(1), Some(20.0)),
        ];
        let keys = |s: &Selection| -> Vec<u8> {
            s.apply(records.clone())
                .iter()
                .map(|r| r.key.as_bytes()[0])
                .collect()
        };
        assert_eq!(keys(&Selection::new()), vec![2, 3, 4, 1]);
        let newest = Selection {
            newest_first: true,
            ..Selection::new()
        };
        assert_eq!(keys(&newest), vec![1, 4, 3, 2]);
        let page = Selection {
            skip: 1,
            take: Some(2),
            ..Selection::new()
        };
        assert_eq!(keys(&page), vec![3, 4]);
        let since = Selection::new().with(Condition::Since(UNIX_EPOCH + Duration::from_secs(25)));
        assert_eq!(keys(&since), vec![1]);
        let slow = Selection::new().with(Condition::SlowerThan(Duration::from_secs(1)));
        assert_eq!(keys(&slow), vec![3, 4, 1]);
    }
}
