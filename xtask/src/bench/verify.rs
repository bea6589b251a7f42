//! Byte-exact check of the throughput payload, reading each system's log format back.

use super::systems::System;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Checks that `log` holds exactly `bytes` bytes of `line\n` repeated, in the system's format.
pub fn payload(log: &Path, system: System, line: &str, bytes: usize) -> Result<(), String> {
    let file = std::fs::File::open(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut expected = Expected::new(line, bytes);
    let mut reader = BufReader::with_capacity(1 << 20, file);
    match system {
        // Raw bytes: runc alone writes the container's stdout straight to the file; containerd's
        // file:// log is the shim's raw copy.
        System::RuncAlone | System::CrunAlone | System::Containerd | System::ContainerdTether => {
            loop {
                let chunk = reader.fill_buf().map_err(|e| e.to_string())?;
                if chunk.is_empty() {
                    break;
                }
                let n = chunk.len();
                expected.feed(chunk)?;
                reader.consume(n);
            }
        }
        // CRI (tether) and k8s-file (conmon): `time stream tag content`.
        System::Tether
        | System::TetherCrun
        | System::Conmon
        | System::Podman
        | System::PodmanTether => {
            let mut record = Vec::new();
            loop {
                record.clear();
                if reader
                    .read_until(b'\n', &mut record)
                    .map_err(|e| e.to_string())?
                    == 0
                {
                    break;
                }
                let body = record.strip_suffix(b"\n").unwrap_or(&record);
                let mut fields = body.splitn(4, |&b| b == b' ');
                let (_, _, tag) = (fields.next(), fields.next(), fields.next());
                expected.feed(fields.next().unwrap_or_default())?;
                if tag == Some(b"F") {
                    expected.feed(b"\n")?;
                }
            }
        }
    }
    expected.finish()
}

struct Expected {
    pattern: Vec<u8>,
    position: usize,
    total: usize,
}

impl Expected {
    fn new(line: &str, total: usize) -> Self {
        Expected {
            pattern: format!("{line}\n").into_bytes(),
            position: 0,
            total,
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        for (i, &b) in bytes.iter().enumerate() {
            let at = self.position + i;
            if at >= self.total || b != self.pattern[at % self.pattern.len()] {
                return Err(format!("payload differs at byte {at}"));
            }
        }
        self.position += bytes.len();
        Ok(())
    }

    fn finish(&self) -> Result<(), String> {
        if self.position == self.total {
            Ok(())
        } else {
            Err(format!(
                "payload has {} of {} bytes",
                self.position, self.total
            ))
        }
    }
}
