//! The SQLite storages (feature `sqlite`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::SqlTarget;
use crate::{CallRecord, CallStorage, Digest, StorageError, Value, ValueStorage};

/// The schema version this code writes and migrates to.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA_V1: &str = r#"
CREATE TABLE IF NOT EXISTS calls (
    key        BLOB PRIMARY KEY NOT NULL,
    function   TEXT NOT NULL,
    version    TEXT,
    code       BLOB,
    type_args  TEXT NOT NULL,
    arguments  TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    result     BLOB NOT NULL,
    start      REAL,
    record     BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS calls_by_function ON calls (function, start);
CREATE TABLE IF NOT EXISTS arguments (
    key   BLOB NOT NULL REFERENCES calls (key) ON DELETE CASCADE,
    name  TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (key, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS arguments_by_value ON arguments (name, value);
CREATE TABLE IF NOT EXISTS "values" (
    digest BLOB PRIMARY KEY NOT NULL,
    bytes  BLOB NOT NULL
) WITHOUT ROWID;
"#;

/// An open SQLite database, shared by a values and a calls storage.
#[derive(Clone)]
pub struct SqlDatabase {
    conn: Arc<Mutex<Connection>>,
    location: String,
}

impl std::fmt::Debug for SqlDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlDatabase")
            .field("location", &self.location)
            .finish()
    }
}

fn sqlite_error(location: &str, source: rusqlite::Error) -> StorageError {
    StorageError::Sqlite {
        location: location.to_owned(),
        source,
    }
}

impl SqlDatabase {
    /// Opens (creating and migrating as needed) the database at `target`, private to the user
    /// if it creates it: [`SqlDatabase::open_with`] with `shared` false.
    ///
    /// # Errors
    ///
    /// The file cannot be opened, is not an SQLite database, or has a newer schema.
    pub fn open(target: &SqlTarget) -> Result<Self, StorageError> {
        Self::open_with(target, false)
    }

    /// Opens (creating and migrating as needed) the database at `target`. A database file it
    /// creates is `0660` when `shared`, else `0600`; directories it creates are `2770`, else
    /// `0700` (Unix). Existing files and directories keep their modes.
    ///
    /// # Errors
    ///
    /// The file or its directory cannot be created or opened, is not an SQLite database, or has
    /// a newer schema.
    pub fn open_with(target: &SqlTarget, shared: bool) -> Result<Self, StorageError> {
        let (conn, location) = match target {
            SqlTarget::Memory => (Connection::open_in_memory(), ":memory:".to_owned()),
            SqlTarget::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    crate::fs::create_dir_all(dir, shared)?;
                }
                // Created here, with its mode, before SQLite opens it: SQLite would create it
                // with the umask's. An empty file is an empty database.
                crate::fs::create_new(path, shared)?;
                let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI;
                (
                    Connection::open_with_flags(path, flags),
                    path.display().to_string(),
                )
            }
        };
        let conn = conn.map_err(|e| sqlite_error(&location, e))?;
        Self::prepare(&conn, &location)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            location,
        })
    }

    fn prepare(conn: &Connection, location: &str) -> Result<(), StorageError> {
        let err = |e: rusqlite::Error| sqlite_error(location, e);
        conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
        // WAL lets readers and one writer work at once, across processes.
        let _: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(err)?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(err)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        if version > SCHEMA_VERSION {
            return Err(StorageError::NewerSchema {
                location: location.to_owned(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version < 1 {
            // BEGIN IMMEDIATE: two processes migrating at once take turns.
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {SCHEMA_V1} PRAGMA user_version = 1; COMMIT;"
            ))
            .map_err(err)?;
        }
        Ok(())
    }

    /// Where the database is, for messages.
    #[must_use]
    pub fn location(&self) -> &str {
        &self.location
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StorageError> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn).map_err(|e| self.error(e))
    }

    fn error(&self, e: rusqlite::Error) -> StorageError {
        sqlite_error(&self.location, e)
    }

    /// The calls storage of this database.
    #[must_use]
    pub fn calls(&self) -> SqlCalls {
        SqlCalls { db: self.clone() }
    }

    /// The values storage of this database.
    #[must_use]
    pub fn values(&self) -> SqlValues {
        SqlValues { db: self.clone() }
    }
}

/// Call records in an SQLite database.
#[derive(Debug, Clone)]
pub struct SqlCalls {
    db: SqlDatabase,
}

/// Values in an SQLite database.
#[derive(Debug, Clone)]
pub struct SqlValues {
    db: SqlDatabase,
}

fn digest_of(bytes: &[u8]) -> Option<Digest> {
    <[u8; 32]>::try_from(bytes).ok().map(Digest::from_bytes)
}

fn start_of(record: &CallRecord) -> Option<f64> {
    record
        .metadata
        .get("runtime")
        .and_then(|v| v.field("start"))
        .and_then(Value::as_f64)
}

impl SqlCalls {
    fn corrupt(&self, key: &Digest, reason: &str) -> StorageError {
        StorageError::corrupt(self.db.location.clone(), key, reason)
    }

    fn decode(&self, key: &Digest, blob: &[u8]) -> Result<CallRecord, StorageError> {
        CallRecord::decode_for(key, blob)
            .map_err(|e| StorageError::corrupt_by(self.db.location.clone(), key, "", e))
    }
}

impl CallStorage for SqlCalls {
    fn result_of(&self, key: &Digest) -> Result<Option<Digest>, StorageError> {
        let found: Option<Vec<u8>> = self.db.with(|c| {
            c.prepare_cached("SELECT result FROM calls WHERE key = ?1")?
                .query_row([key.as_bytes()], |r| r.get(0))
                .optional()
        })?;
        match found {
            None => Ok(None),
            Some(bytes) => digest_of(&bytes)
                .map(Some)
                .ok_or_else(|| self.corrupt(key, "result digest is not 32 bytes")),
        }
    }

    fn load(&self, key: &Digest) -> Result<Option<CallRecord>, StorageError> {
        let blob: Option<Vec<u8>> = self.db.with(|c| {
            c.prepare_cached("SELECT record FROM calls WHERE key = ?1")?
                .query_row([key.as_bytes()], |r| r.get(0))
                .optional()
        })?;
        blob.map(|b| self.decode(key, &b)).transpose()
    }

    fn save(&self, record: CallRecord) -> Result<(), StorageError> {
        let blob = rmp_serde::to_vec_named(&record).map_err(|source| StorageError::Encode {
            location: self.db.location.clone(),
            key: record.key,
            source,
        })?;
        let json = |v: serde_json::Value| v.to_string();
        let arguments: Vec<(String, String)> = record
            .arguments
            .iter()
            .map(|(n, v)| (n.clone(), json(v.to_json())))
            .collect();
        let args_object = json(serde_json::Value::Object(
            record
                .arguments
                .iter()
                .map(|(n, v)| (n.clone(), v.to_json()))
                .collect(),
        ));
        let metadata = json(serde_json::Value::Object(
            record
                .metadata
                .iter()
                .map(|(n, v)| (n.clone(), v.to_json()))
                .collect(),
        ));
        let type_args = json(serde_json::Value::from(record.type_args.clone()));
        self.db.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO calls
                 (key, function, version, code, type_args, arguments, metadata, result, start, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                record.key.as_bytes(),
                record.function,
                record.version,
                record.code.as_ref().map(|d| d.as_bytes().to_vec()),
                type_args,
                args_object,
                metadata,
                record.result.as_bytes(),
                start_of(&record),
                blob,
            ])?;
            tx.prepare_cached("DELETE FROM arguments WHERE key = ?1")?
                .execute([record.key.as_bytes()])?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO arguments (key, name, value) VALUES (?1, ?2, ?3)",
                )?;
                for (name, value) in &arguments {
                    insert.execute(params![record.key.as_bytes(), name, value])?;
                }
            }
            tx.commit()
        })
    }

    fn evict(&self, key: &Digest) -> Result<bool, StorageError> {
        self.db.with(|c| {
            let n = c
                .prepare_cached("DELETE FROM calls WHERE key = ?1")?
                .execute([key.as_bytes()])?;
            Ok(n > 0)
        })
    }

    /// Every readable record; unreadable ones are skipped with a warning.
    fn records(&self) -> Result<Vec<CallRecord>, StorageError> {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = self.db.with(|c| {
            let mut stmt = c.prepare_cached("SELECT key, record FROM calls ORDER BY start")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for (key, blob) in rows {
            let Some(key) = digest_of(&key) else {
                tracing::warn!(location = %self.db.location, "skipping a call row whose key is not 32 bytes");
                continue;
            };
            match self.decode(&key, &blob) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(error = %e, "skipping unreadable call record"),
            }
        }
        Ok(out)
    }
}

impl ValueStorage for SqlValues {
    fn load(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StorageError> {
        self.db.with(|c| {
            c.prepare_cached(r#"SELECT bytes FROM "values" WHERE digest = ?1"#)?
                .query_row([digest.as_bytes()], |r| r.get(0))
                .optional()
        })
    }

    fn save(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StorageError> {
        self.db.with(|c| {
            c.prepare_cached(r#"INSERT OR IGNORE INTO "values" (digest, bytes) VALUES (?1, ?2)"#)?
                .execute(params![digest.as_bytes(), bytes])?;
            Ok(())
        })
    }

    fn contains(&self, digest: &Digest) -> Result<bool, StorageError> {
        self.db.with(|c| {
            c.prepare_cached(r#"SELECT 1 FROM "values" WHERE digest = ?1"#)?
                .query_row([digest.as_bytes()], |_| Ok(()))
                .optional()
                .map(|o| o.is_some())
        })
    }

    fn evict(&self, digest: &Digest) -> Result<bool, StorageError> {
        self.db.with(|c| {
            let n = c
                .prepare_cached(r#"DELETE FROM "values" WHERE digest = ?1"#)?
                .execute([digest.as_bytes()])?;
            Ok(n > 0)
        })
    }

    fn digests(&self) -> Result<Vec<Digest>, StorageError> {
        let rows: Vec<Vec<u8>> = self.db.with(|c| {
            let mut stmt = c.prepare_cached(r#"SELECT digest FROM "values""#)?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })?;
        Ok(rows.iter().filter_map(|b| digest_of(b)).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use super::*;

    fn d(b: u8) -> Digest {
        Digest::from_bytes([b; 32])
    }

    fn record(key: u8, x: i128, y: i128) -> CallRecord {
        let mut r = CallRecord::new(d(key), "m::bar", d(key.wrapping_add(100)));
        r.arguments = vec![("x".into(), Value::Int(x)), ("y".into(), Value::Int(y))];
        let mut meta = BTreeMap::new();
        meta.insert(
            "runtime".to_owned(),
            Value::Struct(vec![("start".into(), Value::Float(f64::from(key)))]),
        );
        r.metadata = meta;
        r
    }

    fn temp_db() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("sub").join("cache.db");
        (dir, path)
    }

    #[test]
    fn calls_and_values_round_trip() -> Result<(), StorageError> {
        let db = SqlDatabase::open(&SqlTarget::Memory)?;
        let (calls, values) = (db.calls(), db.values());
        assert_eq!(calls.load(&d(1))?, None);
        calls.save(record(1, 1, 5))?;
        assert_eq!(calls.load(&d(1))?, Some(record(1, 1, 5)));
        assert_eq!(calls.result_of(&d(1))?, Some(d(101)));
        calls.save(record(1, 2, 5))?;
        assert_eq!(
            calls.records()?,
            vec![record(1, 2, 5)],
            "overwrite keeps one record"
        );
        assert!(calls.evict(&d(1))?);
        assert!(!calls.evict(&d(1))?);
        values.save(&d(7), b"bytes")?;
        values.save(&d(7), b"bytes")?;
        assert_eq!(values.load(&d(7))?.as_deref(), Some(&b"bytes"[..]));
        assert!(values.contains(&d(7))?);
        assert_eq!(values.digests()?, vec![d(7)]);
        assert!(values.evict(&d(7))?);
        Ok(())
    }

    #[test]
    fn arguments_are_queryable_in_sql() -> Result<(), StorageError> {
        let (_dir, path) = temp_db();
        let db = SqlDatabase::open(&SqlTarget::File(path.clone()))?;
        let calls = db.calls();
        calls.save(record(1, 1, 5))?;
        calls.save(record(2, 2, 5))?;
        calls.save(record(3, 1, 6))?;
        let conn = Connection::open(&path).map_err(|e| sqlite_error("test", e))?;
        let count = |sql: &str| -> Result<i64, StorageError> {
            conn.query_row(sql, [], |r| r.get(0))
                .map_err(|e| sqlite_error("test", e))
        };
        assert_eq!(
            count("SELECT count(*) FROM calls WHERE json_extract(arguments, '$.y') = 5")?,
            2
        );
        assert_eq!(
            count("SELECT count(*) FROM arguments WHERE name = 'x' AND value = '1'")?,
            2
        );
        assert_eq!(
            count("SELECT count(*) FROM calls WHERE function = 'm::bar'")?,
            3
        );
        assert_eq!(count("PRAGMA user_version")?, SCHEMA_VERSION);
        // Deleting a call deletes its argument rows.
        calls.evict(&d(1))?;
        assert_eq!(count("SELECT count(*) FROM arguments")?, 4);
        Ok(())
    }

    #[test]
    fn a_newer_schema_is_refused() -> Result<(), StorageError> {
        let (_dir, path) = temp_db();
        SqlDatabase::open(&SqlTarget::File(path.clone()))?;
        let conn = Connection::open(&path).map_err(|e| sqlite_error("test", e))?;
        conn.execute_batch("PRAGMA user_version = 99")
            .map_err(|e| sqlite_error("test", e))?;
        let err = SqlDatabase::open(&SqlTarget::File(path))
            .err()
            .map(|e| e.to_string());
        assert!(
            err.unwrap_or_default()
                .contains("schema version 99 is newer")
        );
        Ok(())
    }

    #[test]
    fn damage_is_reported_not_panicked() -> Result<(), StorageError> {
        let (_dir, path) = temp_db();
        let db = SqlDatabase::open(&SqlTarget::File(path.clone()))?;
        db.calls().save(record(1, 1, 1))?;
        let conn = Connection::open(&path).map_err(|e| sqlite_error("test", e))?;
        conn.execute("UPDATE calls SET record = x'c1c1c1'", [])
            .map_err(|e| sqlite_error("test", e))?;
        assert!(matches!(
            db.calls().load(&d(1)),
            Err(StorageError::Corrupt { .. })
        ));
        assert!(
            db.calls().records()?.is_empty(),
            "unreadable rows are skipped"
        );
        // A file that is not a database.
        let (_dir2, junk) = temp_db();
        if let Some(parent) = junk.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StorageError::Io {
                path: junk.clone(),
                source,
            })?;
        }
        std::fs::write(&junk, b"this is not a database, just some bytes").map_err(|source| {
            StorageError::Io {
                path: junk.clone(),
                source,
            }
        })?;
        let err = SqlDatabase::open(&SqlTarget::File(junk.clone())).err();
        assert!(
            matches!(&err, Some(StorageError::Sqlite { location, .. }) if *location == junk.display().to_string()),
            "{err:?}"
        );
        let source = err.as_ref().and_then(std::error::Error::source);
        assert!(
            source.is_some_and(|s| s.is::<rusqlite::Error>()),
            "the rusqlite error is kept as the source"
        );
        Ok(())
    }

    #[test]
    fn s08_many_threads_three_keys_three_records() -> Result<(), StorageError> {
        let (_dir, path) = temp_db();
        // Two connections to one file, as two processes would have.
        let a = SqlDatabase::open(&SqlTarget::File(path.clone()))?;
        let b = SqlDatabase::open(&SqlTarget::File(path))?;
        std::thread::scope(|s| {
            for t in 0..24u8 {
                let db = if t % 2 == 0 { a.clone() } else { b.clone() };
                s.spawn(move || db.calls().save(record(t % 3, i128::from(t), 0)));
            }
        });
        assert_eq!(a.calls().records()?.len(), 3);
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn modes_are_private_or_group_shared() -> Result<(), StorageError> {
        use crate::fs::tests::{existing_dir, mode};
        let tmp = tempfile::tempdir().map_err(|source| StorageError::Io {
            path: "tmp".into(),
            source,
        })?;
        for (shared, dir_mode, file_mode) in [(false, 0o700, 0o600), (true, 0o2770, 0o660)] {
            let parent = tmp.path().join(format!("home-{shared}"));
            existing_dir(&parent);
            let path = parent.join("a").join("b").join("cache.db");
            let db = SqlDatabase::open_with(&SqlTarget::File(path.clone()), shared)?;
            db.calls().save(record(1, 1, 1))?;
            db.values().save(&d(1), b"x")?;
            assert_eq!(mode(&parent), 0o755, "an existing directory keeps its mode");
            assert_eq!(mode(&parent.join("a")), dir_mode);
            assert_eq!(mode(&parent.join("a").join("b")), dir_mode);
            let wal = path.with_extension("db-wal");
            let shm = path.with_extension("db-shm");
            for file in [&path, &wal, &shm] {
                assert_eq!(mode(file), file_mode, "{}", file.display());
            }
            // Reopened the other way, nothing changes.
            drop(db);
            SqlDatabase::open_with(&SqlTarget::File(path.clone()), !shared)?;
            assert_eq!(mode(&path), file_mode);
        }
        // `open` is private.
        let path = tmp.path().join("plain.db");
        SqlDatabase::open(&SqlTarget::File(path.clone()))?;
        assert_eq!(mode(&path), 0o600);
        Ok(())
    }

    #[test]
    fn urls() {
        let base = Path::new("/cfg");
        let home = Some(Path::new("/home/u"));
        assert_eq!(
            SqlTarget::from_url("sqlite:///rel.db", base, home),
            Ok(SqlTarget::File("/cfg/rel.db".into()))
        );
        assert_eq!(
            SqlTarget::from_url("sqlite:////abs/x.db", base, home),
            Ok(SqlTarget::File("/abs/x.db".into()))
        );
        assert_eq!(
            SqlTarget::from_url("sqlite:///~/c.db", base, home),
            Ok(SqlTarget::File("/home/u/c.db".into()))
        );
        assert_eq!(
            SqlTarget::from_url("sqlite:///:memory:", base, home),
            Ok(SqlTarget::Memory)
        );
        assert_eq!(
            SqlTarget::from_url("sqlite://", base, home),
            Ok(SqlTarget::Memory)
        );
        assert!(SqlTarget::from_url("postgres://x", base, home).is_err());
        assert!(SqlTarget::from_url("sqlite://rel.db", base, home).is_err());
    }
}
