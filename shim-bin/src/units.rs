//! What people type for sizes, durations and times, and how ages are shown: `10m` bytes for a log's
//! size (docker's binary units), `10s` or `10` for a grace period, `10m` or an RFC 3339 time for
//! `logs --since`, "3 minutes ago" for `ps`.

use std::time::{Duration, SystemTime};

/// A size: a number of bytes with an optional `k`, `m`, `g` (binary: KiB, MiB, GiB, as docker's
/// json-file `max-size`), `b`/`ib` accepted after it: `4096`, `64k`, `10m`, `1GiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let number: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a size (say 4096, 64k, 10m or 1g)"))?;
    let scale: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{text:?}: unknown size unit {unit:?} (k, m or g)")),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A duration: seconds (`10`), or with units (`10s`, `2m`, `1h30m`, `500ms`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration (say 10, 10s, 2m or 1h30m): {e}"))
}

/// A point in time: RFC 3339 (`2026-12-02T10:00:00Z`), or a duration before `now` (`10m`).
pub fn parse_time(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text.trim()) {
        return Ok(time);
    }
    let ago = parse_duration(text)
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor a duration like 10m"))?;
    Ok(now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH))
}

/// An RFC 3339 time as written in tether's records.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim()).ok()
}

/// How long ago `then` was, as `docker ps` says it: "Less than a second ago", "5 seconds ago",
/// "About a minute ago", "3 minutes ago", "About an hour ago", "4 hours ago", "2 days ago", ...
pub fn age(then: SystemTime, now: SystemTime) -> String {
    let seconds = now.duration_since(then).unwrap_or_default().as_secs();
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("1 {unit} ago")
        } else {
            format!("{n} {unit}s ago")
        }
    };
    match seconds {
        0 => "Less than a second ago".into(),
        1..=59 => plural(seconds, "second"),
        60..=119 => "About a minute ago".into(),
        120..=3599 => plural(seconds / 60, "minute"),
        3600..=7199 => "About an hour ago".into(),
        7200..=172_799 => plural(seconds / 3600, "hour"),
        172_800..=1_209_599 => plural(seconds / 86_400, "day"),
        1_209_600..=5_183_999 => plural(seconds / 604_800, "week"),
        5_184_000..=63_071_999 => plural(seconds / 2_592_000, "month"),
        _ => plural(seconds / 31_536_000, "year"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("10m"), Ok(10 << 20));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("10x").is_err());
        assert!(parse_size("m").is_err());
        assert!(parse_size("99999999999999999g").is_err());
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn durations_are_seconds_or_with_units() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-3").is_err());
    }

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_time("10m", now), Ok(now - Duration::from_secs(600)));
        assert_eq!(
            parse_time("1970-01-01T00:00:10Z", now),
            Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(10))
        );
        assert_eq!(
            parse_time("1970-01-01T00:00:10.5Z", now),
            Ok(SystemTime::UNIX_EPOCH + Duration::from_millis(10_500))
        );
        assert!(parse_time("yesterday", now).is_err());
    }

    #[test]
    fn ages_read_as_docker_says_them() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100_000_000);
        let ago = |s: u64| age(now - Duration::from_secs(s), now);
        assert_eq!(ago(0), "Less than a second ago");
        assert_eq!(ago(1), "1 second ago");
        assert_eq!(ago(42), "42 seconds ago");
        assert_eq!(ago(90), "About a minute ago");
        assert_eq!(ago(180), "3 minutes ago");
        assert_eq!(ago(4000), "About an hour ago");
        assert_eq!(ago(5 * 3600), "5 hours ago");
        assert_eq!(ago(3 * 86_400), "3 days ago");
        assert_eq!(ago(21 * 86_400), "3 weeks ago");
        assert_eq!(ago(400 * 86_400), "13 months ago");
        assert_eq!(ago(800 * 86_400), "2 years ago");
        // A clock that went back: not "in the future".
        assert_eq!(
            age(now + Duration::from_secs(5), now),
            "Less than a second ago"
        );
    }
}
