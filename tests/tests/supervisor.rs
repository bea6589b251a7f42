//! The supervisor's rules, driven through the real `tether` daemon with a fake runtime standing in
//! for runc (`fake-runtime`, this crate's binary): no root, no namespaces, no cgroups, so these run
//! for every user in `cargo test`. A fake container is a process group on the host, which lets a
//! test make what a real one makes only by chance: an init reaped while an exec still runs, a
//! process that outlives the init, a command that cannot be started.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tether_tests::fixture::BundleSpec;
use tether_tests::harness::{process_state, root_or_skip, wait_until, Sandbox};

const BOUND: Duration = Duration::from_secs(30);

fn fake_runtime() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fake-runtime"))
}

fn sandbox(name: &str) -> Sandbox {
    Sandbox::with_runtime(name, &fake_runtime().to_string_lossy())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `tether ARGS`, asserting success; its stdout.
fn tether_ok(sandbox: &Sandbox, args: &[&str]) -> String {
    let out = sandbox.tether_output(args);
    assert!(
        out.status.success(),
        "tether {}: {} ({})",
        args.join(" "),
        text(&out.stderr),
        out.status
    );
    text(&out.stdout)
}

/// `tether wait ID`: the recorded exit code.
fn wait_code(sandbox: &Sandbox, id: &str) -> i32 {
    let out = sandbox.tether_output(&["wait", id]);
    text(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("tether wait {id}: {}", text(&out.stderr)))
}

fn state(sandbox: &Sandbox, id: &str) -> serde_json::Value {
    serde_json::from_str(&tether_ok(sandbox, &["state", id])).expect("state is JSON")
}

/// A pid a container's script wrote to `file` (awaited: the script runs on its own).
fn pid_in(file: &Path) -> i32 {
    let mut pid = None;
    assert!(
        wait_until(BOUND, || {
            pid = std::fs::read_to_string(file)
                .ok()
                .and_then(|t| t.trim().parse().ok());
            pid.is_some()
        }),
        "{} was never written",
        file.display()
    );
    pid.expect("awaited")
}

/// Gone: reaped, or never there.
fn gone(pid: i32) -> bool {
    process_state(pid).is_none()
}

#[test]
fn the_exit_is_recorded_after_the_output_is_drained() {
    let sandbox = sandbox("drain");
    let id = sandbox.id();
    let bytes = 4 << 20;
    let bundle = sandbox.bundle(&BundleSpec::shell(&format!(
        "head -c {bytes} /dev/zero | tr '\\0' x; exit 5"
    )));
    sandbox.start(id, &bundle, &["--log-format", "raw"]);
    assert_eq!(wait_code(&sandbox, id), 5);
    // Read at once: an exit recorded before its output would leave the log short here.
    let log = std::fs::read(sandbox.state_dir().join(id).join("container.log")).expect("the log");
    assert_eq!(log.iter().filter(|&&b| b == b'x').count(), bytes);
    tether_ok(&sandbox, &["rm", id]);
}

#[test]
fn a_command_that_cannot_start_exits_127_or_126_in_run_and_in_exec() {
    let sandbox = sandbox("start-failure");
    for (id, args, code) in [
        ("missing", vec!["no-such-command"], 127),
        ("directory", vec!["/etc"], 126),
    ] {
        let bundle = sandbox.bundle(&BundleSpec::new(args));
        let out = sandbox
            .tether()
            .args(["run", "--rm", "--bundle"])
            .arg(bundle.path())
            .arg("--runtime")
            .arg(fake_runtime())
            .arg("--runtime-root")
            .arg(sandbox.runtime_root())
            .arg(id)
            .output()
            .expect("tether run");
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
        assert!(
            !sandbox.state_dir().join(id).exists(),
            "run --rm left {id} behind"
        );
    }
    let id = sandbox.id();
    let bundle = sandbox.bundle(&BundleSpec::new(["sleep", "1000"]));
    sandbox.start(id, &bundle, &[]);
    for (args, code) in [(["no-such-command"], 127), (["/etc/hostname"], 126)] {
        let out = sandbox
            .tether()
            .args(["exec", id, "--"])
            .args(args)
            .output()
            .expect("tether exec");
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
    }
    tether_ok(&sandbox, &["rm", "-f", id]);
}

#[test]
fn the_inits_exit_waits_for_every_execs() {
    let sandbox = sandbox("execs-first");
    let id = sandbox.id();
    let bundle = sandbox.bundle(&BundleSpec::new(["sleep", "1000"]));
    let init = sandbox.start(id, &bundle, &[]);
    let exec_pid_file = sandbox.path().join("exec.pid");
    let script = format!("echo $$ > {}; exec sleep 1000", exec_pid_file.display());
    tether_ok(&sandbox, &["exec", "-d", id, "--", "sh", "-c", &script]);
    let exec = pid_in(&exec_pid_file);
    tether_ok(&sandbox, &["kill", "-s", "KILL", id]);
    assert!(wait_until(BOUND, || gone(init)), "the init was not reaped");
    // Reaped, but not recorded while an exec of the container runs.
    let now = state(&sandbox, id);
    assert!(
        now["exit"].is_null(),
        "recorded with an exec running: {now}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(exec),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the exec");
    assert_eq!(wait_code(&sandbox, id), 137);
    tether_ok(&sandbox, &["rm", id]);
}

#[test]
fn the_rest_of_a_container_without_its_own_pid_namespace_is_killed_at_the_inits_exit() {
    let sandbox = sandbox("shared-pid");
    let id = sandbox.id();
    let child_file = sandbox.path().join("child.pid");
    // The child holds the output pipe open: the exit is recorded only once it is gone.
    let bundle = sandbox.bundle(
        &BundleSpec::shell(&format!(
            "sleep 1000 & echo $! > {}; exit 3",
            child_file.display()
        ))
        .pid_namespace(false),
    );
    sandbox.start(id, &bundle, &[]);
    let child = pid_in(&child_file);
    assert_eq!(wait_code(&sandbox, id), 3);
    assert!(
        wait_until(BOUND, || gone(child)),
        "the init's child {child} outlived it"
    );
    tether_ok(&sandbox, &["rm", id]);
}

#[test]
fn a_forced_rm_records_each_exit_once() {
    use std::io::BufRead;
    let sandbox = sandbox("forced-rm");
    let id = sandbox.id();
    std::fs::create_dir_all(sandbox.state_dir()).expect("state dir");
    let mut events = KillOnDrop(
        sandbox
            .tether()
            .arg("events")
            .stdout(Stdio::piped())
            .spawn()
            .expect("tether events"),
    );
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let reader = {
        let lines = lines.clone();
        let stdout = events.0.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(event) = serde_json::from_str(&line) {
                    lines.lock().expect("lines").push(event);
                }
            }
        })
    };
    assert!(
        wait_until(BOUND, || tether_tests::harness::inotify_watches(
            events.0.id()
        ) > 0),
        "tether events set no watch"
    );
    let bundle = sandbox.bundle(&BundleSpec::new(["sleep", "1000"]));
    let init = sandbox.start(id, &bundle, &[]);
    let exec_pid_file = sandbox.path().join("exec.pid");
    let script = format!("echo $$ > {}; exec sleep 1000", exec_pid_file.display());
    let exec = sandbox
        .tether()
        .args(["exec", id, "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .spawn()
        .expect("tether exec");
    pid_in(&exec_pid_file);
    tether_ok(&sandbox, &["rm", "-f", id]);
    // The exec's exit reached its client.
    let exec = exec.wait_with_output().expect("tether exec");
    assert_eq!(exec.status.code(), Some(137));
    let kinds = || -> Vec<String> {
        lines
            .lock()
            .expect("lines")
            .iter()
            .filter(|e| e["id"] == id)
            .filter_map(|e| e["type"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(
        wait_until(BOUND, || kinds().iter().any(|k| k == "delete")),
        "no delete event: {:?}",
        kinds()
    );
    drop(events);
    let _ = reader.join();
    // `tether events` reads the state as it finds it: a state removed at once may be read only
    // as gone, so an exit is told at most once.
    let kinds = kinds();
    let count = |kind: &str| kinds.iter().filter(|k| *k == kind).count();
    assert!(
        count("exit") <= 1 && count("delete") == 1,
        "events {kinds:?}"
    );
    // Dead: reaped, or a zombie left to whoever inherits it once the daemon ended.
    assert!(
        wait_until(BOUND, || process_state(init).is_none_or(|s| s == 'Z')),
        "the init outlived rm -f"
    );
    assert!(!sandbox.state_dir().join(id).exists());
}

#[test]
fn an_exec_past_its_timeout_is_killed_and_exits_124() {
    let sandbox = sandbox("exec-timeout");
    let id = sandbox.id();
    let bundle = sandbox.bundle(&BundleSpec::new(["sleep", "1000"]));
    sandbox.start(id, &bundle, &[]);
    let pid_file = sandbox.path().join("exec.pid");
    let script = format!("echo $$ > {}; exec sleep 1000", pid_file.display());
    let out = sandbox
        .tether()
        .args(["exec", "--timeout", "1s", id, "--", "sh", "-c", &script])
        .output()
        .expect("tether exec");
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    let exec = pid_in(&pid_file);
    assert!(
        wait_until(BOUND, || gone(exec)),
        "the exec outlived its timeout"
    );
    assert_eq!(state(&sandbox, id)["status"], "running");
    tether_ok(&sandbox, &["rm", "-f", id]);
}

#[test]
fn run_rm_removes_the_container_at_its_exit() {
    let sandbox = sandbox("run-rm");
    let id = sandbox.id();
    let bundle = sandbox.bundle(&BundleSpec::new(["sleep", "1000"]));
    sandbox.start(id, &bundle, &["--rm"]);
    tether_ok(&sandbox, &["kill", id]);
    let entry = sandbox.state_dir().join(id);
    assert!(
        wait_until(BOUND, || !entry.exists()),
        "{} is still there",
        entry.display()
    );
    assert!(
        !sandbox.runtime_root().join(id).exists(),
        "the runtime's container was not deleted"
    );
    let listed = tether_ok(&sandbox, &["ps", "-a", "-q"]);
    assert!(!listed.contains(id), "ps -a lists {listed:?}");
}

/// A child killed (and reaped) however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The fake runtime itself is what these tests stand on: it must run a process and report it.
#[test]
fn the_fake_runtime_runs_a_process_group() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bundle = BundleSpec::new(["sleep", "1000"])
        .create(dir.path().join("bundle"))
        .expect("bundle");
    let root = dir.path().join("root");
    let fake = |args: &[&str]| {
        Command::new(fake_runtime())
            .arg("--root")
            .arg(&root)
            .args(args)
            .output()
            .expect("fake-runtime")
    };
    let pid_file = dir.path().join("pid");
    let made = Command::new(fake_runtime())
        .arg("--root")
        .arg(&root)
        .args(["create", "--bundle"])
        .arg(bundle.path())
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("box")
        .status()
        .expect("create");
    assert!(made.success());
    let status = |out: std::process::Output| -> String {
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("state JSON");
        json["status"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(status(fake(&["state", "box"])), "created");
    assert!(fake(&["start", "box"]).status.success());
    assert_eq!(status(fake(&["state", "box"])), "running");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .parse()
        .expect("pid");
    let ps: Vec<i32> =
        serde_json::from_slice(&fake(&["ps", "--format", "json", "box"]).stdout).expect("ps JSON");
    assert!(ps.contains(&pid), "ps {ps:?} lacks {pid}");
    assert!(fake(&["delete", "--force", "box"]).status.success());
    // Its parent here is this test, which reaps it.
    assert!(wait_until(BOUND, || {
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        gone(pid)
    }));
}

/// `containerd-shim-tether-v2 start` for `id` in `bundle`, as containerd runs it; its address.
fn start_shim(sandbox: &Sandbox, bundle: &Path, id: &str) -> String {
    let shim = Command::new(tether_tests::tether::shim_binary(sandbox));
    tether_tests::tether::start_shim(shim, sandbox, bundle, id, "tether-doors-test")
        .trim()
        .to_owned()
}

/// The pids `tether top` lists (tether's door), or its one-line refusal.
fn top_pids(sandbox: &Sandbox, id: &str) -> Result<Vec<u32>, String> {
    let out = sandbox.tether_output(&["top", id]);
    if !out.status.success() {
        return Err(text(&out.stderr));
    }
    Ok(text(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect())
}

#[test]
fn kill_and_pids_are_answered_alike_through_both_doors() {
    use containerd_shim_protos::api::*;
    use containerd_shim_protos::protobuf::well_known_types::any::Any;
    use containerd_shim_protos::protobuf::Message;
    use containerd_shim_protos::shim::oci::Options;
    use containerd_shim_protos::ttrpc::{context, Client, Code};
    // containerd's shim keeps its socket in a directory of root's.
    if !root_or_skip("kill_and_pids_are_answered_alike_through_both_doors") {
        return;
    }
    let sandbox = sandbox("doors");
    let id = sandbox.id().to_owned();
    let bundle = sandbox.bundle(&BundleSpec::new(["sleep", "1000"]));
    let address = start_shim(&sandbox, bundle.path(), &id);
    let task = containerd_shim_protos::TaskClient::new(
        Client::connect(&address).expect("connect to the shim"),
    );
    let ctx = || context::with_duration(BOUND);
    let options = Options {
        binary_name: fake_runtime().to_string_lossy().into_owned(),
        root: sandbox.runtime_root().to_string_lossy().into_owned(),
        ..Default::default()
    };
    let create = CreateTaskRequest {
        id: id.clone(),
        bundle: bundle.path().to_string_lossy().into_owned(),
        options: Some(Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: options.write_to_bytes().expect("options"),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    let init = task.create(ctx(), &create).expect("Create").pid;
    let by_id = || StartRequest {
        id: id.clone(),
        ..Default::default()
    };
    task.start(ctx(), &by_id()).expect("Start");
    let ttrpc_pids = || {
        task.pids(
            ctx(),
            &PidsRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .map(|r| r.processes.iter().map(|p| p.pid).collect::<Vec<_>>())
    };
    // Running: both doors list the init.
    assert_eq!(ttrpc_pids().expect("Pids"), [init]);
    assert_eq!(top_pids(&sandbox, &id), Ok(vec![init]));
    // tether's door kills it; containerd's door sees it stop.
    tether_ok(&sandbox, &["kill", &id]);
    let wait = task
        .wait(
            ctx(),
            &WaitRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .expect("Wait");
    assert_eq!(wait.exit_status, 137);
    // Exited and not yet deleted: both doors refuse both, each in its own words.
    let refused = |result: Result<Vec<u32>, containerd_shim_protos::ttrpc::Error>| match result {
        Err(containerd_shim_protos::ttrpc::Error::RpcStatus(status)) => status.code(),
        other => panic!("Pids of an exited task: {other:?}"),
    };
    assert_eq!(refused(ttrpc_pids()), Code::FAILED_PRECONDITION);
    let top = top_pids(&sandbox, &id).expect_err("top of an exited container");
    assert!(top.contains("is not running"), "{top}");
    let kill = KillRequest {
        id: id.clone(),
        signal: 9,
        ..Default::default()
    };
    match task.kill(ctx(), &kill) {
        Err(containerd_shim_protos::ttrpc::Error::RpcStatus(status)) => {
            assert_eq!(status.code(), Code::NOT_FOUND, "{}", status.message)
        }
        other => panic!("Kill of an exited task: {other:?}"),
    }
    let killed = sandbox.tether_output(&["kill", &id]);
    assert!(!killed.status.success());
    assert!(
        text(&killed.stderr).contains("is not running"),
        "{}",
        text(&killed.stderr)
    );
    task.delete(
        ctx(),
        &DeleteRequest {
            id: id.clone(),
            ..Default::default()
        },
    )
    .expect("Delete");
    let _ = task.shutdown(
        ctx(),
        &ShutdownRequest {
            id: id.clone(),
            ..Default::default()
        },
    );
}

/// One request on the container's control socket (docs/protocol.md); its one-line answer.
fn control(sandbox: &Sandbox, id: &str, request: &str) -> serde_json::Value {
    use std::io::{BufRead, Write};
    let socket = sandbox.state_dir().join(id).join("control.sock");
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).expect("control socket");
    stream.set_read_timeout(Some(BOUND)).expect("timeout");
    stream
        .write_all(format!("{request}\n").as_bytes())
        .expect("send");
    let mut line = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut line)
        .expect("answer");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer {line:?}: {e}"))
}

#[test]
fn exec_state_tells_a_finished_execs_code() {
    let sandbox = sandbox("exec-state");
    let id = sandbox.id();
    let bundle = sandbox.bundle(&BundleSpec::new(["sleep", "1000"]));
    sandbox.start(id, &bundle, &[]);
    let started = control(
        &sandbox,
        id,
        r#"{"op":"exec","args":["sh","-c","exit 3"],"detach":true}"#,
    );
    let exec_id = started["ok"]["exec_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no exec id in {started}"))
        .to_owned();
    let state = format!(r#"{{"op":"exec_state","exec_id":"{exec_id}"}}"#);
    let mut answer = serde_json::Value::Null;
    assert!(
        wait_until(BOUND, || {
            answer = control(&sandbox, id, &state);
            answer["ok"]["running"] == false
        }),
        "{answer}"
    );
    assert_eq!(answer["ok"]["exit_code"], 3, "{answer}");
    // An exec never started is not known.
    let unknown = control(&sandbox, id, r#"{"op":"exec_state","exec_id":"exec-99"}"#);
    assert!(unknown["ok"].is_null(), "{unknown}");
    tether_ok(&sandbox, &["rm", "-f", id]);
}
