//! The node the surface tests build, and the strict scrape they share.
//!
//! Included by path (`#[path = "support/node.rs"] mod node;`) next to `support/exposition.rs`
//! (as `mod exposition`), so each test binary takes only what it uses.

#![allow(dead_code)]

use elastickv_metrics::encode::Format;
use elastickv_metrics::Registry;

use crate::exposition::{self, Exposition};

/// The constant labels of every series of [`registry`].
pub const NODE: [(&str, &str); 2] = [("node_id", "n1"), ("node_address", "10.0.0.1:50051")];

/// A fresh registry for node [`NODE`].
pub fn registry() -> Registry {
    Registry::new(NODE[0].1, NODE[1].1)
}

/// Renders and strictly parses both formats; returns the text-format parse.
pub fn scrape(r: &Registry) -> Exposition {
    let om = r.render(Format::OpenMetrics);
    exposition::parse_openmetrics(&om)
        .unwrap_or_else(|e| panic!("OpenMetrics scrape does not parse: {e}\n{om}"));
    let text = r.render(Format::Text);
    exposition::parse_text(&text)
        .unwrap_or_else(|e| panic!("text scrape does not parse: {e}\n{text}"))
}

/// `extra` followed by the constant labels.
pub fn labels<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = extra.to_vec();
    v.extend_from_slice(&NODE);
    v
}
