//! The path fusebox judges a request by. Route rules match this canonical form, never the raw
//! `:path`, because whatever sits behind Envoy (a model server, a reverse proxy) may read
//! `//v1/chat/completions`, `/./v1/...`, `/healthz/../v1/...`, `/%76%31/...`, `/V1/...` or
//! `/v1;x=1/...` as `/v1/chat/completions`: each of those spellings must land on the rule that
//! path has, not fall through to another one.
//!
//! Canonical form: an absolute-form target (`http://host/p`) reduced to its path; query and
//! fragment cut; every `%XX` decoded once (an encoded `/` or `\` is a separator too); `\` read
//! as `/`; `;` parameters cut from each segment; empty and `.` segments dropped, `..` taking
//! the previous one away (never above the root); ASCII lowercased. A trailing `/` is kept.

/// The canonical form of a request path (or of a rule's path or prefix). Runs on every
/// request: one decoded copy, lowercased in place, and the output; no copy per segment.
pub fn canonical(raw: &str) -> String {
    if is_plain(raw) {
        return raw.to_string();
    }
    rebuilt(raw)
}

/// The canonical form, worked out in full.
fn rebuilt(raw: &str) -> String {
    let path = strip_authority(raw);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut text = if path.contains('%') {
        String::from_utf8_lossy(&percent_decoded(path.as_bytes())).into_owned()
    } else {
        path.to_string()
    };
    text.make_ascii_lowercase();
    if text.contains('\\') {
        text = text.replace('\\', "/");
    }
    let trailing = text.ends_with('/') && text.len() > 1;
    let mut segments: Vec<&str> = Vec::new();
    for segment in text.split('/') {
        match segment.split(';').next().unwrap_or_default() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(text.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    out
}

/// A path the canonical form leaves as it is: rooted, lower-case letters, digits, `-`, `_` and
/// single slashes only (no dot, escape, parameter, query or case to undo). Most requests' paths
/// are, and skip the work.
fn is_plain(raw: &str) -> bool {
    raw.starts_with('/')
        && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'/' | b'-' | b'_'))
        && !raw.contains("//")
}

/// The path of an absolute-form target (`https://host:port/p` is `/p`); other input as it is.
fn strip_authority(raw: &str) -> &str {
    let Some(scheme_end) = raw.find("://") else { return raw };
    let scheme = raw.get(..scheme_end).unwrap_or_default();
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
        return raw;
    }
    let rest = raw.get(scheme_end + 3..).unwrap_or_default();
    rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("/")
}

fn percent_decoded(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escape = (b == b'%').then(|| Some((hex(*bytes.get(i + 1)?)?, hex(*bytes.get(i + 2)?)?))).flatten();
        match escape {
            Some((hi, lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_path_is_already_what_the_full_canonical_form_would_make_of_it() {
        // Every path of up to 6 characters over the plain alphabet (and a few longer ones).
        let alphabet = ['/', 'a', 'z', '0', '-', '_'];
        let mut paths = vec!["/v1/chat/completions".to_string(), "/v1/".to_string(), "/".to_string()];
        let mut frontier = vec![String::new()];
        for _ in 0..6 {
            frontier = frontier.iter().flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}"))).collect();
            paths.extend(frontier.iter().cloned());
        }
        let mut plain = 0;
        for p in &paths {
            if is_plain(p) {
                plain += 1;
                assert_eq!(rebuilt(p), *p, "{p}");
            }
        }
        assert!(plain > 1000, "only {plain} plain paths were compared");
        for not_plain in ["v1", "/V1", "/v1//x", "/v1/./x", "/v1/x?y", "/v1/%61", "/v1;a", "/v1\\x"] {
            assert!(!is_plain(not_plain), "{not_plain}");
        }
    }

    #[test]
    fn every_spelling_of_a_path_has_one_canonical_form() {
        for spelling in [
            "/v1/chat/completions",
            "//v1/chat/completions",
            "/v1//chat///completions",
            "/./v1/./chat/completions",
            "/healthz/../v1/chat/completions",
            "/../../v1/chat/completions",
            "/%76%31/chat/completions",
            "/v1%2Fchat%2fcompletions",
            "/v1%5Cchat\\completions",
            "/V1/Chat/COMPLETIONS",
            "/v1;jsessionid=x/chat/completions;a=b",
            "/v1/chat/completions?stream=true",
            "/v1/chat/completions#frag",
            "http://api.example:8080/v1/chat/completions",
            "https://api.example/v1/chat/completions?x=1",
            "/v1/chat/%2e%2e/chat/completions",
        ] {
            assert_eq!(canonical(spelling), "/v1/chat/completions", "{spelling}");
        }
    }

    #[test]
    fn the_root_and_trailing_slashes_are_kept() {
        assert_eq!(canonical(""), "/");
        assert_eq!(canonical("/"), "/");
        assert_eq!(canonical("//"), "/");
        assert_eq!(canonical("/v1/"), "/v1/");
        assert_eq!(canonical("/v1//"), "/v1/");
        assert_eq!(canonical("http://host"), "/");
    }

    #[test]
    fn broken_escapes_and_odd_bytes_stay_as_they_are() {
        assert_eq!(canonical("/v1/%zz/%4"), "/v1/%zz/%4");
        assert_eq!(canonical("/v1/%ff"), "/v1/\u{fffd}");
        assert_eq!(canonical("/a%00b"), "/a\u{0}b");
    }

    #[test]
    fn a_colon_in_a_path_is_not_a_scheme() {
        assert_eq!(canonical("/v1/models/gpt-4o:generate"), "/v1/models/gpt-4o:generate");
        assert_eq!(canonical("/a://b"), "/a:/b");
    }
}
