//! The end-to-end cases: each drives containerd through `ctr` and checks what a user would see.

use super::support::*;
use super::*;
use std::process::Stdio;

/// Prints 1, 2, 3, ... one line every 20 ms.
const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo $i; sleep 0.02; done";

/// `ctr run --rm` prints the container's output, and its exit code is ctr's.
pub(super) fn run_rm(ctx: &mut Ctx<'_>) -> Check {
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
pub(super) fn lifecycle(ctx: &mut Ctx<'_>) -> Check {
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

/// `--log-uri file://` writes the container's stdout and stderr to the file. (The container lives
/// half a second past its output: containerd-shim-runc-v2 was seen to lose the stderr line of a
/// process that exits at once, which would make the reference run flaky.)
pub(super) fn log_uri(ctx: &mut Ctx<'_>) -> Check {
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
        "echo logged; echo to-stderr >&2; sleep 0.5",
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
pub(super) fn log_binary(ctx: &mut Ctx<'_>) -> Check {
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

/// `ctr run -t` in a real terminal answers a command.
pub(super) fn tty(ctx: &mut Ctx<'_>) -> Check {
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
pub(super) fn exec_tty(ctx: &mut Ctx<'_>) -> Check {
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
    // ctr sends the first size (ResizePty) once the exec has started, so the shell may prompt
    // before its terminal has one (seen with containerd-shim-runc-v2 on 1.7): ask until it sees
    // it, as for the resize after.
    ask_size_until(&terminal, "30 100")
        .map_err(|e| format!("the exec never saw the terminal's size: {e}"))?;
    terminal.tmux(&["resize-window", "-t", "main", "-x", "120", "-y", "40"])?;
    // The resize travels as SIGWINCH to ctr, then ResizePty: ask until the shell sees it.
    ask_size_until(&terminal, "40 120")
        .map_err(|e| format!("the resize did not reach the exec: {e}"))?;
    terminal.type_line("exit 3")?;
    terminal.wait_for("EXEC-EXIT-3")?;
    ctx.ctr(&["task", "kill", "-s", "SIGKILL", &id])?;
    ctx.wait_status(&id, "STOPPED")?;
    ctx.ctr(&["task", "delete", &id])?;
    ctx.ctr(&["containers", "delete", &id]).map(drop)
}

/// Types `stty size` every 200 ms until a line of the screen is `size`, for at most 15 s.
fn ask_size_until(terminal: &Terminal, size: &str) -> Check {
    wait_until(Duration::from_secs(15), || {
        terminal.type_line("stty size")?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(terminal.screen()?.lines().any(|l| l.trim_end() == size))
    })
}

/// `ctr run` feeds its stdin to the container's, and the end of ctr's input (CloseIO) is the end of
/// the container's. The input comes once the task runs: ctr loses the CloseIO of an input that ends
/// while the task is being created (containerd#4489), whatever the shim.
pub(super) fn stdin(ctx: &mut Ctx<'_>) -> Check {
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
pub(super) fn metrics(ctx: &mut Ctx<'_>) -> Check {
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

/// containerd stops for 5 s and comes back: the containers kept running, nothing they printed
/// meanwhile is lost (in the log, and in what a client reading the fifo gets once it reconnects,
/// as containerd's CRI does), and they can still be killed and deleted.
pub(super) fn restart(ctx: &mut Ctx<'_>) -> Check {
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
    let stdout_fifo = fifo_of(&fifo_dir, &piped, "stdout")?;
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
pub(super) fn events(ctx: &mut Ctx<'_>) -> Check {
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
pub(super) fn oom(ctx: &mut Ctx<'_>) -> Check {
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

/// The shim is SIGKILLed: containerd runs the shim's `delete`, which removes the runtime's container
/// (its processes die) and unmounts the rootfs; the task is gone.
pub(super) fn shim_killed(ctx: &mut Ctx<'_>) -> Check {
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
    let bundle = ctx.task_bundle(&id);
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
pub(super) fn unread_output_never_blocks(ctx: &mut Ctx<'_>) -> Check {
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
    let stdout_fifo = fifo_of(&fifo_dir, &id, "stdout")?;
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
    remove_with_fifos(ctx, &id, &fifo_dir)
}

/// The fifo `ctr run --fifo-dir DIR` made for `id`'s `stream`.
fn fifo_of(fifo_dir: &Path, id: &str, stream: &str) -> Result<PathBuf, String> {
    std::fs::read_dir(fifo_dir)
        .map_err(|e| format!("{}: {e}", fifo_dir.display()))?
        .flatten()
        .map(|entry| entry.path().join(format!("{id}-{stream}")))
        .find(|path| path.exists())
        .ok_or_else(|| format!("no {stream} fifo of {id} in {}", fifo_dir.display()))
}

/// 50 MB of numbered 1,000-byte lines.
const FLOOD_LINES: &str = "awk 'BEGIN { for (i = 1; i <= 50000; i++) printf \"%0999d\\n\", i }'";
/// 50 MB with no newline at all.
const FLOOD_ONE_LINE: &str = "yes x | tr -d '\\n' | head -c 50000000";
/// What either flood writes.
const FLOOD_BYTES: usize = 50_000_000;
/// How long a flood nobody reads may take, the gone-reader bound (5 s) included.
const FLOOD_BOUND: Duration = Duration::from_secs(15);

/// `ctr run -d` a container that floods its stdout, with nobody reading the fifos: tether lets
/// it run on once the reader is gone (containerd-shim-runc-v2 blocks it, containerd#9342). The
/// script starts after a second, when the detached ctr (which reads until it exits) is gone.
fn run_flood(ctx: &Ctx<'_>, id: &str, fifo_dir: &Path, script: &str) -> Check {
    let script = format!("sleep 1; {script}");
    std::fs::create_dir_all(fifo_dir).map_err(|e| e.to_string())?;
    ctx.ctr(&[
        "run",
        "-d",
        "--fifo-dir",
        &fifo_dir.to_string_lossy(),
        "--runtime",
        ctx.runtime,
        IMAGE,
        id,
        "sh",
        "-c",
        &script,
    ])
    .map(drop)
}

/// `tether state ID` on the state dir the shim registers containerd's containers in.
fn tether_state(ctx: &Ctx<'_>, id: &str) -> Result<serde_json::Value, String> {
    let state = Command::new(&ctx.tether)
        .arg("--state-dir")
        .arg(ctx.containerd.dir.join("tether-state"))
        .args(["state", id])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("tether: {e}"))?;
    serde_json::from_slice(&state.stdout)
        .map_err(|e| format!("tether state {id}: {e}: {}", text(&state.stderr)))
}

/// Deletes a stopped task, its fifo dir and its container.
fn remove_with_fifos(ctx: &Ctx<'_>, id: &str, fifo_dir: &Path) -> Check {
    ctx.ctr(&["task", "delete", id])?;
    let _ = std::fs::remove_dir_all(fifo_dir);
    ctx.ctr(&["containers", "delete", id]).map(drop)
}

/// What a reader that comes after a flood gets: everything up to the end.
fn read_after(fifo_dir: &Path, id: &str) -> Result<Vec<u8>, String> {
    FifoReader::start(&fifo_of(fifo_dir, id, "stdout")?)?.finish(Duration::from_secs(20))
}

/// The record of a drop ends the output; returns the bytes it says were dropped.
fn drop_record_at_end(output: &[u8]) -> Result<usize, String> {
    let text = String::from_utf8_lossy(output);
    let last = text.lines().last().unwrap_or_default();
    last.strip_prefix("[tether: ")
        .and_then(|rest| rest.strip_suffix(" bytes of stdout dropped: no reader]"))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("the output does not end with the drop record: {last:.200?}"))
}

/// The shim said in containerd's log that it began dropping `id`'s output and how much it dropped.
fn drop_said_in_the_log(ctx: &Ctx<'_>, id: &str, dropped: usize) -> Check {
    let log = ctx.containerd.dir.join("containerd.log");
    let said = format!("{dropped} bytes were dropped while nobody read");
    let mut lines = Vec::new();
    wait_until(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        lines = text
            .lines()
            .filter(|l| l.contains(&format!("id={id} ")) && l.contains("dropp"))
            .map(str::to_owned)
            .collect();
        Ok(lines.iter().any(|l| l.contains("dropping whole lines"))
            && lines.iter().any(|l| l.contains(&said)))
    })
    .map_err(|e| format!("the drop is not in containerd's log ({said:?}): {e}; found {lines:?}"))
}

/// A 50 MB flood of lines nobody reads ends within the bound; a reader that comes later gets the
/// first lines whole and in order, then the record of what was dropped.
pub(super) fn unread_flood_of_lines(ctx: &mut Ctx<'_>) -> Check {
    let id = ctx.id("flood-lines");
    let fifo_dir = ctx.dir.join(format!("{id}-fifos"));
    let started = Instant::now();
    run_flood(ctx, &id, &fifo_dir, FLOOD_LINES)?;
    ctx.wait_status(&id, "STOPPED")
        .map_err(|e| format!("the flood blocked on output nobody reads: {e}"))?;
    let took = started.elapsed();
    println!(
        "    50 MB of lines, nobody reading: done in {:.1} s",
        took.as_secs_f64()
    );
    expect(took <= FLOOD_BOUND, || format!("the flood took {took:?}"))?;
    let output = read_after(&fifo_dir, &id)?;
    let dropped = drop_record_at_end(&output)?;
    let text = String::from_utf8_lossy(&output);
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("[tether:"))
        .collect();
    for (i, line) in kept.iter().enumerate() {
        expect(
            line.len() == 999 && line.trim_start_matches('0') == (i + 1).to_string(),
            || format!("line {} is {:.40?}…", i + 1, line),
        )?;
    }
    expect(kept.len() * 1000 + dropped == FLOOD_BYTES, || {
        format!(
            "{} lines kept and {dropped} bytes dropped do not add up",
            kept.len()
        )
    })?;
    drop_said_in_the_log(ctx, &id, dropped)?;
    remove_with_fifos(ctx, &id, &fifo_dir)
}

/// A 50 MB line nobody reads does not hold the container either; it is then killed and deleted.
pub(super) fn unread_flood_of_one_line(ctx: &mut Ctx<'_>) -> Check {
    let id = ctx.id("flood-line");
    let fifo_dir = ctx.dir.join(format!("{id}-fifos"));
    let started = Instant::now();
    run_flood(
        ctx,
        &id,
        &fifo_dir,
        &format!("{FLOOD_ONE_LINE}; exec sleep 1000"),
    )?;
    let pid: i32 = ctx
        .ctr(&["task", "ls"])?
        .lines()
        .find(|l| l.starts_with(&id))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .ok_or_else(|| format!("no pid for {id}"))?;
    // The flood is over when the shell has become the sleep.
    wait_until(FLOOD_BOUND, || {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        Ok(cmdline.starts_with(b"sleep\0"))
    })
    .map_err(|e| format!("the flood of one line blocked: {e}"))?;
    println!(
        "    50 MB in one line, nobody reading: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    ctx.ctr(&["task", "kill", "-s", "SIGKILL", &id])?;
    ctx.wait_status(&id, "STOPPED")?;
    let output = read_after(&fifo_dir, &id)?;
    let dropped = drop_record_at_end(&output)?;
    let kept = output.iter().filter(|&&b| b == b'x').count();
    expect(kept + dropped == FLOOD_BYTES, || {
        format!("{kept} bytes kept and {dropped} dropped do not add up")
    })?;
    remove_with_fifos(ctx, &id, &fifo_dir)
}

/// With containerd stopped while the flood runs, the container still ends within the bound (seen
/// through tether's state), and the task is deleted once containerd is back.
pub(super) fn unread_flood_with_containerd_down(ctx: &mut Ctx<'_>) -> Check {
    let id = ctx.id("flood-down");
    let fifo_dir = ctx.dir.join(format!("{id}-fifos"));
    let started = Instant::now();
    run_flood(ctx, &id, &fifo_dir, FLOOD_LINES)?;
    ctx.containerd.stop_daemon()?;
    let exited = wait_until(FLOOD_BOUND, || {
        Ok(tether_state(ctx, &id).is_ok_and(|state| state["exit"]["code"] == 0))
    });
    let took = started.elapsed();
    // A reader while containerd is still away: the shim kept the output for it.
    let output = exited.and_then(|()| read_after(&fifo_dir, &id));
    ctx.containerd.start_daemon()?;
    let output = output.map_err(|e| format!("the flood blocked while containerd was down: {e}"))?;
    println!(
        "    50 MB of lines, containerd down: done in {:.1} s",
        took.as_secs_f64()
    );
    drop_record_at_end(&output)?;
    // containerd 1.6 lists the task STOPPED again; 1.7 and 2.1 clean up a task that exited while
    // they were away.
    let mut status = String::new();
    wait_until(Duration::from_secs(15), || {
        status = ctx.task_status(&id)?;
        Ok(status == "STOPPED" || status.is_empty())
    })
    .map_err(|e| format!("after containerd came back the task is {status:?}: {e}"))?;
    if status == "STOPPED" {
        ctx.ctr(&["task", "delete", &id])?;
    }
    let _ = std::fs::remove_dir_all(&fifo_dir);
    ctx.ctr(&["containers", "delete", &id]).map(drop)
}

/// A container nobody reads (`ctr run -d`) is STOPPED soon after a KILL, whether its fifo holds a
/// few lines (a chatty one) or is full (a flood that blocked or was cut): its exit does not wait
/// for a fifo that has no reader to be read. Both shims' times are printed side by side; tether's
/// is bounded.
pub(super) fn unread_exit_is_prompt(ctx: &mut Ctx<'_>) -> Check {
    let id = ctx.id("chatty");
    let fifo_dir = ctx.dir.join(format!("{id}-fifos"));
    for (what, script) in [
        (
            "a few lines in the fifo",
            "while true; do echo tick; sleep 0.2; done",
        ),
        (
            "the fifo full",
            "yes tick | head -c 3000000; exec sleep 1000",
        ),
    ] {
        run_flood(ctx, &id, &fifo_dir, script)?;
        ctx.wait_status(&id, "RUNNING")?;
        // Output waits in the fifo (the scenario, not a wait for an event).
        std::thread::sleep(Duration::from_secs(2));
        let killed = Instant::now();
        ctx.ctr(&["task", "kill", "-s", "SIGKILL", &id])?;
        ctx.wait_status(&id, "STOPPED")?;
        let took = killed.elapsed();
        println!(
            "    KILL to STOPPED, nobody reading, {what}: {:.0} ms",
            took.as_secs_f64() * 1000.0
        );
        if ctx.shim == "tether" {
            expect(took < Duration::from_secs(1), || {
                format!("STOPPED {took:?} after the KILL ({what}): the exit waited for a fifo nobody reads")
            })?;
            let output = read_after(&fifo_dir, &id)?;
            expect(
                String::from_utf8_lossy(&output).starts_with("tick\n"),
                || "the lines in the fifo are not kept for a later reader".into(),
            )?;
        }
        remove_with_fifos(ctx, &id, &fifo_dir)?;
    }
    Ok(())
}

/// tether's own CLI sees and acts on a container containerd started through tether's shim (the
/// same core serves both front ends): ps, pause, resume, kill, wait; removal stays containerd's.
pub(super) fn tether_cli(ctx: &mut Ctx<'_>) -> Check {
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

/// `tether state` of a containerd task that exits with code 130 says code 130, not SIGINT; one that
/// is killed says the signal.
pub(super) fn tether_state_exit(ctx: &mut Ctx<'_>) -> Check {
    for (name, script, code, signal) in [
        ("exit-130", "exit 130", 130, serde_json::Value::Null),
        ("killed", "exec sleep 1000", 137, serde_json::json!(9)),
    ] {
        let id = ctx.id(name);
        ctx.ctr(&[
            "run",
            "-d",
            "--runtime",
            ctx.runtime,
            IMAGE,
            &id,
            "sh",
            "-c",
            script,
        ])?;
        if signal.is_number() {
            ctx.wait_status(&id, "RUNNING")?;
            ctx.ctr(&["task", "kill", "-s", "SIGKILL", &id])?;
        }
        ctx.wait_status(&id, "STOPPED")?;
        let state = tether_state(ctx, &id)?;
        expect(
            state["exit"]["code"] == code && state["exit"]["signal"] == signal,
            || {
                format!(
                    "tether state {id}: exit {}, want code {code} signal {signal}",
                    state["exit"]
                )
            },
        )?;
        ctx.ctr(&["task", "delete", &id])?;
        ctx.ctr(&["containers", "delete", &id])?;
    }
    Ok(())
}

/// With containerd at debug level, the shim gets `-debug` and its diagnostics reach containerd's
/// log through the bundle's `log` fifo.
pub(super) fn diagnostics(ctx: &mut Ctx<'_>) -> Check {
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
