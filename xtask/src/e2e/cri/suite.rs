//! The CRI suite on one engine: a private containerd with its CRI plugin on, configured with the
//! runtime entries docs/kubernetes.md gives, a pause image and the busybox image imported into
//! CRI's namespace, and for each shim one pod walked through the calls the kubelet makes, then
//! the timings of both shims measured in alternation.

use super::client::{describe, CallError, Cri};
use super::kubelet_log;
use super::stream::Session;
use crate::bench::containerd::{build_oci_archive, PrivateContainerd, IMAGE};
use crate::e2e::{expect, wait_until, Check};
use k8s_cri::v1 as cri;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The sandbox ("pause") image, built here from the busybox fixture: PID 1 waits and leaves on
/// TERM, as the real pause does.
const PAUSE_IMAGE: &str = "localhost/tether/pause:fixture";
const PAUSE_COMMAND: &[&str] = &[
    "sh",
    "-c",
    "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done",
];

/// The paths docs/kubernetes.md names, replaced by private ones.
const DOC_CONFIG_PATH: &str = "/etc/tether/cri.toml";
const DOC_RUNC_ROOT: &str = "/run/tether-runc";

/// The handler whose config file has a mistake on line 2 (a string where a boolean goes).
const BROKEN_HANDLER: &str = "tether-broken";
const BROKEN_CONFIG: &str = "tether-broken.toml";
const BROKEN_CONFIG_TEXT: &str = "BinaryName = \"/usr/sbin/runc\"\nSystemdCgroup = \"yes\"\n";

/// The main container: stdout and stderr apart, a line longer than CRI's 16 KiB line limit (so
/// the log splits it into partial lines), then every stdin line echoed. PID 1 ignores TERM, so a
/// stop must wait out its grace period and kill.
const MAIN_SCRIPT: &str = "trap '' TERM; echo out-1; echo err-1 >&2; \
    head -c 20000 /dev/zero | tr '\\0' x; echo; printf 'no-newline-'; echo end; \
    while read line; do echo \"stdin:$line\"; done; while :; do sleep 1; done";
const LONG_LINE: usize = 20000;

/// Flood then exit: a container writes `lines` numbered lines of `width` bytes flat out and exits,
/// `runs` times per shim; every line must be in the CRI log. containerd 1.6's CRI plugin closes its
/// fifo readers as soon as it handles the exit, so a shim that publishes the exit while output is
/// still on its way loses the tail.
const FLOODS: &[Flood] = &[
    Flood {
        name: "4000_lines_then_exit",
        lines: 4000,
        width: 1000,
        runs: 30,
    },
    Flood {
        name: "64_mib_then_exit",
        lines: 65536,
        width: 1024,
        runs: 1,
    },
];

struct Flood {
    name: &'static str,
    lines: usize,
    width: usize,
    runs: usize,
}

impl Flood {
    fn script(&self) -> String {
        format!(
            "awk 'BEGIN {{ for (i = 1; i <= {}; i++) printf \"%0{}d\\n\", i }}'",
            self.lines,
            self.width - 1
        )
    }

    /// How many of the lines are missing from `stdout` (they must come whole and in order).
    fn lost(&self, stdout: &[u8]) -> Result<usize, String> {
        let mut seen = 0;
        for line in stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let text = String::from_utf8_lossy(line);
            if line.len() != self.width - 1
                || text.trim_start_matches('0') != (seen + 1).to_string()
            {
                return Err(format!("line {} is {text:.40?}…", seen + 1));
            }
            seen += 1;
        }
        Ok(self.lines - seen)
    }
}

/// How many pods each shim's timings take, and ExecSync calls in each.
const TIMING_PODS: usize = 10;
const TIMING_EXECS: usize = 10;

/// One shim under test: its CRI runtime handler.
#[derive(Clone, Copy)]
pub struct Shim {
    pub name: &'static str,
    handler: &'static str,
    /// The file name of the process that parents a container under it.
    parent_exe: &'static str,
}

pub const SHIMS: &[Shim] = &[
    Shim {
        name: "tether",
        handler: "tether",
        parent_exe: "tether",
    },
    Shim {
        name: "runc",
        handler: "runc",
        parent_exe: "containerd-shim-runc-v2",
    },
];

/// What one engine's run gave.
pub struct Outcome {
    pub passed: usize,
    pub failures: Vec<String>,
    /// (shim, median RunPodSandbox + Create + Start, median ExecSync).
    pub timings: Vec<(&'static str, Duration, Duration)>,
}

struct Engine {
    /// containerd's config version: 2 for 1.x, 3 for 2.x.
    config_version: u32,
    /// The docs/kubernetes.md block for it.
    doc_block: &'static str,
}

fn engine(name: &str) -> Engine {
    if name.starts_with("1.") {
        Engine {
            config_version: 2,
            doc_block: "cri-1.x",
        }
    } else {
        Engine {
            config_version: 3,
            doc_block: "cri-2.x",
        }
    }
}

/// The private scaffolding around the documented runtime entry: images, streaming on
/// 127.0.0.1 only, an empty CNI config (host-network pods need none), runc's runtime. And
/// `restrict_oom_score_adj`: this machine kind withholds CAP_SYS_RESOURCE even from root, so the
/// pause container's oom_score_adj of -998 would fail runc's init for every shim alike; with it,
/// containerd asks for no less than its own score.
fn scaffolding(version: u32, dir: &Path) -> String {
    let cni = dir.join("cni");
    if version == 2 {
        format!(
            "[plugins.\"io.containerd.grpc.v1.cri\"]\n\
             \x20 sandbox_image = \"{PAUSE_IMAGE}\"\n\
             \x20 stream_server_address = \"127.0.0.1\"\n\
             \x20 stream_server_port = \"0\"\n\
             \x20 restrict_oom_score_adj = true\n\
             [plugins.\"io.containerd.grpc.v1.cri\".cni]\n\
             \x20 bin_dir = \"{cni}/bin\"\n\
             \x20 conf_dir = \"{cni}/net.d\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n\
             \x20 default_runtime_name = \"runc\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n\
             \x20 runtime_type = \"io.containerd.runc.v2\"\n",
            cni = cni.display()
        )
    } else {
        format!(
            "[plugins.'io.containerd.cri.v1.images'.pinned_images]\n\
             \x20 sandbox = '{PAUSE_IMAGE}'\n\
             [plugins.'io.containerd.cri.v1.runtime'.cni]\n\
             \x20 bin_dirs = ['{cni}/bin']\n\
             \x20 conf_dir = '{cni}/net.d'\n\
             [plugins.'io.containerd.cri.v1.runtime']\n\
             \x20 restrict_oom_score_adj = true\n\
             [plugins.'io.containerd.cri.v1.runtime'.containerd]\n\
             \x20 default_runtime_name = 'runc'\n\
             [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n\
             \x20 runtime_type = 'io.containerd.runc.v2'\n\
             [plugins.'io.containerd.grpc.v1.cri']\n\
             \x20 stream_server_address = '127.0.0.1'\n\
             \x20 stream_server_port = '0'\n",
            cni = cni.display()
        )
    }
}

/// The fenced block of `doc` whose info string is `toml NAME`.
pub fn doc_block(doc: &str, name: &str) -> Result<String, String> {
    let fence = format!("```toml {name}");
    let start = doc
        .lines()
        .position(|l| l.trim_end() == fence)
        .ok_or_else(|| format!("docs/kubernetes.md has no `{fence}` block"))?;
    let body: Vec<&str> = doc
        .lines()
        .skip(start + 1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    Ok(body.join("\n") + "\n")
}

/// The suite on the engine whose binaries are first on PATH.
pub fn run(
    engine_name: &str,
    tether: &Path,
    shims: &[Shim],
    only_floods: bool,
) -> Result<Outcome, String> {
    let engine = engine(engine_name);
    let doc = std::fs::read_to_string(crate::util::workspace_root().join("docs/kubernetes.md"))
        .map_err(|e| format!("docs/kubernetes.md: {e}"))?;
    let dir = tempfile::Builder::new()
        .prefix("tether-cri-")
        .tempdir_in("/var/tmp")
        .map_err(|e| format!("e2e cri: temp dir: {e}"))?;
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink(tether, bin.join("containerd-shim-tether-v2"))
        .map_err(|e| format!("e2e cri: shim link: {e}"))?;
    // tether's config file as the doc gives it, with private paths.
    let runc_root = dir.path().join("tether-runc");
    let tether_config = dir.path().join("tether-cri.toml");
    std::fs::write(
        &tether_config,
        doc_block(&doc, "cri-tether-config")?.replace(DOC_RUNC_ROOT, &runc_root.to_string_lossy()),
    )
    .map_err(|e| e.to_string())?;
    let runtime_entry = doc_block(&doc, engine.doc_block)?;
    // A second handler, the documented entry pointing at a config file with a mistake.
    std::fs::write(dir.path().join(BROKEN_CONFIG), BROKEN_CONFIG_TEXT)
        .map_err(|e| e.to_string())?;
    let broken_entry = runtime_entry
        .replace("runtimes.tether", &format!("runtimes.{BROKEN_HANDLER}"))
        .replace(
            DOC_CONFIG_PATH,
            &dir.path().join(BROKEN_CONFIG).to_string_lossy(),
        );
    let plugins = scaffolding(engine.config_version, dir.path())
        + &runtime_entry.replace(DOC_CONFIG_PATH, &tether_config.to_string_lossy())
        + &broken_entry;
    println!("e2e cri {engine_name}: starting containerd with its CRI plugin");
    let containerd = PrivateContainerd::start_cri(
        &dir.path().join("containerd"),
        &bin,
        engine.config_version,
        &plugins,
    )?;
    let result = (|| {
        import_images(&containerd, dir.path())?;
        let cri = Cri::connect(&containerd.socket())?;
        let mut suite = Suite {
            cri,
            dir: dir.path().to_owned(),
            runc_root: runc_root.clone(),
            engine: engine_name.to_owned(),
            passed: 0,
            failures: Vec::new(),
        };
        suite.step("-", "version_names_containerd_and_cri_v1", Suite::version);
        if !only_floods {
            for shim in shims {
                suite.walk(*shim);
            }
        }
        for shim in shims {
            for flood in FLOODS {
                let name = format!("flood_{}_loses_no_line", flood.name);
                suite.step(shim.name, &name, |suite| suite.flood(*shim, flood));
            }
        }
        if only_floods {
            return Ok(Outcome {
                passed: suite.passed,
                failures: suite.failures,
                timings: Vec::new(),
            });
        }
        if shims.iter().any(|s| s.name == "tether") {
            suite.step(
                "tether",
                "a_mistake_in_the_config_file_fails_the_pod_and_leaves_nothing",
                Suite::broken_config,
            );
        }
        let timings = suite.timings(shims);
        Ok(Outcome {
            passed: suite.passed,
            failures: suite.failures,
            timings,
        })
    })();
    containerd.stop();
    crate::bench::containerd::unmount_below(dir.path());
    // What containerd makes for CRI's namespace on first use, gone again if nothing is left in
    // it: runc's root and the namespace's parent cgroup in each hierarchy (rmdir refuses a
    // cgroup still holding one).
    let _ = std::fs::remove_dir("/run/containerd/runc/k8s.io");
    if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
        for hierarchy in hierarchies.filter_map(Result::ok) {
            let _ = std::fs::remove_dir(hierarchy.path().join("k8s.io"));
        }
    }
    match &result {
        Ok(outcome) if outcome.failures.is_empty() => {}
        _ => {
            println!(
                "e2e cri {engine_name}: containerd's log is kept in {}",
                dir.path().display()
            );
            let _ = dir.keep();
        }
    }
    result
}

/// The pause and busybox images, imported into CRI's namespace; waits until CRI sees both (its
/// image store follows containerd's events).
fn import_images(containerd: &PrivateContainerd, dir: &Path) -> Check {
    let probe = dir.join("probe-bundle");
    let rootfs = tether_tests::fixture::BundleSpec::shell("true")
        .create(&probe)
        .map_err(|e| e.to_string())?
        .rootfs();
    for (name, cmd, work) in [
        (PAUSE_IMAGE, PAUSE_COMMAND, "image-pause"),
        (IMAGE, &["sh"][..], "image-busybox"),
    ] {
        let archive = dir.join(format!("{work}.tar"));
        build_oci_archive(&rootfs, &archive, &dir.join(work), name, cmd)?;
        containerd.ctr(&["images", "import", archive.to_str().expect("utf-8 path")])?;
    }
    let cri = Cri::connect(&containerd.socket())?;
    for name in [PAUSE_IMAGE, IMAGE] {
        wait_until(Duration::from_secs(30), || {
            let status = cri
                .images(|mut c| async move {
                    c.image_status(cri::ImageStatusRequest {
                        image: Some(image_spec(name)),
                        verbose: false,
                    })
                    .await
                })
                .map_err(|e| describe(&e))?;
            Ok(status.image.is_some())
        })
        .map_err(|e| format!("CRI does not see the image {name}: {e}"))?;
    }
    Ok(())
}

fn image_spec(name: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: name.to_owned(),
        ..Default::default()
    }
}

struct Suite {
    cri: Cri,
    dir: PathBuf,
    runc_root: PathBuf,
    engine: String,
    passed: usize,
    failures: Vec<String>,
}

/// One pod walked through the calls: what the steps share.
struct Pod {
    shim: Shim,
    config: cri::PodSandboxConfig,
    sandbox: String,
    container: String,
    log: PathBuf,
}

type Step = fn(&mut Suite, &mut Pod) -> Check;

/// The calls the kubelet makes, in its order; each step needs the ones before it.
const STEPS: &[(&str, Step)] = &[
    ("run_pod_sandbox_create_start_container", Suite::start),
    ("container_status_and_list_show_it_running", Suite::status),
    ("the_log_reads_back_exactly_by_kubelet_rules", Suite::log),
    ("exec_sync_gives_output_and_exit_code", Suite::exec_sync),
    ("exec_sync_timeout_is_honoured", Suite::exec_sync_timeout),
    ("exec_streams_stdin_stdout_stderr_and_exit", Suite::exec),
    ("attach_feeds_stdin_and_follows_stdout", Suite::attach),
    (
        "reopen_container_log_after_the_log_moved",
        Suite::reopen_log,
    ),
    ("update_container_resources_reach_the_cgroup", Suite::update),
    ("container_stats_come_from_the_cgroup", Suite::stats),
    ("stop_container_kills_after_the_grace_period", Suite::stop),
    ("remove_container", Suite::remove),
    (
        "stop_and_remove_pod_sandbox_leave_nothing",
        Suite::remove_pod,
    ),
];

impl Suite {
    fn step(&mut self, shim: &str, name: &str, check: impl FnOnce(&mut Suite) -> Check) -> bool {
        let started = Instant::now();
        let result = crate::bench::check_interrupt().and_then(|()| check(self));
        let engine = self.engine.clone();
        match result {
            Ok(()) => {
                self.passed += 1;
                println!(
                    "e2e cri {engine} [{shim}] {name} ... ok ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
                true
            }
            Err(message) => {
                println!("e2e cri {engine} [{shim}] {name} ... FAILED: {message}");
                self.failures
                    .push(format!("{engine} [{shim}] {name}: {message}"));
                false
            }
        }
    }

    fn version(&mut self) -> Check {
        let version = self
            .cri
            .runtime(|mut c| async move {
                c.version(cri::VersionRequest {
                    version: "v1".into(),
                })
                .await
            })
            .map_err(|e| describe(&e))?;
        expect(
            version.runtime_name == "containerd" && version.runtime_api_version.starts_with("v1"),
            || format!("Version: {version:?}"),
        )
    }

    /// RunPodSandbox with the broken handler fails with tether's one-line error naming the file
    /// (or, where containerd sends the file's text, ConfigBody) and the line, and no pod, shim
    /// or container is left.
    fn broken_config(&mut self) -> Check {
        let uid = format!("broken-{}", std::process::id());
        let log_dir = self.dir.join("pods").join(&uid);
        std::fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let config = pod_config("cri-broken", &uid, &log_dir);
        // tether processes already running (this machine may run others) are not the pod's.
        let before = processes_of_exe("tether");
        let message = match self.run_pod(&config, BROKEN_HANDLER) {
            Ok(id) => {
                self.force_remove(&id);
                return Err("RunPodSandbox succeeded with a broken tether config".into());
            }
            Err(message) => message,
        };
        let path = self.dir.join(BROKEN_CONFIG);
        let names_it = message.contains(&format!(
            "tether config {}: line 2, SystemdCgroup:",
            path.display()
        )) || message.contains("tether config (ConfigBody): line 2, SystemdCgroup:");
        expect(names_it, || {
            format!("RunPodSandbox's error does not name the file, the line and the key: {message}")
        })?;
        let listed = self
            .cri
            .runtime(|mut c| async move {
                c.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                    .await
            })
            .map_err(|e| format!("ListPodSandbox: {}", describe(&e)))?;
        let ready: Vec<_> = listed
            .items
            .iter()
            .filter(|p| p.state == cri::PodSandboxState::SandboxReady as i32)
            .map(|p| p.id.clone())
            .collect();
        expect(ready.is_empty(), || format!("pods left ready: {ready:?}"))?;
        // No tether process the failed pod started may be left.
        let mut left = Vec::new();
        wait_until(Duration::from_secs(10), || {
            left = processes_of_exe("tether");
            left.retain(|pid| !before.contains(pid));
            Ok(left.is_empty())
        })
        .map_err(|e| format!("tether processes left after the failed pod: {left:?}: {e}"))
    }

    /// Every step of [`STEPS`] for `shim`; after a failure the rest are not run (each needs the
    /// ones before it) and the pod is removed.
    fn walk(&mut self, shim: Shim) {
        let uid = format!("{}-{}", shim.name, std::process::id());
        let log_dir = self.dir.join("pods").join(&uid);
        let mut pod = Pod {
            shim,
            config: pod_config(&format!("cri-{}", shim.name), &uid, &log_dir),
            sandbox: String::new(),
            container: String::new(),
            log: log_dir.join("main/0.log"),
        };
        for (index, (name, step)) in STEPS.iter().enumerate() {
            if !self.step(shim.name, name, |suite| step(suite, &mut pod)) {
                let skipped = STEPS.len() - index - 1;
                if skipped > 0 {
                    println!(
                        "e2e cri {} [{}] {skipped} later steps not run",
                        self.engine, shim.name
                    );
                    self.failures.push(format!(
                        "{} [{}]: {skipped} steps not run",
                        self.engine, shim.name
                    ));
                }
                self.force_remove(&pod.sandbox);
                return;
            }
        }
    }

    fn force_remove(&self, sandbox: &str) {
        if sandbox.is_empty() {
            return;
        }
        let id = sandbox.to_owned();
        let _ = self.cri.runtime(|mut c| async move {
            c.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await?;
            c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                .await
        });
    }

    fn run_pod(&self, config: &cri::PodSandboxConfig, handler: &str) -> Result<String, String> {
        let request = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_owned(),
        };
        self.cri
            .runtime(|mut c| async move { c.run_pod_sandbox(request).await })
            .map(|r| r.pod_sandbox_id)
            .map_err(|e| format!("RunPodSandbox: {}", describe(&e)))
    }

    fn create_and_start(
        &self,
        sandbox: &str,
        config: &cri::PodSandboxConfig,
        container: cri::ContainerConfig,
    ) -> Result<String, String> {
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.to_owned(),
            config: Some(container),
            sandbox_config: Some(config.clone()),
        };
        let id = self
            .cri
            .runtime(|mut c| async move { c.create_container(request).await })
            .map_err(|e| format!("CreateContainer: {}", describe(&e)))?
            .container_id;
        let container_id = id.clone();
        self.cri
            .runtime(|mut c| async move {
                c.start_container(cri::StartContainerRequest { container_id })
                    .await
            })
            .map_err(|e| format!("StartContainer: {}", describe(&e)))?;
        Ok(id)
    }

    fn start(&mut self, pod: &mut Pod) -> Check {
        std::fs::create_dir_all(pod.log.parent().expect("has a parent"))
            .map_err(|e| e.to_string())?;
        pod.sandbox = self.run_pod(&pod.config, pod.shim.handler)?;
        let mut main = container_config("main", &["sh", "-c", MAIN_SCRIPT]);
        main.log_path = "main/0.log".into();
        main.stdin = true;
        pod.container = self.create_and_start(&pod.sandbox, &pod.config, main)?;
        Ok(())
    }

    fn container_status(&self, id: &str) -> Result<cri::ContainerStatusResponse, String> {
        let container_id = id.to_owned();
        self.cri
            .runtime(|mut c| async move {
                c.container_status(cri::ContainerStatusRequest {
                    container_id,
                    verbose: true,
                })
                .await
            })
            .map_err(|e| format!("ContainerStatus: {}", describe(&e)))
    }

    /// The host pid of the container's PID 1, from the verbose status.
    fn pid(&self, id: &str) -> Result<i32, String> {
        let status = self.container_status(id)?;
        let info = status.info.get("info").ok_or("no verbose info")?;
        let info: serde_json::Value =
            serde_json::from_str(info).map_err(|e| format!("verbose info: {e}"))?;
        info["pid"]
            .as_i64()
            .map(|pid| pid as i32)
            .ok_or_else(|| "verbose info has no pid".to_owned())
    }

    fn status(&mut self, pod: &mut Pod) -> Check {
        let status = self
            .container_status(&pod.container)?
            .status
            .ok_or("ContainerStatus: no status")?;
        expect(
            status.state == cri::ContainerState::ContainerRunning as i32
                && status.log_path == pod.log.to_string_lossy()
                && status.metadata.as_ref().is_some_and(|m| m.name == "main"),
            || format!("ContainerStatus: {status:?}"),
        )?;
        let sandbox = pod.sandbox.clone();
        let listed = self
            .cri
            .runtime(|mut c| async move {
                c.list_containers(cri::ListContainersRequest {
                    filter: Some(cri::ContainerFilter {
                        pod_sandbox_id: sandbox,
                        ..Default::default()
                    }),
                })
                .await
            })
            .map_err(|e| format!("ListContainers: {}", describe(&e)))?;
        expect(
            listed.containers.len() == 1 && listed.containers[0].id == pod.container,
            || format!("ListContainers of the pod: {:?}", listed.containers),
        )?;
        // The container runs under the shim the handler names...
        let pid = self.pid(&pod.container)?;
        let parent = parent_exe(pid)?;
        expect(parent == pod.shim.parent_exe, || {
            format!(
                "the container's parent is {parent:?}, not {:?}",
                pod.shim.parent_exe
            )
        })?;
        // ...and, for tether, with the runc root its config file (ConfigPath) names.
        if pod.shim.name == "tether" {
            let list = std::process::Command::new("runc")
                .arg("--root")
                .arg(&self.runc_root)
                .arg("list")
                .output()
                .map_err(|e| format!("runc list: {e}"))?;
            let list = String::from_utf8_lossy(&list.stdout);
            expect(list.contains(&pod.container), || {
                format!(
                    "runc --root {} list does not show the container: {list}",
                    self.runc_root.display()
                )
            })?;
        }
        Ok(())
    }

    fn log(&mut self, pod: &mut Pod) -> Check {
        let stdout = format!("out-1\n{}\nno-newline-end\n", "x".repeat(LONG_LINE));
        let mut last = Err(String::new());
        wait_until(Duration::from_secs(15), || {
            last = read_log(&pod.log);
            Ok(last
                .as_ref()
                .is_ok_and(|s| s.stdout_text() == stdout && s.stderr_text() == "err-1\n"))
        })
        .map_err(|e| match &last {
            Ok(streams) => format!(
                "{e}: log has stdout {:?}… ({} bytes), stderr {:?}",
                streams.stdout_text().chars().take(40).collect::<String>(),
                streams.stdout.len(),
                streams.stderr_text()
            ),
            Err(message) => format!("{e}: {message}"),
        })?;
        // The long line came in parts: CRI's 16 KiB limit split it.
        let raw = std::fs::read_to_string(&pod.log).map_err(|e| e.to_string())?;
        expect(raw.lines().any(|l| l.contains(" stdout P ")), || {
            "the 20000-byte line was not split into partial lines".into()
        })
    }

    fn exec_sync_call(
        &self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse, CallError> {
        let request = cri::ExecSyncRequest {
            container_id: id.to_owned(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        };
        self.cri
            .runtime(|mut c| async move { c.exec_sync(request).await })
    }

    fn exec_sync(&mut self, pod: &mut Pod) -> Check {
        let answer = self
            .exec_sync_call(
                &pod.container,
                &["sh", "-c", "echo hi; echo oops >&2; exit 3"],
                10,
            )
            .map_err(|e| format!("ExecSync: {}", describe(&e)))?;
        expect(
            answer.stdout == b"hi\n" && answer.stderr == b"oops\n" && answer.exit_code == 3,
            || format!("ExecSync: {answer:?}"),
        )
    }

    fn exec_sync_timeout(&mut self, pod: &mut Pod) -> Check {
        let started = Instant::now();
        let answer = self.exec_sync_call(&pod.container, &["sleep", "30"], 2);
        let took = started.elapsed();
        match answer {
            Err(status) => expect(
                took >= Duration::from_secs(2)
                    && took < Duration::from_secs(20)
                    && (status.code == tonic::Code::DeadlineExceeded
                        || status.message.contains("timeout")),
                || format!("ExecSync timeout 2 s: {} after {took:?}", describe(&status)),
            )?,
            Ok(answer) => {
                return Err(format!(
                    "ExecSync timeout 2 s answered {answer:?} after {took:?}"
                ))
            }
        }
        // The timed-out process was killed, not left behind in the container.
        let mut last = String::new();
        wait_until(Duration::from_secs(10), || {
            let ps = self
                .exec_sync_call(&pod.container, &["ps", "-o", "args"], 10)
                .map_err(|e| format!("ExecSync ps: {}", describe(&e)))?;
            last = String::from_utf8_lossy(&ps.stdout).into_owned();
            Ok(!last.lines().any(|l| l.trim() == "sleep 30"))
        })
        .map_err(|e| format!("sleep 30 is still running after the timeout: {e}: {last}"))
    }

    fn exec(&mut self, pod: &mut Pod) -> Check {
        let request = cri::ExecRequest {
            container_id: pod.container.clone(),
            cmd: ["sh", "-c", "read l; echo got:$l; echo e >&2; exit 2"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            tty: false,
            stdin: true,
            stdout: true,
            stderr: true,
        };
        let url = self
            .cri
            .runtime(|mut c| async move { c.exec(request).await })
            .map_err(|e| format!("Exec: {}", describe(&e)))?
            .url;
        let mut session = Session::open(&url)?;
        session.send_stdin(b"hello\n")?;
        let code = session.wait_exit(Duration::from_secs(20))?;
        let output = session.read_until(Duration::ZERO, |_| true)?;
        let (stdout, stderr) = (output.stdout_text(), output.stderr_text());
        session.close();
        expect(
            stdout == "got:hello\n" && stderr == "e\n" && code == 2,
            || format!("Exec: stdout {stdout:?}, stderr {stderr:?}, exit {code}"),
        )
    }

    fn attach_and_send(&self, pod: &Pod, line: &str) -> Check {
        let request = cri::AttachRequest {
            container_id: pod.container.clone(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: true,
        };
        let url = self
            .cri
            .runtime(|mut c| async move { c.attach(request).await })
            .map_err(|e| format!("Attach: {}", describe(&e)))?
            .url;
        let mut session = Session::open(&url)?;
        // containerd starts copying stdin before it subscribes the stream to the output, so a
        // first line's echo may come before there is anyone to see it: probe until one is
        // seen, then send the line.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            session.send_stdin(format!("{PROBE}\n").as_bytes())?;
            let seen = session.read_until(Duration::from_millis(500), |o| {
                o.stdout_text().contains(&format!("stdin:{PROBE}\n"))
            });
            match seen {
                Ok(_) => break,
                Err(message) if Instant::now() >= deadline => return Err(message),
                Err(_) => {}
            }
        }
        session.send_stdin(format!("{line}\n").as_bytes())?;
        let want = format!("stdin:{line}\n");
        session.read_until(Duration::from_secs(20), |o| o.stdout_text().contains(&want))?;
        session.close();
        Ok(())
    }

    fn attach(&mut self, pod: &mut Pod) -> Check {
        self.attach_and_send(pod, "ping")?;
        // What came through attach is in the log too, after what the container wrote itself.
        wait_for_log(&pod.log, |s| {
            s.stdout_text()
                .split_once("no-newline-end\n")
                .is_some_and(|(_, rest)| only_probes_then(rest, "ping"))
        })
    }

    fn reopen_log(&mut self, pod: &mut Pod) -> Check {
        // The kubelet's rotation: rename, then ask for the log to be reopened.
        let rotated = pod.log.with_extension("log.1");
        std::fs::rename(&pod.log, &rotated).map_err(|e| format!("rename the log: {e}"))?;
        let container_id = pod.container.clone();
        self.cri
            .runtime(|mut c| async move {
                c.reopen_container_log(cri::ReopenContainerLogRequest { container_id })
                    .await
            })
            .map_err(|e| format!("ReopenContainerLog: {}", describe(&e)))?;
        self.attach_and_send(pod, "after")?;
        wait_for_log(&pod.log, |s| {
            only_probes_then(&s.stdout_text(), "after") && s.stderr.is_empty()
        })?;
        let old = read_log(&rotated)?;
        expect(old.stdout_text().ends_with("stdin:ping\n"), || {
            format!(
                "the moved log changed: it ends {:?}",
                old.stdout_text().chars().rev().take(30).collect::<String>()
            )
        })
    }

    fn update(&mut self, pod: &mut Pod) -> Check {
        let memory: i64 = 96 << 20;
        let request = cri::UpdateContainerResourcesRequest {
            container_id: pod.container.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: memory,
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 512,
                ..Default::default()
            }),
            ..Default::default()
        };
        self.cri
            .runtime(|mut c| async move { c.update_container_resources(request).await })
            .map_err(|e| format!("UpdateContainerResources: {}", describe(&e)))?;
        let pid = self.pid(&pod.container)?;
        let limit = cgroup_value(pid, "memory", "memory.limit_in_bytes")?;
        let quota = cgroup_value(pid, "cpu", "cpu.cfs_quota_us")?;
        let shares = cgroup_value(pid, "cpu", "cpu.shares")?;
        expect(
            limit == memory.to_string() && quota == "50000" && shares == "512",
            || {
                format!(
                    "cgroup after the update: memory {limit}, cfs quota {quota}, shares {shares}"
                )
            },
        )
    }

    fn stats(&mut self, pod: &mut Pod) -> Check {
        let container_id = pod.container.clone();
        let stats = self
            .cri
            .runtime(|mut c| async move {
                c.container_stats(cri::ContainerStatsRequest { container_id })
                    .await
            })
            .map_err(|e| format!("ContainerStats: {}", describe(&e)))?
            .stats
            .ok_or("ContainerStats: no stats")?;
        let cpu = stats
            .cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds.as_ref())
            .map_or(0, |v| v.value);
        let memory = stats
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes.as_ref())
            .map_or(0, |v| v.value);
        expect(
            cpu > 0
                && memory > 0
                && stats
                    .attributes
                    .as_ref()
                    .is_some_and(|a| a.id == pod.container),
            || format!("ContainerStats: cpu {cpu} ns, working set {memory} bytes: {stats:?}"),
        )
    }

    fn stop(&mut self, pod: &mut Pod) -> Check {
        let container_id = pod.container.clone();
        let started = Instant::now();
        self.cri
            .runtime(|mut c| async move {
                c.stop_container(cri::StopContainerRequest {
                    container_id,
                    timeout: 2,
                })
                .await
            })
            .map_err(|e| format!("StopContainer: {}", describe(&e)))?;
        let took = started.elapsed();
        let status = self
            .container_status(&pod.container)?
            .status
            .ok_or("ContainerStatus: no status")?;
        expect(
            took >= Duration::from_secs(2)
                && took < Duration::from_secs(30)
                && status.state == cri::ContainerState::ContainerExited as i32
                && status.exit_code == 137,
            || {
                format!(
                    "StopContainer timeout 2 on a TERM-ignoring PID 1 took {took:?}; state {}, exit code {}",
                    status.state, status.exit_code
                )
            },
        )
    }

    fn remove(&mut self, pod: &mut Pod) -> Check {
        let container_id = pod.container.clone();
        self.cri
            .runtime(|mut c| async move {
                c.remove_container(cri::RemoveContainerRequest { container_id })
                    .await
            })
            .map_err(|e| format!("RemoveContainer: {}", describe(&e)))?;
        match self.container_status(&pod.container) {
            Err(message) if message.contains("NotFound") => Ok(()),
            other => Err(format!("ContainerStatus after RemoveContainer: {other:?}")),
        }
    }

    fn remove_pod(&mut self, pod: &mut Pod) -> Check {
        let sandbox = pod.sandbox.clone();
        self.cri
            .runtime(|mut c| async move {
                c.stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: sandbox,
                })
                .await
            })
            .map_err(|e| format!("StopPodSandbox: {}", describe(&e)))?;
        let sandbox = pod.sandbox.clone();
        let status = self
            .cri
            .runtime(|mut c| async move {
                c.pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: sandbox,
                    verbose: false,
                })
                .await
            })
            .map_err(|e| format!("PodSandboxStatus: {}", describe(&e)))?;
        expect(
            status
                .status
                .as_ref()
                .is_some_and(|s| s.state == cri::PodSandboxState::SandboxNotready as i32),
            || format!("PodSandboxStatus after StopPodSandbox: {:?}", status.status),
        )?;
        let sandbox = pod.sandbox.clone();
        self.cri
            .runtime(|mut c| async move {
                c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: sandbox,
                })
                .await
            })
            .map_err(|e| format!("RemovePodSandbox: {}", describe(&e)))?;
        let listed = self
            .cri
            .runtime(|mut c| async move {
                c.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                    .await
            })
            .map_err(|e| format!("ListPodSandbox: {}", describe(&e)))?;
        expect(!listed.items.iter().any(|p| p.id == pod.sandbox), || {
            "ListPodSandbox still lists the removed pod".into()
        })?;
        // No shim is left for the pod or its container.
        let ids = [pod.sandbox.clone(), pod.container.clone()];
        let mut left = Vec::new();
        wait_until(Duration::from_secs(10), || {
            left = processes_naming(&ids);
            Ok(left.is_empty())
        })
        .map_err(|e| format!("processes left for the pod: {left:?}: {e}"))
    }

    /// `flood.runs` containers in one pod, one after the other, each writing its flood and exiting;
    /// once CRI says it exited, its log must hold every line (a little wait is allowed for the
    /// plugin's writer). Says the lines lost per run.
    fn flood(&mut self, shim: Shim, flood: &Flood) -> Check {
        let uid = format!("flood-{}-{}-{}", flood.name, shim.name, std::process::id());
        let log_dir = self.dir.join("pods").join(&uid);
        std::fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let config = pod_config(&uid, &uid, &log_dir);
        let sandbox = self.run_pod(&config, shim.handler)?;
        let script = flood.script();
        let result = (|| {
            let mut lost = Vec::new();
            for run in 0..flood.runs {
                let mut container = container_config("flood", &["sh", "-c", &script]);
                container.metadata.as_mut().expect("set").attempt = run as u32;
                container.log_path = format!("flood-{run}.log");
                let id = self.create_and_start(&sandbox, &config, container)?;
                let mut exited = false;
                wait_until(Duration::from_secs(120), || {
                    let status = self.container_status(&id)?.status.ok_or("no status")?;
                    exited = status.state == cri::ContainerState::ContainerExited as i32;
                    Ok(exited)
                })
                .map_err(|e| format!("run {run}: the flood did not end: {e}"))?;
                let path = log_dir.join(format!("flood-{run}.log"));
                let complete = wait_until(Duration::from_secs(5), || {
                    Ok(read_log(&path).is_ok_and(|log| flood.lost(&log.stdout) == Ok(0)))
                });
                let log = read_log(&path)?;
                lost.push(
                    flood
                        .lost(&log.stdout)
                        .map_err(|e| format!("run {run}: {e}"))?,
                );
                if complete.is_ok() {
                    let container_id = id.clone();
                    self.cri
                        .runtime(|mut c| async move {
                            c.remove_container(cri::RemoveContainerRequest { container_id })
                                .await
                        })
                        .map_err(|e| format!("RemoveContainer: {}", describe(&e)))?;
                }
            }
            let failed = lost.iter().filter(|&&n| n > 0).count();
            println!(
                "    {} runs of {} lines: {failed} lost lines; lost per run {lost:?}",
                flood.runs, flood.lines
            );
            expect(failed == 0, || {
                format!("{failed} of {} runs lost lines: {lost:?}", flood.runs)
            })
        })();
        self.force_remove(&sandbox);
        result
    }

    /// The medians of RunPodSandbox + CreateContainer + StartContainer and of ExecSync (`true`),
    /// each shim's pods started in alternation so that both see the same machine.
    fn timings(&mut self, shims: &[Shim]) -> Vec<(&'static str, Duration, Duration)> {
        let mut starts: HashMap<&str, Vec<Duration>> = HashMap::new();
        let mut execs: HashMap<&str, Vec<Duration>> = HashMap::new();
        for round in 0..TIMING_PODS {
            for shim in shims {
                match self.time_one(*shim, round) {
                    Ok((start, exec)) => {
                        starts.entry(shim.name).or_default().push(start);
                        execs.entry(shim.name).or_default().extend(exec);
                    }
                    Err(message) => {
                        println!(
                            "e2e cri {} [{}] timing pod {round} ... FAILED: {message}",
                            self.engine, shim.name
                        );
                        self.failures
                            .push(format!("{} [{}] timing: {message}", self.engine, shim.name));
                        return Vec::new();
                    }
                }
            }
        }
        shims
            .iter()
            .map(|shim| {
                (
                    shim.name,
                    median(starts.remove(shim.name).unwrap_or_default()),
                    median(execs.remove(shim.name).unwrap_or_default()),
                )
            })
            .collect()
    }

    fn time_one(&self, shim: Shim, round: usize) -> Result<(Duration, Vec<Duration>), String> {
        let uid = format!("time-{}-{round}-{}", shim.name, std::process::id());
        let log_dir = self.dir.join("pods").join(&uid);
        std::fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let config = pod_config(&uid, &uid, &log_dir);
        let started = Instant::now();
        let sandbox = self.run_pod(&config, shim.handler)?;
        let result = (|| {
            let mut container = container_config(
                "timed",
                &["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
            );
            container.log_path = "timed.log".into();
            let id = self.create_and_start(&sandbox, &config, container)?;
            let start = started.elapsed();
            let mut execs = Vec::new();
            for _ in 0..TIMING_EXECS {
                let began = Instant::now();
                let answer = self
                    .exec_sync_call(&id, &["true"], 10)
                    .map_err(|e| format!("ExecSync: {}", describe(&e)))?;
                execs.push(began.elapsed());
                if answer.exit_code != 0 {
                    return Err(format!("ExecSync true: {answer:?}"));
                }
            }
            Ok((start, execs))
        })();
        self.force_remove(&sandbox);
        result
    }
}

fn pod_config(name: &str, uid: &str, log_dir: &Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.to_owned(),
            uid: uid.to_owned(),
            namespace: "default".into(),
            attempt: 0,
        }),
        // A hostNetwork pod has the node's hostname: the kubelet sends none.
        log_directory: log_dir.to_string_lossy().into_owned(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A hostNetwork pod's namespaces as the kubelet asks for them: the node's network, a PID
/// namespace per container, IPC shared in the pod.
fn namespaces() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Node as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn container_config(name: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        }),
        image: Some(image_spec(IMAGE)),
        command: command.iter().map(|s| s.to_string()).collect(),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The line attach sends until its echo shows the stream sees the output.
const PROBE: &str = "probe";

/// `text` is the echoes of probes, then of `line`, and nothing else.
fn only_probes_then(text: &str, line: &str) -> bool {
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    lines.pop() == Some(&format!("stdin:{line}\n"))
        && lines.iter().all(|l| *l == format!("stdin:{PROBE}\n"))
}

fn read_log(path: &Path) -> Result<kubelet_log::Streams, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    kubelet_log::read(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn wait_for_log(path: &Path, done: impl Fn(&kubelet_log::Streams) -> bool) -> Check {
    let mut last = Err(String::new());
    wait_until(Duration::from_secs(15), || {
        last = read_log(path);
        Ok(last.as_ref().is_ok_and(&done))
    })
    .map_err(|e| match &last {
        Ok(streams) => {
            let stdout = streams.stdout_text();
            let tail: String = stdout
                .chars()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!(
                "{e}: the log's stdout ends {tail:?}, stderr {:?}",
                streams.stderr_text()
            )
        }
        Err(message) => format!("{e}: {message}"),
    })
}

/// The file name of the executable of `pid`'s parent.
fn parent_exe(pid: i32) -> Result<String, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let ppid = after
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| format!("/proc/{pid}/stat: no parent"))?;
    let exe = std::fs::read_link(format!("/proc/{ppid}/exe"))
        .map_err(|e| format!("/proc/{ppid}/exe: {e}"))?;
    Ok(exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default())
}

/// A cgroup v1 file of `pid`'s cgroup in `controller`'s hierarchy, read on the host.
fn cgroup_value(pid: i32, controller: &str, file: &str) -> Result<String, String> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| format!("/proc/{pid}/cgroup: {e}"))?;
    let (mount, path) = cgroups
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _ = parts.next();
            Some((parts.next()?, parts.next()?))
        })
        .find(|(controllers, _)| controllers.split(',').any(|c| c == controller))
        .ok_or_else(|| format!("{pid} has no {controller} cgroup (cgroup v1 expected)"))?;
    let full = Path::new("/sys/fs/cgroup")
        .join(mount)
        .join(path.trim_start_matches('/'))
        .join(file);
    std::fs::read_to_string(&full)
        .map(|v| v.trim().to_owned())
        .map_err(|e| format!("{}: {e}", full.display()))
}

/// The pids of processes whose executable's file name is `name`.
fn processes_of_exe(name: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.file_name().is_some_and(|n| n == name))
        })
        .collect()
}

/// Processes whose command line names any of `ids`.
fn processes_naming(ids: &[String]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| ids.iter().any(|id| cmdline.contains(id.as_str())))
        .collect()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::doc_block;

    #[test]
    fn echoes_are_probes_then_the_line() {
        use super::only_probes_then;
        assert!(only_probes_then("stdin:ping\n", "ping"));
        assert!(only_probes_then(
            "stdin:probe\nstdin:probe\nstdin:ping\n",
            "ping"
        ));
        assert!(!only_probes_then("stdin:ping\nstdin:probe\n", "ping"));
        assert!(!only_probes_then("stdin:after\nstdin:ping\n", "ping"));
        assert!(!only_probes_then("", "ping"));
        assert!(!only_probes_then("stdin:ping", "ping"));
    }

    #[test]
    fn doc_blocks_are_found_by_their_info_string() {
        let doc = "text\n```toml cri-1.x\na = 1\nb = 2\n```\n```toml other\nc = 3\n```\n";
        assert_eq!(doc_block(doc, "cri-1.x").unwrap(), "a = 1\nb = 2\n");
        assert!(doc_block(doc, "cri-2.x").unwrap_err().contains("cri-2.x"));
    }

    #[test]
    fn the_kubernetes_page_has_every_block_the_suite_runs() {
        let doc = std::fs::read_to_string(crate::util::workspace_root().join("docs/kubernetes.md"))
            .unwrap();
        for name in ["cri-1.x", "cri-2.x", "cri-tether-config"] {
            let block = doc_block(&doc, name).unwrap();
            assert!(!block.trim().is_empty(), "{name}");
        }
    }
}
