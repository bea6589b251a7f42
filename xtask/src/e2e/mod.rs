//! `cargo xtask e2e containerd [--shim tether|runc|both]`: a real containerd (private root, state
//! and socket; CRI off) drives containers through `ctr` with tether's runtime v2 shim, and the same
//! suite runs with containerd's own `containerd-shim-runc-v2`, which shows the tests themselves are
//! right. The image is the busybox fixture, imported from an OCI archive built here.

mod cases;
mod cgroup2;
mod cri;
mod docker;
pub(crate) mod engine_cli;
mod guide;
pub(crate) mod podman;
mod support;

use crate::bench::containerd::{PrivateContainerd, IMAGE, NAMESPACE};
use cases::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TETHER_RUNTIME: &str = "io.containerd.tether.v2";
const RUNC_RUNTIME: &str = "io.containerd.runc.v2";

type Check = Result<(), String>;

struct Ctx<'a> {
    containerd: &'a mut PrivateContainerd,
    tether: PathBuf,
    runtime: &'static str,
    shim: &'static str,
    dir: PathBuf,
}

impl Ctx<'_> {
    fn id(&self, name: &str) -> String {
        format!("{}-{name}", self.shim)
    }

    /// The bundle containerd made for task `id` (where its shim runs and keeps its address).
    fn task_bundle(&self, id: &str) -> PathBuf {
        self.containerd
            .dir
            .join("state/io.containerd.runtime.v2.task")
            .join(NAMESPACE)
            .join(id)
    }

    fn ctr_command(&self) -> Command {
        let mut command = Command::new("ctr");
        command
            .arg("-a")
            .arg(self.containerd.socket())
            .args(["-n", NAMESPACE]);
        command
    }

    /// Runs ctr to the end, whatever its status.
    fn ctr_raw(&self, args: &[&str]) -> Result<Output, String> {
        self.ctr_command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("ctr: {e}"))
    }

    fn ctr(&self, args: &[&str]) -> Result<String, String> {
        self.containerd.ctr(args)
    }

    /// The STATUS column of `ctr task ls` for `id` ("" when it is not listed).
    fn task_status(&self, id: &str) -> Result<String, String> {
        let list = self.ctr(&["task", "ls"])?;
        Ok(list
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&id))
            .and_then(|cols| cols.get(2).map(|s| s.to_string()))
            .unwrap_or_default())
    }

    fn wait_status(&self, id: &str, want: &str) -> Check {
        let mut last = String::new();
        wait_until(Duration::from_secs(15), || {
            last = self.task_status(id)?;
            Ok(last == want)
        })
        .map_err(|e| format!("{id}: status {want} not reached (last {last:?}): {e}"))
    }

    /// Kills, deletes the task and the container; errors ignored (cleanup).
    fn remove(&self, id: &str) {
        self.containerd.remove(id);
    }
}

/// Whether suite `suite` can run here: as root, with `binaries` on PATH and no reason from
/// `other`. When it cannot, it is skipped with the reason said, or, under TETHER_E2E=require
/// (CI), that is an error.
fn can_run(
    suite: &str,
    binaries: &[&str],
    other: impl FnOnce() -> Option<String>,
) -> Result<bool, String> {
    let missing = if !nix::unistd::geteuid().is_root() {
        Some("needs root".to_owned())
    } else {
        binaries
            .iter()
            .find(|b| !crate::util::on_path(b))
            .map(|b| format!("{b} is not installed (cargo xtask deps)"))
            .or_else(other)
    };
    match missing {
        None => Ok(true),
        Some(reason) if std::env::var("TETHER_E2E").is_ok_and(|v| v == "require") => {
            Err(format!("e2e {suite}: {reason}"))
        }
        Some(reason) => {
            println!("e2e {suite}: skipped: {reason}");
            Ok(false)
        }
    }
}

/// Polls `ready` every 20 ms until it holds, for at most `timeout`.
fn wait_until(timeout: Duration, mut ready: impl FnMut() -> Result<bool, String>) -> Check {
    let deadline = Instant::now() + timeout;
    loop {
        crate::bench::check_interrupt()?;
        if ready()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("not within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Collects a child's output, killing it past `timeout`.
fn wait_output(mut child: std::process::Child, timeout: Duration) -> Result<Output, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            return child.wait_with_output().map_err(|e| e.to_string());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("not done within {timeout:?}"));
        }
        crate::bench::check_interrupt()?;
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An `exec -i` of `tr a-z A-Z` (or the like) given "piped input" on its stdin must print it in
/// capitals.
fn check_piped_input(mut command: Command) -> Check {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(b"piped input\n")
            .map_err(|e| e.to_string())?;
    }
    let output = wait_output(child, Duration::from_secs(30))?;
    expect(text(&output.stdout) == "PIPED INPUT\n", || {
        format!(
            "exec -i: {:?} {}",
            text(&output.stdout),
            text(&output.stderr)
        )
    })
}

fn expect(condition: bool, message: impl FnOnce() -> String) -> Check {
    if condition {
        Ok(())
    } else {
        Err(message())
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

type Test = fn(&mut Ctx<'_>) -> Check;

/// Which shims a test is for.
#[derive(PartialEq)]
enum For {
    Both,
    /// Behaviour containerd's own shim does not have.
    TetherOnly,
}

/// Cases where containerd's own shim, on a given engine, lacks what the case checks (tether
/// passes them there): (engine, case, why). Printed as skipped for the reference run.
const REFERENCE_GAPS: &[(&str, &str, &str)] = &[
    (
        "2.1",
        "events_arrive_in_order",
        "containerd-shim-runc-v2 2.1 exits after Delete before its /tasks/delete reaches ctr events",
    ),
    (
        "2.1",
        "oom_is_published_before_the_exit",
        "containerd-shim-runc-v2 2.1 publishes /tasks/oom and /tasks/exit in either order (seen both ways here)",
    ),
];

const TESTS: &[(&str, For, Test)] = &[
    (
        "run_rm_prints_output_and_propagates_the_exit_code",
        For::Both,
        run_rm,
    ),
    (
        "detached_exec_ps_pause_resume_kill_delete",
        For::Both,
        lifecycle,
    ),
    ("log_uri_file_gets_stdout_and_stderr", For::Both, log_uri),
    (
        "log_uri_binary_feeds_a_logging_binary",
        For::Both,
        log_binary,
    ),
    ("tty_under_tmux_answers_a_command", For::Both, tty),
    (
        "exec_tty_under_tmux_answers_and_follows_resizes",
        For::Both,
        exec_tty,
    ),
    ("stdin_is_fed_and_closed", For::Both, stdin),
    ("metrics_come_from_the_cgroup", For::Both, metrics),
    ("containerd_restart_loses_no_line", For::Both, restart),
    ("events_arrive_in_order", For::Both, events),
    ("oom_is_published_before_the_exit", For::Both, oom),
    (
        "a_killed_shim_is_cleaned_up_by_delete",
        For::Both,
        shim_killed,
    ),
    (
        "unread_output_never_blocks_the_container",
        For::TetherOnly,
        unread_output_never_blocks,
    ),
    (
        "a_flood_of_lines_nobody_reads_ends_and_keeps_whole_lines",
        For::TetherOnly,
        unread_flood_of_lines,
    ),
    (
        "a_flood_in_one_line_nobody_reads_ends_and_is_killable",
        For::TetherOnly,
        unread_flood_of_one_line,
    ),
    (
        "a_flood_nobody_reads_ends_while_containerd_is_down",
        For::TetherOnly,
        unread_flood_with_containerd_down,
    ),
    (
        "an_exit_nobody_reads_is_published_at_once",
        For::Both,
        unread_exit_is_prompt,
    ),
    (
        "debug_diagnostics_reach_containerds_log",
        For::TetherOnly,
        diagnostics,
    ),
    (
        "tether_cli_sees_and_acts_on_containerd_containers",
        For::TetherOnly,
        tether_cli,
    ),
    (
        "tether_state_tells_an_exit_code_from_a_signal",
        For::TetherOnly,
        tether_state_exit,
    ),
];

/// Every id a test may leave behind when it fails.
const IDS: &[&str] = &[
    "run-rm",
    "lifecycle",
    "log-uri",
    "tty",
    "restart-log",
    "restart-fifo",
    "events",
    "oom",
    "shim-killed",
    "unread",
    "flood-lines",
    "flood-line",
    "flood-down",
    "chatty",
    "tether-cli",
    "log-binary",
    "diagnostics",
    "exec-tty",
    "stdin",
    "metrics",
    "exit-130",
    "killed",
];

/// Entry point: `e2e containerd [--engine 1.6|1.7|2.1|all] [--shim tether|runc|both] [--only NAME]`.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut args = args.iter();
    match args.next().map(String::as_str) {
        Some("containerd") => {}
        Some("guide") if args.len() == 0 => return guide::run(),
        Some("docker") => return docker::run(&args.cloned().collect::<Vec<_>>()),
        Some("cri") => return cri::run(&args.cloned().collect::<Vec<_>>()),
        Some("cgroup2") => return cgroup2::run(&args.cloned().collect::<Vec<_>>()),
        Some("podman") => return podman::run(&args.cloned().collect::<Vec<_>>()),
        Some("podman-inside") => return podman::run_inside(&args.cloned().collect::<Vec<_>>()),
        Some("guide") => return Err("e2e guide takes no arguments".into()),
        Some(other) => {
            return Err(format!(
                "e2e: unknown suite {other:?} (containerd, cri, docker, guide, cgroup2, podman)"
            ))
        }
        None => {
            return Err(
                "e2e: which suite? `cargo xtask e2e containerd|cri|docker|guide|cgroup2|podman`"
                    .into(),
            )
        }
    }
    let mut shims = vec!["tether", "runc"];
    let mut only = None;
    // Every engine unpacked (cargo xtask deps fetches them); the system's 1.6 always.
    let mut engines = crate::engines::available();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--engine" => match args.next().map(String::as_str) {
                Some("all") => engines = crate::engines::CONTAINERD_ENGINES.to_vec(),
                Some(engine) if crate::engines::CONTAINERD_ENGINES.contains(&engine) => {
                    engines = vec![crate::engines::CONTAINERD_ENGINES
                        .iter()
                        .copied()
                        .find(|e| *e == engine)
                        .expect("contained")]
                }
                other => {
                    return Err(format!(
                        "e2e: --engine {}|all, not {other:?}",
                        crate::engines::CONTAINERD_ENGINES.join("|")
                    ))
                }
            },
            "--shim" => match args.next().map(String::as_str) {
                Some("tether") => shims = vec!["tether"],
                Some("runc") => shims = vec!["runc"],
                Some("both") => {}
                other => return Err(format!("e2e: --shim tether|runc|both, not {other:?}")),
            },
            "--only" => only = Some(args.next().ok_or("e2e: --only needs a test name")?.clone()),
            other => return Err(format!("e2e: unknown argument {other:?}")),
        }
    }
    if !can_run(
        "containerd",
        &[
            "containerd",
            "ctr",
            "containerd-shim-runc-v2",
            "runc",
            "tmux",
        ],
        || None,
    )? {
        return Ok(());
    }
    crate::bench::install_interrupt_handler();
    let tether = crate::util::build_tether(false)?;
    let system_path = std::env::var("PATH").unwrap_or_default();
    let mut failed = Vec::new();
    for engine in engines {
        // The engine's containerd, ctr and containerd-shim-runc-v2 first on PATH, for this
        // process and everything it starts (ctr under tmux included).
        let path = match crate::engines::containerd_bin(engine)? {
            Some(bin) => format!("{}:{system_path}", bin.display()),
            None => system_path.clone(),
        };
        std::env::set_var("PATH", &path);
        let result = run_suite(engine, &tether, &shims, only.as_deref());
        std::env::set_var("PATH", &system_path);
        if let Err(message) = result {
            failed.push(message);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\n"))
    }
}

/// The suite on one engine (already first on PATH).
fn run_suite(
    engine: &str,
    tether: &std::path::Path,
    shims: &[&'static str],
    only: Option<&str>,
) -> Result<(), String> {
    let version = Command::new("containerd")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!("e2e containerd {engine}: {version}");
    let dir = tempfile::Builder::new()
        .prefix("tether-e2e-")
        .tempdir_in("/var/tmp")
        .map_err(|e| format!("e2e: temp dir: {e}"))?;
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink(tether, bin.join("containerd-shim-tether-v2"))
        .map_err(|e| format!("e2e: shim link: {e}"))?;
    let probe = dir.path().join("probe-bundle");
    let rootfs = tether_tests::fixture::BundleSpec::shell("true")
        .create(&probe)
        .map_err(|e| e.to_string())?
        .rootfs();
    println!("e2e containerd: starting a private containerd");
    let mut containerd =
        PrivateContainerd::start_with_path(&dir.path().join("containerd"), &rootfs, Some(&bin))?;
    let mut failures = Vec::new();
    let mut passed = 0;
    for &shim in shims {
        let runtime = if shim == "tether" {
            TETHER_RUNTIME
        } else {
            RUNC_RUNTIME
        };
        for (name, target, test) in TESTS {
            if only.is_some_and(|o| o != *name) || (*target == For::TetherOnly && shim != "tether")
            {
                continue;
            }
            if let Some((_, _, why)) = REFERENCE_GAPS
                .iter()
                .find(|(e, case, _)| shim == "runc" && *e == engine && case == name)
            {
                println!("e2e containerd {engine} [{shim}] {name} ... skipped: {why}");
                continue;
            }
            let started = Instant::now();
            let mut ctx = Ctx {
                containerd: &mut containerd,
                tether: tether.to_owned(),
                runtime,
                shim,
                dir: dir.path().to_owned(),
            };
            let result = test(&mut ctx);
            for id in IDS {
                let id = ctx.id(id);
                if !ctx.task_status(&id).unwrap_or_default().is_empty()
                    || ctx.ctr(&["containers", "info", &id]).is_ok()
                {
                    ctx.remove(&id);
                }
            }
            match result {
                Ok(()) => {
                    passed += 1;
                    println!(
                        "e2e containerd {engine} [{shim}] {name} ... ok ({:.1} s)",
                        started.elapsed().as_secs_f64()
                    );
                }
                Err(message) => {
                    println!("e2e containerd {engine} [{shim}] {name} ... FAILED: {message}");
                    failures.push(format!("{engine} [{shim}] {name}: {message}"));
                }
            }
        }
    }
    containerd.stop();
    // runc's root for the namespace, made on first use; gone again if nothing is left in it.
    let _ = std::fs::remove_dir(format!("/run/containerd/runc/{NAMESPACE}"));
    if failures.is_empty() {
        println!("e2e containerd {engine}: {passed} passed");
        Ok(())
    } else {
        println!(
            "e2e containerd: containerd's log is kept in {}",
            dir.path().display()
        );
        let _ = dir.keep();
        Err(format!(
            "e2e containerd {engine}: {} failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        ))
    }
}
