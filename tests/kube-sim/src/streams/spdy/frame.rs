//! SPDY/3.1 frame encoding and decoding (no I/O, no compression: header blocks stay opaque here).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Protocol version carried in every control frame.
pub const VERSION: u16 = 3;
/// FLAG_FIN on DATA, SYN_STREAM, SYN_REPLY and HEADERS.
pub const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL on SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// The largest frame payload the 24-bit length field can express.
pub const MAX_PAYLOAD: usize = 0x00ff_ffff;
/// SETTINGS id for the initial per-stream window.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes used here.
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
    pub const STREAM_IN_USE: u32 = 8;
}

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

/// A decoded frame. Header blocks are still zlib-compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        header_block: Bytes,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        header_block: Bytes,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        header_block: Bytes,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    /// A control frame of a type this endpoint ignores (e.g. CREDENTIAL, NOOP).
    Unknown {
        frame_type: u16,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("malformed {kind} frame: payload of {len} bytes")]
    Malformed { kind: &'static str, len: usize },
    #[error("frame payload too large to encode: {0} bytes")]
    TooLarge(usize),
}

impl Frame {
    /// Decodes one frame from the front of `buf`, or returns `None` when more bytes are needed.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = (usize::from(buf[5]) << 16) | (usize::from(buf[6]) << 8) | usize::from(buf[7]);
        if buf.len() < 8 + len {
            buf.reserve(8 + len - buf.len());
            return Ok(None);
        }
        let mut head = buf.split_to(8);
        let mut payload = buf.split_to(len).freeze();
        let first = head.get_u32();
        let flags = head.get_u8();
        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: first & 0x7fff_ffff,
                fin: flags & FLAG_FIN != 0,
                data: payload,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let frame_type = (first & 0xffff) as u16;
        let malformed = |kind| FrameError::Malformed { kind, len };
        let frame = match frame_type {
            TYPE_SYN_STREAM => {
                if len < 10 {
                    return Err(malformed("SYN_STREAM"));
                }
                let stream_id = payload.get_u32() & 0x7fff_ffff;
                let associated_to = payload.get_u32() & 0x7fff_ffff;
                let priority = payload.get_u8() >> 5;
                let _slot = payload.get_u8();
                Frame::SynStream { stream_id, associated_to, priority, flags, header_block: payload }
            }
            TYPE_SYN_REPLY => {
                if len < 4 {
                    return Err(malformed("SYN_REPLY"));
                }
                let stream_id = payload.get_u32() & 0x7fff_ffff;
                Frame::SynReply { stream_id, fin: flags & FLAG_FIN != 0, header_block: payload }
            }
            TYPE_RST_STREAM => {
                if len != 8 {
                    return Err(malformed("RST_STREAM"));
                }
                Frame::RstStream { stream_id: payload.get_u32() & 0x7fff_ffff, status: payload.get_u32() }
            }
            TYPE_SETTINGS => {
                if len < 4 {
                    return Err(malformed("SETTINGS"));
                }
                let count = payload.get_u32() as usize;
                if payload.remaining() != count.saturating_mul(8) {
                    return Err(malformed("SETTINGS"));
                }
                let entries = (0..count)
                    .map(|_| {
                        let word = payload.get_u32();
                        Setting {
                            flags: (word >> 24) as u8,
                            id: word & 0x00ff_ffff,
                            value: payload.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            TYPE_PING => {
                if len != 4 {
                    return Err(malformed("PING"));
                }
                Frame::Ping { id: payload.get_u32() }
            }
            TYPE_GOAWAY => {
                // SPDY/3 carries a status code; tolerate the 4-byte SPDY/2 form.
                if len != 8 && len != 4 {
                    return Err(malformed("GOAWAY"));
                }
                let last_good_stream_id = payload.get_u32() & 0x7fff_ffff;
                let status = if payload.remaining() >= 4 { payload.get_u32() } else { 0 };
                Frame::GoAway { last_good_stream_id, status }
            }
            TYPE_HEADERS => {
                if len < 4 {
                    return Err(malformed("HEADERS"));
                }
                let stream_id = payload.get_u32() & 0x7fff_ffff;
                Frame::Headers { stream_id, fin: flags & FLAG_FIN != 0, header_block: payload }
            }
            TYPE_WINDOW_UPDATE => {
                if len != 8 {
                    return Err(malformed("WINDOW_UPDATE"));
                }
                Frame::WindowUpdate {
                    stream_id: payload.get_u32() & 0x7fff_ffff,
                    delta: payload.get_u32() & 0x7fff_ffff,
                }
            }
            other => Frame::Unknown { frame_type: other },
        };
        Ok(Some(frame))
    }

    /// Appends the wire form of this frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), FrameError> {
        match self {
            Frame::Data { stream_id, fin, data } => {
                check_len(data.len())?;
                out.put_u32(stream_id & 0x7fff_ffff);
                put_flags_len(out, if *fin { FLAG_FIN } else { 0 }, data.len());
                out.put_slice(data);
            }
            Frame::SynStream { stream_id, associated_to, priority, flags, header_block } => {
                let len = 10 + header_block.len();
                control_header(out, TYPE_SYN_STREAM, *flags, len)?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(associated_to & 0x7fff_ffff);
                out.put_u8((priority & 0x07) << 5);
                out.put_u8(0);
                out.put_slice(header_block);
            }
            Frame::SynReply { stream_id, fin, header_block } => {
                control_header(out, TYPE_SYN_REPLY, fin_flag(*fin), 4 + header_block.len())?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_slice(header_block);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(out, TYPE_RST_STREAM, 0, 8)?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::Settings { flags, entries } => {
                control_header(out, TYPE_SETTINGS, *flags, 4 + 8 * entries.len())?;
                out.put_u32(entries.len() as u32);
                for e in entries {
                    out.put_u32((u32::from(e.flags) << 24) | (e.id & 0x00ff_ffff));
                    out.put_u32(e.value);
                }
            }
            Frame::Ping { id } => {
                control_header(out, TYPE_PING, 0, 4)?;
                out.put_u32(*id);
            }
            Frame::GoAway { last_good_stream_id, status } => {
                control_header(out, TYPE_GOAWAY, 0, 8)?;
                out.put_u32(last_good_stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::Headers { stream_id, fin, header_block } => {
                control_header(out, TYPE_HEADERS, fin_flag(*fin), 4 + header_block.len())?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_slice(header_block);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(out, TYPE_WINDOW_UPDATE, 0, 8)?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(delta & 0x7fff_ffff);
            }
            Frame::Unknown { frame_type } => {
                control_header(out, *frame_type, 0, 0)?;
            }
        }
        Ok(())
    }
}

fn fin_flag(fin: bool) -> u8 {
    if fin { FLAG_FIN } else { 0 }
}

fn check_len(len: usize) -> Result<(), FrameError> {
    if len > MAX_PAYLOAD { Err(FrameError::TooLarge(len)) } else { Ok(()) }
}

fn control_header(out: &mut BytesMut, frame_type: u16, flags: u8, len: usize) -> Result<(), FrameError> {
    check_len(len)?;
    out.reserve(8 + len);
    out.put_u16(0x8000 | VERSION);
    out.put_u16(frame_type);
    put_flags_len(out, flags, len);
    Ok(())
}

fn put_flags_len(out: &mut BytesMut, flags: u8, len: usize) {
    out.put_u8(flags);
    out.put_u8((len >> 16) as u8);
    out.put_u8((len >> 8) as u8);
    out.put_u8(len as u8);
}

/// Header name/value pairs of a SPDY/3 header block, in order. A value holding several
/// NUL-separated values is split into several pairs with the same name.
pub type HeaderList = Vec<(String, String)>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderBlockError {
    #[error("header block truncated")]
    Truncated,
    #[error("header block has trailing bytes")]
    Trailing,
    #[error("header block is not UTF-8")]
    NotUtf8,
}

/// Serialises headers into an uncompressed SPDY/3 header block (32-bit counts and lengths).
/// Names are lowercased, as SPDY/3 requires.
pub fn encode_header_block(headers: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + headers.iter().map(|(n, v)| 8 + n.len() + v.len()).sum::<usize>());
    out.put_u32(headers.len() as u32);
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        out.put_u32(name.len() as u32);
        out.put_slice(name.as_bytes());
        out.put_u32(value.len() as u32);
        out.put_slice(value.as_bytes());
    }
    out
}

/// Parses an uncompressed SPDY/3 header block.
pub fn decode_header_block(mut block: &[u8]) -> Result<HeaderList, HeaderBlockError> {
    fn take<'a>(block: &mut &'a [u8]) -> Result<&'a [u8], HeaderBlockError> {
        if block.remaining() < 4 {
            return Err(HeaderBlockError::Truncated);
        }
        let len = block.get_u32() as usize;
        if block.len() < len {
            return Err(HeaderBlockError::Truncated);
        }
        let (head, rest) = block.split_at(len);
        *block = rest;
        Ok(head)
    }
    if block.remaining() < 4 {
        return Err(HeaderBlockError::Truncated);
    }
    let count = block.get_u32();
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = std::str::from_utf8(take(&mut block)?).map_err(|_| HeaderBlockError::NotUtf8)?;
        let value = std::str::from_utf8(take(&mut block)?).map_err(|_| HeaderBlockError::NotUtf8)?;
        for v in value.split('\0') {
            headers.push((name.to_string(), v.to_string()));
        }
    }
    if !block.is_empty() {
        return Err(HeaderBlockError::Trailing);
    }
    Ok(headers)
}

/// The first value of header `name` (case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn round_trip(frame: Frame) {
        let mut buf = BytesMut::new();
        frame.encode(&mut buf).unwrap();
        let mut partial = BytesMut::from(&buf[..buf.len() - 1]);
        assert_eq!(Frame::decode(&mut partial).unwrap(), None, "a partial frame waits for more bytes");
        let decoded = Frame::decode(&mut buf).unwrap().unwrap();
        assert_eq!(decoded, frame);
        assert!(buf.is_empty());
    }

    #[test]
    fn every_frame_type_round_trips() {
        round_trip(Frame::Data { stream_id: 3, fin: false, data: Bytes::from_static(b"hi\n") });
        round_trip(Frame::Data { stream_id: 0x7fff_ffff, fin: true, data: Bytes::new() });
        round_trip(Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 7,
            flags: FLAG_FIN | FLAG_UNIDIRECTIONAL,
            header_block: Bytes::from_static(b"\x01\x02"),
        });
        round_trip(Frame::SynReply { stream_id: 5, fin: true, header_block: Bytes::from_static(b"abc") });
        round_trip(Frame::RstStream { stream_id: 7, status: rst::CANCEL });
        round_trip(Frame::Settings {
            flags: 1,
            entries: vec![Setting { flags: 0, id: SETTINGS_INITIAL_WINDOW_SIZE, value: 65536 }],
        });
        round_trip(Frame::Ping { id: 1 });
        round_trip(Frame::GoAway { last_good_stream_id: 9, status: 0 });
        round_trip(Frame::Headers { stream_id: 3, fin: false, header_block: Bytes::from_static(b"x") });
        round_trip(Frame::WindowUpdate { stream_id: 0, delta: 1 << 20 });
    }

    #[test]
    fn decodes_kubectl_frames_from_the_wire() {
        // DATA fin on stream 3 and RST_STREAM(3, CANCEL) as kubectl sends them.
        let mut buf =
            BytesMut::from(&[0, 0, 0, 3, 1, 0, 0, 0, 0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 5][..]);
        assert_eq!(
            Frame::decode(&mut buf).unwrap(),
            Some(Frame::Data { stream_id: 3, fin: true, data: Bytes::new() })
        );
        assert_eq!(
            Frame::decode(&mut buf).unwrap(),
            Some(Frame::RstStream { stream_id: 3, status: rst::CANCEL })
        );
        assert_eq!(Frame::decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn rejects_other_versions_and_malformed_frames() {
        let mut v2 = BytesMut::from(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert_eq!(Frame::decode(&mut v2), Err(FrameError::Version(2)));
        let mut short_rst = BytesMut::from(&[0x80, 3, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(matches!(Frame::decode(&mut short_rst), Err(FrameError::Malformed { .. })));
    }

    #[test]
    fn header_blocks_round_trip_and_split_nul_values() {
        let headers =
            vec![("StreamType".to_string(), "error".to_string()), ("port".to_string(), "80".to_string())];
        let block = encode_header_block(&headers);
        let decoded = decode_header_block(&block).unwrap();
        assert_eq!(decoded[0], ("streamtype".to_string(), "error".to_string()));
        assert_eq!(header(&decoded, "PORT"), Some("80"));

        let multi = encode_header_block(&[("a".to_string(), "x\0y".to_string())]);
        assert_eq!(decode_header_block(&multi).unwrap().len(), 2);
        assert_eq!(decode_header_block(&block[..block.len() - 1]), Err(HeaderBlockError::Truncated));
    }
}
