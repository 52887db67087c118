//! The pprof profile format (`perftools.profiles.Profile`, google/pprof
//! `proto/profile.proto`), written by hand like the metrics exposition: a handful of
//! messages, each encoded into a scratch buffer and copied in behind its length.

use std::collections::HashMap;

use super::symbolize::Symbolized;

// Field numbers of profile.proto.
const PROFILE_SAMPLE_TYPE: u32 = 1;
const PROFILE_SAMPLE: u32 = 2;
const PROFILE_MAPPING: u32 = 3;
const PROFILE_LOCATION: u32 = 4;
const PROFILE_FUNCTION: u32 = 5;
const PROFILE_STRING_TABLE: u32 = 6;
const PROFILE_TIME_NANOS: u32 = 9;
const PROFILE_DURATION_NANOS: u32 = 10;
const PROFILE_PERIOD_TYPE: u32 = 11;
const PROFILE_PERIOD: u32 = 12;
const PROFILE_COMMENT: u32 = 13;
const VALUE_TYPE_TYPE: u32 = 1;
const VALUE_TYPE_UNIT: u32 = 2;
const SAMPLE_LOCATION_ID: u32 = 1;
const SAMPLE_VALUE: u32 = 2;
const SAMPLE_LABEL: u32 = 3;
const LABEL_KEY: u32 = 1;
const LABEL_STR: u32 = 2;
const LABEL_NUM: u32 = 3;
const MAPPING_ID: u32 = 1;
const MAPPING_MEMORY_START: u32 = 2;
const MAPPING_MEMORY_LIMIT: u32 = 3;
const MAPPING_FILE_OFFSET: u32 = 4;
const MAPPING_FILENAME: u32 = 5;
const MAPPING_HAS_FUNCTIONS: u32 = 7;
const MAPPING_HAS_FILENAMES: u32 = 8;
const MAPPING_HAS_LINE_NUMBERS: u32 = 9;
const MAPPING_HAS_INLINE_FRAMES: u32 = 10;
const LOCATION_ID: u32 = 1;
const LOCATION_MAPPING_ID: u32 = 2;
const LOCATION_ADDRESS: u32 = 3;
const LOCATION_LINE: u32 = 4;
const LINE_FUNCTION_ID: u32 = 1;
const LINE_LINE: u32 = 2;
const FUNCTION_ID: u32 = 1;
const FUNCTION_NAME: u32 = 2;
const FUNCTION_SYSTEM_NAME: u32 = 3;
const FUNCTION_FILENAME: u32 = 4;

const VARINT: u32 = 0;
const LEN: u32 = 2;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(out, u64::from(field << 3 | wire));
}

/// A varint field, left out when zero (proto3 defaults).
fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_tag(out, field, VARINT);
        put_varint(out, v);
    }
}

/// An `int64` field: negative values are ten-byte two's-complement varints.
fn put_int(out: &mut Vec<u8>, field: u32, v: i64) {
    put_uint(out, field, v as u64);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_tag(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A packed repeated varint field (proto3's encoding for repeated scalars).
fn put_packed(
    out: &mut Vec<u8>,
    field: u32,
    values: impl Iterator<Item = u64>,
    scratch: &mut Vec<u8>,
) {
    scratch.clear();
    for v in values {
        put_varint(scratch, v);
    }
    if !scratch.is_empty() {
        put_bytes(out, field, scratch);
    }
}

/// The string table: index 0 is always "".
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Strings {
        let mut strings = Strings {
            table: Vec::new(),
            index: HashMap::new(),
        };
        strings.get("");
        strings
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// One aggregated sample: its stack (innermost first), thread and count.
pub(crate) struct StackCount<'a> {
    pub(crate) stack: &'a [u64],
    pub(crate) thread_id: u32,
    pub(crate) thread_name: Option<&'a str>,
    pub(crate) count: u64,
}

/// What goes around the samples.
pub(crate) struct Header<'a> {
    pub(crate) time_nanos: i64,
    pub(crate) duration_nanos: i64,
    /// Nanoseconds of CPU time per sample.
    pub(crate) period_nanos: i64,
    pub(crate) comments: &'a [String],
}

/// Encodes a CPU profile as Go's runtime/pprof writes it: sample types `samples/count` and
/// `cpu/nanoseconds`, period type `cpu/nanoseconds`. Every sample also carries its thread as
/// labels (`thread_id`, and `thread` when the thread still had a name at the end).
pub(crate) fn encode(
    header: &Header<'_>,
    samples: &[StackCount<'_>],
    symbols: &Symbolized,
) -> Vec<u8> {
    let mut strings = Strings::new();
    let mut out = Vec::new();
    let mut msg = Vec::new();
    let mut inner = Vec::new();
    let mut scratch = Vec::new();

    let samples_s = strings.get("samples");
    let count_s = strings.get("count");
    let cpu_s = strings.get("cpu");
    let nanos_s = strings.get("nanoseconds");
    for (ty, unit) in [(samples_s, count_s), (cpu_s, nanos_s)] {
        msg.clear();
        put_int(&mut msg, VALUE_TYPE_TYPE, ty);
        put_int(&mut msg, VALUE_TYPE_UNIT, unit);
        put_bytes(&mut out, PROFILE_SAMPLE_TYPE, &msg);
    }

    // Locations: one per address, numbered in order of first appearance.
    let mut location_ids: HashMap<u64, u64> = HashMap::new();
    let mut location_order: Vec<u64> = Vec::new();
    let thread_id_s = strings.get("thread_id");
    let thread_s = strings.get("thread");
    for sample in samples {
        for &address in sample.stack {
            location_ids.entry(address).or_insert_with(|| {
                location_order.push(address);
                location_order.len() as u64
            });
        }
        msg.clear();
        put_packed(
            &mut msg,
            SAMPLE_LOCATION_ID,
            sample.stack.iter().map(|a| location_ids[a]),
            &mut scratch,
        );
        let cpu = sample.count as i64 * header.period_nanos;
        put_packed(
            &mut msg,
            SAMPLE_VALUE,
            [sample.count, cpu as u64].into_iter(),
            &mut scratch,
        );
        inner.clear();
        put_int(&mut inner, LABEL_KEY, thread_id_s);
        put_int(&mut inner, LABEL_NUM, i64::from(sample.thread_id));
        put_bytes(&mut msg, SAMPLE_LABEL, &inner);
        if let Some(name) = sample.thread_name {
            inner.clear();
            put_int(&mut inner, LABEL_KEY, thread_s);
            put_int(&mut inner, LABEL_STR, strings.get(name));
            put_bytes(&mut msg, SAMPLE_LABEL, &inner);
        }
        put_bytes(&mut out, PROFILE_SAMPLE, &msg);
    }

    // Mappings: the executable segments (ids are segment index + 1).
    for (i, segment) in symbols.segments.iter().enumerate() {
        let path = &symbols.objects[segment.object].path;
        msg.clear();
        put_uint(&mut msg, MAPPING_ID, i as u64 + 1);
        put_uint(&mut msg, MAPPING_MEMORY_START, segment.start);
        put_uint(&mut msg, MAPPING_MEMORY_LIMIT, segment.limit);
        put_uint(&mut msg, MAPPING_FILE_OFFSET, segment.file_offset);
        put_int(&mut msg, MAPPING_FILENAME, strings.get(path));
        put_uint(&mut msg, MAPPING_HAS_FUNCTIONS, 1);
        put_uint(&mut msg, MAPPING_HAS_FILENAMES, 1);
        put_uint(&mut msg, MAPPING_HAS_LINE_NUMBERS, 1);
        put_uint(&mut msg, MAPPING_HAS_INLINE_FRAMES, 1);
        put_bytes(&mut out, PROFILE_MAPPING, &msg);
    }

    // Locations and the functions their lines name.
    let mut function_ids: HashMap<(i64, i64), u64> = HashMap::new();
    let mut functions: Vec<(i64, i64)> = Vec::new();
    for (i, &address) in location_order.iter().enumerate() {
        msg.clear();
        put_uint(&mut msg, LOCATION_ID, i as u64 + 1);
        let (segment, frames) = symbols
            .frames
            .get(&address)
            .map(|(s, f)| (*s, f.as_slice()))
            .unwrap_or((None, &[]));
        if let Some(segment) = segment {
            put_uint(&mut msg, LOCATION_MAPPING_ID, segment as u64 + 1);
        }
        put_uint(&mut msg, LOCATION_ADDRESS, address);
        for frame in frames {
            let key = (strings.get(&frame.function), strings.get(&frame.file));
            let id = *function_ids.entry(key).or_insert_with(|| {
                functions.push(key);
                functions.len() as u64
            });
            inner.clear();
            put_uint(&mut inner, LINE_FUNCTION_ID, id);
            put_int(&mut inner, LINE_LINE, i64::from(frame.line));
            put_bytes(&mut msg, LOCATION_LINE, &inner);
        }
        put_bytes(&mut out, PROFILE_LOCATION, &msg);
    }
    for (i, &(name, file)) in functions.iter().enumerate() {
        msg.clear();
        put_uint(&mut msg, FUNCTION_ID, i as u64 + 1);
        put_int(&mut msg, FUNCTION_NAME, name);
        // The system name is the readable one too: `go tool pprof` shows either, and the
        // point of demangling is that no view shows the mangled form.
        put_int(&mut msg, FUNCTION_SYSTEM_NAME, name);
        put_int(&mut msg, FUNCTION_FILENAME, file);
        put_bytes(&mut out, PROFILE_FUNCTION, &msg);
    }

    put_int(&mut out, PROFILE_TIME_NANOS, header.time_nanos);
    put_int(&mut out, PROFILE_DURATION_NANOS, header.duration_nanos);
    msg.clear();
    put_int(&mut msg, VALUE_TYPE_TYPE, cpu_s);
    put_int(&mut msg, VALUE_TYPE_UNIT, nanos_s);
    put_bytes(&mut out, PROFILE_PERIOD_TYPE, &msg);
    put_int(&mut out, PROFILE_PERIOD, header.period_nanos);
    let comments: Vec<u64> = header
        .comments
        .iter()
        .map(|c| strings.get(c) as u64)
        .collect();
    put_packed(
        &mut out,
        PROFILE_COMMENT,
        comments.into_iter(),
        &mut scratch,
    );
    // The string table goes last: only now is it complete. Field order does not matter to
    // protobuf decoders.
    for s in &strings.table {
        put_bytes(&mut out, PROFILE_STRING_TABLE, s.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_negative_ints_encode_as_protobuf_does() {
        let mut out = Vec::new();
        put_varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        out.clear();
        put_int(&mut out, 1, -1);
        assert_eq!(out.len(), 1 + 10);
        out.clear();
        put_uint(&mut out, 1, 0);
        assert!(out.is_empty(), "proto3 leaves zero out");
    }

    #[test]
    fn the_string_table_starts_empty_and_dedups() {
        let mut s = Strings::new();
        assert_eq!(s.get(""), 0);
        assert_eq!(s.get("a"), 1);
        assert_eq!(s.get("a"), 1);
        assert_eq!(s.table, ["", "a"]);
    }
}
