//! SPDY/3 header compression: one zlib stream per direction, primed with the protocol's
//! dictionary, each header block ending on a sync flush.

use std::sync::LazyLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Header-name tokens of the SPDY/3 dictionary, each stored with a 32-bit length prefix.
const DICTIONARY_TOKENS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// Common header values that follow the tokens, without length prefixes.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
    "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// The SPDY/3 zlib dictionary (1423 bytes, Adler-32 0xe3c6a7c2).
pub static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut dict = Vec::with_capacity(1423);
    for token in DICTIONARY_TOKENS {
        dict.extend_from_slice(&(token.len() as u32).to_be_bytes());
        dict.extend_from_slice(token.as_bytes());
    }
    dict.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    dict
});

#[derive(Debug, thiserror::Error)]
pub enum ZlibError {
    #[error("header compression failed: {0}")]
    Compress(#[from] flate2::CompressError),
    #[error("header decompression failed: {0}")]
    Decompress(#[from] flate2::DecompressError),
    #[error("header block decompresses to more than {0} bytes")]
    TooLarge(usize),
    #[error("header compressor made no progress")]
    Stalled,
}

/// Decompressed header blocks larger than this are refused.
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// Compresses this endpoint's header blocks.
pub struct HeaderCompressor {
    inner: Compress,
    primed: bool,
}

impl Default for HeaderCompressor {
    fn default() -> Self {
        HeaderCompressor { inner: Compress::new(Compression::default(), true), primed: false }
    }
}

impl HeaderCompressor {
    /// Compresses one uncompressed header block; the result ends on a sync flush.
    pub fn compress(&mut self, plain: &[u8]) -> Result<Vec<u8>, ZlibError> {
        if !self.primed {
            self.inner.set_dictionary(&DICTIONARY)?;
            self.primed = true;
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let start_in = self.inner.total_in();
        loop {
            let consumed = (self.inner.total_in() - start_in) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let before = (self.inner.total_in(), self.inner.total_out());
            self.inner.compress_vec(&plain[consumed..], &mut out, FlushCompress::Sync)?;
            let all_in = (self.inner.total_in() - start_in) as usize == plain.len();
            // A sync flush is complete once all input is taken and output space is left over.
            if all_in && out.len() < out.capacity() {
                return Ok(out);
            }
            if (self.inner.total_in(), self.inner.total_out()) == before && out.len() < out.capacity() {
                return Err(ZlibError::Stalled);
            }
        }
    }
}

/// Decompresses the peer's header blocks.
pub struct HeaderDecompressor {
    inner: Decompress,
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        HeaderDecompressor { inner: Decompress::new(true) }
    }
}

impl HeaderDecompressor {
    /// Decompresses one header block of the peer's zlib stream.
    pub fn decompress(&mut self, block: &[u8]) -> Result<Vec<u8>, ZlibError> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let start_in = self.inner.total_in();
        loop {
            let consumed = (self.inner.total_in() - start_in) as usize;
            if out.capacity() - out.len() < 64 {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(ZlibError::TooLarge(MAX_HEADER_BLOCK));
                }
                out.reserve(out.len().max(256));
            }
            let before = (self.inner.total_in(), self.inner.total_out());
            match self.inner.decompress_vec(&block[consumed..], &mut out, FlushDecompress::Sync) {
                Ok(Status::StreamEnd) => return Ok(out),
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inner.set_dictionary(&DICTIONARY)?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            let all_in = (self.inner.total_in() - start_in) as usize == block.len();
            if all_in && out.len() < out.capacity() {
                return Ok(out);
            }
            if (self.inner.total_in(), self.inner.total_out()) == before && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::streams::spdy::frame::{decode_header_block, encode_header_block, header};

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in data {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn dictionary_matches_the_spdy3_checksum() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(adler32(&DICTIONARY), 0xe3c6_a7c2);
    }

    #[test]
    fn header_blocks_round_trip_through_one_stream() {
        let mut c = HeaderCompressor::default();
        let mut d = HeaderDecompressor::default();
        for i in 0..20 {
            let headers = vec![
                ("streamtype".to_string(), "data".to_string()),
                ("port".to_string(), format!("{}", 8000 + i)),
                ("requestid".to_string(), i.to_string()),
            ];
            let plain = encode_header_block(&headers);
            let compressed = c.compress(&plain).unwrap();
            assert_eq!(&compressed[compressed.len() - 4..], &[0, 0, 0xff, 0xff], "sync flush marker");
            assert_eq!(d.decompress(&compressed).unwrap(), plain);
        }
        // An empty header block (what a SYN_REPLY carries) also round trips.
        let empty = encode_header_block(&[]);
        assert_eq!(d.decompress(&c.compress(&empty).unwrap()).unwrap(), empty);
        // Large values cross many output buffer refills.
        let big = encode_header_block(&[("x".to_string(), "y".repeat(200_000))]);
        assert_eq!(d.decompress(&c.compress(&big).unwrap()).unwrap(), big);
    }

    #[test]
    fn first_block_announces_the_dictionary() {
        let mut c = HeaderCompressor::default();
        let block = c.compress(&encode_header_block(&[])).unwrap();
        assert_eq!(block[0], 0x78);
        assert_ne!(block[1] & 0x20, 0, "FDICT set");
        assert_eq!(&block[2..6], &0xe3c6_a7c2u32.to_be_bytes());
    }

    /// Header blocks of two SYN_STREAMs kubectl 1.32 sent for `port-forward` (one zlib stream).
    #[test]
    fn decodes_kubectl_port_forward_syn_streams() {
        let first: &[u8] = b"x\xf9\xe3\xc6\xa7\xc2\x02%:p:+)JM\xcc\x85\x16%\xac\xa9\xa0\x80\x86\x14\xcbE\xa0$\xccda\xc0\xc0\xc0\xc0Y\x04\x89\xc4LP\xe2f4\x00\x00\x00\x00\xff\xff";
        let second: &[u8] = b"\x82j%\xa4\x06\xd5hP)\x95\x08\x00\x00\x00\xff\xff";
        let mut d = HeaderDecompressor::default();
        let h1 = decode_header_block(&d.decompress(first).unwrap()).unwrap();
        assert_eq!(header(&h1, "streamtype"), Some("error"));
        assert_eq!(header(&h1, "port"), Some("80"));
        assert_eq!(header(&h1, "requestid"), Some("0"));
        let h2 = decode_header_block(&d.decompress(second).unwrap()).unwrap();
        assert_eq!(header(&h2, "streamtype"), Some("data"));
        assert_eq!(header(&h2, "requestid"), Some("0"));
    }

    /// The empty SYN_REPLY header blocks a Kubernetes server sends decode as no headers.
    #[test]
    fn decodes_server_syn_reply_blocks() {
        let first: &[u8] = b"x\xbb\xe3\xc6\xa7\xc2\x02\xa6#\x06\x00\x00\x00\x00\xff\xff";
        let next: &[u8] = b"\x02\x01\x00\x00\x00\x00\xff\xff";
        let mut d = HeaderDecompressor::default();
        assert!(decode_header_block(&d.decompress(first).unwrap()).unwrap().is_empty());
        assert!(decode_header_block(&d.decompress(next).unwrap()).unwrap().is_empty());
    }
}
