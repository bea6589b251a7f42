//! Running commands, and the `test` and `demo` tasks.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_owned()
}

/// Runs `cmd` with inherited stdio; an error names the command and its status.
pub fn run_status(cmd: &mut Command) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("{}: {e}", describe(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed: {status}", describe(cmd)))
    }
}

fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// `cargo xtask test`: every unit, doc and end-to-end test of the workspace. `--under-load` runs
/// them beside two busy CPU hogs, as a loaded CI machine would: a test that races shows here.
pub fn test(args: &[String]) -> Result<(), String> {
    let under_load = args.iter().any(|a| a == "--under-load");
    let extra: Vec<String> = args
        .iter()
        .filter(|a| *a != "--under-load")
        .cloned()
        .collect();
    let _hogs = under_load.then(CpuHogs::start).transpose()?;
    run_status(cargo().args(["build", "--workspace", "--bins"]))?;
    // `run --init` mounts tether's own binary into the container, which only a static one can be.
    let static_tether = build_tether(true)?;
    run_status(
        cargo()
            .args(["test", "--workspace"])
            .args(&extra)
            .env("TETHER_STATIC_BIN", static_tether),
    )?;
    // A filter given to cargo test selects among its tests; the guide, containerd, docker, CRI,
    // cgroup v2 and podman suites run without one.
    if extra.is_empty() {
        crate::e2e::run(&["guide".to_owned()])?;
        crate::e2e::run(&["containerd".to_owned()])?;
        crate::e2e::run(&["docker".to_owned()])?;
        crate::e2e::run(&["cri".to_owned()])?;
        crate::e2e::run(&["cgroup2".to_owned()])?;
        crate::e2e::run(&["podman".to_owned()])?;
    }
    Ok(())
}

/// Two processes spinning on the CPU for as long as the value lives (both cores of this machine's
/// kind). Killed when dropped.
struct CpuHogs(Vec<std::process::Child>);

impl CpuHogs {
    fn start() -> Result<CpuHogs, String> {
        let hogs = (0..2)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()
                    .map_err(|e| format!("start a CPU hog: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        println!("test: under load (two CPU hogs)");
        Ok(CpuHogs(hogs))
    }
}

impl Drop for CpuHogs {
    fn drop(&mut self) {
        for hog in &mut self.0 {
            let _ = hog.kill();
            let _ = hog.wait();
        }
    }
}

/// Builds the `tether` binary (the debug profile, or the static release build) and returns its path.
pub fn build_tether(release: bool) -> Result<PathBuf, String> {
    let mut cmd = cargo();
    if release {
        // The release binary is linked statically (glibc's libc.a, no PIE): it is exec'd twice
        // for every container (the CLI or containerd's `start`, then the daemon), and without
        // the dynamic loader's work each exec costs about a millisecond less. Flags for the
        // binary alone (`cargo rustc`): set for the whole build they would reach proc-macros,
        // which cannot be static.
        cmd.args([
            "rustc",
            "--quiet",
            "--release",
            "--package",
            "shim-bin",
            "--bin",
            "tether",
            "--",
            "-C",
            "target-feature=+crt-static",
            "-C",
            "relocation-model=static",
        ]);
    } else {
        cmd.args([
            "build",
            "--quiet",
            "--package",
            "shim-bin",
            "--bin",
            "tether",
        ]);
    }
    run_status(&mut cmd)?;
    let profile = if release { "release" } else { "debug" };
    Ok(target_dir().join(profile).join("tether"))
}

/// Where cargo builds: `CARGO_TARGET_DIR` (relative to the workspace) when set, else `target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// `cargo xtask demo`: a container that outlives the process that started it.
pub fn demo() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("demo: running containers needs root".into());
    }
    let tether = build_tether(false)?;
    let dir = tempfile::tempdir().map_err(|e| format!("demo: temp dir: {e}"))?;
    let bundle = tether_tests::fixture::BundleSpec::shell(
        "echo hello from a busybox container; while true; do date +%T; sleep 0.2; done",
    )
    .create(dir.path().join("bundle"))
    .map_err(|e| format!("demo: {e}"))?;
    let state = dir.path().join("state");
    let root = dir.path().join("runc-root");
    let id = format!("demo-{}", std::process::id());
    let tether_cmd = |args: &[&str]| {
        let mut cmd = Command::new(&tether);
        cmd.arg("--state-dir").arg(&state).args(args);
        cmd
    };
    let step = |text: &str| println!("\n== {text}");

    step("a launcher shell starts the container with `tether run` and exits at once");
    let launch = format!(
        "{} --state-dir {} run -d --id {id} --bundle {} --runtime-root {}; echo \"launcher (pid $$) exits now\"",
        tether.display(),
        state.display(),
        bundle.path().display(),
        root.display()
    );
    run_status(Command::new("sh").args(["-c", &launch]))?;
    std::thread::sleep(std::time::Duration::from_millis(1200));

    step("tether ps: the container runs on without its launcher");
    run_status(&mut tether_cmd(&["ps"]))?;
    step("tether logs --tail 3: it keeps logging");
    run_status(&mut tether_cmd(&["logs", "--tail", "3", &id]))?;
    std::thread::sleep(std::time::Duration::from_millis(1000));
    step("one second later, tether logs --tail 3 --timestamps");
    run_status(&mut tether_cmd(&[
        "logs",
        "--tail",
        "3",
        "--timestamps",
        &id,
    ]))?;
    step("tether kill, tether wait (prints the exit code: 128 + SIGKILL)");
    run_status(&mut tether_cmd(&["kill", &id, "KILL"]))?;
    let _ = tether_cmd(&["wait", &id]).status();
    step("tether rm: container, daemon and state are gone");
    run_status(&mut tether_cmd(&["rm", &id]))?;
    run_status(&mut tether_cmd(&["ps"]))?;
    Ok(())
}

/// Whether `binary` is found on PATH.
pub fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
}
