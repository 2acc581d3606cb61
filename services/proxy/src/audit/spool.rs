//! The audit spool: the bus messages not yet published, one line each (a JSON envelope, or an
//! array of them as packed), on local disk, fsync'd on every append, read back a chunk at a time
//! from the first message not yet published, exactly as packed. How far publishing got
//! is kept beside it (`<spool>.offset`), so a replay never reads or rewrites the whole file: a
//! spool of a gigabyte costs a gigabyte of disk, not of memory, and a replay that fails (NATS
//! still away, its store still full) costs one chunk.

use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use super::pack::Packed;

pub(super) struct Spool {
    path: PathBuf,
    /// Where the first message not yet published starts.
    offset: u64,
    /// The file's length.
    len: u64,
}

/// A message read back, and where the next one starts.
pub(super) struct Spooled {
    pub message: Packed,
    pub end: u64,
}

impl Spool {
    pub fn open(path: PathBuf) -> std::io::Result<Spool> {
        let mut len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        if len > 0 {
            let whole = last_newline_end(&path, len)?;
            if whole < len {
                // A message torn by a crash mid-append: it was never acknowledged to anyone, and
                // left there it would swallow the next message appended after it.
                tracing::error!(bytes = len - whole, path = %path.display(), "dropping a torn last audit spool message");
                std::fs::OpenOptions::new().write(true).open(&path)?.set_len(whole)?;
                len = whole;
            }
        }
        let mut spool = Spool { path, offset: 0, len };
        spool.offset = match std::fs::read_to_string(spool.offset_path()) {
            Ok(s) => match s.trim().parse::<u64>() {
                Ok(o) if o <= len => o,
                _ => {
                    tracing::error!(path = %spool.offset_path().display(), "unusable audit spool offset; replaying the spool from its start");
                    0
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        if spool.bytes() > 0 {
            tracing::info!(bytes = spool.bytes(), path = %spool.path.display(), "audit spool from an earlier run will be replayed");
        }
        Ok(spool)
    }

    /// Bytes of messages not yet published.
    pub fn bytes(&self) -> u64 {
        self.len - self.offset
    }

    fn offset_path(&self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(".offset");
        PathBuf::from(name)
    }

    pub fn append(&mut self, messages: &[Packed]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        let mut buf = Vec::with_capacity(messages.iter().map(|m| m.message.payload.len() + 1).sum());
        for m in messages {
            buf.extend_from_slice(&m.message.payload);
            buf.push(b'\n');
        }
        f.write_all(&buf)?;
        f.sync_data()?;
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Up to `max` messages from the first not yet published, and where reading stopped (past
    /// damaged lines too, which are logged and skipped). A file that ends early, or is gone,
    /// has nothing more to give: reading stops at the spool's end.
    pub fn read_chunk(&self, max: usize) -> std::io::Result<(Vec<Spooled>, u64)> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), self.len)),
            Err(e) => return Err(e),
        };
        f.seek(SeekFrom::Start(self.offset))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 16, f);
        let mut out = Vec::new();
        let mut at = self.offset;
        let mut line = Vec::new();
        while out.len() < max && at < self.len {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                at = self.len;
                break;
            }
            at += n as u64;
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            if text.is_empty() {
                continue;
            }
            match Packed::read(text) {
                Ok(message) => out.push(Spooled { message, end: at }),
                Err(e) => tracing::error!(error = %e, "skipping a damaged audit spool line"),
            }
        }
        Ok((out, at))
    }

    /// Everything before `end` is published: remember that, and empty the file once all is.
    pub fn consume_to(&mut self, end: u64) -> std::io::Result<()> {
        if end >= self.len {
            match std::fs::OpenOptions::new().write(true).open(&self.path) {
                Ok(f) => {
                    f.set_len(0)?;
                    f.sync_all()?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.len = 0;
            self.offset = 0;
            return match std::fs::remove_file(self.offset_path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let tmp = self.offset_path().with_extension("offset.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(end.to_string().as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.offset_path())?;
        self.offset = end;
        Ok(())
    }

    pub fn sync(&self) -> std::io::Result<()> {
        if self.path.exists() { std::fs::File::open(&self.path)?.sync_all() } else { Ok(()) }
    }
}

/// Where the file's last complete line ends (0 when it has none).
fn last_newline_end(path: &std::path::Path, len: u64) -> std::io::Result<u64> {
    let mut f = std::fs::File::open(path)?;
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests;
