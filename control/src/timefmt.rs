//! UTC timestamps for the API and CLI: RFC 3339 (`2026-11-23T10:00:00Z`), a bare date, or
//! unix seconds. No time zones other than `Z`: control and its users speak UTC.

use fusebox_engine::budget::{civil_date, days_from_civil};

fn num(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// Parses unix seconds, `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ` into unix seconds.
pub fn parse(s: &str) -> Result<u64, String> {
    let bad = || format!("'{s}' is not a time (use 2026-11-23, 2026-11-23T10:00:00Z or unix seconds)");
    if let Some(secs) = s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse::<u64>().ok()).flatten() {
        return Ok(secs);
    }
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(bad)?)),
        None => (s, None),
    };
    let mut parts = date.splitn(3, '-');
    let (y, m, d) = (
        parts.next().and_then(num).ok_or_else(bad)?,
        parts.next().and_then(num).ok_or_else(bad)?,
        parts.next().and_then(num).ok_or_else(bad)?,
    );
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let (hh, mm, ss) = match time {
        None => (0, 0, 0),
        Some(t) => {
            let t = t.split_once('.').map_or(t, |(whole, _)| whole);
            let mut p = t.splitn(3, ':');
            let (h, mi, se) = (
                p.next().and_then(num).ok_or_else(bad)?,
                p.next().and_then(num).ok_or_else(bad)?,
                p.next().and_then(num).ok_or_else(bad)?,
            );
            if h > 23 || mi > 59 || se > 60 {
                return Err(bad());
            }
            (h, mi, se)
        }
    };
    let days = days_from_civil(i64::from(y), i64::from(m), i64::from(d));
    let secs = days * 86_400 + i64::from(hh * 3600 + mm * 60 + ss);
    u64::try_from(secs).map_err(|_| bad())
}

/// Formats unix milliseconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_ms(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(0);
    let (y, m, d) = civil_date(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_parse_to_unix_seconds() {
        assert_eq!(parse("1970-01-01"), Ok(0));
        assert_eq!(parse("2026-11-23T10:00:00Z"), Ok(1_795_428_000));
        assert_eq!(parse("2024-02-29T23:59:59.5Z"), Ok(1_709_251_199));
        assert_eq!(parse("1795428000"), Ok(1_795_428_000));
    }

    #[test]
    fn nonsense_times_are_refused_with_the_accepted_forms() {
        for s in ["", "yesterday", "2026-13-01", "2026-11-23T10:00:00+01:00", "2026-11-23T25:00:00Z", "-5"] {
            assert!(parse(s).unwrap_err().contains("2026-11-23T10:00:00Z"), "{s}");
        }
    }

    #[test]
    fn formatting_inverts_parsing() {
        for s in ["1970-01-01T00:00:00Z", "2026-11-23T10:00:00Z", "2000-02-29T12:34:56Z"] {
            assert_eq!(format_ms(parse(s).unwrap() * 1000), s);
        }
    }
}
