//! Reading a log back: CRI, json-file or raw records turned into the lines the container wrote,
//! as `tether logs` prints them. The inverse of the sinks' encoding; a record that is not valid in
//! its format is passed over (a reader must never fail on a log someone else wrote to).

use crate::encode::Stream;
use crate::sink::LogFormat;
use std::fs::File;
use std::io::{self, Read};

/// The longest line a decoder assembles from partial records; a longer one is handed out in
/// pieces of this size (a log of endless `P` records must not grow a reader without bound).
pub const MAX_DECODED_LINE: usize = 1 << 20;

/// One line of original output (or a piece of a very long one, or the unterminated tail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedLine {
    /// The timestamp of its first record, as the log spells it (none in raw logs).
    pub time: Option<Vec<u8>>,
    /// Which stream wrote it.
    pub stream: Stream,
    /// The bytes, with their newline when the line ended.
    pub text: Vec<u8>,
}

/// Turns log records back into lines of output.
///
/// ```
/// use shim_io::{LogDecoder, LogFormat, Stream};
/// let mut decoder = LogDecoder::new(LogFormat::Cri);
/// let mut lines = Vec::new();
/// for record in ["2016-10-06T00:17:09.669794202Z stdout P hel", "2016-10-06T00:17:09.669794203Z stdout F lo"] {
///     decoder.record(record.as_bytes(), &mut |line| lines.push(line));
/// }
/// assert_eq!(lines[0].text, b"hello\n");
/// assert_eq!(lines[0].stream, Stream::Stdout);
/// ```
#[derive(Debug)]
pub struct LogDecoder {
    format: LogFormat,
    partial: [Option<DecodedLine>; 2],
}

impl LogDecoder {
    /// A decoder for logs in `format`.
    pub fn new(format: LogFormat) -> Self {
        LogDecoder {
            format,
            partial: [None, None],
        }
    }

    /// One record: a line of the log file without its newline.
    pub fn record(&mut self, record: &[u8], emit: &mut dyn FnMut(DecodedLine)) {
        let (time, stream, content, ends_line) = match self.format {
            LogFormat::Raw => {
                emit(DecodedLine {
                    time: None,
                    stream: Stream::Stdout,
                    text: [record, b"\n"].concat(),
                });
                return;
            }
            LogFormat::Cri => {
                let mut fields = record.splitn(4, |&b| b == b' ');
                let (Some(time), Some(stream), Some(tag)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return;
                };
                let content = fields.next().unwrap_or_default().to_vec();
                let ends_line = tag.split(|&b| b == b':').next() == Some(b"F");
                (time.to_vec(), stream_of(stream), content, ends_line)
            }
            LogFormat::JsonFile => {
                let Ok(serde_json::Value::Object(mut parsed)) =
                    serde_json::from_slice::<serde_json::Value>(record)
                else {
                    return;
                };
                let mut text = |key: &str| match parsed.remove(key) {
                    Some(serde_json::Value::String(text)) => Some(text),
                    _ => None,
                };
                let (Some(log), Some(stream), Some(time)) =
                    (text("log"), text("stream"), text("time"))
                else {
                    return;
                };
                let mut content = log.into_bytes();
                let ends_line = content.last() == Some(&b'\n');
                if ends_line {
                    content.pop();
                }
                (
                    time.into_bytes(),
                    stream_of(stream.as_bytes()),
                    content,
                    ends_line,
                )
            }
        };
        let slot = &mut self.partial[stream.index()];
        let line = slot.get_or_insert_with(|| DecodedLine {
            time: Some(time),
            stream,
            text: Vec::new(),
        });
        line.text.extend_from_slice(&content);
        if ends_line {
            if let Some(mut line) = slot.take() {
                line.text.push(b'\n');
                emit(line);
            }
        } else if line.text.len() >= MAX_DECODED_LINE {
            if let Some(line) = slot.take() {
                emit(line);
            }
        }
    }

    /// The end of the log: what is left is an unterminated last line.
    pub fn finish(&mut self, emit: &mut dyn FnMut(DecodedLine)) {
        for slot in &mut self.partial {
            if let Some(line) = slot.take() {
                emit(line);
            }
        }
    }
}

fn stream_of(name: &[u8]) -> Stream {
    if name == b"stderr" {
        Stream::Stderr
    } else {
        Stream::Stdout
    }
}

/// Reads the records of one log file as they are written, keeping an incomplete last record for
/// the next read. The decoder is the caller's, so a line split across rotated files is whole.
#[derive(Debug)]
pub struct LogReader {
    file: File,
    carry: Vec<u8>,
    raw: bool,
}

impl LogReader {
    /// `raw`: the file holds raw output, not records (an unterminated tail is output too).
    pub fn new(file: File, raw: bool) -> Self {
        LogReader {
            file,
            carry: Vec::new(),
            raw,
        }
    }

    /// The file it reads.
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn is_raw(&self) -> bool {
        self.raw
    }

    /// Feeds every complete record now in the file to `decoder`; returns whether anything was read.
    pub fn pump(
        &mut self,
        decoder: &mut LogDecoder,
        emit: &mut dyn FnMut(DecodedLine),
    ) -> io::Result<bool> {
        let mut chunk = vec![0u8; 256 * 1024];
        let mut any = false;
        loop {
            let n = match self.file.read(&mut chunk) {
                Ok(0) => return Ok(any),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            any = true;
            self.carry.extend_from_slice(&chunk[..n]);
            let mut start = 0;
            while let Some(newline) = memchr::memchr(b'\n', &self.carry[start..]) {
                decoder.record(&self.carry[start..start + newline], emit);
                start += newline + 1;
            }
            self.carry.drain(..start);
        }
    }

    /// The file is done with: a raw log's unterminated tail is output.
    pub fn finish(&mut self, emit: &mut dyn FnMut(DecodedLine)) {
        if self.raw && !self.carry.is_empty() {
            emit(DecodedLine {
                time: None,
                stream: Stream::Stdout,
                text: std::mem::take(&mut self.carry),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_keeps_an_incomplete_record_for_the_next_read() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut writer = File::create(&path).unwrap();
        writer
            .write_all(b"2016-10-06T00:17:09.669794202Z stdout F one\n2016-10-06T00:17:09.6")
            .unwrap();
        let mut reader = LogReader::new(File::open(&path).unwrap(), false);
        let mut decoder = LogDecoder::new(LogFormat::Cri);
        let mut lines = Vec::new();
        assert!(reader
            .pump(&mut decoder, &mut |l| lines.push(l.text))
            .unwrap());
        assert_eq!(lines, [b"one\n".to_vec()]);
        writer.write_all(b"69794203Z stderr F two\n").unwrap();
        assert!(reader
            .pump(&mut decoder, &mut |l| lines.push(l.text))
            .unwrap());
        assert!(!reader
            .pump(&mut decoder, &mut |l| lines.push(l.text))
            .unwrap());
        reader.finish(&mut |l| lines.push(l.text));
        assert_eq!(lines, [b"one\n".to_vec(), b"two\n".to_vec()]);
    }

    #[test]
    fn a_raw_reader_hands_out_its_unterminated_tail_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raw.log");
        std::fs::write(&path, b"a\nno newline").unwrap();
        let mut reader = LogReader::new(File::open(&path).unwrap(), true);
        let mut decoder = LogDecoder::new(LogFormat::Raw);
        let mut lines = Vec::new();
        reader
            .pump(&mut decoder, &mut |l| lines.push(l.text))
            .unwrap();
        reader.finish(&mut |l| lines.push(l.text));
        assert_eq!(lines, [b"a\n".to_vec(), b"no newline".to_vec()]);
    }

    fn decode(format: LogFormat, log: &[u8]) -> Vec<DecodedLine> {
        let mut decoder = LogDecoder::new(format);
        let mut lines = Vec::new();
        for record in log.split(|&b| b == b'\n').filter(|r| !r.is_empty()) {
            decoder.record(record, &mut |line| lines.push(line));
        }
        decoder.finish(&mut |line| lines.push(line));
        lines
    }

    #[test]
    fn json_file_records_become_lines() {
        let log = br#"{"log":"a\n","stream":"stdout","time":"t1"}
{"log":"b","stream":"stderr","time":"t2"}
{"log":"c\n","stream":"stderr","time":"t3"}
not json at all
"#;
        let lines = decode(LogFormat::JsonFile, log);
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0].text.as_slice(), lines[0].stream),
            (&b"a\n"[..], Stream::Stdout)
        );
        assert_eq!(lines[1].text, b"bc\n");
        assert_eq!(lines[1].time.as_deref(), Some(&b"t2"[..]));
    }

    #[test]
    fn endless_partial_records_are_handed_out_in_bounded_pieces() {
        let mut decoder = LogDecoder::new(LogFormat::Cri);
        let record = [b"t stdout P ".as_slice(), &[b'x'; 64 * 1024]].concat();
        let mut longest = 0;
        for _ in 0..64 {
            decoder.record(&record, &mut |line| longest = longest.max(line.text.len()));
        }
        assert!((MAX_DECODED_LINE..MAX_DECODED_LINE + 64 * 1024).contains(&longest));
    }

    #[test]
    fn short_or_odd_cri_records_are_passed_over() {
        let lines = decode(
            LogFormat::Cri,
            b"only-a-time\nt stdout\nt stdout F ok\nt stdout F\n",
        );
        let texts: Vec<&[u8]> = lines.iter().map(|l| l.text.as_slice()).collect();
        assert_eq!(texts, vec![&b"ok\n"[..], &b"\n"[..]]);
    }
}
