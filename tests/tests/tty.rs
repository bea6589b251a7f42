//! Terminals, under a real terminal emulator (tmux).

use std::process::Command;
use std::time::Duration;
use tether_tests::fixture::BundleSpec;
use tether_tests::harness::{have_binary, root_or_skip, wait_until, Sandbox, REQUIRE_ENV};
use tether_tests::tether::tether_bin;

/// A private tmux server (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: format!("tether-{name}-{}", std::process::id()),
        };
        let status = tmux
            .command()
            .args([
                "new-session",
                "-d",
                "-s",
                "main",
                "-x",
                "80",
                "-y",
                "24",
                command,
            ])
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session");
        tmux
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket]);
        cmd
    }

    fn type_line(&self, text: &str) {
        let status = self
            .command()
            .args(["send-keys", "-t", "main", text, "Enter"])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn screen(&self) -> String {
        let output = self
            .command()
            .args(["capture-pane", "-p", "-t", "main"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until a line of the screen is exactly `line`.
    fn wait_for_line(&self, line: &str) -> bool {
        wait_until(Duration::from_secs(15), || {
            self.screen().lines().any(|l| l.trim_end() == line)
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").status();
    }
}

fn tmux_or_skip(test: &str) -> bool {
    if have_binary("tmux") {
        return true;
    }
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("require") {
        panic!("{test}: tmux is needed (cargo xtask deps installs it)");
    }
    eprintln!("skipping {test}: tmux is not installed");
    false
}

#[test]
fn exec_with_a_terminal_answers_and_follows_resizes() {
    if !root_or_skip("exec_with_a_terminal_answers_and_follows_resizes")
        || !tmux_or_skip("exec_with_a_terminal_answers_and_follows_resizes")
    {
        return;
    }
    let sandbox = Sandbox::new("tty");
    let id = sandbox.id();
    let bundle = sandbox.bundle(&BundleSpec::new(["sleep", "100000"]));
    sandbox.start(id, &bundle, &[]);
    let command = format!(
        "{} --state-dir {} exec -it {id} sh",
        tether_bin().display(),
        sandbox.state_dir().display()
    );
    let tmux = Tmux::new("exec", &command);
    tmux.type_line("echo $((6*7))");
    assert!(
        tmux.wait_for_line("42"),
        "no 42 on the screen:\n{}",
        tmux.screen()
    );
    tmux.type_line("stty size");
    assert!(
        tmux.wait_for_line("24 80"),
        "size not 24 80:\n{}",
        tmux.screen()
    );
    let resized = tmux
        .command()
        .args(["resize-window", "-t", "main", "-x", "100", "-y", "30"])
        .status()
        .unwrap();
    assert!(resized.success());
    // The resize travels as SIGWINCH → frame → TIOCSWINSZ; ask until the shell sees it.
    assert!(
        wait_until(Duration::from_secs(15), || {
            tmux.type_line("stty size");
            std::thread::sleep(Duration::from_millis(200));
            tmux.screen().lines().any(|l| l.trim_end() == "30 100")
        }),
        "resize not seen:\n{}",
        tmux.screen()
    );
    assert!(sandbox.tether_output(&["rm", "-f", id]).status.success());
}

#[test]
fn attach_to_a_container_with_a_terminal() {
    if !root_or_skip("attach_to_a_container_with_a_terminal")
        || !tmux_or_skip("attach_to_a_container_with_a_terminal")
    {
        return;
    }
    let sandbox = Sandbox::new("ttyrun");
    let id = sandbox.id();
    let bundle = sandbox.bundle(&BundleSpec::new(["sh"]).terminal(true));
    sandbox.start(id, &bundle, &["-t", "-i"]);
    let command = format!(
        "{} --state-dir {} attach {id}",
        tether_bin().display(),
        sandbox.state_dir().display()
    );
    let tmux = Tmux::new("attach", &command);
    tmux.type_line("echo $((6*7))");
    assert!(
        tmux.wait_for_line("42"),
        "no 42 on the screen:\n{}",
        tmux.screen()
    );
    tmux.type_line("exit 3");
    let wait = sandbox.tether_output(&["wait", id]);
    assert_eq!(wait.status.code(), Some(3));
    // Everything the terminal showed is in the log too.
    let logs = sandbox.tether_output(&["logs", id]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains("42"));
}

/// `tether run` in the foreground under a terminal: Ctrl-C reaches the container as SIGINT, a
/// second Ctrl-C kills one that ignores it, and tether exits with the container's code.
#[test]
fn ctrl_c_is_passed_on_and_a_second_one_kills() {
    if !root_or_skip("ctrl_c_is_passed_on_and_a_second_one_kills")
        || !tmux_or_skip("ctrl_c_is_passed_on_and_a_second_one_kills")
    {
        return;
    }
    let sandbox = Sandbox::new("ctrlc");
    let rootfs = sandbox.bundle(&BundleSpec::new(["true"])).rootfs();
    for (name, trap, code) in [
        ("polite", "echo got-int; exit 5", "5"),
        ("stubborn", "echo ignored-int", "137"),
    ] {
        let id = sandbox.another_id(name);
        let inner = format!("trap '{trap}' INT; echo ready; while true; do sleep 0.1; done");
        // The wrapper shell has a handler (not an ignore, which tether would inherit): it outlives
        // the Ctrl-C to print tether's exit code.
        let script = sandbox.path().join(format!("{name}.sh"));
        std::fs::write(
            &script,
            format!(
                "trap 'true' INT\n'{}' --state-dir '{}' run --rm --runtime '{}' --runtime-root '{}' --rootfs '{}' {id} -- sh -c \"{inner}\"\necho \"exit=$?\"\nsleep 1000\n",
                tether_bin().display(),
                sandbox.state_dir().display(),
                sandbox.runtime(),
                sandbox.runtime_root().display(),
                rootfs.display(),
            ),
        )
        .unwrap();
        let tmux = Tmux::new(
            &format!("ctrlc-{name}"),
            &format!("sh {}", script.display()),
        );
        assert!(tmux.wait_for_line("ready"), "{}", tmux.screen());
        let ctrl_c = || {
            let sent = tmux
                .command()
                .args(["send-keys", "-t", "main", "C-c"])
                .status();
            assert!(sent.unwrap().success());
        };
        // The terminal echoes ^C before the container's answer on the same line.
        let shows =
            |text: &str| wait_until(Duration::from_secs(15), || tmux.screen().contains(text));
        ctrl_c();
        if code == "137" {
            assert!(shows("ignored-int"), "{}", tmux.screen());
            // It runs on: tether says what ends it.
            assert!(shows("Ctrl-C again to kill it"), "{}", tmux.screen());
            ctrl_c();
        } else {
            assert!(shows("got-int"), "{}", tmux.screen());
        }
        assert!(shows(&format!("exit={code}")), "{}", tmux.screen());
        if code != "137" {
            assert!(
                !tmux.screen().contains("again to kill"),
                "{}",
                tmux.screen()
            );
        }
        assert!(
            wait_until(Duration::from_secs(15), || !sandbox
                .state_dir()
                .join(&id)
                .exists()),
            "--rm removed {id}"
        );
    }
}

/// Ctrl-P Ctrl-Q ends `attach`, `--detach-keys` chooses others for `exec -it`, and the container
/// runs on after either.
#[test]
fn detach_keys_leave_the_container_running() {
    if !root_or_skip("detach_keys_leave_the_container_running")
        || !tmux_or_skip("detach_keys_leave_the_container_running")
    {
        return;
    }
    let sandbox = Sandbox::new("detach");
    let id = sandbox.id();
    let bundle = sandbox.bundle(&BundleSpec::new(["sh"]).terminal(true));
    sandbox.start(id, &bundle, &["-t", "-i"]);
    let tether = format!(
        "{} --state-dir {}",
        tether_bin().display(),
        sandbox.state_dir().display()
    );
    let running = || {
        let state = sandbox.tether_output(&["state", id]);
        String::from_utf8_lossy(&state.stdout).contains("\"running\"")
    };
    // The wrapper prints tether's exit code and stays, so the screen can be read after.
    let attach = Tmux::new(
        "detach-attach",
        &format!("sh -c '{tether} attach {id}; echo exit=$?; sleep 1000'"),
    );
    attach.type_line("echo $((6*7))");
    assert!(attach.wait_for_line("42"), "{}", attach.screen());
    let keys = |tmux: &Tmux, keys: &[&str]| {
        let status = tmux
            .command()
            .args(["send-keys", "-t", "main"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    };
    keys(&attach, &["C-p", "C-q"]);
    assert!(attach.wait_for_line("exit=0"), "{}", attach.screen());
    assert!(
        attach.screen().contains("detached from"),
        "{}",
        attach.screen()
    );
    assert!(running(), "the container stopped at the detach");

    let exec = Tmux::new(
        "detach-exec",
        &format!(
            "sh -c '{tether} exec -it --detach-keys ctrl-x {id} sh; echo exit=$?; sleep 1000'"
        ),
    );
    exec.type_line("echo $((6*8))");
    assert!(exec.wait_for_line("48"), "{}", exec.screen());
    // The default sequence no longer detaches: it is input (the shell's history recall, which
    // Ctrl-U clears again).
    keys(&exec, &["C-p", "C-q", "C-u"]);
    exec.type_line("echo still-here");
    assert!(exec.wait_for_line("still-here"), "{}", exec.screen());
    keys(&exec, &["C-x"]);
    assert!(exec.wait_for_line("exit=0"), "{}", exec.screen());
    assert!(running(), "the container stopped at the exec's detach");

    // A sequence tether cannot read is its own failure.
    let bad = sandbox.tether_output(&["attach", "--detach-keys", "ctrl-1", id]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("detach keys"));
    assert!(sandbox.tether_output(&["rm", "-f", id]).status.success());
}

/// `run --rm` with `-t`, `-i` or `-it` and a command that ends at once: its output, exit 0,
/// nothing left; 200 runs, in a terminal (tmux) for `-t`, with stdin from /dev/null for `-i`.
#[test]
fn run_rm_attached_to_a_short_command_never_loses_it() {
    if !root_or_skip("run_rm_attached_to_a_short_command_never_loses_it")
        || !tmux_or_skip("run_rm_attached_to_a_short_command_never_loses_it")
    {
        return;
    }
    let sandbox = Sandbox::new("rmshort");
    let rootfs = sandbox.bundle(&BundleSpec::shell("true")).rootfs();
    let tether = format!(
        "{} --state-dir {}",
        tether_bin().display(),
        sandbox.state_dir().display()
    );
    const RUNS: usize = 200;
    // -i without a terminal: stdin from /dev/null.
    let mut failed = Vec::new();
    for n in 0..RUNS {
        let id = format!("{}-i{n}", sandbox.id());
        let output = sandbox
            .tether()
            .args(["run", "--rm", "-i", "--runtime-root"])
            .arg(sandbox.runtime_root())
            .arg("--rootfs")
            .arg(&rootfs)
            .args([id.as_str(), "--", "echo", "hi"])
            .output()
            .unwrap();
        if output.status.code() != Some(0) || output.stdout != b"hi\n" {
            failed.push(format!(
                "{id}: {:?} {:?} {}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "-i: {} of {RUNS} failed, the first: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    // -t and -it in a terminal: a script runs them one after the other and counts.
    for flags in ["-t", "-it"] {
        // A terminal's output ends its lines with CR LF.
        let script = sandbox.path().join(format!("runs{flags}.sh"));
        std::fs::write(
            &script,
            format!(
                "ok=0; i=0; cr=$(printf '\\r')\n\
                 while [ $i -lt {RUNS} ]; do i=$((i+1))\n\
                 out=$({tether} run --rm {flags} --runtime-root {root} --rootfs {rootfs} {id}-t$i -- echo hi)\n\
                 [ $? -eq 0 ] && [ \"$out\" = \"hi$cr\" ] && ok=$((ok+1))\n\
                 done\necho done-$ok\nsleep 1000\n",
                rootfs = rootfs.display(),
                root = sandbox.runtime_root().display(),
                id = sandbox.id(),
            ),
        )
        .unwrap();
        let terminal = Tmux::new(
            &format!("rmshort{flags}"),
            &format!("sh {}", script.display()),
        );
        assert!(
            wait_until(Duration::from_secs(300), || terminal
                .screen()
                .contains("done-")),
            "{flags}: {}",
            terminal.screen()
        );
        assert!(
            terminal.wait_for_line(&format!("done-{RUNS}")),
            "{flags}: {}",
            terminal.screen()
        );
    }
    let left = std::fs::read_dir(sandbox.state_dir()).unwrap().count();
    assert_eq!(left, 0, "containers were left");
}

/// `run -it --rm`, then Ctrl-P Ctrl-Q: the container keeps running, and is removed when it exits.
#[test]
fn run_rm_detached_keeps_running_and_is_removed_at_its_exit() {
    if !root_or_skip("run_rm_detached_keeps_running_and_is_removed_at_its_exit")
        || !tmux_or_skip("run_rm_detached_keeps_running_and_is_removed_at_its_exit")
    {
        return;
    }
    let sandbox = Sandbox::new("rmdetach");
    let id = sandbox.id();
    let rootfs = sandbox.bundle(&BundleSpec::shell("true")).rootfs();
    let terminal = Tmux::new(
        "rmdetach",
        &format!(
            "sh -c '{} --state-dir {} run -it --rm --runtime-root {} --rootfs {} {id} -- sh; echo exit=$?; sleep 1000'",
            tether_bin().display(),
            sandbox.state_dir().display(),
            sandbox.runtime_root().display(),
            rootfs.display()
        ),
    );
    terminal.type_line("echo $((6*7))");
    assert!(terminal.wait_for_line("42"), "{}", terminal.screen());
    let status = terminal
        .command()
        .args(["send-keys", "-t", "main", "C-p", "C-q"])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(terminal.wait_for_line("exit=0"), "{}", terminal.screen());
    let state = || {
        let output = sandbox.tether_output(&["state", id]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // Still running a while after the detach (the old client deleted it at once).
    std::thread::sleep(Duration::from_secs(2));
    assert!(state().contains("\"running\""), "{}", state());
    let kill = sandbox.tether_output(&["kill", id]);
    assert!(kill.status.success());
    assert!(
        wait_until(Duration::from_secs(15), || !sandbox
            .state_dir()
            .join(id)
            .exists()),
        "not removed at its exit"
    );
}
