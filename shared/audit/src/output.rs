//! Rows out as they come: a table in local time for people, JSON lines and CSV for tools.
//! Everything is buffered; `flush` is called by the replay whenever it is about to wait, so a
//! follower sees each row at once and a long replay costs one write per buffer.

use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};

use chrono::Local;
use kubegate_events::audit::Decision;

use crate::row::{COLUMNS, Row};

/// How rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns, times in the local time zone.
    #[default]
    Table,
    /// One JSON object per line (the same objects `GET /api/audit` returns).
    Json,
    /// RFC 4180 CSV with a header line; lists are joined with `;`.
    Csv,
}

const BUFFER: usize = 256 * 1024;

enum Inner<W: Write> {
    Table(BufWriter<W>),
    Json(BufWriter<W>),
    Csv(Box<csv::Writer<W>>),
}

/// Writes rows in one format.
pub struct RowWriter<W: Write> {
    inner: Inner<W>,
    scratch: String,
    dirty: bool,
}

/// Table columns: title and width (the last one, the summary, is not padded).
const TABLE: [(&str, usize); 9] = [
    ("TIME", 29),
    ("KIND", 11),
    ("USER", 16),
    ("ENVIRONMENT", 14),
    ("NAMESPACE", 14),
    ("DECISION", 8),
    ("STATUS", 6),
    ("REQUEST", 32),
    ("WHAT", 0),
];

impl<W: Write> RowWriter<W> {
    /// A writer; the table's and the CSV's header lines are written at once.
    pub fn new(format: Format, out: W) -> io::Result<RowWriter<W>> {
        let mut w = RowWriter {
            inner: match format {
                Format::Table => Inner::Table(BufWriter::with_capacity(BUFFER, out)),
                Format::Json => Inner::Json(BufWriter::with_capacity(BUFFER, out)),
                Format::Csv => {
                    Inner::Csv(Box::new(csv::WriterBuilder::new().buffer_capacity(BUFFER).from_writer(out)))
                }
            },
            scratch: String::with_capacity(512),
            dirty: true,
        };
        match &mut w.inner {
            Inner::Table(out) => {
                let mut line = String::new();
                for (i, (title, width)) in TABLE.iter().enumerate() {
                    cell(&mut line, title, *width, i + 1 == TABLE.len());
                }
                out.write_all(line.trim_end().as_bytes())?;
                out.write_all(b"\n")?;
            }
            Inner::Csv(out) => out.write_record(COLUMNS)?,
            Inner::Json(_) => {}
        }
        Ok(w)
    }

    pub fn write(&mut self, row: &Row) -> io::Result<()> {
        self.dirty = true;
        match &mut self.inner {
            Inner::Json(out) => {
                serde_json::to_writer(&mut *out, row).map_err(io::Error::other)?;
                out.write_all(b"\n")
            }
            Inner::Table(out) => {
                let line = &mut self.scratch;
                line.clear();
                let time = row.time.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S%.3f%:z").to_string();
                cell(line, &time, TABLE[0].1, false);
                cell(line, row.kind.as_str(), TABLE[1].1, false);
                cell(line, row.user.as_deref().unwrap_or("-"), TABLE[2].1, false);
                let envs =
                    if row.environments.is_empty() { "-".to_string() } else { row.environments.join(",") };
                cell(line, &envs, TABLE[3].1, false);
                cell(line, row.namespace.as_deref().unwrap_or("-"), TABLE[4].1, false);
                cell(line, decision(row.decision).unwrap_or("-"), TABLE[5].1, false);
                let status = row.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
                cell(line, &status, TABLE[6].1, false);
                cell(line, &row.correlation_id, TABLE[7].1, false);
                cell(line, &row.summary, 0, true);
                out.write_all(line.trim_end().as_bytes())?;
                out.write_all(b"\n")
            }
            Inner::Csv(out) => {
                let s = &mut self.scratch;
                let opt = |v: &Option<String>| v.as_deref().unwrap_or("").to_string();
                let num = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
                out.write_field(crate::row::format_time(&row.time))?;
                out.write_field(row.kind.as_str())?;
                out.write_field(row.event)?;
                out.write_field(opt(&row.user))?;
                out.write_field(num(row.user_id))?;
                out.write_field(opt(&row.target_user))?;
                out.write_field(num(row.target_user_id))?;
                out.write_field(opt(&row.role))?;
                s.clear();
                for (i, id) in row.environment_ids.iter().enumerate() {
                    let _ = write!(s, "{}{id}", if i > 0 { ";" } else { "" });
                }
                out.write_field(s.as_str())?;
                out.write_field(row.environments.join(";"))?;
                out.write_field(opt(&row.namespace))?;
                out.write_field(opt(&row.verb))?;
                out.write_field(opt(&row.resource))?;
                out.write_field(opt(&row.name))?;
                out.write_field(opt(&row.path))?;
                out.write_field(num(row.status.map(u64::from)))?;
                out.write_field(decision(row.decision).unwrap_or(""))?;
                out.write_field(opt(&row.reason))?;
                out.write_field(num(row.duration_us))?;
                out.write_field(num(row.bytes_in))?;
                out.write_field(num(row.bytes_out))?;
                out.write_field(opt(&row.client_address))?;
                out.write_field(opt(&row.token_id))?;
                out.write_field(opt(&row.session_id))?;
                out.write_field(&row.correlation_id)?;
                out.write_field(&row.summary)?;
                out.write_field(row.id.to_string())?;
                out.write_field(row.stream.stream())?;
                out.write_field(row.sequence.to_string())?;
                out.write_field(row.index.to_string())?;
                out.write_field(&row.origin)?;
                out.write_field(row.position.to_string())?;
                out.write_record(None::<&[u8]>).map_err(io::Error::from)
            }
        }
    }

    /// Hands everything written so far to the output.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        match &mut self.inner {
            Inner::Table(out) | Inner::Json(out) => out.flush(),
            Inner::Csv(out) => out.flush(),
        }
    }
}

fn decision(d: Option<Decision>) -> Option<&'static str> {
    d.map(|d| match d {
        Decision::Allowed => "allowed",
        Decision::Denied => "denied",
    })
}

/// Appends one cell: control characters shown escaped (a user name or a path must not be able
/// to move the cursor or clear the operator's terminal), cut to `width` with `…`, padded.
fn cell(line: &mut String, value: &str, width: usize, last: bool) {
    let start = line.chars().count();
    let mut n = 0;
    let limit = if last || width == 0 { usize::MAX } else { width };
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        let shown: String = if c.is_control() { c.escape_default().collect() } else { c.to_string() };
        let len = shown.chars().count();
        if n + len > limit || (n + len == limit && chars.peek().is_some()) {
            line.push('…');
            n += 1;
            break;
        }
        line.push_str(&shown);
        n += len;
    }
    if !last {
        let target = start + width.max(n) + 2;
        let now = line.chars().count();
        for _ in now..target {
            line.push(' ');
        }
    }
}
