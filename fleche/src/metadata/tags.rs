//! [`Tags`] and [`with_tags`]: labels set per scope, recorded on every call stored inside it.

use fleche_storage::{CallRecord, Value};

/// Tags set for a scope with [`with_tags`]: recorded with every call stored inside it, under the
/// metadata name [`Tags::NAME`], as a map from tag names to values (in stored form, like
/// arguments).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Tags {
    /// The tags by name.
    pub tags: std::collections::BTreeMap<String, Value>,
}

impl Tags {
    /// The metadata name under which call records keep them.
    pub const NAME: &'static str = "tags";

    /// The tags stored in `record`, if any.
    #[must_use]
    pub fn from_record(record: &CallRecord) -> Option<Self> {
        Self::from_value(record.metadata.get(Self::NAME)?)
    }

    /// Parses the stored form: a map with string keys.
    #[must_use]
    pub fn from_value(value: &Value) -> Option<Self> {
        let Value::Map(entries) = value else {
            return None;
        };
        let tags = entries
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone())))
            .collect();
        Some(Self { tags })
    }

    /// The stored form.
    #[must_use]
    pub fn to_value(&self) -> Value {
        Value::Map(
            self.tags
                .iter()
                .map(|(k, v)| (Value::Str(k.clone()), v.clone()))
                .collect(),
        )
    }

    /// The tag `name`, if set.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.tags.get(name)
    }
}

thread_local! {
    /// The tags of the enclosing `with_tags` scopes of this thread, outermost first.
    static SCOPE_TAGS: std::cell::RefCell<Vec<(String, Value)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with `tags` recorded on every call stored inside it (on this thread): nested scopes
/// merge, the inner value of a tag wins. Query them with [`Query::tag`](crate::Query::tag).
///
/// The tags are the calling thread's: work handed to other threads inside the scope is tagged
/// only if it sets the tags again there.
///
/// ```
/// #[fleche::memoize]
/// fn run(seed: u64) -> u64 { seed * 2 }
///
/// # fn main() -> Result<(), fleche::Error> {
/// let c = fleche::Cache::memory();
/// fleche::with_cache(&c, || {
///     fleche::with_tags([("project", "alpha")], || run(1));
///     fleche::with_tags([("project", "beta")], || run(2));
/// });
/// let alpha = c.query().tag("project", "alpha").only()?;
/// assert_eq!(alpha.arg::<u64>("seed")?, 1);
/// # Ok(()) }
/// ```
pub fn with_tags<K, V, R>(tags: impl IntoIterator<Item = (K, V)>, f: impl FnOnce() -> R) -> R
where
    K: Into<String>,
    V: crate::Key,
{
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            SCOPE_TAGS.with(|t| t.borrow_mut().truncate(self.0));
        }
    }
    let added: Vec<(String, Value)> = tags
        .into_iter()
        .map(|(k, v)| (k.into(), v.to_value()))
        .collect();
    let before = SCOPE_TAGS.with(|t| {
        let mut t = t.borrow_mut();
        let n = t.len();
        t.extend(added);
        n
    });
    let _restore = Restore(before);
    f()
}

/// The tags in effect on this thread, if any.
pub(crate) fn current_tags() -> Option<Tags> {
    SCOPE_TAGS.with(|t| {
        let t = t.borrow();
        if t.is_empty() {
            return None;
        }
        // Later (inner) entries overwrite earlier (outer) ones.
        Some(Tags {
            tags: t.iter().cloned().collect(),
        })
    })
}
