//! The audit timeline: "who did what, where, when", from the logs alone. Every domain event of
//! identity (`KUBEGATE_IDENTITY`) and kubeconfig (`KUBEGATE_ENVIRONMENTS`) and every proxy audit
//! record (`KUBEGATE_AUDIT`) becomes one kind of [`Row`]; one [`FilterSpec`] selects rows (the
//! flags of `kubegate audit` and the query of `GET /api/audit`); the three streams, each read
//! in order by its own ordered consumer, are merged by time and written as they come — table,
//! JSON lines or CSV — or cut into pages.
//!
//! ```no_run
//! # async fn f(bus: kubegate_bus::Bus) -> Result<(), kubegate_audit::AuditError> {
//! use kubegate_audit::{Format, ReplayOptions, replay};
//! let out = std::io::BufWriter::new(std::fs::File::create("audit.jsonl").map_err(kubegate_audit::AuditError::Output)?);
//! let stats = replay(&bus, ReplayOptions { format: Format::Json, ..Default::default() }, out).await?;
//! println!("{} records in {:?}", stats.rows, stats.elapsed);
//! # Ok(()) }
//! ```

pub mod cursor;
pub mod directory;
pub mod filter;
pub mod merge;
pub mod output;
pub mod replay;
pub mod row;
pub mod source;

pub use cursor::Cursor;
pub use directory::Directory;
pub use filter::{Filter, FilterError, FilterSpec};
pub use output::{Format, RowWriter};
pub use replay::{DEFAULT_PAGE, MAX_PAGE, Page, Progress, ReplayOptions, Stats, page, replay};
pub use row::{Kind, Row, Source};

/// Why a replay or a page failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("cursor: not a cursor this server issued")]
    Cursor,
    #[error("cannot read {stream}: {message}")]
    Nats { stream: String, message: String },
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
}

#[cfg(test)]
mod tests;
