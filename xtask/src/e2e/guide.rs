//! `cargo xtask e2e guide`: docs/guide.md run as a reader would run it. Every `sh` block runs in
//! order under `bash -euo pipefail` from the workspace root, with a private `HOME` (its `~/.local/bin`
//! first on `PATH`) and private tether state and runtime root; a `text` block right after one is
//! its expected stdout. A `<!-- guide-test: service FILE -->` marker has the unit file the guide
//! wrote run the way systemd runs a `Type=notify` service: `ExecStart` with a `NOTIFY_SOCKET`,
//! READY=1 awaited, `ExecStop`, the exit code checked against `SuccessExitStatus`.
//!
//! Expected output: lines compare with runs of spaces as one; `...` inside a line stands for any
//! text, and a line of only `...` for any number of lines.

use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The longest an ordinary block may take.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(120);
/// Blocks that build (cargo) may take this long: a release build on a loaded machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(1200);
/// How long a service may take to say READY=1, and to exit once stopped.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(60);

/// One thing the guide asks for, with the line of the guide it starts on.
#[derive(Debug, PartialEq)]
pub enum Step {
    Shell {
        line: usize,
        code: String,
        expect: Option<String>,
    },
    Service {
        line: usize,
        unit: String,
    },
}

/// The steps of a guide: its `sh` blocks (each with the `text` block that follows it, if any) and
/// its service markers, in order.
pub fn parse(markdown: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut lines = markdown.lines().enumerate();
    // Whether the last thing seen, blank lines aside, was an `sh` block (a `text` block may follow).
    let mut after_shell = false;
    while let Some((index, line)) = lines.next() {
        let number = index + 1;
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("<!-- guide-test:") {
            let rest = rest
                .strip_suffix("-->")
                .ok_or(format!("guide:{number}: a marker ends with -->"))?;
            let unit = rest
                .trim()
                .strip_prefix("service ")
                .ok_or(format!("guide:{number}: unknown marker {rest:?}"))?;
            steps.push(Step::Service {
                line: number,
                unit: unit.trim().to_owned(),
            });
            after_shell = false;
            continue;
        }
        let Some(info) = trimmed.strip_prefix("```") else {
            if !trimmed.is_empty() {
                after_shell = false;
            }
            continue;
        };
        let fence_indent = line.len() - line.trim_start().len();
        let mut body = String::new();
        let mut closed = false;
        for (_, inner) in lines.by_ref() {
            if inner.trim() == "```" {
                closed = true;
                break;
            }
            body.push_str(inner.get(fence_indent..).unwrap_or(inner.trim_start()));
            body.push('\n');
        }
        if !closed {
            return Err(format!("guide:{number}: a ``` block is never closed"));
        }
        match info.trim() {
            "sh" => {
                steps.push(Step::Shell {
                    line: number,
                    code: body,
                    expect: None,
                });
                after_shell = true;
                continue;
            }
            "text" if after_shell => {
                if let Some(Step::Shell { expect, .. }) = steps.last_mut() {
                    *expect = Some(body);
                }
            }
            _ => {}
        }
        after_shell = false;
    }
    Ok(steps)
}

/// Whether `actual` output matches the `expected` block.
pub fn output_matches(expected: &str, actual: &str) -> bool {
    let expected: Vec<String> = expected.lines().map(squeeze).collect();
    let actual: Vec<String> = actual.lines().map(squeeze).collect();
    lines_match(&expected, &actual)
}

fn lines_match(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first == "..." => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(line, more)| line_matches(first, line) && lines_match(rest, more)),
    }
}

/// One line against a pattern where `...` stands for any text.
fn line_matches(pattern: &str, line: &str) -> bool {
    let pieces: Vec<&str> = pattern.split("...").collect();
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if pieces.len() == 1 {
        return pattern == line;
    }
    if !line.starts_with(first) || line.len() < first.len() + last.len() || !line.ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for piece in &pieces[1..pieces.len() - 1] {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// A line with its ends trimmed and each run of spaces made one.
fn squeeze(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What `systemd` would take from a unit's `[Service]` section.
#[derive(Debug, PartialEq)]
pub struct Service {
    pub start: Vec<String>,
    pub stop: Vec<String>,
    pub success_codes: Vec<i32>,
}

/// The `[Service]` section of a unit file, for a `Type=notify` service whose command lines hold
/// no quoting (split at spaces, as written).
pub fn parse_unit(text: &str) -> Result<Service, String> {
    let mut section = "";
    let (mut start, mut stop, mut kind) = (None, None, None);
    let mut success_codes = vec![0];
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section != "[Service]" {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or(format!("unit: {line:?} is not KEY=VALUE"))?;
        let words = || -> Result<Vec<String>, String> {
            if value.contains(['"', '\'', '\\']) {
                return Err(format!("unit: {key}: quoting is not taken here"));
            }
            Ok(value.split_whitespace().map(str::to_owned).collect())
        };
        match key.trim() {
            "ExecStart" => start = Some(words()?),
            "ExecStop" => stop = Some(words()?),
            "Type" => kind = Some(value.trim().to_owned()),
            "SuccessExitStatus" => {
                for code in value.split_whitespace() {
                    success_codes.push(
                        code.parse()
                            .map_err(|_| format!("unit: SuccessExitStatus {code:?}"))?,
                    );
                }
            }
            _ => {}
        }
    }
    if kind.as_deref() != Some("notify") {
        return Err(format!("unit: Type=notify expected, found {kind:?}"));
    }
    Ok(Service {
        start: start
            .filter(|s| !s.is_empty())
            .ok_or("unit: no ExecStart")?,
        stop: stop.filter(|s| !s.is_empty()).ok_or("unit: no ExecStop")?,
        success_codes,
    })
}

/// The world the guide's commands run in.
struct Reader {
    sandbox: tether_tests::harness::Sandbox,
    home: PathBuf,
    workspace: PathBuf,
    env: Vec<(String, String)>,
}

impl Reader {
    fn new() -> Result<Reader, String> {
        let sandbox = tether_tests::harness::Sandbox::new("guide");
        let home = sandbox.path().join("home");
        std::fs::create_dir_all(&home).map_err(|e| format!("guide: {}: {e}", home.display()))?;
        let real_home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let path = format!(
            "{}:{}",
            home.join(".local/bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut env = vec![
            ("HOME".to_owned(), home.display().to_string()),
            ("PATH".to_owned(), path),
            (
                "TETHER_STATE_DIR".to_owned(),
                sandbox.state_dir().display().to_string(),
            ),
            (
                "TETHER_RUNTIME_ROOT".to_owned(),
                sandbox.runtime_root().display().to_string(),
            ),
        ];
        // cargo and rustup find their homes through HOME unless told: keep the real ones.
        for (var, default) in [("CARGO_HOME", ".cargo"), ("RUSTUP_HOME", ".rustup")] {
            let value = std::env::var(var).unwrap_or_else(|_| format!("{real_home}/{default}"));
            env.push((var.to_owned(), value));
        }
        Ok(Reader {
            sandbox,
            home,
            workspace: crate::util::workspace_root(),
            env,
        })
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(&self.workspace)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .process_group(0);
        command
    }

    /// Runs one shell block to its end (bounded); returns its status, stdout and stderr.
    fn shell(&self, code: &str) -> Result<(ExitStatus, String, String), String> {
        let timeout = if code.contains("cargo ") {
            BUILD_TIMEOUT
        } else {
            BLOCK_TIMEOUT
        };
        let out = self.sandbox.path().join("block.out");
        let err = self.sandbox.path().join("block.err");
        let file = |p: &Path| std::fs::File::create(p).map_err(|e| format!("guide: {e}"));
        let mut child = self
            .command("bash")
            .args(["-euo", "pipefail", "-c", code])
            .stdout(file(&out)?)
            .stderr(file(&err)?)
            .spawn()
            .map_err(|e| format!("guide: bash: {e}"))?;
        let status = wait_bounded(&mut child, timeout)?;
        let read = |p: &Path| std::fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned());
        Ok((
            status,
            read(&out).map_err(|e| e.to_string())?,
            read(&err).map_err(|e| e.to_string())?,
        ))
    }

    /// The unit file `unit` names, run the way systemd runs a `Type=notify` service.
    fn service(&self, unit: &str) -> Result<(), String> {
        let path = match unit.strip_prefix("~/") {
            Some(rest) => self.home.join(rest),
            None => PathBuf::from(unit),
        };
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("unit {}: {e}", path.display()))?;
        let service = parse_unit(&text)?;
        let socket_path = self.sandbox.path().join("notify.sock");
        let socket = UnixDatagram::bind(&socket_path).map_err(|e| format!("notify socket: {e}"))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let mut main = self
            .command(&service.start[0])
            .args(&service.start[1..])
            .env("NOTIFY_SOCKET", &socket_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("ExecStart: {e}"))?;
        let ready = await_ready(&socket, &mut main).and_then(|()| self.running(&service));
        let stopped = self.stop(&service, &mut main);
        let _ = std::fs::remove_file(&socket_path);
        ready?;
        let status = stopped?;
        match status.code() {
            Some(code) if service.success_codes.contains(&code) => Ok(()),
            _ => Err(format!(
                "the service ended with {status}, not one of SuccessExitStatus {:?}",
                service.success_codes
            )),
        }
    }

    /// Whether the service's tether lists a running container once READY=1 came.
    fn running(&self, service: &Service) -> Result<(), String> {
        let output = self
            .command(&service.start[0])
            .args(["ps", "--format", "json"])
            .output()
            .map_err(|e| format!("tether ps: {e}"))?;
        let list: serde_json::Value = serde_json::from_slice(&output.stdout)
            .map_err(|e| format!("tether ps --format json: {e}"))?;
        let running = list
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["status"] == "running");
        if running {
            Ok(())
        } else {
            Err(format!("READY=1 came, but no container runs: {list}"))
        }
    }

    /// ExecStop, then the main process's end (killed when it does not come).
    fn stop(&self, service: &Service, main: &mut Child) -> Result<ExitStatus, String> {
        let mut stop = self
            .command(&service.stop[0])
            .args(&service.stop[1..])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("ExecStop: {e}"))?;
        let stop_status = wait_bounded(&mut stop, SERVICE_TIMEOUT);
        let main_status = wait_bounded(main, SERVICE_TIMEOUT)?;
        match stop_status? {
            s if s.success() => Ok(main_status),
            s => Err(format!("ExecStop failed: {s}")),
        }
    }
}

/// Waits for READY=1 on the notify socket while the main process lives.
fn await_ready(socket: &UnixDatagram, main: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + SERVICE_TIMEOUT;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        crate::bench::check_interrupt()?;
        if let Ok(n) = socket.recv(&mut buf) {
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                return Ok(());
            }
        }
        if let Ok(Some(status)) = main.try_wait() {
            return Err(format!("ExecStart ended with {status} before READY=1"));
        }
    }
    Err(format!("no READY=1 within {SERVICE_TIMEOUT:?}"))
}

/// Waits for `child` for at most `timeout`; past it, kills its process group and says so.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Result<ExitStatus, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status);
        }
        let interrupted = crate::bench::check_interrupt();
        if Instant::now() >= deadline || interrupted.is_err() {
            let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
            let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            interrupted?;
            return Err(format!("not done within {timeout:?}: killed"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Entry point: `e2e guide`.
pub fn run() -> Result<(), String> {
    if !super::can_run("guide", &["runc", "logrotate", "bash"], || None)? {
        return Ok(());
    }
    crate::bench::install_interrupt_handler();
    let guide = crate::util::workspace_root().join("docs/guide.md");
    let text = std::fs::read_to_string(&guide).map_err(|e| format!("{}: {e}", guide.display()))?;
    let steps = parse(&text)?;
    let reader = Reader::new()?;
    let started = Instant::now();
    for step in &steps {
        let begun = Instant::now();
        let line = match step {
            Step::Shell { line, code, expect } => {
                let (status, stdout, stderr) = reader.shell(code)?;
                if !status.success() {
                    return Err(format!(
                        "docs/guide.md:{line}: the block failed ({status}):\n{code}stdout:\n{stdout}stderr:\n{stderr}"
                    ));
                }
                if let Some(expect) = expect.as_deref().filter(|e| !output_matches(e, &stdout)) {
                    return Err(format!(
                        "docs/guide.md:{line}: the output differs from the guide's\nexpected:\n{expect}actual:\n{stdout}stderr:\n{stderr}"
                    ));
                }
                line
            }
            Step::Service { line, unit } => {
                reader
                    .service(unit)
                    .map_err(|e| format!("docs/guide.md:{line}: service {unit}: {e}"))?;
                line
            }
        };
        println!(
            "e2e guide: docs/guide.md:{line} ... ok ({:.1} s)",
            begun.elapsed().as_secs_f64()
        );
    }
    println!(
        "e2e guide: {} steps passed in {:.1} s",
        steps.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_blocks_take_the_text_block_after_them() {
        let guide = "# t\n\n```sh\necho hi\n```\n\n```text\nhi\n```\n\nprose\n\n```text\nnot an expectation\n```\n\n  ```sh\n  indented\n  ```\n<!-- guide-test: service ~/a.service -->\n```console\nnot run\n```\n";
        let steps = parse(guide).unwrap();
        assert_eq!(
            steps,
            vec![
                Step::Shell {
                    line: 3,
                    code: "echo hi\n".into(),
                    expect: Some("hi\n".into())
                },
                Step::Shell {
                    line: 17,
                    code: "indented\n".into(),
                    expect: None
                },
                Step::Service {
                    line: 20,
                    unit: "~/a.service".into()
                },
            ]
        );
        assert!(parse("```sh\nnever closed\n").is_err());
        assert!(parse("<!-- guide-test: frobnicate -->").is_err());
    }

    #[test]
    fn dots_stand_for_text_and_lines() {
        assert!(output_matches("a\nb\n", "a\nb\n"));
        assert!(!output_matches("a\n", "a\nb\n"));
        assert!(output_matches("...\nb\n", "x\ny\nb\n"));
        assert!(output_matches("...\nb\n", "b\n"));
        assert!(output_matches(
            "ID PID\nweb ... running ... ago -\n",
            "ID    PID\nweb  123  running  3 seconds ago    -\n"
        ));
        assert!(!output_matches("web ... running\n", "web 1 stopped\n"));
        assert!(output_matches(
            "tether ... (commit ...)\n",
            "tether 0.1.0 (commit abc)\n"
        ));
        assert!(
            !output_matches("ab...ba\n", "aba\n"),
            "the ends do not overlap"
        );
    }

    #[test]
    fn a_notify_unit_gives_its_commands_and_success_codes() {
        let unit = "[Unit]\nDescription=x\nExecStart=/not/this\n\n[Service]\nType=notify\n# c\nExecStart=/bin/tether run --rm web -- httpd -f\nExecStop=/bin/tether stop -t 5 web\nSuccessExitStatus=137 143\n";
        let service = parse_unit(unit).unwrap();
        assert_eq!(service.start[0], "/bin/tether");
        assert_eq!(service.start.len(), 7);
        assert_eq!(service.stop, ["/bin/tether", "stop", "-t", "5", "web"]);
        assert_eq!(service.success_codes, [0, 137, 143]);
        assert!(parse_unit("[Service]\nType=simple\nExecStart=a\nExecStop=b\n").is_err());
        assert!(parse_unit("[Service]\nType=notify\nExecStart=sh -c 'x'\nExecStop=b\n").is_err());
        assert!(parse_unit("[Service]\nType=notify\nExecStop=b\n").is_err());
    }
}
