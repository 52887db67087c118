//! The Redis request observer (SPEC 3.2): requests, latency and errors per recognised command,
//! plus rejected commands under their real, sanitised, cardinality-capped name.
//!
//! The common case (a recognised command) costs a trim and an ASCII upper-case into a stack
//! buffer, one generated `match`, one counter and one histogram: no allocation, no lock, no
//! hashing. Anything else (non-ASCII input, unsupported commands) takes a cold path.

use std::fmt;
use std::time::Duration;

use crate::manifest::domain::{RedisCommand, RedisOutcome, REDIS_UNSUPPORTED_COMMAND};
use crate::manifest::family;
use crate::storage::{Exemplar, ExemplarError, Store};

/// Raw bytes of an unsupported command kept before the UTF-8 check (SPEC 3.2 step 1).
const RAW_CAP: usize = 256;
/// Longest unsupported-command label, in bytes after upper-casing (SPEC 3.2 step 4).
const LABEL_CAP: usize = 64;
/// Label of an unsupported command whose bytes are not UTF-8.
const INVALID_UTF8: &str = "invalid_utf8";
/// Label of an empty (or whitespace-only) unsupported command.
const UNKNOWN: &str = "unknown";

/// Length in bytes of the longest recognised command name (`ZREMRANGEBYSCORE`, 16).
const MAX_NAME: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < RedisCommand::ALL.len() {
        let len = RedisCommand::ALL[i].as_str().len();
        if len > max {
            max = len;
        }
        i += 1;
    }
    max
};

/// Longest trimmed input that can still upper-case to a recognised name. Every name is ASCII,
/// and the characters whose simple upper-case form is ASCII are at most 2 bytes long (`ſ` and
/// `ı`; a unit test checks this over all of Unicode).
const MAX_MATCHABLE: usize = MAX_NAME * 2;

/// One finished Redis request, as the protocol adapter saw it (SPEC 5.6).
///
/// ```
/// use std::time::Duration;
/// use elastickv_metrics::elastickv::redis::RedisRequestReport;
///
/// let report = RedisRequestReport {
///     command: b"get",
///     is_error: false,
///     duration: Duration::from_micros(180),
///     unsupported: false,
/// };
/// assert_eq!(report.command, b"get");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedisRequestReport<'a> {
    /// The first argument of the request exactly as received: any bytes, any case, possibly
    /// padded or not UTF-8.
    pub command: &'a [u8],
    /// Whether the reply was an error.
    pub is_error: bool,
    /// From receiving the request until its reply was complete.
    pub duration: Duration,
    /// Whether the command was rejected because no handler implements it; its sanitised name
    /// is then also counted in `elastickv_redis_unsupported_commands_total`.
    pub unsupported: bool,
}

/// Records Redis requests. Obtained from [`Registry::redis_observer`]; the `Default` value
/// records nothing.
///
/// ```
/// use std::time::Duration;
/// use elastickv_metrics::{Registry, encode::Format};
/// use elastickv_metrics::elastickv::redis::RedisRequestReport;
///
/// let registry = Registry::new("n1", "10.0.0.1:50051");
/// let redis = registry.redis_observer();
/// redis.observe(&RedisRequestReport {
///     command: b" get ",
///     is_error: false,
///     duration: Duration::from_millis(2),
///     unsupported: false,
/// });
/// let text = registry.render(Format::Text);
/// assert!(text.contains(r#"elastickv_redis_requests_total{command="GET",outcome="success",node_id="n1",node_address="10.0.0.1:50051"} 1"#));
/// ```
///
/// [`Registry::redis_observer`]: crate::Registry::redis_observer
#[derive(Clone, Copy, Default)]
pub struct RedisObserver {
    store: Option<&'static Store>,
}

impl RedisObserver {
    pub(crate) fn new(store: &'static Store) -> Self {
        RedisObserver { store: Some(store) }
    }

    /// Records one request: `elastickv_redis_requests_total` and
    /// `elastickv_redis_request_duration_seconds` under the normalised command and outcome,
    /// `elastickv_redis_errors_total` if it failed, and for an unsupported command also
    /// `elastickv_redis_unsupported_commands_total` under its sanitised raw name.
    #[inline]
    pub fn observe(&self, report: &RedisRequestReport<'_>) {
        self.record(report, None);
    }

    /// [`observe`](Self::observe), keeping `exemplar` (typically the request's trace and span
    /// id) as the latest exemplar of the latency bucket the request falls in. The request is
    /// always recorded; the result says whether the exemplar was kept (see [`ExemplarError`]).
    #[inline]
    pub fn observe_with_exemplar(
        &self,
        report: &RedisRequestReport<'_>,
        exemplar: &Exemplar<'_>,
    ) -> Result<(), ExemplarError> {
        self.record(report, Some(exemplar))
            .unwrap_or(Err(ExemplarError::NotDeclared))
    }

    /// The body of both: `exemplar` is `None` for [`observe`](Self::observe), where inlining
    /// folds the exemplar branch away. `None` back means a no-op observer.
    #[inline(always)]
    fn record(
        &self,
        report: &RedisRequestReport<'_>,
        exemplar: Option<&Exemplar<'_>>,
    ) -> Option<Result<(), ExemplarError>> {
        let store = self.store?;
        let command = normalize_command(report.command);
        let outcome = if report.is_error {
            RedisOutcome::Error
        } else {
            RedisOutcome::Success
        };
        store
            .counter(family::elastickv_redis_requests_total(command, outcome))
            .inc();
        let latency = store.histogram(family::elastickv_redis_request_duration_seconds(
            command, outcome,
        ));
        let kept = match exemplar {
            None => {
                latency.observe_duration(report.duration);
                Ok(())
            }
            Some(e) => latency.observe_duration_with_exemplar(report.duration, e),
        };
        if report.is_error {
            store
                .counter(family::elastickv_redis_errors_total(command))
                .inc();
        }
        if report.unsupported {
            observe_unsupported(store, report.command);
        }
        Some(kept)
    }
}

impl fmt::Debug for RedisObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisObserver")
            .field("noop", &self.store.is_none())
            .finish()
    }
}

/// The command label of the general Redis families: the trimmed (Unicode `White_Space`),
/// upper-cased input if it is one of the 82 recognised names, else
/// [`RedisCommand::Unknown`]. Bytes that are not UTF-8 never match.
///
/// ```
/// use elastickv_metrics::elastickv::redis::normalize_command;
/// use elastickv_metrics::manifest::domain::RedisCommand;
///
/// assert_eq!(normalize_command(b"  get \n"), RedisCommand::Get);
/// assert_eq!(normalize_command("ſet".as_bytes()), RedisCommand::Set);
/// assert_eq!(normalize_command(b"FOO"), RedisCommand::Unknown);
/// ```
#[inline]
pub fn normalize_command(raw: &[u8]) -> RedisCommand {
    let core = trim_ascii_whitespace(raw);
    let Some((lo, hi)) = load_short(core) else {
        return normalize_slow(core);
    };
    if (lo | hi) & HIGH_BITS != 0 {
        return normalize_slow(core);
    }
    // All ASCII: `raw` is ASCII whitespace around `core`, so the ASCII trim was the Unicode
    // trim, and ASCII upper-casing is the simple case mapping. The buffer is written as whole
    // words: `from_label` reads it in words too, and a word load from bytes stored one at a
    // time stalls store forwarding (that stall was half this function's cost).
    let name = (u128::from(ascii_upper(lo)) | u128::from(ascii_upper(hi)) << 64).to_le_bytes();
    let name = &name[..core.len()];
    debug_assert!(name.is_ascii());
    // SAFETY: `core` is ASCII (checked above) and upper-casing keeps it ASCII; ASCII is UTF-8.
    let name = unsafe { std::str::from_utf8_unchecked(name) };
    RedisCommand::from_label(name).unwrap_or(RedisCommand::Unknown)
}

/// The high bit of every byte of a word.
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
/// One in every byte of a word.
const ONES: u64 = 0x0101_0101_0101_0101;

// `load_short` packs a name into two words.
const _: () = assert!(
    MAX_NAME <= 16,
    "recognised Redis names must fit in 16 bytes"
);

/// `bytes` (at most 16 of them) as two little-endian words, zero-padded; `None` if longer.
///
/// Short inputs are read with overlapping loads (the same byte OR-ed into the same place
/// twice), so no length needs a byte loop.
#[inline]
fn load_short(bytes: &[u8]) -> Option<(u64, u64)> {
    let n = bytes.len();
    let word = |b: &[u8; 8]| u64::from_le_bytes(*b);
    let half = |b: &[u8; 4]| u64::from(u32::from_le_bytes(*b));
    match n {
        0 => Some((0, 0)),
        1..=3 => {
            let (first, mid, last) = (bytes[0], bytes[n / 2], bytes[n - 1]);
            let lo = u64::from(first)
                | u64::from(mid) << (8 * (n / 2))
                | u64::from(last) << (8 * (n - 1));
            Some((lo, 0))
        }
        4..=7 => {
            let head = half(bytes.first_chunk::<4>()?);
            let tail = half(bytes.last_chunk::<4>()?);
            Some((head | tail << (8 * (n - 4)), 0))
        }
        8..=16 => {
            let lo = word(bytes.first_chunk::<8>()?);
            // The last 8 bytes, shifted so that byte 8 lands in the low byte; for n == 8 there
            // is nothing past the first word.
            let tail = word(bytes.last_chunk::<8>()?);
            let hi = tail.checked_shr(8 * (16 - n as u32)).unwrap_or(0);
            Some((lo, hi))
        }
        _ => None,
    }
}

/// ASCII upper-casing of a word whose bytes are all ASCII: subtracts 0x20 from each byte in
/// `a..=z`. Each byte is below 0x80, so the additions never carry into the next byte.
#[inline]
fn ascii_upper(word: u64) -> u64 {
    // Wrapping only so that a misuse on non-ASCII input cannot panic in debug builds.
    let at_least_a = word.wrapping_add(ONES * (0x80 - u64::from(b'a')));
    let above_z = word.wrapping_add(ONES * (0x80 - u64::from(b'z') - 1));
    let lower = at_least_a & !above_z & HIGH_BITS;
    word.wrapping_sub(lower >> 2)
}

/// [`normalize_command`] for input that is long or not ASCII; `core` is already trimmed of
/// ASCII whitespace.
#[cold]
#[inline(never)]
fn normalize_slow(core: &[u8]) -> RedisCommand {
    let (Some(&first), Some(&last)) = (core.first(), core.last()) else {
        return RedisCommand::Unknown;
    };
    // With ASCII at both ends the Unicode trim removes nothing more, so a long input is
    // decided without reading it.
    if first.is_ascii() && last.is_ascii() && core.len() > MAX_MATCHABLE {
        return RedisCommand::Unknown;
    }
    let Ok(text) = std::str::from_utf8(core) else {
        // Invalid bytes are never whitespace, so they stay in the trimmed name.
        return RedisCommand::Unknown;
    };
    let text = text.trim();
    if text.len() > MAX_MATCHABLE {
        return RedisCommand::Unknown;
    }
    let mut buf = [0u8; MAX_NAME];
    let mut len = 0;
    for c in text.chars() {
        let upper = simple_uppercase(c);
        if !upper.is_ascii() || len == MAX_NAME {
            return RedisCommand::Unknown;
        }
        buf[len] = upper as u8;
        len += 1;
    }
    match std::str::from_utf8(&buf[..len]) {
        Ok(name) => RedisCommand::from_label(name).unwrap_or(RedisCommand::Unknown),
        Err(_) => RedisCommand::Unknown,
    }
}

/// Strips the ASCII members of Unicode `White_Space` (tab, LF, VT, FF, CR, space) from both
/// ends. Unlike `<[u8]>::trim_ascii`, this includes VT, as Go's `unicode.IsSpace` does.
#[inline]
fn trim_ascii_whitespace(mut bytes: &[u8]) -> &[u8] {
    const fn is_space(b: u8) -> bool {
        matches!(b, b'\t'..=b'\r' | b' ')
    }
    while let [first, rest @ ..] = bytes {
        if !is_space(*first) {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !is_space(*last) {
            break;
        }
        bytes = rest;
    }
    bytes
}

/// The simple (one character to one character) upper-case mapping of Unicode, as Go's
/// `unicode.ToUpper` applies it: `ſ` → `S`, while `ß`, whose only upper-case form is the two
/// characters `SS`, stays `ß`.
///
/// Rust exposes only the full mapping; where it yields one character that character is the
/// simple mapping. Where it yields several, the simple mapping is the character itself except
/// for the Greek letters with ypogegrammeni, which map to their prosgegrammeni (title-case)
/// forms.
pub(crate) fn simple_uppercase(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_uppercase();
    }
    let mut full = c.to_uppercase();
    match (full.next(), full.next()) {
        (Some(upper), None) => upper,
        _ => {
            let offset = match c as u32 {
                0x1F80..=0x1F87 | 0x1F90..=0x1F97 | 0x1FA0..=0x1FA7 => 8,
                0x1FB3 | 0x1FC3 | 0x1FF3 => 9,
                _ => 0,
            };
            char::from_u32(c as u32 + offset).unwrap_or(c)
        }
    }
}

/// The unsupported-command path: derives the label and counts it.
#[cold]
#[inline(never)]
fn observe_unsupported(store: &'static Store, raw: &[u8]) {
    let mut buf = [0u8; LABEL_CAP];
    let name = unsupported_name(raw, &mut buf);
    // Admission into the 32-name set; past the cap the name resolves to the `other` slot.
    let slot = store.open(REDIS_UNSUPPORTED_COMMAND).resolve(name);
    store
        .counter(family::elastickv_redis_unsupported_commands_total(slot))
        .inc();
}

/// The sanitised name of an unsupported command (SPEC 3.2 steps 1–4), before admission.
fn unsupported_name<'b>(raw: &[u8], buf: &'b mut [u8; LABEL_CAP]) -> &'b str {
    let Some(text) = cut_utf8(raw) else {
        return INVALID_UTF8;
    };
    let text = text.trim();
    if text.is_empty() {
        return UNKNOWN;
    }
    let mut len = 0;
    for c in text.chars() {
        let upper = simple_uppercase(c);
        let width = upper.len_utf8();
        // The longest prefix of whole characters that fits: a label is always valid UTF-8.
        if len + width > LABEL_CAP {
            break;
        }
        upper.encode_utf8(&mut buf[len..len + width]);
        len += width;
    }
    std::str::from_utf8(&buf[..len]).unwrap_or(INVALID_UTF8)
}

/// The first [`RAW_CAP`] bytes of `raw` as text, or `None` if they are not UTF-8.
///
/// A character that the cut splits is dropped when it is valid in the full input: the
/// reference labels such a name `invalid_utf8` although the client sent valid UTF-8 (a
/// deliberate divergence). Bytes beyond the cut are never inspected otherwise, as in the
/// reference.
fn cut_utf8(raw: &[u8]) -> Option<&str> {
    let cut = &raw[..raw.len().min(RAW_CAP)];
    match std::str::from_utf8(cut) {
        Ok(text) => Some(text),
        // `error_len() == None`: the cut ends inside a sequence that may be complete in `raw`.
        Err(e) if e.error_len().is_none() && cut.len() < raw.len() => {
            let boundary = e.valid_up_to();
            if starts_with_char(&raw[boundary..]) {
                std::str::from_utf8(&cut[..boundary]).ok()
            } else {
                None
            }
        }
        Err(_) => None,
    }
}

/// Whether `bytes` begins with one complete, valid UTF-8 character.
fn starts_with_char(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4)];
    match std::str::from_utf8(head) {
        Ok(text) => !text.is_empty(),
        Err(e) => e.valid_up_to() > 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::SCHEMA;

    fn name(raw: &[u8]) -> String {
        let mut buf = [0u8; LABEL_CAP];
        unsupported_name(raw, &mut buf).to_string()
    }

    #[test]
    fn load_short_packs_every_length() {
        let text = b"abcdefghijklmnopq";
        for n in 0..=16 {
            let (lo, hi) = load_short(&text[..n]).expect("short");
            let mut want = [0u8; 16];
            want[..n].copy_from_slice(&text[..n]);
            let got = (u128::from(lo) | u128::from(hi) << 64).to_le_bytes();
            assert_eq!(got, want, "length {n}");
        }
        assert_eq!(load_short(text), None);
    }

    #[test]
    fn ascii_upper_matches_the_byte_mapping() {
        for b in 0u8..0x80 {
            let word = u64::from_le_bytes([b, b'a', b'z', b'`', b'{', b'A', b'Z', 0]);
            let want = u64::from_le_bytes([
                b.to_ascii_uppercase(),
                b'A',
                b'Z',
                b'`',
                b'{',
                b'A',
                b'Z',
                0,
            ]);
            assert_eq!(ascii_upper(word), want, "byte {b:#x}");
        }
    }

    #[test]
    fn max_name_is_the_longest_recognised_name() {
        assert_eq!(MAX_NAME, "ZREMRANGEBYSCORE".len());
    }

    #[test]
    fn characters_that_upper_case_to_ascii_are_at_most_two_bytes() {
        let widest = (0..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|&c| simple_uppercase(c).is_ascii_uppercase())
            .map(char::len_utf8)
            .max();
        assert_eq!(widest, Some(2));
        assert!(MAX_MATCHABLE >= MAX_NAME * widest.unwrap_or(1));
    }

    #[test]
    fn simple_uppercase_follows_go_unicode_to_upper() {
        assert_eq!(simple_uppercase('a'), 'A');
        assert_eq!(simple_uppercase('ſ'), 'S');
        assert_eq!(simple_uppercase('ı'), 'I');
        assert_eq!(simple_uppercase('ß'), 'ß');
        assert_eq!(simple_uppercase('ŉ'), 'ŉ');
        assert_eq!(simple_uppercase('ﬀ'), 'ﬀ');
        assert_eq!(simple_uppercase('é'), 'É');
        assert_eq!(simple_uppercase('ǅ'), 'Ǆ');
        assert_eq!(simple_uppercase('\u{1F80}'), '\u{1F88}');
        assert_eq!(simple_uppercase('\u{1FB3}'), '\u{1FBC}');
        assert_eq!(simple_uppercase('\u{1F88}'), '\u{1F88}');
        assert_eq!(simple_uppercase('\u{1FB6}'), '\u{1FB6}');
    }

    #[test]
    fn normalisation_handles_unicode_whitespace_and_case() {
        assert_eq!(
            normalize_command("\u{3000}get\u{85}".as_bytes()),
            RedisCommand::Get
        );
        assert_eq!(normalize_command(b"\x0bget\x0b"), RedisCommand::Get);
        assert_eq!(normalize_command("ſcan".as_bytes()), RedisCommand::Scan);
        assert_eq!(
            normalize_command("zremrangebyſcore".as_bytes()),
            RedisCommand::Zremrangebyscore
        );
        assert_eq!(
            normalize_command("ſſſſſſſſſſſſſſſſſ".as_bytes()),
            RedisCommand::Unknown
        );
        assert_eq!(normalize_command(b"unknown"), RedisCommand::Unknown);
        assert_eq!(
            normalize_command(b"ZREMRANGEBYSCOREX"),
            RedisCommand::Unknown
        );
        assert_eq!(normalize_command(b"GET\xff"), RedisCommand::Unknown);
        assert_eq!(normalize_command(b""), RedisCommand::Unknown);
        assert_eq!(
            normalize_command("\u{a0}".as_bytes()),
            RedisCommand::Unknown
        );
        assert_eq!(normalize_command("ßet".as_bytes()), RedisCommand::Unknown);
    }

    #[test]
    fn every_recognised_name_normalises_to_itself_in_any_case() {
        for command in RedisCommand::ALL {
            if command == RedisCommand::Unknown {
                continue;
            }
            let name = command.as_str();
            assert_eq!(normalize_command(name.as_bytes()), command);
            assert_eq!(normalize_command(name.to_lowercase().as_bytes()), command);
            assert_eq!(
                normalize_command(format!("\t{name}\u{2028}").as_bytes()),
                command
            );
        }
    }

    #[test]
    fn unsupported_names_follow_the_derivation_steps() {
        assert_eq!(name(b"  foo\t"), "FOO");
        assert_eq!(name(b""), "unknown");
        assert_eq!(name(b" \r\n"), "unknown");
        assert_eq!(name(b"f\xffo"), "invalid_utf8");
        assert_eq!(name("ßfoo".as_bytes()), "ßFOO");
        assert_eq!(name(&[b'a'; 100]), "A".repeat(64));
        let mut bytes = vec![b'a'; 63];
        bytes.extend_from_slice("é".as_bytes());
        assert_eq!(name(&bytes), "A".repeat(63));
    }

    #[test]
    fn a_character_split_by_the_raw_cut_is_dropped_not_invalid() {
        let mut valid = vec![b' '; 255];
        valid.extend_from_slice("éx".as_bytes());
        assert_eq!(name(&valid), "unknown");
        let mut truncated = vec![b'a'; 255];
        truncated.push(0xC3);
        truncated.push(b'x');
        assert_eq!(name(&truncated), "invalid_utf8");
        let mut at_end = vec![b'a'; 10];
        at_end.push(0xC3);
        assert_eq!(name(&at_end), "invalid_utf8");
        // Invalid bytes past the cut are not inspected, as in the reference.
        let mut tail = vec![b'a'; 256];
        tail.push(0xFF);
        assert_eq!(name(&tail), "A".repeat(64));
    }

    #[test]
    fn the_overflow_value_itself_resolves_to_the_overflow_slot() {
        // Upper-casing means no client input yields `other`, but the open set guarantees it
        // could never take a slot anyway.
        let store = Store::new(&SCHEMA);
        let set = store.open(REDIS_UNSUPPORTED_COMMAND);
        assert_eq!(set.resolve("other"), set.overflow());
        assert!(set.view().is_empty());
        assert_eq!(name(b"other"), "OTHER");
    }
}
