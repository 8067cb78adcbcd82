//! The query API (Q01–Q04): filters by function, version, argument (exact, set, range), tags and
//! other metadata, time and duration; order and paging; `only`, `latest`, `oldest`, `results`,
//! typed arguments, `evict` and `transfer`.

use std::time::{Duration, SystemTime};

use fleche::{Cache, Error, memoize, with_cache, with_tags};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, fleche::Key)]
struct Spec {
    steps: u32,
    label: String,
}

#[memoize(name = "query.sim", version = "2")]
fn sim(seed: u64, dt: f64, spec: Spec) -> Vec<f64> {
    vec![seed as f64 * dt; spec.steps as usize]
}

#[memoize(name = "query.slow")]
fn slow(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn spec(steps: u32) -> Spec {
    Spec {
        steps,
        label: format!("s{steps}"),
    }
}

/// Stores `sim(seed, 0.5, spec(seed))` for seeds 1..=5, a few milliseconds apart.
fn filled() -> Cache {
    let c = Cache::memory();
    with_cache(&c, || {
        for seed in 1..=5u64 {
            sim(seed, 0.5, spec(seed as u32));
            std::thread::sleep(Duration::from_millis(3));
        }
    });
    c
}

fn seeds(records: &[fleche::CallRecord]) -> Vec<u64> {
    records
        .iter()
        .map(|r| r.arg::<u64>("seed").unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

#[test]
fn q01_filters_by_function_version_and_argument() -> Result<(), Error> {
    let c = filled();
    assert_eq!(c.query().count()?, 5);
    assert_eq!(c.query().function("query.sim").count()?, 5);
    assert_eq!(c.query().function("query.other").count()?, 0);
    assert_eq!(c.query().version("2").count()?, 5);
    assert_eq!(c.query().version("1").count()?, 0);
    // Integers compare by value whatever their type; floats are not integers.
    assert_eq!(c.query().arg("seed", 3u64).count()?, 1);
    assert_eq!(c.query().arg("seed", 3u8).count()?, 1);
    assert_eq!(c.query().arg("seed", 3i64).count()?, 1);
    assert_eq!(c.query().arg("seed", 3.0f64).count()?, 0);
    assert_eq!(c.query().arg("dt", 0.5f64).count()?, 5);
    assert_eq!(c.query().arg("spec", spec(2)).count()?, 1);
    assert_eq!(
        seeds(&c.query().arg_in("seed", [1u64, 4, 9]).records()?),
        [1, 4]
    );
    assert_eq!(
        seeds(&c.query().arg_range("seed", 2u64..4).records()?),
        [2, 3]
    );
    assert_eq!(
        seeds(&c.query().arg_range("seed", ..=2u32).records()?),
        [1, 2]
    );
    assert_eq!(
        seeds(&c.query().arg_range("seed", 4.5f64..).records()?),
        [5]
    );
    // A range over a non-numeric argument matches nothing.
    assert_eq!(c.query().arg_range("spec", 0u64..).count()?, 0);
    // By result.
    let r = c.query().arg("seed", 2u64).only()?;
    assert_eq!(c.query().result(r.result).only()?.key, r.key);
    // Companion query starts with the function.
    assert_eq!(
        with_cache(&c, || sim::query().arg("seed", 5u64).count())?,
        1
    );
    Ok(())
}

#[test]
fn q02_order_paging_and_single_results() -> Result<(), Error> {
    let c = filled();
    assert_eq!(seeds(&c.query().records()?), [1, 2, 3, 4, 5]);
    assert_eq!(seeds(&c.query().newest_first().records()?), [5, 4, 3, 2, 1]);
    assert_eq!(
        seeds(&c.query().newest_first().oldest_first().records()?),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(seeds(&c.query().skip(1).take(2).records()?), [2, 3]);
    assert_eq!(
        seeds(&c.query().newest_first().skip(4).take(9).records()?),
        [1]
    );
    assert_eq!(c.query().skip(3).count()?, 2);
    assert_eq!(c.query().take(0).count()?, 0);
    // latest and oldest ignore order and paging.
    let latest = c.query().take(1).latest()?.map(|r| r.arg::<u64>("seed"));
    assert_eq!(latest.transpose()?, Some(5));
    let oldest = c
        .query()
        .newest_first()
        .oldest()?
        .map(|r| r.arg::<u64>("seed"));
    assert_eq!(oldest.transpose()?, Some(1));
    assert!(c.query().arg("seed", 99u64).latest()?.is_none());
    // only: exactly one, else an error naming the count.
    assert_eq!(
        c.query().arg("seed", 4u64).only()?.arg::<Spec>("spec")?,
        spec(4)
    );
    let many = c.query().arg_range("seed", 2u64..).only();
    assert!(
        matches!(many, Err(Error::NotExactlyOne { found: 4 })),
        "{many:?}"
    );
    let none = c.query().arg("seed", 0u64).only();
    assert!(
        none.as_ref()
            .is_err_and(|e| e.to_string().contains("found 0")),
        "{none:?}"
    );
    // results: records with their decoded values.
    let results = c.query().arg_range("seed", 4u64..).results::<Vec<f64>>()?;
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].1, vec![2.0; 4]);
    assert_eq!(results[1].1, vec![2.5; 5]);
    Ok(())
}

#[test]
fn q03_typed_arguments_name_what_is_wrong() -> Result<(), Error> {
    let c = filled();
    let r = c.query().arg("seed", 1u64).only()?;
    assert_eq!(r.arg::<u64>("seed")?, 1);
    assert_eq!(r.arg::<u8>("seed")?, 1);
    assert_eq!(r.arg::<f64>("dt")?, 0.5);
    assert_eq!(r.arg::<Spec>("spec")?, spec(1));
    let missing = r.arg::<u64>("steps").map_err(Error::from);
    assert!(
        missing
            .as_ref()
            .is_err_and(|e| e.to_string().contains("no argument `steps`")),
        "{missing:?}"
    );
    let wrong = r.arg::<String>("seed").map_err(Error::from);
    assert!(
        wrong
            .as_ref()
            .is_err_and(|e| e.to_string().contains("argument `seed`")),
        "{wrong:?}"
    );
    // The Value tree is there too.
    assert_eq!(r.argument("seed"), Some(&fleche::Value::from(1u64)));
    Ok(())
}

#[test]
fn q04_tags_time_and_duration() -> Result<(), Error> {
    let c = Cache::memory();
    let before = SystemTime::now();
    with_cache(&c, || {
        with_tags([("project", "alpha")], || {
            sim(1, 1.0, spec(1));
            with_tags([("project", "beta"), ("stage", "fit")], || {
                sim(2, 1.0, spec(1))
            });
            sim(3, 1.0, spec(1));
        });
        sim(4, 1.0, spec(1));
        slow(30);
    });
    let after = SystemTime::now();
    assert_eq!(seeds(&c.query().tag("project", "alpha").records()?), [1, 3]);
    // Nested scopes merge; the inner value wins.
    assert_eq!(
        seeds(
            &c.query()
                .tag("project", "beta")
                .tag("stage", "fit")
                .records()?
        ),
        [2]
    );
    assert_eq!(c.query().tag("stage", "fit").count()?, 1);
    assert_eq!(c.query().has_meta("tags").count()?, 3);
    assert_eq!(c.query().has_meta("runtime").count()?, 5);
    // Outside the scopes, nothing is tagged.
    let untagged = c.query().arg("seed", 4u64).only()?;
    assert!(fleche::Tags::from_record(&untagged).is_none());
    // Time and duration.
    assert_eq!(c.query().since(before).until(after).count()?, 5);
    assert_eq!(c.query().since(after).count()?, 0);
    assert_eq!(c.query().until(before).count()?, 0);
    let slow_ones = c.query().slower_than(Duration::from_millis(20)).only()?;
    assert_eq!(slow_ones.function, "query.slow");
    Ok(())
}

#[test]
fn queries_evict_and_transfer_what_they_match() -> Result<(), Error> {
    let c = filled();
    let archive = Cache::memory();
    let moved = c.query().arg_range("seed", 4u64..).transfer(&archive)?;
    assert_eq!(archive.query().count()?, 2);
    assert_eq!(c.pop(&moved)?, 2);
    assert_eq!(c.query().count()?, 3);
    assert_eq!(c.query().newest_first().take(1).evict()?, 1);
    assert_eq!(seeds(&c.query().records()?), [1, 2]);
    // The transferred calls hit in the archive.
    assert!(with_cache(&archive, || sim::contains(5, 0.5, spec(5))));
    Ok(())
}

static RUNS_STEP: crate::support::Counter = crate::support::Counter::new();

#[memoize(name = "query.inner")]
fn inner(x: u64) -> u64 {
    RUNS_STEP.hit();
    x + 1
}

#[memoize(name = "query.outer")]
fn outer(x: u64) -> u64 {
    inner(x) * 10
}

#[test]
fn a_filtered_cache_shows_only_what_the_query_matches_and_stores_nothing() -> Result<(), Error> {
    let c = filled();
    let view = c.filtered(fleche::Query::new().arg_range("seed", 4u64..));
    assert_eq!(view.records()?.len(), 2);
    assert!(with_cache(&view, || sim::contains(4, 0.5, spec(4))));
    assert!(!with_cache(&view, || sim::contains(1, 0.5, spec(1))));
    assert_eq!(with_cache(&view, || sim::load(1, 0.5, spec(1))), None);
    assert_eq!(view.query().count()?, 2);
    // A miss under the view runs and stores nothing; evicting through it is refused.
    with_cache(&view, || sim(9, 0.5, spec(9)));
    assert_eq!(c.query().arg("seed", 9u64).count()?, 0);
    assert!(
        view.evict(&with_cache(&c, || sim::digest(4, 0.5, spec(4))))
            .is_err()
    );
    // Filtering a stack filters every layer.
    let stack = Cache::stack("s", [Cache::memory(), c.clone()])?;
    assert_eq!(
        stack
            .filtered(fleche::Query::new().arg("seed", 2u64))
            .records()?
            .len(),
        1
    );
    Ok(())
}

#[test]
fn a_refreshing_cache_recomputes_nested_calls_and_stores_them() -> Result<(), Error> {
    let c = Cache::memory();
    with_cache(&c, || outer(1));
    let runs = RUNS_STEP.get();
    with_cache(&c, || outer(1));
    assert_eq!(RUNS_STEP.get(), runs, "a hit");
    let fresh = c.refreshing();
    assert_eq!(with_cache(&fresh, || outer(1)), 20);
    assert_eq!(RUNS_STEP.get(), runs + 1, "the nested call ran again");
    // Stored again, in the same storages: a plain lookup hits.
    assert_eq!(c.query().function("query.inner").count()?, 1);
    with_cache(&c, || outer(1));
    assert_eq!(RUNS_STEP.get(), runs + 1);
    Ok(())
}
