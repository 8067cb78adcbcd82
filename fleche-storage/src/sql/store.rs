//! The SQLite storages (feature `sqlite`).
//!
//! Every row carries a checksum of its address and payload (`docs/format.md`, "SQL backend"):
//! a value row's over its digest and bytes, a call row's over its key and record. Every load
//! recomputes it, so a damaged row, or a row swapped with or copied from another address, is a
//! [`StorageError::Corrupt`] (a miss with a warning upstream) and never the answer for another
//! key. Rows written by schema 1 carry no checksum: they are misses, with one warning per
//! database, until the next store rewrites them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

use rusqlite::types::Value as Sql;

use super::SqlTarget;
use super::select::Plan;
use crate::integrity::{self, DEFAULT_MAX_ENTRY_SIZE};
use crate::{CallRecord, CallStorage, Digest, Selection, StorageError, Value, ValueStorage};

/// The schema version this code writes and migrates to.
pub const SCHEMA_VERSION: i64 = 2;

/// How long an operation waits for another connection's lock, opening included.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a value row's checksum covers before its digest and bytes.
const VALUE_CONTEXT: &[u8] = b"fleche sql value v2";

/// What a call row's checksum covers before its key and record.
const CALL_CONTEXT: &[u8] = b"fleche sql call v2";

/// Schema 2, created in a new database.
const SCHEMA_V2: &str = r#"
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
    record     BLOB NOT NULL,
    checksum   BLOB
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
    digest   BLOB PRIMARY KEY NOT NULL,
    bytes    BLOB NOT NULL,
    checksum BLOB
) WITHOUT ROWID;
"#;

/// From schema 1 to 2: the checksum columns, NULL in the rows schema 1 wrote.
const MIGRATE_V1_V2: &str = r#"
ALTER TABLE calls ADD COLUMN checksum BLOB;
ALTER TABLE "values" ADD COLUMN checksum BLOB;
"#;

/// The tables a connection sees: schema 2 once opened for writing; a read-only connection may
/// see an older schema, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tables {
    /// No tables yet (schema 0): every load misses.
    Missing,
    /// Schema 1: no checksum columns, so every row is a miss.
    V1,
    /// Schema 2.
    V2,
}

impl Tables {
    fn of(version: i64) -> Self {
        match version {
            ..=0 => Self::Missing,
            1 => Self::V1,
            _ => Self::V2,
        }
    }
}

/// A value row: its bytes unless over the limit or without checksum, their length, its
/// checksum.
const VALUE_ROW_V2: &str = r#"SELECT CASE WHEN checksum IS NOT NULL AND length(bytes) <= ?2 THEN bytes END,
       length(bytes), checksum
FROM "values" WHERE digest = ?1"#;
const VALUE_ROW_V1: &str =
    r#"SELECT NULL, length(bytes), NULL FROM "values" WHERE digest = ?1 AND ?2 = ?2"#;

/// A call row: its record unless over the limit or without checksum, the record's length, its
/// checksum, its result column.
const CALL_ROW_V2: &str =
    "SELECT CASE WHEN checksum IS NOT NULL AND length(record) <= ?2 THEN record END,
       length(record), checksum, result
FROM calls WHERE key = ?1";
const CALL_ROW_V1: &str =
    "SELECT NULL, length(record), NULL, result FROM calls WHERE key = ?1 AND ?2 = ?2";

/// Every call row, keys first, in the order of their start times.
const CALL_ROWS_V2: &str =
    "SELECT key, CASE WHEN checksum IS NOT NULL AND length(record) <= ?1 THEN record END,
       length(record), checksum, result
FROM calls ORDER BY start";
const CALL_ROWS_V1: &str =
    "SELECT key, NULL, length(record), NULL, result FROM calls WHERE ?1 = ?1 ORDER BY start";

/// A connection and the tables it sees.
struct State {
    conn: Connection,
    tables: Tables,
}

/// What the clones of a [`SqlDatabase`] share.
struct Inner {
    state: Mutex<State>,
    location: String,
    read_only: bool,
    /// Whether the warning about rows without checksum was given (once per database).
    warned_unchecked: AtomicBool,
}

/// An open SQLite database, shared by a values and a calls storage.
///
/// Every load checks the row's checksum and refuses entries longer than
/// [`SqlDatabase::max_entry_size`] before reading them.
#[derive(Clone)]
pub struct SqlDatabase {
    inner: Arc<Inner>,
    max_entry_size: u64,
}

impl std::fmt::Debug for SqlDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlDatabase")
            .field("location", &self.inner.location)
            .field("read_only", &self.inner.read_only)
            .field("max_entry_size", &self.max_entry_size)
            .finish()
    }
}

fn sqlite_error(location: &str, source: rusqlite::Error) -> StorageError {
    StorageError::Sqlite {
        location: location.to_owned(),
        source,
    }
}

/// Whether `e` says another connection holds a lock.
fn is_busy(e: &StorageError) -> bool {
    matches!(e, StorageError::Sqlite { source, .. }
        if matches!(source.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)))
}

/// Runs `step` until it does not fail with a busy database, backing off from 1 ms to 64 ms
/// between attempts, for at most [`BUSY_TIMEOUT`]; then returns its last error.
///
/// Opening needs this: switching a new database to WAL takes an exclusive lock, and SQLite
/// answers `SQLITE_BUSY` at once when another connection holds one, without calling the busy
/// handler.
fn retry_busy<T>(mut step: impl FnMut() -> Result<T, StorageError>) -> Result<T, StorageError> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match step() {
            Err(e) if is_busy(&e) && Instant::now() + pause < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(64));
            }
            done => return done,
        }
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
    /// An older schema is migrated in one `BEGIN IMMEDIATE` transaction. Many processes may
    /// open a new database at once: each waits for the others' locks, up to the busy timeout
    /// (30 s). A database file this process may not write is opened read-only, as
    /// [`SqlDatabase::open_read_only`] opens it.
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
        let mut conn = conn.map_err(|e| sqlite_error(&location, e))?;
        // SQLite opens a file this process may not write read-only: then it is read as it is,
        // as `open_read_only` reads it, rather than failing to migrate it.
        if conn
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(|e| sqlite_error(&location, e))?
        {
            return Self::reading(conn, location);
        }
        retry_busy(|| Self::prepare(&mut conn, &location))?;
        Ok(Self::new(conn, Tables::V2, location, false))
    }

    /// Opens the database at `target` for reading only: nothing is created, migrated or
    /// written (saves and evictions are [`StorageError::Rejected`]). A database of an older
    /// schema is read as it is: its rows have no checksums, so they are misses (with one
    /// warning), and a database without tables is empty. A [`SqlTarget::Memory`] target is an
    /// empty database.
    ///
    /// # Errors
    ///
    /// The file cannot be opened, is not an SQLite database, or has a newer schema.
    pub fn open_read_only(target: &SqlTarget) -> Result<Self, StorageError> {
        let (conn, location) = match target {
            SqlTarget::Memory => (Connection::open_in_memory(), ":memory:".to_owned()),
            SqlTarget::File(path) => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI;
                (
                    Connection::open_with_flags(path, flags),
                    path.display().to_string(),
                )
            }
        };
        let conn = conn.map_err(|e| sqlite_error(&location, e))?;
        Self::reading(conn, location)
    }

    /// A read-only handle on `conn`, which sees the schema it finds.
    fn reading(conn: Connection, location: String) -> Result<Self, StorageError> {
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| sqlite_error(&location, e))?;
        let version = retry_busy(|| Self::version(&conn, &location))?;
        Ok(Self::new(conn, Tables::of(version), location, true))
    }

    fn new(conn: Connection, tables: Tables, location: String, read_only: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State { conn, tables }),
                location,
                read_only,
                warned_unchecked: AtomicBool::new(false),
            }),
            max_entry_size: DEFAULT_MAX_ENTRY_SIZE,
        }
    }

    /// Sets the longest value or call record (in bytes) the storages of this handle read or
    /// write; [`DEFAULT_MAX_ENTRY_SIZE`] unless set. A longer stored entry is
    /// [`StorageError::Corrupt`] without being read into memory; a longer one to save is
    /// refused with [`StorageError::Settings`]. Applies to the storages made from the returned
    /// handle ([`SqlDatabase::values`], [`SqlDatabase::calls`]).
    #[must_use]
    pub fn max_entry_size(mut self, bytes: u64) -> Self {
        self.max_entry_size = bytes;
        self
    }

    /// The schema version of the database, refused if newer than [`SCHEMA_VERSION`].
    fn version(conn: &Connection, location: &str) -> Result<i64, StorageError> {
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| sqlite_error(location, e))?;
        if version > SCHEMA_VERSION {
            return Err(StorageError::NewerSchema {
                location: location.to_owned(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(version)
    }

    /// Puts a connection opened for writing in WAL mode and migrates the schema. Safe to run
    /// again after it failed part-way: [`retry_busy`] does.
    fn prepare(conn: &mut Connection, location: &str) -> Result<(), StorageError> {
        let err = |e: rusqlite::Error| sqlite_error(location, e);
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        // WAL lets readers and one writer work at once, across processes. Switching takes an
        // exclusive lock, so it is only done when the database is not in WAL mode yet.
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            let _: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(err)?;
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(err)?;
        if Self::version(conn, location)? == SCHEMA_VERSION {
            return Ok(());
        }
        // BEGIN IMMEDIATE: processes migrating at once take turns, and each one reads the
        // version again once it holds the write lock.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        match Self::version(&tx, location)? {
            0 => tx.execute_batch(SCHEMA_V2).map_err(err)?,
            1 => tx.execute_batch(MIGRATE_V1_V2).map_err(err)?,
            _ => return Ok(()),
        }
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Where the database is, for messages.
    #[must_use]
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    /// Runs `f` on the connection, with the tables it sees; a read-only connection looks again
    /// at a schema older than [`SCHEMA_VERSION`], which another process may have migrated.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection, Tables) -> rusqlite::Result<T>,
    ) -> Result<T, StorageError> {
        let mut state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if state.tables != Tables::V2 {
            state.tables = Tables::of(Self::version(&state.conn, &self.inner.location)?);
        }
        let tables = state.tables;
        f(&mut state.conn, tables).map_err(|e| self.error(e))
    }

    fn error(&self, e: rusqlite::Error) -> StorageError {
        sqlite_error(&self.inner.location, e)
    }

    /// Refuses `operation` on a read-only handle.
    fn writable(&self, operation: &'static str) -> Result<(), StorageError> {
        if self.inner.read_only {
            return Err(StorageError::Rejected {
                location: self.inner.location.clone(),
                operation,
            });
        }
        Ok(())
    }

    /// Refuses to save an entry longer than [`SqlDatabase::max_entry_size`].
    fn fits(&self, what: &str, key: &Digest, len: usize) -> Result<(), StorageError> {
        if u64::try_from(len).map_or(true, |n| n > self.max_entry_size) {
            return Err(StorageError::Settings {
                location: self.inner.location.clone(),
                reason: format!(
                    "{what} {key} is {len} bytes, more than max_entry_size ({} bytes)",
                    self.max_entry_size
                ),
            });
        }
        Ok(())
    }

    /// The limit as an SQL parameter.
    fn limit(&self) -> i64 {
        i64::try_from(self.max_entry_size).unwrap_or(i64::MAX)
    }

    /// Notes a row without checksum (written by schema 1): a miss, warned about once per
    /// database.
    fn unchecked(&self) {
        if !self.inner.warned_unchecked.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                location = %self.inner.location,
                "rows written by an older schema carry no checksum: they are misses until stored again"
            );
        }
    }

    fn corrupt(&self, key: &Digest, reason: impl Into<String>) -> StorageError {
        StorageError::corrupt(self.inner.location.clone(), key, reason)
    }

    /// The payload of the row of `key`, checked: `Ok(None)` for a row without checksum
    /// (written by schema 1), a miss; [`StorageError::Corrupt`] for a payload longer than the
    /// limit (which the query did not read) or a checksum that is not the one of `context`,
    /// `key` and the payload.
    fn verify(
        &self,
        context: &[u8],
        key: &Digest,
        what: &str,
        row: Payload,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(stored) = row.checksum else {
            self.unchecked();
            return Ok(None);
        };
        if u64::try_from(row.length).map_or(true, |n| n > self.max_entry_size) {
            return Err(self.corrupt(
                key,
                format!(
                    "the {what} is {} bytes, more than max_entry_size ({} bytes)",
                    row.length, self.max_entry_size
                ),
            ));
        }
        let bytes = row
            .bytes
            .ok_or_else(|| self.corrupt(key, format!("the {what} is missing")))?;
        let stored = <[u8; 16]>::try_from(stored.as_slice())
            .map_err(|_| self.corrupt(key, "the checksum is not 16 bytes"))?;
        if u128::from_le_bytes(stored) != integrity::checksum(context, key, &bytes) {
            return Err(self.corrupt(
                key,
                format!("checksum mismatch: the {what} is damaged, or is another entry's"),
            ));
        }
        Ok(Some(bytes))
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

/// A row's payload as read: the bytes (NULL when the row has no checksum or is longer than the
/// limit, so that they are not read), their length, the stored checksum.
struct Payload {
    bytes: Option<Vec<u8>>,
    length: i64,
    checksum: Option<Vec<u8>>,
}

impl Payload {
    /// Reads the three columns from `first` on.
    fn read(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Self> {
        Ok(Self {
            bytes: r.get(first)?,
            length: r.get(first + 1)?,
            checksum: r.get(first + 2)?,
        })
    }
}

/// A call row as read: its record's [`Payload`] and its `result` column.
struct CallRow {
    record: Payload,
    result: Vec<u8>,
}

impl CallRow {
    fn read(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Self> {
        Ok(Self {
            record: Payload::read(r, first)?,
            result: r.get(first + 3)?,
        })
    }
}

/// The fields of a record `result_of` needs; the others are skipped, not decoded.
#[derive(serde::Deserialize)]
struct RecordHead {
    key: Digest,
    result: Digest,
}

/// A record whose row checked out, with the digest of its `result` column.
struct Checked {
    record: Vec<u8>,
    result: Digest,
}

impl SqlCalls {
    fn decode(&self, key: &Digest, blob: &[u8]) -> Result<CallRecord, StorageError> {
        CallRecord::decode_for(key, blob)
            .map_err(|e| StorageError::corrupt_by(self.db.inner.location.clone(), key, "", e))
    }

    /// The row of `key`, or `None` when there is none (or it is a row without checksum).
    fn row(&self, key: &Digest) -> Result<Option<CallRow>, StorageError> {
        let limit = self.db.limit();
        self.db.with(|c, tables| {
            let sql = match tables {
                Tables::Missing => return Ok(None),
                Tables::V1 => CALL_ROW_V1,
                Tables::V2 => CALL_ROW_V2,
            };
            c.prepare_cached(sql)?
                .query_row(params![key.as_bytes(), limit], |r| CallRow::read(r, 0))
                .optional()
        })
    }

    /// Checks that `row` is the row of `key`: within the limit, its checksum over `key` and
    /// its record.
    fn check(&self, key: &Digest, row: CallRow) -> Result<Option<Checked>, StorageError> {
        let Some(record) = self.db.verify(CALL_CONTEXT, key, "record", row.record)? else {
            return Ok(None);
        };
        let result = digest_of(&row.result)
            .ok_or_else(|| self.db.corrupt(key, "the result digest is not 32 bytes"))?;
        Ok(Some(Checked { record, result }))
    }

    /// The row of `key`, checked.
    fn checked(&self, key: &Digest) -> Result<Option<Checked>, StorageError> {
        match self.row(key)? {
            None => Ok(None),
            Some(row) => self.check(key, row),
        }
    }

    /// `result` (the record's) must be the `result` column's `column`.
    fn same_result(
        &self,
        key: &Digest,
        result: &Digest,
        column: &Digest,
    ) -> Result<(), StorageError> {
        if result != column {
            return Err(self.db.corrupt(
                key,
                format!("the result column ({column}) is not the record's result ({result})"),
            ));
        }
        Ok(())
    }

    /// A checked record, decoded.
    fn full(&self, key: &Digest, checked: &Checked) -> Result<CallRecord, StorageError> {
        let record = self.decode(key, &checked.record)?;
        self.same_result(key, &record.result, &checked.result)?;
        Ok(record)
    }

    /// Stores `record`, replacing a stored one when `replace`; otherwise only when none is
    /// stored, checked inside the write transaction (so across processes too). `Ok(true)` when
    /// it was stored.
    fn write_record(&self, record: CallRecord, replace: bool) -> Result<bool, StorageError> {
        self.db.writable("save")?;
        let blob = rmp_serde::to_vec_named(&record).map_err(|source| StorageError::Encode {
            location: self.db.inner.location.clone(),
            key: record.key,
            source,
        })?;
        self.db.fits("call record", &record.key, blob.len())?;
        let checksum = integrity::checksum(CALL_CONTEXT, &record.key, &blob).to_le_bytes();
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
        self.db.with(|c, _| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if !replace
                && tx
                    .prepare_cached("SELECT 1 FROM calls WHERE key = ?1")?
                    .exists([record.key.as_bytes()])?
            {
                return Ok(false);
            }
            tx.prepare_cached(
                "INSERT OR REPLACE INTO calls
                 (key, function, version, code, type_args, arguments, metadata, result, start, record, checksum)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
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
                &checksum[..],
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
            tx.commit()?;
            Ok(true)
        })
    }
}

impl CallStorage for SqlCalls {
    /// Reads the record and its checksum, and decodes only the record's key and result.
    fn result_of(&self, key: &Digest) -> Result<Option<Digest>, StorageError> {
        let Some(checked) = self.checked(key)? else {
            return Ok(None);
        };
        let head: RecordHead = rmp_serde::from_slice(&checked.record).map_err(|e| {
            StorageError::corrupt_by(
                self.db.inner.location.clone(),
                key,
                "undecodable call record",
                e,
            )
        })?;
        if head.key != *key {
            return Err(self
                .db
                .corrupt(key, format!("found the record of {} instead", head.key)));
        }
        self.same_result(key, &head.result, &checked.result)?;
        Ok(Some(head.result))
    }

    fn load(&self, key: &Digest) -> Result<Option<CallRecord>, StorageError> {
        self.checked(key)?.map(|c| self.full(key, &c)).transpose()
    }

    fn save(&self, record: CallRecord) -> Result<(), StorageError> {
        self.write_record(record, true).map(|_| ())
    }

    fn save_new(&self, record: CallRecord) -> Result<bool, StorageError> {
        self.write_record(record, false)
    }

    fn evict(&self, key: &Digest) -> Result<bool, StorageError> {
        self.db.writable("evict")?;
        self.db.with(|c, _| {
            let n = c
                .prepare_cached("DELETE FROM calls WHERE key = ?1")?
                .execute([key.as_bytes()])?;
            Ok(n > 0)
        })
    }

    /// Every record whose row checks out; the others are skipped with a warning (rows without
    /// checksum with one warning per database).
    fn records(&self) -> Result<Vec<CallRecord>, StorageError> {
        let limit = self.db.limit();
        let rows: Vec<(Vec<u8>, CallRow)> = self.db.with(|c, tables| {
            let sql = match tables {
                Tables::Missing => return Ok(Vec::new()),
                Tables::V1 => CALL_ROWS_V1,
                Tables::V2 => CALL_ROWS_V2,
            };
            let mut stmt = c.prepare_cached(sql)?;
            let rows = stmt.query_map([limit], |r| Ok((r.get(0)?, CallRow::read(r, 1)?)))?;
            rows.collect()
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for (key, row) in rows {
            let Some(key) = digest_of(&key) else {
                tracing::warn!(location = %self.db.inner.location, "skipping a call row whose key is not 32 bytes");
                continue;
            };
            match self
                .check(&key, row)
                .and_then(|c| c.map(|c| self.full(&key, &c)).transpose())
            {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "skipping unreadable call record"),
            }
        }
        Ok(out)
    }

    fn keys(&self) -> Result<Vec<Digest>, StorageError> {
        let keys: Vec<Vec<u8>> = self.db.with(|c, tables| {
            if tables == Tables::Missing {
                return Ok(Vec::new());
            }
            let mut stmt = c.prepare_cached("SELECT key FROM calls")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })?;
        Ok(keys.iter().filter_map(|k| digest_of(k)).collect())
    }

    /// Runs the selection's conditions and order in SQL on the indexed columns; every row read is
    /// checked and matched again, and the paging is done in SQL when every condition is exact,
    /// while reading otherwise.
    fn select(&self, selection: &Selection) -> Result<Vec<CallRecord>, StorageError> {
        let plan = Plan::of(selection);
        let limit = self.db.limit();
        let needed = selection.needed().unwrap_or(usize::MAX);
        self.db.with(|c, tables| {
            if tables != Tables::V2 {
                // Older rows carry no checksum: none of them is readable.
                return Ok(Vec::new());
            }
            let mut params = plan.params.clone();
            let paging = if plan.exact {
                let n = |v: usize| Sql::Integer(i64::try_from(v).unwrap_or(i64::MAX));
                params.push(n(selection.take.unwrap_or(usize::MAX)));
                params.push(n(selection.skip));
                let (l, o) = (params.len() - 1, params.len());
                format!(" LIMIT ?{l} OFFSET ?{o}")
            } else {
                String::new()
            };
            params.push(Sql::Integer(limit));
            let sql = format!(
                "SELECT key, CASE WHEN length(record) <= ?{lim} THEN record END,
                        length(record), checksum, result
                 FROM calls WHERE {clause} {order}{paging}",
                lim = params.len(),
                clause = plan.clause,
                order = plan.order,
            );
            let mut stmt = c.prepare(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
            let mut out = Vec::new();
            // Rows matched so far, to skip the first `skip` when SQL did not.
            let mut matched = 0usize;
            while let Some(row) = rows.next()? {
                let key: Vec<u8> = row.get(0)?;
                let call = CallRow::read(row, 1)?;
                let Some(key) = digest_of(&key) else {
                    tracing::warn!(location = %self.db.inner.location, "skipping a call row whose key is not 32 bytes");
                    continue;
                };
                let record = match self
                    .check(&key, call)
                    .and_then(|c| c.map(|c| self.full(&key, &c)).transpose())
                {
                    Ok(Some(r)) => r,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping unreadable call record");
                        continue;
                    }
                };
                if !selection.matches(&record) {
                    continue;
                }
                if plan.exact {
                    out.push(record);
                    continue;
                }
                matched += 1;
                if matched > selection.skip && matched <= needed {
                    out.push(record);
                }
                if matched >= needed {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// In SQL when every condition is exact; otherwise the records [`select`](Self::select)
    /// returns.
    fn count(&self, selection: &Selection) -> Result<usize, StorageError> {
        let plan = Plan::of(selection);
        if !plan.exact {
            return Ok(self.select(selection)?.len());
        }
        let n: i64 = self.db.with(|c, tables| {
            if tables != Tables::V2 {
                return Ok(0);
            }
            let sql = format!("SELECT count(*) FROM calls WHERE {}", plan.clause);
            c.prepare(&sql)?
                .query_row(rusqlite::params_from_iter(plan.params.clone()), |r| {
                    r.get(0)
                })
        })?;
        let n = usize::try_from(n).unwrap_or(0);
        let after_skip = n.saturating_sub(selection.skip);
        Ok(selection.take.map_or(after_skip, |t| after_skip.min(t)))
    }
}

impl ValueStorage for SqlValues {
    fn load(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StorageError> {
        let limit = self.db.limit();
        let row = self.db.with(|c, tables| {
            let sql = match tables {
                Tables::Missing => return Ok(None),
                Tables::V1 => VALUE_ROW_V1,
                Tables::V2 => VALUE_ROW_V2,
            };
            c.prepare_cached(sql)?
                .query_row(params![digest.as_bytes(), limit], |r| Payload::read(r, 0))
                .optional()
        })?;
        match row {
            None => Ok(None),
            Some(row) => self.db.verify(VALUE_CONTEXT, digest, "value", row),
        }
    }

    /// Replaces a row that is not exactly this one (damaged, or without checksum); leaves an
    /// identical row alone.
    fn save(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StorageError> {
        self.db.writable("save")?;
        self.db.fits("value", digest, bytes.len())?;
        let checksum = integrity::checksum(VALUE_CONTEXT, digest, bytes).to_le_bytes();
        self.db.with(|c, _| {
            c.prepare_cached(
                r#"INSERT INTO "values" (digest, bytes, checksum) VALUES (?1, ?2, ?3)
                   ON CONFLICT (digest) DO UPDATE SET bytes = excluded.bytes, checksum = excluded.checksum
                   WHERE checksum IS NOT excluded.checksum OR bytes IS NOT excluded.bytes"#,
            )?
            .execute(params![digest.as_bytes(), bytes, &checksum[..]])?;
            Ok(())
        })
    }

    fn contains(&self, digest: &Digest) -> Result<bool, StorageError> {
        self.db.with(|c, tables| {
            if tables == Tables::Missing {
                return Ok(false);
            }
            c.prepare_cached(r#"SELECT 1 FROM "values" WHERE digest = ?1"#)?
                .query_row([digest.as_bytes()], |_| Ok(()))
                .optional()
                .map(|o| o.is_some())
        })
    }

    fn evict(&self, digest: &Digest) -> Result<bool, StorageError> {
        self.db.writable("evict")?;
        self.db.with(|c, _| {
            let n = c
                .prepare_cached(r#"DELETE FROM "values" WHERE digest = ?1"#)?
                .execute([digest.as_bytes()])?;
            Ok(n > 0)
        })
    }

    fn digests(&self) -> Result<Vec<Digest>, StorageError> {
        let rows: Vec<Vec<u8>> = self.db.with(|c, tables| {
            if tables == Tables::Missing {
                return Ok(Vec::new());
            }
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

    /// A connection of its own to the database file, as another program would open it.
    fn raw(path: &Path) -> Connection {
        Connection::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn sql(conn: &Connection, sql: &str, params: impl rusqlite::Params) {
        conn.execute(sql, params)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Swaps `columns` between the rows of `a` and `b` of `table` (keyed by `key`).
    fn swap(path: &Path, table: &str, key: &str, columns: &[&str], a: &Digest, b: &Digest) {
        let conn = raw(path);
        let cols = columns.join(", ");
        conn.execute_batch(&format!(
            "CREATE TEMP TABLE s AS SELECT {key}, {cols} FROM \"{table}\" WHERE 0"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        sql(
            &conn,
            &format!("INSERT INTO s SELECT {key}, {cols} FROM \"{table}\" WHERE {key} IN (?1, ?2)"),
            params![a.as_bytes(), b.as_bytes()],
        );
        for c in columns {
            sql(
                &conn,
                &format!(
                    "UPDATE \"{table}\" SET {c} = (SELECT s.{c} FROM s WHERE s.{key} != \"{table}\".{key})
                     WHERE {key} IN (?1, ?2)"
                ),
                params![a.as_bytes(), b.as_bytes()],
            );
        }
    }

    /// Every column of `table` but `key`.
    fn columns_but(path: &Path, table: &str, key: &str) -> Vec<String> {
        let conn = raw(path);
        let mut stmt = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(Iterator::collect)
            .unwrap_or_else(|e| panic!("{e}"));
        names.into_iter().filter(|n| n != key).collect()
    }

    fn is_corrupt<T: std::fmt::Debug>(
        r: &Result<T, StorageError>,
        key: &Digest,
        location: &Path,
    ) -> bool {
        matches!(r, Err(StorageError::Corrupt { digest, location: l, .. })
            if digest == key && *l == location.display().to_string())
    }

    #[test]
    fn swapped_call_rows_do_not_answer_for_each_other() -> Result<(), StorageError> {
        let (_dir, path) = temp_db();
        let db = SqlDatabase::open(&SqlTarget::File(path.clone()))?;
        let calls = db.calls();
        let all = columns_but(&path, "calls", "key");
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        for columns in [&["record", "result"][..], &all] {
            calls.save(record(1, 1, 1))?;
            calls.save(record(2, 2, 2))?;
            swap(&path, "calls", "key", columns, &d(1), &d(2));
            for key in [d(1), d(2)] {
                let found = calls.result_of(&key);
                assert!(
                    is_corrupt(&found, &key, &path),
                    "{columns:?}: result_of({key}) = {found:?}"
                );
                let found = calls.load(&key);
                assert!(
                    is_corrupt(&found, &key, &path),
                    "{columns:?}: load({key}) = {found:?}"
                );
            }
            assert!(calls.records()?.is_empty(), "swapped rows are not listed");
        }
        Ok(())
    }

    #[test]
    fn a_flipped_value_byte_is_corrupt() -> Result<(), StorageError> {
        let (_dir, path) = temp_db();
        let values = SqlDatabase::open(&SqlTarget::File(path.clone()))?.values();
        values.save(&d(7), b"some value bytes")?;
        sql(
            &raw(&path),
            r#"UPDATE "values" SET bytes = ?2 WHERE digest = ?1"#,
            params![d(7).as_bytes(), b"some valuE bytes"],
        );
        let found = values.load(&d(7));
        assert!(is_corrupt(&found, &d(7), &path), "{found:?}");
        let found = values.load_with(&d(7), &mut |b| panic!("served {b:?}"));
        assert!(is_corrupt(&found, &d(7), &path), "{found:?}");
        Ok(())
    }

    #[test]
    fn a_value_row_copied_to_another_digest_is_corrupt() -> Result<(), StorageError> {
        let (_dir, path) = temp_db();
        let values = SqlDatabase::open(&SqlTarget::File(path.clone()))?.values();
        values.save(&d(7), b"the value of seven")?;
        let conn = raw(&path);
        conn.execute_batch(r#"CREATE TEMP TABLE t AS SELECT * FROM "values""#)
            .unwrap_or_else(|e| panic!("{e}"));
        sql(&conn, "UPDATE t SET digest = ?1", [d(8).as_bytes()]);
        sql(&conn, r#"INSERT INTO "values" SELECT * FROM t"#, []);
        let found = values.load(&d(8));
        assert!(is_corrupt(&found, &d(8), &path), "{found:?}");
        assert_eq!(
            values.load(&d(7))?.as_deref(),
            Some(&b"the value of seven"[..])
        );
        Ok(())
    }

    #[test]
    fn a_corrupt_value_is_replaced_by_the_next_save() -> Result<(), StorageError> {
        let (_dir, path) = temp_db();
        let values = SqlDatabase::open(&SqlTarget::File(path.clone()))?.values();
        values.save(&d(7), b"good bytes")?;
        sql(
            &raw(&path),
            r#"UPDATE "values" SET bytes = x'00' WHERE digest = ?1"#,
            [d(7).as_bytes()],
        );
        let damaged = values.load(&d(7));
        assert!(!matches!(
            damaged.as_ref().map(Option::as_deref),
            Ok(Some(b"good bytes"))
        ));
        values.save(&d(7), b"good bytes")?;
        assert_eq!(values.load(&d(7))?.as_deref(), Some(&b"good bytes"[..]));
        Ok(())
    }

    #[test]
    fn a_result_column_that_is_not_the_records_result_is_corrupt() -> Result<(), StorageError> {
        let (_dir, path) = temp_db();
        let calls = SqlDatabase::open(&SqlTarget::File(path.clone()))?.calls();
        calls.save(record(1, 1, 1))?;
        sql(
            &raw(&path),
            "UPDATE calls SET result = ?2 WHERE key = ?1",
            [d(1).as_bytes(), d(200).as_bytes()],
        );
        let found = calls.result_of(&d(1));
        assert!(is_corrupt(&found, &d(1), &path), "{found:?}");
        let found = calls.load(&d(1));
        assert!(is_corrupt(&found, &d(1), &path), "{found:?}");
        Ok(())
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

    /// A schema-1 database at `path` holding the value `d(7)` and the record `record(1, 1, 1)`.
    fn schema_1_database(path: &Path) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        }
        let conn = raw(path);
        conn.execute_batch(SCHEMA_V1)
            .unwrap_or_else(|e| panic!("{e}"));
        sql(
            &conn,
            r#"INSERT INTO "values" (digest, bytes) VALUES (?1, ?2)"#,
            params![d(7).as_bytes(), b"old bytes"],
        );
        let r = record(1, 1, 1);
        let blob = rmp_serde::to_vec_named(&r).unwrap_or_else(|e| panic!("{e}"));
        sql(
            &conn,
            "INSERT INTO calls (key, function, type_args, arguments, metadata, result, start, record)
             VALUES (?1, 'm::bar', '[]', '{}', '{}', ?2, 1.0, ?3)",
            params![d(1).as_bytes(), d(101).as_bytes(), blob],
        );
    }

    fn user_version(path: &Path) -> i64 {
        raw(path)
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn schema_1_is_migrated_and_its_rows_are_misses_until_stored_again() -> Result<(), StorageError>
    {
        let (_dir, path) = temp_db();
        schema_1_database(&path);
        let target = SqlTarget::File(path.clone());

        // Read-only, the old schema is read as it is: misses, no errors, nothing written.
        let ro = SqlDatabase::open_read_only(&target)?;
        assert_eq!(ro.values().load(&d(7))?, None);
        assert!(ro.values().contains(&d(7))?);
        assert_eq!(ro.calls().result_of(&d(1))?, None);
        assert_eq!(ro.calls().load(&d(1))?, None);
        assert!(ro.calls().records()?.is_empty());
        assert!(ro.inner.warned_unchecked.load(Ordering::Relaxed));
        assert!(matches!(
            ro.values().save(&d(7), b"x"),
            Err(StorageError::Rejected {
                operation: "save",
                ..
            })
        ));
        assert!(matches!(
            ro.calls().evict(&d(1)),
            Err(StorageError::Rejected {
                operation: "evict",
                ..
            })
        ));
        assert_eq!(user_version(&path), 1);

        // Opened for writing, it is migrated; the old rows stay, as misses.
        let db = SqlDatabase::open(&target)?;
        assert_eq!(user_version(&path), SCHEMA_VERSION);
        for table in ["calls", "values"] {
            assert!(
                columns_but(&path, table, "").contains(&"checksum".to_owned()),
                "{table}"
            );
        }
        assert!(!db.inner.warned_unchecked.load(Ordering::Relaxed));
        assert_eq!(db.values().load(&d(7))?, None);
        assert!(!db.values().load_with(&d(7), &mut |_| panic!("served"))?);
        assert_eq!(db.calls().result_of(&d(1))?, None);
        assert_eq!(db.calls().load(&d(1))?, None);
        assert!(db.calls().records()?.is_empty());
        assert!(db.inner.warned_unchecked.load(Ordering::Relaxed));
        assert_eq!(db.values().digests()?, vec![d(7)]);

        // The next store rewrites them.
        db.values().save(&d(7), b"old bytes")?;
        db.calls().save(record(1, 1, 1))?;
        assert_eq!(db.values().load(&d(7))?.as_deref(), Some(&b"old bytes"[..]));
        assert_eq!(db.calls().result_of(&d(1))?, Some(d(101)));
        assert_eq!(db.calls().records()?, vec![record(1, 1, 1)]);

        // The read-only handle opened before the migration sees the new schema.
        assert_eq!(ro.values().load(&d(7))?.as_deref(), Some(&b"old bytes"[..]));
        assert_eq!(ro.calls().result_of(&d(1))?, Some(d(101)));

        // Opening again migrates nothing.
        drop(db);
        SqlDatabase::open(&target)?;
        assert_eq!(user_version(&path), SCHEMA_VERSION);
        Ok(())
    }

    #[test]
    fn a_read_only_open_creates_nothing_and_refuses_a_newer_schema() -> Result<(), StorageError> {
        let (_dir, path) = temp_db();
        let target = SqlTarget::File(path.clone());
        assert!(matches!(
            SqlDatabase::open_read_only(&target),
            Err(StorageError::Sqlite { .. })
        ));
        assert!(!path.exists());
        // An empty file is a database without tables: empty.
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&path, b"").unwrap_or_else(|e| panic!("{e}"));
        let ro = SqlDatabase::open_read_only(&target)?;
        assert_eq!(ro.values().load(&d(7))?, None);
        assert!(!ro.values().contains(&d(7))?);
        assert!(ro.values().digests()?.is_empty());
        assert_eq!(ro.calls().result_of(&d(1))?, None);
        assert!(ro.calls().records()?.is_empty());
        // Once another handle has written, it reads.
        let db = SqlDatabase::open(&target)?;
        db.values().save(&d(7), b"v")?;
        assert_eq!(ro.values().load(&d(7))?.as_deref(), Some(&b"v"[..]));
        sql(&raw(&path), "PRAGMA user_version = 99", []);
        let err = SqlDatabase::open_read_only(&target).err();
        assert!(
            matches!(err, Some(StorageError::NewerSchema { found: 99, .. })),
            "{err:?}"
        );
        Ok(())
    }

    /// Not run as root, who may write any file: the test then says so and checks nothing.
    #[cfg(unix)]
    #[test]
    fn a_file_this_process_may_not_write_is_opened_read_only() -> Result<(), StorageError> {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, path) = temp_db();
        schema_1_database(&path);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444))
            .unwrap_or_else(|e| panic!("{e}"));
        if std::fs::OpenOptions::new().write(true).open(&path).is_ok() {
            eprintln!("skipped: this process may write a 0444 file");
            return Ok(());
        }
        let db = SqlDatabase::open(&SqlTarget::File(path.clone()))?;
        assert_eq!(db.values().load(&d(7))?, None);
        assert_eq!(db.calls().result_of(&d(1))?, None);
        assert!(matches!(
            db.values().save(&d(7), b"x"),
            Err(StorageError::Rejected { .. })
        ));
        assert_eq!(user_version(&path), 1);
        Ok(())
    }

    #[test]
    fn entries_over_max_entry_size_are_refused_unread() -> Result<(), StorageError> {
        let (_dir, path) = temp_db();
        let db = SqlDatabase::open(&SqlTarget::File(path.clone()))?;
        db.values().save(&d(7), b"sixteen bytes!!!")?;
        db.calls().save(record(1, 1, 1))?;
        let small = db.clone().max_entry_size(15);
        fn over<T>(r: &Result<T, StorageError>, key: &Digest) -> bool {
            matches!(r, Err(StorageError::Corrupt { digest, reason, .. })
                if digest == key && reason.contains("more than max_entry_size (15 bytes)"))
        }
        let found = small.values().load(&d(7));
        assert!(over(&found, &d(7)), "{found:?}");
        let found = small.calls().result_of(&d(1));
        assert!(over(&found, &d(1)), "{found:?}");
        let found = small.calls().load(&d(1));
        assert!(over(&found, &d(1)), "{found:?}");
        assert!(small.calls().records()?.is_empty());
        // The length is checked before the bytes are read: a bad checksum is never looked at.
        sql(&raw(&path), r#"UPDATE "values" SET checksum = x'00'"#, []);
        let found = small.values().load(&d(7));
        assert!(over(&found, &d(7)), "{found:?}");
        // Longer entries are not saved either.
        let refused = small.values().save(&d(8), b"sixteen bytes!!!");
        assert!(
            matches!(&refused, Err(StorageError::Settings { reason, .. }) if reason.contains(&d(8).to_string())),
            "{refused:?}"
        );
        assert!(small.calls().save(record(2, 2, 2)).is_err());
        assert!(!db.values().contains(&d(8))?);
        // The handle it came from keeps the default.
        assert!(db.max_entry_size == DEFAULT_MAX_ENTRY_SIZE);
        let found = db.values().load(&d(7));
        assert!(
            matches!(&found, Err(StorageError::Corrupt { reason, .. }) if reason.contains("checksum is not 16 bytes")),
            "{found:?}"
        );
        small.values().save(&d(9), b"fifteen bytes!!")?;
        assert_eq!(
            small.values().load(&d(9))?.as_deref(),
            Some(&b"fifteen bytes!!"[..])
        );
        Ok(())
    }

    #[test]
    fn checksums_are_over_the_documented_bytes() -> Result<(), StorageError> {
        let (_dir, path) = temp_db();
        let db = SqlDatabase::open(&SqlTarget::File(path.clone()))?;
        db.values().save(&d(7), b"value bytes")?;
        db.calls().save(record(1, 1, 1))?;
        let conn = raw(&path);
        let stored = |sql: &str, key: &Digest| -> (Vec<u8>, Vec<u8>) {
            conn.query_row(sql, [key.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        // docs/format.md, "SQL backend": xxh3-128 of context ++ address ++ payload, little-endian.
        let expected = |context: &[u8], key: &Digest, payload: &[u8]| {
            let input = [context, key.as_bytes(), payload].concat();
            xxhash_rust::xxh3::xxh3_128(&input).to_le_bytes().to_vec()
        };
        let (bytes, sum) = stored(
            r#"SELECT bytes, checksum FROM "values" WHERE digest = ?1"#,
            &d(7),
        );
        assert_eq!(sum, expected(b"fleche sql value v2", &d(7), &bytes));
        let (blob, sum) = stored("SELECT record, checksum FROM calls WHERE key = ?1", &d(1));
        assert_eq!(sum, expected(b"fleche sql call v2", &d(1), &blob));
        Ok(())
    }

    #[test]
    fn twelve_connections_open_a_new_database_at_once() {
        for round in 0..20 {
            let (_dir, path) = temp_db();
            let barrier = std::sync::Barrier::new(12);
            let failures: Vec<String> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..12)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            SqlDatabase::open(&SqlTarget::File(path.clone()))
                                .and_then(|db| db.values().save(&d(1), b"x"))
                                .err()
                                .map(|e| e.to_string())
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .filter_map(|h| h.join().unwrap_or_else(|_| Some("panicked".into())))
                    .collect()
            });
            assert!(failures.is_empty(), "round {round}: {failures:?}");
        }
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
