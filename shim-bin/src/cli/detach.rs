//! Detach keys, as docker has them: a sequence typed on an attached terminal (Ctrl-P Ctrl-Q by
//! default) that ends `attach` or `exec -it` and leaves the container running. Written in docker's
//! syntax: keys separated by commas, each a single character or `ctrl-X` with X one of `a`–`z`,
//! `@`, `[`, `\`, `]`, `^`, `_`.

/// Docker's default.
pub const DEFAULT: &str = "ctrl-p,ctrl-q";

/// A sequence to watch for, and how much of it was typed so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachKeys {
    keys: Vec<u8>,
    matched: usize,
}

/// What typed input means.
#[derive(Debug, PartialEq, Eq)]
pub enum Typed {
    /// Pass these bytes on (possibly none: a sequence may be under way).
    Input(Vec<u8>),
    /// The sequence was typed: pass on these bytes that came before it, then detach.
    Detach(Vec<u8>),
}

impl DetachKeys {
    /// Parses docker's syntax; the error is one line naming the key.
    pub fn parse(text: &str) -> Result<DetachKeys, String> {
        let mut keys = Vec::new();
        for key in text.split(',') {
            let lower = key.trim().to_ascii_lowercase();
            let byte = match lower.strip_prefix("ctrl-") {
                Some(rest) if rest.len() == 1 => match rest.as_bytes()[0] {
                    c @ b'a'..=b'z' => c - b'a' + 1,
                    b'@' => 0,
                    c @ (b'[' | b'\\' | b']' | b'^' | b'_') => c - b'@',
                    _ => return Err(invalid(key)),
                },
                Some(_) => return Err(invalid(key)),
                None if key.len() == 1 && key.is_ascii() => key.as_bytes()[0],
                None => return Err(invalid(key)),
            };
            keys.push(byte);
        }
        Ok(DetachKeys { keys, matched: 0 })
    }

    /// Looks at what was typed: bytes of the sequence are held until it is complete or broken.
    pub fn feed(&mut self, typed: &[u8]) -> Typed {
        let mut out = Vec::with_capacity(typed.len());
        for &byte in typed {
            if byte == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return Typed::Detach(out);
                }
                continue;
            }
            // Broken: what was held was input after all.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if byte == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    self.matched = 0;
                    return Typed::Detach(out);
                }
            } else {
                out.push(byte);
            }
        }
        Typed::Input(out)
    }
}

fn invalid(key: &str) -> String {
    format!(
        "detach keys: {key:?} is not a key (say a single character or ctrl-X, as in ctrl-p,ctrl-q)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_syntax_is_parsed() {
        assert_eq!(DetachKeys::parse(DEFAULT).unwrap().keys, vec![0x10, 0x11]);
        assert_eq!(
            DetachKeys::parse("ctrl-@,ctrl-[,ctrl-_,a,Ctrl-A")
                .unwrap()
                .keys,
            vec![0, 27, 31, b'a', 1]
        );
        for bad in ["", "ctrl-", "ctrl-1", "ctrl-pq", "ab", "é"] {
            let error = DetachKeys::parse(bad).unwrap_err();
            assert!(error.starts_with("detach keys"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn the_sequence_detaches_and_a_broken_one_is_input() {
        let mut keys = DetachKeys::parse(DEFAULT).unwrap();
        assert_eq!(keys.feed(b"ls\x10"), Typed::Input(b"ls".to_vec()));
        assert_eq!(keys.feed(b"\x11"), Typed::Detach(Vec::new()));
        assert_eq!(keys.feed(b"a\x10b"), Typed::Input(b"a\x10b".to_vec()));
        assert_eq!(keys.feed(b"\x10\x10\x11"), Typed::Detach(b"\x10".to_vec()));
        let mut one = DetachKeys::parse("ctrl-x").unwrap();
        assert_eq!(one.feed(b"ab\x18cd"), Typed::Detach(b"ab".to_vec()));
    }
}
