//! Fuzz target `redis_command`: Redis command normalisation and the unsupported-command path.
//!
//! An input is a format byte, then a batch of requests (flags, duration, raw command bytes).
//! Each command goes through `normalize_command`, compared with a model written from its
//! documentation, and then through `RedisObserver::observe`. After the batch the exposition is
//! rendered in the chosen format (text or OpenMetrics: parsing is most of a run's cost, so each
//! input pays for one) and parsed strictly, and the counters moved exactly as the model says:
//! requests and errors per normalised command, and unsupported names (derived by a model of
//! SPEC 3.2) under their own label or `other`, with at most 32 names ever admitted.
//!
//! Consecutive inputs share a registry (see `shared.rs`); the checks compare the counters
//! after the batch with those before it, so they hold whatever earlier inputs did.

use std::collections::HashMap;
use std::time::Duration;

use elastickv_metrics::elastickv::redis::{normalize_command, RedisRequestReport};
use elastickv_metrics::encode::Format;
use elastickv_metrics::manifest::domain::{RedisCommand, REDIS_UNSUPPORTED_COMMAND};
use elastickv_metrics::Registry;

use crate::exposition::{self, Exposition};
use crate::input::Input;
use crate::shared::Rotating;

/// Distinct unsupported-command names a registry admits before using `other`.
const UNSUPPORTED_CAP: usize = 32;
/// Raw bytes of an unsupported command considered (SPEC 3.2 step 1).
const RAW_CAP: usize = 256;
/// Longest unsupported-command label in bytes (SPEC 3.2 step 4).
const LABEL_CAP: usize = 64;
/// Requests per input; more bytes are ignored.
const MAX_REQUESTS: usize = 64;

const REQUESTS: &str = "elastickv_redis_requests_total";
const ERRORS: &str = "elastickv_redis_errors_total";
const UNSUPPORTED: &str = "elastickv_redis_unsupported_commands_total";

/// The registry for the next input (see `shared.rs`).
pub fn registry() -> Registry {
    static REGISTRIES: Rotating = Rotating::new("fuzz-redis", 50);
    REGISTRIES.next()
}

/// Runs one input; panics if a check fails.
pub fn check(registry: &Registry, data: &[u8]) {
    let mut input = Input::new(data);
    let format = if input.byte() & 1 == 0 {
        Format::Text
    } else {
        Format::OpenMetrics
    };
    let before = counters(registry);
    let observer = registry.redis_observer();

    // (sample name, label values) -> expected increase.
    let mut expected: HashMap<(&str, Vec<String>), f64> = HashMap::new();
    let mut unsupported: HashMap<String, f64> = HashMap::new();
    let mut unsupported_total = 0.0;
    let mut inexact = false;
    for _ in 0..MAX_REQUESTS {
        if input.is_empty() {
            break;
        }
        let flags = input.byte();
        let nanos = input.u64();
        let command = input.bytes();

        let normalised = normalize_command(command);
        assert_eq!(
            normalised,
            model_normalize(command),
            "normalize_command({command:?})"
        );
        if normalised != RedisCommand::Unknown {
            assert_eq!(
                normalize_command(normalised.as_str().as_bytes()),
                normalised
            );
        }

        let report = RedisRequestReport {
            command,
            is_error: flags & 1 != 0,
            duration: Duration::from_nanos(nanos),
            unsupported: flags & 2 != 0,
        };
        observer.observe(&report);

        let label = normalised.as_str().to_string();
        let outcome = if report.is_error { "error" } else { "success" };
        *expected
            .entry((REQUESTS, vec![label.clone(), outcome.to_string()]))
            .or_default() += 1.0;
        if report.is_error {
            *expected.entry((ERRORS, vec![label.clone()])).or_default() += 1.0;
        }
        if report.unsupported {
            unsupported_total += 1.0;
            match model_unsupported_name(command) {
                Some(name) => *unsupported.entry(name).or_default() += 1.0,
                None => inexact = true,
            }
        }
    }

    let after = scrape(registry, format);

    for ((name, values), want) in &expected {
        let labels: &[&str] = if *name == ERRORS {
            &["command"]
        } else {
            &["command", "outcome"]
        };
        let key: Vec<(&str, &str)> = labels
            .iter()
            .copied()
            .zip(values.iter().map(String::as_str))
            .collect();
        let delta = value(&after, name, &key) - value(&before, name, &key);
        assert_eq!(delta, *want, "{name} {key:?}");
    }

    // Unsupported names: each admitted name moved by exactly its own count, `other` by the
    // count of every name that was not admitted, and nothing else moved.
    let old = unsupported_counts(&before);
    let new = unsupported_counts(&after);
    let admitted = new.keys().filter(|k| k.as_str() != "other").count();
    assert!(
        admitted <= UNSUPPORTED_CAP,
        "{admitted} unsupported names exposed, cap {UNSUPPORTED_CAP}"
    );
    let set = registry.store().open(REDIS_UNSUPPORTED_COMMAND);
    assert!(set.view().len() <= UNSUPPORTED_CAP);
    let moved = |label: &str| new.get(label).unwrap_or(&0.0) - old.get(label).unwrap_or(&0.0);
    let total_moved: f64 = new.keys().map(|k| moved(k)).sum();
    assert_eq!(total_moved, unsupported_total, "unsupported total");
    if !inexact {
        let mut to_other = 0.0;
        for (name, count) in &unsupported {
            assert!(name.len() <= LABEL_CAP, "model label too long: {name:?}");
            if new.contains_key(name) {
                assert_eq!(moved(name), *count, "unsupported {name:?}");
            } else {
                assert!(
                    set.find(name).is_none(),
                    "{name:?} admitted but not exposed"
                );
                to_other += count;
            }
        }
        assert_eq!(moved("other"), to_other, "unsupported `other`");
        for label in new.keys() {
            if label != "other" && !unsupported.contains_key(label) {
                assert_eq!(moved(label), 0.0, "unsupported {label:?} moved unasked");
            }
        }
    }
}

/// The counters the checks read, as a scraper of the text format sees them.
fn counters(registry: &Registry) -> Exposition {
    let mut text = Vec::new();
    registry.encode_where(
        Format::Text,
        |name| [REQUESTS, ERRORS, UNSUPPORTED].contains(&name),
        &mut text,
    );
    let text = String::from_utf8(text).expect("the exposition is UTF-8");
    exposition::parse_text(&text).unwrap_or_else(|e| panic!("text does not parse: {e}\n{text}"))
}

/// The whole exposition in `format`, parsed strictly.
fn scrape(registry: &Registry, format: Format) -> Exposition {
    let rendered = registry.render(format);
    exposition::parse_as(format == Format::OpenMetrics, &rendered)
        .unwrap_or_else(|e| panic!("{format:?} exposition does not parse: {e}\n{rendered}"))
}

/// The value of the one sample named `name` whose labels include `labels` (0 if absent).
fn value(exposition: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut matching = exposition
        .samples_named(name)
        .filter(|s| labels.iter().all(|(k, v)| s.label(k) == Some(*v)));
    let first = matching.next().map_or(0.0, |s| s.value);
    assert!(
        matching.next().is_none(),
        "several {name} samples for {labels:?}"
    );
    first
}

fn unsupported_counts(exposition: &Exposition) -> HashMap<String, f64> {
    let mut counts = HashMap::new();
    for sample in exposition.samples_named(UNSUPPORTED) {
        let label = sample.label("command").unwrap_or("").to_string();
        let previous = counts.insert(label, sample.value);
        assert!(previous.is_none(), "duplicate {UNSUPPORTED} label");
    }
    counts
}

/// The simple upper-case mapping as far as `char::to_uppercase` tells it: a one-character
/// full mapping is the simple mapping, and a character whose full mapping has several
/// characters maps to itself, except in Greek Extended where the simple mapping is another
/// character (`None`: the model does not know it).
fn simple_upper(c: char) -> Option<char> {
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(u), None) => Some(u),
        _ if ('\u{1F00}'..='\u{1FFF}').contains(&c) => None,
        _ => Some(c),
    }
}

/// `normalize_command` as documented: the Unicode-trimmed, upper-cased text if it is a
/// recognised name, otherwise `Unknown` (also for bytes that are not UTF-8).
fn model_normalize(raw: &[u8]) -> RedisCommand {
    let Ok(text) = std::str::from_utf8(raw) else {
        return RedisCommand::Unknown;
    };
    // Greek Extended never upper-cases to ASCII, so an unknown mapping can stay as is.
    let upper: String = text
        .trim()
        .chars()
        .map(|c| simple_upper(c).unwrap_or(c))
        .collect();
    RedisCommand::from_label(&upper).unwrap_or(RedisCommand::Unknown)
}

/// The unsupported-command label of SPEC 3.2, before admission; `None` when the model cannot
/// tell (a Greek Extended character whose simple upper case it does not know).
///
/// The first 256 bytes are considered; a character that straddles byte 256 is dropped if it
/// is valid. If anything before that is not UTF-8 the label is `invalid_utf8`. The text is
/// trimmed (`unknown` if nothing is left), upper-cased, and cut to the whole characters that
/// fit in 64 bytes.
fn model_unsupported_name(raw: &[u8]) -> Option<String> {
    let valid = match std::str::from_utf8(raw) {
        Ok(_) => raw.len(),
        Err(e) => e.valid_up_to(),
    };
    if valid < raw.len().min(RAW_CAP) {
        return Some("invalid_utf8".to_string());
    }
    let text = std::str::from_utf8(&raw[..valid]).ok()?;
    let end = text
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .take_while(|&end| end <= RAW_CAP)
        .last()
        .unwrap_or(0);
    let text = text[..end].trim();
    if text.is_empty() {
        return Some("unknown".to_string());
    }
    let mut name = String::new();
    for c in text.chars() {
        let upper = simple_upper(c)?;
        if name.len() + upper.len_utf8() > LABEL_CAP {
            break;
        }
        name.push(upper);
    }
    Some(name)
}
