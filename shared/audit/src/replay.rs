//! Replays: the whole filtered timeline written as it is merged (`kubegate audit`, following
//! or not), and one page of it (`GET /api/audit`).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use kubegate_bus::Bus;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio_util::sync::CancellationToken;

use crate::AuditError;
use crate::cursor::Cursor;
use crate::directory::Directory;
use crate::filter::{Filter, FilterSpec};
use crate::merge::{Merger, Step};
use crate::output::{Format, RowWriter};
use crate::row::{At, Row, Source};
use crate::source::{self, Batch, Context, Plan, Start};

/// How a replay is called back with its progress.
pub type Progress = Box<dyn FnMut(&Stats) + Send>;

/// What to replay, how to write it, when to stop.
pub struct ReplayOptions {
    pub filter: FilterSpec,
    /// Keep writing new rows after the replay of what was there, until `stop`.
    pub follow: bool,
    pub format: Format,
    pub stop: CancellationToken,
    /// Called every `progress_every` rows written.
    pub progress: Option<Progress>,
    pub progress_every: u64,
}

impl Default for ReplayOptions {
    fn default() -> ReplayOptions {
        ReplayOptions {
            filter: FilterSpec::default(),
            follow: false,
            format: Format::Json,
            stop: CancellationToken::new(),
            progress: None,
            progress_every: 100_000,
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Rows written.
    pub rows: u64,
    /// Messages read from the streams (rows or filtered out).
    pub scanned: u64,
    /// Messages that were not events this build can read (skipped).
    pub undecodable: u64,
    pub elapsed: Duration,
}

type Lane = mpsc::Receiver<Result<Batch, AuditError>>;

/// The readers a filter needs: one per stream it may show rows of, starting at the cursor's
/// positions or at `since`. A follower also reads the environments (names only) to name new
/// environments in request rows.
fn plans(filter: &Filter, cursor: Option<&Cursor>, follow: bool) -> Vec<Plan> {
    let mut out = Vec::new();
    for source in Source::ALL {
        let emit = filter.wants_source(source);
        let names_only = follow && source == Source::Environments;
        if !(emit || names_only) {
            continue;
        }
        let subject =
            if emit { filter.subject(source) } else { "kubegate.environments.environment.>".into() };
        let start = match (cursor.map(|c| c.get(source)), filter.since) {
            (Some(at), _) if at.sequence > 0 => Start::At(at),
            (_, Some(t)) if emit => Start::Time(t),
            (_, Some(_)) => Start::Time(Utc::now()),
            _ => Start::Beginning,
        };
        out.push(Plan { source, subject, start, emit });
    }
    out
}

struct Running {
    merger: Merger,
    lanes: Vec<Lane>,
    streams: Vec<&'static str>,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn start(
    bus: &Bus,
    filter: Filter,
    directory: Arc<Directory>,
    cursor: Option<&Cursor>,
    follow: bool,
) -> Running {
    let plans = plans(&filter, cursor, follow);
    let ctx = Arc::new(Context { filter, directory });
    let stop = CancellationToken::new();
    let merger = Merger::new(
        &plans
            .iter()
            .map(|p| {
                let start = match p.start {
                    Start::At(at) => at,
                    _ => At::default(),
                };
                (p.source, start)
            })
            .collect::<Vec<_>>(),
    );
    let streams = plans.iter().map(|p| p.source.stream()).collect();
    let lanes =
        plans.into_iter().map(|p| source::spawn(bus.clone(), p, ctx.clone(), follow, stop.clone())).collect();
    Running { merger, lanes, streams, stop }
}

impl Running {
    fn push(&mut self, lane: usize, item: Option<Result<Batch, AuditError>>) -> Result<(), AuditError> {
        match item {
            Some(Ok(batch)) => {
                self.merger.push(lane, batch);
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => Err(AuditError::Nats {
                stream: self.streams.get(lane).copied().unwrap_or_default().to_string(),
                message: "the reader stopped".into(),
            }),
        }
    }

    /// The next batch of `lane`, if it is there already.
    fn try_next(&mut self, lane: usize) -> Option<Option<Result<Batch, AuditError>>> {
        match self.lanes[lane].try_recv() {
            Ok(item) => Some(Some(item)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(None),
        }
    }

    /// The next batch of any lane.
    async fn next_any(&mut self) -> (usize, Option<Result<Batch, AuditError>>) {
        let waits =
            self.lanes.iter_mut().enumerate().map(|(i, rx)| Box::pin(async move { (i, rx.recv().await) }));
        futures::future::select_all(waits).await.0
    }
}

/// Replays the streams into `out`: the rows `options.filter` selects, oldest first, written as
/// they are merged (never collected). Returns when everything the streams held at the start is
/// written, or — following — when `options.stop` is cancelled.
pub async fn replay<W: Write>(bus: &Bus, mut options: ReplayOptions, out: W) -> Result<Stats, AuditError> {
    let began = Instant::now();
    let directory = Arc::new(Directory::load(bus).await?);
    let filter = options.filter.resolve(Utc::now(), &directory)?;
    let mut run = start(bus, filter, directory, None, options.follow);
    let mut writer = RowWriter::new(options.format, out).map_err(AuditError::Output)?;
    let mut rows = 0u64;
    let every = options.progress_every.max(1);
    let stop = options.stop.clone();
    let stats_now = |run: &Running, rows: u64| {
        let (scanned, undecodable) = run.merger.scanned();
        Stats { rows, scanned, undecodable, elapsed: began.elapsed() }
    };
    loop {
        match run.merger.step() {
            Step::Emit(row) => {
                writer.write(&row).map_err(AuditError::Output)?;
                rows += 1;
                if rows.is_multiple_of(every)
                    && let Some(p) = options.progress.as_mut()
                {
                    p(&stats_now(&run, rows));
                }
            }
            Step::Need(lane) => {
                let item = match run.try_next(lane) {
                    Some(item) => item,
                    None => {
                        writer.flush().map_err(AuditError::Output)?;
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            item = run.lanes[lane].recv() => item,
                        }
                    }
                };
                run.push(lane, item)?;
            }
            Step::Idle => {
                if !options.follow {
                    break;
                }
                // Everything so far is out; wait for what comes next.
                writer.flush().map_err(AuditError::Output)?;
                let (lane, item) = tokio::select! {
                    _ = stop.cancelled() => break,
                    next = run.next_any() => next,
                };
                run.push(lane, item)?;
            }
        }
    }
    writer.flush().map_err(AuditError::Output)?;
    Ok(stats_now(&run, rows))
}

/// One page of `GET /api/audit`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub items: Vec<Row>,
    /// Where the next page starts; `null` once everything the streams held is listed.
    pub next_cursor: Option<String>,
}

pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;
/// Messages one page may look at: a narrow filter over a long log answers with what it found so
/// far (perhaps nothing) and a cursor, rather than keep the caller waiting.
pub const PAGE_SCAN_BUDGET: u64 = 200_000;

/// One page: up to `limit` rows selected by `spec`, oldest first, continuing at `cursor` (as
/// returned by the previous page).
pub async fn page(
    bus: &Bus,
    spec: &FilterSpec,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page, AuditError> {
    let cursor = cursor.map(|c| Cursor::decode(c).ok_or(AuditError::Cursor)).transpose()?;
    let directory = Arc::new(Directory::load(bus).await?);
    let filter = spec.resolve(Utc::now(), &directory)?;
    let limit = limit.clamp(1, MAX_PAGE);
    let mut run = start(bus, filter, directory, cursor.as_ref(), false);
    let mut items = Vec::new();
    let done = loop {
        match run.merger.step() {
            Step::Emit(row) => {
                items.push(row);
                if items.len() >= limit {
                    break false;
                }
            }
            Step::Need(lane) => {
                if run.merger.scanned().0 >= PAGE_SCAN_BUDGET {
                    break false;
                }
                let item = match run.try_next(lane) {
                    Some(item) => item,
                    None => run.lanes[lane].recv().await,
                };
                run.push(lane, item)?;
            }
            Step::Idle => break true,
        }
    };
    let next_cursor = (!done).then(|| {
        let mut next = cursor.unwrap_or_default();
        for (source, at) in run.merger.positions() {
            next.set(source, at);
        }
        next.encode()
    });
    Ok(Page { items, next_cursor })
}
