//! The copier with real pipes into its log: rotation under load, write failures, stdin
//! backpressure, splice, coalescing, memory given back.

mod common;

use common::{pump_once, pump_until, read_cri, tokens};
use mio::Poll;
use shim_io::copier::Copier;
use shim_io::{numbered, Destination, InputFrom, LogFormat, LogSink, Rotation, SinkOptions};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);

fn pipe() -> (File, File) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    (File::from(r), File::from(w))
}

/// A copier copying one pipe (copy 0, stdout) into its log at `log`; returns the pipe's write end.
fn copier_with_output(log: &Path, options: SinkOptions) -> (Poll, Copier, File) {
    let poll = Poll::new().unwrap();
    let mut copier = Copier::new(tokens);
    copier.log_to(LogSink::open(log, options).unwrap());
    let (read_end, write_end) = pipe();
    let n = copier
        .add_output(
            poll.registry(),
            read_end.into(),
            Destination::Log,
            "test",
            "stdout",
        )
        .unwrap();
    assert_eq!(n, OUTPUT);
    (poll, copier, write_end)
}

/// The number of the one output.
const OUTPUT: usize = 0;

/// The output reached its end: everything it carried is in the log.
fn closed(copier: &mut Copier) -> bool {
    !copier.is_open(OUTPUT)
}

/// The log's own calls, for a test that reaches into it.
fn sink(copier: &Copier) -> &LogSink {
    copier.log().unwrap()
}

/// Every CRI file of a rotated log, oldest first.
fn all_files(log: &Path) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for n in (1..10_000).rev() {
        if let Ok(bytes) = std::fs::read(numbered(log, n)) {
            files.push(bytes);
        }
    }
    files.push(std::fs::read(log).unwrap());
    files
}

#[test]
fn each_rotated_file_says_where_it_begins_in_all_that_was_logged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ctr.log");
    let options = SinkOptions::new(LogFormat::Cri).rotation(Rotation {
        max_size: 4096,
        max_files: 50,
    });
    let (mut poll, mut copier, mut write_end) = copier_with_output(&log, options);
    let writer = std::thread::spawn(move || {
        for n in 0..2000 {
            writeln!(write_end, "line {n:06}").unwrap();
        }
    });
    pump_until(&mut poll, &mut copier, TIMEOUT, closed);
    writer.join().unwrap();
    // Oldest first: log.N ... log.1, log.
    let mut paths: Vec<_> = (1..50)
        .map(|n| shim_io::numbered(&log, n))
        .filter(|p| p.exists())
        .collect();
    paths.reverse();
    paths.push(log.clone());
    assert!(paths.len() > 5, "rotated {} times", paths.len());
    let mut expected = shim_io::log_file_offset(&std::fs::File::open(&paths[0]).unwrap())
        .expect("the file system keeps user attributes");
    for path in &paths {
        let file = std::fs::File::open(path).unwrap();
        assert_eq!(
            shim_io::log_file_offset(&file),
            Some(expected),
            "{}",
            path.display()
        );
        expected += file.metadata().unwrap().len();
    }
}

#[test]
fn rotation_under_load_loses_and_duplicates_nothing() {
    const LINES: usize = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ctr.log");
    let options = SinkOptions::new(LogFormat::Cri).rotation(Rotation {
        max_size: 64 * 1024,
        max_files: 5000,
    });
    let (mut poll, mut copier, mut write_end) = copier_with_output(&log, options);
    let writer = std::thread::spawn(move || {
        for n in 0..LINES {
            writeln!(write_end, "line {n:06} of the rotation test").unwrap();
        }
    });
    // Rotate from outside too, as logrotate would: rename, then ask for a reopen.
    let mut external = 0;
    let mut last_external = Instant::now();
    pump_until(&mut poll, &mut copier, TIMEOUT, |copier| {
        if last_external.elapsed() > Duration::from_millis(20) && external < 20 {
            let target = dir.path().join(format!("external-{external:02}"));
            std::fs::rename(&log, &target).unwrap();
            copier.reopen_log().unwrap();
            external += 1;
            last_external = Instant::now();
        }
        closed(copier)
    });
    writer.join().unwrap();
    let stats = sink(&copier).stats();
    assert!(stats.rotations > 50, "{stats:?}");
    let mut files: Vec<Vec<u8>> = (0..external)
        .map(|n| std::fs::read(dir.path().join(format!("external-{n:02}"))).unwrap())
        .collect();
    files.extend(all_files(&log));
    let mut seen = BTreeMap::new();
    for file in &files {
        assert!(
            file.is_empty() || file.ends_with(b"\n"),
            "a record was torn across files"
        );
        let (out, _) = read_cri(file);
        for line in String::from_utf8(out).unwrap().lines() {
            let n: usize = line[5..11].parse().unwrap();
            *seen.entry(n).or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), LINES, "lines lost");
    assert!(seen.values().all(|&c| c == 1), "lines duplicated");
    assert!(
        files.iter().all(|f| f.len() as u64 <= 64 * 1024),
        "a file grew past max_size"
    );
}

#[test]
fn failing_log_never_blocks_the_writer_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ctr.log");
    // A real ENOSPC: the log path leads to /dev/full.
    std::os::unix::fs::symlink("/dev/full", &log).unwrap();
    let (mut poll, mut copier, mut write_end) =
        copier_with_output(&log, SinkOptions::new(LogFormat::Cri));
    // 8 MiB is far more than a pipe holds: the writer finishes only if the copier keeps reading.
    let writer = std::thread::spawn(move || {
        let line = [b'x'; 1023];
        for _ in 0..8192 {
            write_end.write_all(&line).unwrap();
            write_end.write_all(b"\n").unwrap();
        }
        write_end
    });
    let mut writer = Some(writer);
    let mut write_end = None;
    pump_until(&mut poll, &mut copier, TIMEOUT, |_| {
        if writer.as_ref().is_some_and(|w| w.is_finished()) {
            write_end = Some(writer.take().unwrap().join().unwrap());
        }
        write_end.is_some()
    });
    let mut write_end = write_end.unwrap();
    // Drain what is left in the pipe, then look at the damage report.
    pump_until(&mut poll, &mut copier, TIMEOUT, |copier| {
        sink(copier).stats().dropped >= 8 * 1024 * 1024
    });
    copier.work_backlog(poll.registry(), None);
    let warnings: Vec<String> = copier
        .take_notices()
        .into_iter()
        .filter_map(|notice| match notice {
            shim_io::copier::Notice::Warn(text) => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "reported once, not per write: {warnings:?}"
    );
    assert!(
        warnings[0].contains("No space left on device"),
        "{warnings:?}"
    );
    assert!(sink(&copier).stats().failures > 1);

    // The disk has room again: point the log at a real file, reopen, and writing resumes.
    std::fs::remove_file(&log).unwrap();
    copier.reopen_log().unwrap();
    write_end.write_all(b"back again\n").unwrap();
    drop(write_end);
    pump_until(&mut poll, &mut copier, TIMEOUT, closed);
    let (out, _) = read_cri(&std::fs::read(&log).unwrap());
    assert_eq!(out, b"back again\n");
}

#[test]
fn stdin_copy_holds_back_instead_of_buffering_everything() {
    let mut poll = Poll::new().unwrap();
    let mut copier = Copier::new(tokens);
    let (source_read, mut source_write) = pipe();
    let (destination_read, destination_write) = pipe();
    let input = copier
        .add_input(
            poll.registry(),
            InputFrom::Fifo(source_read),
            destination_write,
            false,
        )
        .unwrap();
    let payload: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let expected = payload.clone();
    // Nonblocking writes into the source: count how far the writer gets while nobody reads.
    nix::fcntl::fcntl(
        source_write.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let mut offset = 0;
    let mut stalled_rounds = 0;
    while stalled_rounds < 20 {
        match source_write.write(&payload[offset..]) {
            Ok(n) => {
                offset += n;
                stalled_rounds = 0;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => stalled_rounds += 1,
            Err(e) => panic!("{e}"),
        }
        // Let the copier take whatever it will take.
        pump_once(&mut poll, &mut copier, Duration::from_millis(5));
    }
    // Two pipes of 64 KiB, what the copier holds (1 MiB) and one read past it: the rest stays
    // with the writer.
    let bound = 2 * 64 * 1024 + shim_io::input::INPUT_LIMIT + shim_io::output::COPY_BUFFER;
    assert!(offset <= bound, "the copier took {offset} bytes");
    assert!(offset < payload.len());
    // Now read the destination while writing the rest; everything arrives in order.
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut destination = destination_read;
        destination.read_to_end(&mut got).unwrap();
        got
    });
    let deadline = Instant::now() + TIMEOUT;
    while offset < payload.len() {
        assert!(Instant::now() < deadline, "the copier stopped taking input");
        if let Ok(n) = source_write.write(&payload[offset..]) {
            offset += n;
        }
        pump_once(&mut poll, &mut copier, Duration::from_millis(5));
    }
    // The end of the input (CloseIO): the process gets end-of-file once all is written.
    copier.close_input(poll.registry(), input);
    pump_until(&mut poll, &mut copier, TIMEOUT, |_| reader.is_finished());
    assert!(reader.join().unwrap() == expected);
}

#[test]
fn raw_splices_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("raw.log");
    let options = SinkOptions::new(LogFormat::Raw).rotation(Rotation {
        max_size: 1 << 20,
        max_files: 100,
    });
    let (mut poll, mut copier, mut write_end) = copier_with_output(&log, options);
    let payload: Vec<u8> = (0..10_000_000u32).map(|i| (i % 253) as u8).collect();
    let expected = payload.clone();
    let writer = std::thread::spawn(move || write_end.write_all(&payload).unwrap());
    pump_until(&mut poll, &mut copier, TIMEOUT, closed);
    writer.join().unwrap();
    let joined: Vec<u8> = all_files(&log).concat();
    assert!(joined == expected, "raw log differs from the bytes written");
    assert!(sink(&copier).stats().rotations >= 9);
}

#[test]
fn a_line_after_a_quiet_spell_is_copied_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ctr.log");
    let (mut poll, mut copier, mut write_end) =
        copier_with_output(&log, SinkOptions::new(LogFormat::Cri));
    pump_once(&mut poll, &mut copier, Duration::ZERO);
    write_end.write_all(b"hello\n").unwrap();
    // One readiness event is enough: no hold-back deadline for a lone line.
    let mut rounds = 0;
    while read_cri(&std::fs::read(&log).unwrap()).0.is_empty() {
        rounds += 1;
        assert!(rounds < 100, "the line never arrived");
        pump_once(&mut poll, &mut copier, Duration::from_millis(100));
    }
    assert!(
        copier.next_deadline().is_none(),
        "a lone line must not be held back"
    );
}

#[test]
fn output_after_the_memory_was_given_back_is_copied_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ctr.log");
    let (mut poll, mut copier, write_end) =
        copier_with_output(&log, SinkOptions::new(LogFormat::Cri));
    let logged = |n: usize| {
        let (out, _) = read_cri(&std::fs::read(&log).unwrap_or_default());
        out.len() >= n
    };
    // A burst, then the room it took is given back, then more: the pipe is not taken for closed
    // (an empty read buffer would read as its end) and nothing is lost.
    let burst = vec![b'x'; 300 * 1024];
    let mut expected = Vec::new();
    for round in 0..3 {
        let mut chunk = burst.clone();
        chunk.extend_from_slice(format!("\nround {round}\n").as_bytes());
        expected.extend_from_slice(&chunk);
        // More than a pipe holds: written beside the copier, which reads it.
        let mut writer = write_end.try_clone().unwrap();
        let writing = std::thread::spawn(move || writer.write_all(&chunk).unwrap());
        let want = expected.len();
        pump_until(&mut poll, &mut copier, Duration::from_secs(10), |copier| {
            assert!(!closed(copier), "the pipe was taken for closed");
            logged(want)
        });
        writing.join().unwrap();
        copier.release_memory();
    }
    drop(write_end);
    let (out, _) = read_cri(&std::fs::read(&log).unwrap());
    assert_eq!(out, expected);
}
