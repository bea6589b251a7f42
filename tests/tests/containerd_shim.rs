//! `containerd-shim-tether-v2` spoken to directly over ttrpc, as containerd would, without a
//! containerd: `start`, careless and hostile requests (each answered with containerd's error kind,
//! the daemon unharmed, nothing left half-made), a container's whole life, and `Shutdown`.
//! containerd itself drives the shim in `cargo xtask e2e containerd`.

use containerd_shim_protos::api::*;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::Options;
use containerd_shim_protos::ttrpc::{self, context, Code};
use containerd_shim_protos::TaskClient;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tether_tests::fixture::BundleSpec;
use tether_tests::harness::{root_or_skip, wait_until, Sandbox};

const NAMESPACE: &str = "tether-shim-test";

/// The shim's name in a private bin dir (it knows it is the shim by that name).
fn shim_binary(sandbox: &Sandbox) -> PathBuf {
    tether_tests::tether::shim_binary(sandbox)
}

/// `start` in `bundle`; returns the printed address.
fn start(sandbox: &Sandbox, bundle: &Path, id: &str) -> String {
    start_with(Command::new(shim_binary(sandbox)), sandbox, bundle, id)
}

/// `start` run by `command` (the shim, or a wrapper that execs it with its arguments).
fn start_with(command: Command, sandbox: &Sandbox, bundle: &Path, id: &str) -> String {
    tether_tests::tether::start_shim(command, sandbox, bundle, id, NAMESPACE)
}

fn client(address: &str) -> TaskClient {
    TaskClient::new(ttrpc::Client::connect(address).expect("connect to the shim"))
}

fn ctx() -> context::Context {
    context::with_duration(Duration::from_secs(30))
}

fn code_of<T: std::fmt::Debug>(result: ttrpc::Result<T>) -> (Code, String) {
    match result {
        Err(ttrpc::Error::RpcStatus(status)) => (status.code(), status.message),
        other => panic!("expected an error status, got {other:?}"),
    }
}

/// Runtime options pointing runc at the sandbox's private root.
fn options(sandbox: &Sandbox) -> Any {
    let options = Options {
        root: sandbox.runtime_root().to_string_lossy().into_owned(),
        ..Default::default()
    };
    let mut any = Any::new();
    any.type_url = "containerd.runc.v1.Options".into();
    any.value = options.write_to_bytes().unwrap();
    any
}

fn create_request(sandbox: &Sandbox, id: &str, bundle: &Path, stdout: String) -> CreateTaskRequest {
    CreateTaskRequest {
        id: id.to_owned(),
        bundle: bundle.to_string_lossy().into_owned(),
        stdout,
        options: Some(options(sandbox)).into(),
        ..Default::default()
    }
}

fn shim_pid(task: &TaskClient, id: &str) -> u32 {
    let connected = task
        .connect(
            ctx(),
            &ConnectRequest {
                id: id.into(),
                ..Default::default()
            },
        )
        .expect("connect");
    connected.shim_pid
}

#[test]
fn the_shim_serves_a_container_and_survives_bad_requests() {
    if !root_or_skip("the_shim_serves_a_container_and_survives_bad_requests") {
        return;
    }
    let sandbox = Sandbox::new("shim");
    let id = sandbox.id().to_owned();
    let bundle = sandbox.bundle(&BundleSpec::shell("echo hi; echo to-stderr >&2; exit 7"));
    let address = start(&sandbox, bundle.path(), &id);
    assert!(address.starts_with("unix:///"), "address {address:?}");
    assert_eq!(
        std::fs::read_to_string(bundle.path().join("address")).unwrap(),
        address,
        "the bundle's address file names the socket"
    );
    // A second start for the same container finds the running daemon.
    assert_eq!(start(&sandbox, bundle.path(), &id), address);
    let task = client(&address);
    let pid = shim_pid(&task, &id);
    assert!(pid > 0);

    // Garbage on the socket does not hurt the daemon.
    {
        let path = address.trim_start_matches("unix://");
        let mut raw = std::os::unix::net::UnixStream::connect(path).unwrap();
        let _ = raw.write_all(&[0xff; 4096]);
    }
    assert_eq!(shim_pid(&task, &id), pid, "the daemon still answers");

    // Careless requests: containerd's error kinds, nothing made.
    let state = task.state(
        ctx(),
        &StateRequest {
            id: id.clone(),
            ..Default::default()
        },
    );
    assert_eq!(code_of(state).0, Code::NOT_FOUND, "no container yet");
    let wrong_id = create_request(&sandbox, "someone-else", bundle.path(), String::new());
    let (code, message) = code_of(task.create(ctx(), &wrong_id));
    assert_eq!(code, Code::INVALID_ARGUMENT);
    assert!(message.contains("someone-else"), "{message}");
    let missing_fifo = create_request(&sandbox, &id, bundle.path(), "/nonexistent/fifo".into());
    let (code, message) = code_of(task.create(ctx(), &missing_fifo));
    assert_eq!(code, Code::UNKNOWN);
    assert!(message.contains("/nonexistent/fifo"), "{message}");
    let mut malformed = create_request(&sandbox, &id, bundle.path(), String::new());
    malformed.options = Some(Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: vec![0xff, 0xff],
        ..Default::default()
    })
    .into();
    assert_eq!(
        code_of(task.create(ctx(), &malformed)).0,
        Code::INVALID_ARGUMENT
    );
    let runc_list = || {
        let out = sandbox
            .runtime_command()
            .args(["list", "-q"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(runc_list(), "", "a failed create leaves no container");

    // A container's life.
    let log = sandbox.path().join("out.log");
    let create = create_request(
        &sandbox,
        &id,
        bundle.path(),
        format!("file://{}", log.display()),
    );
    let mut create = create;
    create.stderr = create.stdout.clone();
    let created = task.create(ctx(), &create).expect("create");
    assert!(created.pid > 0);
    assert_eq!(code_of(task.create(ctx(), &create)).0, Code::ALREADY_EXISTS);
    let state = task
        .state(
            ctx(),
            &StateRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(state.status.enum_value(), Ok(Status::CREATED));
    assert_eq!(state.pid, created.pid);

    // Update and Stats go through runc to the container's cgroup.
    let update = UpdateTaskRequest {
        id: id.clone(),
        resources: Some(Any {
            value: br#"{"memory":{"limit":67108864}}"#.to_vec(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    task.update(ctx(), &update).expect("update");
    let stats = task
        .stats(
            ctx(),
            &StatsRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .expect("stats");
    let stats = stats.stats.into_option().expect("stats carry metrics");
    assert_eq!(stats.type_url, "io.containerd.cgroups.v1.Metrics");
    let metrics =
        containerd_shim_protos::cgroups::metrics::Metrics::parse_from_bytes(&stats.value).unwrap();
    assert_eq!(
        metrics.memory.usage.limit, 67108864,
        "the update reached the cgroup"
    );
    let garbage = UpdateTaskRequest {
        id: id.clone(),
        resources: Some(Any {
            value: b"{not json".to_vec(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    assert_eq!(
        code_of(task.update(ctx(), &garbage)).0,
        Code::INVALID_ARGUMENT
    );

    let kill = KillRequest {
        id: id.clone(),
        signal: 1000,
        ..Default::default()
    };
    assert_eq!(code_of(task.kill(ctx(), &kill)).0, Code::INVALID_ARGUMENT);
    let bad_exec = ExecProcessRequest {
        id: id.clone(),
        exec_id: "e1".into(),
        spec: Some(Any {
            value: b"not json".to_vec(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    assert_eq!(
        code_of(task.exec(ctx(), &bad_exec)).0,
        Code::FAILED_PRECONDITION,
        "no exec before the container runs"
    );
    let checkpoint = CheckpointTaskRequest {
        id: id.clone(),
        ..Default::default()
    };
    assert_eq!(
        code_of(task.checkpoint(ctx(), &checkpoint)).0,
        Code::UNIMPLEMENTED
    );

    task.start(
        ctx(),
        &StartRequest {
            id: id.clone(),
            ..Default::default()
        },
    )
    .expect("start");
    let waited = task
        .wait(
            ctx(),
            &WaitRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .expect("wait");
    assert_eq!(waited.exit_status, 7);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "hi\nto-stderr\n",
        "the log got everything before the exit was reported"
    );
    let state = task
        .state(
            ctx(),
            &StateRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(state.status.enum_value(), Ok(Status::STOPPED));
    assert_eq!(state.exit_status, 7);
    let kill = KillRequest {
        id: id.clone(),
        signal: 9,
        ..Default::default()
    };
    assert_eq!(
        code_of(task.kill(ctx(), &kill)).0,
        Code::NOT_FOUND,
        "already finished"
    );

    let deleted = task
        .delete(
            ctx(),
            &DeleteRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .expect("delete");
    assert_eq!(deleted.exit_status, 7);
    assert_eq!(runc_list(), "", "delete removed the runtime's container");
    let state = task.state(
        ctx(),
        &StateRequest {
            id: id.clone(),
            ..Default::default()
        },
    );
    assert_eq!(code_of(state).0, Code::NOT_FOUND);

    // Shutdown: the daemon goes, and takes its socket with it.
    let _ = task.shutdown(
        ctx(),
        &ShutdownRequest {
            id: id.clone(),
            ..Default::default()
        },
    );
    assert!(
        wait_until(Duration::from_secs(10), || !Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists()
            || tether_tests::harness::is_zombie(pid as i32)),
        "the daemon exits after Shutdown"
    );
    assert!(!Path::new(address.trim_start_matches("unix://")).exists());
}

#[test]
fn bad_command_lines_get_one_line_errors() {
    let sandbox = Sandbox::new("shim-args");
    for (args, want) in [
        (
            vec!["-namespace", "n", "-id", "x", "stop"],
            "unknown action \"stop\"",
        ),
        (vec!["-id", "x", "start"], "-namespace is required"),
        (
            vec!["-namespace", "n", "-id", "../x", "start"],
            "is not a container id",
        ),
        (vec!["-namespace", "n", "-id"], "flag -id needs a value"),
    ] {
        let output = Command::new(shim_binary(&sandbox))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

#[test]
fn runtime_options_choose_the_runtime_binary() {
    if !root_or_skip("runtime_options_choose_the_runtime_binary") {
        return;
    }
    if !tether_tests::harness::have_binary("crun") {
        assert!(
            std::env::var("TETHER_E2E").as_deref() != Ok("require"),
            "crun is needed (cargo xtask deps installs it)"
        );
        eprintln!("skipping: crun is not installed");
        return;
    }
    let sandbox = Sandbox::with_runtime("shim-crun", "crun");
    let id = sandbox.id().to_owned();
    let bundle = sandbox.bundle(&BundleSpec::shell("exit 4"));
    let task = client(&start(&sandbox, bundle.path(), &id));
    let options = Options {
        binary_name: "crun".into(),
        root: sandbox.runtime_root().to_string_lossy().into_owned(),
        ..Default::default()
    };
    let mut create = create_request(&sandbox, &id, bundle.path(), String::new());
    create.options = Some(Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: options.write_to_bytes().unwrap(),
        ..Default::default()
    })
    .into();
    task.create(ctx(), &create).expect("create with crun");
    let state = sandbox
        .runtime_command()
        .args(["state", &id])
        .output()
        .unwrap();
    assert!(
        state.status.success(),
        "crun does not know the container: {}",
        String::from_utf8_lossy(&state.stderr)
    );
    task.start(
        ctx(),
        &StartRequest {
            id: id.clone(),
            ..Default::default()
        },
    )
    .expect("start");
    let waited = task
        .wait(
            ctx(),
            &WaitRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .expect("wait");
    assert_eq!(waited.exit_status, 4);
    delete_and_shut_down(&task, &id);
}

/// Deletes the task, shuts its shim down, and waits (bounded) until the shim is gone.
fn delete_and_shut_down(task: &TaskClient, id: &str) {
    let pid = shim_pid(task, id);
    task.delete(
        ctx(),
        &DeleteRequest {
            id: id.to_owned(),
            ..Default::default()
        },
    )
    .expect("delete");
    let _ = task.shutdown(
        ctx(),
        &ShutdownRequest {
            id: id.to_owned(),
            ..Default::default()
        },
    );
    assert!(wait_until(Duration::from_secs(10), || {
        !Path::new(&format!("/proc/{pid}")).exists() || tether_tests::harness::is_zombie(pid as i32)
    }));
}

/// A shim serving one container whose stdout is a fifo the test reads, as containerd's CRI does.
struct FifoTask {
    sandbox: Sandbox,
    task: TaskClient,
    id: String,
    fifo: PathBuf,
}

impl FifoTask {
    /// Creates (not starts) the container running `script` with its stdout on a fifo.
    fn create(name: &str, spec: BundleSpec) -> FifoTask {
        let sandbox = Sandbox::new(name);
        let id = sandbox.id().to_owned();
        let bundle = sandbox.bundle(&spec);
        let task = client(&start(&sandbox, bundle.path(), &id));
        let fifo = sandbox.path().join("stdout.fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let create = create_request(
            &sandbox,
            &id,
            bundle.path(),
            fifo.to_string_lossy().into_owned(),
        );
        task.create(ctx(), &create).expect("create");
        FifoTask {
            sandbox,
            task,
            id,
            fifo,
        }
    }

    fn start(&self) {
        let request = StartRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.task.start(ctx(), &request).expect("start");
    }

    fn wait(&self) -> u32 {
        let request = WaitRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.task.wait(ctx(), &request).expect("wait").exit_status
    }

    fn finish(self) {
        let delete = DeleteRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.task.delete(ctx(), &delete).expect("delete");
        let _ = self.task.shutdown(
            ctx(),
            &ShutdownRequest {
                id: self.id.clone(),
                ..Default::default()
            },
        );
        drop(self.sandbox);
    }
}

/// Reads the fifo at a pace of `chunk` bytes per `pause`, until `stop` is set; then takes only
/// what is there at once and closes, as containerd 1.6's CRI plugin does when it hears of the exit.
/// The fifo is opened before this returns, as containerd opens its fifos before the task starts
/// (a fifo nobody has open is one nobody reads: the exit does not wait for it).
fn paced_reader(
    fifo: PathBuf,
    chunk: usize,
    pause: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<u8>> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::Ordering;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the fifo");
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = vec![0; chunk];
        while !stop.load(Ordering::SeqCst) {
            match file.read(&mut buf) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read the fifo: {e}"),
            }
            std::thread::sleep(pause);
        }
        // The exit is known: what the fifo holds now, and nothing after.
        let mut left: nix::libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int to the pointer, which points at `left`.
        unsafe { nix::libc::ioctl(file.as_raw_fd(), nix::libc::FIONREAD, &mut left) };
        let mut last = vec![0; left.max(0) as usize];
        file.read_exact(&mut last)
            .expect("read what the fifo holds");
        out.extend_from_slice(&last);
        out
    })
}

/// `count` lines `N xxx…` of 1000 bytes, then `done`.
fn numbered_lines_script(count: usize) -> String {
    format!(
        "awk 'BEGIN {{ s = sprintf(\"%994s\", \"\"); gsub(/ /, \"x\", s); \
         for (i = 1; i <= {count}; i++) printf(\"%05d %s\\n\", i, s) }}'; echo done"
    )
}

/// Every line whole (1000 bytes, numbered in order from 1), nothing missing, then `done`.
fn assert_all_lines(output: &[u8], count: usize) {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.lines().collect();
    let numbered = lines.len().saturating_sub(1);
    for (n, line) in lines[..numbered].iter().enumerate() {
        assert!(
            line.len() == 1000 && line.starts_with(&format!("{:05} ", n + 1)),
            "line {} is {:?}… ({} bytes): lines were lost or glued",
            n + 1,
            &line[..line.len().min(12)],
            line.len()
        );
    }
    assert_eq!(numbered, count, "all {count} lines arrived");
    assert_eq!(lines.last(), Some(&"done"), "the last line arrived");
}

/// A container writes `lines` numbered 1000-byte lines and `done`; a reader takes `chunk` bytes
/// per `pause` and stops when the exit is known (as containerd 1.6's CRI plugin does). Returns what
/// the reader got.
fn output_read_until_the_exit(name: &str, lines: usize, chunk: usize, pause: Duration) -> Vec<u8> {
    let life = FifoTask::create(name, BundleSpec::shell(&numbered_lines_script(lines)));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = paced_reader(life.fifo.clone(), chunk, pause, stop.clone());
    life.start();
    assert_eq!(life.wait(), 0);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let output = reader.join().unwrap();
    life.finish();
    output
}

#[test]
fn an_exit_is_published_only_after_the_reader_has_all_the_output() {
    if !root_or_skip("an_exit_is_published_only_after_the_reader_has_all_the_output") {
        return;
    }
    // A reader slower than the container, so output is still held when the container exits.
    let output = output_read_until_the_exit("shim-tail", 4000, 16 * 1024, Duration::from_millis(1));
    assert_all_lines(&output, 4000);
}

#[test]
fn a_reader_that_reads_slowly_loses_nothing() {
    if !root_or_skip("a_reader_that_reads_slowly_loses_nothing") {
        return;
    }
    // 64 MiB: far more than the fifo and the shim hold, so the container must be slowed down.
    let output =
        output_read_until_the_exit("shim-slow", 65_536, 64 * 1024, Duration::from_micros(500));
    assert_all_lines(&output, 65_536);
}

#[test]
fn without_its_own_pid_namespace_the_rest_dies_with_the_init() {
    if !root_or_skip("without_its_own_pid_namespace_the_rest_dies_with_the_init") {
        return;
    }
    let sandbox = Sandbox::new("shim-sharedpid");
    let id = sandbox.id().to_owned();
    // A child that outlives the init and keeps its stdout open, as in a pod sharing its PID
    // namespace: without the kill, the exit would wait for the output grace and leave it running.
    let bundle =
        sandbox.bundle(&BundleSpec::shell("sleep 3600 & echo $!; exit 0").pid_namespace(false));
    let task = client(&start(&sandbox, bundle.path(), &id));
    let log = sandbox.path().join("out.log");
    let create = create_request(
        &sandbox,
        &id,
        bundle.path(),
        format!("file://{}", log.display()),
    );
    task.create(ctx(), &create).expect("create");
    let request = StartRequest {
        id: id.clone(),
        ..Default::default()
    };
    task.start(ctx(), &request).expect("start");
    let wait = WaitRequest {
        id: id.clone(),
        ..Default::default()
    };
    assert_eq!(task.wait(ctx(), &wait).expect("wait").exit_status, 0);
    let child: i32 = std::fs::read_to_string(&log)
        .unwrap()
        .trim()
        .parse()
        .expect("the child's pid in the log");
    let gone = |pid: i32| {
        !Path::new(&format!("/proc/{pid}")).exists() || tether_tests::harness::is_zombie(pid)
    };
    assert!(
        gone(child),
        "the init's child {child} still runs after the exit"
    );
    let delete = DeleteRequest {
        id: id.clone(),
        ..Default::default()
    };
    task.delete(ctx(), &delete).expect("delete");
    let _ = task.shutdown(
        ctx(),
        &ShutdownRequest {
            id,
            ..Default::default()
        },
    );
}

/// A figure from /proc/PID/status (`Threads`, `VmRSS` in KiB).
fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// One raw ttrpc frame.
fn ttrpc_frame(kind: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(&[kind, 0]);
    out.extend_from_slice(payload);
    out
}

/// Sends `wire` and reads one response frame: its stream id and status code.
fn raw_exchange(path: &str, wire: &[u8]) -> Option<(u32, Code)> {
    use std::io::Read;
    let mut raw = std::os::unix::net::UnixStream::connect(path).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(wire).ok()?;
    let mut header = [0u8; 10];
    raw.read_exact(&mut header).ok()?;
    let length = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
    let stream_id = u32::from_be_bytes(header[4..8].try_into().unwrap());
    assert_eq!(header[8], 2, "a response frame");
    let mut payload = vec![0; length];
    raw.read_exact(&mut payload).unwrap();
    let response = ttrpc::Response::parse_from_bytes(&payload).unwrap();
    Some((stream_id, response.status.code()))
}

fn task_request(method: &str, payload: Vec<u8>) -> Vec<u8> {
    ttrpc::Request {
        service: "containerd.task.v2.Task".into(),
        method: method.into(),
        payload,
        ..Default::default()
    }
    .write_to_bytes()
    .unwrap()
}

#[test]
fn a_hostile_ttrpc_client_gets_answers_and_costs_a_bounded_amount() {
    if !root_or_skip("a_hostile_ttrpc_client_gets_answers_and_costs_a_bounded_amount") {
        return;
    }
    let sandbox = Sandbox::new("shim-hostile");
    let id = sandbox.id().to_owned();
    let bundle = sandbox.bundle(&BundleSpec::new(["sleep", "1000"]));
    let address = start(&sandbox, bundle.path(), &id);
    let path = address.trim_start_matches("unix://").to_owned();
    let task = client(&address);
    let pid = shim_pid(&task, &id);
    let threads = proc_status(pid, "Threads");
    assert!(threads <= 4, "an idle shim has {threads} threads");
    let rss_before = proc_status(pid, "VmRSS");
    let fds_before = open_fds(pid);

    // Each malformed exchange gets an error answer on its own stream.
    let cases: Vec<(&str, Vec<u8>, Code)> = vec![
        (
            "undecodable request",
            ttrpc_frame(1, 3, &[0xff; 64]),
            Code::INVALID_ARGUMENT,
        ),
        (
            "State with an undecodable payload",
            ttrpc_frame(1, 5, &task_request("State", vec![0xff, 0xff, 0xff])),
            Code::INVALID_ARGUMENT,
        ),
        (
            "Exec with a garbage spec",
            ttrpc_frame(1, 7, &task_request("Exec", vec![0x0a, 0xff])),
            Code::INVALID_ARGUMENT,
        ),
        (
            "an unknown frame type",
            ttrpc_frame(9, 9, b""),
            Code::INVALID_ARGUMENT,
        ),
        (
            "an unknown method",
            ttrpc_frame(1, 11, &task_request("LaunchMissiles", Vec::new())),
            Code::UNIMPLEMENTED,
        ),
    ];
    for (what, wire, code) in cases {
        let answer = raw_exchange(&path, &wire);
        let stream_id = u32::from_be_bytes(wire[4..8].try_into().unwrap());
        assert_eq!(answer, Some((stream_id, code)), "{what}");
    }
    // A header announcing 4 GiB is refused without reading it.
    let mut huge = ttrpc_frame(1, 13, b"");
    huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        raw_exchange(&path, &huge).map(|(_, code)| code),
        Some(Code::RESOURCE_EXHAUSTED)
    );
    // Half a frame, then gone; 100 MB of garbage.
    {
        let mut raw = std::os::unix::net::UnixStream::connect(&path).unwrap();
        raw.write_all(&ttrpc_frame(1, 15, &[0; 100])[..50]).unwrap();
    }
    {
        let mut raw = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let chunk = vec![0x41u8; 1 << 20];
        for _ in 0..100 {
            if raw.write_all(&chunk).is_err() {
                break; // cut off: fine
            }
        }
    }
    // 2,000 idle connections: most are refused, none costs a thread.
    let idle: Vec<_> = (0..2000)
        .filter_map(|_| std::os::unix::net::UnixStream::connect(&path).ok())
        .collect();
    assert_eq!(
        shim_pid(&task, &id),
        pid,
        "the daemon answers beside 2,000 connections"
    );
    assert!(proc_status(pid, "Threads") <= threads, "threads grew");
    assert!(
        open_fds(pid) <= fds_before + 40,
        "idle connections hold {} fds",
        open_fds(pid) - fds_before
    );
    drop(idle);
    assert!(wait_until(Duration::from_secs(10), || open_fds(pid) <= fds_before));
    assert_eq!(shim_pid(&task, &id), pid, "and after");
    let rss_after = proc_status(pid, "VmRSS");
    assert!(
        rss_after <= rss_before + 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    let _ = task.shutdown(
        ctx(),
        &ShutdownRequest {
            id,
            now: true,
            ..Default::default()
        },
    );
}

#[test]
fn stats_come_from_the_cgroup_without_running_the_runtime() {
    if !root_or_skip("stats_come_from_the_cgroup_without_running_the_runtime") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new("shim-stats");
    let id = sandbox.id().to_owned();
    let bundle = sandbox.bundle(&BundleSpec::new(["sleep", "1000"]));
    // A runc that notes each subcommand it is asked for.
    let calls = sandbox.path().join("runtime-calls");
    let runtime = sandbox.path().join("noting-runc");
    let runc = tether_tests::harness::find_binary("runc").expect("runc");
    std::fs::write(
        &runtime,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\nexec {} \"$@\"\n",
            calls.display(),
            runc.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
    let task = client(&start(&sandbox, bundle.path(), &id));
    let mut create = create_request(&sandbox, &id, bundle.path(), String::new());
    let options = Options {
        binary_name: runtime.to_string_lossy().into_owned(),
        root: sandbox.runtime_root().to_string_lossy().into_owned(),
        ..Default::default()
    };
    create.options = Some(Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: options.write_to_bytes().unwrap(),
        ..Default::default()
    })
    .into();
    task.create(ctx(), &create).expect("create");
    let request = StartRequest {
        id: id.clone(),
        ..Default::default()
    };
    task.start(ctx(), &request).expect("start");
    let stats = StatsRequest {
        id: id.clone(),
        ..Default::default()
    };
    for _ in 0..3 {
        let answer = task.stats(ctx(), &stats).expect("stats");
        let any = answer.stats.into_option().expect("metrics");
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        let metrics =
            containerd_shim_protos::cgroups::metrics::Metrics::parse_from_bytes(&any.value)
                .unwrap();
        assert!(metrics.memory.usage.usage > 0, "memory in use");
        assert!(metrics.pids.current >= 1, "the init is counted");
        assert!(metrics.cpu.usage.total > 0, "cpu time");
    }
    let noted = std::fs::read_to_string(&calls).unwrap();
    assert!(
        !noted.lines().any(|l| l.contains("events")),
        "Stats ran the runtime: {noted}"
    );
    let kill = KillRequest {
        id: id.clone(),
        signal: 9,
        ..Default::default()
    };
    task.kill(ctx(), &kill).expect("kill");
    let wait = WaitRequest {
        id: id.clone(),
        ..Default::default()
    };
    task.wait(ctx(), &wait).expect("wait");
    let delete = DeleteRequest {
        id: id.clone(),
        ..Default::default()
    };
    task.delete(ctx(), &delete).expect("delete");
    let _ = task.shutdown(
        ctx(),
        &ShutdownRequest {
            id,
            ..Default::default()
        },
    );
}

#[test]
fn hostile_field_values_get_containerd_error_kinds() {
    if !root_or_skip("hostile_field_values_get_containerd_error_kinds") {
        return;
    }
    let sandbox = Sandbox::new("shim-fields");
    let id = sandbox.id().to_owned();
    let bundle = sandbox.bundle(&BundleSpec::new(["sleep", "1000"]));
    let task = client(&start(&sandbox, bundle.path(), &id));
    let pid = shim_pid(&task, &id);
    let start_request = StartRequest {
        id: id.clone(),
        ..Default::default()
    };
    assert_eq!(
        code_of(task.start(ctx(), &start_request)).0,
        Code::NOT_FOUND,
        "Start before Create"
    );
    for other in ["../x", "a/b", "", &"x".repeat(1 << 20)] {
        let create = create_request(&sandbox, other, bundle.path(), String::new());
        assert_eq!(
            code_of(task.create(ctx(), &create)).0,
            Code::INVALID_ARGUMENT,
            "Create for id {:?}",
            &other[..other.len().min(10)]
        );
    }
    task.create(
        ctx(),
        &create_request(&sandbox, &id, bundle.path(), String::new()),
    )
    .expect("create");
    task.start(ctx(), &start_request).expect("start");
    let kill = KillRequest {
        id: id.clone(),
        signal: u32::MAX,
        ..Default::default()
    };
    assert_eq!(code_of(task.kill(ctx(), &kill)).0, Code::INVALID_ARGUMENT);
    for (width, height) in [(0, 0), (u32::MAX, u32::MAX)] {
        let resize = ResizePtyRequest {
            id: id.clone(),
            width,
            height,
            ..Default::default()
        };
        task.resize_pty(ctx(), &resize)
            .expect("a resize of no terminal is a no-op");
    }
    let spec = Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
        value: br#"{"args":["true"],"cwd":"/","user":{"uid":0,"gid":0}}"#.to_vec(),
        ..Default::default()
    };
    let exec = |exec_id: String| ExecProcessRequest {
        id: id.clone(),
        exec_id,
        spec: Some(spec.clone()).into(),
        ..Default::default()
    };
    assert_eq!(
        code_of(task.exec(ctx(), &exec("e".repeat(1 << 20)))).0,
        Code::INVALID_ARGUMENT,
        "a 1 MiB exec id"
    );
    task.exec(ctx(), &exec("e1".into())).expect("exec");
    assert_eq!(
        code_of(task.exec(ctx(), &exec("e1".into()))).0,
        Code::ALREADY_EXISTS
    );
    let wait_unknown = WaitRequest {
        id: id.clone(),
        exec_id: "nobody".into(),
        ..Default::default()
    };
    assert_eq!(code_of(task.wait(ctx(), &wait_unknown)).0, Code::NOT_FOUND);
    let kill = KillRequest {
        id: id.clone(),
        signal: 9,
        ..Default::default()
    };
    task.kill(ctx(), &kill).expect("kill");
    let wait = WaitRequest {
        id: id.clone(),
        ..Default::default()
    };
    task.wait(ctx(), &wait).expect("wait");
    let delete = DeleteRequest {
        id: id.clone(),
        ..Default::default()
    };
    task.delete(ctx(), &delete).expect("delete");
    assert_eq!(
        code_of(task.delete(ctx(), &delete)).0,
        Code::NOT_FOUND,
        "Delete twice"
    );
    assert_eq!(shim_pid(&task, &id), pid, "the daemon lives");
    let _ = task.shutdown(
        ctx(),
        &ShutdownRequest {
            id,
            ..Default::default()
        },
    );
}

#[test]
fn a_client_pipelining_slow_calls_is_held_back() {
    if !root_or_skip("a_client_pipelining_slow_calls_is_held_back") {
        return;
    }
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new("shim-pipeline");
    let id = sandbox.id().to_owned();
    let bundle = sandbox.bundle(&BundleSpec::new(["sleep", "1000"]));
    let address = start(&sandbox, bundle.path(), &id);
    let task = client(&address);
    // A runc whose `ps` takes 0.2 s: 64 calls in flight hold the connection back for over 12 s,
    // longer than a sender may take to finish a frame.
    let runtime = sandbox.path().join("slow-ps-runc");
    let runc = tether_tests::harness::find_binary("runc").expect("runc");
    std::fs::write(
        &runtime,
        format!(
            "#!/bin/sh\nfor a; do [ \"$a\" = ps ] && sleep 0.2; done\nexec {} \"$@\"\n",
            runc.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut create = create_request(&sandbox, &id, bundle.path(), String::new());
    let options = Options {
        binary_name: runtime.to_string_lossy().into_owned(),
        root: sandbox.runtime_root().to_string_lossy().into_owned(),
        ..Default::default()
    };
    create.options = Some(Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: options.write_to_bytes().unwrap(),
        ..Default::default()
    })
    .into();
    task.create(ctx(), &create).expect("create");
    let start_request = StartRequest {
        id: id.clone(),
        ..Default::default()
    };
    task.start(ctx(), &start_request).expect("start");
    // 8 MiB of Pids calls, answers left unread.
    let pids = PidsRequest {
        id: id.clone(),
        ..Default::default()
    };
    let frame = ttrpc_frame(1, 1, &task_request("Pids", pids.write_to_bytes().unwrap()));
    let path = address.trim_start_matches("unix://").to_owned();
    let mut raw = std::os::unix::net::UnixStream::connect(&path).unwrap();
    raw.set_nonblocking(true).unwrap();
    let frames = (8 << 20) / frame.len();
    let wire: Vec<u8> = frame.repeat(frames);
    let mut sent = 0;
    let mut stalled_since = std::time::Instant::now();
    while sent < wire.len() && stalled_since.elapsed() < Duration::from_secs(3) {
        match raw.write(&wire[sent..]) {
            Ok(n) => {
                sent += n;
                stalled_since = std::time::Instant::now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    assert!(
        sent < 2 << 20,
        "the shim took {sent} bytes of calls it could not answer yet"
    );
    // Another client is still served.
    assert!(shim_pid(&task, &id) > 0);
    // The held-back connection is not cut off: its answers keep coming, past the first 64.
    raw.set_nonblocking(false).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for answer in 0..100 {
        let mut header = [0u8; 10];
        raw.read_exact(&mut header)
            .unwrap_or_else(|e| panic!("answer {answer}: {e}"));
        let length = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
        let mut payload = vec![0; length];
        raw.read_exact(&mut payload).unwrap();
        let response = ttrpc::Response::parse_from_bytes(&payload).unwrap();
        assert_eq!(response.status.code(), Code::OK, "answer {answer}");
    }
    drop(raw);
    let kill = KillRequest {
        id: id.clone(),
        signal: 9,
        ..Default::default()
    };
    task.kill(ctx(), &kill).expect("kill");
    let wait = WaitRequest {
        id: id.clone(),
        ..Default::default()
    };
    task.wait(ctx(), &wait).expect("wait");
    let delete = DeleteRequest {
        id: id.clone(),
        ..Default::default()
    };
    task.delete(ctx(), &delete).expect("delete");
    let _ = task.shutdown(
        ctx(),
        &ShutdownRequest {
            id,
            ..Default::default()
        },
    );
}

/// The two doors tell an exit the same way: an `exit 130` is code 130 (not SIGINT) in containerd's
/// Wait and in `tether state`, and a task removed before it exited is SIGKILL, 137.
#[test]
fn both_doors_tell_an_exit_the_same_way() {
    if !root_or_skip("both_doors_tell_an_exit_the_same_way") {
        return;
    }
    let sandbox = Sandbox::new("doors");
    let id = sandbox.id().to_owned();
    let bundle = sandbox.bundle(&BundleSpec::shell("exit 130"));
    let task = client(&start(&sandbox, bundle.path(), &id));
    task.create(
        ctx(),
        &create_request(&sandbox, &id, bundle.path(), String::new()),
    )
    .expect("create");
    task.start(
        ctx(),
        &StartRequest {
            id: id.clone(),
            ..Default::default()
        },
    )
    .expect("start");
    let waited = task
        .wait(
            ctx(),
            &WaitRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .expect("wait");
    assert_eq!(waited.exit_status, 130);
    let state = sandbox.tether_output(&["state", &id]);
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).expect("state JSON");
    assert_eq!(state["exit"]["code"], 130, "{state}");
    assert!(state["exit"].get("signal").is_none(), "{state}");
    let deleted = task
        .delete(
            ctx(),
            &DeleteRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .expect("delete");
    assert_eq!(deleted.exit_status, 130);
    task.shutdown(
        ctx(),
        &ShutdownRequest {
            id: id.clone(),
            ..Default::default()
        },
    )
    .ok();

    // Created, never started, deleted: removed by force, and that is SIGKILL's 137.
    let id = sandbox.another_id("unstarted");
    let bundle = sandbox.bundle(&BundleSpec::new(["sleep", "1000"]));
    let task = client(&start(&sandbox, bundle.path(), &id));
    task.create(
        ctx(),
        &create_request(&sandbox, &id, bundle.path(), String::new()),
    )
    .expect("create");
    let deleted = task
        .delete(
            ctx(),
            &DeleteRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .expect("delete");
    assert_eq!(deleted.exit_status, 137);
    task.shutdown(
        ctx(),
        &ShutdownRequest {
            id,
            ..Default::default()
        },
    )
    .ok();
}

/// `runtimeoptions.v1.Options { config_path = 2 }`, as containerd's CRI plugin sends for a runtime
/// type other than runc's.
fn cri_options(config_path: &Path) -> Any {
    let path = config_path.to_string_lossy().into_owned();
    let mut value = vec![0x12, u8::try_from(path.len()).expect("a short path")];
    value.extend_from_slice(path.as_bytes());
    let mut any = Any::new();
    any.type_url = "runtimeoptions.v1.Options".into();
    any.value = value;
    any
}

#[test]
fn a_config_file_named_by_cri_options_sets_the_root_and_rotates_a_file_log() {
    if !root_or_skip("a_config_file_named_by_cri_options_sets_the_root_and_rotates_a_file_log") {
        return;
    }
    let sandbox = Sandbox::new("shim-config");
    let id = sandbox.id().to_owned();
    // 40 KB: rotated at 4 KiB, all of it kept in 20 files.
    let lines = 40;
    let bundle = sandbox.bundle(&BundleSpec::shell(&numbered_lines_script(lines)));
    let config = sandbox.path().join("tether.toml");
    std::fs::write(
        &config,
        format!(
            "Root = {:?}\nLogMaxSize = \"4k\"\nLogMaxFiles = 20\n",
            sandbox.runtime_root().display().to_string()
        ),
    )
    .unwrap();
    let task = client(&start(&sandbox, bundle.path(), &id));
    let log = sandbox.path().join("out.log");
    let mut create = create_request(
        &sandbox,
        &id,
        bundle.path(),
        format!("file://{}", log.display()),
    );
    create.stderr = create.stdout.clone();
    create.options = Some(cri_options(&config)).into();
    task.create(ctx(), &create)
        .expect("create with a config file");
    // The root came from the config file: runc finds the container there.
    let state = sandbox
        .runtime_command()
        .args(["state", &id])
        .output()
        .unwrap();
    assert!(
        state.status.success(),
        "{}",
        String::from_utf8_lossy(&state.stderr)
    );
    let request = StartRequest {
        id: id.clone(),
        ..Default::default()
    };
    task.start(ctx(), &request).expect("start");
    let wait = WaitRequest {
        id: id.clone(),
        ..Default::default()
    };
    assert_eq!(task.wait(ctx(), &wait).expect("wait").exit_status, 0);
    // Oldest first: out.log.N … out.log.1, then out.log; each within the size (plus one write).
    let mut files: Vec<PathBuf> = (1..20)
        .rev()
        .map(|n| PathBuf::from(format!("{}.{n}", log.display())))
        .filter(|p| p.exists())
        .collect();
    assert!(files.len() >= 2, "the log was not rotated: {files:?}");
    files.push(log.clone());
    let mut output = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            bytes.len() <= 4096 + 64 * 1024,
            "{}: {} bytes",
            file.display(),
            bytes.len()
        );
        output.extend_from_slice(&bytes);
    }
    assert_all_lines(&output, lines);
    // A config file tether cannot read is one clear error.
    let broken = sandbox.path().join("broken.toml");
    std::fs::write(&broken, "LogMaxSize = \"ten\"\n").unwrap();
    let delete = DeleteRequest {
        id: id.clone(),
        ..Default::default()
    };
    task.delete(ctx(), &delete).expect("delete");
    let mut again = create_request(&sandbox, &id, bundle.path(), String::new());
    again.options = Some(cri_options(&broken)).into();
    let (code, message) = code_of(task.create(ctx(), &again));
    assert_eq!(code, Code::INVALID_ARGUMENT, "{message}");
    assert!(
        message.contains("broken.toml") && message.contains("LogMaxSize"),
        "{message}"
    );
    let _ = task.shutdown(
        ctx(),
        &ShutdownRequest {
            id,
            ..Default::default()
        },
    );
}

/// The `peer` client, where another user can run it.
fn peer_for_strangers(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let peer = dir.join("peer");
    std::fs::copy(env!("CARGO_BIN_EXE_peer"), &peer).expect("copy peer");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&peer, std::fs::Permissions::from_mode(0o755)).unwrap();
    peer
}

/// Sends `request` to the socket at `path` as `uid` (through an O_PATH fd, so that only the
/// socket's own mode and the door's check stand in the way); returns what came back.
fn as_uid(peer: &Path, uid: u32, path: &Path, request: &[u8]) -> (Option<i32>, Vec<u8>) {
    use nix::fcntl::{open, OFlag};
    use std::os::unix::process::CommandExt;
    // Inherited by the peer (no O_CLOEXEC), closed here once it is done.
    let fd = open(path, OFlag::O_PATH, nix::sys::stat::Mode::empty()).expect("O_PATH");
    let mut child = Command::new(peer)
        .arg(format!("/proc/self/fd/{fd}"))
        .uid(uid)
        .gid(uid)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run peer");
    child.stdin.take().unwrap().write_all(request).unwrap();
    let output = child.wait_with_output().unwrap();
    let _ = nix::unistd::close(fd);
    (output.status.code(), output.stdout)
}

/// A ttrpc request frame for `containerd.task.v2.Task/State`.
fn state_frame(id: &str) -> Vec<u8> {
    let request = ttrpc::Request {
        service: "containerd.task.v2.Task".into(),
        method: "State".into(),
        payload: StateRequest {
            id: id.into(),
            ..Default::default()
        }
        .write_to_bytes()
        .unwrap(),
        timeout_nano: 10_000_000_000,
        ..Default::default()
    }
    .write_to_bytes()
    .unwrap();
    let mut frame = (request.len() as u32).to_be_bytes().to_vec();
    frame.extend(1u32.to_be_bytes()); // stream 1
    frame.extend([1, 0]); // a request, no flags
    frame.extend(request);
    frame
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_stranger_gets_no_answer_from_either_door_whatever_the_umask() {
    if !root_or_skip("a_stranger_gets_no_answer_from_either_door_whatever_the_umask") {
        return;
    }
    let sandbox = Sandbox::new("stranger");
    let id = sandbox.id().to_owned();
    let bundle = sandbox.bundle(&BundleSpec::shell("exec sleep 1000"));
    // containerd started under umask 000.
    let mut under_umask = Command::new("sh");
    under_umask
        .args(["-c", "umask 000; exec \"$0\" \"$@\""])
        .arg(shim_binary(&sandbox));
    let address = start_with(under_umask, &sandbox, bundle.path(), &id);
    let door = PathBuf::from(address.trim_start_matches("unix://"));
    assert_eq!(mode(&door), 0o600, "{}", door.display());
    assert_eq!(mode(door.parent().unwrap()), 0o700);
    let task = client(&address);
    task.create(
        ctx(),
        &create_request(&sandbox, &id, bundle.path(), String::new()),
    )
    .expect("create");
    let control = sandbox.state_dir().join(&id).join("control.sock");
    assert_eq!(mode(&control), 0o600, "{}", control.display());
    assert_eq!(mode(control.parent().unwrap()), 0o700);

    // Were a socket's mode ever wrong, the door's own check still stands.
    use std::os::unix::fs::PermissionsExt;
    for socket in [&door, &control] {
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    let peers = tempfile::tempdir().unwrap();
    let peer = peer_for_strangers(peers.path());
    let nobody = 65534;
    let (code, answer) = as_uid(&peer, nobody, &door, &state_frame(&id));
    assert_eq!(
        code,
        Some(0),
        "the ttrpc door closed the stranger's connection"
    );
    assert!(
        answer.is_empty(),
        "the ttrpc door answered uid {nobody}: {answer:?}"
    );
    let (code, answer) = as_uid(&peer, nobody, &control, b"{\"op\":\"state\"}\n");
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(code, Some(0));
    assert!(
        answer.contains("uid 65534 may not use this shim") && !answer.contains("\"status\""),
        "the control socket answered uid {nobody}: {answer}"
    );
    // The same requests from the owner are answered: the refusals were the peer check's.
    let (_, answer) = as_uid(&peer, 0, &door, &state_frame(&id));
    assert!(answer.len() > 10, "the owner's State got {answer:?}");
    let (_, answer) = as_uid(&peer, 0, &control, b"{\"op\":\"state\"}\n");
    assert!(
        String::from_utf8_lossy(&answer).contains(&id),
        "the owner's state got {answer:?}"
    );

    delete_and_shut_down(&task, &id);
}
