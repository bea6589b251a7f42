//! A private containerd (own root, state and socket; CRI off), and the busybox image imported into it
//! from an OCI archive built from the fixture: no registry, no network.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// The image reference the archive carries.
pub const IMAGE: &str = "docker.io/library/busybox:tether-fixture";
/// The namespace everything runs in.
pub const NAMESPACE: &str = "tether";

pub struct PrivateContainerd {
    pub dir: PathBuf,
    path: String,
    /// The namespace `ctr` works in: [`NAMESPACE`], or CRI's `k8s.io`.
    namespace: &'static str,
    daemon: Child,
    events: Option<(Child, Receiver<(Instant, String)>)>,
}

impl PrivateContainerd {
    /// Starts containerd in `dir` and imports the fixture image, with `bin` first on its PATH
    /// (where it finds runtime shims).
    pub fn start_for_bench(dir: &Path, rootfs: &Path, bin: &Path) -> Result<Self, String> {
        Self::start_configured(dir, rootfs, Some(bin), &[], false)
    }

    /// As [`PrivateContainerd::start_for_bench`], at debug level (shims then get `-debug`), and
    /// without containerd's own cgroup monitor: then every task event comes from the shim (the
    /// monitor publishes OOM events of its own).
    pub fn start_with_path(dir: &Path, rootfs: &Path, bin: Option<&Path>) -> Result<Self, String> {
        Self::start_configured(
            dir,
            rootfs,
            bin,
            &["io.containerd.monitor.v1.cgroups"],
            true,
        )
    }

    fn start_configured(
        dir: &Path,
        rootfs: &Path,
        bin: Option<&Path>,
        also_disabled: &[&str],
        debug: bool,
    ) -> Result<Self, String> {
        let disabled: Vec<String> = std::iter::once("io.containerd.grpc.v1.cri")
            .chain(also_disabled.iter().copied())
            .map(|plugin| format!("\"{plugin}\""))
            .collect();
        let config = format!("disabled_plugins = [{}]\n", disabled.join(", "))
            + if debug {
                "[debug]\n  level = \"debug\"\n"
            } else {
                ""
            };
        let mut containerd = Self::start_daemon_with(dir, bin, 2, &config, NAMESPACE)?;
        let archive = dir.join("busybox-oci.tar");
        build_oci_archive(rootfs, &archive, &dir.join("image"), IMAGE, &["sh"])?;
        containerd.ctr(&["images", "import", archive.to_str().expect("utf-8 path")])?;
        containerd.start_events()?;
        Ok(containerd)
    }

    /// Starts containerd with its CRI plugin on: a config of `version` (2 for containerd 1.x, 3
    /// for 2.x) whose plugin sections are `plugins`, `ctr` in CRI's namespace `k8s.io`, and no
    /// image imported (the caller imports what its pods need).
    #[cfg(feature = "cri")]
    pub fn start_cri(dir: &Path, bin: &Path, version: u32, plugins: &str) -> Result<Self, String> {
        Self::start_daemon_with(dir, Some(bin), version, plugins, "k8s.io")
    }

    /// Writes the config (private root, state and sockets, then `rest`) and starts containerd.
    fn start_daemon_with(
        dir: &Path,
        bin: Option<&Path>,
        version: u32,
        rest: &str,
        namespace: &'static str,
    ) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = {version}\nroot = \"{root}\"\nstate = \"{state}\"\n{rest}\
                 [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                sock = dir.join("containerd.sock").display(),
            ),
        )
        .map_err(|e| format!("write {}: {e}", config.display()))?;
        let path = match bin {
            Some(bin) => format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
            None => std::env::var("PATH").unwrap_or_default(),
        };
        let daemon = spawn_containerd(dir, &path)?;
        let containerd = PrivateContainerd {
            dir: dir.to_owned(),
            path,
            namespace,
            daemon,
            events: None,
        };
        containerd.wait_up()?;
        Ok(containerd)
    }

    fn wait_up(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.ctr(&["version"]).is_err() {
            super::check_interrupt()?;
            if Instant::now() > deadline {
                return Err("containerd did not come up within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops containerd with SIGTERM (its shims and containers stay) and waits for it to exit.
    pub fn stop_daemon(&mut self) -> Result<(), String> {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.daemon.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        self.daemon
            .wait()
            .map_err(|e| format!("wait for containerd: {e}"))?;
        Ok(())
    }

    /// Starts containerd again on the same root, state and socket.
    pub fn start_daemon(&mut self) -> Result<(), String> {
        self.daemon = spawn_containerd(&self.dir, &self.path)?;
        self.wait_up()?;
        // The event stream ended with the old containerd.
        if let Some((mut child, _)) = self.events.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.start_events()
    }

    /// The topics of the events about container `id`, in arrival order, until `last` arrived for
    /// it (or `timeout`: then what arrived so far).
    pub fn events_of(&self, id: &str, last: &str, timeout: Duration) -> Vec<String> {
        let mut topics = Vec::new();
        let Some((_, events)) = self.events.as_ref() else {
            return topics;
        };
        let deadline = Instant::now() + timeout;
        let quoted = format!("\"{id}\"");
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok((_, line)) = events.recv_timeout(left) else {
                break;
            };
            if !line.contains(&quoted) {
                continue;
            }
            if let Some(topic) = line.split_whitespace().find(|w| w.starts_with("/tasks/")) {
                topics.push(topic.to_owned());
                if topic == last {
                    break;
                }
            }
        }
        topics
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    pub fn pid(&self) -> i32 {
        self.daemon.id() as i32
    }

    /// `ctr -a SOCK -n NAMESPACE ARGS`, returning stdout.
    pub fn ctr(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new("ctr")
            .arg("-a")
            .arg(self.socket())
            .args(["-n", self.namespace])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("ctr: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "ctr {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// `ctr events`, read on a thread; every line is timestamped on arrival.
    fn start_events(&mut self) -> Result<(), String> {
        let mut child = Command::new("ctr")
            .arg("-a")
            .arg(self.socket())
            .args(["-n", self.namespace, "events"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("ctr events: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let (sender, receiver) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        self.events = Some((child, receiver));
        Ok(())
    }

    /// Waits for a `/tasks/exit` event of container `id`; returns when it arrived.
    pub fn wait_exit_event(&self, id: &str, timeout: Duration) -> Result<Instant, String> {
        let (_, events) = self.events.as_ref().ok_or("no event stream")?;
        let deadline = Instant::now() + timeout;
        loop {
            super::check_interrupt()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no exit event for {id} within {timeout:?}"));
            }
            if let Ok((at, line)) = events.recv_timeout(left.min(Duration::from_millis(100))) {
                if line.contains("/tasks/exit") && line.contains(&format!("\"{id}\"")) {
                    return Ok(at);
                }
            }
        }
    }

    /// Forgets events seen so far.
    pub fn drain_events(&self) {
        if let Some((_, events)) = &self.events {
            while events.try_recv().is_ok() {}
        }
    }

    /// Removes a container whatever its state.
    pub fn remove(&self, id: &str) {
        let _ = self.ctr(&["task", "kill", "-s", "KILL", id]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ctr(&["task", "delete", id]).is_ok() {
                break;
            }
            if self
                .ctr(&["task", "ls", "-q"])
                .is_ok_and(|ls| !ls.lines().any(|l| l.trim() == id))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.ctr(&["containers", "delete", id]);
    }

    /// Stops everything it started and unmounts what it mounted.
    pub fn stop(mut self) {
        if let Ok(tasks) = self.ctr(&["task", "ls", "-q"]) {
            for id in tasks.lines().map(str::trim).filter(|l| !l.is_empty()) {
                self.remove(id);
            }
        }
        if let Ok(containers) = self.ctr(&["containers", "ls", "-q"]) {
            for id in containers.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let _ = self.ctr(&["containers", "delete", id]);
            }
        }
        if let Some((mut child, _)) = self.events.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.daemon.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.daemon.wait();
        unmount_below(&self.dir);
    }
}

fn spawn_containerd(dir: &Path, path: &str) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("containerd.log"))
        .map_err(|e| e.to_string())?;
    Command::new("containerd")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .env("PATH", path)
        // Shims register their containers for tether's CLI here, not in the host's /run/tether.
        .env("TETHER_STATE_DIR", dir.join("tether-state"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("start containerd: {e}"))
}

/// Unmounts every mount point below `dir`, deepest first.
pub fn unmount_below(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Writes an OCI image layout archive of `rootfs` (one uncompressed layer) to `archive`: the
/// image `name`, whose command is `cmd`.
pub fn build_oci_archive(
    rootfs: &Path,
    archive: &Path,
    work: &Path,
    name: &str,
    cmd: &[&str],
) -> Result<(), String> {
    let blobs = work.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| e.to_string())?;
    let layer = work.join("layer.tar");
    crate::util::run_status(
        Command::new("tar")
            .arg("-C")
            .arg(rootfs)
            .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
            .arg(&layer)
            .arg("."),
    )?;
    let (layer_digest, layer_size) =
        store_blob(&blobs, &std::fs::read(&layer).map_err(|e| e.to_string())?)?;
    let config = serde_json::json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": cmd
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]}
    });
    let (config_digest, config_size) = store_blob(&blobs, config.to_string().as_bytes())?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_digest}"), "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{layer_digest}"), "size": layer_size}]
    });
    let (manifest_digest, manifest_size) = store_blob(&blobs, manifest.to_string().as_bytes())?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest_size,
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(':').next().unwrap_or("latest")}
        }]
    });
    std::fs::write(work.join("index.json"), index.to_string()).map_err(|e| e.to_string())?;
    std::fs::write(
        work.join("oci-layout"),
        "{\"imageLayoutVersion\":\"1.0.0\"}",
    )
    .map_err(|e| e.to_string())?;
    std::fs::remove_file(&layer).map_err(|e| e.to_string())?;
    crate::util::run_status(
        Command::new("tar")
            .arg("-C")
            .arg(work)
            .arg("-cf")
            .arg(archive)
            .args(["oci-layout", "index.json", "blobs"]),
    )
}

fn store_blob(blobs: &Path, data: &[u8]) -> Result<(String, usize), String> {
    let digest = sha256_hex(data)?;
    std::fs::write(blobs.join(&digest), data).map_err(|e| e.to_string())?;
    Ok((digest, data.len()))
}

fn sha256_hex(data: &[u8]) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("sha256sum: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(data)
        .map_err(|e| e.to_string())?;
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}
