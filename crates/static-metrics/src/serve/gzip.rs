//! gzip framing around a reusable raw-deflate compressor.
//!
//! `flate2::write::GzEncoder` allocates a fresh compressor (hundreds of KiB of state) per use;
//! scraping every few seconds would churn that allocation forever. Writing the 10-byte gzip
//! header and 8-byte trailer (RFC 1952) ourselves lets the compressor be reset and reused.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Member header: magic, deflate, no flags, no mtime, XFL 4 (fastest), OS 255 (unknown).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];

/// A compressor tuned for scrapes.
pub(crate) fn new_compressor() -> Compress {
    // Fastest level: metrics text compresses well at any level, and a scrape should answer
    // quickly (OpenMetrics asks for under a second) more than it should save the last bytes.
    Compress::new(Compression::fast(), false)
}

/// Writes `input` as one gzip member into `out` (cleared first), resetting `deflate` for reuse.
pub(crate) fn gzip_into(
    deflate: &mut Compress,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), flate2::CompressError> {
    deflate.reset();
    out.clear();
    // Stored blocks bound deflate's expansion at 5 bytes per 16 KiB block; reserving that up
    // front normally lets the loop finish in one call.
    out.reserve(HEADER.len() + input.len() + input.len() / 3000 + 64 + 8);
    out.extend_from_slice(&HEADER);
    loop {
        let consumed = deflate.total_in() as usize;
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        if deflate.compress_vec(&input[consumed..], out, FlushCompress::Finish)?
            == Status::StreamEnd
        {
            break;
        }
    }
    let mut crc = Crc::new();
    crc.update(input);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the input length modulo 2^32 by definition, so truncation is the spec.
    out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn round_trips_through_a_standard_decoder() {
        let mut deflate = new_compressor();
        let mut out = Vec::new();
        for input in [
            &b""[..],
            b"up 1\n",
            &b"metric_name{label=\"value\"} 12345\n".repeat(5000),
        ] {
            gzip_into(&mut deflate, input, &mut out).unwrap();
            assert_eq!(gunzip(&out), input);
        }
    }

    #[test]
    fn incompressible_input_grows_the_buffer_as_needed() {
        // A xorshift stream: incompressible, deterministic.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let input: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut out = Vec::new();
        gzip_into(&mut new_compressor(), &input, &mut out).unwrap();
        assert_eq!(gunzip(&out), input);
    }
}
