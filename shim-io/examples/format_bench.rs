//! Log-formatting benchmark: 512 MiB of 71-byte lines (70 characters and a newline) arrive on a pipe
//! from another thread and go through the copier into a `cri`, `json-file` and `raw` log in turn.
//! Reports the copying thread's CPU time (user + system, getrusage RUSAGE_THREAD), so the writer's
//! work is not counted.
//!
//! `cargo run --release -p shim-io --example format_bench -- [MIB] [DIR]` (default 512 MiB in
//! /dev/shm, so the disk is not what is measured) prints one JSON object per format.

use mio::{Events, Poll, Token};
use shim_io::copier::Copier;
use shim_io::{Destination, LogFormat, LogSink, SinkOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: usize = std::env::args().nth(1).map_or(Ok(512), |a| a.parse())?;
    let dir = PathBuf::from(std::env::args().nth(2).unwrap_or_else(|| "/dev/shm".into()));
    for format in [LogFormat::Cri, LogFormat::JsonFile, LogFormat::Raw] {
        let log = dir.join(format!(
            "format-bench-{}-{}.log",
            std::process::id(),
            format.as_str()
        ));
        let result = run(format, &log, mib);
        let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_file(&log);
        let (cpu, wall) = result?;
        println!(
            "{{\"format\":\"{}\",\"input_mib\":{mib},\"log_mib\":{:.1},\"cpu_seconds\":{:.3},\"wall_seconds\":{:.3},\"mib_per_second\":{:.0}}}",
            format.as_str(),
            size as f64 / (1 << 20) as f64,
            cpu.as_secs_f64(),
            wall.as_secs_f64(),
            mib as f64 / wall.as_secs_f64()
        );
    }
    Ok(())
}

fn run(
    format: LogFormat,
    log: &std::path::Path,
    mib: usize,
) -> Result<(Duration, Duration), Box<dyn std::error::Error>> {
    let mut poll = Poll::new()?;
    let mut copier = Copier::new(|n| (Token(2 * n), Token(2 * n + 1)));
    copier.log_to(LogSink::open(log, SinkOptions::new(format))?);
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let _ = nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&read_end),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20),
    );
    let output = copier.add_output(
        poll.registry(),
        read_end,
        Destination::Log,
        "bench",
        "stdout",
    )?;
    let writer = std::thread::spawn(move || {
        let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWX\n";
        let block: Vec<u8> = line.iter().copied().cycle().take(71 * 1024).collect();
        let mut out = std::fs::File::from(write_end);
        let mut left = mib << 20;
        while left > 0 {
            let n = left.min(block.len());
            out.write_all(&block[..n]).expect("write to the pipe");
            left -= n;
        }
    });
    let cpu_start = thread_cpu();
    let start = Instant::now();
    let mut events = Events::with_capacity(16);
    while copier.is_open(output) {
        copier.work_backlog(poll.registry(), None);
        let timeout = match copier.next_deadline() {
            _ if copier.has_backlog() => Duration::ZERO,
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(30),
        };
        poll.poll(&mut events, Some(timeout))?;
        for event in events.iter() {
            copier.ready(poll.registry(), event.token().0 / 2, None);
        }
    }
    let wall = start.elapsed();
    let cpu = thread_cpu() - cpu_start;
    writer.join().map_err(|_| "writer panicked")?;
    Ok((cpu, wall))
}

fn thread_cpu() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_THREAD)
        .expect("getrusage");
    let user = usage.user_time();
    let system = usage.system_time();
    Duration::new(user.tv_sec() as u64, user.tv_usec() as u32 * 1000)
        + Duration::new(system.tv_sec() as u64, system.tv_usec() as u32 * 1000)
}
