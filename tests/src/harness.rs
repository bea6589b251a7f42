//! Per-test isolation for end-to-end tests: a private temp dir, runtime root, state dir and container
//! id, and cleanup on drop (so also when the test panics).

use crate::fixture::{Bundle, BundleSpec};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The environment variable that turns "skip when not root" into "fail when not root" (CI sets it).
pub const REQUIRE_ENV: &str = "TETHER_E2E";

/// Whether the process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether a test that needs root may run. Without root it prints why it skips and returns false, or
/// panics when `TETHER_E2E=require`.
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("require") {
        panic!("{test}: needs root to run containers, and {REQUIRE_ENV}=require forbids skipping");
    }
    eprintln!(
        "skipping {test}: needs root to run containers (set {REQUIRE_ENV}=require to fail instead)"
    );
    false
}

/// Whether `binary` can be found on PATH (or is an existing path).
pub fn have_binary(binary: &str) -> bool {
    find_binary(binary).is_some()
}

/// `binary` resolved through PATH.
pub fn find_binary(binary: &str) -> Option<PathBuf> {
    if binary.contains('/') {
        return Path::new(binary).exists().then(|| PathBuf::from(binary));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(binary))
            .find(|p| p.is_file())
    })
}

static SEQUENCE: AtomicUsize = AtomicUsize::new(0);

/// One test's private world. Dropping it deletes every container left under its runtime root, stops
/// every tether daemon left under its state dir, and removes its files.
#[derive(Debug)]
pub struct Sandbox {
    dir: tempfile::TempDir,
    runtime: String,
    id: String,
    bundles: AtomicUsize,
}

impl Sandbox {
    /// A sandbox using runc.
    pub fn new(name: &str) -> Self {
        Self::with_runtime(name, "runc")
    }

    /// A sandbox using `runtime` (runc, crun, ...).
    pub fn with_runtime(name: &str, runtime: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tether-e2e-{name}-"))
            .tempdir()
            .expect("create the test's temp dir");
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let id = format!("{name}-{}-{seq}", std::process::id());
        let sandbox = Sandbox {
            dir,
            runtime: runtime.to_owned(),
            id,
            bundles: AtomicUsize::new(0),
        };
        std::fs::create_dir_all(sandbox.runtime_root()).expect("create the runtime root");
        sandbox
    }

    /// The container id reserved for this test.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Another id, for tests with several containers.
    pub fn another_id(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.id)
    }

    /// The runtime binary name.
    pub fn runtime(&self) -> &str {
        &self.runtime
    }

    /// The private temp dir.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The private runtime `--root`.
    pub fn runtime_root(&self) -> PathBuf {
        self.dir.path().join("runtime-root")
    }

    /// The private tether `--state-dir`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Writes a new bundle for `spec` inside the sandbox.
    pub fn bundle(&self, spec: &BundleSpec) -> Bundle {
        let n = self.bundles.fetch_add(1, Ordering::Relaxed);
        spec.create(self.dir.path().join(format!("bundle-{n}")))
            .expect("create the busybox bundle")
    }

    /// A `Command` for the runtime with the private root.
    pub fn runtime_command(&self) -> Command {
        let mut cmd = Command::new(&self.runtime);
        cmd.arg("--root").arg(self.runtime_root());
        cmd
    }

    fn delete_leftover_containers(&self) {
        let Ok(output) = self
            .runtime_command()
            .args(["list", "--format", "json"])
            .stderr(Stdio::null())
            .output()
        else {
            return;
        };
        let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        for container in list.as_array().into_iter().flatten() {
            if let Some(id) = container.get("id").and_then(|v| v.as_str()) {
                let _ = self
                    .runtime_command()
                    .args(["delete", "--force", id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }

    fn stop_leftover_daemons(&self) {
        let Ok(entries) = std::fs::read_dir(self.state_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(pid) = std::fs::read_to_string(entry.path().join("daemon.pid")) else {
                continue;
            };
            let Ok(pid) = pid.trim().parse::<i32>() else {
                continue;
            };
            let pid = nix::unistd::Pid::from_raw(pid);
            if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
                wait_until(Duration::from_secs(5), || {
                    !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid.as_raw())
                });
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop_leftover_daemons();
        self.delete_leftover_containers();
    }
}

/// Inotify watches process `pid` holds (from its fdinfo): a watcher such as `tether events` tells
/// only what changes once it has one.
pub fn inotify_watches(pid: u32) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_to_string(fd.path()).ok())
        .map(|info| {
            info.lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count()
        })
        .sum()
}

/// Whether `/proc/<pid>/stat` says the process is a zombie.
pub fn is_zombie(pid: i32) -> bool {
    process_state(pid) == Some('Z')
}

/// The state letter of a process (`R`, `S`, `Z`, ...), or None when it is gone.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held. For conditions
/// outside the test's control (a process state, a file another process writes), with a bounded wait.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
