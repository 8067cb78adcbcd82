//! Metadata recorded with every stored call: [`Runtime`] by default, [`Environment`], [`Git`]
//! and [`Lineage`] when chosen, [`Tags`] inside [`with_tags`] scopes, and custom kinds
//! implementing [`Metadata`].
//!
//! Which kinds are recorded: the names `[default] metadata` lists in `fleche.toml` (`Runtime`
//! alone when it says nothing), plus those a function names with `#[memoize(meta(..))]`. Tags
//! are recorded whenever a scope sets them.

mod environment;
mod git;
mod lineage;
mod runtime;
mod tags;

use std::collections::BTreeMap;

use fleche_storage::Value;

pub use environment::Environment;
pub use git::Git;
pub use lineage::Lineage;
pub(crate) use lineage::{running, within};
pub use runtime::Runtime;
pub(crate) use runtime::ThreadClock;
pub(crate) use tags::current_tags;
pub use tags::{Tags, with_tags};

/// A kind of metadata of one's own, recorded for the functions that name it in
/// `#[memoize(meta(..))]`: `collect` is called for each stored call, and what it returns is
/// kept under `name` in [`CallRecord::metadata`](crate::CallRecord::metadata).
///
/// A kind is named in `meta(..)` by a value: a unit struct, or a constant.
///
/// ```
/// use fleche::{Metadata, Value};
///
/// struct Machine;
///
/// impl Metadata for Machine {
///     fn name(&self) -> &'static str { "machine" }
///     fn collect(&self) -> Option<Value> {
///         Some(Value::Str(std::env::consts::ARCH.to_owned()))
///     }
/// }
///
/// #[fleche::memoize(meta(Machine))]
/// fn double(x: u64) -> u64 { x * 2 }
///
/// # fn main() -> Result<(), fleche::Error> {
/// let c = fleche::Cache::memory();
/// fleche::with_cache(&c, || double(2));
/// let r = c.query().has_meta("machine").only()?;
/// assert_eq!(r.metadata["machine"].as_str(), Some(std::env::consts::ARCH));
/// # Ok(()) }
/// ```
pub trait Metadata: Send + Sync + 'static {
    /// The key in the record's metadata. The built-in names (`runtime`, `environment`, `git`,
    /// `tags`, `lineage`) are taken: a custom kind using one is overwritten by the built-in
    /// kind when both are recorded.
    fn name(&self) -> &'static str;
    /// The value for the call being stored; `None` records nothing.
    fn collect(&self) -> Option<Value>;
}

impl std::fmt::Debug for dyn Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Metadata({:?})", self.name())
    }
}

/// A kind of metadata fleche records itself, as `#[memoize(meta(..))]` and `[default] metadata`
/// name it.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKind {
    /// [`Runtime`].
    Runtime,
    /// [`Environment`].
    Environment,
    /// [`Git`].
    Git,
    /// [`Tags`]: always recorded inside a scope; naming it changes nothing.
    Tags,
    /// [`Lineage`].
    Lineage,
}

impl MetaKind {
    /// Every kind, with its configuration name.
    pub(crate) const ALL: [(&'static str, MetaKind); 5] = [
        ("Runtime", MetaKind::Runtime),
        ("Environment", MetaKind::Environment),
        ("Git", MetaKind::Git),
        ("Tags", MetaKind::Tags),
        ("Lineage", MetaKind::Lineage),
    ];

    /// The kind a configuration name names.
    pub(crate) fn named(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of built-in kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Chosen(u8);

impl Chosen {
    /// `Runtime` alone: what records carry when nothing is configured.
    pub(crate) const DEFAULT: Chosen = Chosen(MetaKind::Runtime.bit());

    pub(crate) fn of(kinds: impl IntoIterator<Item = MetaKind>) -> Self {
        Self(kinds.into_iter().fold(0, |b, k| b | k.bit()))
    }

    pub(crate) fn with(self, other: Chosen) -> Self {
        Self(self.0 | other.0)
    }

    pub(crate) fn has(self, kind: MetaKind) -> bool {
        self.0 & kind.bit() != 0
    }
}

/// What one stored call's metadata is made of.
pub(crate) struct Collect<'a> {
    pub(crate) chosen: Chosen,
    pub(crate) custom: &'a [&'static dyn Metadata],
    pub(crate) runtime: Runtime,
    pub(crate) parent: Option<(fleche_storage::Digest, &'static str)>,
    pub(crate) package: (Option<&'static str>, Option<&'static str>),
}

impl Collect<'_> {
    /// The record's metadata: custom kinds first, so built-in kinds win a shared name.
    pub(crate) fn into_map(self) -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        for kind in self.custom {
            if let Some(v) = kind.collect() {
                m.insert(kind.name().to_owned(), v);
            }
        }
        if self.chosen.has(MetaKind::Runtime) {
            m.insert(Runtime::NAME.to_owned(), self.runtime.to_value());
        }
        if self.chosen.has(MetaKind::Environment) {
            m.insert(
                Environment::NAME.to_owned(),
                Environment::current(self.package).to_value(),
            );
        }
        if self.chosen.has(MetaKind::Git)
            && let Some(g) = Git::current()
        {
            m.insert(Git::NAME.to_owned(), g.to_value());
        }
        if self.chosen.has(MetaKind::Lineage)
            && let Some((parent, function)) = self.parent
        {
            let lineage = Lineage {
                parent,
                function: function.to_owned(),
            };
            m.insert(Lineage::NAME.to_owned(), lineage.to_value());
        }
        if let Some(tags) = current_tags() {
            m.insert(Tags::NAME.to_owned(), tags.to_value());
        }
        m
    }
}

/// `m` as a metadata kind: what `#[memoize(meta(Stamp))]` expands to, spanned at `Stamp`, so a
/// value that is not `Metadata` is reported there.
#[doc(hidden)]
pub const fn metadata_kind<M: Metadata>(m: &'static M) -> &'static dyn Metadata {
    m
}
