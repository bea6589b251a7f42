//! `tether stats`: what running containers use, read from their cgroups (v1 or v2) by the CLI
//! itself, as `docker stats` shows it: CPU as a percentage of one CPU over the last interval,
//! memory in use (without the inactive page cache, as docker counts it) against the limit, and
//! the number of tasks. The daemons are not asked, so they do not grow for it.

use crate::cli::args::PsFormat;
use crate::cli::client::{request, resolve_id, REQUEST_TIMEOUT};
use crate::cli::error::{Error, Result};
use crate::common::cgroup::Cgroup;
use crate::common::metrics::{self, v1, v2};
use shim_core::protocol::{Reply, Request};
use shim_core::{StateLayout, Status};
use std::time::{Duration, Instant};

/// How far apart the two readings of a round are (docker's one second).
const INTERVAL: Duration = Duration::from_secs(1);
/// A limit at or above this is "none" (cgroup v1 says so with a page-rounded `i64::MAX`).
const UNLIMITED: u64 = 1 << 62;

/// One container's figures at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    /// CPU time used, nanoseconds.
    pub cpu_ns: u64,
    pub memory: u64,
    /// None: no limit.
    pub memory_limit: Option<u64>,
    pub pids: u64,
}

/// One row of the table.
#[derive(Debug, serde::Serialize)]
struct Row {
    id: String,
    cpu_percent: f64,
    memory_bytes: u64,
    memory_limit_bytes: Option<u64>,
    memory_percent: Option<f64>,
    pids: u64,
}

/// Runs `tether stats`; every running container when `ids` is empty.
pub fn stats(
    layout: &StateLayout,
    ids: &[String],
    no_stream: bool,
    format: PsFormat,
) -> Result<u8> {
    let named = !ids.is_empty();
    loop {
        let targets = targets(layout, ids)?;
        let first: Vec<Option<Reading>> = targets.iter().map(|(_, cgroup)| read(cgroup)).collect();
        let started = Instant::now();
        std::thread::sleep(INTERVAL);
        let elapsed = started.elapsed();
        let mut rows = Vec::new();
        for ((id, cgroup), before) in targets.iter().zip(first) {
            match (before, read(cgroup)) {
                (Some(before), Some(after)) => rows.push(row(id, before, after, elapsed)),
                // Gone in between: a named one is an error, as docker says; others drop out.
                _ if named => {
                    return Err(Error::failed(format!("container {id}: its cgroup is gone")))
                }
                _ => {}
            }
        }
        if !no_stream
            && format == PsFormat::Table
            && std::io::IsTerminal::is_terminal(&std::io::stdout())
        {
            // Redraw in place, as docker stats does.
            print!("\x1b[2J\x1b[H");
        }
        print_rows(&rows, format);
        if no_stream {
            return Ok(0);
        }
    }
}

/// The containers to show, each with its cgroup.
fn targets(layout: &StateLayout, ids: &[String]) -> Result<Vec<(String, Cgroup)>> {
    let named = !ids.is_empty();
    let ids: Vec<String> = if named {
        ids.to_vec()
    } else {
        layout
            .list()
            .map_err(|e| Error::failed(format!("state dir {}: {e}", layout.root().display())))?
            .into_iter()
            .map(|id| id.as_str().to_owned())
            .collect()
    };
    let mut targets = Vec::new();
    for text in ids {
        let found = resolve_id(layout, &text).and_then(|id| {
            let state = match request(layout, &id, &Request::State, Some(REQUEST_TIMEOUT))? {
                Reply::State(state) => state,
                other => {
                    return Err(Error::failed(format!(
                        "unexpected answer from the shim daemon: {other:?}"
                    )))
                }
            };
            if !matches!(state.status, Status::Running | Status::Paused) {
                return Err(Error::invalid(format!("container {id} is not running")));
            }
            let cgroup = Cgroup::of_process(state.pid)
                .map_err(|e| Error::failed(format!("container {id}: its cgroup: {e}")))?;
            Ok((id.as_str().to_owned(), cgroup))
        });
        match found {
            Ok(target) => targets.push(target),
            Err(e) if named => return Err(e),
            Err(_) => {} // not running, or its daemon is gone: not listed
        }
    }
    Ok(targets)
}

fn row(id: &str, before: Reading, after: Reading, elapsed: Duration) -> Row {
    let cpu = after.cpu_ns.saturating_sub(before.cpu_ns) as f64;
    let cpu_percent = cpu / elapsed.as_nanos().max(1) as f64 * 100.0;
    Row {
        id: id.to_owned(),
        cpu_percent,
        memory_bytes: after.memory,
        memory_limit_bytes: after.memory_limit,
        memory_percent: after
            .memory_limit
            .map(|limit| after.memory as f64 / limit.max(1) as f64 * 100.0),
        pids: after.pids,
    }
}

fn print_rows(rows: &[Row], format: PsFormat) {
    if format == PsFormat::Json {
        println!("{}", serde_json::to_string(rows).expect("rows serialize"));
        return;
    }
    let width = rows.iter().map(|r| r.id.len()).max().unwrap_or(0).max(12);
    println!(
        "{:width$}  {:>7}  {:>21}  {:>7}  {:>5}",
        "CONTAINER", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"
    );
    for row in rows {
        let limit = row.memory_limit_bytes.map_or("none".to_owned(), size);
        let percent = row
            .memory_percent
            .map_or("--".to_owned(), |p| format!("{p:.2}%"));
        println!(
            "{:width$}  {:>6.2}%  {:>21}  {:>7}  {:>5}",
            row.id,
            row.cpu_percent,
            format!("{} / {limit}", size(row.memory_bytes)),
            percent,
            row.pids
        );
    }
}

/// Binary units, as docker prints them: `1.5MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.2}{}", UNITS[unit])
    }
}

/// Reads a cgroup's figures from the metrics containerd's Stats answers with (docker computes its
/// own from those too); None when the cgroup is gone (the container exited).
fn read(cgroup: &Cgroup) -> Option<Reading> {
    let file = |name: &str| cgroup.read(name);
    let reading = match cgroup {
        Cgroup::V1 { .. } => from_v1(&metrics::v1_metrics(&file)),
        Cgroup::V2 { .. } => from_v2(&metrics::v2_metrics(&file)),
    };
    // Missing files read as zeros; a cgroup still there after the reading was there during it.
    let usage = if matches!(cgroup, Cgroup::V1 { .. }) {
        "memory.usage_in_bytes"
    } else {
        "memory.current"
    };
    file(usage).map(|_| reading)
}

/// A limit file's value, None for "no limit" (or none written).
fn limit(value: u64) -> Option<u64> {
    Some(value).filter(|l| (1..UNLIMITED).contains(l))
}

/// Docker's figures from cgroup v1 metrics: memory without the inactive page cache.
pub fn from_v1(metrics: &v1::Metrics) -> Reading {
    let memory = &metrics.memory;
    Reading {
        cpu_ns: metrics.cpu.usage.total,
        memory: memory
            .usage
            .usage
            .saturating_sub(memory.total_inactive_file),
        memory_limit: limit(memory.usage.limit),
        pids: metrics.pids.current,
    }
}

/// Docker's figures from cgroup v2 metrics.
pub fn from_v2(metrics: &v2::Metrics) -> Reading {
    let memory = &metrics.memory;
    Reading {
        cpu_ns: metrics.cpu.usage_usec.saturating_mul(1000),
        memory: memory.usage.saturating_sub(memory.inactive_file),
        memory_limit: limit(memory.usage_limit),
        pids: metrics.pids.current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files of `(name, text)` pairs, as a cgroup reader.
    fn files<'a>(pairs: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.to_string())
        }
    }

    #[test]
    fn v1_files_give_docker_figures() {
        let reading = from_v1(&metrics::v1_metrics(&files(&[
            ("cpuacct.usage", "123456789\n"),
            ("memory.usage_in_bytes", "10485760\n"),
            ("memory.stat", "cache 4096\ntotal_inactive_file 1048576\n"),
            ("memory.limit_in_bytes", "67108864\n"),
            ("pids.current", "3\n"),
        ])));
        assert_eq!(
            reading,
            Reading {
                cpu_ns: 123_456_789,
                memory: 9 << 20,
                memory_limit: Some(64 << 20),
                pids: 3
            }
        );
        let unlimited = files(&[("memory.limit_in_bytes", "9223372036854771712\n")]);
        assert_eq!(from_v1(&metrics::v1_metrics(&unlimited)).memory_limit, None);
    }

    #[test]
    fn v2_files_give_docker_figures() {
        let reading = from_v2(&metrics::v2_metrics(&files(&[
            ("cpu.stat", "usage_usec 2500\nuser_usec 2000\n"),
            ("memory.current", "8192\n"),
            ("memory.stat", "inactive_file 4096\n"),
            ("memory.max", "max\n"),
            ("pids.current", "1\n"),
        ])));
        assert_eq!(reading.cpu_ns, 2_500_000);
        assert_eq!(reading.memory, 4096);
        assert_eq!(reading.memory_limit, None);
        assert_eq!(reading.pids, 1);
    }

    #[test]
    fn a_row_is_a_percentage_of_one_cpu() {
        let before = Reading {
            cpu_ns: 1_000_000_000,
            ..Reading::default()
        };
        let after = Reading {
            cpu_ns: 1_500_000_000,
            memory: 32 << 20,
            memory_limit: Some(64 << 20),
            ..Reading::default()
        };
        let row = row("web", before, after, Duration::from_secs(1));
        assert!((row.cpu_percent - 50.0).abs() < 1e-9);
        assert_eq!(row.memory_percent, Some(50.0));
        assert_eq!(size(1536 << 10), "1.50MiB");
        assert_eq!(size(12), "12B");
    }
}
