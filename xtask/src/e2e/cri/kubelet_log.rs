//! The container log CRI's containerd writes, read back the way the kubelet reads it
//! (`kubectl logs`): every line is `TIMESTAMP STREAM TAG CONTENT`, the timestamp RFC 3339 with
//! nanoseconds, the stream `stdout` or `stderr`, the tag's first `:`-separated field `F` (the
//! line is whole: its newline is part of the content) or `P` (a part of a longer line, no
//! newline). Written from those rules, not from tether's own decoder, so that the test checks the
//! log against the reader that matters.

// The suite that uses it is built with the `cri` feature; the rules are unit-tested without it.
#![cfg_attr(not(feature = "cri"), allow(dead_code))]

/// What a log holds, stream by stream, with partial lines joined.
#[derive(Debug, Default, PartialEq)]
pub struct Streams {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Streams {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Reads a whole log. A last line without its newline is still being written and is left out,
/// as the kubelet's reader waits for it; any other malformed line is an error naming it.
pub fn read(log: &[u8]) -> Result<Streams, String> {
    let mut streams = Streams::default();
    let mut lines: Vec<&[u8]> = log.split(|&b| b == b'\n').collect();
    // After the last newline: empty, or a line not yet complete.
    lines.pop();
    for (number, line) in lines.into_iter().enumerate() {
        let (stream, content, full) =
            parse_line(line).map_err(|e| format!("log line {}: {e}", number + 1))?;
        let out = match stream {
            "stdout" => &mut streams.stdout,
            _ => &mut streams.stderr,
        };
        out.extend_from_slice(content);
        if full {
            out.push(b'\n');
        }
    }
    Ok(streams)
}

/// One line without its newline: (stream, content, whole line?).
pub fn parse_line(line: &[u8]) -> Result<(&'static str, &[u8], bool), String> {
    let mut fields = line.splitn(4, |&b| b == b' ');
    let timestamp = fields.next().unwrap_or_default();
    let stream = fields.next().ok_or("no stream field")?;
    let tag = fields.next().ok_or("no tag field")?;
    let content = fields.next().ok_or("no content field")?;
    let timestamp = std::str::from_utf8(timestamp).map_err(|_| "timestamp is not text")?;
    if !is_rfc3339_nano(timestamp) {
        return Err(format!("timestamp {timestamp:?} is not RFC 3339"));
    }
    let stream = match stream {
        b"stdout" => "stdout",
        b"stderr" => "stderr",
        other => {
            return Err(format!(
                "stream {:?} is neither stdout nor stderr",
                String::from_utf8_lossy(other)
            ))
        }
    };
    let full = match tag.split(|&b| b == b':').next().unwrap_or_default() {
        b"F" => true,
        b"P" => false,
        other => {
            return Err(format!(
                "tag {:?} is neither F nor P",
                String::from_utf8_lossy(other)
            ))
        }
    };
    Ok((stream, content, full))
}

/// `2006-01-02T15:04:05[.fraction](Z|±07:00)`, as Go's `time.RFC3339Nano` parses.
fn is_rfc3339_nano(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range.clone())
            .is_some_and(|s| s.len() == range.len() && s.iter().all(u8::is_ascii_digit))
    };
    if !(digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19))
    {
        return false;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let count = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=9).contains(&count) {
            return false;
        }
        rest = &fraction[count..];
    }
    match rest.as_bytes() {
        [b'Z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_and_partial_lines_join_per_stream() {
        let log = b"2026-12-03T07:00:00.123456789Z stdout P abc\n\
                    2026-12-03T07:00:00.2Z stderr F oops\n\
                    2026-12-03T07:00:00.3+01:00 stdout F def\n\
                    2026-12-03T07:00:01Z stdout F \n";
        let streams = read(log).unwrap();
        assert_eq!(streams.stdout_text(), "abcdef\n\n");
        assert_eq!(streams.stderr_text(), "oops\n");
    }

    #[test]
    fn content_keeps_its_spaces() {
        let (stream, content, full) = parse_line(b"2026-12-03T07:00:00Z stdout F  a  b ").unwrap();
        assert_eq!((stream, content, full), ("stdout", &b" a  b "[..], true));
    }

    #[test]
    fn a_line_still_being_written_is_left_out() {
        let streams = read(b"2026-12-03T07:00:00Z stdout F one\n2026-12-03T07:00:00Z std").unwrap();
        assert_eq!(streams.stdout_text(), "one\n");
    }

    #[test]
    fn malformed_lines_are_named() {
        for (line, why) in [
            (&b"yesterday stdout F x\n"[..], "timestamp"),
            (b"2026-12-03T07:00:00Z stdin F x\n", "stream"),
            (b"2026-12-03T07:00:00Z stdout X x\n", "tag"),
            (b"2026-12-03T07:00:00Z stdout\n", "tag field"),
            (b"2026-12-03T07:00:00.Z stdout F x\n", "timestamp"),
            (b"2026-12-03T07:00:00+0100 stdout F x\n", "timestamp"),
        ] {
            let error = read(line).unwrap_err();
            assert!(error.contains("line 1") && error.contains(why), "{error}");
        }
    }

    #[test]
    fn the_tag_may_carry_more_fields() {
        assert!(
            parse_line(b"2026-12-03T07:00:00Z stdout F:extra x")
                .unwrap()
                .2
        );
    }
}
