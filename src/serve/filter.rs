//! The `name[]` query filter of the metrics endpoint, and the query-string decoding it needs.

/// Which families a scrape asked for, from its `name[]` query parameters.
///
/// No `name[]` parameter means every family. Names are matched exactly against the family
/// name as exposed in text format (for counters, the name with `_total`).
///
/// ```
/// use elastickv_metrics::serve::NameFilter;
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
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((form_decode(key)?, form_decode(value)?))
        })
}

/// `application/x-www-form-urlencoded` decoding; `None` on a bad escape or non-UTF-8 result.
fn form_decode(s: &str) -> Option<String> {
    if !s.contains(['%', '+']) {
        return Some(s.to_string());
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex_value(bytes.next()?)?;
                let lo = hex_value(bytes.next()?)?;
                out.push(hi << 4 | lo);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
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
    fn malformed_pairs_are_skipped() {
        let f = NameFilter::from_query(Some("name[]=%zz&name[]=%ff&name[]=ok&name[]=%4"));
        assert_eq!(f, NameFilter::from_names(["ok"]));
    }

    #[test]
    fn plus_decodes_to_space_and_duplicates_collapse() {
        assert_eq!(form_decode("a+b%20c").as_deref(), Some("a b c"));
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
