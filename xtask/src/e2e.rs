//! `cargo xtask e2e containerd [--shim tether|runc|both]`: a real containerd (private root, state
//! and socket; CRI off) drives containers through `ctr` with tether's runtime v2 shim, and the same
//! suite runs with containerd's own `containerd-shim-runc-v2`, which shows the tests themselves are
//! right. The image is the busybox fixture, imported from an OCI archive built here.

use crate::bench::containerd::{PrivateContainerd, IMAGE, NAMESPACE};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TETHER_RUNTIME: &str = "io.containerd.tether.v2";
const RUNC_RUNTIME: &str = "io.containerd.runc.v2";
/// Prints 1, 2, 3, ... one line every 20 ms.
const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo $i; sleep 0.02; done";

type Check = Result<(), String>;

struct Ctx<'a> {
    containerd: &'a mut PrivateContainerd,
    tether: PathBuf,
    runtime: &'static str,
    shim: &'static str,
    dir: PathBuf,
}

impl Ctx<'_> {
    fn id(&self, name: &str) -> String {
        format!("{}-{name}", self.shim)
    }

    fn ctr_command(&self) -> Command {
        let mut command = Command::new("ctr");
        command
            .arg("-a")
            .arg(self.containerd.socket())
            .args(["-n", NAMESPACE]);
        command
    }

    /// Runs ctr to the end, whatever its status.
    fn ctr_raw(&self, args: &[&str]) -> Result<Output, String> {
        self.ctr_command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("ctr: {e}"))
    }

    fn ctr(&self, args: &[&str]) -> Result<String, String> {
        self.containerd.ctr(args)
    }

    /// The STATUS column of `ctr task ls` for `id` ("" when it is not listed).
    fn task_status(&self, id: &str) -> Result<String, String> {
        let list = self.ctr(&["task", "ls"])?;
        Ok(list
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&id))
            .and_then(|cols| cols.get(2).map(|s| s.to_string()))
            .unwrap_or_default())
    }

    fn wait_status(&self, id: &str, want: &str) -> Check {
        let mut last = String::new();
        wait_until(Duration::from_secs(15), || {
            last = self.task_status(id)?;
            Ok(last == want)
        })
        .map_err(|e| format!("{id}: status {want} not reached (last {last:?}): {e}"))
    }

    /// Kills, deletes the task and the container; errors ignored (cleanup).
    fn remove(&self, id: &str) {
        self.containerd.remove(id);
    }
}

/// Polls `ready` every 20 ms until it holds, for at most `timeout`.
fn wait_until(timeout: Duration, mut ready: impl FnMut() -> Result<bool, String>) -> Check {
    let deadline = Instant::now() + timeout;
    loop {
        crate::bench::check_interrupt()?;
        if ready()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("not within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn expect(condition: bool, message: impl FnOnce() -> String) -> Check {
    if condition {
        Ok(())
    } else {
        Err(message())
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `ctr run --rm` prints the container's output, and its exit code is ctr's.
fn run_rm(ctx: &mut Ctx<'_>) -> Check {
    let id = ctx.id("run-rm");
    let out = ctx.ctr_raw(&[
        "run",
        "--rm",
        "--runtime",
        ctx.runtime,
        IMAGE,
        &id,
        "sh",
        "-c",
        "echo hello; echo oops >&2; exit 3",
    ])?;
    expect(text(&out.stdout) == "hello\n", || {
        format!(
            "stdout {:?}, stderr {:?}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })?;
    expect(text(&out.stderr).contains("oops"), || {
        format!("stderr {:?}", text(&out.stderr))
    })?;
    expect(out.status.code() == Some(3), || {
        format!("exit status {:?}, want 3", out.status)
    })?;
    expect(ctx.task_status(&id)?.is_empty(), || {
        "the task is still listed after --rm".into()
    })
}

/// run -d, exec, ps, pause, resume, kill, delete.
fn lifecycle(ctx: &mut Ctx<'_>) -> Check {
    let id = ctx.id("lifecycle");
    ctx.ctr(&[
        "run",
        "-d",
        "--runtime",
        ctx.runtime,
        IMAGE,
        &id,
        "sleep",
        "1000",
    ])?;
    ctx.wait_status(&id, "RUNNING")?;
    let exec = ctx.ctr_raw(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo from-exec; exit 5",
    ])?;
    expect(text(&exec.stdout) == "from-exec\n", || {
        format!(
            "exec stdout {:?}, stderr {:?}",
            text(&exec.stdout),
            text(&exec.stderr)
        )
    })?;
    expect(exec.status.code() == Some(5), || {
        format!("exec exit status {:?}, want 5", exec.status)
    })?;
    let list = ctx.ctr(&["task", "ls"])?;
    let pid = list
        .lines()
        .find(|l| l.starts_with(&id))
        .and_then(|l| l.split_whitespace().nth(1))
        .ok_or_else(|| format!("no pid for {id} in {list:?}"))?
        .to_owned();
    let ps = ctx.ctr(&["task", "ps", &id])?;
    expect(
        ps.lines()
            .any(|l| l.split_whitespace().next() == Some(pid.as_str())),
        || format!("task ps does not list the init {pid}: {ps:?}"),
    )?;
    ctx.ctr(&["task", "pause", &id])?;
    ctx.wait_status(&id, "PAUSED")?;
    ctx.ctr(&["task", "resume", &id])?;
    ctx.wait_status(&id, "RUNNING")?;
    ctx.ctr(&["task", "kill", "-s", "SIGKILL", &id])?;
    ctx.wait_status(&id, "STOPPED")?;
    ctx.ctr(&["task", "delete", &id])?;
    expect(ctx.task_status(&id)?.is_empty(), || {
        "the task is still listed after delete".into()
    })?;
    ctx.ctr(&["containers", "delete", &id]).map(drop)
}

/// `--log-uri file://` writes the container's stdout and stderr to the file.
fn log_uri(ctx: &mut Ctx<'_>) -> Check {
    let id = ctx.id("log-uri");
    let log = ctx.dir.join(format!("{id}.log"));
    let uri = format!("file://{}", log.display());
    ctx.ctr(&[
        "run",
        "-d",
        "--runtime",
        ctx.runtime,
        "--log-uri",
        &uri,
        IMAGE,
        &id,
        "sh",
        "-c",
        "echo logged; echo to-stderr >&2",
    ])?;
    ctx.wait_status(&id, "STOPPED")?;
    let mut content = String::new();
    wait_until(Duration::from_secs(5), || {
        content = std::fs::read_to_string(&log).unwrap_or_default();
        Ok(content.contains("logged\n") && content.contains("to-stderr\n"))
    })
    .map_err(|e| format!("log {content:?}: {e}"))?;
    ctx.ctr(&["task", "delete", &id])?;
    ctx.ctr(&["containers", "delete", &id]).map(drop)
}

/// `--log-uri binary://` (nerdctl's logging driver): the binary gets stdout on fd 3, stderr on fd 4,
/// signals readiness on fd 5, and is told the container and namespace in its environment.
fn log_binary(ctx: &mut Ctx<'_>) -> Check {
    use std::os::unix::fs::PermissionsExt;
    let id = ctx.id("log-binary");
    let logger = ctx.dir.join("logger.sh");
    std::fs::write(
        &logger,
        "#!/bin/sh\n# logger.sh dir DIR: the container's streams into DIR\n\
         exec 5>&-\n\
         echo \"$CONTAINER_NAMESPACE\" > \"$2/$CONTAINER_ID.namespace\"\n\
         cat <&3 > \"$2/$CONTAINER_ID.stdout\" &\n\
         cat <&4 > \"$2/$CONTAINER_ID.stderr\"\n\
         wait\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::set_permissions(&logger, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let out = ctx.dir.join(format!("{id}-logger"));
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let uri = format!("binary://{}?dir={}", logger.display(), out.display());
    ctx.ctr(&[
        "run",
        "-d",
        "--runtime",
        ctx.runtime,
        "--log-uri",
        &uri,
        IMAGE,
        &id,
        "sh",
        "-c",
        "echo to-logger; echo err-to-logger >&2",
    ])?;
    ctx.wait_status(&id, "STOPPED")?;
    let read =
        |ext: &str| std::fs::read_to_string(out.join(format!("{id}.{ext}"))).unwrap_or_default();
    wait_until(Duration::from_secs(10), || {
        Ok(read("stdout") == "to-logger\n" && read("stderr") == "err-to-logger\n")
    })
    .map_err(|e| {
        format!(
            "logger got stdout {:?}, stderr {:?}: {e}",
            read("stdout"),
            read("stderr")
        )
    })?;
    expect(read("namespace") == format!("{NAMESPACE}\n"), || {
        format!("logger was told namespace {:?}", read("namespace"))
    })?;
    ctx.ctr(&["task", "delete", &id])?;
    ctx.ctr(&["containers", "delete", &id]).map(drop)
}

/// A real terminal: a private tmux server (its own socket) running one command; killed on drop.
struct Terminal {
    server: String,
}

impl Terminal {
    fn start(name: &str, command: &str) -> Result<Terminal, String> {
        let terminal = Terminal {
            server: format!("tether-e2e-{name}-{}", std::process::id()),
        };
        terminal.tmux(&[
            "new-session",
            "-d",
            "-s",
            "main",
            "-x",
            "100",
            "-y",
            "30",
            command,
        ])?;
        Ok(terminal)
    }

    fn tmux(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("tmux")
            .args(["-L", &self.server])
            .args(args)
            .output()
            .map_err(|e| format!("tmux: {e}"))?;
        if out.status.success() {
            Ok(text(&out.stdout))
        } else {
            Err(format!(
                "tmux {}: {}",
                args.join(" "),
                text(&out.stderr).trim()
            ))
        }
    }

    fn type_line(&self, line: &str) -> Check {
        self.tmux(&["send-keys", "-t", "main", "-l", line])?;
        self.tmux(&["send-keys", "-t", "main", "Enter"]).map(drop)
    }

    fn screen(&self) -> Result<String, String> {
        self.tmux(&["capture-pane", "-p", "-t", "main"])
    }

    /// Waits until a line of the screen ends with `want`.
    fn wait_for(&self, want: &str) -> Check {
        let mut screen = String::new();
        wait_until(Duration::from_secs(15), || {
            screen = self.screen()?;
            Ok(screen.lines().any(|l| l.trim_end().ends_with(want)))
        })
        .map_err(|e| format!("the terminal never showed {want:?}: {e}; it shows {screen:?}"))
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// `ctr run -t` in a real terminal answers a command.
fn tty(ctx: &mut Ctx<'_>) -> Check {
    let id = ctx.id("tty");
    let ctr = format!(
        "ctr -a {} -n {NAMESPACE} run --rm -t --runtime {} {IMAGE} {id} sh; echo CTR-EXIT-$?; sleep 60",
        ctx.containerd.socket().display(),
        ctx.runtime
    );
    let terminal = Terminal::start(&id, &ctr)?;
    terminal.wait_for("#")?;
    terminal.type_line("echo $((6*7))")?;
    terminal.wait_for("42")?;
    terminal.type_line("exit")?;
    terminal.wait_for("CTR-EXIT-0")
}

/// `ctr task exec -t` in a real terminal: it answers, its size follows the terminal's (ResizePty),
/// and its exit code is ctr's.
fn exec_tty(ctx: &mut Ctx<'_>) -> Check {
    let id = ctx.id("exec-tty");
    ctx.ctr(&[
        "run",
        "-d",
        "--runtime",
        ctx.runtime,
        IMAGE,
        &id,
        "sleep",
        "1000",
    ])?;
    ctx.wait_status(&id, "RUNNING")?;
    let ctr = format!(
        "ctr -a {} -n {NAMESPACE} task exec -t --exec-id sh1 {id} sh; echo EXEC-EXIT-$?; sleep 60",
        ctx.containerd.socket().display(),
    );
    let terminal = Terminal::start(&id, &ctr)?;
    terminal.wait_for("#")?;
    terminal.type_line("stty size")?;
    terminal.wait_for("30 100")?;
    terminal.tmux(&["resize-window", "-t", "main", "-x", "120", "-y", "40"])?;
    // The resize travels as SIGWINCH to ctr, then ResizePty: ask until the shell sees it.
    wait_until(Duration::from_secs(15), || {
        terminal.type_line("stty size")?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(terminal.screen()?.lines().any(|l| l.trim_end() == "40 120"))
    })
    .map_err(|e| format!("the resize did not reach the exec: {e}"))?;
    terminal.type_line("exit 3")?;
    terminal.wait_for("EXEC-EXIT-3")?;
    ctx.ctr(&["task", "kill", "-s", "SIGKILL", &id])?;
    ctx.wait_status(&id, "STOPPED")?;
    ctx.ctr(&["task", "delete", &id])?;
    ctx.ctr(&["containers", "delete", &id]).map(drop)
}

/// `ctr run` feeds its stdin to the container's, and the end of ctr's input (CloseIO) is the end of
/// the container's. The input comes once the task runs: ctr loses the CloseIO of an input that ends
/// while the task is being created (containerd#4489), whatever the shim.
fn stdin(ctx: &mut Ctx<'_>) -> Check {
    use std::io::Write;
    let id = ctx.id("stdin");
    let mut child = ctx
        .ctr_command()
        .args([
            "run",
            "--rm",
            "--runtime",
            ctx.runtime,
            IMAGE,
            &id,
            "sh",
            "-c",
        ])
        .arg("wc -l; echo done")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ctr: {e}"))?;
    let mut input = child.stdin.take().expect("piped");
    let fed = ctx.wait_status(&id, "RUNNING").and_then(|()| {
        (0..1000)
            .try_for_each(|n| writeln!(input, "line {n}"))
            .map_err(|e| format!("write ctr's stdin: {e}"))
    });
    drop(input);
    let exited = wait_until(Duration::from_secs(15), || {
        Ok(child.try_wait().map_err(|e| e.to_string())?.is_some())
    });
    if exited.is_err() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    fed?;
    exited.map_err(|e| format!("the container never saw the end of its input: {e}"))?;
    expect(text(&out.stdout) == "1000\ndone\n", || {
        format!(
            "stdout {:?}, stderr {:?}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })?;
    expect(out.status.success(), || format!("ctr: {:?}", out.status))
}

/// `ctr task metrics` reads the container's cgroup statistics through the shim (Stats).
fn metrics(ctx: &mut Ctx<'_>) -> Check {
    let id = ctx.id("metrics");
    ctx.ctr(&[
        "run",
        "-d",
        "--runtime",
        ctx.runtime,
        IMAGE,
        &id,
        "sleep",
        "1000",
    ])?;
    ctx.wait_status(&id, "RUNNING")?;
    let metrics = ctx.ctr(&["task", "metrics", "--format", "json", &id])?;
    let json: serde_json::Value =
        serde_json::from_str(&metrics).map_err(|e| format!("metrics {metrics:?}: {e}"))?;
    let memory = &json["memory"]["usage"];
    expect(memory["usage"].as_u64().is_some_and(|u| u > 0), || {
        format!("no memory usage in {metrics}")
    })?;
    expect(
        json["cpu"]["usage"]["total"]
            .as_u64()
            .is_some_and(|t| t > 0),
        || format!("no CPU usage in {metrics}"),
    )?;
    expect(
        json["pids"]["current"].as_u64().is_some_and(|p| p >= 1),
        || format!("no pids in {metrics}"),
    )?;
    ctx.ctr(&["task", "kill", "-s", "SIGKILL", &id])?;
    ctx.wait_status(&id, "STOPPED")?;
    ctx.ctr(&["task", "delete", &id])?;
    ctx.ctr(&["containers", "delete", &id]).map(drop)
}

/// Numbers read back from the counter's output must be 1, 2, 3, ... with nothing missing.
fn check_counter(what: &str, output: &str, at_least: usize) -> Check {
    let numbers: Vec<u64> = output
        .lines()
        .map(|l| {
            l.trim()
                .parse()
                .map_err(|_| format!("{what}: odd line {l:?}"))
        })
        .collect::<Result<_, _>>()?;
    if let Some((i, n)) = numbers
        .iter()
        .enumerate()
        .find(|(i, n)| **n != *i as u64 + 1)
    {
        return Err(format!(
            "{what}: line {} is {n}, want {} (a line is missing or repeated)",
            i + 1,
            i + 1
        ));
    }
    expect(numbers.len() >= at_least, || {
        format!(
            "{what}: only {} lines, want at least {at_least}",
            numbers.len()
        )
    })
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Reads a container's output fifo the way a client does (CRI, say), until told to stop or EOF.
/// Stopping never loses what was read: every read is kept before the stop flag is looked at.
struct FifoReader {
    stop: Arc<AtomicBool>,
    data: Arc<Mutex<Vec<u8>>>,
    thread: std::thread::JoinHandle<Result<(), String>>,
}

impl FifoReader {
    fn start(path: &Path) -> Result<FifoReader, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut fifo = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let data = Arc::new(Mutex::new(Vec::new()));
        let (thread_stop, thread_data) = (stop.clone(), data.clone());
        let thread = std::thread::spawn(move || {
            use std::io::Read;
            use std::os::fd::AsFd;
            let mut buf = vec![0u8; 64 * 1024];
            while !thread_stop.load(Ordering::SeqCst) {
                let mut fds = [nix::poll::PollFd::new(
                    fifo.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u16));
                match fifo.read(&mut buf) {
                    // No writer is left: the end of the output.
                    Ok(0) => return Ok(()),
                    Ok(n) => thread_data
                        .lock()
                        .expect("data")
                        .extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(format!("read fifo: {e}")),
                }
            }
            Ok(())
        });
        Ok(FifoReader { stop, data, thread })
    }

    fn lines(&self) -> usize {
        self.data
            .lock()
            .expect("data")
            .iter()
            .filter(|b| **b == b'\n')
            .count()
    }

    /// Stops reading (the fifo is closed) and returns everything read.
    fn stop(self) -> Result<Vec<u8>, String> {
        self.stop.store(true, Ordering::SeqCst);
        self.join()
    }

    /// Waits for the end of the output (bounded), then returns everything read.
    fn finish(self, timeout: Duration) -> Result<Vec<u8>, String> {
        let thread = &self.thread;
        let ended = wait_until(timeout, || Ok(thread.is_finished()));
        self.stop.store(true, Ordering::SeqCst);
        let data = self.join()?;
        ended.map_err(|e| format!("the output did not end: {e}"))?;
        Ok(data)
    }

    fn join(self) -> Result<Vec<u8>, String> {
        self.thread
            .join()
            .map_err(|_| "fifo reader panicked".to_string())??;
        let data = std::mem::take(&mut *self.data.lock().expect("data"));
        Ok(data)
    }
}

/// containerd stops for 5 s and comes back: the containers kept running, nothing they printed
/// meanwhile is lost (in the log, and in what a client reading the fifo gets once it reconnects,
/// as containerd's CRI does), and they can still be killed and deleted.
fn restart(ctx: &mut Ctx<'_>) -> Check {
    let logged = ctx.id("restart-log");
    let piped = ctx.id("restart-fifo");
    let log = ctx.dir.join(format!("{logged}.log"));
    let fifo_dir = ctx.dir.join(format!("{piped}-fifos"));
    std::fs::create_dir_all(&fifo_dir).map_err(|e| e.to_string())?;
    let uri = format!("file://{}", log.display());
    ctx.ctr(&[
        "run",
        "-d",
        "--runtime",
        ctx.runtime,
        "--log-uri",
        &uri,
        IMAGE,
        &logged,
        "sh",
        "-c",
        COUNTER,
    ])?;
    // The counter waits a second: the detached ctr has exited by then and read none of it.
    let delayed = format!("sleep 1; {COUNTER}");
    let fifo_dir_arg = fifo_dir.to_string_lossy().into_owned();
    let detached = ctx.ctr(&[
        "run",
        "-d",
        "--fifo-dir",
        &fifo_dir_arg,
        "--runtime",
        ctx.runtime,
        IMAGE,
        &piped,
        "sh",
        "-c",
        &delayed,
    ])?;
    let stdout_fifo = std::fs::read_dir(&fifo_dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|entry| entry.path().join(format!("{piped}-stdout")))
        .find(|path| path.exists())
        .ok_or_else(|| format!("no stdout fifo of {piped} in {}", fifo_dir.display()))?;
    let first = FifoReader::start(&stdout_fifo)?;
    wait_until(Duration::from_secs(15), || {
        Ok(line_count(&log) >= 10 && first.lines() >= 10)
    })
    .map_err(|e| format!("the counters did not start: {e}"))?;
    // The client goes away with containerd.
    let mut output = detached.into_bytes();
    output.extend(first.stop()?);
    ctx.containerd.stop_daemon()?;
    // The outage itself (the scenario, not a wait for an event).
    std::thread::sleep(Duration::from_secs(5));
    ctx.containerd.start_daemon()?;
    ctx.wait_status(&logged, "RUNNING")?;
    ctx.wait_status(&piped, "RUNNING")?;
    let second = FifoReader::start(&stdout_fifo)?;
    let before = output.iter().filter(|b| **b == b'\n').count();
    // At 50 lines a second, the outage alone is 250 lines.
    let enough = wait_until(Duration::from_secs(20), || {
        Ok(before + second.lines() >= 400)
    });
    ctx.ctr(&["task", "kill", "-s", "SIGKILL", &piped])?;
    ctx.wait_status(&piped, "STOPPED")?;
    output.extend(second.finish(Duration::from_secs(10))?);
    enough.map_err(|e| format!("the reconnected client got too little: {e}"))?;
    check_counter("client output", &String::from_utf8_lossy(&output), 400)?;
    wait_until(Duration::from_secs(5), || Ok(line_count(&log) >= 400))?;
    ctx.ctr(&["task", "kill", "-s", "SIGKILL", &logged])?;
    ctx.wait_status(&logged, "STOPPED")?;
    ctx.ctr(&["task", "delete", &logged])?;
    ctx.ctr(&["task", "delete", &piped])?;
    let _ = std::fs::remove_dir_all(&fifo_dir);
    check_counter(
        "log",
        &std::fs::read_to_string(&log).map_err(|e| e.to_string())?,
        400,
    )
}

/// Task events arrive in containerd's order: create, start, the exec's added, started and exit, paused,
/// resumed, the init's exit, delete.
fn events(ctx: &mut Ctx<'_>) -> Check {
    let id = ctx.id("events");
    ctx.containerd.drain_events();
    ctx.ctr(&[
        "run",
        "-d",
        "--runtime",
        ctx.runtime,
        IMAGE,
        &id,
        "sleep",
        "1000",
    ])?;
    ctx.wait_status(&id, "RUNNING")?;
    let exec = ctx.ctr_raw(&["task", "exec", "--exec-id", "ev1", &id, "true"])?;
    expect(exec.status.success(), || {
        format!("exec: {}", text(&exec.stderr))
    })?;
    ctx.ctr(&["task", "pause", &id])?;
    ctx.ctr(&["task", "resume", &id])?;
    ctx.ctr(&["task", "kill", "-s", "SIGKILL", &id])?;
    ctx.wait_status(&id, "STOPPED")?;
    ctx.ctr(&["task", "delete", &id])?;
    let topics = ctx
        .containerd
        .events_of(&id, "/tasks/delete", Duration::from_secs(10));
    let want = [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/exit",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exit",
        "/tasks/delete",
    ];
    expect(topics == want, || {
        format!("events {topics:?}, want {want:?}")
    })?;
    ctx.ctr(&["containers", "delete", &id]).map(drop)
}

/// A container killed for want of memory: `/tasks/oom` comes before its `/tasks/exit`, and the exit
/// code is the kill's.
fn oom(ctx: &mut Ctx<'_>) -> Check {
    let id = ctx.id("oom");
    ctx.containerd.drain_events();
    // tail keeps the one endless line in memory: 256 MiB against a 32 MiB limit.
    let out = ctx.ctr_raw(&[
        "run",
        "--rm",
        "--memory-limit",
        "33554432",
        "--runtime",
        ctx.runtime,
        IMAGE,
        &id,
        "sh",
        "-c",
        "head -c 268435456 /dev/zero | tail -n 1 >/dev/null",
    ])?;
    expect(out.status.code() == Some(137), || {
        format!(
            "exit status {:?}, want 137; stderr {:?}",
            out.status,
            text(&out.stderr)
        )
    })?;
    let topics = ctx
        .containerd
        .events_of(&id, "/tasks/delete", Duration::from_secs(10));
    let oom_at = topics.iter().position(|t| t == "/tasks/oom");
    let exit_at = topics.iter().position(|t| t == "/tasks/exit");
    expect(
        matches!((oom_at, exit_at), (Some(o), Some(e)) if o < e),
        || format!("events {topics:?}: want /tasks/oom before /tasks/exit"),
    )
}

/// The shim daemon serving container `id` (found by its command line, the same for every shim).
fn shim_pid(id: &str) -> Option<i32> {
    let wanted = format!("\0-id\0{id}\0");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            (cmdline.starts_with("containerd-shim-") || cmdline.contains("/containerd-shim-"))
                .then_some(())
                .filter(|()| cmdline.contains(&wanted))
                .map(|()| pid)
        })
}

/// The shim is SIGKILLed: containerd runs the shim's `delete`, which removes the runtime's container
/// (its processes die) and unmounts the rootfs; the task is gone.
fn shim_killed(ctx: &mut Ctx<'_>) -> Check {
    let id = ctx.id("shim-killed");
    // Its fifos in the test's own dir: no client deletes this task, so ctr never removes them.
    let fifo_dir = ctx.dir.join(format!("{id}-fifos"));
    std::fs::create_dir_all(&fifo_dir).map_err(|e| e.to_string())?;
    let fifo_dir = fifo_dir.to_string_lossy().into_owned();
    ctx.ctr(&[
        "run",
        "-d",
        "--fifo-dir",
        &fifo_dir,
        "--runtime",
        ctx.runtime,
        IMAGE,
        &id,
        "sleep",
        "1000",
    ])?;
    ctx.wait_status(&id, "RUNNING")?;
    let bundle = ctx
        .containerd
        .dir
        .join("state/io.containerd.runtime.v2.task")
        .join(NAMESPACE)
        .join(&id);
    let shim = shim_pid(&id).ok_or_else(|| format!("no shim process serves {id}"))?;
    let list = ctx.ctr(&["task", "ls"])?;
    let init: i32 = list
        .lines()
        .find(|l| l.starts_with(&id))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|pid| pid.parse().ok())
        .ok_or_else(|| format!("no pid for {id} in {list:?}"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|e| format!("kill the shim: {e}"))?;
    wait_until(Duration::from_secs(20), || {
        Ok(ctx.task_status(&id)?.is_empty())
    })
    .map_err(|e| format!("the task is still listed after its shim died: {e}"))?;
    wait_until(Duration::from_secs(10), || {
        Ok(!Path::new(&format!("/proc/{init}")).exists())
    })
    .map_err(|e| format!("the container's init {init} outlived the cleanup: {e}"))?;
    let mounts = std::fs::read_to_string("/proc/mounts").map_err(|e| e.to_string())?;
    expect(!mounts.contains(&*bundle.to_string_lossy()), || {
        format!("{} is still mounted", bundle.display())
    })?;
    let runc = Command::new("runc")
        .args([
            "--root",
            &format!("/run/containerd/runc/{NAMESPACE}"),
            "list",
            "-q",
        ])
        .output()
        .map_err(|e| format!("runc list: {e}"))?;
    expect(!text(&runc.stdout).lines().any(|l| l == id), || {
        format!("runc still has {id}")
    })?;
    let entry = ctx.containerd.dir.join("tether-state").join(&id);
    expect(!entry.exists(), || {
        format!("{} is left in tether's state dir", entry.display())
    })?;
    ctx.ctr(&["containers", "delete", &id]).map(drop)
}

/// Output nobody reads never blocks the container (containerd-shim-runc-v2 blocks here once the
/// fifo is full: containerd#9342); a reader that comes later gets all of it, in order.
fn unread_output_never_blocks(ctx: &mut Ctx<'_>) -> Check {
    let id = ctx.id("unread");
    let fifo_dir = ctx.dir.join(format!("{id}-fifos"));
    std::fs::create_dir_all(&fifo_dir).map_err(|e| e.to_string())?;
    let fifo_dir_arg = fifo_dir.to_string_lossy().into_owned();
    // 4 MiB of numbered lines, after the detached ctr has gone.
    let writer = "sleep 1; i=0; while [ $i -lt 4096 ]; do i=$((i+1)); printf '%01023d\\n' $i; done";
    ctx.ctr(&[
        "run",
        "-d",
        "--fifo-dir",
        &fifo_dir_arg,
        "--runtime",
        ctx.runtime,
        IMAGE,
        &id,
        "sh",
        "-c",
        writer,
    ])?;
    ctx.wait_status(&id, "STOPPED")
        .map_err(|e| format!("the container blocked on output nobody reads: {e}"))?;
    let stdout_fifo = std::fs::read_dir(&fifo_dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|entry| entry.path().join(format!("{id}-stdout")))
        .find(|path| path.exists())
        .ok_or_else(|| format!("no stdout fifo of {id}"))?;
    let output = FifoReader::start(&stdout_fifo)?.finish(Duration::from_secs(10))?;
    let lines: Vec<&str> = std::str::from_utf8(&output)
        .map_err(|_| "output is not text".to_string())?
        .lines()
        .collect();
    expect(lines.len() == 4096, || {
        format!("{} lines, want 4096", lines.len())
    })?;
    for (i, line) in lines.iter().enumerate() {
        expect(line.trim_start_matches('0') == (i + 1).to_string(), || {
            format!("line {} is {line:?}", i + 1)
        })?;
    }
    ctx.ctr(&["task", "delete", &id])?;
    let _ = std::fs::remove_dir_all(&fifo_dir);
    ctx.ctr(&["containers", "delete", &id]).map(drop)
}

type Test = fn(&mut Ctx<'_>) -> Check;

/// tether's own CLI sees and acts on a container containerd started through tether's shim (the
/// same core serves both front ends): ps, pause, resume, kill, wait; removal stays containerd's.
fn tether_cli(ctx: &mut Ctx<'_>) -> Check {
    let id = ctx.id("tether-cli");
    ctx.ctr(&[
        "run",
        "-d",
        "--runtime",
        ctx.runtime,
        IMAGE,
        &id,
        "sleep",
        "1000",
    ])?;
    ctx.wait_status(&id, "RUNNING")?;
    let state_dir = ctx.containerd.dir.join("tether-state");
    let tether = |args: &[&str]| {
        Command::new(&ctx.tether)
            .arg("--state-dir")
            .arg(&state_dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("tether: {e}"))
    };
    let listed = |status: &str| -> Result<bool, String> {
        let ps = tether(&["ps", "--format", "json"])?;
        let rows: serde_json::Value =
            serde_json::from_slice(&ps.stdout).map_err(|e| format!("tether ps: {e}"))?;
        Ok(rows.as_array().is_some_and(|rows| {
            rows.iter()
                .any(|r| r["id"] == id.as_str() && r["status"] == status && r["shim"] == "running")
        }))
    };
    expect(listed("running")?, || {
        format!("tether ps does not list {id} as running")
    })?;
    let paused = tether(&["pause", &id])?;
    expect(paused.status.success(), || {
        format!("tether pause: {}", text(&paused.stderr))
    })?;
    ctx.wait_status(&id, "PAUSED")?;
    expect(listed("paused")?, || {
        "tether ps does not show it paused".into()
    })?;
    let resumed = tether(&["resume", &id])?;
    expect(resumed.status.success(), || {
        format!("tether resume: {}", text(&resumed.stderr))
    })?;
    ctx.wait_status(&id, "RUNNING")?;
    let rm = tether(&["rm", &id])?;
    expect(
        !rm.status.success() && text(&rm.stderr).contains("managed by containerd"),
        || format!("tether rm: {:?} {}", rm.status, text(&rm.stderr)),
    )?;
    let killed = tether(&["kill", &id, "KILL"])?;
    expect(killed.status.success(), || {
        format!("tether kill: {}", text(&killed.stderr))
    })?;
    let waited = tether(&["wait", &id])?;
    expect(waited.status.code() == Some(137), || {
        format!("tether wait: {:?} {}", waited.status, text(&waited.stderr))
    })?;
    ctx.wait_status(&id, "STOPPED")?;
    ctx.ctr(&["task", "delete", &id])?;
    expect(!state_dir.join(&id).exists(), || {
        format!("{id} is still in tether's state dir after delete")
    })?;
    ctx.ctr(&["containers", "delete", &id]).map(drop)
}

/// With containerd at debug level, the shim gets `-debug` and its diagnostics reach containerd's
/// log through the bundle's `log` fifo.
fn diagnostics(ctx: &mut Ctx<'_>) -> Check {
    let id = ctx.id("diagnostics");
    ctx.ctr_raw(&["run", "--rm", "--runtime", ctx.runtime, IMAGE, &id, "true"])?;
    let log = ctx.containerd.dir.join("containerd.log");
    let mut found = String::new();
    wait_until(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        found = text
            .lines()
            .filter(|l| {
                l.contains(&format!("id={id} ")) && l.contains("runtime=io.containerd.tether.v2")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        Ok(found.contains("msg=\"call Create\"") && found.contains("msg=\"publish /tasks/exit\""))
    })
    .map_err(|e| {
        format!("the shim's debug lines did not reach containerd's log: {e}; found {found:?}")
    })
}

/// Which shims a test is for.
#[derive(PartialEq)]
enum For {
    Both,
    /// Behaviour containerd's own shim does not have.
    TetherOnly,
}

const TESTS: &[(&str, For, Test)] = &[
    (
        "run_rm_prints_output_and_propagates_the_exit_code",
        For::Both,
        run_rm,
    ),
    (
        "detached_exec_ps_pause_resume_kill_delete",
        For::Both,
        lifecycle,
    ),
    ("log_uri_file_gets_stdout_and_stderr", For::Both, log_uri),
    (
        "log_uri_binary_feeds_a_logging_binary",
        For::Both,
        log_binary,
    ),
    ("tty_under_tmux_answers_a_command", For::Both, tty),
    (
        "exec_tty_under_tmux_answers_and_follows_resizes",
        For::Both,
        exec_tty,
    ),
    ("stdin_is_fed_and_closed", For::Both, stdin),
    ("metrics_come_from_the_cgroup", For::Both, metrics),
    ("containerd_restart_loses_no_line", For::Both, restart),
    ("events_arrive_in_order", For::Both, events),
    ("oom_is_published_before_the_exit", For::Both, oom),
    (
        "a_killed_shim_is_cleaned_up_by_delete",
        For::Both,
        shim_killed,
    ),
    (
        "unread_output_never_blocks_the_container",
        For::TetherOnly,
        unread_output_never_blocks,
    ),
    (
        "debug_diagnostics_reach_containerds_log",
        For::TetherOnly,
        diagnostics,
    ),
    (
        "tether_cli_sees_and_acts_on_containerd_containers",
        For::TetherOnly,
        tether_cli,
    ),
];

/// Every id a test may leave behind when it fails.
const IDS: &[&str] = &[
    "run-rm",
    "lifecycle",
    "log-uri",
    "tty",
    "restart-log",
    "restart-fifo",
    "events",
    "oom",
    "shim-killed",
    "unread",
    "tether-cli",
    "log-binary",
    "diagnostics",
    "exec-tty",
    "stdin",
    "metrics",
];

/// Entry point: `e2e containerd [--shim tether|runc|both] [--only NAME]`.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut args = args.iter();
    match args.next().map(String::as_str) {
        Some("containerd") => {}
        Some(other) => return Err(format!("e2e: unknown suite {other:?} (containerd)")),
        None => return Err("e2e: which suite? `cargo xtask e2e containerd`".into()),
    }
    let mut shims = vec!["tether", "runc"];
    let mut only = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--shim" => match args.next().map(String::as_str) {
                Some("tether") => shims = vec!["tether"],
                Some("runc") => shims = vec!["runc"],
                Some("both") => {}
                other => return Err(format!("e2e: --shim tether|runc|both, not {other:?}")),
            },
            "--only" => only = Some(args.next().ok_or("e2e: --only needs a test name")?.clone()),
            other => return Err(format!("e2e: unknown argument {other:?}")),
        }
    }
    let required = std::env::var("TETHER_E2E").is_ok_and(|v| v == "require");
    let missing = if !nix::unistd::geteuid().is_root() {
        Some("needs root".to_owned())
    } else {
        [
            "containerd",
            "ctr",
            "containerd-shim-runc-v2",
            "runc",
            "tmux",
        ]
        .into_iter()
        .find(|b| !crate::util::on_path(b))
        .map(|b| format!("{b} is not installed (cargo xtask deps)"))
    };
    if let Some(reason) = missing {
        if required {
            return Err(format!("e2e containerd: {reason}"));
        }
        println!("e2e containerd: skipped: {reason}");
        return Ok(());
    }
    crate::bench::install_interrupt_handler();
    let tether = crate::util::build_tether(false)?;
    let dir = tempfile::Builder::new()
        .prefix("tether-e2e-")
        .tempdir_in("/var/tmp")
        .map_err(|e| format!("e2e: temp dir: {e}"))?;
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink(&tether, bin.join("containerd-shim-tether-v2"))
        .map_err(|e| format!("e2e: shim link: {e}"))?;
    let probe = dir.path().join("probe-bundle");
    let rootfs = tether_tests::fixture::BundleSpec::shell("true")
        .create(&probe)
        .map_err(|e| e.to_string())?
        .rootfs();
    println!("e2e containerd: starting a private containerd");
    let mut containerd =
        PrivateContainerd::start_with_path(&dir.path().join("containerd"), &rootfs, Some(&bin))?;
    let mut failures = Vec::new();
    let mut passed = 0;
    for shim in shims {
        let runtime = if shim == "tether" {
            TETHER_RUNTIME
        } else {
            RUNC_RUNTIME
        };
        for (name, target, test) in TESTS {
            if only.as_deref().is_some_and(|o| o != *name)
                || (*target == For::TetherOnly && shim != "tether")
            {
                continue;
            }
            let started = Instant::now();
            let mut ctx = Ctx {
                containerd: &mut containerd,
                tether: tether.clone(),
                runtime,
                shim,
                dir: dir.path().to_owned(),
            };
            let result = test(&mut ctx);
            for id in IDS {
                let id = ctx.id(id);
                if !ctx.task_status(&id).unwrap_or_default().is_empty()
                    || ctx.ctr(&["containers", "info", &id]).is_ok()
                {
                    ctx.remove(&id);
                }
            }
            match result {
                Ok(()) => {
                    passed += 1;
                    println!(
                        "e2e containerd [{shim}] {name} ... ok ({:.1} s)",
                        started.elapsed().as_secs_f64()
                    );
                }
                Err(message) => {
                    println!("e2e containerd [{shim}] {name} ... FAILED: {message}");
                    failures.push(format!("[{shim}] {name}: {message}"));
                }
            }
        }
    }
    containerd.stop();
    // runc's root for the namespace, made on first use; gone again if nothing is left in it.
    let _ = std::fs::remove_dir(format!("/run/containerd/runc/{NAMESPACE}"));
    if failures.is_empty() {
        println!("e2e containerd: {passed} passed");
        Ok(())
    } else {
        println!(
            "e2e containerd: containerd's log is kept in {}",
            dir.path().display()
        );
        let _ = dir.keep();
        Err(format!(
            "e2e containerd: {} failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        ))
    }
}
