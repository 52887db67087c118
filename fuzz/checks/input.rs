//! Turns fuzz bytes into typed values, without any fuzzing dependency, so that
//! `tests/fuzz_regressions.rs` can decode a corpus file exactly as the fuzz target did.
//!
//! Every read succeeds: past the end of the data, numbers read as zero and byte strings as
//! empty, so any input decodes to some sequence of operations.

// Each fuzz target uses a subset of the readers.
#![allow(dead_code)]

use std::borrow::Cow;

/// A cursor over one fuzz input.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next `N` bytes, zero-padded past the end.
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        out
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    /// A little-endian `i64`.
    pub fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.array())
    }

    /// A length-prefixed byte string: one length byte below `0xF0`, or `0xFx` and one more
    /// byte for a 12-bit length (up to 4095), cut short at the end of the data.
    pub fn bytes(&mut self) -> &'a [u8] {
        let first = self.byte();
        let len = if first < 0xF0 {
            usize::from(first)
        } else {
            usize::from(first & 0x0F) << 8 | usize::from(self.byte())
        };
        let (head, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A length-prefixed string; invalid UTF-8 becomes U+FFFD.
    pub fn text(&mut self) -> Cow<'a, str> {
        String::from_utf8_lossy(self.bytes())
    }

    /// One of `choices` (by the next byte), or an arbitrary string when the byte is past them.
    pub fn pick_or_text(&mut self, choices: &[&'static str]) -> Cow<'a, str> {
        let i = usize::from(self.byte());
        match choices.get(i % (choices.len() + 1)) {
            Some(&choice) => Cow::Borrowed(choice),
            None => self.text(),
        }
    }
}
