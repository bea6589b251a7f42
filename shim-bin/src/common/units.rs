//! What people type for sizes, durations and times, and how ages are shown: `10m` bytes for a log's
//! size (docker's binary units), `10s` or `10` for a grace period, `10m` or an RFC 3339 time for
//! `logs --since`, "3 minutes ago" for `ps`.

use std::time::{Duration, SystemTime};

/// A size: a number of bytes with an optional `k`, `m`, `g` (binary: KiB, MiB, GiB, as docker's
/// json-file `max-size`), `b`/`ib` accepted after it: `4096`, `64k`, `10m`, `1GiB`, `1.5g` (a
/// fraction of a unit, rounded down to a byte).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let not_a_size = || format!("{text:?} is not a size (say 4096, 64k, 10m, 1.5g)");
    let scale: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{text:?}: unknown size unit {unit:?} (k, m or g)")),
    };
    if let Some((whole, fraction)) = digits.trim().split_once('.') {
        let digits_only =
            |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits_only(fraction) || !(whole.is_empty() || digits_only(whole)) {
            return Err(not_a_size());
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| not_a_size())?
        };
        let fraction_value: u64 = fraction.parse().map_err(|_| not_a_size())?;
        let denominator = 10u64.pow(fraction.len() as u32);
        let part = u128::from(fraction_value) * u128::from(scale) / u128::from(denominator);
        return whole
            .checked_mul(scale)
            .and_then(|bytes| bytes.checked_add(part as u64))
            .ok_or_else(|| format!("{text:?} is too large"));
    }
    let number: u64 = digits.trim().parse().map_err(|_| not_a_size())?;
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A duration: seconds (`10`, `1.5`), or with units (`10s`, `2m`, `1h30m`, `500ms`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let plain_number = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().filter(|&b| b == b'.').count() == 1;
    if plain_number {
        if let Some(duration) = text
            .parse::<f64>()
            .ok()
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        {
            return Ok(duration);
        }
    }
    humantime::parse_duration(text)
        .map_err(|_| format!("{text:?} is not a duration (say 10, 1.5, 10s, 2m or 1h30m)"))
}

/// A point in time: RFC 3339 (`2026-12-02T10:00:00Z`), a date (`2026-12-02`: its midnight, UTC),
/// or a duration before `now` (`10m`).
pub fn parse_time(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text.trim()) {
        return Ok(time);
    }
    let is_date = text.trim().len() == 10 && text.trim().as_bytes().get(4) == Some(&b'-');
    if is_date {
        if let Ok(time) = humantime::parse_rfc3339_weak(&format!("{}T00:00:00Z", text.trim())) {
            return Ok(time);
        }
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
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("0.5k"), Ok(512));
        assert_eq!(parse_size(".25m"), Ok(1 << 18));
        for bad in ["1.", "1.5.5g", "1.x", "1.0000000001g"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_are_seconds_or_with_units() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-3").is_err());
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("1.5.5").is_err());
        let said = parse_duration("1,5").unwrap_err();
        assert!(said.contains("1.5"), "the error names what works: {said}");
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
        assert_eq!(
            parse_time("1970-01-02", now),
            Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400))
        );
        assert!(parse_time("1970-13-02", now).is_err());
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
