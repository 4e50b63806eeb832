//! An answer's headers: names as received (lower-case from ureq), in order,
//! repeated headers kept. The one place that looks a header up by name.

use std::ops::Deref;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// The headers of a ureq answer (values that are not UTF-8 lossily).
    pub fn from_http(map: &ureq::http::HeaderMap) -> Headers {
        Headers(
            map.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        )
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        find(&self.0, name)
    }

    /// One entry per lower-case name, repeated values joined with ", "
    /// (how HTTP says a list header may be folded).
    pub fn joined(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.0 {
            let k = k.to_ascii_lowercase();
            match out.iter_mut().find(|(n, _)| *n == k) {
                Some((_, all)) => {
                    all.push_str(", ");
                    all.push_str(v);
                }
                None => out.push((k, v.clone())),
            }
        }
        out
    }

    pub fn into_vec(self) -> Vec<(String, String)> {
        self.0
    }
}

impl From<Vec<(String, String)>> for Headers {
    fn from(v: Vec<(String, String)>) -> Headers {
        Headers(v)
    }
}

impl Deref for Headers {
    type Target = [(String, String)];
    fn deref(&self) -> &[(String, String)] {
        &self.0
    }
}

/// The first value of `name` (case-insensitive) in a header list.
pub fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_repeats_join() {
        let h = Headers::from(vec![
            ("x-request-id".to_string(), "a".to_string()),
            ("Via".to_string(), "1".to_string()),
            ("via".to_string(), "2".to_string()),
        ]);
        assert_eq!(h.get("X-Request-Id"), Some("a"));
        assert_eq!(h.get("via"), Some("1"));
        assert_eq!(h.get("nope"), None);
        assert_eq!(
            h.joined(),
            vec![
                ("x-request-id".to_string(), "a".to_string()),
                ("via".to_string(), "1, 2".to_string())
            ]
        );
    }
}
