//! Driving the real `tether` binary from tests.

use crate::fixture::Bundle;
use crate::harness::Sandbox;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The `tether` binary built in this workspace (`TETHER_BIN` overrides it).
pub fn tether_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("TETHER_BIN") {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/<test binary> -> target/<profile>/tether
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps");
    let bin = profile_dir.join("tether");
    assert!(
        bin.exists(),
        "{} not built: run the tests with `cargo xtask test` (or `cargo build --bins` first)",
        bin.display()
    );
    bin
}

/// The statically linked `tether` that `cargo xtask test` builds and names in `TETHER_STATIC_BIN`:
/// what `run --init` mounts into a container. `None` when it is not set.
pub fn static_tether_bin() -> Option<PathBuf> {
    std::env::var_os("TETHER_STATIC_BIN").map(PathBuf::from)
}

impl Sandbox {
    /// `tether --state-dir <private>` with nothing else.
    pub fn tether(&self) -> Command {
        let mut cmd = Command::new(tether_bin());
        cmd.arg("--state-dir").arg(self.state_dir());
        cmd.stdin(Stdio::null());
        cmd
    }

    /// `tether run --id ID --bundle B --runtime-root <private>` plus `extra`.
    pub fn tether_run(&self, id: &str, bundle: &Bundle, extra: &[&str]) -> Output {
        self.tether()
            .args(["run", "-d", "--id", id, "--bundle"])
            .arg(bundle.path())
            .arg("--runtime")
            .arg(self.runtime())
            .arg("--runtime-root")
            .arg(self.runtime_root())
            .args(extra)
            .output()
            .expect("run tether")
    }

    /// Starts a container and returns its init pid; panics with tether's message on failure.
    pub fn start(&self, id: &str, bundle: &Bundle, extra: &[&str]) -> i32 {
        let output = self.tether_run(id, bundle, extra);
        assert!(
            output.status.success(),
            "tether run {id}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            id,
            "tether run -d prints the id"
        );
        let state = self.tether_output(&["state", id]);
        let state: serde_json::Value =
            serde_json::from_slice(&state.stdout).expect("tether state prints JSON");
        state["pid"].as_i64().expect("a pid in the state") as i32
    }

    /// Runs `tether ARGS...` and returns its output.
    pub fn tether_output(&self, args: &[&str]) -> Output {
        self.tether().args(args).output().expect("run tether")
    }

    /// Kills container `id`'s daemon with SIGKILL and waits until it is gone (or a zombie of
    /// whoever inherited it); returns its pid.
    pub fn kill_daemon(&self, id: &str) -> i32 {
        let daemon = self.daemon_pid(id);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(daemon),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("SIGKILL the daemon");
        let gone = crate::harness::wait_until(std::time::Duration::from_secs(30), || {
            crate::harness::process_state(daemon).is_none_or(|state| state == 'Z')
        });
        assert!(gone, "daemon {daemon} outlived SIGKILL");
        daemon
    }

    /// The daemon's pid for container `id`, from its state.
    pub fn daemon_pid(&self, id: &str) -> i32 {
        let text = std::fs::read_to_string(self.state_dir().join(id).join("daemon.pid"))
            .expect("daemon.pid");
        text.trim().parse().expect("a pid")
    }
}

/// `/proc/<pid>/status` field `name`.
pub fn proc_status_field(pid: i32, name: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_owned())
}

/// The pids whose parent is `parent`.
pub fn children_of(parent: i32) -> Vec<(i32, char)> {
    let mut children = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return children;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let mut fields = rest.split(' ');
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if fields.next().and_then(|p| p.parse::<i32>().ok()) == Some(parent) {
            children.push((pid, state));
        }
    }
    children
}

/// The kubelet's reading of a CRI log: the original bytes of one stream.
pub fn kubelet_read(log: &[u8], stream: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for record in log.split(|&b| b == b'\n').filter(|r| !r.is_empty()) {
        let mut fields = record.splitn(4, |&b| b == b' ');
        let (_time, record_stream, tag) = (fields.next(), fields.next(), fields.next());
        if record_stream != Some(stream.as_bytes()) {
            continue;
        }
        out.extend_from_slice(fields.next().unwrap_or_default());
        if tag == Some(b"F") {
            out.push(b'\n');
        }
    }
    out
}

/// `containerd-shim-tether-v2` in the sandbox: a link to tether under the name that selects the
/// shim.
pub fn shim_binary(sandbox: &Sandbox) -> PathBuf {
    let link = sandbox.path().join("containerd-shim-tether-v2");
    if !link.exists() {
        std::os::unix::fs::symlink(tether_bin(), &link).expect("link the shim");
    }
    link
}

/// The shim's `start` for `id` in `bundle`, as containerd runs it (no containerd behind the
/// address it is given), run by `command` (the shim, or a wrapper that execs it with its
/// arguments); returns the address it prints. It lists the container in the sandbox's state dir,
/// whose cleanup then stops a shim a failing test left running.
pub fn start_shim(
    mut command: Command,
    sandbox: &Sandbox,
    bundle: &std::path::Path,
    id: &str,
    namespace: &str,
) -> String {
    std::fs::create_dir_all(sandbox.state_dir()).expect("the sandbox's state dir");
    let output = command
        .args([
            "-namespace",
            namespace,
            "-address",
            "/nonexistent/containerd.sock",
        ])
        .args(["-publish-binary", "/bin/false", "-id", id, "start"])
        .current_dir(bundle)
        .env_remove("TTRPC_ADDRESS")
        .env("TETHER_STATE_DIR", sandbox.state_dir())
        .output()
        .expect("run the shim");
    assert!(
        output.status.success(),
        "start: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 address")
}
