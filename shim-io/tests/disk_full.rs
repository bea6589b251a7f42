//! A log on a file system that fills up and frees again: no torn or glued record, and the drop
//! counted. Needs root (it mounts a 64 KiB tmpfs); unprivileged it says so and passes, unless
//! TETHER_E2E=require.

use shim_io::{LogFormat, LogSink, SinkOptions, Stream};
use std::process::Command;
use std::time::SystemTime;

struct Tmpfs(tempfile::TempDir);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

fn small_tmpfs() -> Option<Tmpfs> {
    if !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var("TETHER_E2E").as_deref() != Ok("require"),
            "this test needs root"
        );
        eprintln!("skipping: mounting a tmpfs needs root");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a tmpfs");
    Some(Tmpfs(dir))
}

#[test]
fn a_full_disk_leaves_whole_records_and_counts_the_drop() {
    let Some(fs) = small_tmpfs() else {
        return;
    };
    let filler = fs.0.path().join("filler");
    std::fs::write(&filler, vec![0u8; 32 * 1024]).unwrap();
    let log = fs.0.path().join("log");
    let mut sink = LogSink::open(&log, SinkOptions::new(LogFormat::Cri)).unwrap();
    let line = |n: usize| format!("L{n:06} {}\n", "x".repeat(190));
    let mut n = 0;
    while sink.stats().dropped == 0 {
        n += 1;
        assert!(n < 10_000, "the file system never filled");
        sink.write(Stream::Stdout, line(n).as_bytes(), SystemTime::now());
    }
    assert!(sink.take_error().is_some(), "the failure is reported");
    // More output while full, then room again.
    for _ in 0..20 {
        n += 1;
        sink.write(Stream::Stdout, line(n).as_bytes(), SystemTime::now());
    }
    std::fs::remove_file(&filler).unwrap();
    let last = n + 50;
    while n < last {
        n += 1;
        sink.write(Stream::Stdout, line(n).as_bytes(), SystemTime::now());
    }
    let dropped = sink
        .take_recovered()
        .expect("the recovery is reported with its count");
    assert_eq!(dropped, sink.stats().dropped);
    let text = std::fs::read_to_string(&log).unwrap();
    let mut numbers = Vec::new();
    for record in text.lines() {
        let mut fields = record.splitn(4, ' ');
        let (time, stream, tag, content) = (
            fields.next().unwrap(),
            fields.next().unwrap_or(""),
            fields.next().unwrap_or(""),
            fields.next().unwrap_or(""),
        );
        assert!(
            time.ends_with('Z') && time.len() == 30 && stream == "stdout" && tag == "F",
            "torn or glued record: {record:?}"
        );
        assert_eq!(content.len(), 198, "torn or glued record: {record:?}");
        numbers.push(content[1..7].parse::<usize>().unwrap());
    }
    assert!(numbers.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        numbers.last(),
        Some(&last),
        "output after the recovery is there"
    );
    let lost = last - numbers.len();
    assert!(lost > 0);
    assert_eq!(
        sink.stats().dropped,
        (lost * (40 + 198 + 1)) as u64,
        "the count is whole records' bytes"
    );
}
