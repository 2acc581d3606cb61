//! The append-only log: append with expected versions (all or nothing), load a stream, read
//! everything after a position.

use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use kubegate_events::{Actor, DomainEvent, Envelope, RawEnvelope};
use serde_json::value::RawValue;
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::migrations;

/// The columns `row_to_envelope` reads (then any more columns, given first), followed by the
/// rest of a statement (literals).
macro_rules! select_events {
    ($rest:literal) => {
        select_events!("", $rest)
    };
    ($more:literal, $rest:literal) => {
        concat!(
            "SELECT position, id, stream, sequence, type, version, occurred_at, actor::text,
        correlation_id, payload::text",
            $more,
            " FROM kubegate_events ",
            $rest
        )
    };
}

/// Serializes appends, so positions are handed out and committed in the same order.
const APPEND_LOCK: i64 = 0x6b67_6576_656e_7473; // "kgevents"

/// What the caller expects a stream's version to be before its events are appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be at exactly this version.
    Exactly(u64),
    /// No check (for streams of independent facts, e.g. sign-in records).
    Any,
}

impl Expected {
    /// `NoStream` for 0, otherwise `Exactly(v)`.
    pub fn version(v: u64) -> Expected {
        if v == 0 { Expected::NoStream } else { Expected::Exactly(v) }
    }
}

/// Events for one stream in an append.
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub stream: String,
    pub expected: Expected,
    pub events: Vec<(&'static str, RawEnvelope)>,
}

impl StreamAppend {
    /// Builds an append from typed envelopes (their `stream` must all equal `stream`).
    pub fn typed<E: DomainEvent>(
        stream: impl Into<String>,
        expected: Expected,
        events: Vec<Envelope<E>>,
    ) -> Result<StreamAppend, StoreError> {
        let stream = stream.into();
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let mut raw = e.to_raw().map_err(|e| StoreError::Encode(e.to_string()))?;
            raw.stream = stream.clone();
            out.push((e.event.subject(), raw));
        }
        Ok(StreamAppend { stream, expected, events: out })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("stream {stream} is at version {actual}, expected {expected:?}")]
    Conflict { stream: String, expected: Expected, actual: u64 },
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    #[error("invalid event store URL: {0}")]
    Config(String),
    #[error("cannot encode event: {0}")]
    Encode(String),
    #[error("stored event at position {position} is corrupt: {message}")]
    Corrupt { position: u64, message: String },
    #[error("migration failed: {0}")]
    Migration(String),
}

impl StoreError {
    fn from_pg(e: tokio_postgres::Error) -> StoreError {
        StoreError::Unavailable(pg_message(&e))
    }
}

pub(crate) fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(pg) => StoreError::Unavailable(pg_message(&pg)),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// Set on every connection to the log. Each query on it goes by an index (position, stream or
/// id), but a plan cached while the table was nearly empty (a new database) is a sequential scan
/// and stays one as the log grows, until autovacuum next analyzes the table: every append, read
/// and relay drain then reads the whole log (seen: 700 scans of the whole table per 3,000
/// appends). Sequential scans are never the right plan here.
const SESSION_OPTIONS: &str = "-c enable_seqscan=off";

/// A handle on one service's event log. Cloning shares the connection pool.
#[derive(Clone)]
pub struct EventStore {
    pool: Pool,
    config: tokio_postgres::Config,
}

impl std::fmt::Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish()
    }
}

impl EventStore {
    /// Connects (a `postgres://` URL or a libpq key=value string) and applies migrations,
    /// retrying until `wait` passes if PostgreSQL is not reachable yet.
    pub async fn connect(url: &str, pool_size: usize, wait: Duration) -> Result<EventStore, StoreError> {
        let mut config =
            tokio_postgres::Config::from_str(url).map_err(|e| StoreError::Config(e.to_string()))?;
        let options = match config.get_options() {
            Some(given) if !given.trim().is_empty() => format!("{given} {SESSION_OPTIONS}"),
            _ => SESSION_OPTIONS.to_string(),
        };
        config.options(&options);
        let mgr = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(mgr)
            .max_size(pool_size.max(2))
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(3)))
            .recycle_timeout(Some(Duration::from_secs(3)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let store = EventStore { pool, config };
        let deadline = Instant::now() + wait;
        loop {
            match store.migrate().await {
                Ok(()) => return Ok(store),
                Err(StoreError::Unavailable(m)) if m.starts_with("3D000") => {
                    // The service's database does not exist yet: create it (first start).
                    store.create_database().await?;
                }
                Err(StoreError::Unavailable(m)) if Instant::now() < deadline => {
                    tracing::warn!(error = %m, "event store not reachable yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn create_database(&self) -> Result<(), StoreError> {
        let name = self
            .config
            .get_dbname()
            .ok_or_else(|| StoreError::Config("no database name".into()))?
            .to_string();
        let mut admin = self.config.clone();
        admin.dbname("postgres");
        let (client, conn) = admin.connect(NoTls).await.map_err(StoreError::from_pg)?;
        let driver = tokio::spawn(conn);
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match client.batch_execute(&format!("CREATE DATABASE {quoted}")).await {
            Ok(()) => tracing::info!(database = %name, "created database"),
            // Another replica created it first.
            Err(e) if e.as_db_error().map(|d| d.code().code() == "42P04").unwrap_or(false) => {}
            Err(e) => return Err(StoreError::from_pg(e)),
        }
        drop(client);
        let _ = driver.await;
        Ok(())
    }

    pub(crate) fn pg_config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        migrations::apply(&mut client).await
    }

    /// Whether a connection can be had now.
    pub async fn ping(&self) -> bool {
        match self.pool.get().await {
            Ok(c) => c.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        }
    }

    /// Appends events to one or more streams atomically, assigning sequences and positions.
    /// Appending the same event ids twice stores them once: a retry after an ambiguous failure
    /// (the connection dropped during COMMIT) returns what the first attempt stored.
    pub async fn append(&self, appends: &[StreamAppend]) -> Result<Vec<RawEnvelope>, StoreError> {
        let Some(first_id) = appends.iter().flat_map(|a| a.events.first()).map(|(_, e)| e.id).next() else {
            return Ok(Vec::new());
        };
        let count: usize = appends.iter().map(|a| a.events.len()).sum();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut delay = Duration::from_millis(100);
        loop {
            match self.try_append(appends).await {
                Ok(v) => {
                    metrics::counter!("kubegate_events_appended_total").increment(v.len() as u64);
                    return Ok(v);
                }
                Err(AppendFailure::AlreadyStored) => return self.load_ids(first_id, count).await,
                Err(AppendFailure::Store(StoreError::Unavailable(m))) if Instant::now() < deadline => {
                    tracing::warn!(error = %m, "append failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                    // If the failed attempt did commit, its rows are there: report them.
                    if let Ok(stored) = self.load_ids(first_id, count).await
                        && !stored.is_empty()
                    {
                        return Ok(stored);
                    }
                }
                Err(AppendFailure::Store(e)) => return Err(e),
            }
        }
    }

    /// One statement, one round trip: `kubegate_append` (schemas/sql/eventstore/0003) does the
    /// whole append server-side, as its own transaction.
    async fn try_append(&self, appends: &[StreamAppend]) -> Result<Vec<RawEnvelope>, AppendFailure> {
        let client = self.pool.get().await.map_err(|e| AppendFailure::Store(pool_error(e)))?;
        let count: usize = appends.iter().map(|a| a.events.len()).sum();
        let mut a_streams = Vec::with_capacity(appends.len());
        let mut a_expected = Vec::with_capacity(appends.len());
        let mut a_counts = Vec::with_capacity(appends.len());
        let mut ids = Vec::with_capacity(count);
        let mut types = Vec::with_capacity(count);
        let mut versions = Vec::with_capacity(count);
        let mut subjects = Vec::with_capacity(count);
        let mut times: Vec<DateTime<Utc>> = Vec::with_capacity(count);
        let mut actors = Vec::with_capacity(count);
        let mut correlations = Vec::with_capacity(count);
        let mut payloads = Vec::with_capacity(count);
        for append in appends {
            a_streams.push(append.stream.as_str());
            a_expected.push(match append.expected {
                Expected::Any => -1_i64,
                Expected::NoStream => 0,
                Expected::Exactly(v) => v as i64,
            });
            a_counts.push(i32::try_from(append.events.len()).unwrap_or(i32::MAX));
            for (subject, e) in &append.events {
                ids.push(e.id);
                types.push(e.event_type.as_str());
                versions.push(i32::from(e.version));
                subjects.push(*subject);
                times.push(e.occurred_at);
                actors.push(
                    serde_json::to_string(&e.actor)
                        .map_err(|e| AppendFailure::Store(StoreError::Encode(e.to_string())))?,
                );
                correlations.push(e.correlation_id.as_str());
                payloads.push(e.payload.get());
            }
        }
        let statement = client
            .prepare_cached(
                "SELECT first_position, sequences, conflict_stream, conflict_expected, conflict_actual,
                        already_stored
                 FROM kubegate_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .await
            .map_err(AppendFailure::pg)?;
        let row = client
            .query_one(
                &statement,
                &[
                    &APPEND_LOCK,
                    &a_streams,
                    &a_expected,
                    &a_counts,
                    &ids,
                    &types,
                    &versions,
                    &subjects,
                    &times,
                    &actors,
                    &correlations,
                    &payloads,
                ],
            )
            .await;
        let row = match row {
            Ok(row) => row,
            Err(e)
                if e.as_db_error()
                    .map(|d| d.constraint() == Some("kubegate_events_id_key"))
                    .unwrap_or(false) =>
            {
                return Err(AppendFailure::AlreadyStored);
            }
            Err(e) => return Err(AppendFailure::pg(e)),
        };
        let corrupt = |message: String| AppendFailure::Store(StoreError::Corrupt { position: 0, message });
        let column = |e: tokio_postgres::Error| corrupt(format!("unexpected answer to an append: {e}"));
        if row.try_get::<_, bool>(5).map_err(column)? {
            return Err(AppendFailure::AlreadyStored);
        }
        if let Some(stream) = row.try_get::<_, Option<String>>(2).map_err(column)? {
            let expected =
                Expected::version(row.try_get::<_, Option<i64>>(3).map_err(column)?.unwrap_or(0) as u64);
            let actual = row.try_get::<_, Option<i64>>(4).map_err(column)?.unwrap_or(0) as u64;
            return Err(AppendFailure::Store(StoreError::Conflict { stream, expected, actual }));
        }
        let first: i64 = row.try_get::<_, Option<i64>>(0).map_err(column)?.unwrap_or(0);
        let sequences: Vec<i64> = row.try_get(1).map_err(column)?;
        if first <= 0 || sequences.len() != count {
            return Err(corrupt(format!(
                "the append returned {} sequences for {count} events",
                sequences.len()
            )));
        }
        let mut stored = Vec::with_capacity(count);
        let events = appends.iter().flat_map(|a| a.events.iter().map(move |(_, e)| (a, e)));
        for (i, ((append, event), sequence)) in events.zip(sequences).enumerate() {
            let mut e = event.clone();
            e.stream = append.stream.clone();
            e.sequence = sequence as u64;
            e.position = (first + i as i64) as u64;
            stored.push(e);
        }
        Ok(stored)
    }

    async fn load_ids(&self, first_id: Uuid, count: usize) -> Result<Vec<RawEnvelope>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let found = rows(&client, "SELECT position FROM kubegate_events WHERE id = $1", &[&first_id]).await?;
        let Some(row) = found.first() else { return Ok(Vec::new()) };
        let first: i64 = row.get(0);
        let sql = select_events!("WHERE position >= $1 ORDER BY position LIMIT $2");
        rows(&client, sql, &[&first, &(count as i64)]).await?.iter().map(row_to_envelope).collect()
    }

    /// Every event of one stream, in order.
    pub async fn load_stream(&self, stream: &str) -> Result<Vec<RawEnvelope>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let sql = select_events!("WHERE stream = $1 ORDER BY sequence");
        rows(&client, sql, &[&stream]).await?.iter().map(row_to_envelope).collect()
    }

    /// Up to `limit` events after `position`, in order.
    pub async fn read_after(&self, position: u64, limit: usize) -> Result<Vec<RawEnvelope>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let sql = select_events!("WHERE position > $1 ORDER BY position LIMIT $2");
        rows(&client, sql, &[&(position as i64), &(limit as i64)])
            .await?
            .iter()
            .map(row_to_envelope)
            .collect()
    }

    /// The id of the event at `position`, if the log reaches that far.
    pub async fn event_id_at(&self, position: u64) -> Result<Option<Uuid>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let sql = "SELECT id FROM kubegate_events WHERE position = $1";
        Ok(rows(&client, sql, &[&(position as i64)]).await?.first().map(|r| r.get::<_, Uuid>(0)))
    }

    /// The last position in the log (0 when empty).
    pub async fn last_position(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let sql = "SELECT COALESCE(MAX(position), 0) FROM kubegate_events";
        Ok(rows(&client, sql, &[]).await?.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0) as u64)
    }
}

/// The outbox relay's own connection to the log, on which it takes its lock, listens for new
/// events and reads the log after the last position the bus acknowledged. The log is its own
/// outbox: positions are handed out and committed in the same order, so what follows a
/// position is exactly what has not been published yet.
pub(crate) struct LogTail {
    client: tokio_postgres::Client,
    next: tokio_postgres::Statement,
}

impl LogTail {
    pub(crate) async fn open(client: tokio_postgres::Client) -> Result<LogTail, StoreError> {
        let next = client
            .prepare(select_events!(", subject", "WHERE position > $1 ORDER BY position LIMIT $2"))
            .await
            .map_err(StoreError::from_pg)?;
        Ok(LogTail { client, next })
    }

    pub(crate) fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }

    /// Up to `limit` events after `position`, in log order, each with its subject.
    pub(crate) async fn after(
        &self,
        position: u64,
        limit: usize,
    ) -> Result<Vec<(String, RawEnvelope)>, StoreError> {
        let found = self
            .client
            .query(&self.next, &[&(position as i64), &(limit as i64)])
            .await
            .map_err(StoreError::from_pg)?;
        found.iter().map(|r| Ok((r.get::<_, String>(10), row_to_envelope(r)?))).collect()
    }
}

/// Runs `sql` as a statement prepared once per connection (parsed and planned once, not per
/// call) and returns its rows.
async fn rows(
    client: &deadpool_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let statement = client.prepare_cached(sql).await.map_err(StoreError::from_pg)?;
    client.query(&statement, params).await.map_err(StoreError::from_pg)
}

enum AppendFailure {
    AlreadyStored,
    Store(StoreError),
}

impl AppendFailure {
    fn pg(e: tokio_postgres::Error) -> AppendFailure {
        AppendFailure::Store(StoreError::from_pg(e))
    }
}

fn row_to_envelope(row: &tokio_postgres::Row) -> Result<RawEnvelope, StoreError> {
    let position: i64 = row.get(0);
    let corrupt = |message: String| StoreError::Corrupt { position: position as u64, message };
    let actor: String = row.get(7);
    let actor: Actor = serde_json::from_str(&actor).map_err(|e| corrupt(e.to_string()))?;
    let payload: String = row.get(9);
    let payload = RawValue::from_string(payload).map_err(|e| corrupt(e.to_string()))?;
    let version: i32 = row.get(5);
    Ok(RawEnvelope {
        position: position as u64,
        id: row.get(1),
        stream: row.get(2),
        sequence: row.get::<_, i64>(3) as u64,
        event_type: row.get(4),
        version: u16::try_from(version).map_err(|e| corrupt(e.to_string()))?,
        occurred_at: row.get(6),
        actor,
        correlation_id: row.get(8),
        payload,
    })
}
