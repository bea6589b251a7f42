//! RFC 3339 timestamps with nanoseconds, UTC, fixed width: `2016-10-06T00:17:09.669794202Z`.
//!
//! Fixed width (nine digits, not trimmed as Go's RFC3339Nano does) keeps every record the same shape;
//! kubelet and docker both parse it. The date part is recomputed only when the second changes.

use std::time::{SystemTime, UNIX_EPOCH};

/// Length of a formatted timestamp.
pub const TIMESTAMP_LEN: usize = 30;

/// Formats timestamps, reusing the `YYYY-MM-DDTHH:MM:SS.` prefix within one second.
#[derive(Debug, Clone)]
pub struct TimestampFormatter {
    second: u64,
    text: [u8; TIMESTAMP_LEN],
}

impl Default for TimestampFormatter {
    fn default() -> Self {
        let mut formatter = TimestampFormatter {
            second: u64::MAX,
            text: *b"0000-00-00T00:00:00.000000000Z",
        };
        formatter.set_second(0);
        formatter
    }
}

impl TimestampFormatter {
    /// A formatter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The text for `time` (times before 1970 are clamped to the epoch).
    pub fn format(&mut self, time: SystemTime) -> &[u8; TIMESTAMP_LEN] {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        if since.as_secs() != self.second {
            self.set_second(since.as_secs());
        }
        let mut nanos = since.subsec_nanos();
        for i in (20..29).rev() {
            self.text[i] = b'0' + (nanos % 10) as u8;
            nanos /= 10;
        }
        &self.text
    }

    fn set_second(&mut self, second: u64) {
        self.second = second;
        let days = (second / 86_400) as i64;
        let rem = second % 86_400;
        let (year, month, day) = civil_from_days(days);
        write_digits(&mut self.text[0..4], year as u64);
        write_digits(&mut self.text[5..7], month as u64);
        write_digits(&mut self.text[8..10], day as u64);
        write_digits(&mut self.text[11..13], rem / 3600);
        write_digits(&mut self.text[14..16], rem % 3600 / 60);
        write_digits(&mut self.text[17..19], rem % 60);
    }
}

fn write_digits(out: &mut [u8], mut value: u64) {
    for byte in out.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (the well-known "civil_from_days" algorithm on 400-year eras).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> String {
        let time = UNIX_EPOCH + Duration::new(secs, nanos);
        String::from_utf8(TimestampFormatter::new().format(time).to_vec()).unwrap()
    }

    #[test]
    fn known_instants() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            at(1_475_713_029, 669_794_202),
            "2016-10-06T00:17:09.669794202Z"
        );
        assert_eq!(at(951_782_400, 1), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(
            at(4_102_444_799, 999_999_999),
            "2099-12-31T23:59:59.999999999Z"
        );
    }

    #[test]
    fn reuse_across_seconds() {
        let mut f = TimestampFormatter::new();
        let a = f.format(UNIX_EPOCH + Duration::new(86_399, 5)).to_vec();
        let b = f.format(UNIX_EPOCH + Duration::new(86_400, 7)).to_vec();
        assert_eq!(a, b"1970-01-01T23:59:59.000000005Z");
        assert_eq!(b, b"1970-01-02T00:00:00.000000007Z");
    }
}
