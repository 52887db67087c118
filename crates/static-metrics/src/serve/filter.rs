//! The `name[]` query filter of the metrics endpoint, and the query-string decoding it needs.

/// Which families a scrape asked for, from its `name[]` query parameters.
///
/// No `name[]` parameter means every family. Names are matched exactly against the family
/// name as exposed in text format (for counters, the name with `_total`).
///
/// ```
/// use static_metrics::serve::NameFilter;
/// let f = NameFilter::from_query(Some("name[]=up&name%5B%5D=process_cpu_seconds_total"));
/// assert!(f.allows("up") && f.allows("process_cpu_seconds_total"));
/// assert!(!f.allows("other"));
/// assert!(NameFilter::all().allows("anything"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameFilter {
    /// Sorted and deduplicated; empty means "everything".
    names: Vec<String>,
}

impl NameFilter {
    /// The filter that lets every family through.
    pub fn all() -> Self {
        NameFilter::default()
    }

    /// A filter for exactly `names` (an empty list lets everything through).
    pub fn from_names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut names: Vec<String> = names.into_iter().map(Into::into).collect();
        names.sort_unstable();
        names.dedup();
        NameFilter { names }
    }

    /// The filter a request's query string (without the `?`) asks for.
    ///
    /// Keys and values are form-decoded (`%XX`, `+` as space). A pair that does not decode to
    /// UTF-8 is ignored, as Go's query parser drops malformed pairs.
    pub fn from_query(query: Option<&str>) -> Self {
        let names = query_pairs(query.unwrap_or_default())
            .filter(|(key, _)| key == "name[]")
            .map(|(_, value)| value);
        NameFilter::from_names(names)
    }

    /// Whether the family called `family_name` is to be exposed.
    pub fn allows(&self, family_name: &str) -> bool {
        self.names.is_empty()
            || self
                .names
                .binary_search_by(|n| n.as_str().cmp(family_name))
                .is_ok()
    }

    /// Whether this filter lets every family through.
    pub fn is_all(&self) -> bool {
        self.names.is_empty()
    }
}

/// The decoded `key=value` pairs of a query string, in order; malformed pairs are skipped.
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(key), form_decode(value))
        })
}

/// `application/x-www-form-urlencoded` decoding that never drops a pair: a bad escape stays
/// literal and bytes that are not UTF-8 become U+FFFD. Dropping the pair instead would make
/// `seconds=%ff` look like an absent `seconds` (a 30 s profile) rather than an invalid one.
fn form_decode(s: &str) -> String {
    if !s.contains(['%', '+']) {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = (bytes.get(i + 1).copied().and_then(hex_value))
                    .zip(bytes.get(i + 2).copied().and_then(hex_value));
                if let Some((hi, lo)) = hex {
                    out.push(hi << 4 | lo);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_query_allows_everything() {
        assert!(NameFilter::from_query(None).is_all());
        assert!(NameFilter::from_query(Some("")).is_all());
        assert!(NameFilter::from_query(Some("other=1")).is_all());
    }

    #[test]
    fn percent_encoded_key_and_value_are_decoded() {
        let f = NameFilter::from_query(Some("name%5B%5D=a%5Fb&name[]=c"));
        assert!(f.allows("a_b"));
        assert!(f.allows("c"));
        assert!(!f.allows("d"));
    }

    #[test]
    fn empty_name_value_selects_nothing() {
        let f = NameFilter::from_query(Some("name[]="));
        assert!(!f.is_all());
        assert!(!f.allows("up"));
    }

    #[test]
    fn malformed_escapes_are_kept_not_dropped() {
        // Undecodable names are kept (literally, or with U+FFFD): they match no family, and a
        // malformed pprof `seconds` is seen as present and invalid, not as absent.
        assert_eq!(form_decode("%zz"), "%zz");
        assert_eq!(form_decode("%4"), "%4");
        assert_eq!(form_decode("%ff"), "\u{FFFD}");
        let f = NameFilter::from_query(Some("name[]=%zz&name[]=ok"));
        assert!(f.allows("ok"));
        assert!(!f.allows("other"));
    }

    #[test]
    fn plus_decodes_to_space_and_duplicates_collapse() {
        assert_eq!(form_decode("a+b%20c"), "a b c");
        assert_eq!(
            NameFilter::from_names(["b", "a", "b"]),
            NameFilter::from_names(["a", "b"])
        );
    }

    #[test]
    fn pairs_without_equals_have_empty_values() {
        let pairs: Vec<_> = query_pairs("a&b=1&&c=").collect();
        assert_eq!(
            pairs,
            [("a", ""), ("b", "1"), ("c", "")].map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }
}
