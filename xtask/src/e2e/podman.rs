//! `cargo xtask e2e podman [--conmon tether|conmon|both] [--only CASE]`: podman 4.3 (Debian's)
//! on a private store (its own containers.conf, storage.conf, root, runroot, tmp dir, events file
//! and file locks), `--network none`, runs containers with tether as its conmon, then the same
//! cases with Debian's conmon, which shows the cases themselves are right. The image is the
//! busybox fixture, `podman import`ed.
//!
//! podman silently falls back to a conmon it finds itself when the configured one fails its
//! probe, so a run must prove whose it used. Each run is a copy of this program in a mount
//! namespace of its own (`unshare --mount --propagation private`): for tether's, /dev/null is
//! bound over every conmon in podman's default list there, and `podman info` must name tether's.
//! The mounts podman makes stay in that namespace and go with it.

pub(crate) use super::engine_cli::EngineCli;
use super::engine_cli::{kill_then_wait, logs_and_follow, stop_after_the_grace};
use super::support::Terminal;
use super::{expect, text, wait_until, Check};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const IMAGE: &str = "localhost/tether-fixture:busybox";

/// Where podman 4.3 looks for conmon when the configured one will not do (its default
/// `conmon_path`), PATH aside: /usr/bin is on it, and is in this list.
const DEFAULT_CONMONS: &[&str] = &[
    "/usr/libexec/podman/conmon",
    "/usr/local/libexec/podman/conmon",
    "/usr/local/lib/podman/conmon",
    "/usr/bin/conmon",
    "/usr/sbin/conmon",
    "/usr/local/bin/conmon",
    "/usr/local/sbin/conmon",
];

/// The longest one run (every case, with one conmon) may take.
const RUN_BOUND: Duration = Duration::from_secs(15 * 60);

/// The conmons the cases run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Tether,
    Conmon,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Tether => "tether",
            Which::Conmon => "conmon",
        }
    }

    fn parse(name: &str) -> Result<Which, String> {
        match name {
            "tether" => Ok(Which::Tether),
            "conmon" => Ok(Which::Conmon),
            other => Err(format!("e2e podman: tether or conmon, not {other:?}")),
        }
    }
}

pub fn run(args: &[String]) -> Result<(), String> {
    let mut which = vec![Which::Tether, Which::Conmon];
    let mut only = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--conmon" => match args.next().map(String::as_str) {
                Some("both") => {}
                Some(name) => which = vec![Which::parse(name)?],
                None => return Err("e2e podman: --conmon tether|conmon|both".into()),
            },
            "--only" => {
                only = Some(
                    args.next()
                        .ok_or("e2e podman: --only needs a case")?
                        .clone(),
                )
            }
            other => return Err(format!("e2e podman: unknown argument {other:?}")),
        }
    }
    let reference = Path::new("/usr/bin/conmon");
    let why_not = || {
        (!reference.exists())
            .then(|| "/usr/bin/conmon is not installed (cargo xtask deps)".to_owned())
    };
    if !super::can_run("podman", &["podman", "unshare", "tmux", "tar"], why_not)? {
        return Ok(());
    }
    crate::bench::install_interrupt_handler();
    let tether = crate::util::build_tether(false)?;
    let dir = tempfile::Builder::new()
        .prefix("tether-e2e-podman-")
        .tempdir_in("/var/tmp")
        .map_err(|e| format!("e2e podman: temp dir: {e}"))?;
    // tether as conmon: the name selects the door. A copy, as the install's hard link would be.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    let tether_conmon = bin.join("conmon");
    std::fs::copy(&tether, &tether_conmon).map_err(|e| format!("e2e podman: {e}"))?;
    // This program, as it runs (cargo may replace the file while it does).
    let inside = dir.path().join("xtask-inside");
    std::fs::copy("/proc/self/exe", &inside)
        .map_err(|e| format!("e2e podman: copy this program: {e}"))?;
    let rootfs = tether_tests::fixture::BundleSpec::shell("true")
        .create(dir.path().join("probe-bundle"))
        .map_err(|e| e.to_string())?
        .rootfs();
    let cgroups_before = libpod_cgroups();
    let mut failed = Vec::new();
    for which in which {
        let conmon = match which {
            Which::Tether => tether_conmon.clone(),
            Which::Conmon => reference.to_owned(),
        };
        let run_dir = dir.path().join(which.name());
        println!("e2e podman: podman with {} as conmon", conmon.display());
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "--"])
            .arg(&inside)
            .args(["e2e", "podman-inside", which.name()])
            .arg(&run_dir)
            .arg(&conmon)
            .arg(&rootfs);
        if let Some(only) = &only {
            command.arg(only);
        }
        let started = Instant::now();
        let child = command
            .spawn()
            .map_err(|e| format!("e2e podman: unshare: {e}"))?;
        let status = wait_bounded(child, RUN_BOUND);
        stop_monitors(&run_dir);
        match status {
            Ok(true) => println!(
                "e2e podman: {} passed in {:.1} s",
                which.name(),
                started.elapsed().as_secs_f64()
            ),
            Ok(false) => failed.push(format!("e2e podman: {} failed", which.name())),
            Err(e) => failed.push(format!("e2e podman: {}: {e}", which.name())),
        }
    }
    remove_new_cgroups(&cgroups_before);
    if failed.is_empty() {
        Ok(())
    } else {
        println!("e2e podman: files kept in {}", dir.path().display());
        let _ = dir.keep();
        Err(failed.join("\n"))
    }
}

/// Waits for `child` for at most `bound` (killing it past that); whether it succeeded.
fn wait_bounded(mut child: Child, bound: Duration) -> Result<bool, String> {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status.success());
        }
        if Instant::now() >= deadline || crate::bench::check_interrupt().is_err() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("not done within {bound:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Monitors (and what they run) a failed run left behind: every process whose command line
/// names the run's directory, but this one.
fn stop_monitors(run_dir: &Path) {
    let needle = run_dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// podman's cgroupfs parents (`libpod_parent` under each v1 hierarchy).
pub(crate) fn libpod_cgroups() -> Vec<PathBuf> {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    hierarchies
        .flatten()
        .map(|h| h.path().join("libpod_parent"))
        .filter(|p| p.is_dir())
        .collect()
}

/// The cgroups podman made for the suite go, once empty (innermost first).
pub(crate) fn remove_new_cgroups(before: &[PathBuf]) {
    for made in libpod_cgroups().iter().filter(|p| !before.contains(p)) {
        let mut dirs = Vec::new();
        let mut stack = vec![made.clone()];
        while let Some(dir) = stack.pop() {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                stack.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
            dirs.push(dir);
        }
        for dir in dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// One run, inside its mount namespace: `e2e podman-inside WHICH DIR CONMON ROOTFS [CASE]`.
pub fn run_inside(args: &[String]) -> Result<(), String> {
    let [which, dir, conmon, rootfs, rest @ ..] = args else {
        return Err("e2e podman-inside WHICH DIR CONMON ROOTFS [CASE]".into());
    };
    let which = Which::parse(which)?;
    let (dir, conmon, rootfs) = (PathBuf::from(dir), PathBuf::from(conmon), Path::new(rootfs));
    let only = rest.first();
    if which == Which::Tether {
        hide_other_conmons()?;
    }
    let podman = Podman::configure(&dir, &conmon)?;
    let result = (|| {
        podman.import(rootfs, IMAGE)?;
        let used = podman.ok(&["info", "--format", "{{.Host.Conmon.Path}}"])?;
        expect(used.trim() == conmon.to_string_lossy(), || {
            format!(
                "podman uses {:?}, not {}: the cases would prove nothing",
                used.trim(),
                conmon.display()
            )
        })?;
        let version = podman.ok(&["info", "--format", "{{.Host.Conmon.Version}}"])?;
        println!(
            "e2e podman {}: podman info: {}",
            which.name(),
            version.trim()
        );
        let mut failures = Vec::new();
        let mut passed = 0;
        for (name, case) in CASES {
            if only.is_some_and(|o| o != name) {
                continue;
            }
            let started = Instant::now();
            let result = case(&podman, which);
            let took = started.elapsed().as_secs_f64();
            match result {
                Ok(()) => {
                    passed += 1;
                    println!("e2e podman {}: {name} ... ok ({took:.1} s)", which.name());
                }
                Err(message) => {
                    println!("e2e podman {}: {name} ... FAILED: {message}", which.name());
                    failures.push(name.to_string());
                }
            }
        }
        println!(
            "e2e podman {}: {passed} passed, {} failed",
            which.name(),
            failures.len()
        );
        expect(failures.is_empty(), || failures.join(", "))
    })();
    podman.clean_up();
    result
}

/// /dev/null bound over every conmon podman could fall back to (in this namespace only).
fn hide_other_conmons() -> Check {
    use nix::mount::{mount, MsFlags};
    for path in DEFAULT_CONMONS.iter().map(Path::new).filter(|p| p.exists()) {
        mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("hide {}: {e}", path.display()))?;
    }
    Ok(())
}

/// podman on a private store, with one conmon.
pub(crate) struct Podman {
    dir: PathBuf,
    conf: PathBuf,
    storage: PathBuf,
}

impl EngineCli for Podman {
    fn command(&self) -> Command {
        let mut command = Command::new("podman");
        command
            .env("CONTAINERS_CONF", &self.conf)
            .env("CONTAINERS_STORAGE_CONF", &self.storage)
            .stdin(Stdio::null());
        command
    }

    /// `podman run --network none OPTIONS IMAGE COMMAND`.
    fn run(&self, options: &[&str], command: &[&str]) -> Result<Output, String> {
        let mut args = vec!["run", "--network", "none"];
        args.extend_from_slice(options);
        args.push(IMAGE);
        args.extend_from_slice(command);
        self.output(&args)
    }

    fn remove(&self, name: &str) {
        let _ = self.output(&["rm", "-f", "-t", "0", name]);
    }
}

impl Podman {
    pub(crate) fn configure(dir: &Path, conmon: &Path) -> Result<Podman, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let d = dir.display();
        // This host: no CAP_SYS_RESOURCE (podman's default rlimits fail), no systemd, no
        // journald, no netavark (CNI is there; the cases use --network none).
        let conf = format!(
            r#"[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
log_driver = "k8s-file"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
conmon_path = ["{conmon}"]
tmp_dir = "{d}/tmp"
lock_type = "file"
runtime = "runc"
[network]
network_backend = "cni"
cni_plugin_dirs = ["/usr/lib/cni"]
network_config_dir = "{d}/cni"
"#,
            conmon = conmon.display()
        );
        let storage = format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{d}/graph\"\nrunroot = \"{d}/run\"\n"
        );
        let podman = Podman {
            dir: dir.to_owned(),
            conf: dir.join("containers.conf"),
            storage: dir.join("storage.conf"),
        };
        std::fs::write(&podman.conf, conf).map_err(|e| e.to_string())?;
        std::fs::write(&podman.storage, storage).map_err(|e| e.to_string())?;
        Ok(podman)
    }

    /// The shell line that runs podman with these settings (for a terminal).
    fn line(&self, args: &str) -> String {
        format!(
            "env CONTAINERS_CONF={} CONTAINERS_STORAGE_CONF={} podman {args}",
            self.conf.display(),
            self.storage.display()
        )
    }

    /// Every container goes, and the storage with it.
    pub(crate) fn clean_up(&self) {
        let _ = self.output(&["rm", "-a", "-f", "-t", "0"]);
        let _ = self.output(&["system", "reset", "-f"]);
        stop_monitors(&self.dir);
    }
}

type Case = fn(&Podman, Which) -> Check;

const CASES: &[(&str, Case)] = &[
    (
        "run_keeps_stdout_and_stderr_apart_and_the_exit_code",
        run_streams,
    ),
    ("run_detached_then_logs_and_logs_follow", logs),
    ("log_size_max_keeps_the_newest_output", log_size_max),
    ("exec_plain_piped_detached_and_missing", exec),
    ("exec_tty_with_a_resize", exec_tty),
    ("run_it_detach_keys_then_attach", run_it_attach),
    ("stop_kills_a_term_ignoring_process_after_the_grace", stop),
    ("kill_wait_rm", kill_wait_rm),
    ("restart_runs_it_again", restart),
    ("rm_flag_removes_it_at_its_exit", rm_flag),
    ("timeout_kills_it", timeout),
    ("oom_kill_is_told", oom),
    ("podman_killed_while_it_runs", podman_killed),
    ("cleanup_through_the_exit_command", cleanup),
    ("preserved_fds_reach_the_container", preserve_fds),
    ("term_to_the_monitor_reaches_the_container", signals),
    ("log_driver_passthrough_and_none", log_drivers),
];

fn name(which: Which, case: &str) -> String {
    format!("{}-{case}", which.name())
}

fn run_streams(p: &Podman, _: Which) -> Check {
    let output = p.run(
        &["--rm"],
        &["sh", "-c", "echo out; echo err >&2; printf partial; exit 3"],
    )?;
    expect(output.status.code() == Some(3), || {
        format!("exit code {:?}, not 3", output.status.code())
    })?;
    expect(text(&output.stdout) == "out\npartial", || {
        format!("stdout {:?}", text(&output.stdout))
    })?;
    let stderr = text(&output.stderr);
    expect(
        stderr.lines().any(|l| l == "err") && !stderr.contains("out"),
        || format!("stderr {stderr:?}"),
    )
}

fn logs(p: &Podman, which: Which) -> Check {
    logs_and_follow(p, &name(which, "logs"))
}

fn log_size_max(p: &Podman, which: Which) -> Check {
    let name = name(which, "logsize");
    let output = p.run(
        &["--name", &name, "--log-opt", "max-size=1000"],
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 100 ]; do i=$((i+1)); echo line-$i; done",
        ],
    )?;
    expect(output.status.success(), || text(&output.stderr))?;
    let logs = text(&p.output(&["logs", &name])?.stdout);
    let lines: Vec<&str> = logs.lines().collect();
    // What is kept is the newest output, whole lines, and less than all of it.
    expect(
        lines.last() == Some(&"line-100") && !lines.contains(&"line-1") && lines.len() < 100,
        || format!("podman logs after max-size=1000: {lines:?}"),
    )?;
    let log = p.inspect(&name, "{{.HostConfig.LogConfig.Path}}")?;
    let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    expect(size <= 1000 + 128, || format!("{log} is {size} bytes"))?;
    p.remove(&name);
    Ok(())
}

fn exec(p: &Podman, which: Which) -> Check {
    let name = name(which, "exec");
    p.run_detached(&name, &["sleep", "300"])?;
    let output = p.output(&["exec", &name, "sh", "-c", "echo in; echo e >&2; exit 7"])?;
    expect(
        output.status.code() == Some(7)
            && text(&output.stdout) == "in\n"
            && text(&output.stderr) == "e\n",
        || {
            format!(
                "exec: {} {:?} {:?}",
                output.status,
                text(&output.stdout),
                text(&output.stderr)
            )
        },
    )?;
    let mut command = p.command();
    command.args(["exec", "-i", &name, "tr", "a-z", "A-Z"]);
    super::check_piped_input(command)?;
    p.ok(&["exec", "-d", &name, "sh", "-c", "echo detached > /detached"])?;
    let mut seen = String::new();
    wait_until(Duration::from_secs(15), || {
        seen = text(&p.output(&["exec", &name, "cat", "/detached"])?.stdout);
        Ok(seen == "detached\n")
    })
    .map_err(|e| format!("exec -d never wrote its file ({seen:?}): {e}"))?;
    let output = p.output(&["exec", &name, "/nonexistent"])?;
    expect(output.status.code() == Some(127), || {
        format!(
            "exec of a missing binary: {}: {}",
            output.status,
            text(&output.stderr).trim()
        )
    })?;
    p.remove(&name);
    Ok(())
}

fn exec_tty(p: &Podman, which: Which) -> Check {
    let name = name(which, "exectty");
    p.run_detached(&name, &["sleep", "300"])?;
    let line = p.line(&format!("exec -it {name} sh; echo EXEC-EXIT-$?; sleep 60"));
    let terminal = Terminal::start(&name, &line)?;
    terminal.wait_for("#")?;
    terminal.type_line("stty size")?;
    terminal.wait_for("30 100")?;
    terminal.tmux(&["resize-window", "-t", "main", "-x", "120", "-y", "40"])?;
    wait_until(Duration::from_secs(15), || {
        terminal.type_line("stty size")?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(terminal.screen()?.lines().any(|l| l.trim_end() == "40 120"))
    })
    .map_err(|e| format!("the resize never reached the exec: {e}"))?;
    terminal.type_line("exit 6")?;
    terminal.wait_for("EXEC-EXIT-6")?;
    p.remove(&name);
    Ok(())
}

fn run_it_attach(p: &Podman, which: Which) -> Check {
    let name = name(which, "attach");
    let line = p.line(&format!(
        "run -it --detach-keys ctrl-x --network none --name {name} {IMAGE} sh; echo RUN-EXIT-$?; sleep 60"
    ));
    let terminal = Terminal::start(&name, &line)?;
    terminal.wait_for("#")?;
    terminal.type_line("echo in-$((40+2))")?;
    terminal.wait_for("in-42")?;
    // One key: podman forwards a two-key sequence that reaches it in two reads (tmux writes
    // each key on its own), whatever its conmon.
    terminal.tmux(&["send-keys", "-t", "main", "C-x"])?;
    terminal.wait_for("RUN-EXIT-0")?;
    let status = p.inspect(&name, "{{.State.Status}}")?;
    expect(status == "running", || format!("after detaching: {status}"))?;
    drop(terminal);
    let line = p.line(&format!("attach {name}; echo ATTACH-EXIT-$?; sleep 60"));
    let terminal = Terminal::start(&format!("{name}-again"), &line)?;
    // The prompt was drawn before attach: ask for something new.
    wait_until(Duration::from_secs(15), || {
        terminal.type_line("echo attached-$((40+2))")?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(terminal
            .screen()?
            .lines()
            .any(|l| l.trim_end() == "attached-42"))
    })
    .map_err(|e| format!("attach: no answer: {e}"))?;
    terminal.type_line("exit 4")?;
    // podman attach itself exits 0 once the container did (with conmon too).
    terminal.wait_for("ATTACH-EXIT-0")?;
    let code = p.inspect(&name, "{{.State.ExitCode}}")?;
    expect(code == "4", || format!("exit code {code}, not 4"))?;
    p.remove(&name);
    Ok(())
}

fn stop(p: &Podman, which: Which) -> Check {
    stop_after_the_grace(p, &name(which, "stop"))
}

fn kill_wait_rm(p: &Podman, which: Which) -> Check {
    let name = name(which, "kill");
    kill_then_wait(p, &name)?;
    p.ok(&["rm", &name])?;
    let exists = p.output(&["container", "exists", &name])?;
    expect(exists.status.code() == Some(1), || {
        format!("after rm: container exists says {}", exists.status)
    })
}

fn restart(p: &Podman, which: Which) -> Check {
    let name = name(which, "restart");
    p.run_detached(&name, &["sh", "-c", "echo started; sleep 300"])?;
    p.ok(&["restart", "-t", "0", &name])?;
    let mut logs = String::new();
    wait_until(Duration::from_secs(15), || {
        logs = text(&p.output(&["logs", &name])?.stdout);
        Ok(logs == "started\nstarted\n")
    })
    .map_err(|e| format!("logs after restart {logs:?}: {e}"))?;
    let status = p.inspect(&name, "{{.State.Status}}")?;
    expect(status == "running", || format!("after restart: {status}"))?;
    p.remove(&name);
    Ok(())
}

fn rm_flag(p: &Podman, which: Which) -> Check {
    let name = name(which, "rmflag");
    let output = p.run(
        &["--rm", "--name", &name],
        &["sh", "-c", "echo bye; exit 2"],
    )?;
    expect(
        output.status.code() == Some(2) && text(&output.stdout) == "bye\n",
        || format!("run --rm: {} {:?}", output.status, text(&output.stdout)),
    )?;
    let mut exists = None;
    wait_until(Duration::from_secs(15), || {
        exists = p.output(&["container", "exists", &name])?.status.code();
        Ok(exists == Some(1))
    })
    .map_err(|e| format!("still there after run --rm ({exists:?}): {e}"))
}

fn timeout(p: &Podman, which: Which) -> Check {
    let name = name(which, "timeout");
    let started = Instant::now();
    let output = p.run(&["--name", &name, "--timeout", "1"], &["sleep", "60"])?;
    let took = started.elapsed();
    expect(
        output.status.code() == Some(255) && took < Duration::from_secs(30),
        || format!("run --timeout 1: {} after {took:?}", output.status),
    )?;
    let code = p.inspect(&name, "{{.State.ExitCode}}")?;
    expect(code == "-1", || format!("exit code {code}, not -1"))?;
    p.remove(&name);
    Ok(())
}

fn oom(p: &Podman, which: Which) -> Check {
    let name = name(which, "oom");
    let output = p.run(
        &["--name", &name, "--memory", "16m"],
        &["tail", "/dev/zero"],
    )?;
    expect(output.status.code() == Some(137), || {
        format!("exit {} after an OOM kill", output.status)
    })?;
    let killed = p.inspect(&name, "{{.State.OOMKilled}}")?;
    match which {
        Which::Tether => expect(killed == "true", || format!("OOMKilled {killed}"))?,
        // conmon 2.1.6 writes its oom file in its working directory, not the bundle where podman
        // 4.3 looks: podman never says OOMKilled with it.
        Which::Conmon => println!("e2e podman conmon: OOMKilled {killed} (conmon 2.1.6's own gap)"),
    }
    p.remove(&name);
    Ok(())
}

/// podman run in the foreground, SIGKILLed: the container runs on and its output still reaches
/// the log.
fn podman_killed(p: &Podman, which: Which) -> Check {
    let name = name(which, "podkill");
    let mut child = p
        .command()
        .args(["run", "--network", "none", "--name", &name, IMAGE])
        .args([
            "sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let count = || -> Result<u64, String> {
        let logs = text(&p.output(&["logs", &name])?.stdout);
        Ok(logs
            .lines()
            .filter_map(|l| l.parse().ok())
            .max()
            .unwrap_or(0))
    };
    let result = (|| {
        wait_until(Duration::from_secs(30), || Ok(count()? >= 5))?;
        let _ = child.kill();
        let _ = child.wait();
        let after = count()?;
        wait_until(Duration::from_secs(30), || Ok(count()? >= after + 20))
            .map_err(|e| format!("the log stopped at {after} once podman was killed: {e}"))?;
        let status = p.inspect(&name, "{{.State.Status}}")?;
        expect(status == "running", || {
            format!("after podman died: {status}")
        })?;
        let logs = text(&p.output(&["logs", &name])?.stdout);
        let numbers: Vec<u64> = logs.lines().filter_map(|l| l.parse().ok()).collect();
        let gap = numbers
            .iter()
            .enumerate()
            .find(|(i, &n)| n != *i as u64 + 1);
        expect(gap.is_none(), || format!("the log lost lines: at {gap:?}"))
    })();
    let _ = child.kill();
    let _ = child.wait();
    p.remove(&name);
    result
}

/// The exit command (`podman container cleanup`) ran: the runtime no longer knows the container
/// and podman has its exit.
fn cleanup(p: &Podman, which: Which) -> Check {
    let name = name(which, "cleanup");
    p.run_detached(&name, &["sh", "-c", "exit 5"])?;
    let id = p.inspect(&name, "{{.Id}}")?;
    let code = p.ok(&["wait", &name])?;
    expect(code.trim() == "5", || format!("wait printed {code:?}"))?;
    let mut state = String::new();
    wait_until(Duration::from_secs(30), || {
        let output = Command::new("runc")
            .args(["state", &id])
            .output()
            .map_err(|e| format!("runc: {e}"))?;
        state = text(&output.stderr);
        Ok(!output.status.success())
    })
    .map_err(|e| format!("runc still knows {id} ({state:?}): {e}"))?;
    let status = p.inspect(&name, "{{.State.Status}} {{.State.ExitCode}}")?;
    expect(status == "exited 5", || format!("after cleanup: {status}"))?;
    p.remove(&name);
    Ok(())
}

/// `--preserve-fds 1`: podman's fd 3 is the container's fd 3.
fn preserve_fds(p: &Podman, which: Which) -> Check {
    let name = name(which, "fds");
    let file = p.dir.join("handed-on");
    std::fs::write(&file, "handed on\n").map_err(|e| e.to_string())?;
    let line = p.line(&format!(
        "run --rm --network none --name {name} --preserve-fds 1 {IMAGE} sh -c 'cat <&3'"
    ));
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("exec 3<{}; {line}", file.display()))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("sh: {e}"))?;
    expect(
        output.status.success() && text(&output.stdout) == "handed on\n",
        || {
            format!(
                "run --preserve-fds 1: {} {:?} {}",
                output.status,
                text(&output.stdout),
                text(&output.stderr).trim()
            )
        },
    )
}

/// `--log-driver passthrough`: the container writes to podman's own stdio; `none`: no log, yet
/// an attached run still sees the output.
fn log_drivers(p: &Podman, which: Which) -> Check {
    let output = p.run(
        &["--rm", "--log-driver", "passthrough"],
        &["sh", "-c", "echo out; echo err >&2; exit 4"],
    )?;
    let stderr = text(&output.stderr);
    expect(
        output.status.code() == Some(4)
            && text(&output.stdout) == "out\n"
            && stderr.lines().any(|l| l == "err"),
        || {
            format!(
                "passthrough: {} {:?} {stderr:?}",
                output.status,
                text(&output.stdout)
            )
        },
    )?;
    let name = name(which, "nolog");
    let output = p.run(
        &["--name", &name, "--log-driver", "none"],
        &["sh", "-c", "echo out"],
    )?;
    expect(
        output.status.success() && text(&output.stdout) == "out\n",
        || {
            format!(
                "log driver none: {} {:?}",
                output.status,
                text(&output.stdout)
            )
        },
    )?;
    let logs = p.output(&["logs", &name])?;
    expect(text(&logs.stdout).is_empty(), || {
        format!("log driver none logged {:?}", text(&logs.stdout))
    })?;
    p.remove(&name);
    Ok(())
}

/// SIGTERM to the monitor goes on to the container.
fn signals(p: &Podman, which: Which) -> Check {
    let name = name(which, "signals");
    p.run_detached(
        &name,
        &[
            "sh",
            "-c",
            "trap 'exit 9' TERM; echo ready; while :; do sleep 0.1; done",
        ],
    )?;
    wait_until(Duration::from_secs(15), || {
        Ok(text(&p.output(&["logs", &name])?.stdout) == "ready\n")
    })?;
    let monitor: i32 = p
        .inspect(&name, "{{.State.ConmonPid}}")?
        .parse()
        .map_err(|e| format!("ConmonPid: {e}"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGTERM,
    )
    .map_err(|e| format!("kill {monitor}: {e}"))?;
    let code = p.ok(&["wait", &name])?;
    expect(code.trim() == "9", || format!("wait printed {code:?}"))?;
    p.remove(&name);
    Ok(())
}
