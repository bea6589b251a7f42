//! End-to-end tests of `tether exec` against real runc.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tether_tests::fixture::BundleSpec;
use tether_tests::harness::{root_or_skip, wait_until, Sandbox};
use tether_tests::tether::children_of;

macro_rules! needs_root {
    ($name:literal) => {
        if !root_or_skip($name) {
            return;
        }
    };
}

/// A sandbox with one idle container running.
fn idle_container(name: &str) -> (Sandbox, String) {
    let sandbox = Sandbox::new(name);
    let id = sandbox.id().to_owned();
    let bundle = sandbox.bundle(&BundleSpec::new(["sleep", "100000"]));
    sandbox.start(&id, &bundle, &[]);
    (sandbox, id)
}

/// `tether exec [options] ID -- command...`: `args` are the options, then `--` and the command.
fn exec(sandbox: &Sandbox, id: &str, args: &[&str]) -> std::process::Output {
    let split = args.iter().position(|a| *a == "--").expect("args hold --");
    sandbox
        .tether()
        .arg("exec")
        .args(&args[..split])
        .arg(id)
        .args(&args[split..])
        .output()
        .unwrap()
}

/// The daemon's open fds and what they point at.
fn fds(pid: i32) -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    format!(
                        "{} -> {}",
                        e.file_name().to_string_lossy(),
                        std::fs::read_link(e.path())
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    fds
}

#[test]
fn sequential_execs_are_exact_and_leak_nothing() {
    needs_root!("sequential_execs_are_exact_and_leak_nothing");
    let (sandbox, id) = idle_container("seq");
    let daemon = sandbox.daemon_pid(&id);
    // One exec first, so lazily made things (buffers, the runtime log) exist before counting.
    assert!(exec(&sandbox, &id, &["--", "true"]).status.success());
    // Counted once the daemon has closed that client's connection (the client may return first):
    // then its only socket is the control listener.
    let sockets = |daemon| fds(daemon).iter().filter(|f| f.contains("socket:")).count();
    assert!(wait_until(Duration::from_secs(20), || sockets(daemon) == 1));
    let fds_before = fds(daemon);
    const N: usize = 1000;
    for n in 0..N {
        let output = exec(&sandbox, &id, &["--", "echo", &n.to_string()]);
        assert!(
            output.status.success(),
            "exec {n}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{n}\n"));
    }
    // Compared once the daemon has finished with the last exec (its client may return first, and
    // on a loaded machine the daemon may take a while to see the connection close).
    assert!(
        wait_until(Duration::from_secs(20), || fds(daemon) == fds_before),
        "the daemon's fds changed: {:?} -> {:?}",
        fds_before,
        fds(daemon)
    );
    assert!(wait_until(Duration::from_secs(10), || children_of(daemon)
        .iter()
        .all(|(_, s)| *s != 'Z')));
    let listing: Vec<String> = std::fs::read_dir(sandbox.state_dir().join(&id))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("exec-"))
        .collect();
    assert!(
        listing.is_empty(),
        "per-exec files left behind: {listing:?}"
    );
}

#[test]
fn concurrent_execs_all_answer() {
    needs_root!("concurrent_execs_all_answer");
    let (sandbox, id) = idle_container("conc");
    let children: Vec<_> = (0..50)
        .map(|n| {
            let child = sandbox
                .tether()
                .args([
                    "exec",
                    &id,
                    "--",
                    "sh",
                    "-c",
                    &format!("echo {n}; echo e{n} >&2; exit {}", n % 5),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (n, child)
        })
        .collect();
    for (n, child) in children {
        let output = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{n}\n"));
        assert_eq!(String::from_utf8_lossy(&output.stderr), format!("e{n}\n"));
        assert_eq!(output.status.code(), Some(n % 5));
    }
}

#[test]
fn a_mebibyte_arrives_byte_exact_with_and_without_a_terminal() {
    needs_root!("a_mebibyte_arrives_byte_exact_with_and_without_a_terminal");
    let (sandbox, id) = idle_container("mib");
    // Without a terminal: every byte value, newlines included.
    let script = "i=0; while [ $i -lt 4096 ]; do printf '%s' \"$(head -c 255 /dev/zero | tr '\\0' 'a')\"; printf '\\n'; i=$((i+1)); done";
    let output = exec(&sandbox, &id, &["--", "sh", "-c", script]);
    assert!(output.status.success());
    let line: Vec<u8> = [vec![b'a'; 255], vec![b'\n']].concat();
    assert!(
        output.stdout == line.repeat(4096),
        "pipe output differs ({} bytes)",
        output.stdout.len()
    );
    // With a terminal (which would turn \n into \r\n): 1 MiB without newlines.
    let output = exec(
        &sandbox,
        &id,
        &[
            "-t",
            "--",
            "sh",
            "-c",
            "head -c 1048576 /dev/zero | tr '\\0' x",
        ],
    );
    assert!(output.status.success());
    assert!(
        output.stdout == vec![b'x'; 1 << 20],
        "terminal output differs ({} bytes)",
        output.stdout.len()
    );
}

#[test]
fn exit_codes_follow_the_shell() {
    needs_root!("exit_codes_follow_the_shell");
    let (sandbox, id) = idle_container("codes");
    for (args, code) in [
        (&["--", "true"][..], 0),
        (&["--", "sh", "-c", "exit 7"], 7),
        (&["--", "/etc/passwd"], 126),
        (&["--", "no-such-command"], 127),
        (&["--", "sh", "-c", "kill -KILL $$"], 137),
    ] {
        let output = exec(&sandbox, &id, args);
        assert_eq!(
            output.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdin = sandbox
        .tether()
        .args(["exec", "-i", &id, "--", "wc", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = stdin;
    std::io::Write::write_all(stdin.stdin.as_mut().unwrap(), &[b'z'; 100_000]).unwrap();
    drop(stdin.stdin.take());
    let output = stdin.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "100000");
    // Refused once the container has stopped.
    sandbox.tether_output(&["kill", &id, "KILL"]);
    sandbox.tether_output(&["wait", &id]);
    let output = exec(&sandbox, &id, &["--", "true"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not running"));
}

#[test]
fn background_children_and_timeouts_do_not_hang() {
    needs_root!("background_children_and_timeouts_do_not_hang");
    let (sandbox, id) = idle_container("hang");
    let started = Instant::now();
    let output = exec(&sandbox, &id, &["--", "sh", "-c", "sleep 100 & exit 3"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let output = exec(
        &sandbox,
        &id,
        &[
            "--timeout",
            "1",
            "--",
            "sh",
            "-c",
            "sleep 1000 & sleep 1000",
        ],
    );
    let took = started.elapsed();
    assert_eq!(
        output.status.code(),
        Some(124),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("timed out"));
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    let daemon = sandbox.daemon_pid(&id);
    assert!(
        wait_until(Duration::from_secs(5), || !processes_in_container(
            &sandbox, &id
        )
        .iter()
        .any(|c| c == "sleep 1000 ")),
        "a process of the timed-out exec is left: {:?}",
        processes_in_container(&sandbox, &id)
    );
    assert!(children_of(daemon).iter().all(|(_, s)| *s != 'Z'));
}

/// Command lines of the container's processes.
fn processes_in_container(sandbox: &Sandbox, id: &str) -> Vec<String> {
    let pids = Command::new("runc")
        .arg("--root")
        .arg(sandbox.runtime_root())
        .args(["ps", "--format", "json", id])
        .output()
        .unwrap();
    let pids: Vec<i32> = serde_json::from_slice(&pids.stdout).unwrap_or_default();
    pids.iter()
        .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .collect()
}

#[test]
fn detached_exec_returns_an_id() {
    needs_root!("detached_exec_returns_an_id");
    let (sandbox, id) = idle_container("detach");
    let started = Instant::now();
    let output = exec(&sandbox, &id, &["-d", "--", "sleep", "30"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("exec-"));
    assert!(started.elapsed() < Duration::from_secs(5));
    // The answer can come before the process has exec'd `sleep`: await it.
    assert!(wait_until(Duration::from_secs(10), || {
        processes_in_container(&sandbox, &id)
            .iter()
            .any(|c| c.starts_with("sleep 30"))
    }));
}

#[test]
fn forced_removal_with_an_exec_running_is_prompt() {
    needs_root!("forced_removal_with_an_exec_running_is_prompt");
    let (sandbox, id) = idle_container("rmexec");
    let mut client = sandbox
        .tether()
        .args(["exec", &id, "--", "sleep", "1000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        processes_in_container(&sandbox, &id)
            .iter()
            .any(|c| c == "sleep 1000 ")
    }));
    // runc delete --force waits for the init to be reaped, and the init's exit waits for the
    // exec's process to be reaped: the daemon must keep reaping while runc runs.
    let started = Instant::now();
    let rm = sandbox.tether_output(&["rm", "-f", &id]);
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "rm -f took {:?}",
        started.elapsed()
    );
    let status = client.wait().unwrap();
    assert_eq!(status.code(), Some(137));
}

/// `tether exec -i` with `input` fed from a thread until the pipe breaks (as `yes |` would).
fn exec_with_endless_input(sandbox: &Sandbox, id: &str, command: &[&str]) -> std::process::Output {
    use std::io::Write;
    let mut child = sandbox
        .tether()
        .args(["exec", "-i", id, "--"])
        .args(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let line = b"y\n".repeat(4096);
        while stdin.write_all(&line).is_ok() {}
    });
    let output = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    output
}

#[test]
fn a_command_that_ends_before_its_input_keeps_its_output_and_exit_code() {
    needs_root!("a_command_that_ends_before_its_input_keeps_its_output_and_exit_code");
    let (sandbox, id) = idle_container("stdin-ends");
    for round in 0..5 {
        let output = exec_with_endless_input(&sandbox, &id, &["head", "-1"]);
        assert_eq!(
            (
                String::from_utf8_lossy(&output.stdout).as_ref(),
                output.status.code()
            ),
            ("y\n", Some(0)),
            "round {round}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = exec_with_endless_input(
        &sandbox,
        &id,
        &["sh", "-c", "exec 0<&-; sleep 1; echo hi; exit 4"],
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hi\n");
    assert_eq!(output.status.code(), Some(4));
}

#[test]
fn an_out_of_range_timeout_is_refused_and_the_daemon_lives() {
    needs_root!("an_out_of_range_timeout_is_refused_and_the_daemon_lives");
    let (sandbox, id) = idle_container("timeout-max");
    let daemon = sandbox.daemon_pid(&id);
    let output = exec(
        &sandbox,
        &id,
        &["--timeout", "18446744073709551615", "--", "true"],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("timeout"), "{stderr}");
    assert!(
        std::path::Path::new(&format!("/proc/{daemon}")).exists(),
        "the daemon died"
    );
    let output = exec(&sandbox, &id, &["--", "echo", "alive"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "alive\n");
}

#[test]
fn a_stdin_flood_is_held_to_the_bound() {
    needs_root!("a_stdin_flood_is_held_to_the_bound");
    use std::io::Write;
    let (sandbox, id) = idle_container("flood");
    let daemon = sandbox.daemon_pid(&id);
    let rss = || -> u64 {
        tether_tests::tether::proc_status_field(daemon, "VmRSS")
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    // Warm up (buffers made at the first exec), then measure.
    assert!(exec(&sandbox, &id, &["--", "true"]).status.success());
    let before = rss();
    // A process that never reads its stdin, and a client that pushes 64 MiB at it.
    let mut child = sandbox
        .tether()
        .args(["exec", "-i", &id, "--", "sleep", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let pushed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = pushed.clone();
    let feeder = std::thread::spawn(move || {
        let chunk = vec![b'z'; 64 * 1024];
        for _ in 0..1024 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
            counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
        }
    });
    // Await the client being held back: what it pushed stops growing.
    let mut last = 0;
    assert!(wait_until(Duration::from_secs(20), || {
        std::thread::sleep(Duration::from_millis(200));
        let now = pushed.load(std::sync::atomic::Ordering::SeqCst);
        let settled = now > 0 && now == last;
        last = now;
        settled
    }));
    let grown = rss().saturating_sub(before);
    let accepted = pushed.load(std::sync::atomic::Ordering::SeqCst) >> 10;
    // 1 MiB held for the process, plus what the sockets and the pipe hold.
    assert!(
        accepted < 3 * 1024,
        "{accepted} KiB of input were taken for a process that does not read"
    );
    assert!(
        grown < 3 * 1024,
        "the daemon holds {grown} KiB more for a process that does not read"
    );
    let _ = child.kill();
    let _ = child.wait();
    feeder.join().unwrap();
}
