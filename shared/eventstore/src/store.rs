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
        let config = tokio_postgres::Config::from_str(url).map_err(|e| StoreError::Config(e.to_string()))?;
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

    async fn try_append(&self, appends: &[StreamAppend]) -> Result<Vec<RawEnvelope>, AppendFailure> {
        let mut client = self.pool.get().await.map_err(|e| AppendFailure::Store(pool_error(e)))?;
        let tx = client.transaction().await.map_err(AppendFailure::pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK]).await.map_err(AppendFailure::pg)?;
        let mut position: i64 = tx
            .query_one("SELECT COALESCE(MAX(position), 0) FROM kubegate_events", &[])
            .await
            .map_err(AppendFailure::pg)?
            .get(0);
        let count: usize = appends.iter().map(|a| a.events.len()).sum();
        let mut positions = Vec::with_capacity(count);
        let mut ids = Vec::with_capacity(count);
        let mut streams = Vec::with_capacity(count);
        let mut sequences = Vec::with_capacity(count);
        let mut types = Vec::with_capacity(count);
        let mut versions = Vec::with_capacity(count);
        let mut subjects = Vec::with_capacity(count);
        let mut times: Vec<DateTime<Utc>> = Vec::with_capacity(count);
        let mut actors = Vec::with_capacity(count);
        let mut correlations = Vec::with_capacity(count);
        let mut payloads = Vec::with_capacity(count);
        let mut stored = Vec::with_capacity(count);
        // A batch may append to one stream several times (commands decided one after another).
        let mut in_batch: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
        for append in appends {
            let current = match in_batch.get(append.stream.as_str()) {
                Some(v) => *v,
                None => {
                    let v: i64 = tx
                        .query_one(
                            "SELECT COALESCE(MAX(sequence), 0) FROM kubegate_events WHERE stream = $1",
                            &[&append.stream],
                        )
                        .await
                        .map_err(AppendFailure::pg)?
                        .get(0);
                    v as u64
                }
            };
            let ok = match append.expected {
                Expected::Any => true,
                Expected::NoStream => current == 0,
                Expected::Exactly(v) => current == v,
            };
            if !ok {
                // A retry of an append that did commit looks like a conflict: check the ids.
                if let Some((_, e)) = append.events.first() {
                    let exists = tx
                        .query_opt("SELECT 1 FROM kubegate_events WHERE id = $1", &[&e.id])
                        .await
                        .map_err(AppendFailure::pg)?;
                    if exists.is_some() {
                        return Err(AppendFailure::AlreadyStored);
                    }
                }
                return Err(AppendFailure::Store(StoreError::Conflict {
                    stream: append.stream.clone(),
                    expected: append.expected,
                    actual: current,
                }));
            }
            let mut sequence = current;
            for (subject, event) in &append.events {
                position += 1;
                sequence += 1;
                let mut e = event.clone();
                e.stream = append.stream.clone();
                e.sequence = sequence;
                e.position = position as u64;
                positions.push(position);
                ids.push(e.id);
                streams.push(e.stream.clone());
                sequences.push(sequence as i64);
                types.push(e.event_type.clone());
                versions.push(i32::from(e.version));
                subjects.push(subject.to_string());
                times.push(e.occurred_at);
                actors.push(
                    serde_json::to_string(&e.actor)
                        .map_err(|e| AppendFailure::Store(StoreError::Encode(e.to_string())))?,
                );
                correlations.push(e.correlation_id.clone());
                payloads.push(e.payload.get().to_string());
                stored.push(e);
            }
            in_batch.insert(append.stream.as_str(), sequence);
        }
        let inserted = tx
            .execute(
                "INSERT INTO kubegate_events
                   (position, id, stream, sequence, type, version, subject, occurred_at, actor, correlation_id, payload)
                 SELECT p, i, s, q, t, v, sj, o, a::jsonb, c, pl::jsonb
                 FROM UNNEST($1::int8[], $2::uuid[], $3::text[], $4::int8[], $5::text[], $6::int4[], $7::text[],
                             $8::timestamptz[], $9::text[], $10::text[], $11::text[])
                      AS x(p, i, s, q, t, v, sj, o, a, c, pl)",
                &[
                    &positions, &ids, &streams, &sequences, &types, &versions, &subjects, &times, &actors,
                    &correlations, &payloads,
                ],
            )
            .await;
        if let Err(e) = inserted {
            if e.as_db_error().map(|d| d.constraint() == Some("kubegate_events_id_key")).unwrap_or(false) {
                return Err(AppendFailure::AlreadyStored);
            }
            return Err(AppendFailure::pg(e));
        }
        tx.execute("INSERT INTO kubegate_outbox (position) SELECT UNNEST($1::int8[])", &[&positions])
            .await
            .map_err(AppendFailure::pg)?;
        tx.execute("SELECT pg_notify('kubegate_outbox', '')", &[]).await.map_err(AppendFailure::pg)?;
        tx.commit().await.map_err(AppendFailure::pg)?;
        Ok(stored)
    }

    async fn load_ids(&self, first_id: Uuid, count: usize) -> Result<Vec<RawEnvelope>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_opt("SELECT position FROM kubegate_events WHERE id = $1", &[&first_id])
            .await
            .map_err(StoreError::from_pg)?;
        let Some(row) = row else { return Ok(Vec::new()) };
        let first: i64 = row.get(0);
        let rows = client
            .query(
                &format!("{SELECT_EVENTS} WHERE position >= $1 ORDER BY position LIMIT $2"),
                &[&first, &(count as i64)],
            )
            .await
            .map_err(StoreError::from_pg)?;
        rows.iter().map(row_to_envelope).collect()
    }

    /// Every event of one stream, in order.
    pub async fn load_stream(&self, stream: &str) -> Result<Vec<RawEnvelope>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(&format!("{SELECT_EVENTS} WHERE stream = $1 ORDER BY sequence"), &[&stream])
            .await
            .map_err(StoreError::from_pg)?;
        rows.iter().map(row_to_envelope).collect()
    }

    /// Up to `limit` events after `position`, in order.
    pub async fn read_after(&self, position: u64, limit: usize) -> Result<Vec<RawEnvelope>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                &format!("{SELECT_EVENTS} WHERE position > $1 ORDER BY position LIMIT $2"),
                &[&(position as i64), &(limit as i64)],
            )
            .await
            .map_err(StoreError::from_pg)?;
        rows.iter().map(row_to_envelope).collect()
    }

    /// The last position in the log (0 when empty).
    pub async fn last_position(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_one("SELECT COALESCE(MAX(position), 0) FROM kubegate_events", &[])
            .await
            .map_err(StoreError::from_pg)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// Events committed but not yet acknowledged by the bus.
    pub async fn outbox_pending(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_one("SELECT COUNT(*) FROM kubegate_outbox", &[])
            .await
            .map_err(StoreError::from_pg)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    pub(crate) async fn outbox_batch(&self, limit: usize) -> Result<Vec<(String, RawEnvelope)>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                "SELECT e.position, e.id, e.stream, e.sequence, e.type, e.version, e.occurred_at, e.actor::text,
                        e.correlation_id, e.payload::text, e.subject
                 FROM kubegate_outbox o JOIN kubegate_events e USING (position)
                 ORDER BY o.position LIMIT $1",
                &[&(limit as i64)],
            )
            .await
            .map_err(StoreError::from_pg)?;
        rows.iter().map(|r| Ok((r.get::<_, String>(10), row_to_envelope(r)?))).collect()
    }

    pub(crate) async fn outbox_done(&self, positions: &[i64]) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .execute("DELETE FROM kubegate_outbox WHERE position = ANY($1)", &[&positions])
            .await
            .map_err(StoreError::from_pg)?;
        Ok(())
    }
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

const SELECT_EVENTS: &str = "SELECT position, id, stream, sequence, type, version, occurred_at, actor::text,
        correlation_id, payload::text FROM kubegate_events";

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
