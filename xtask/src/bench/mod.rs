//! `cargo xtask bench [--quick] [--only NAME]`: tether side by side with runc alone, conmon and
//! containerd-shim-runc-v2, interleaved in one run. See docs/benchmarks.md.

pub mod containerd;
mod podman;
mod procfs;
mod report;
mod systems;
mod verify;
mod watch;

use report::Report;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use systems::{Env, Started, System, TIMEOUT};
use watch::DirWatch;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Fails once Ctrl-C (or SIGTERM) arrived, so every wait unwinds and cleanup runs.
pub fn check_interrupt() -> Result<(), String> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

/// Ctrl-C and SIGTERM set a flag [`check_interrupt`] reports, so cleanup runs.
pub fn install_interrupt_handler() {
    let handler = nix::sys::signal::SigHandler::Handler(on_interrupt);
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let _ = nix::sys::signal::signal(nix::sys::signal::Signal::SIGINT, handler);
        let _ = nix::sys::signal::signal(nix::sys::signal::Signal::SIGTERM, handler);
    }
}

const LINE: &str = "0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWX";
const MEASUREMENTS: &[&str] = &[
    "startup",
    "memory",
    "exit",
    "throughput",
    "exec",
    "rm",
    "soak",
    "podman",
];

struct Options {
    quick: bool,
    only: Option<String>,
}

impl Options {
    fn wants(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == name)
    }
}

pub fn run(args: &[String]) -> Result<(), String> {
    let mut options = Options {
        quick: false,
        only: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--only" => {
                let name = args.next().ok_or("bench: --only needs a name")?;
                if !MEASUREMENTS.contains(&name.as_str()) {
                    return Err(format!(
                        "bench: unknown measurement {name:?}; one of {}",
                        MEASUREMENTS.join(", ")
                    ));
                }
                options.only = Some(name.clone());
            }
            other => return Err(format!("bench: unknown option {other:?}")),
        }
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("bench: running containers needs root".into());
    }
    install_interrupt_handler();

    let mut systems = vec![System::RuncAlone, System::Tether];
    let mut report = Report {
        quick: options.quick,
        machine: machine(),
        ..Report::default()
    };
    if crate::util::on_path("conmon") {
        systems.push(System::Conmon);
    } else {
        report
            .notes
            .push("conmon is not installed (cargo xtask deps): left out".into());
    }
    let with_containerd = crate::util::on_path("containerd") && crate::util::on_path("ctr");
    if !with_containerd {
        report
            .notes
            .push("containerd is not installed (cargo xtask deps): left out".into());
    }

    println!("bench: building tether (release)");
    let tether = crate::util::build_tether(true)?;
    let dir = tempfile::Builder::new()
        .prefix("tether-bench-")
        .tempdir_in("/var/tmp")
        .map_err(|e| format!("bench: temp dir: {e}"))?;
    // The shared fixture rootfs (built on first use) doubles as the containerd image's layer.
    let probe = dir.path().join("probe-bundle");
    let rootfs = tether_tests::fixture::BundleSpec::shell("true")
        .create(&probe)
        .map_err(|e| e.to_string())?
        .rootfs();
    let containerd = if with_containerd {
        println!("bench: starting a private containerd and importing the fixture image");
        // containerd finds tether's shim (the release build) under its runtime name on its PATH.
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).map_err(|e| format!("bench: {e}"))?;
        std::os::unix::fs::symlink(&tether, bin.join("containerd-shim-tether-v2"))
            .map_err(|e| format!("bench: shim link: {e}"))?;
        let started = containerd::PrivateContainerd::start_for_bench(
            &dir.path().join("containerd"),
            &rootfs,
            &bin,
        );
        match started {
            Ok(c) => {
                systems.push(System::Containerd);
                systems.push(System::ContainerdTether);
                Some(c)
            }
            Err(e) => {
                report
                    .notes
                    .push(format!("containerd could not be started: {e}"));
                None
            }
        }
    } else {
        None
    };
    let run_dir = tempfile::Builder::new()
        .prefix("tether-bench-")
        .tempdir_in("/dev/shm")
        .map_err(|e| format!("bench: tmpfs dir: {e}"))?;
    let env = Env::new(dir.path(), run_dir.path(), tether, containerd)?;
    let mut outcome = measure_all(&env, &systems, &options, &mut report);
    let mut columns = systems.clone();
    if options.wants("startup") && crate::util::on_path("crun") {
        columns.extend([System::CrunAlone, System::TetherCrun]);
    }
    if outcome.is_ok() && options.wants("podman") {
        if crate::util::on_path("podman") && systems.contains(&System::Conmon) {
            let (runs, idle) = if options.quick { (5, 5) } else { (20, 20) };
            println!("bench: podman, {runs} starts and {idle} idle containers per conmon");
            outcome = podman::measure(dir.path(), &env.tether, &rootfs, runs, idle, &mut report);
            columns.extend(podman::SYSTEMS);
        } else {
            report
                .notes
                .push("podman or conmon is not installed (cargo xtask deps): left out".into());
        }
    }
    let containerd_dir = dir.path().join("containerd");
    if let Some(c) = env.containerd {
        c.stop();
    }
    containerd::unmount_below(&containerd_dir);
    outcome?;

    report.target("startup", System::RuncAlone, "<=", 1.05);
    report.target_of(System::TetherCrun, "startup", System::CrunAlone, "<=", 1.05);
    report.target("uss", System::Conmon, "<=", 0.5);
    report.target("exit", System::Conmon, "<=", 0.5);
    report.target("log_cpu", System::Conmon, "<=", 0.5);
    report.target("log_rate", System::RuncAlone, ">=", 0.97);
    report.target("exec", System::RuncAlone, "<=", 1.2);
    report.target("rm", System::RuncAlone, "<=", 1.5);
    // tether's containerd shim against containerd's own, both driven by the same containerd.
    let shim = System::ContainerdTether;
    report.target_of(shim, "startup", System::Containerd, "<=", 1.0);
    report.target_of(shim, "uss", System::Containerd, "<=", 0.5);
    report.target_of(shim, "exit", System::Containerd, "<=", 1.0);
    report.target_of(shim, "log_cpu", System::Containerd, "<=", 1.0);
    report.absolute_target("soak_rss_growth", "<=", 64.0);
    report.absolute_target("exit", "<=", 0.25);
    // The daemon's memory after real work (docs/benchmarks.md).
    report.absolute_target("uss", "<=", 96.0);
    report.absolute_target("uss_exec", "<=", 128.0);
    report.absolute_target("uss_burst_10s", "<=", 160.0);
    report.absolute_target_of(System::ContainerdTether, "uss", "<=", 200.0);
    report.absolute_target_of(System::ContainerdTether, "threads", "<=", 3.0);
    // tether as podman's conmon against conmon, both driven by the same podman.
    let conmon = System::PodmanTether;
    report.target_of(conmon, "podman_uss", System::Podman, "<=", 0.5);
    report.target_of(conmon, "podman_startup", System::Podman, "<=", 1.0);

    let markdown = report.markdown(&columns);
    println!("\n{markdown}");
    let out = crate::util::workspace_root().join("bench");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    std::fs::write(out.join("results.md"), &markdown).map_err(|e| e.to_string())?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&report).expect("report serializes"),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(out.join("ratios.svg"), report.svg()).map_err(|e| e.to_string())?;
    println!("bench: wrote bench/results.md, bench/results.json, bench/ratios.svg");
    Ok(())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs, Linux {}", kernel.trim())
}

/// Every container started is removed again, also when a measurement fails halfway.
struct Running<'a> {
    env: &'a Env,
    containers: Vec<Started>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        for started in self.containers.drain(..) {
            self.env.remove(&started);
        }
    }
}

fn measure_all(
    env: &Env,
    systems: &[System],
    options: &Options,
    report: &mut Report,
) -> Result<(), String> {
    let runs = if options.quick { 5 } else { 20 };
    if options.wants("startup") {
        // crun beside tether with crun, for start-up only: the other figures are the monitor's.
        let mut with_crun = systems.to_vec();
        if crate::util::on_path("crun") {
            with_crun.extend([System::CrunAlone, System::TetherCrun]);
        }
        println!("bench: startup, {runs} runs per system");
        let samples = interleaved(&with_crun, runs, |system| startup(env, system))?;
        report.add("startup", "start → first log line", "ms", samples);
    }
    if options.wants("memory") {
        let idle = if options.quick { 5 } else { 20 };
        println!("bench: memory of {idle} idle containers per system");
        memory(env, systems, idle, report)?;
    }
    if options.wants("exit") {
        println!("bench: exit latency, {runs} runs per system");
        let samples = interleaved(systems, runs, |system| exit_latency(env, system))?;
        report.add("exit", "SIGKILL → exit recorded", "ms", samples);
    }
    if options.wants("throughput") {
        let mib = if options.quick { 64 } else { 512 };
        println!("bench: log throughput, {mib} MiB of 71-byte lines per system");
        let rounds = if options.quick { 1 } else { 3 };
        let mut cpu = Vec::new();
        let mut rate = Vec::new();
        for system in systems {
            cpu.push((*system, Vec::new()));
            rate.push((*system, Vec::new()));
        }
        for _ in 0..rounds {
            for (i, system) in systems.iter().enumerate() {
                let (seconds, cpu_seconds) = throughput(env, *system, mib)?;
                rate[i].1.push(mib as f64 / seconds);
                if let Some(c) = cpu_seconds {
                    cpu[i].1.push(c);
                }
            }
        }
        report.add("log_rate", "log throughput", "MiB/s", rate);
        report.add("log_cpu", "monitor CPU for the log", "s", cpu);
    }
    if options.wants("exec") {
        let runs = if options.quick { 20 } else { 100 };
        println!("bench: exec of `true`, {runs} sequential runs (tether exec vs runc exec)");
        exec_latency(env, runs, report)?;
    }
    if options.wants("rm") {
        let systems: Vec<System> = [System::RuncAlone, System::Tether]
            .into_iter()
            .filter(|s| systems.contains(s))
            .collect();
        println!("bench: rm -f of a running container, {runs} runs per system");
        let samples = interleaved(&systems, runs, |system| remove_latency(env, system))?;
        report.add("rm", "rm -f of a running container", "ms", samples);
    }
    if options.wants("soak") {
        let execs = if options.quick { 500 } else { 10_000 };
        println!("bench: soak, {execs} execs in one container");
        soak(env, execs, report)?;
    }
    Ok(())
}

/// `count` containers of `system` that each write [`BURST`] bytes of lines at once, then idle: the
/// monitors' USS once the whole burst is in the logs, and 10 s later.
fn burst_memory(env: &Env, system: System, count: usize) -> Result<(Vec<f64>, Vec<f64>), String> {
    let script = format!("yes {LINE} | head -c {BURST}; exec sleep 1000");
    let mut running = Running {
        env,
        containers: Vec::new(),
    };
    for _ in 0..count {
        running.containers.push(env.start(system, &script)?);
    }
    let watch = DirWatch::new(&env.logs_dir())?;
    // Every log format holds at least the payload once it is all there.
    let logged =
        |started: &Started| std::fs::metadata(&started.log).is_ok_and(|m| m.len() >= BURST as u64);
    watch.wait(TIMEOUT, || running.containers.iter().all(logged))?;
    std::thread::sleep(Duration::from_millis(200));
    let at_once = monitors_uss(&running.containers);
    let quiet_until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < quiet_until {
        check_interrupt()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let later = monitors_uss(&running.containers);
    Ok((at_once, later))
}

fn exec_latency(env: &Env, runs: usize, report: &mut Report) -> Result<(), String> {
    let systems = [System::RuncAlone, System::Tether];
    let running = Running {
        env,
        containers: systems
            .iter()
            .map(|s| env.start(*s, "exec sleep 100000"))
            .collect::<Result<_, _>>()?,
    };
    let mut samples: Vec<(System, Vec<f64>)> = systems.iter().map(|s| (*s, Vec::new())).collect();
    for _ in 0..runs {
        for (started, (_, values)) in running.containers.iter().zip(samples.iter_mut()) {
            check_interrupt()?;
            let mut cmd = env.exec_true(started).expect("both systems exec");
            let start = Instant::now();
            let status = cmd.status().map_err(|e| format!("exec: {e}"))?;
            values.push(start.elapsed().as_secs_f64() * 1e3);
            if !status.success() {
                return Err(format!("{} exec true: {status}", started.system.name()));
            }
        }
    }
    report.add("exec", "exec `true`, sequential", "ms", samples);
    Ok(())
}

fn soak(env: &Env, execs: usize, report: &mut Report) -> Result<(), String> {
    let running = Running {
        env,
        containers: vec![env.start(System::Tether, "exec sleep 100000")?],
    };
    let started = &running.containers[0];
    let daemon = started.monitor_pid.ok_or("tether has a daemon")?;
    // Warm up, so buffers made on first use are not counted as growth.
    for _ in 0..20 {
        env.exec_true(started)
            .expect("tether execs")
            .status()
            .map_err(|e| e.to_string())?;
    }
    let fds = |pid: i32| std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let rss_before = procfs::memory(daemon).map_or(0, |m| m.rss);
    let fds_before = fds(daemon);
    for n in 0..execs {
        check_interrupt()?;
        let status = env
            .exec_true(started)
            .expect("tether execs")
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("soak exec {n}: {status}"));
        }
    }
    let rss_after = procfs::memory(daemon).map_or(0, |m| m.rss);
    let fds_after = fds(daemon);
    let growth = rss_after as f64 - rss_before as f64;
    report.add(
        "soak_rss_growth",
        "daemon RSS growth over the soak",
        "KiB",
        vec![(System::Tether, vec![growth])],
    );
    report.add(
        "soak_fds",
        "daemon open fds after the soak",
        "count",
        vec![(System::Tether, vec![fds_after as f64])],
    );
    report.notes.push(format!(
        "soak: {execs} sequential `tether exec true`: daemon RSS {rss_before} KiB → {rss_after} KiB, open fds {fds_before} → {fds_after}"
    ));
    if fds_after != fds_before {
        report.notes.push(format!(
            "soak: **the daemon's fd count changed** ({fds_before} → {fds_after})"
        ));
    }
    Ok(())
}

/// Runs `measure` `runs` times per system, systems taking turns, so drift hits all alike.
fn interleaved(
    systems: &[System],
    runs: usize,
    mut measure: impl FnMut(System) -> Result<f64, String>,
) -> Result<Vec<(System, Vec<f64>)>, String> {
    let mut samples: Vec<(System, Vec<f64>)> = systems.iter().map(|s| (*s, Vec::new())).collect();
    for _ in 0..runs {
        for (system, values) in samples.iter_mut() {
            values.push(measure(*system)?);
        }
    }
    Ok(samples)
}

fn startup(env: &Env, system: System) -> Result<f64, String> {
    let watch = DirWatch::new(&env.logs_dir())?;
    let start = Instant::now();
    let started = env.start(system, "echo ready; exec sleep 1000")?;
    let running = Running {
        env,
        containers: vec![started],
    };
    let log = running.containers[0].log.clone();
    let seen = watch.wait(TIMEOUT, || {
        std::fs::read(&log).is_ok_and(|b| b.contains(&b'\n'))
    })?;
    drop(running);
    Ok(seen.duration_since(start).as_secs_f64() * 1e3)
}

/// The USS of each container's monitor, in KiB.
fn monitors_uss(containers: &[Started]) -> Vec<f64> {
    containers
        .iter()
        .filter_map(|c| procfs::memory(c.monitor_pid?))
        .map(|m| m.uss as f64)
        .collect()
}

/// The bytes of the burst a container writes to its log once started.
const BURST: usize = 8 << 20;

fn memory(env: &Env, systems: &[System], idle: usize, report: &mut Report) -> Result<(), String> {
    let (mut uss, mut pss, mut rss, mut threads) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut after_exec, mut after_burst, mut burst_later) = (Vec::new(), Vec::new(), Vec::new());
    let mut containerd_own = None;
    for system in systems {
        let mut running = Running {
            env,
            containers: Vec::new(),
        };
        for _ in 0..idle {
            running
                .containers
                .push(env.start(*system, "exec sleep 1000")?);
        }
        // Let start-up work settle before reading memory.
        std::thread::sleep(Duration::from_millis(500));
        let (mut u, mut p, mut r, mut t) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for started in &running.containers {
            let Some(pid) = started.monitor_pid else {
                continue;
            };
            if let Some(m) = procfs::memory(pid) {
                u.push(m.uss as f64);
                p.push(m.pss as f64);
                r.push(m.rss as f64);
            }
            if let Some(n) = procfs::threads(pid) {
                t.push(n as f64);
            }
        }
        // One exec in each (where the container's monitor runs it), then the same reading.
        let mut execs = 0;
        for started in &running.containers {
            let Some(mut exec) = env.exec_true(started) else {
                continue;
            };
            check_interrupt()?;
            let status = exec
                .stdout(std::process::Stdio::null())
                .status()
                .map_err(|e| format!("exec: {e}"))?;
            if !status.success() {
                return Err(format!("{} exec true: {status}", system.name()));
            }
            execs += 1;
        }
        if execs > 0 {
            // Read once the daemons have been quiet for their release (tether's: 2 s).
            std::thread::sleep(Duration::from_secs(3));
            after_exec.push((*system, monitors_uss(&running.containers)));
        }
        drop(running);
        let (at_once, later) = burst_memory(env, *system, idle)?;
        after_burst.push((*system, at_once));
        burst_later.push((*system, later));
        if system.containerd_runtime().is_some() {
            if let Some(c) = &env.containerd {
                containerd_own = procfs::memory(c.pid());
            }
        }
        uss.push((*system, u));
        pss.push((*system, p));
        rss.push((*system, r));
        threads.push((*system, t));
    }
    report.add("uss", "monitor USS per container", "KiB", uss);
    report.add("pss", "monitor PSS per container", "KiB", pss);
    report.add("rss", "monitor RSS per container", "KiB", rss);
    report.add("threads", "monitor threads", "count", threads);
    report.add("uss_exec", "monitor USS after one exec", "KiB", after_exec);
    report.add(
        "uss_burst",
        "monitor USS once an 8 MiB burst is logged",
        "KiB",
        after_burst,
    );
    report.add(
        "uss_burst_10s",
        "monitor USS 10 s after the burst",
        "KiB",
        burst_later,
    );
    if let Some(m) = containerd_own {
        report.notes.push(format!(
            "containerd itself (shared by its {idle} containers, not in the table): USS {} KiB, PSS {} KiB, RSS {} KiB",
            m.uss, m.pss, m.rss
        ));
    }
    report.notes.push(
        "runc alone has no monitor process: its memory rows are empty by construction".into(),
    );
    Ok(())
}

fn exit_latency(env: &Env, system: System) -> Result<f64, String> {
    let started = env.start(system, "exec sleep 1000")?;
    let running = Running {
        env,
        containers: vec![started],
    };
    let started = &running.containers[0];
    let watch = env.exit_watch(started)?;
    if let Some(c) = &env.containerd {
        c.drain_events();
    }
    let start = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(started.init_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|e| format!("kill {}: {e}", started.init_pid))?;
    let recorded = env.wait_recorded(started, watch.as_ref())?;
    Ok(recorded.duration_since(start).as_secs_f64() * 1e3)
}

/// `tether rm -f` of a running container, against runc alone's kill, wait and delete.
fn remove_latency(env: &Env, system: System) -> Result<f64, String> {
    let started = env.start(system, "exec sleep 1000")?;
    let running = Running {
        env,
        containers: vec![started],
    };
    let took = env.remove_timed(&running.containers[0])?;
    // (The guard's removal finds nothing left, and says nothing.)
    Ok(took.as_secs_f64() * 1e3)
}

/// Returns (seconds from start to exit recorded, monitor CPU seconds).
fn throughput(env: &Env, system: System, mib: usize) -> Result<(f64, Option<f64>), String> {
    let bytes = mib << 20;
    let script = format!("yes {LINE} | head -c {bytes}");
    let start = Instant::now();
    let started = env.start(system, &script)?;
    let running = Running {
        env,
        containers: vec![started],
    };
    let started = &running.containers[0];
    let watch = env.exit_watch(started)?;
    let sampler = started.monitor_pid.map(CpuSampler::start);
    let recorded = env.wait_recorded(started, watch.as_ref())?;
    let seconds = recorded.duration_since(start).as_secs_f64();
    let cpu = sampler.map(CpuSampler::finish);
    verify::payload(&started.log, system, LINE, bytes)?;
    Ok((seconds, cpu))
}

/// Samples a process's CPU time until asked, keeping the last reading (the process may exit first).
struct CpuSampler {
    pid: i32,
    stop: std::sync::Arc<AtomicBool>,
    thread: std::thread::JoinHandle<f64>,
}

impl CpuSampler {
    fn start(pid: i32) -> CpuSampler {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut last = 0.0;
            while !flag.load(Ordering::SeqCst) {
                match procfs::cpu_seconds(pid) {
                    Some(v) => last = v,
                    None => break,
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last
        });
        CpuSampler { pid, stop, thread }
    }

    fn finish(self) -> f64 {
        let now = procfs::cpu_seconds(self.pid);
        self.stop.store(true, Ordering::SeqCst);
        let last = self.thread.join().unwrap_or(0.0);
        now.unwrap_or(last).max(last)
    }
}
