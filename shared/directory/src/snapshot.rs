//! Snapshots in `KUBEGATE_SNAPSHOTS` of what replicas fold from a long stream: the
//! [`Directory`](crate::Directory)'s [`State`] from `KUBEGATE_IDENTITY` (written by identity) and
//! the [`EnvironmentLog`](crate::environments::EnvironmentLog) from `KUBEGATE_ENVIRONMENTS`
//! (written by kubeconfig).
//!
//! A snapshot is the state after folding the stream up to one message, with that message's
//! stream sequence and envelope id and the last position applied. It is stored as JSON in chunks
//! of 256 KiB (a NATS message is at most 1 MiB) on `kubegate.snapshots.<name>.chunk.<n>`, then a
//! manifest on `kubegate.snapshots.<name>.manifest` naming the chunks by stream sequence, with the
//! length and SHA-256 of the whole. Each subject keeps its last two messages, so a reader that
//! fetched a manifest can still fetch its chunks while the next snapshot is being written.
//!
//! A reader loads the state, then follows the stream from the snapshot's message: the first
//! message it receives must be that one, with that envelope id; otherwise the stream is not the
//! one the snapshot was made from (recreated, restored) and the reader starts from nothing.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use kubegate_bus::{Bus, BusError, FeedItem, StreamDef};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::State;

/// The stream snapshots live in.
pub const STREAM: &str = "KUBEGATE_SNAPSHOTS";
/// The stream a directory snapshot is folded from.
pub const SOURCE: &str = "KUBEGATE_IDENTITY";
const CHUNK_BYTES: usize = 256 * 1024;
/// Bumped when [`State`] changes incompatibly; a reader ignores snapshots of another format.
pub const FORMAT: u32 = 1;
/// How far from the stream's end the latest manifest is looked for: past the chunks of a
/// snapshot being written (a 1 GiB state is 4,096 chunks).
const MANIFEST_LOOKBACK: u64 = 4_200;
/// A manifest claiming more than this is not believed.
const MAX_BYTES: u64 = 1 << 30;

/// A state that is snapshotted: the stream it is folded from, and the name in its subjects.
pub trait Folded: Serialize + DeserializeOwned {
    const SOURCE: &'static str;
    /// `kubegate.snapshots.<NAME>.…`; each writer may publish only under its own name.
    const NAME: &'static str;
}

impl Folded for State {
    const SOURCE: &'static str = SOURCE;
    const NAME: &'static str = "identity";
}

/// Where the latest manifest of `S`'s snapshots is.
pub fn manifest_subject<S: Folded>() -> String {
    format!("kubegate.snapshots.{}.manifest", S::NAME)
}

fn chunk_subject<S: Folded>(i: usize) -> String {
    format!("kubegate.snapshots.{}.chunk.{i}", S::NAME)
}

/// Where in the source stream a snapshot stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mark {
    /// The last message of the source stream folded in.
    pub stream_sequence: u64,
    /// That message's envelope id.
    pub event_id: Uuid,
    /// The last log position applied; every position up to it is in the state.
    pub position: u64,
    pub written_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot<S = State> {
    pub format: u32,
    pub source: String,
    #[serde(flatten)]
    pub mark: Mark,
    pub state: S,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    format: u32,
    source: String,
    #[serde(flatten)]
    mark: Mark,
    bytes: u64,
    sha256: String,
    chunks: Vec<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("the snapshot is damaged: {0}")]
    Damaged(String),
}

impl<S: Folded> Snapshot<S> {
    pub fn new(mark: Mark, state: S) -> Snapshot<S> {
        Snapshot { format: FORMAT, source: S::SOURCE.to_string(), mark, state }
    }
}

/// Creates `KUBEGATE_SNAPSHOTS` or brings it in line (the writer's business).
pub async fn ensure_stream(bus: &Bus) -> Result<(), SnapshotError> {
    Ok(bus.ensure_stream(&StreamDef::snapshots()).await?)
}

/// Writes `snapshot`: its chunks, then its manifest.
pub async fn write<S: Folded>(bus: &Bus, snapshot: &Snapshot<S>) -> Result<(), SnapshotError> {
    let body = serde_json::to_vec(snapshot).map_err(|e| SnapshotError::Damaged(e.to_string()))?;
    let mut chunks = Vec::with_capacity(body.len() / CHUNK_BYTES + 1);
    for (i, chunk) in body.chunks(CHUNK_BYTES).enumerate() {
        chunks.push(bus.publish_acked(chunk_subject::<S>(i), Bytes::copy_from_slice(chunk)).await?);
    }
    let manifest = Manifest {
        format: snapshot.format,
        source: snapshot.source.clone(),
        mark: snapshot.mark.clone(),
        bytes: body.len() as u64,
        sha256: hex::encode(Sha256::digest(&body)),
        chunks,
    };
    let manifest = serde_json::to_vec(&manifest).map_err(|e| SnapshotError::Damaged(e.to_string()))?;
    bus.publish_acked(manifest_subject::<S>(), manifest.into()).await?;
    Ok(())
}

async fn manifest<S: Folded>(bus: &Bus) -> Result<Option<Manifest>, SnapshotError> {
    let subject = manifest_subject::<S>();
    let Some((_, payload)) = bus.last_message_on(STREAM, &subject, MANIFEST_LOOKBACK).await? else {
        return Ok(None);
    };
    let manifest: Manifest = serde_json::from_slice(&payload)
        .map_err(|e| SnapshotError::Damaged(format!("unreadable manifest: {e}")))?;
    if manifest.format != FORMAT || manifest.source != S::SOURCE {
        tracing::warn!(
            format = manifest.format,
            source = %manifest.source,
            "the latest snapshot is of another format or source; not used"
        );
        return Ok(None);
    }
    Ok(Some(manifest))
}

/// Where the latest directory snapshot stands, without loading it (`None`: there is none).
pub async fn latest_mark(bus: &Bus) -> Result<Option<Mark>, SnapshotError> {
    latest_mark_of::<State>(bus).await
}

/// Where the latest snapshot of `S` stands, without loading it (`None`: there is none).
pub async fn latest_mark_of<S: Folded>(bus: &Bus) -> Result<Option<Mark>, SnapshotError> {
    Ok(manifest::<S>(bus).await?.map(|m| m.mark))
}

/// Loads the latest directory snapshot (see [`load_of`]).
pub async fn load(bus: &Bus) -> Result<Option<Snapshot>, SnapshotError> {
    load_of::<State>(bus).await
}

/// Loads the latest snapshot of `S` (`None`: there is none of this format). Every chunk must be
/// the manifest's, and the whole must have the manifest's length and digest.
pub async fn load_of<S: Folded>(bus: &Bus) -> Result<Option<Snapshot<S>>, SnapshotError> {
    let Some(manifest) = manifest::<S>(bus).await? else { return Ok(None) };
    let damaged = |why: String| SnapshotError::Damaged(why);
    if manifest.bytes > MAX_BYTES || manifest.chunks.len() as u64 > manifest.bytes / CHUNK_BYTES as u64 + 1 {
        return Err(damaged(format!(
            "a manifest of {} bytes in {} chunks",
            manifest.bytes,
            manifest.chunks.len()
        )));
    }
    let mut body = Vec::with_capacity(manifest.bytes as usize);
    for (i, seq) in manifest.chunks.iter().enumerate() {
        let (subject, payload) = bus.message_at(STREAM, *seq).await?;
        if subject != chunk_subject::<S>(i) {
            return Err(damaged(format!("message {seq} is {subject}, not chunk {i}")));
        }
        body.extend_from_slice(&payload);
        if body.len() as u64 > manifest.bytes {
            return Err(damaged("longer than its manifest says".into()));
        }
    }
    if body.len() as u64 != manifest.bytes || hex::encode(Sha256::digest(&body)) != manifest.sha256 {
        return Err(damaged("its chunks do not add up to what the manifest says".into()));
    }
    let snapshot: Snapshot<S> =
        serde_json::from_slice(&body).map_err(|e| damaged(format!("unreadable state: {e}")))?;
    if snapshot.mark != manifest.mark || snapshot.format != FORMAT || snapshot.source != S::SOURCE {
        return Err(damaged("the state and its manifest disagree".into()));
    }
    Ok(Some(snapshot))
}

/// A follower that started from a snapshot: the stream sequence and envelope id its feed's
/// first item must have for the snapshot to be of this stream's history.
#[derive(Debug, Clone)]
pub struct Resume {
    stream_sequence: u64,
    event_id: Uuid,
}

impl Resume {
    pub fn new(mark: &Mark) -> Resume {
        Resume { stream_sequence: mark.stream_sequence, event_id: mark.event_id }
    }

    /// Checks the feed's first item (a feed started at the snapshot's message): `Err` says why
    /// the snapshot is not of this stream and the follower must start over from nothing.
    pub fn check(&self, first: &FeedItem) -> Result<(), String> {
        match first {
            FeedItem::Event { stream_sequence, envelope }
                if *stream_sequence == self.stream_sequence && envelope.id == self.event_id =>
            {
                Ok(())
            }
            FeedItem::Event { .. } | FeedItem::Undecodable { .. } => {
                Err("the snapshot's message is not the stream's".into())
            }
            FeedItem::CaughtUp { .. } => Err("the stream ends before the snapshot's message".into()),
            FeedItem::Reset(error) => Err(error.to_string()),
        }
    }
}
