//! A reference decoder for CPU profiles: google/pprof's `proto/profile.proto`
//! (`perftools.profiles`) messages declared by hand for `prost` (field numbers and types from
//! the .proto), the gunzip around them, and a check that every id a profile uses resolves.
//!
//! Included by path (`#[path = "support/pprof_proto.rs"] mod pprof_proto;`).

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::Read as _;

use prost::Message;

/// `perftools.profiles.Profile`.
#[derive(Clone, PartialEq, Message)]
pub struct Profile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "7")]
    pub drop_frames: i64,
    #[prost(int64, tag = "8")]
    pub keep_frames: i64,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

/// `perftools.profiles.ValueType`.
#[derive(Clone, PartialEq, Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// `perftools.profiles.Sample`.
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

/// `perftools.profiles.Label`.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    pub num: i64,
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

/// `perftools.profiles.Mapping`.
#[derive(Clone, PartialEq, Message)]
pub struct Mapping {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    #[prost(int64, tag = "5")]
    pub filename: i64,
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

/// `perftools.profiles.Location`.
#[derive(Clone, PartialEq, Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    #[prost(uint64, tag = "3")]
    pub address: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
}

/// `perftools.profiles.Line`.
#[derive(Clone, PartialEq, Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
}

/// `perftools.profiles.Function`.
#[derive(Clone, PartialEq, Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

/// Gunzips and decodes a profile as served, then checks it is self-consistent.
pub fn decode_gzipped(body: &[u8]) -> Profile {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut raw)
        .expect("gzip");
    let profile = Profile::decode(raw.as_slice()).expect("valid pprof protobuf");
    check_consistent(&profile);
    profile
}

impl Profile {
    /// A string of the table, by index.
    pub fn str(&self, index: i64) -> &str {
        &self.string_table[usize::try_from(index).expect("non-negative string index")]
    }

    /// The function names of each sample's stack (inlined frames included), innermost first.
    pub fn stacks(&self) -> Vec<Vec<&str>> {
        let functions: HashMap<u64, &Function> = self.function.iter().map(|f| (f.id, f)).collect();
        let locations: HashMap<u64, &Location> = self.location.iter().map(|l| (l.id, l)).collect();
        self.sample
            .iter()
            .map(|s| {
                s.location_id
                    .iter()
                    .flat_map(|id| &locations[id].line)
                    .map(|line| self.str(functions[&line.function_id].name))
                    .collect()
            })
            .collect()
    }

    /// The numeric label `key` of sample `i`.
    pub fn num_label(&self, i: usize, key: &str) -> Option<i64> {
        self.sample[i]
            .label
            .iter()
            .find(|l| self.str(l.key) == key)
            .map(|l| l.num)
    }

    /// The comments, as text.
    pub fn comments(&self) -> Vec<&str> {
        self.comment.iter().map(|&c| self.str(c)).collect()
    }
}

/// Every id a profile refers to exists exactly once, every string index is in the table, and
/// the table starts with "" (what `go tool pprof` checks when it reads a profile).
pub fn check_consistent(p: &Profile) {
    assert_eq!(p.string_table.first().map(String::as_str), Some(""));
    let strings = p.string_table.len() as i64;
    let in_table = |i: i64| assert!((0..strings).contains(&i), "string index {i} of {strings}");
    let unique = |ids: Vec<u64>, what: &str| -> HashSet<u64> {
        let set: HashSet<u64> = ids.iter().copied().collect();
        assert_eq!(set.len(), ids.len(), "duplicate {what} ids");
        assert!(!set.contains(&0), "{what} id 0");
        set
    };
    let mappings = unique(p.mapping.iter().map(|m| m.id).collect(), "mapping");
    let locations = unique(p.location.iter().map(|l| l.id).collect(), "location");
    let functions = unique(p.function.iter().map(|f| f.id).collect(), "function");
    for t in p.sample_type.iter().chain(&p.period_type) {
        in_table(t.r#type);
        in_table(t.unit);
    }
    for s in &p.sample {
        assert_eq!(
            s.value.len(),
            p.sample_type.len(),
            "one value per sample type"
        );
        for id in &s.location_id {
            assert!(locations.contains(id), "sample names location {id}");
        }
        for l in &s.label {
            in_table(l.key);
            in_table(l.str);
        }
    }
    for m in &p.mapping {
        assert!(m.memory_start < m.memory_limit);
        in_table(m.filename);
    }
    for l in &p.location {
        assert!(l.mapping_id == 0 || mappings.contains(&l.mapping_id));
        for line in &l.line {
            assert!(
                functions.contains(&line.function_id),
                "line names function {}",
                line.function_id
            );
        }
    }
    for f in &p.function {
        in_table(f.name);
        in_table(f.system_name);
        in_table(f.filename);
    }
    for &c in &p.comment {
        in_table(c);
    }
}
