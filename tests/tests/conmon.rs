//! tether as podman's conmon, driven the way podman drives it but without podman: the binary run
//! under the name `conmon`, its start and sync pipes (SEQPACKET socketpairs at the numbers its
//! environment names), its attach socket, its files; the fake runtime stands in for runc, so these
//! run for every user in `cargo test`. (podman itself drives it in `cargo xtask e2e podman`.)

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tether_tests::fixture::BundleSpec;
use tether_tests::harness::{process_state, wait_until};
use tether_tests::tether::tether_bin;

const BOUND: Duration = Duration::from_secs(30);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory of its own, with `conmon` naming tether.
fn setup(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("tether-conmon-{name}-"))
        .tempdir()
        .expect("temp dir");
    let conmon = dir.path().join("conmon");
    std::os::unix::fs::symlink(tether_bin(), &conmon).expect("link conmon");
    (dir, conmon)
}

fn conmon_output(conmon: &Path, args: &[&str]) -> Output {
    Command::new(conmon)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run conmon")
}

#[test]
fn the_version_answers_podmans_probe() {
    let (_dir, conmon) = setup("version");
    let output = conmon_output(&conmon, &["--version"]);
    assert!(output.status.success());
    let stdout = text(&output.stdout);
    let mut lines = stdout.lines();
    // podman: ^(version:|conmon version)? (\d+).(\d+).(\d+), at least 2.0.1; "version:" would
    // mean conmon-rs.
    assert_eq!(lines.next(), Some("conmon version 2.1.6"), "{stdout:?}");
    assert!(
        lines.next().is_some_and(|l| l.starts_with("commit: ")),
        "{stdout:?}"
    );
}

#[test]
fn a_bad_command_line_gets_conmons_error_and_exit_1() {
    let (_dir, conmon) = setup("badline");
    let output = conmon_output(&conmon, &["--bogus", "-c", "x"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stdout),
        "conmon: option parsing failed: Unknown option --bogus\n"
    );
    let output = conmon_output(&conmon, &["-c", "x", "-u", "x", "-r", "/nonexistent"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("Runtime path /nonexistent is not valid"),
        "{}",
        text(&output.stderr)
    );
    let output = conmon_output(
        &conmon,
        &["-c", "x", "-u", "x", "-r", "/bin/sh", "-l", "journald"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("journald"));
}

/// A SEQPACKET pair: ours, and the end the monitor inherits (no close-on-exec).
fn pipe_pair() -> (OwnedFd, OwnedFd) {
    socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::empty(),
    )
    .expect("socketpair")
}

fn receive(fd: &OwnedFd) -> Vec<u8> {
    let mut buf = vec![0; 65536];
    let n = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("recv");
    buf.truncate(n);
    buf
}

#[test]
fn a_container_runs_as_podman_expects() {
    let (dir, conmon) = setup("monitor");
    let dir = dir.path();
    let script = "read line; echo out-$line; echo err >&2; exit 3";
    let bundle = BundleSpec::new(["sh", "-c", script])
        .create(dir.join("bundle"))
        .expect("bundle");
    let bundle = bundle.path();
    let root = dir.join("runtime-root");
    let exits = dir.join("exits");
    std::fs::create_dir_all(&exits).unwrap();
    let (log, pidfile, monitor_pidfile) = (
        dir.join("ctr.log"),
        dir.join("pidfile"),
        dir.join("conmon.pid"),
    );
    let (sync, sync_theirs) = pipe_pair();
    let (start, start_theirs) = pipe_pair();
    let id = "conmon-monitor";
    let fake = PathBuf::from(env!("CARGO_BIN_EXE_fake-runtime"));
    let mut child = Command::new(&conmon)
        .args(["--api-version", "1", "-c", id, "-u", id, "-n", "web", "-i"])
        .arg("-r")
        .arg(&fake)
        .arg("-b")
        .arg(bundle)
        .arg("-p")
        .arg(&pidfile)
        .arg("--exit-dir")
        .arg(&exits)
        .arg("--full-attach")
        .arg("-l")
        .arg(format!("k8s-file:{}", log.display()))
        .args(["--log-level", "warning", "--runtime-arg", "--root"])
        .arg(format!("--runtime-arg={}", root.display()))
        .arg("--conmon-pidfile")
        .arg(&monitor_pidfile)
        .env("_OCI_SYNCPIPE", sync_theirs.as_raw_fd().to_string())
        .env("_OCI_STARTPIPE", start_theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .spawn()
        .expect("start conmon");
    drop((sync_theirs, start_theirs));
    // Nothing happens before the start byte: the first process waits for it.
    std::thread::sleep(Duration::from_millis(50));
    if let Some(status) = child.try_wait().unwrap() {
        panic!("conmon did not wait for the start byte: {status}");
    }
    assert!(!bundle.join("attach").exists());
    socket::send(start.as_raw_fd(), &[0], MsgFlags::empty()).expect("start byte");
    let status = child.wait().expect("first process");
    assert!(status.success(), "{status}");
    // The monitor's pid, whole and without a newline, before the first process exited.
    let monitor: i32 = std::fs::read_to_string(&monitor_pidfile)
        .expect("conmon pidfile")
        .parse()
        .expect("a bare number");
    let sync_line = text(&receive(&sync));
    let said: serde_json::Value = serde_json::from_str(sync_line.trim()).expect("sync JSON");
    let pid = said["data"].as_i64().expect("the pid");
    assert!(pid > 0, "{sync_line}");
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        pid.to_string()
    );
    // podman connects before it starts the container; a second client sees the same output.
    let attach = || {
        let client = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        socket::connect(
            client.as_raw_fd(),
            &UnixAddr::new(&bundle.join("attach")).unwrap(),
        )
        .expect("connect to the attach socket");
        client
    };
    let (client, second) = (attach(), attach());
    let started = Command::new(&fake)
        .arg("--root")
        .arg(&root)
        .args(["start", id])
        .status()
        .unwrap();
    assert!(started.success());
    socket::send(client.as_raw_fd(), b"42\n", MsgFlags::empty()).unwrap();
    // Half-close: -i ends the container's stdin, and output still flows.
    socket::shutdown(client.as_raw_fd(), socket::Shutdown::Write).unwrap();
    for client in [&client, &second] {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        loop {
            let packet = receive(client);
            match packet.split_first() {
                None => break,
                Some((2, rest)) => stdout.extend_from_slice(rest),
                Some((3, rest)) => stderr.extend_from_slice(rest),
                Some((other, _)) => panic!("stream byte {other}"),
            }
        }
        assert_eq!(text(&stdout), "out-42\n");
        assert_eq!(text(&stderr), "err\n");
    }
    let exit_file = exits.join(id);
    assert!(
        wait_until(BOUND, || exit_file.exists()),
        "no exit file in {}",
        exits.display()
    );
    assert_eq!(std::fs::read_to_string(&exit_file).unwrap(), "3");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(" stdout F out-42\n") && logged.contains(" stderr F err\n"),
        "{logged}"
    );
    assert!(
        wait_until(BOUND, || process_state(monitor).is_none_or(|s| s == 'Z')),
        "the monitor outlived its container"
    );
    assert!(!bundle.join("attach").exists(), "the attach socket is left");
    let _ = Command::new(&fake)
        .arg("--root")
        .arg(&root)
        .args(["delete", "--force", id])
        .status();
}
