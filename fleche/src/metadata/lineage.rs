//! [`Lineage`]: which memoized call a call was made from.

use std::cell::RefCell;

use fleche_storage::{CallRecord, Digest, Value};

/// The memoized call that was running (on the same thread) when a call was made: its key and
/// function. Recorded when asked for (`[default] metadata = ["Lineage"]` or
/// `#[memoize(meta(Lineage))]`) under the metadata name [`Lineage::NAME`], so that one can walk
/// what fed what: `fleche show KEY` prints the tree.
///
/// The parent is the innermost memoized call whose body is running on the calling thread. Work a
/// body hands to other threads, and the calls inside an `async fn`'s body, have no parent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lineage {
    /// The key of the parent call.
    pub parent: Digest,
    /// The parent call's function.
    pub function: String,
}

thread_local! {
    /// The memoized calls whose bodies run on this thread, outermost first.
    static RUNNING: RefCell<Vec<(Digest, &'static str)>> = const { RefCell::new(Vec::new()) };
}

/// The innermost running call on this thread, without allocating: what a call being made
/// keeps until it knows whether it records [`Lineage`].
pub(crate) fn running() -> Option<(Digest, &'static str)> {
    RUNNING
        .try_with(|r| r.borrow().last().copied())
        .ok()
        .flatten()
}

/// Runs `body` as the body of the call `key` of `function`: calls made inside it see it as their
/// parent.
pub(crate) fn within<R>(key: Digest, function: &'static str, body: impl FnOnce() -> R) -> R {
    struct Pop(usize);
    impl Drop for Pop {
        fn drop(&mut self) {
            let _ = RUNNING.try_with(|r| r.borrow_mut().truncate(self.0));
        }
    }
    let depth = RUNNING.with(|r| {
        let mut r = r.borrow_mut();
        r.push((key, function));
        r.len() - 1
    });
    let _pop = Pop(depth);
    body()
}

impl Lineage {
    /// The metadata name under which call records keep it.
    pub const NAME: &'static str = "lineage";

    /// The call whose body is running on this thread, if any.
    #[must_use]
    pub fn current() -> Option<Self> {
        running().map(|(parent, function)| Self {
            parent,
            function: function.to_owned(),
        })
    }

    /// The lineage stored in `record`, if any.
    #[must_use]
    pub fn from_record(record: &CallRecord) -> Option<Self> {
        Self::from_value(record.metadata.get(Self::NAME)?)
    }

    /// Parses the stored form.
    #[must_use]
    pub fn from_value(value: &Value) -> Option<Self> {
        Some(Self {
            parent: value.field("parent")?.as_str()?.parse().ok()?,
            function: value.field("function")?.as_str()?.to_owned(),
        })
    }

    /// The stored form: a struct of `parent` (the key, hex) and `function`.
    #[must_use]
    pub fn to_value(&self) -> Value {
        Value::Struct(vec![
            ("parent".to_owned(), Value::Str(self.parent.to_string())),
            ("function".to_owned(), Value::Str(self.function.clone())),
        ])
    }
}
