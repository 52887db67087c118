//! Layer 1: the manifest. `metrics.toml` compiled by `build.rs` (with `static-metrics-build`)
//! into static tables ([`SCHEMA`]), one enum per closed label domain ([`domain`]) and one
//! `const fn` per family that names a series ([`family`]).

pub use static_metrics::schema;

#[allow(clippy::all, missing_docs)]
mod generated {
    static_metrics::include_metrics!();
}

pub use generated::{domain, family, registry, SCHEMA};
#[cfg(test)]
mod tests {
    use super::domain::*;

    /// Every generated `from_label` finds each of its values, and finds a value for a near
    /// miss (another case, one byte changed, one byte more or less, a trailing NUL that the
    /// zero-padded word keys would confuse with the shorter label if lengths were not
    /// compared first) only when that near miss is itself a value.
    macro_rules! check_domains {
        ($($ty:ident),* $(,)?) => {$(
            let exact = |t: &str| {
                if let Some(w) = $ty::from_label(t) {
                    assert_eq!(w.as_str(), t, "{t:?} resolved to another value");
                }
            };
            for v in $ty::ALL {
                let s = v.as_str();
                assert_eq!($ty::from_label(s), Some(v), "{s:?}");
                assert_eq!($ty::from_label(&format!("{s}\0")), None, "{s:?} + NUL");
                exact(&format!("{s}x"));
                exact(&format!("x{s}"));
                exact(&s.to_ascii_lowercase());
                exact(&s.to_ascii_uppercase());
                if let Some(shorter) = s.get(..s.len().saturating_sub(1)) {
                    exact(shorter);
                }
                for i in 0..s.len() {
                    let mut b = s.as_bytes().to_vec();
                    b[i] ^= 0x01;
                    if let Ok(t) = std::str::from_utf8(&b) {
                        exact(t);
                    }
                }
            }
            exact("");
        )*};
    }

    #[test]
    fn from_label_finds_every_value_and_nothing_else() {
        check_domains!(
            DynamodbOperation,
            DynamodbOutcome,
            FsmMode,
            LeaseReadOutcome,
            LuaFastpathOutcome,
            LuaOutcome,
            MonitoringCollector,
            MonitoringFailure,
            RaftState,
            RedisCommand,
            RedisOutcome,
            SqsAction,
            SqsDepthState,
        );
    }
}
