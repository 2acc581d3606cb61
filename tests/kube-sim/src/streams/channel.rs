//! WebSocket channel framing (`channel.k8s.io` family): each message starts with the channel
//! number, as a byte (binary) or an ASCII digit followed by base64 (text).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{BufMut, Bytes, BytesMut};
use tokio_tungstenite::tungstenite::Message;

use super::negotiate::Framing;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5: a message `[255, channel]` closes the client's side of `channel`.
pub const CLOSE_SIGNAL: u8 = 255;

/// What an incoming message means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Data {
        channel: u8,
        data: Bytes,
    },
    /// v5 stdin close signal.
    CloseChannel(u8),
    /// The peer closed the WebSocket.
    Closed,
    /// Control messages, empty or undecodable messages.
    Ignored,
}

#[derive(Debug, Clone, Copy)]
pub struct ChannelCodec {
    pub framing: Framing,
    /// v5 semantics: `ff NN` closes channel NN.
    pub close_signal: bool,
}

impl ChannelCodec {
    pub fn encode(&self, channel: u8, data: &[u8]) -> Message {
        match self.framing {
            Framing::Binary => {
                let mut out = BytesMut::with_capacity(1 + data.len());
                out.put_u8(channel);
                out.put_slice(data);
                Message::Binary(out.freeze())
            }
            Framing::Base64 => {
                let mut text = String::with_capacity(1 + data.len() * 4 / 3 + 4);
                text.push(char::from(b'0' + channel));
                STANDARD.encode_string(data, &mut text);
                Message::text(text)
            }
        }
    }

    /// Text and binary messages mean the same (as for the Kubernetes servers): the framing of
    /// the negotiated protocol decides how the payload is read.
    pub fn decode(&self, msg: Message) -> Incoming {
        match msg {
            Message::Binary(data) => self.decode_payload(data),
            Message::Text(text) => self.decode_payload(Bytes::from(text)),
            Message::Close(_) => Incoming::Closed,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Incoming::Ignored,
        }
    }

    fn decode_payload(&self, data: Bytes) -> Incoming {
        if data.is_empty() {
            return Incoming::Ignored;
        }
        let channel = data[0];
        if self.close_signal && channel == CLOSE_SIGNAL {
            return match data.get(1) {
                Some(&c) if data.len() == 2 => Incoming::CloseChannel(c),
                _ => Incoming::Ignored,
            };
        }
        match self.framing {
            Framing::Binary => Incoming::Data { channel, data: data.slice(1..) },
            Framing::Base64 => decode_base64(&data),
        }
    }
}

fn decode_base64(raw: &[u8]) -> Incoming {
    let Some((&digit, payload)) = raw.split_first() else { return Incoming::Ignored };
    let Some(channel) = digit.checked_sub(b'0') else { return Incoming::Ignored };
    match STANDARD.decode(payload) {
        Ok(data) => Incoming::Data { channel, data: Bytes::from(data) },
        Err(_) => Incoming::Ignored,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn binary_frames_carry_the_channel_byte() {
        let c = ChannelCodec { framing: Framing::Binary, close_signal: true };
        assert_eq!(c.encode(STDOUT, b"hi\n"), Message::Binary(Bytes::from_static(b"\x01hi\n")));
        assert_eq!(
            c.decode(Message::Binary(Bytes::from_static(b"\x00line1\n"))),
            Incoming::Data { channel: STDIN, data: Bytes::from_static(b"line1\n") }
        );
        assert_eq!(c.decode(Message::Binary(Bytes::from_static(b"\xff\x00"))), Incoming::CloseChannel(STDIN));
    }

    #[test]
    fn text_messages_on_binary_protocols_are_raw_data() {
        // The Python client sends str payloads as text frames.
        let c = ChannelCodec { framing: Framing::Binary, close_signal: true };
        assert_eq!(
            c.decode(Message::text("\u{0}ping\n")),
            Incoming::Data { channel: STDIN, data: Bytes::from_static(b"ping\n") }
        );
    }

    #[test]
    fn v4_has_no_close_signal() {
        let c = ChannelCodec { framing: Framing::Binary, close_signal: false };
        assert!(matches!(
            c.decode(Message::Binary(Bytes::from_static(b"\xff\x00"))),
            Incoming::Data { channel: 255, .. }
        ));
    }

    #[test]
    fn base64_frames_use_a_digit_and_base64() {
        let c = ChannelCodec { framing: Framing::Base64, close_signal: false };
        assert_eq!(c.encode(STDOUT, b"\n"), Message::text("1Cg=="));
        assert_eq!(
            c.decode(Message::text("0Zm9vCg==")),
            Incoming::Data { channel: STDIN, data: Bytes::from_static(b"foo\n") }
        );
    }
}
