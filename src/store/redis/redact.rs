//! Keeping the Redis password out of messages and logs.

/// `url` with the password in its user-info replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            // Without a `:` the user-info may still be a token: hide it all.
            let hidden = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".to_string(),
            };
            format!("{scheme}://{hidden}@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// The secrets of `url`: its password, raw and percent-decoded.
pub(super) fn secrets(url: &str) -> Vec<String> {
    let Some((_, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some((userinfo, _)) = rest[..authority_end].rsplit_once('@') else {
        return Vec::new();
    };
    let pw = userinfo.split_once(':').map_or(userinfo, |(_, p)| p);
    let mut out = vec![pw.to_string(), percent_decode(pw)];
    out.retain(|s| !s.is_empty());
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `msg` with every occurrence of `url`'s password (raw or percent-decoded)
/// replaced by `***`: for any text that might quote the URL.
pub fn scrub(msg: &str, url: &str) -> String {
    let mut out = msg.to_string();
    for s in secrets(url) {
        out = out.replace(&s, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("redis://:s3cret@10.0.0.5:6379/0"),
            "redis://:***@10.0.0.5:6379/0"
        );
        assert_eq!(
            redact_url("rediss://user:p%40ss@h:1/2"),
            "rediss://user:***@h:1/2"
        );
        assert_eq!(redact_url("redis://tok@h/0"), "redis://***@h/0");
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(
            scrub("bad p@ss and p%40ss", "redis://u:p%40ss@h"),
            "bad *** and ***"
        );
    }
}
