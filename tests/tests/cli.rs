//! End-to-end tests of the command line as a docker user types it: exit codes, stop, kill, ps,
//! logs windows, top, reopen-log, completion and man pages, against real runc containers.

use std::path::Path;
use std::time::{Duration, Instant};
use tether_tests::fixture::BundleSpec;
use tether_tests::harness::{root_or_skip, wait_until, Sandbox};

const TIMEOUT: Duration = Duration::from_secs(30);

macro_rules! needs_root {
    ($name:literal) => {
        if !root_or_skip($name) {
            return;
        }
    };
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn state(sandbox: &Sandbox, id: &str) -> serde_json::Value {
    let output = sandbox.tether_output(&["state", id]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("state JSON")
}

fn exit_code_of(sandbox: &Sandbox, id: &str) -> i64 {
    let output = sandbox.tether_output(&["wait", id]);
    text(&output.stdout)
        .trim()
        .parse()
        .expect("wait prints the code")
}

#[test]
fn tether_fails_with_125_and_commands_with_their_own_codes() {
    // No root needed for tether's own failures.
    let sandbox = Sandbox::new("codes125");
    std::fs::create_dir_all(sandbox.state_dir()).unwrap();
    for args in [
        &["state", "nosuch"][..],
        &["no-such-subcommand"],
        &["kill", "-s", "NOTASIGNAL", "x"],
        &["stop", "-t", "soon", "x"],
        &[
            "run",
            "--id",
            "x",
            "--bundle",
            "/nonexistent",
            "--log-max-size",
            "10q",
        ],
    ] {
        let output = sandbox.tether_output(args);
        assert_eq!(
            output.status.code(),
            Some(125),
            "tether {args:?}: {}",
            text(&output.stderr)
        );
        let stderr = text(&output.stderr);
        assert!(!stderr.trim().is_empty(), "tether {args:?} says why");
    }
    let version = sandbox.tether_output(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert!(
        text(&version.stdout).contains("(commit "),
        "{}",
        text(&version.stdout)
    );
    let help = sandbox.tether_output(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(
        text(&help.stdout).contains("125"),
        "--help documents the exit codes"
    );

    if !root_or_skip("tether_fails_with_125_and_commands_with_their_own_codes (exec part)") {
        return;
    }
    let id = sandbox.id();
    let bundle = sandbox.bundle(&BundleSpec::new(["sleep", "1000"]));
    sandbox.start(id, &bundle, &[]);
    for (command, code) in [
        (&["no-such-command"][..], 127),
        (&["/etc"], 126),
        (&["sh", "-c", "exit 3"], 3),
    ] {
        let mut args = vec!["exec", id, "--"];
        args.extend_from_slice(command);
        let output = sandbox.tether_output(&args);
        assert_eq!(
            output.status.code(),
            Some(code),
            "exec {command:?}: {}",
            text(&output.stderr)
        );
    }
    assert!(sandbox.tether_output(&["rm", "-f", id]).status.success());
}

#[test]
fn stop_sends_term_then_kill_after_the_grace() {
    needs_root!("stop_sends_term_then_kill_after_the_grace");
    let sandbox = Sandbox::new("stop");
    // PID 1 of its namespace with no TERM handler: TERM does nothing, KILL must come.
    let stubborn = sandbox.another_id("stubborn");
    sandbox.start(
        &stubborn,
        &sandbox.bundle(&BundleSpec::new(["sleep", "1000"])),
        &[],
    );
    // A shell that exits on TERM.
    let polite = sandbox.another_id("polite");
    let script = "trap 'exit 3' TERM; sleep 1000 & wait";
    sandbox.start(&polite, &sandbox.bundle(&BundleSpec::shell(script)), &[]);

    let started = Instant::now();
    let stop = sandbox.tether_output(&["stop", "-t", "2", &stubborn, &polite]);
    let took = started.elapsed();
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    assert_eq!(
        text(&stop.stdout),
        format!("{stubborn}\n{polite}\n"),
        "stop prints each id"
    );
    assert!(
        took >= Duration::from_secs(2),
        "the grace was not waited: {took:?}"
    );
    assert!(took < TIMEOUT, "stop took {took:?}");
    assert_eq!(state(&sandbox, &stubborn)["exit"]["code"], 137);
    assert_eq!(state(&sandbox, &polite)["exit"]["code"], 3);

    // Stopping a stopped container is no error; a missing one is, and the others still stop.
    let again = sandbox.tether_output(&["stop", &polite, "nosuch"]);
    assert_eq!(again.status.code(), Some(125));
    assert_eq!(text(&again.stdout), format!("{polite}\n"));
    assert!(
        text(&again.stderr).contains("nosuch"),
        "{}",
        text(&again.stderr)
    );
    let rm = sandbox.tether_output(&["rm", &stubborn, &polite]);
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    assert!(!sandbox.state_dir().join(&stubborn).exists());
}

#[test]
fn kill_takes_a_signal_flag_several_ids_and_the_older_form() {
    needs_root!("kill_takes_a_signal_flag_several_ids_and_the_older_form");
    let sandbox = Sandbox::new("kill");
    let trapping = "trap 'exit 3' TERM; trap 'exit 4' HUP; sleep 1000 & wait";
    let ids: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|name| {
            let id = sandbox.another_id(name);
            sandbox.start(&id, &sandbox.bundle(&BundleSpec::shell(trapping)), &[]);
            id
        })
        .collect();
    let kill = sandbox.tether_output(&["kill", "-s", "TERM", &ids[0], &ids[1]]);
    assert!(kill.status.success(), "{}", text(&kill.stderr));
    assert_eq!(exit_code_of(&sandbox, &ids[0]), 3);
    assert_eq!(exit_code_of(&sandbox, &ids[1]), 3);
    // The older form: one id, then the signal.
    let kill = sandbox.tether_output(&["kill", &ids[2], "HUP"]);
    assert!(kill.status.success(), "{}", text(&kill.stderr));
    assert_eq!(exit_code_of(&sandbox, &ids[2]), 4);
    // A mistyped signal is refused before anything is signalled.
    for typo in ["65", "SIGNOPE", "TERMM"] {
        let kill = sandbox.tether_output(&["kill", &ids[3], typo]);
        assert_eq!(kill.status.code(), Some(125), "kill {typo}");
        assert!(
            text(&kill.stderr).contains(&format!("invalid signal \"{typo}\"")),
            "kill {typo}: {}",
            text(&kill.stderr)
        );
        assert!(
            text(&kill.stdout).is_empty(),
            "kill {typo} named nothing done"
        );
        assert_eq!(state(&sandbox, &ids[3])["status"], "running", "kill {typo}");
    }
    // No signal: KILL, as docker.
    let kill = sandbox.tether_output(&["kill", &ids[3]]);
    assert!(kill.status.success(), "{}", text(&kill.stderr));
    assert_eq!(exit_code_of(&sandbox, &ids[3]), 137);
    let mut rm = vec!["rm"];
    rm.extend(ids.iter().map(String::as_str));
    assert!(sandbox.tether_output(&rm).status.success());
}

#[test]
fn ps_lists_quietly_cuts_long_ids_and_says_ages() {
    needs_root!("ps_lists_quietly_cuts_long_ids_and_says_ages");
    let sandbox = Sandbox::new("psq");
    // Its first 12 characters are its own (the sandbox's ids share their start).
    let long = format!("longer-{}-{}", sandbox.id(), "x".repeat(40));
    let short = sandbox.another_id("s");
    let bundle = sandbox.bundle(&BundleSpec::new(["sleep", "1000"]));
    sandbox.start(&long, &bundle, &[]);
    sandbox.start(&short, &bundle, &[]);

    let quiet = text(&sandbox.tether_output(&["ps", "-q"]).stdout);
    let mut listed: Vec<&str> = quiet.lines().collect();
    listed.sort();
    let mut expected = vec![long.as_str(), short.as_str()];
    expected.sort();
    assert_eq!(listed, expected);

    let table = text(&sandbox.tether_output(&["ps"]).stdout);
    let cut: String = long.chars().take(12).collect();
    let row = table
        .lines()
        .find(|l| l.starts_with(&cut))
        .expect("the long id's row");
    assert!(!row.contains(&long), "a long id is cut: {row}");
    assert!(row.contains(" ago"), "CREATED is an age: {row}");
    assert!(table.lines().any(|l| l.starts_with(&short)), "{table}");
    let whole = text(&sandbox.tether_output(&["ps", "--no-trunc"]).stdout);
    assert!(whole.lines().any(|l| l.starts_with(&long)), "{whole}");
    // Every row's columns start where the header's do.
    let header = table.lines().next().unwrap();
    let created_at = header.find("CREATED").unwrap();
    for line in table.lines().skip(1) {
        assert_ne!(line.as_bytes()[created_at - 1], b'x', "misaligned: {line}");
    }
    // JSON keeps the RFC 3339 time.
    let json: serde_json::Value =
        serde_json::from_slice(&sandbox.tether_output(&["ps", "--format", "json"]).stdout).unwrap();
    let created = json[0]["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");

    // The cut id names the container.
    assert_eq!(state(&sandbox, &cut)["id"], long.as_str());
    assert!(sandbox
        .tether_output(&["rm", "-f", &cut, &short])
        .status
        .success());
}

#[test]
fn logs_take_a_time_window_and_tail_all() {
    needs_root!("logs_take_a_time_window_and_tail_all");
    let sandbox = Sandbox::new("window");
    let id = sandbox.id();
    let bundle = sandbox.bundle(&BundleSpec::shell(
        "echo one; sleep 0.2; echo two; echo three",
    ));
    sandbox.start(id, &bundle, &[]);
    assert_eq!(exit_code_of(&sandbox, id), 0);
    let stamped = text(&sandbox.tether_output(&["logs", "-t", id]).stdout);
    let times: Vec<&str> = stamped
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(times.len(), 3, "{stamped}");
    assert_ne!(times[0], times[1], "the lines were logged apart: {stamped}");
    let logs = |args: &[&str]| {
        let mut all = vec!["logs"];
        all.extend_from_slice(args);
        all.push(id);
        let output = sandbox.tether_output(&all);
        assert!(
            output.status.success(),
            "logs {args:?}: {}",
            text(&output.stderr)
        );
        text(&output.stdout)
    };
    assert_eq!(logs(&["--since", times[1]]), "two\nthree\n");
    assert_eq!(logs(&["--until", times[1]]), "one\n");
    assert_eq!(logs(&["--since", "10m"]), "one\ntwo\nthree\n");
    assert_eq!(logs(&["--until", "10m"]), "");
    assert_eq!(logs(&["--tail", "all"]), "one\ntwo\nthree\n");
    assert_eq!(logs(&["--tail", "1", "--since", times[0]]), "three\n");
    let bad = sandbox.tether_output(&["logs", "--since", "yesterday", id]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(
        text(&bad.stderr).contains("yesterday"),
        "{}",
        text(&bad.stderr)
    );
    assert!(sandbox.tether_output(&["rm", id]).status.success());
}

#[test]
fn top_shows_the_processes_and_reopen_log_follows_a_moved_log() {
    needs_root!("top_shows_the_processes_and_reopen_log_follows_a_moved_log");
    let sandbox = Sandbox::new("top");
    let id = sandbox.id();
    let bundle = sandbox.bundle(&BundleSpec::shell(
        "while true; do echo tick; sleep 0.05; done & sleep 1000",
    ));
    sandbox.start(id, &bundle, &["--log-max-size", "1m"]);
    let top = sandbox.tether_output(&["top", id]);
    assert!(top.status.success(), "{}", text(&top.stderr));
    let top = text(&top.stdout);
    assert!(top.lines().next().unwrap().contains("CMD"), "{top}");
    assert!(top.contains("sleep 1000"), "{top}");

    let log = state(&sandbox, id)["log_path"].as_str().unwrap().to_owned();
    let moved = format!("{log}.moved");
    assert!(wait_until(TIMEOUT, || std::fs::metadata(&log)
        .is_ok_and(|m| m.len() > 0)));
    std::fs::rename(&log, &moved).unwrap();
    let reopen = sandbox.tether_output(&["reopen-log", id]);
    assert!(reopen.status.success(), "{}", text(&reopen.stderr));
    assert!(
        wait_until(TIMEOUT, || std::fs::read_to_string(&log)
            .is_ok_and(|t| t.contains("tick"))),
        "output goes to a new file at the log's path"
    );
    assert!(sandbox.tether_output(&["rm", "-f", id]).status.success());
    let _ = std::fs::remove_file(moved);
}

#[test]
fn completion_and_man_pages_are_generated() {
    let sandbox = Sandbox::new("complete");
    for shell in ["bash", "zsh", "fish"] {
        let output = sandbox.tether_output(&["completion", shell]);
        assert!(output.status.success(), "{shell}: {}", text(&output.stderr));
        let script = text(&output.stdout);
        assert!(
            script.contains("tether") && script.contains("stop"),
            "{shell}: {script:.200}"
        );
    }
    let dir = sandbox.path().join("man");
    let output = sandbox.tether_output(&["man", dir.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    for page in ["tether.1", "tether-run.1", "tether-stop.1", "tether-logs.1"] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap_or_default();
        assert!(text.contains(".TH"), "{page} is a man page");
    }
    assert!(
        !Path::new(&dir.join("tether-daemon.1")).exists(),
        "the daemon is not for people"
    );
}

/// `tether run` for a rootfs and its flags: (runtime, runtime root, rootfs) for the sandbox.
fn run_rootfs(sandbox: &Sandbox, args: &[&str]) -> std::process::Output {
    let all = run_rootfs_args(sandbox, args);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    sandbox.tether_output(&all)
}

/// `tether run` on the fixture's rootfs with the sandbox's runtime, then `args`.
fn run_rootfs_args(sandbox: &Sandbox, args: &[&str]) -> Vec<String> {
    let rootfs = sandbox.bundle(&BundleSpec::new(["true"])).rootfs();
    let mut all = vec![
        "run".to_owned(),
        "--runtime".into(),
        sandbox.runtime().into(),
        "--runtime-root".into(),
        sandbox.runtime_root().to_string_lossy().into_owned(),
        "--rootfs".into(),
        rootfs.to_string_lossy().into_owned(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    all
}

#[test]
fn a_rootfs_runs_in_the_foreground_and_rm_leaves_nothing() {
    needs_root!("a_rootfs_runs_in_the_foreground_and_rm_leaves_nothing");
    let sandbox = Sandbox::new("fg");
    let id = sandbox.id();
    let output = run_rootfs(
        &sandbox,
        &[
            "--rm",
            id,
            "--",
            "sh",
            "-c",
            "echo hi; echo oops >&2; exit 3",
        ],
    );
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "hi\n");
    assert!(
        text(&output.stderr).contains("oops"),
        "{}",
        text(&output.stderr)
    );
    assert!(
        !sandbox.state_dir().join(id).exists(),
        "--rm removed everything"
    );
    let list = sandbox
        .runtime_command()
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert_eq!(
        text(&list.stdout).trim(),
        "",
        "the runtime has no container left"
    );

    // Its hostname is its name, as docker's.
    let output = run_rootfs(&sandbox, &["--rm", id, "--", "hostname"]);
    assert_eq!(text(&output.stdout).trim(), id);

    // Without --rm the stopped container stays for `logs` and `rm`.
    let output = run_rootfs(&sandbox, &[id, "--", "echo", "kept"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "kept\n");
    assert_eq!(text(&sandbox.tether_output(&["logs", id]).stdout), "kept\n");
    assert!(sandbox.tether_output(&["rm", id]).status.success());

    // A command that is not there: 127, as docker says it.
    let output = run_rootfs(&sandbox, &["--rm", id, "--", "no-such-command"]);
    assert_eq!(output.status.code(), Some(127), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("no-such-command"),
        "{}",
        text(&output.stderr)
    );
    assert!(
        !sandbox.state_dir().join(id).exists(),
        "a failed start leaves nothing"
    );
    let output = run_rootfs(&sandbox, &["-d", id, "--", "/etc"]);
    assert_eq!(output.status.code(), Some(126), "{}", text(&output.stderr));
}

#[test]
fn a_command_that_cannot_start_is_127_or_126_with_crun_too() {
    needs_root!("a_command_that_cannot_start_is_127_or_126_with_crun_too");
    // crun words it otherwise than runc: "executable file `x` not found", "open executable".
    if !tether_tests::harness::have_binary("crun") {
        assert!(
            std::env::var(tether_tests::harness::REQUIRE_ENV).as_deref() != Ok("require"),
            "crun is needed (cargo xtask deps installs it)"
        );
        eprintln!("skipping: crun is not installed");
        return;
    }
    let sandbox = Sandbox::with_runtime("crun-start", "crun");
    let id = sandbox.id();
    let output = run_rootfs(&sandbox, &["--rm", id, "--", "no-such-command"]);
    assert_eq!(output.status.code(), Some(127), "{}", text(&output.stderr));
    let output = run_rootfs(&sandbox, &["--rm", id, "--", "/etc"]);
    assert_eq!(output.status.code(), Some(126), "{}", text(&output.stderr));
    assert!(
        !sandbox.state_dir().join(id).exists(),
        "a failed start leaves nothing"
    );
}

#[test]
fn rootfs_flags_make_the_spec_the_runtime_gets() {
    needs_root!("rootfs_flags_make_the_spec_the_runtime_gets");
    let sandbox = Sandbox::new("flags");
    let id = sandbox.id();
    let data = sandbox.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), "from-host").unwrap();
    let volume = format!("{}:/data:ro", data.display());
    let script = "echo $MODE $(pwd) $(id -u):$(id -g) $(hostname) $(cat /data/f); \
                  touch /data/x 2>/dev/null || echo read-only; sleep 1000";
    let output = run_rootfs(
        &sandbox,
        &[
            "-d",
            "-e",
            "MODE=prod",
            "-v",
            &volume,
            "-w",
            "/data",
            "-u",
            "1000:1001",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "50",
            "--hostname",
            "box",
            id,
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let logs = || text(&sandbox.tether_output(&["logs", id]).stdout);
    assert!(
        wait_until(TIMEOUT, || logs().contains("read-only")),
        "{}",
        logs()
    );
    assert_eq!(logs(), "prod /data 1000:1001 box from-host\nread-only\n");
    // The spec written is what runc got: it is in the container's state dir.
    let bundle = state(&sandbox, id)["bundle"].as_str().unwrap().to_owned();
    assert!(
        bundle.starts_with(sandbox.state_dir().to_str().unwrap()),
        "{bundle}"
    );
    let spec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&bundle).join("config.json")).unwrap(),
    )
    .unwrap();
    let resources = &spec["linux"]["resources"];
    assert_eq!(resources["memory"]["limit"], 64 << 20);
    assert_eq!(resources["cpu"]["quota"], 50_000);
    assert_eq!(resources["pids"]["limit"], 50);
    assert!(sandbox.tether_output(&["rm", "-f", id]).status.success());
    assert!(
        !Path::new(&bundle).exists(),
        "the bundle goes with the container"
    );

    // Careless flags: one line, 125, nothing made.
    for (flags, says) in [
        (&["-e", "=x"][..], "has no name"),
        (&["-v", "/no/such/dir:/x"], "does not exist"),
        (&["-v", "relative-dst"], "SRC:DST"),
        (&["-w", "relative"], "absolute"),
        (&["--hostname", "bad name"], "hostname"),
        (&["--cpus", "0.001"], "--cpus"),
        (&["-u", "nosuchuser"], "/etc/passwd"),
    ] {
        let mut args = flags.to_vec();
        args.extend([id, "--", "true"]);
        let output = run_rootfs(&sandbox, &args);
        assert_eq!(output.status.code(), Some(125), "{flags:?}");
        assert!(
            text(&output.stderr).contains(says),
            "{flags:?}: {}",
            text(&output.stderr)
        );
        assert!(
            !sandbox.state_dir().join(id).exists(),
            "{flags:?} left state behind"
        );
    }

    // `tether spec` writes runc's default config.json, and never over one.
    let dir = sandbox.path().join("spec");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = sandbox.tether_output(&["spec", "--bundle", dir.to_str().unwrap()]);
    assert!(spec.status.success(), "{}", text(&spec.stderr));
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(written["root"]["path"], "rootfs");
    assert_eq!(written["process"]["args"][0], "sh");
    let again = sandbox.tether_output(&["spec", "--bundle", dir.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(125));
}

#[test]
fn run_detached_with_rm_is_removed_when_it_exits() {
    needs_root!("run_detached_with_rm_is_removed_when_it_exits");
    let sandbox = Sandbox::new("drm");
    let id = sandbox.id();
    let gate = sandbox.path().join("gate");
    std::fs::create_dir_all(&gate).unwrap();
    let volume = format!("{}:/gate", gate.display());
    let output = run_rootfs(
        &sandbox,
        &[
            "-d",
            "--rm",
            "-v",
            &volume,
            id,
            "--",
            "sh",
            "-c",
            "until [ -e /gate/go ]; do sleep 0.05; done; exit 3",
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(state(&sandbox, id)["status"], "running");
    std::fs::write(gate.join("go"), "").unwrap();
    assert!(
        wait_until(TIMEOUT, || !sandbox.state_dir().join(id).exists()),
        "the container was not removed at its exit"
    );
    let list = sandbox
        .runtime_command()
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert_eq!(text(&list.stdout).trim(), "", "the runtime has it still");
}

#[test]
fn the_daemon_tells_systemd_it_is_ready() {
    needs_root!("the_daemon_tells_systemd_it_is_ready");
    use std::os::unix::net::UnixDatagram;
    let sandbox = Sandbox::new("notify");
    let id = sandbox.id();
    std::fs::create_dir_all(sandbox.path()).unwrap();
    let path = sandbox.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let args = run_rootfs_args(&sandbox, &["-d", id, "--", "sleep", "1000"]);
    let output = sandbox
        .tether()
        .args(&args)
        .env("NOTIFY_SOCKET", &path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let mut message = [0u8; 64];
    let n = socket
        .recv(&mut message)
        .expect("READY=1 within the timeout");
    assert_eq!(&message[..n], b"READY=1\n");
    // The container runs (had runc been given the socket, it would wait for the container's own
    // READY), and the variable is not in its environment.
    assert_eq!(state(&sandbox, id)["status"], "running");
    let env = sandbox.tether_output(&["exec", id, "--", "env"]);
    assert!(
        !text(&env.stdout).contains("NOTIFY_SOCKET"),
        "{}",
        text(&env.stdout)
    );
    assert!(sandbox.tether_output(&["rm", "-f", id]).status.success());

    // A NOTIFY_SOCKET that is no socket path is tether's own failure, before anything starts.
    let output = sandbox
        .tether()
        .args(&args)
        .env("NOTIFY_SOCKET", "relative/path")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125));
    assert!(
        text(&output.stderr).contains("NOTIFY_SOCKET"),
        "{}",
        text(&output.stderr)
    );
    assert!(!sandbox.state_dir().join(id).exists());
}

#[test]
fn stats_show_cpu_memory_against_the_limit_and_tasks() {
    needs_root!("stats_show_cpu_memory_against_the_limit_and_tasks");
    let sandbox = Sandbox::new("stats");
    let id = sandbox.id();
    let output = run_rootfs(
        &sandbox,
        &[
            "-d",
            "--memory",
            "64m",
            id,
            "--",
            "sh",
            "-c",
            "sleep 1000 & sleep 1000",
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let table = sandbox.tether_output(&["stats", "--no-stream", id]);
    assert!(table.status.success(), "{}", text(&table.stderr));
    let table = text(&table.stdout);
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.contains("CPU %") && header.contains("MEM USAGE / LIMIT") && header.contains("PIDS"),
        "{table}"
    );
    let row = lines.next().unwrap_or_default();
    assert!(row.starts_with(id) && row.contains("/ 64.00MiB"), "{table}");

    let json = sandbox.tether_output(&["stats", "--no-stream", "--format", "json", id]);
    assert!(json.status.success(), "{}", text(&json.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON rows");
    let row = &rows[0];
    assert_eq!(row["id"], *id);
    assert_eq!(row["memory_limit_bytes"], 64u64 << 20);
    assert!(row["memory_bytes"].as_u64().unwrap() > 0, "{row}");
    // sh runs the first sleep, then becomes the second (it execs its last command).
    assert!(row["pids"].as_u64().unwrap() >= 2, "two sleeps: {row}");
    assert!(row["cpu_percent"].as_f64().unwrap() >= 0.0, "{row}");

    // Named and not running: tether's own failure.
    assert!(sandbox
        .tether_output(&["stop", "-t", "0", id])
        .status
        .success());
    let stopped = sandbox.tether_output(&["stats", "--no-stream", id]);
    assert_eq!(stopped.status.code(), Some(125));
    assert!(
        text(&stopped.stderr).contains("not running"),
        "{}",
        text(&stopped.stderr)
    );
    assert!(sandbox.tether_output(&["rm", id]).status.success());
}

#[test]
fn events_tell_start_pause_resume_exit_and_delete() {
    needs_root!("events_tell_start_pause_resume_exit_and_delete");
    use std::io::BufRead;
    let sandbox = Sandbox::new("events");
    let id = sandbox.id();
    std::fs::create_dir_all(sandbox.state_dir()).unwrap();
    let mut events = sandbox
        .tether()
        .arg("events")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = events.id();
    assert!(
        wait_until(TIMEOUT, || tether_tests::harness::inotify_watches(pid) >= 1),
        "tether events never watched the state dir"
    );
    let (lines, received) = std::sync::mpsc::channel();
    let stdout = events.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(|l| l.ok())
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let gate = sandbox.path().join("gate");
    std::fs::create_dir_all(&gate).unwrap();
    let volume = format!("{}:/gate", gate.display());
    let script = "until [ -e /gate/go ]; do sleep 0.05; done; exit 3";
    let output = run_rootfs(
        &sandbox,
        &["-d", "-v", &volume, id, "--", "sh", "-c", script],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let mut seen: Vec<serde_json::Value> = Vec::new();
    let mut next = |want: &str| {
        let deadline = Instant::now() + TIMEOUT;
        while let Ok(line) =
            received.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
            seen.push(event.clone());
            if event["id"] == *id && event["type"] == want {
                return event;
            }
        }
        panic!("no {want} event; saw {seen:?}");
    };
    next("start");
    assert!(sandbox.tether_output(&["pause", id]).status.success());
    next("pause");
    assert!(sandbox.tether_output(&["resume", id]).status.success());
    next("resume");
    std::fs::write(gate.join("go"), "").unwrap();
    assert_eq!(next("exit")["exit_code"], 3);
    assert!(sandbox.tether_output(&["rm", id]).status.success());
    let deleted = next("delete");
    assert!(
        deleted["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{deleted}"
    );
    let _ = events.kill();
    let _ = events.wait();
}

#[test]
fn a_foreground_run_with_stdin_shows_its_output_from_the_first_byte() {
    needs_root!("a_foreground_run_with_stdin_shows_its_output_from_the_first_byte");
    use std::io::Write;
    let sandbox = Sandbox::new("fgi");
    let id = sandbox.id();
    // The first line is written at once, before `tether run` could have attached.
    let args = run_rootfs_args(
        &sandbox,
        &[
            "--rm",
            "-i",
            id,
            "--",
            "sh",
            "-c",
            "echo first; cat; exit 4",
        ],
    );
    let mut child = sandbox
        .tether()
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"typed\n").unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(text(&output.stdout), "first\ntyped\n");
    assert!(!sandbox.state_dir().join(id).exists(), "--rm removed it");
}

/// A process of the sandbox's hung runtime, if one is left: its `sleep` has this argument.
const HUNG_SLEEP: &str = "100017";

fn hung_runtime_processes() -> Vec<i32> {
    let wanted = format!("sleep\0{HUNG_SLEEP}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            (cmdline == wanted.as_bytes()).then_some(pid)
        })
        .collect()
}

#[test]
fn a_hung_runtime_is_killed_at_its_timeout_and_leaves_nothing() {
    needs_root!("a_hung_runtime_is_killed_at_its_timeout_and_leaves_nothing");
    let sandbox = Sandbox::new("hung");
    // A runtime that never answers, and whose child holds its pipes open.
    let runtime = sandbox.path().join("hung-runtime");
    std::fs::write(&runtime, format!("#!/bin/sh\nsleep {HUNG_SLEEP}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
    let id = sandbox.id().to_owned();
    let bundle = sandbox.bundle(&BundleSpec::shell("true"));
    let started = Instant::now();
    let output = sandbox
        .tether()
        .args(["run", "-d", "--id", &id, "--bundle"])
        .arg(bundle.path())
        .arg("--runtime")
        .arg(&runtime)
        .args(["--runtime-timeout", "2s"])
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("2s"),
        "the error names the timeout: {stderr}"
    );
    assert!(
        took < Duration::from_secs(2 + 10),
        "tether run returned after {took:?}"
    );
    assert!(
        !sandbox.state_dir().join(&id).exists(),
        "the container's state is left"
    );
    let mut left = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            left = hung_runtime_processes();
            left.is_empty()
        }),
        "the runtime's processes are left: {left:?}"
    );
}

/// `logs -f` follows the log through its rotations: a follower started before a burst of about
/// 9 MB through 1 MiB × 5 files gets the lines in order, to the last, and ends with the container.
#[test]
fn logs_follow_keeps_up_through_rotations_under_a_burst() {
    needs_root!("logs_follow_keeps_up_through_rotations_under_a_burst");
    let sandbox = Sandbox::new("follow");
    let id = sandbox.id();
    let bundle = sandbox.bundle(&BundleSpec::shell("sleep 1; seq 1 200000"));
    sandbox.start(
        id,
        &bundle,
        &["--log-max-size", "1m", "--log-max-files", "5"],
    );
    let follower = sandbox
        .tether()
        .args(["logs", "-f", id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = follower.id() as i32;
    let output = std::thread::spawn(move || follower.wait_with_output().unwrap());
    let ended = wait_until(Duration::from_secs(60), || output.is_finished());
    if !ended {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let output = output.join().unwrap();
    let stdout = text(&output.stdout);
    let numbers: Vec<u64> = stdout.lines().map(|l| l.parse().unwrap()).collect();
    assert!(
        ended,
        "logs -f stalled after line {:?} of 200000",
        numbers.last()
    );
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "in order, no line twice"
    );
    assert_eq!(numbers.first(), Some(&1));
    assert_eq!(numbers.last(), Some(&200000), "to the last line");
    if numbers.len() < 200000 {
        assert!(
            text(&output.stderr).contains("rotated away"),
            "{} lines missed, unsaid: {}",
            200000 - numbers.len(),
            text(&output.stderr)
        );
    }
    println!("logs -f got {} of 200000 lines", numbers.len());
    assert!(sandbox.tether_output(&["rm", id]).status.success());
}

/// A daemon that does not answer (here: stopped) keeps its container without -f, and `rm -f`
/// kills it and removes the container: `rm` never reports success while the daemon lives.
#[test]
fn rm_force_removes_a_container_whose_daemon_does_not_answer() {
    needs_root!("rm_force_removes_a_container_whose_daemon_does_not_answer");
    let sandbox = Sandbox::new("rmhung");
    let id = sandbox.id();
    let init = sandbox.start(id, &sandbox.bundle(&BundleSpec::shell("sleep 1000")), &[]);
    let daemon = nix::unistd::Pid::from_raw(sandbox.daemon_pid(id));
    nix::sys::signal::kill(daemon, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let rm = sandbox.tether_output(&["rm", id]);
    assert_eq!(rm.status.code(), Some(125), "{}", text(&rm.stderr));
    assert!(sandbox.state_dir().join(id).is_dir(), "kept without -f");
    let rm = sandbox.tether_output(&["rm", "-f", id]);
    assert!(rm.status.success(), "rm -f: {}", text(&rm.stderr));
    assert_eq!(text(&rm.stdout).trim(), id);
    let gone = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |stat| stat.contains(") Z "))
    };
    assert!(gone(daemon.as_raw()), "the daemon is left");
    assert!(
        wait_until(TIMEOUT, || gone(init)),
        "the container's process is left"
    );
    assert!(!sandbox.state_dir().join(id).exists(), "its state is left");
    let list = sandbox.runtime_command().arg("list").output().unwrap();
    assert!(!text(&list.stdout).contains(id), "the runtime still has it");
}

/// A follower stopped through a burst and resumed after it goes on from the oldest file left, in
/// order to the last line, says that output was rotated away, and ends with the container.
#[test]
fn logs_follow_stopped_through_a_burst_resumes_and_says_what_it_missed() {
    needs_root!("logs_follow_stopped_through_a_burst_resumes_and_says_what_it_missed");
    let sandbox = Sandbox::new("followstop");
    let id = sandbox.id();
    let bundle = sandbox.bundle(&BundleSpec::shell("echo first; read go; seq 1 200000"));
    sandbox.start(
        id,
        &bundle,
        &["-i", "--log-max-size", "1m", "--log-max-files", "5"],
    );
    let follower = sandbox
        .tether()
        .args(["logs", "-f", id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(follower.id() as i32);
    let mut follower = follower;
    let mut stdout_pipe = follower.stdout.take().unwrap();
    let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let printed = printed.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 65536];
            while let Ok(n) = stdout_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                printed.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let output = std::thread::spawn(move || follower.wait_with_output().unwrap());
    // The follower has printed the first line (it has the log open), then is stopped through the
    // whole burst.
    assert!(wait_until(TIMEOUT, || printed
        .lock()
        .unwrap()
        .starts_with(b"first\n")));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let mut attach = sandbox
        .tether()
        .args(["attach", id])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    attach.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(exit_code_of(&sandbox, id), 0);
    let _ = attach.kill();
    let _ = attach.wait();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let ended = wait_until(Duration::from_secs(60), || output.is_finished());
    if !ended {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    let output = output.join().unwrap();
    reader.join().unwrap();
    let stdout = text(&printed.lock().unwrap());
    let numbers: Vec<u64> = stdout.lines().skip(1).map(|l| l.parse().unwrap()).collect();
    assert!(ended, "logs -f stalled after {:?}", numbers.last());
    assert!(stdout.starts_with("first\n"), "{:.40}", stdout);
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "in order");
    assert_eq!(numbers.last(), Some(&200000), "to the last line");
    assert!(numbers.len() < 200000, "retention kept only 5 MiB");
    // It says how many bytes: each missed line was a record of a 30-byte timestamp, " stdout F ",
    // the number and a newline.
    let seen: std::collections::HashSet<u64> = numbers.iter().copied().collect();
    let missed: usize = (1..=200000u64)
        .filter(|n| !seen.contains(n))
        .map(|n| 30 + 10 + n.to_string().len() + 1)
        .sum();
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{missed} bytes of the log were rotated away before they could be read"
        )),
        "{} lines ({missed} bytes) missed; it said: {stderr}",
        200000 - numbers.len(),
    );
    assert!(sandbox.tether_output(&["rm", id]).status.success());
}

/// Only containers are acted on in the state dir: a runtime's root or a socket directory there is
/// never listed, named by a prefix, stated, stopped, taken over by `run`, or removed.
#[test]
fn rm_and_prefixes_touch_only_containers() {
    needs_root!("rm_and_prefixes_touch_only_containers");
    let sandbox = Sandbox::new("onlyours");
    let id = sandbox.id().to_owned();
    sandbox.start(&id, &sandbox.bundle(&BundleSpec::shell("sleep 1000")), &[]);
    let state_dir = sandbox.state_dir();
    // runc's state as a careless config puts it, a socket directory, a near namesake.
    let others = ["runc", "s", &format!("{id}x-notes")];
    for other in others {
        std::fs::create_dir_all(state_dir.join(other).join("abc")).unwrap();
        std::fs::write(state_dir.join(other).join("abc").join("state.json"), "{}").unwrap();
    }
    for args in [
        &["rm", "ru"][..],
        &["rm", "-f", "runc"],
        &["rm", "-f", "s"],
        &["state", "s"],
        &["stop", "-t", "0", "runc"],
        &["kill", "runc"],
    ] {
        let output = sandbox.tether_output(args);
        assert_eq!(output.status.code(), Some(125), "tether {args:?}");
        assert!(
            text(&output.stderr).contains("no such container"),
            "tether {args:?}: {}",
            text(&output.stderr)
        );
    }
    let run = sandbox.tether_run("runc", &sandbox.bundle(&BundleSpec::shell("true")), &[]);
    assert_eq!(run.status.code(), Some(125));
    assert!(
        text(&run.stderr).contains("is not a container of tether's"),
        "{}",
        text(&run.stderr)
    );
    let ps = text(&sandbox.tether_output(&["ps", "-q"]).stdout);
    assert_eq!(ps.trim(), id, "ps lists only the container");
    // A prefix names the one container, the namesake directory notwithstanding.
    let prefix = &id[..id.len() - 1];
    let state = sandbox.tether_output(&["state", prefix]);
    assert!(state.status.success(), "{}", text(&state.stderr));
    let rm = sandbox.tether_output(&["rm", "-f", prefix]);
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    for other in others {
        assert!(
            state_dir
                .join(other)
                .join("abc")
                .join("state.json")
                .exists(),
            "{other} was touched"
        );
    }
}

/// The memory cgroup directory of `pid` (v1's memory hierarchy, or the v2 unified one).
fn memory_cgroup(pid: i32) -> std::path::PathBuf {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v1 = cgroups.lines().find_map(|l| {
        let (_, rest) = l.split_once(':')?;
        let (controllers, path) = rest.split_once(':')?;
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| format!("/sys/fs/cgroup/memory{path}"))
    });
    let v2 = || {
        cgroups
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(|path| format!("/sys/fs/cgroup{path}"))
    };
    v1.or_else(v2).expect("a memory cgroup").into()
}

fn memory_limit(cgroup: &Path) -> u64 {
    ["memory.limit_in_bytes", "memory.max"]
        .iter()
        .find_map(|file| std::fs::read_to_string(cgroup.join(file)).ok())
        .expect("a memory limit file")
        .trim()
        .parse()
        .unwrap()
}

/// The same id in two state dirs: two cgroups, each with its own limit, both gone at `rm`.
#[test]
fn the_same_id_in_two_state_dirs_has_two_cgroups() {
    needs_root!("the_same_id_in_two_state_dirs_has_two_cgroups");
    let (first, second) = (Sandbox::new("cgone"), Sandbox::new("cgtwo"));
    let id = format!("same-{}", std::process::id());
    let mut cgroups = Vec::new();
    for (sandbox, memory, bytes) in [(&first, "64m", 64u64 << 20), (&second, "32m", 32 << 20)] {
        let output = run_rootfs(
            sandbox,
            &["-d", "--memory", memory, &id, "--", "sleep", "1000"],
        );
        assert!(output.status.success(), "{}", text(&output.stderr));
        let pid = state(sandbox, &id)["pid"].as_i64().unwrap() as i32;
        let cgroup = memory_cgroup(pid);
        assert!(
            cgroup.to_string_lossy().contains(&format!("/tether/{id}-")),
            "{}",
            cgroup.display()
        );
        assert_eq!(memory_limit(&cgroup), bytes, "{}", cgroup.display());
        cgroups.push(cgroup);
    }
    assert_ne!(cgroups[0], cgroups[1]);
    assert_eq!(
        memory_limit(&cgroups[0]),
        64 << 20,
        "the second did not change the first's"
    );
    for sandbox in [&first, &second] {
        assert!(sandbox.tether_output(&["rm", "-f", &id]).status.success());
    }
    for cgroup in &cgroups {
        assert!(!cgroup.exists(), "{} is left", cgroup.display());
    }
}

/// `stop -t 3` on three containers that ignore TERM waits out one grace period, not three (as
/// docker and podman do): each is killed after 3 s, all at once.
#[test]
fn stop_of_several_waits_out_their_grace_periods_together() {
    needs_root!("stop_of_several_waits_out_their_grace_periods_together");
    let sandbox = Sandbox::new("stopmany");
    let ignoring = sandbox.bundle(&BundleSpec::shell("trap '' TERM; sleep 1000 & wait"));
    let ids: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let id = sandbox.another_id(name);
            sandbox.start(&id, &ignoring, &[]);
            id
        })
        .collect();
    let mut args = vec!["stop", "-t", "3"];
    args.extend(ids.iter().map(String::as_str));
    let started = Instant::now();
    let stop = sandbox.tether_output(&args);
    let took = started.elapsed();
    println!("stop -t 3 of three TERM-ignoring containers: {took:?}");
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    let printed: Vec<&str> = std::str::from_utf8(&stop.stdout).unwrap().lines().collect();
    assert_eq!(printed, ids, "each id printed once, in the order given");
    for id in &ids {
        assert_eq!(exit_code_of(&sandbox, id), 137, "{id} was killed");
    }
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(6),
        "stop took {took:?}: the grace periods ran one after the other"
    );
    let mut rm = vec!["rm"];
    rm.extend(ids.iter().map(String::as_str));
    assert!(sandbox.tether_output(&rm).status.success());
}

/// With `--bundle`, the flags that make a spec for `--rootfs` are refused, naming the flag; they
/// were silently ignored. Nothing is made.
#[test]
fn bundle_refuses_the_rootfs_flags() {
    let sandbox = Sandbox::new("bundleflags");
    let bundle = sandbox.path().join("bundle");
    for (flag, value) in [
        ("-e", Some("A=1")),
        ("-v", Some("/tmp:/tmp")),
        ("-w", Some("/")),
        ("-u", Some("1")),
        ("--memory", Some("32m")),
        ("--cpus", Some("1")),
        ("--pids-limit", Some("10")),
        ("--hostname", Some("h")),
        ("--read-only", None),
        ("--tmpfs", Some("/tmp")),
    ] {
        let mut args = vec!["run", "-d", "--bundle", bundle.to_str().unwrap(), flag];
        args.extend(value);
        args.push("flagged");
        let output = sandbox.tether_output(&args);
        assert_eq!(output.status.code(), Some(125), "{flag}");
        let stderr = text(&output.stderr);
        assert!(
            stderr
                .contains("goes with --rootfs; with --bundle, set it in the bundle's config.json")
                && stderr.contains(flag),
            "{flag}: {stderr}"
        );
        assert!(!sandbox.state_dir().join("flagged").exists(), "{flag}");
    }
    let help = text(&sandbox.tether_output(&["run", "--help"]).stdout);
    assert!(help.contains("refused with --bundle"), "{help}");
}

/// Runs `tether ARGS` with stdout into a pipe whose reader takes one line and closes it (as
/// `| head -1` does); returns the line, tether's exit code and its stderr.
fn first_line_then_close(sandbox: &Sandbox, args: &[&str]) -> (String, Option<i32>, String) {
    use std::io::BufRead;
    let mut child = sandbox
        .tether()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (line, output.status.code(), text(&output.stderr))
}

/// `exec … | head -1` and `attach … | head -1` end quietly once their output is closed (141, as a
/// client killed by SIGPIPE), where they said "exec stream: Broken pipe" and exited 125; `-it`
/// with stdin that is not a terminal is refused at once (it hung for good).
#[test]
fn a_closed_pipe_ends_exec_and_attach_quietly_and_it_needs_a_terminal() {
    needs_root!("a_closed_pipe_ends_exec_and_attach_quietly_and_it_needs_a_terminal");
    let sandbox = Sandbox::new("pipes");
    let id = sandbox.id();
    let chatty = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.01; done";
    sandbox.start(id, &sandbox.bundle(&BundleSpec::shell(chatty)), &[]);
    let (line, code, stderr) =
        first_line_then_close(&sandbox, &["exec", id, "--", "seq", "1", "1000000"]);
    assert_eq!(
        (line.as_str(), code, stderr.as_str()),
        ("1\n", Some(141), "")
    );
    let (line, code, stderr) = first_line_then_close(&sandbox, &["attach", "--no-stdin", id]);
    assert!(line.trim().parse::<u64>().is_ok(), "{line:?}");
    assert_eq!((code, stderr.as_str()), (Some(141), ""));
    assert_eq!(state(&sandbox, id)["status"], "running", "it runs on");
    // -it without a terminal: refused before anything is made.
    let exec = sandbox.tether_output(&["exec", "-it", id, "sh"]);
    assert_eq!(exec.status.code(), Some(125));
    assert!(
        text(&exec.stderr).contains("the input device is not a TTY"),
        "{}",
        text(&exec.stderr)
    );
    let run = run_rootfs(&sandbox, &["--rm", "-it", "piped", "--", "sh"]);
    assert_eq!(run.status.code(), Some(125));
    assert!(
        text(&run.stderr).contains("the input device is not a TTY"),
        "{}",
        text(&run.stderr)
    );
    assert!(!sandbox.state_dir().join("piped").exists());
    assert!(sandbox.tether_output(&["rm", "-f", id]).status.success());
}

/// `run --replace` removes a container of that id first, running or left by a shim that died, so
/// a service's restart starts it again; without it, the error says what works.
#[test]
fn run_replace_removes_the_old_container_first() {
    needs_root!("run_replace_removes_the_old_container_first");
    let sandbox = Sandbox::new("replace");
    let id = sandbox.id();
    let old = run_rootfs(&sandbox, &["-d", id, "--", "sleep", "1000"]);
    assert!(old.status.success(), "{}", text(&old.stderr));
    let first = state(&sandbox, id)["pid"].as_i64().unwrap() as i32;
    let again = run_rootfs(&sandbox, &["-d", id, "--", "sleep", "1000"]);
    assert_eq!(again.status.code(), Some(125));
    assert!(
        text(&again.stderr).contains(&format!("`tether rm -f {id}` removes it")),
        "{}",
        text(&again.stderr)
    );
    // Running: replaced.
    let replaced = run_rootfs(&sandbox, &["-d", "--replace", id, "--", "sleep", "1000"]);
    assert!(replaced.status.success(), "{}", text(&replaced.stderr));
    let second = state(&sandbox, id)["pid"].as_i64().unwrap() as i32;
    assert_ne!(first, second);
    assert!(
        wait_until(TIMEOUT, || !std::path::Path::new(&format!("/proc/{first}"))
            .exists()),
        "the old container still runs"
    );
    // Its shim killed (what systemd's restart finds): replaced too.
    let daemon = sandbox.daemon_pid(id);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let replaced = run_rootfs(&sandbox, &["-d", "--replace", id, "--", "sleep", "1000"]);
    assert!(replaced.status.success(), "{}", text(&replaced.stderr));
    assert_eq!(state(&sandbox, id)["status"], "running");
    assert!(sandbox.tether_output(&["rm", "-f", id]).status.success());
}

/// Values docker users type: sizes with a fraction, "no limit" as 0 or -1, CPUs the host has,
/// `-e KEY` from this shell and `--env-file`, users by name, durations with units and fractions,
/// a date for `--since`, ps options for `top`.
#[test]
fn values_docker_users_type_are_taken() {
    needs_root!("values_docker_users_type_are_taken");
    let sandbox = Sandbox::new("values");
    let id = sandbox.id();
    let env_file = sandbox.path().join("env");
    std::fs::write(
        &env_file,
        "# the file's own\nFROM_FILE=file\n\nFROM_SHELL\n",
    )
    .unwrap();
    let script = "echo \"$FROM_FILE $FROM_SHELL $SET\"; id -u; id -g; sleep 1000";
    let mut args = run_rootfs_args(
        &sandbox,
        &[
            "-d",
            "--memory",
            "1.5g",
            "--pids-limit",
            "-1",
            "--cpus",
            "0",
            "-u",
            "nobody:root",
            "--env-file",
            env_file.to_str().unwrap(),
            "-e",
            "SET=flag",
            id,
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    args.insert(0, "--state-dir".into());
    args.insert(1, sandbox.state_dir().to_string_lossy().into_owned());
    let run = std::process::Command::new(tether_tests::tether::tether_bin())
        .args(&args)
        .env("FROM_SHELL", "shell")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let pid = state(&sandbox, id)["pid"].as_i64().unwrap() as i32;
    assert_eq!(memory_limit(&memory_cgroup(pid)), 3 << 29, "1.5g");
    let logs = || text(&sandbox.tether_output(&["logs", id]).stdout);
    assert!(
        wait_until(TIMEOUT, || logs().lines().count() >= 3),
        "{}",
        logs()
    );
    assert_eq!(logs(), "file shell flag\n65534\n0\n");
    // A user by name for exec too.
    let exec = sandbox.tether_output(&["exec", "-u", "nobody", id, "--", "id", "-u"]);
    assert_eq!(text(&exec.stdout), "65534\n", "{}", text(&exec.stderr));
    // More CPUs than the host has: refused, naming the host's count.
    let cpus = run_rootfs(&sandbox, &["-d", "--cpus", "9999", "toomany", "--", "true"]);
    assert_eq!(cpus.status.code(), Some(125));
    assert!(
        text(&cpus.stderr).contains("this host's"),
        "{}",
        text(&cpus.stderr)
    );
    // Durations with units, and a fraction of a second.
    let timed = sandbox.tether_output(&["exec", "--timeout", "1s", id, "--", "sleep", "100"]);
    assert_eq!(timed.status.code(), Some(124), "{}", text(&timed.stderr));
    // A date for --since: today's lines are there.
    let today = text(
        &std::process::Command::new("date")
            .args(["-u", "+%F"])
            .output()
            .unwrap()
            .stdout,
    );
    let since = sandbox.tether_output(&["logs", "--since", today.trim(), id]);
    assert_eq!(
        text(&since.stdout),
        "file shell flag\n65534\n0\n",
        "{}",
        text(&since.stderr)
    );
    // ps options for top: the container's processes, in ps's own columns.
    let top = sandbox.tether_output(&["top", id, "-o", "pid,comm"]);
    assert!(top.status.success(), "{}", text(&top.stderr));
    let top = text(&top.stdout);
    assert!(
        top.lines().next().unwrap_or_default().contains("COMMAND"),
        "{top}"
    );
    assert!(
        top.lines().any(|l| l.ends_with("sleep")) && top.lines().count() == 2,
        "{top}"
    );
    let stop = sandbox.tether_output(&["stop", "-t", "1.5", id]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    assert!(sandbox.tether_output(&["rm", id]).status.success());
}

/// docker's commands that tether has no command for get one line saying what tether has (clap
/// guessed `completion` for `cp`), a command without `--` says where it goes, TERM is set only
/// with a terminal, and the completion scripts offer container ids and hide `daemon` and `man`.
#[test]
fn docker_habits_get_answers_and_completion_offers_ids() {
    needs_root!("docker_habits_get_answers_and_completion_offers_ids");
    let sandbox = Sandbox::new("habits");
    let id = sandbox.id();
    for (args, said) in [
        (&["cp", "a", "b"][..], "tether has no `cp` command"),
        (&["images"], "not images"),
    ] {
        let output = sandbox.tether_output(args);
        assert_eq!(output.status.code(), Some(125), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(said) && stderr.lines().count() == 1,
            "{args:?}: {stderr}"
        );
    }
    let run = run_rootfs(&sandbox, &[id, "echo", "hi"]);
    assert_eq!(run.status.code(), Some(125));
    assert!(
        text(&run.stderr).contains("put the command after --"),
        "{}",
        text(&run.stderr)
    );
    let run = run_rootfs(
        &sandbox,
        &["-d", id, "--", "sh", "-c", "echo term=$TERM; sleep 1000"],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(wait_until(TIMEOUT, || text(
        &sandbox.tether_output(&["logs", id]).stdout
    ) == "term=\n"));
    // bash: `tether stop <TAB>` offers the container.
    let script = sandbox.path().join("tether.bash");
    let completion = sandbox.tether_output(&["completion", "bash"]);
    std::fs::write(&script, &completion.stdout).unwrap();
    assert!(!text(&completion.stdout).contains("tether,daemon"));
    let bin_dir = tether_tests::tether::tether_bin()
        .parent()
        .unwrap()
        .to_owned();
    let offered = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(tether stop ''); COMP_CWORD=2; _tether_ids tether '' stop; echo \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
        .env("TETHER_STATE_DIR", sandbox.state_dir())
        .output()
        .unwrap();
    assert!(
        text(&offered.stdout)
            .split_whitespace()
            .any(|word| word == id),
        "{} {}",
        text(&offered.stdout),
        text(&offered.stderr)
    );
    // zsh: the id arguments complete with `_tether_ids`, which offers the container.
    if tether_tests::harness::have_binary("zsh") {
        let script = sandbox.path().join("_tether");
        let completion = sandbox.tether_output(&["completion", "zsh"]);
        std::fs::write(&script, &completion.stdout).unwrap();
        assert!(
            text(&completion.stdout).contains("'*::ids -- The container ids:_tether_ids'"),
            "{}",
            text(&completion.stdout)
        );
        // `_describe -t containers container ids`, as the completion system would list it.
        let offered = std::process::Command::new("zsh")
            .arg("-fc")
            .arg(format!(
                "source {} 2>/dev/null; _describe() {{ print -l -- \"${{(@P)4}}\"; }}; _tether_ids",
                script.display()
            ))
            .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
            .env("TETHER_STATE_DIR", sandbox.state_dir())
            .output()
            .unwrap();
        assert!(
            text(&offered.stdout).lines().any(|line| line == id),
            "{} {}",
            text(&offered.stdout),
            text(&offered.stderr)
        );
    } else {
        assert_ne!(
            std::env::var(tether_tests::harness::REQUIRE_ENV).as_deref(),
            Ok("require"),
            "zsh is missing (`cargo xtask deps` installs it)"
        );
    }
    assert!(sandbox.tether_output(&["rm", "-f", id]).status.success());
}

/// Names and ids as docker users have them: `run -d` prints the id (so `logs $(run -d …)` works),
/// an id is made when none is given, `--name` names it; `ps -a` is taken and lists newest first
/// with the command; `logs -n`; `inspect --format`; `wait` and `state` take several ids.
#[test]
fn names_and_ids_work_as_docker_users_expect() {
    needs_root!("names_and_ids_work_as_docker_users_expect");
    let sandbox = Sandbox::new("names");
    let named = sandbox.another_id("named");
    let run = run_rootfs(
        &sandbox,
        &[
            "-d",
            "--name",
            &named,
            "--",
            "sh",
            "-c",
            "echo one; echo two; exit 3",
        ],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(text(&run.stdout).trim(), named, "run -d prints the id");
    let run = run_rootfs(&sandbox, &["-d", "--", "sleep", "1000"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let made = text(&run.stdout).trim().to_owned();
    assert!(
        made.len() == 12 && made.bytes().all(|b| b.is_ascii_hexdigit()),
        "a made id: {made:?}"
    );
    assert_eq!(
        text(&sandbox.tether_output(&["wait", &named]).stdout),
        "3\n"
    );
    assert_eq!(
        text(&sandbox.tether_output(&["logs", "-n", "1", &named]).stdout),
        "two\n"
    );
    // ps -a: newest first, with the command.
    let ps = sandbox.tether_output(&["ps", "-a"]);
    assert!(ps.status.success(), "{}", text(&ps.stderr));
    let table = text(&ps.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].contains("COMMAND"), "{table}");
    assert!(
        lines[1].starts_with(&made) && lines[1].contains("\"sleep 1000\""),
        "{table}"
    );
    assert!(
        lines[2].starts_with(&named) && lines[2].contains("\"sh -c echo one; echo…\""),
        "{table}"
    );
    // inspect --format, docker's names and a path into the state.
    let pid = state(&sandbox, &made)["pid"].as_i64().unwrap();
    let inspect = sandbox.tether_output(&["inspect", "-f", "{{.State.Pid}}", &made]);
    assert_eq!(
        text(&inspect.stdout),
        format!("{pid}\n"),
        "{}",
        text(&inspect.stderr)
    );
    let inspect = sandbox.tether_output(&[
        "inspect",
        "--format",
        "{{.Id}} {{.State.ExitCode}} {{.exit.code}}",
        &named,
        &made,
    ]);
    assert_eq!(
        text(&inspect.stdout),
        format!("{named} 3 3\n{made} 0 <no value>\n"),
        "{}",
        text(&inspect.stderr)
    );
    let bad = sandbox.tether_output(&["inspect", "-f", "{{len .Id}}", &made]);
    assert_eq!(bad.status.code(), Some(125));
    // state and wait with several ids.
    let both: serde_json::Value =
        serde_json::from_slice(&sandbox.tether_output(&["state", &named, &made]).stdout).unwrap();
    assert_eq!(both.as_array().map(Vec::len), Some(2));
    assert!(sandbox.tether_output(&["kill", &made]).status.success());
    let waited = sandbox.tether_output(&["wait", &named, &made]);
    assert_eq!(
        (text(&waited.stdout), waited.status.code()),
        ("3\n137\n".to_owned(), Some(0))
    );
    assert!(sandbox
        .tether_output(&["rm", &named, &made])
        .status
        .success());
}

/// `--tmpfs PATH[:OPTIONS]`: a writable, empty, bounded tmpfs where `--read-only` makes the rest
/// read-only; its options are checked.
#[test]
fn tmpfs_gives_a_read_only_container_a_place_to_write() {
    needs_root!("tmpfs_gives_a_read_only_container_a_place_to_write");
    let sandbox = Sandbox::new("tmpfs");
    let id = sandbox.id();
    let script = "echo x > /tmp/f && cat /tmp/f; touch /etc/x 2>/dev/null || echo read-only; \
                  grep ' /tmp ' /proc/mounts | cut -d' ' -f3,4";
    let run = run_rootfs(
        &sandbox,
        &[
            "--rm",
            "--read-only",
            "--tmpfs",
            "/tmp:size=1m",
            id,
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    let out = text(&run.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["x", "read-only"], "{out}");
    assert!(
        lines[2].starts_with("tmpfs ")
            && lines[2].contains("size=1024k")
            && lines[2].contains("nosuid"),
        "{out}"
    );
    for bad in ["tmp", "/", "/a/../b", "/tmp:suid"] {
        let run = run_rootfs(&sandbox, &["--tmpfs", bad, "bad", "--", "true"]);
        assert_eq!(run.status.code(), Some(125), "{bad}");
        assert!(
            text(&run.stderr).contains("--tmpfs"),
            "{bad}: {}",
            text(&run.stderr)
        );
    }
}

/// Lines of this process's mountinfo that name `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|line| line.contains(&dir))
        .map(str::to_owned)
        .collect()
}

/// `--rootfs DIR:O`: the container writes to an overlay whose changes live in its state dir; DIR
/// stays as it was, and nothing is left mounted once the container is removed, by its daemon or,
/// with the daemon killed, by `rm -f`. A path overlayfs cannot take is refused before anything
/// is made.
#[test]
fn an_overlay_rootfs_keeps_the_directory_and_goes_with_the_container() {
    needs_root!("an_overlay_rootfs_keeps_the_directory_and_goes_with_the_container");
    let sandbox = Sandbox::new("overlay");
    let id = sandbox.id();
    let rootfs = sandbox.bundle(&BundleSpec::new(["true"])).rootfs();
    let before: Vec<_> = std::fs::read_dir(&rootfs)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let overlay = format!("{}:O", rootfs.display());
    let common = [
        "run",
        "--runtime",
        sandbox.runtime(),
        "--runtime-root",
        &sandbox.runtime_root().to_string_lossy(),
        "--rootfs",
        &overlay,
    ]
    .map(str::to_owned);
    let args = |extra: &[&str]| -> Vec<String> {
        let mut all = common.to_vec();
        all.extend(extra.iter().map(|a| a.to_string()));
        all
    };
    let run = |extra: &[&str]| {
        let all = args(extra);
        sandbox.tether_output(&all.iter().map(String::as_str).collect::<Vec<_>>())
    };

    let output = run(&[
        "--rm",
        id,
        "--",
        "sh",
        "-c",
        "echo changed > /marker && rm /bin/true && cat /marker && ls /bin/true 2>&1 || true",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let out = text(&output.stdout);
    assert!(out.starts_with("changed\n"), "{out}");
    assert!(
        !rootfs.join("marker").exists(),
        "the overlay wrote through to the directory"
    );
    assert!(
        rootfs.join("bin/true").exists(),
        "a removal reached the directory"
    );
    let after: Vec<_> = std::fs::read_dir(&rootfs)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after);
    assert!(
        mounts_under(&sandbox.state_dir()).is_empty(),
        "{:?}",
        mounts_under(&sandbox.state_dir())
    );
    assert!(!sandbox.state_dir().join(id).exists());

    // Detached: its changes are in its state dir while it runs; its daemon killed, `rm -f` still
    // unmounts before it removes anything.
    let kept = sandbox.another_id("kept");
    let output = run(&[
        "-d",
        &kept,
        "--",
        "sh",
        "-c",
        "echo kept > /kept; exec sleep 1000",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let upper = sandbox.state_dir().join(&kept).join("overlay/upper");
    assert!(
        wait_until(TIMEOUT, || upper.join("kept").exists()),
        "no change in {}",
        upper.display()
    );
    let seen = sandbox.tether_output(&["exec", &kept, "--", "cat", "/kept"]);
    assert_eq!(text(&seen.stdout), "kept\n", "{}", text(&seen.stderr));
    assert_eq!(mounts_under(&sandbox.state_dir()).len(), 1);
    sandbox.kill_daemon(&kept);
    let removed = sandbox.tether_output(&["rm", "-f", &kept]);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    assert!(
        mounts_under(&sandbox.state_dir()).is_empty(),
        "{:?}",
        mounts_under(&sandbox.state_dir())
    );
    assert!(!sandbox.state_dir().join(&kept).exists());
    assert!(!rootfs.join("kept").exists());

    // overlayfs separates its directories with ',' and ':'.
    let odd = sandbox.path().join("a,b");
    std::fs::create_dir_all(&odd).unwrap();
    let refused =
        sandbox.tether_output(&["run", "--rootfs", &format!("{}:O", odd.display()), "odd"]);
    assert_eq!(refused.status.code(), Some(125));
    assert!(
        text(&refused.stderr).contains("no ',' or ':'"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!sandbox.state_dir().join("odd").exists());
}

/// `run --init`: a tiny init as PID 1 passes `stop`'s TERM on to a shell, which ends in 143 at
/// once (137 after the grace period without it), reaps an orphan that exits, and exits with the
/// command's code; a command not found is 127. Only a statically linked tether can serve as the
/// init, and a dynamic one says so.
#[test]
fn init_passes_signals_on_and_reaps_orphans() {
    needs_root!("init_passes_signals_on_and_reaps_orphans");
    let Some(static_tether) = tether_tests::tether::static_tether_bin() else {
        assert_ne!(
            std::env::var(tether_tests::harness::REQUIRE_ENV).as_deref(),
            Ok("require"),
            "TETHER_STATIC_BIN is not set: `cargo xtask test` builds the static tether and sets it"
        );
        eprintln!("skipping init_passes_signals_on_and_reaps_orphans: TETHER_STATIC_BIN not set");
        return;
    };
    let sandbox = Sandbox::new("init");
    let id = sandbox.id();
    let with_static = |args: &[String]| {
        std::process::Command::new(&static_tether)
            .arg("--state-dir")
            .arg(sandbox.state_dir())
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let run = |extra: &[&str]| {
        let mut all = run_rootfs_args(&sandbox, &["--init"]);
        all.extend(extra.iter().map(|a| a.to_string()));
        with_static(&all)
    };

    // An orphan that lives a while, then the command that stays.
    let output = run(&[
        "-d",
        id,
        "--",
        "sh",
        "-c",
        "sh -c 'sleep 2 &'; exec sleep 1000",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let init = state(&sandbox, id)["pid"].as_i64().unwrap() as i32;
    let cmdline = std::fs::read(format!("/proc/{init}/cmdline")).unwrap();
    assert!(
        cmdline.starts_with(b"/dev/tether-init\0sh\0-c\0"),
        "{}",
        text(&cmdline)
    );
    let listed = text(&sandbox.tether_output(&["ps"]).stdout);
    assert!(
        listed.contains("sh -c") && !listed.contains("tether-init"),
        "ps shows the command, not the init: {listed}"
    );
    let children = || tether_tests::tether::children_of(init);
    assert!(
        wait_until(TIMEOUT, || children().len() == 2),
        "the orphan never came to the init: {:?}",
        children()
    );
    assert!(
        wait_until(TIMEOUT, || {
            let now = children();
            now.len() == 1 && now[0].1 != 'Z'
        }),
        "the orphan was not reaped: {:?}",
        children()
    );
    let stopped = sandbox.tether_output(&["stop", "-t", "60", id]);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    assert_eq!(
        exit_code_of(&sandbox, id),
        143,
        "TERM did not reach the shell"
    );
    assert!(sandbox.tether_output(&["rm", id]).status.success());

    let second = sandbox.another_id("code");
    let output = run(&["--rm", &second, "--", "sh", "-c", "echo out; exit 3"]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "out\n");

    let third = sandbox.another_id("missing");
    let output = run(&["--rm", &third, "--", "no-such-command"]);
    assert_eq!(output.status.code(), Some(127));
    assert!(
        text(&output.stderr).contains("no-such-command"),
        "{}",
        text(&output.stderr)
    );

    // The debug build is linked dynamically.
    let refused = run_rootfs(&sandbox, &["--init", "dynamic", "--", "true"]);
    assert_eq!(refused.status.code(), Some(125));
    assert!(
        text(&refused.stderr).contains("linked dynamically"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!sandbox.state_dir().join("dynamic").exists());
    let left: Vec<_> = std::fs::read_dir(sandbox.state_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
