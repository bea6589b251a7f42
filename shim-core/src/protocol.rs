//! The control protocol: one JSON object per line each way, over the daemon's unix socket.
//!
//! A request names its `op`; the answer is `{"ok": RESULT}` or
//! `{"error": {"kind": KIND, "message": TEXT}}`. See `docs/protocol.md`.

use crate::ContainerState;
use serde::{Deserialize, Serialize};

/// The longest request line the daemon reads; a longer one is answered with `bad_request` and the
/// connection closed.
pub const MAX_REQUEST: usize = 64 * 1024;
/// The longest `exec --timeout` a request may ask for (ten years): any deadline the daemon computes
/// from it fits an `Instant`.
pub const MAX_EXEC_TIMEOUT_SECS: u64 = 10 * 365 * 24 * 3600;
/// The highest signal number Linux has (SIGRTMAX).
pub const MAX_SIGNAL: i32 = 64;
/// The longest exec id a request may name (ids the daemon makes are far shorter).
pub const MAX_EXEC_ID: usize = 128;

/// A request to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The container's state.
    State,
    /// Send a signal to the init process (or, with `all`, every process of the container).
    Kill {
        /// The signal number.
        signal: i32,
        /// Every process, not only init.
        #[serde(default)]
        all: bool,
    },
    /// Answer once the container has exited and its output is in the log.
    Wait,
    /// The pids of the container's processes.
    Pids,
    /// Freeze the container.
    Pause,
    /// Thaw it.
    Resume,
    /// Reopen the log file (after an external logrotate).
    ReopenLog,
    /// Delete the container and stop the daemon; `force` kills a running container first.
    Delete {
        /// Kill it first if it runs.
        #[serde(default)]
        force: bool,
    },
    /// Run a process in the container. Unless `detach`, the connection then carries frames (see
    /// [`crate::frame`]): the process's output, and the client's stdin when `stdin`.
    Exec(ExecRequest),
    /// How an exec process is doing.
    ExecState {
        /// The id `exec` answered with.
        exec_id: String,
    },
    /// Join the container's stdio: the connection then carries frames, the container's output to
    /// the client and the client's input to the container (when it has stdin).
    Attach,
}

/// What to run for `exec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExecRequest {
    /// The command and its arguments.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries added to (or replacing in) the container's environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// `UID[:GID]`; the container's user when absent.
    #[serde(default)]
    pub user: Option<String>,
    /// The working directory; the container's when absent.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Give the process a terminal.
    #[serde(default)]
    pub tty: bool,
    /// Forward the client's stdin.
    #[serde(default)]
    pub stdin: bool,
    /// Answer at once with the exec id; output is discarded.
    #[serde(default)]
    pub detach: bool,
    /// Kill the process (and its descendants) after this many seconds.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// The client terminal's size (rows, columns), for `tty`.
    #[serde(default)]
    pub window: Option<(u16, u16)>,
}

/// The successful result of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    /// For `state`.
    State(Box<ContainerState>),
    /// For `wait`.
    Exit {
        /// The exit code (128 + signal when killed).
        exit_code: i32,
    },
    /// For `exec`.
    Exec {
        /// The exec's id within the container.
        exec_id: String,
        /// The process's pid on the host.
        pid: i32,
    },
    /// For `exec_state`.
    ExecState {
        /// The exec's id.
        exec_id: String,
        /// Whether it still runs.
        running: bool,
        /// Its exit code once it ended.
        exit_code: Option<i32>,
    },
    /// For `attach`.
    Attach {
        /// The container has a terminal (the client should switch its own to raw mode).
        tty: bool,
        /// The container has stdin to write to.
        stdin: bool,
    },
    /// For `pids`.
    Pids {
        /// The pids.
        pids: Vec<i32>,
    },
    /// For everything else.
    Done {},
}

/// What kind of failure an error answer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Malformed, unknown or oversized request.
    BadRequest,
    /// The caller may not talk to this daemon.
    PermissionDenied,
    /// The request does not fit the container's status (kill a stopped container, ...).
    InvalidState,
    /// The runtime failed; the message carries its own error.
    Runtime,
    /// Something else inside the daemon failed.
    Internal,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The kind.
    pub kind: ErrorKind,
    /// One line for a person.
    pub message: String,
    /// For a process that could not be started: the code a shell would give (126 not executable,
    /// 127 not found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// One answer line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Success.
    Ok(Reply),
    /// Failure.
    Error(ErrorBody),
}

impl Response {
    /// An error answer.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Response::Error(ErrorBody {
            kind,
            message: message.into(),
            exit_code: None,
        })
    }

    /// The one conversion of the supervisor's error to this protocol's.
    pub fn from_error(error: crate::Error) -> Self {
        use crate::ErrorKind as Kind;
        let (kind, exit_code) = match error.kind {
            Kind::BadRequest | Kind::Exhausted | Kind::Unsupported => (ErrorKind::BadRequest, None),
            Kind::NotFound | Kind::AlreadyExists | Kind::InvalidState => {
                (ErrorKind::InvalidState, None)
            }
            Kind::Runtime { start_failure } => (ErrorKind::Runtime, start_failure),
            Kind::Internal => (ErrorKind::Internal, None),
        };
        Response::Error(ErrorBody {
            kind,
            message: error.message,
            exit_code,
        })
    }

    /// The answer as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("responses always serialize");
        line.push(b'\n');
        line
    }
}

/// Parses one request line, mapping any problem to a `bad_request` answer. Every value a client
/// sends is bounded here, so nothing past this point meets a signal that is not one, a timeout
/// whose deadline overflows, or a zero-sized terminal.
pub fn parse_request(line: &[u8]) -> Result<Request, Response> {
    let request: Request = serde_json::from_slice(line).map_err(|e| {
        let message = match std::str::from_utf8(line) {
            Ok(_) => format!("malformed request: {e}"),
            Err(_) => "malformed request: not UTF-8".to_owned(),
        };
        Response::error(ErrorKind::BadRequest, message)
    })?;
    request
        .check_bounds()
        .map_err(|message| Response::error(ErrorKind::BadRequest, message))?;
    Ok(request)
}

impl Request {
    /// Checks every value against the bounds the daemon relies on; the error is one line.
    pub fn check_bounds(&self) -> Result<(), String> {
        match self {
            Request::Kill { signal, .. } => check_signal(*signal),
            Request::Exec(exec) => exec.check_bounds(),
            Request::ExecState { exec_id } if exec_id.len() > MAX_EXEC_ID => Err(format!(
                "exec id of {} bytes is over the {MAX_EXEC_ID}-byte limit",
                exec_id.len()
            )),
            _ => Ok(()),
        }
    }
}

/// A signal number the kernel knows (1 to [`MAX_SIGNAL`]).
pub fn check_signal(signal: i32) -> Result<(), String> {
    if (1..=MAX_SIGNAL).contains(&signal) {
        Ok(())
    } else {
        Err(format!(
            "signal {signal} is not a signal (1 to {MAX_SIGNAL})"
        ))
    }
}

impl ExecRequest {
    /// See [`Request::check_bounds`].
    pub fn check_bounds(&self) -> Result<(), String> {
        if self.args.is_empty() {
            return Err("exec: no command given".to_owned());
        }
        let strings = self
            .args
            .iter()
            .chain(&self.env)
            .chain(&self.user)
            .chain(&self.cwd);
        if strings.into_iter().any(|s| s.contains('\0')) {
            return Err("exec: a NUL byte in the command, env, user or cwd".to_owned());
        }
        if let Some(entry) = self
            .env
            .iter()
            .find(|e| !e.contains('=') || e.starts_with('='))
        {
            return Err(format!("exec: env entry {entry:?} is not KEY=VALUE"));
        }
        if let Some(cwd) = self.cwd.as_deref().filter(|cwd| !cwd.starts_with('/')) {
            return Err(format!("exec: cwd {cwd:?} is not an absolute path"));
        }
        if let Some(secs) = self
            .timeout_secs
            .filter(|&s| s == 0 || s > MAX_EXEC_TIMEOUT_SECS)
        {
            return Err(format!(
                "exec: timeout of {secs}s is out of range (1 to {MAX_EXEC_TIMEOUT_SECS})"
            ));
        }
        if let Some((rows, cols)) = self.window.filter(|&(r, c)| r == 0 || c == 0) {
            return Err(format!("exec: terminal size {rows}x{cols} has a zero side"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        let cases = [
            (r#"{"op":"state"}"#, Request::State),
            (
                r#"{"op":"kill","signal":15,"all":true}"#,
                Request::Kill {
                    signal: 15,
                    all: true,
                },
            ),
            (r#"{"op":"wait"}"#, Request::Wait),
            (r#"{"op":"reopen_log"}"#, Request::ReopenLog),
            (r#"{"op":"delete"}"#, Request::Delete { force: false }),
            (r#"{"op":"attach"}"#, Request::Attach),
            (
                r#"{"op":"exec","args":["sh"],"tty":true,"window":[24,80]}"#,
                Request::Exec(ExecRequest {
                    args: vec!["sh".into()],
                    tty: true,
                    window: Some((24, 80)),
                    ..ExecRequest::default()
                }),
            ),
        ];
        for (line, request) in cases {
            assert_eq!(parse_request(line.as_bytes()).unwrap(), request, "{line}");
        }
    }

    #[test]
    fn bad_requests_are_answered_not_fatal() {
        for line in [
            &b"not json"[..],
            br#"{"op":"launch_missiles"}"#,
            br#"{"op":"kill"}"#,
            br#"{"op":"kill","signal":"x"}"#,
            b"\xff\xfe",
            b"",
        ] {
            let Err(Response::Error(body)) = parse_request(line) else {
                panic!("{line:?} accepted");
            };
            assert_eq!(body.kind, ErrorKind::BadRequest);
            assert!(body.message.starts_with("malformed request"));
        }
    }

    #[test]
    fn values_out_of_bounds_are_refused_where_they_are_parsed() {
        for (line, says) in [
            (r#"{"op":"kill","signal":0}"#, "signal 0 is not a signal"),
            (r#"{"op":"kill","signal":65}"#, "signal 65"),
            (r#"{"op":"kill","signal":-9}"#, "signal -9"),
            (
                r#"{"op":"exec","args":["true"],"timeout_secs":18446744073709551615}"#,
                "timeout of 18446744073709551615s is out of range",
            ),
            (
                r#"{"op":"exec","args":["true"],"timeout_secs":0}"#,
                "timeout of 0s",
            ),
            (r#"{"op":"exec","args":[]}"#, "no command"),
            (r#"{"op":"exec","args":["a\u0000b"]}"#, "NUL byte"),
            (
                r#"{"op":"exec","args":["true"],"env":["NOEQUALS"]}"#,
                "not KEY=VALUE",
            ),
            (
                r#"{"op":"exec","args":["true"],"cwd":"rel"}"#,
                "not an absolute path",
            ),
            (
                r#"{"op":"exec","args":["sh"],"tty":true,"window":[0,80]}"#,
                "zero side",
            ),
        ] {
            let Err(Response::Error(body)) = parse_request(line.as_bytes()) else {
                panic!("{line} accepted");
            };
            assert_eq!(body.kind, ErrorKind::BadRequest, "{line}");
            assert!(body.message.contains(says), "{line}: {}", body.message);
        }
        let long_id = format!(r#"{{"op":"exec_state","exec_id":"{}"}}"#, "x".repeat(129));
        assert!(parse_request(long_id.as_bytes()).is_err());
        let most =
            format!(r#"{{"op":"exec","args":["true"],"timeout_secs":{MAX_EXEC_TIMEOUT_SECS}}}"#);
        assert!(parse_request(most.as_bytes()).is_ok());
    }

    #[test]
    fn answers_on_the_wire() {
        insta::assert_snapshot!(String::from_utf8(
            [
                Response::Ok(Reply::Exit { exit_code: 3 }).to_line(),
                Response::Ok(Reply::Pids { pids: vec![1, 2] }).to_line(),
                Response::Ok(Reply::Done {}).to_line(),
                Response::error(ErrorKind::InvalidState, "container is not running").to_line(),
            ]
            .concat()
        )
        .unwrap());
    }
}
