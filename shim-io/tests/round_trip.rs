//! Random output in random chunks, written through the CRI and json-file sinks and read back by the
//! kubelet's and docker's rules, gives back the bytes written.

mod common;

use common::{go_lossy, read_cri, read_json, Rng};
use shim_io::{LogFormat, LogSink, SinkOptions, Stream};
use std::time::SystemTime;

/// Output with the awkward cases: empty lines, `\r`, invalid UTF-8, multi-byte characters, lines far
/// over 16 KiB (up to 1 MiB), and often no final newline.
fn nasty_output(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(200) + 1 {
        match rng.below(8) {
            0 => {}
            1 => out.extend_from_slice(b"carriage\rreturn\r"),
            2 => out.extend_from_slice(b"bad \xff\xfe \xe2\x82 utf8"),
            3 => out.extend_from_slice("caf\u{e9} \u{20ac}\u{1F600}".as_bytes()),
            4 => {
                let len = rng.below(1 << 20) + 16 * 1024;
                let unit = "\u{20ac}ab".as_bytes();
                out.extend(unit.iter().cycle().take(len));
            }
            _ => {
                let len = rng.below(100);
                out.extend((0..len).map(|_| b'a' + (rng.below(26) as u8)));
            }
        }
        if rng.below(10) != 0 {
            out.push(b'\n');
        }
    }
    out
}

fn write_in_random_chunks(sink: &mut LogSink, rng: &mut Rng, stdout: &[u8], stderr: &[u8]) {
    let (mut a, mut b) = (stdout, stderr);
    while !a.is_empty() || !b.is_empty() {
        let (stream, data) = if b.is_empty() || (!a.is_empty() && rng.below(2) == 0) {
            (Stream::Stdout, &mut a)
        } else {
            (Stream::Stderr, &mut b)
        };
        let n = (rng.below(70_000) + 1).min(data.len());
        sink.write(stream, &data[..n], SystemTime::now());
        *data = &data[n..];
    }
    sink.finish(Stream::Stdout, SystemTime::now());
    sink.finish(Stream::Stderr, SystemTime::now());
}

#[test]
fn cri_gives_back_exactly_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for seed in 1..=12 {
        let mut rng = Rng::new(seed);
        let (stdout, stderr) = (nasty_output(&mut rng), nasty_output(&mut rng));
        let path = dir.path().join(format!("cri-{seed}.log"));
        let mut sink = LogSink::open(&path, SinkOptions::new(LogFormat::Cri)).unwrap();
        write_in_random_chunks(&mut sink, &mut rng, &stdout, &stderr);
        let log = std::fs::read(&path).unwrap();
        let (out, err) = read_cri(&log);
        assert!(out == stdout, "seed {seed}: stdout differs");
        assert!(err == stderr, "seed {seed}: stderr differs");
        // Records are bounded: no line of the log is longer than 16 KiB of content plus framing.
        assert!(log
            .split(|&b| b == b'\n')
            .all(|l| l.len() <= 16 * 1024 + 41));
    }
}

#[test]
fn json_file_gives_back_the_text() {
    let dir = tempfile::tempdir().unwrap();
    for seed in 1..=12 {
        let mut rng = Rng::new(seed * 7919);
        let (stdout, stderr) = (nasty_output(&mut rng), nasty_output(&mut rng));
        let path = dir.path().join(format!("json-{seed}.log"));
        let mut sink = LogSink::open(&path, SinkOptions::new(LogFormat::JsonFile)).unwrap();
        write_in_random_chunks(&mut sink, &mut rng, &stdout, &stderr);
        let (out, err) = read_json(&std::fs::read(&path).unwrap());
        assert!(out == go_lossy(&stdout), "seed {seed}: stdout differs");
        assert!(err == go_lossy(&stderr), "seed {seed}: stderr differs");
    }
}

#[test]
fn json_file_splits_long_lines_docker_style() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.log");
    let mut sink = LogSink::open(&path, SinkOptions::new(LogFormat::JsonFile)).unwrap();
    let mut line = vec![b'x'; 40 * 1024];
    line.push(b'\n');
    sink.write(Stream::Stdout, &line, SystemTime::now());
    let log = std::fs::read_to_string(&path).unwrap();
    let logs: Vec<String> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["log"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        logs.iter().map(String::len).collect::<Vec<_>>(),
        [16384, 16384, 8193]
    );
    assert!(!logs[0].ends_with('\n') && !logs[1].ends_with('\n') && logs[2].ends_with('\n'));
}

#[test]
fn unterminated_last_line_is_a_partial_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tail.log");
    let mut sink = LogSink::open(&path, SinkOptions::new(LogFormat::Cri)).unwrap();
    sink.write(Stream::Stdout, b"abc", SystemTime::now());
    assert!(sink.has_partial(Stream::Stdout));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"",
        "held until the line ends or the stream does"
    );
    sink.finish(Stream::Stdout, SystemTime::now());
    let log = std::fs::read_to_string(&path).unwrap();
    assert_eq!(&log[30..], " stdout P abc\n");
    assert_eq!(read_cri(log.as_bytes()).0, b"abc");
}

#[test]
fn raw_is_the_bytes_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raw.log");
    let mut sink = LogSink::open(&path, SinkOptions::new(LogFormat::Raw)).unwrap();
    let mut rng = Rng::new(99);
    let data = nasty_output(&mut rng);
    write_in_random_chunks(&mut sink, &mut rng, &data, b"");
    assert!(std::fs::read(&path).unwrap() == data);
}
