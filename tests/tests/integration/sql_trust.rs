//! The SQLite backend's integrity (schema 2): rows damaged, swapped or copied behind its back are
//! misses with a warning, never another call's value, and the next store repairs them; schema-1
//! databases are migrated; many processes open a new database at once.

use std::path::Path;

use fleche::storage::{SqlDatabase, SqlTarget};
use fleche::{Cache, Digest, with_cache};
use rusqlite::{Connection, params};

use crate::support::{Counter, capture_warnings, sweep_in_processes};

fn sqlite(path: &Path) -> Cache {
    Cache::sqlite(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A connection of its own to the database, as another program would open it.
fn raw(path: &Path) -> Connection {
    Connection::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) {
    conn.execute(sql, params)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn batch(conn: &Connection, sql: &str) {
    conn.execute_batch(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn result_of(cache: &Cache, key: Digest) -> Digest {
    cache
        .records()
        .unwrap_or_default()
        .into_iter()
        .find(|r| r.key == key)
        .map(|r| r.result)
        .unwrap_or_else(|| panic!("no record {key}"))
}

static RUNS_SWAP: Counter = Counter::new();

#[fleche::memoize(name = "sql_trust.swap")]
fn swap(x: u32) -> u32 {
    RUNS_SWAP.hit();
    x * 10
}

#[test]
fn swapped_call_rows_do_not_serve_each_others_values() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("cache.db");
    let c = sqlite(&path);
    assert_eq!(with_cache(&c, || (swap(1), swap(2))), (10, 20));
    assert_eq!(RUNS_SWAP.get(), 2);
    // Each row's record and result move to the other's key.
    let conn = raw(&path);
    batch(
        &conn,
        "CREATE TEMP TABLE s AS SELECT key, record, result FROM calls",
    );
    exec(
        &conn,
        "UPDATE calls SET record = (SELECT s.record FROM s WHERE s.key != calls.key),
                          result = (SELECT s.result FROM s WHERE s.key != calls.key)
         WHERE key IN (?1, ?2)",
        params![swap::digest(1).as_bytes(), swap::digest(2).as_bytes()],
    );
    let (found, warnings) = capture_warnings(|| with_cache(&c, || (swap(1), swap(2))));
    assert_eq!(found, (10, 20), "each call gets its own value");
    assert_eq!(RUNS_SWAP.get(), 4, "both were misses");
    assert!(warnings.contains("checksum mismatch"), "{warnings}");
    // The stores repaired the rows: hits again, silently.
    let (found, warnings) = capture_warnings(|| with_cache(&c, || (swap(1), swap(2))));
    assert_eq!(found, (10, 20));
    assert_eq!(RUNS_SWAP.get(), 4);
    assert!(warnings.is_empty(), "{warnings}");
}

static RUNS_FLIP: Counter = Counter::new();

#[fleche::memoize(name = "sql_trust.flip")]
fn flip(x: u32) -> u32 {
    RUNS_FLIP.hit();
    x * 10
}

#[test]
fn a_flipped_value_byte_is_a_miss_that_the_next_store_repairs() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("cache.db");
    let c = sqlite(&path);
    assert_eq!(with_cache(&c, || flip(3)), 30);
    let value = result_of(&c, flip::digest(3));
    // 30 is the one MessagePack byte 0x1e; flipping its lowest bit makes it 31, still readable.
    exec(
        &raw(&path),
        r#"UPDATE "values" SET bytes = x'1f' WHERE digest = ?1 AND bytes = x'1e'"#,
        [value.as_bytes()],
    );
    let (found, warnings) = capture_warnings(|| with_cache(&c, || flip(3)));
    assert_eq!(found, 30, "not the damaged 31");
    assert_eq!(RUNS_FLIP.get(), 2);
    assert!(warnings.contains("checksum mismatch"), "{warnings}");
    assert!(
        warnings.contains(&value.to_string()),
        "names the digest: {warnings}"
    );
    assert!(
        warnings.contains(&path.display().to_string()),
        "names the database: {warnings}"
    );
    assert_eq!(with_cache(&c, || flip(3)), 30);
    assert_eq!(RUNS_FLIP.get(), 2, "repaired: a hit");
}

static RUNS_COPY: Counter = Counter::new();

#[fleche::memoize(name = "sql_trust.copy")]
fn copy(x: u32) -> u32 {
    RUNS_COPY.hit();
    x * 10
}

#[test]
fn a_value_row_copied_to_another_digest_is_a_miss() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("cache.db");
    let c = sqlite(&path);
    assert_eq!(with_cache(&c, || (copy(4), copy(5))), (40, 50));
    let (forty, fifty) = (
        result_of(&c, copy::digest(4)),
        result_of(&c, copy::digest(5)),
    );
    // The whole row of 40, checksum included, over the row of 50.
    let conn = raw(&path);
    batch(&conn, r#"CREATE TEMP TABLE t AS SELECT * FROM "values""#);
    exec(
        &conn,
        r#"DELETE FROM "values" WHERE digest = ?1"#,
        [fifty.as_bytes()],
    );
    exec(
        &conn,
        "DELETE FROM t WHERE digest != ?1",
        [forty.as_bytes()],
    );
    exec(&conn, "UPDATE t SET digest = ?1", [fifty.as_bytes()]);
    batch(&conn, r#"INSERT INTO "values" SELECT * FROM t"#);
    let (found, warnings) = capture_warnings(|| with_cache(&c, || copy(5)));
    assert_eq!(found, 50, "not the copied 40");
    assert_eq!(RUNS_COPY.get(), 3);
    assert!(warnings.contains("checksum mismatch"), "{warnings}");
    assert_eq!(with_cache(&c, || (copy(4), copy(5))), (40, 50));
    assert_eq!(RUNS_COPY.get(), 3, "repaired: hits");
}

static RUNS_OLD: Counter = Counter::new();

#[fleche::memoize(name = "sql_trust.old")]
fn old(x: u32) -> u32 {
    RUNS_OLD.hit();
    x * 10
}

/// Schema 1 as fleche wrote it, frozen.
const SCHEMA_V1: &str = r#"
    CREATE TABLE calls (
        key BLOB PRIMARY KEY NOT NULL, function TEXT NOT NULL, version TEXT, code BLOB,
        type_args TEXT NOT NULL, arguments TEXT NOT NULL, metadata TEXT NOT NULL,
        result BLOB NOT NULL, start REAL, record BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX calls_by_function ON calls (function, start);
    CREATE TABLE arguments (
        key BLOB NOT NULL REFERENCES calls (key) ON DELETE CASCADE,
        name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (key, name)
    ) WITHOUT ROWID;
    CREATE INDEX arguments_by_value ON arguments (name, value);
    CREATE TABLE "values" (digest BLOB PRIMARY KEY NOT NULL, bytes BLOB NOT NULL) WITHOUT ROWID;
    PRAGMA user_version = 1;
"#;

/// A schema-1 database at `to` with the rows of the database `from`, as schema 1 stored them.
fn schema_1_copy(from: &Path, to: &Path) {
    let conn = raw(to);
    batch(&conn, SCHEMA_V1);
    exec(&conn, "ATTACH ?1 AS src", [from.display().to_string()]);
    batch(
        &conn,
        r#"INSERT INTO calls SELECT key, function, version, code, type_args, arguments, metadata,
                  result, start, record FROM src.calls;
           INSERT INTO arguments SELECT * FROM src.arguments;
           INSERT INTO "values" SELECT digest, bytes FROM src."values";
           DETACH src;"#,
    );
}

fn user_version(path: &Path) -> i64 {
    raw(path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_schema_1_database_is_migrated_its_rows_miss_with_one_warning() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let new = dir.path().join("new.db");
    with_cache(sqlite(&new), || (old(1), old(2), old(3)));
    assert_eq!(RUNS_OLD.get(), 3);
    let v1 = dir.path().join("v1.db");
    schema_1_copy(&new, &v1);
    let v1_again = dir.path().join("v1-again.db");
    schema_1_copy(&new, &v1_again);
    assert_eq!(user_version(&v1), 1);

    // Read-only, the old database still reads: misses, no error, nothing written.
    let ro = SqlDatabase::open_read_only(&SqlTarget::File(v1_again.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    let ro = Cache::from_storages("old", ro.values(), ro.calls());
    let (found, warnings) = capture_warnings(|| with_cache(&ro, || (old(1), old(2))));
    assert_eq!(found, (10, 20));
    assert_eq!(RUNS_OLD.get(), 5);
    assert_eq!(
        warnings.matches("carry no checksum").count(),
        1,
        "{warnings}"
    );
    assert_eq!(user_version(&v1_again), 1);

    // Opened for writing, it is migrated; its rows are misses, with one warning for all.
    let (c, warnings) = capture_warnings(|| {
        let c = sqlite(&v1);
        assert_eq!(with_cache(&c, || (old(1), old(2), old(3))), (10, 20, 30));
        c
    });
    assert_eq!(user_version(&v1), 2);
    assert_eq!(RUNS_OLD.get(), 8, "every old row was a miss");
    assert_eq!(
        warnings.matches("carry no checksum").count(),
        1,
        "{warnings}"
    );
    // The stores rewrote them.
    let (found, warnings) = capture_warnings(|| with_cache(&c, || (old(1), old(2), old(3))));
    assert_eq!(found, (10, 20, 30));
    assert_eq!(RUNS_OLD.get(), 8, "hits");
    assert!(warnings.is_empty(), "{warnings}");
    assert_eq!(c.records().unwrap_or_default().len(), 3);
}

#[test]
fn twelve_processes_open_a_new_sqlite_cache_at_once() {
    for _round in 0..20 {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        sweep_in_processes("sweep-sql", &dir.path().join("cache.db"), 8, 12);
    }
}
