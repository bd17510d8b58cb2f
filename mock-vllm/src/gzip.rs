//! A minimal gzip writer (RFC 1952 around "stored" deflate blocks, RFC 1951 §3.2.4): valid gzip
//! that any decoder reads, without a compression library. Used where vLLM's server gzips a body
//! (`/metrics`, when the client accepts it).

/// Largest stored deflate block.
const MAX_BLOCK: usize = 0xFFFF;

/// `data` as a gzip member.
pub(crate) fn encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / MAX_BLOCK * 5 + 23);
    // Magic, deflate, no flags, no mtime, no extra flags, OS "unknown".
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let mut blocks = data.chunks(MAX_BLOCK).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let last = u8::from(blocks.peek().is_none());
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.push(last);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    // ISIZE is the length modulo 2^32.
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// CRC-32 (IEEE 802.3, reflected), as gzip's trailer needs it.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(u32::MAX, |crc, byte| {
        (0..8).fold(crc ^ u32::from(*byte), |c, _| {
            if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            }
        })
    })
}

/// Whether an `Accept-Encoding` value accepts gzip (prometheus_client's `gzip_accepted`: any
/// comma-separated item whose name, before `;`, is `gzip` in any case).
pub(crate) fn accepted(accept_encoding: &str) -> bool {
    accept_encoding
        .split(',')
        .any(|item| item.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("gzip"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads back a gzip member made of stored blocks.
    fn decode(gz: &[u8]) -> Vec<u8> {
        assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
        let mut at = 10;
        let mut out = Vec::new();
        loop {
            let last = gz[at] & 1 == 1;
            assert_eq!(gz[at] & 6, 0, "stored block");
            let len = usize::from(u16::from_le_bytes([gz[at + 1], gz[at + 2]]));
            let nlen = u16::from_le_bytes([gz[at + 3], gz[at + 4]]);
            assert_eq!(!nlen as usize, len);
            out.extend_from_slice(&gz[at + 5..at + 5 + len]);
            at += 5 + len;
            if last {
                break;
            }
        }
        assert_eq!(gz[at..at + 4], crc32(&out).to_le_bytes());
        assert_eq!(gz[at + 4..at + 8], (out.len() as u32).to_le_bytes());
        assert_eq!(gz.len(), at + 8);
        out
    }

    #[test]
    fn crc32_matches_the_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn round_trips_empty_small_and_multi_block_bodies() {
        for data in
            [Vec::new(), b"vllm:prompt_tokens_total 1.0\n".to_vec(), vec![7u8; 3 * MAX_BLOCK + 10]]
        {
            assert_eq!(decode(&encode(&data)), data);
        }
    }

    #[test]
    fn gzip_is_accepted_as_prometheus_client_reads_it() {
        assert!(accepted("gzip"));
        assert!(accepted("deflate, GZIP;q=0.5"));
        assert!(!accepted("identity"));
        assert!(!accepted("gzipx, br"));
    }
}
