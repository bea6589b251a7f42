//! podman with tether as its conmon against podman with conmon, in one run: `podman run -d` to the
//! container's first line in its log, and the monitor's memory per idle container. Each side has a
//! private store (the e2e suite's settings); `podman info` must name the conmon each side is for.

use super::report::Report;
use super::systems::{System, TIMEOUT};
use super::watch::DirWatch;
use super::{check_interrupt, procfs};
use crate::e2e::podman::{EngineCli, Podman, IMAGE};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The two sides: podman with conmon, podman with tether.
pub const SYSTEMS: [System; 2] = [System::Podman, System::PodmanTether];

/// One side, ready.
struct Side {
    system: System,
    podman: Podman,
    logs: PathBuf,
}

/// Measures both sides into `report`: `runs` starts each (interleaved), and `idle` containers
/// each for memory.
pub fn measure(
    dir: &Path,
    tether: &Path,
    rootfs: &Path,
    runs: usize,
    idle: usize,
    report: &mut Report,
) -> Result<(), String> {
    let cgroups_before = crate::e2e::podman::libpod_cgroups();
    // tether under the name that selects podman's door.
    let bin = dir.join("podman-bin");
    std::fs::create_dir_all(&bin).map_err(|e| format!("bench: {e}"))?;
    let tether_conmon = bin.join("conmon");
    std::fs::copy(tether, &tether_conmon).map_err(|e| format!("bench: {e}"))?;
    let mut sides = Vec::new();
    for (system, conmon) in [
        (System::Podman, PathBuf::from("/usr/bin/conmon")),
        (System::PodmanTether, tether_conmon.clone()),
    ] {
        let side_dir = dir.join(format!("podman-{}", sides.len()));
        let podman = Podman::configure(&side_dir, &conmon)?;
        podman.import(rootfs, IMAGE)?;
        let used = podman.ok(&["info", "--format", "{{.Host.Conmon.Path}}"])?;
        if used.trim() != conmon.to_string_lossy() {
            return Err(format!(
                "bench: podman uses {:?}, not {}",
                used.trim(),
                conmon.display()
            ));
        }
        let logs = side_dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| format!("bench: {e}"))?;
        sides.push(Side {
            system,
            podman,
            logs,
        });
    }
    let result = measure_sides(&sides, runs, idle, report);
    for side in &sides {
        side.podman.clean_up();
    }
    crate::e2e::podman::remove_new_cgroups(&cgroups_before);
    result
}

fn measure_sides(
    sides: &[Side],
    runs: usize,
    idle: usize,
    report: &mut Report,
) -> Result<(), String> {
    let mut startup: Vec<(System, Vec<f64>)> =
        sides.iter().map(|s| (s.system, Vec::new())).collect();
    for n in 0..runs {
        for (side, (_, samples)) in sides.iter().zip(startup.iter_mut()) {
            samples.push(first_line(side, n)?);
        }
    }
    report.add(
        "podman_startup",
        "podman run -d → first log line",
        "ms",
        startup,
    );
    let mut uss = Vec::new();
    for side in sides {
        let mut names = Vec::new();
        let mut values = Vec::new();
        let measured = (|| {
            for n in 0..idle {
                check_interrupt()?;
                let name = format!("idle-{n}");
                side.podman.ok(&[
                    "run",
                    "-d",
                    "--network",
                    "none",
                    "--name",
                    &name,
                    IMAGE,
                    "sleep",
                    "100000",
                ])?;
                names.push(name);
            }
            // Let start-up work settle before reading memory.
            std::thread::sleep(Duration::from_millis(500));
            for name in &names {
                let pid: i32 = side
                    .podman
                    .inspect(name, "{{.State.ConmonPid}}")?
                    .parse()
                    .map_err(|e| format!("ConmonPid: {e}"))?;
                if let Some(memory) = procfs::memory(pid) {
                    values.push(memory.uss as f64);
                }
            }
            Ok::<(), String>(())
        })();
        for name in &names {
            side.podman.remove(name);
        }
        measured?;
        uss.push((side.system, values));
    }
    report.add(
        "podman_uss",
        "podman's monitor USS per container",
        "KiB",
        uss,
    );
    Ok(())
}

/// `podman run -d` of a container that writes one line: the time to that line in its log.
fn first_line(side: &Side, n: usize) -> Result<f64, String> {
    check_interrupt()?;
    let log = side.logs.join(format!("{n}.log"));
    let name = format!("start-{n}");
    let path = format!("path={}", log.display());
    let watch = DirWatch::new(&side.logs)?;
    let start = Instant::now();
    let mut child = side
        .podman
        .command()
        .args(["run", "-d", "--network", "none", "--name", &name])
        .args(["--log-opt", &path, IMAGE])
        .args(["sh", "-c", "echo first; exec sleep 100000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("podman: {e}"))?;
    let result = watch
        .wait(TIMEOUT, || {
            std::fs::read(&log).is_ok_and(|b| b.ends_with(b"first\n"))
        })
        .map(|seen| seen.duration_since(start).as_secs_f64() * 1e3);
    let _ = child.wait();
    side.podman.remove(&name);
    result
}
