//! Splitting a byte stream into log records: whole lines, chunks of over-long lines, and the
//! unterminated tail at end of stream. Memory is bounded by the maximum record size, whatever the input.

/// One record's content and whether it ends a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The bytes, without the line's newline.
    pub content: &'a [u8],
    /// Whether the line ends here (a newline followed `content`).
    pub ends_line: bool,
}

/// How a partial record may be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutRule {
    /// Anywhere (CRI content is bytes).
    AnyByte,
    /// Not inside a UTF-8 character when one straddles the limit (json-file content is text: a cut
    /// character would become two replacement characters).
    CharBoundary,
}

/// Per-stream framing state.
#[derive(Debug, Clone)]
pub struct LineFramer {
    pending: Vec<u8>,
    max_record: usize,
    cut: CutRule,
}

impl LineFramer {
    /// Gives back the room a partial record took, when none is pending.
    pub fn release_memory(&mut self) {
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
    }

    /// A framer whose records hold at most `max_record` content bytes (at least 4).
    pub fn new(max_record: usize, cut: CutRule) -> Self {
        let max_record = max_record.max(4);
        LineFramer {
            // Made at the first partial line: a stream that writes none (or nothing) costs none.
            pending: Vec::new(),
            max_record,
            cut,
        }
    }

    /// Bytes held back waiting for the rest of their line.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Feeds `input`, calling `emit` for each complete record, in order.
    pub fn push(&mut self, mut input: &[u8], mut emit: impl FnMut(Record<'_>)) {
        while !input.is_empty() {
            let room = self.max_record - self.pending.len();
            match memchr::memchr(b'\n', &input[..input.len().min(room + 1)]) {
                Some(newline) if newline <= room => {
                    let line = &input[..newline];
                    if self.pending.is_empty() {
                        emit(Record {
                            content: line,
                            ends_line: true,
                        });
                    } else {
                        self.pending.extend_from_slice(line);
                        emit(Record {
                            content: &self.pending,
                            ends_line: true,
                        });
                        self.pending.clear();
                    }
                    input = &input[newline + 1..];
                }
                _ if input.len() < room => {
                    self.pending.extend_from_slice(input);
                    return;
                }
                _ => {
                    // No newline within the limit: the record is full.
                    self.pending.extend_from_slice(&input[..room]);
                    input = &input[room..];
                    let cut = self.cut_point();
                    emit(Record {
                        content: &self.pending[..cut],
                        ends_line: false,
                    });
                    self.pending.drain(..cut);
                }
            }
        }
    }

    /// End of stream: emits the unterminated tail, if any, as a record that does not end a line.
    pub fn finish(&mut self, mut emit: impl FnMut(Record<'_>)) {
        if !self.pending.is_empty() {
            emit(Record {
                content: &self.pending,
                ends_line: false,
            });
            self.pending.clear();
        }
    }

    /// Where to cut a full pending buffer.
    fn cut_point(&self) -> usize {
        let len = self.pending.len();
        if self.cut == CutRule::AnyByte {
            return len;
        }
        // Back off over an incomplete but so far valid UTF-8 sequence at the end (at most 3 bytes).
        let lead = (len.saturating_sub(3)..len)
            .rev()
            .find(|&i| self.pending[i] & 0xC0 != 0x80);
        match lead {
            Some(start) if start > 0 => {
                let incomplete = matches!(
                    std::str::from_utf8(&self.pending[start..]),
                    Err(e) if e.error_len().is_none()
                );
                if incomplete {
                    start
                } else {
                    len
                }
            }
            _ => len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(max: usize, cut: CutRule, chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut framer = LineFramer::new(max, cut);
        let mut out = Vec::new();
        for chunk in chunks {
            framer.push(chunk, |r| {
                out.push((String::from_utf8_lossy(r.content).into_owned(), r.ends_line))
            });
        }
        framer.finish(|r| out.push((String::from_utf8_lossy(r.content).into_owned(), r.ends_line)));
        out
    }

    #[test]
    fn lines_partials_and_tail() {
        let out = frame(
            8,
            CutRule::AnyByte,
            &[b"ab", b"c\n\nlonger than eight\ntai", b"l"],
        );
        let expect = [
            ("abc", true),
            ("", true),
            ("longer t", false),
            ("han eigh", false),
            ("t", true),
            ("tail", false),
        ];
        let expect: Vec<(String, bool)> = expect.iter().map(|(s, e)| (s.to_string(), *e)).collect();
        assert_eq!(out, expect);
    }

    #[test]
    fn exactly_full_line_is_one_record() {
        let out = frame(4, CutRule::AnyByte, &[b"abcd\n"]);
        assert_eq!(out, vec![("abcd".to_string(), true)]);
    }

    #[test]
    fn utf8_character_is_not_cut() {
        // "aaa€" = 61 61 61 E2 82 AC: a 4-byte limit would cut the euro sign after its first byte.
        let mut framer = LineFramer::new(4, CutRule::CharBoundary);
        let mut records = Vec::new();
        framer.push("aaa€b\n".as_bytes(), |r| records.push(r.content.to_vec()));
        assert_eq!(records, vec![b"aaa".to_vec(), "€b".as_bytes().to_vec()]);
    }

    #[test]
    fn memory_is_bounded_by_the_record_size() {
        let mut framer = LineFramer::new(16 * 1024, CutRule::AnyByte);
        let chunk = vec![b'x'; 64 * 1024];
        let mut total = 0;
        for _ in 0..160 {
            framer.push(&chunk, |r| total += r.content.len());
            assert!(framer.pending_len() <= 16 * 1024);
        }
        framer.finish(|r| total += r.content.len());
        assert_eq!(total, 160 * 64 * 1024);
    }
}
