//! Exec and Attach through CRI's streaming server, as `kubectl exec` and `kubectl attach` reach
//! it: a WebSocket on the URL the call returned, speaking kubelet's `v4.channel.k8s.io` protocol.
//! Every binary message starts with its channel (0 stdin, 1 stdout, 2 stderr, 3 the error
//! channel, which carries a JSON `Status` when the process has ended); the server first sends an
//! empty message on a channel to say it is ready.

use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const PROTOCOL: &str = "v4.channel.k8s.io";

/// What came back on the output channels so far.
#[derive(Debug, Default)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The error channel's Status, once the process ended.
    pub status: Option<String>,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

pub struct Session {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    output: Output,
}

impl Session {
    /// Opens the stream at `url` (the `http://` URL of an Exec or Attach answer).
    pub fn open(url: &str) -> Result<Session, String> {
        let ws = url
            .strip_prefix("http://")
            .map(|rest| format!("ws://{rest}"))
            .ok_or_else(|| format!("streaming URL {url:?} is not http://"))?;
        let mut request = ws
            .into_client_request()
            .map_err(|e| format!("streaming URL {url:?}: {e}"))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            tungstenite::http::HeaderValue::from_static(PROTOCOL),
        );
        let (socket, _) =
            tungstenite::connect(request).map_err(|e| format!("open stream {url}: {e}"))?;
        if let MaybeTlsStream::Plain(tcp) = socket.get_ref() {
            // Short reads, so that every wait below keeps to its own deadline.
            tcp.set_read_timeout(Some(Duration::from_millis(100)))
                .map_err(|e| format!("stream: {e}"))?;
        }
        Ok(Session {
            socket,
            output: Output::default(),
        })
    }

    pub fn send_stdin(&mut self, data: &[u8]) -> Result<(), String> {
        let mut message = Vec::with_capacity(data.len() + 1);
        message.push(0);
        message.extend_from_slice(data);
        self.socket
            .send(Message::binary(message))
            .map_err(|e| format!("stream: send stdin: {e}"))
    }

    /// Reads until `done` holds of what arrived (or the stream ended, or `timeout`: an error
    /// saying what arrived).
    pub fn read_until(
        &mut self,
        timeout: Duration,
        done: impl Fn(&Output) -> bool,
    ) -> Result<&Output, String> {
        let deadline = Instant::now() + timeout;
        while !done(&self.output) {
            if Instant::now() >= deadline {
                return Err(format!(
                    "stream: not within {timeout:?}; so far {:?}",
                    self.output
                ));
            }
            match self.socket.read() {
                Ok(Message::Binary(data)) => self.take(&data)?,
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return if done(&self.output) {
                        Ok(&self.output)
                    } else {
                        Err(format!("stream ended early; got {:?}", self.output))
                    };
                }
                Err(e) => return Err(format!("stream: {e}; got {:?}", self.output)),
            }
        }
        Ok(&self.output)
    }

    /// Reads until the process's Status arrives; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<i32, String> {
        let status = self
            .read_until(timeout, |o| o.status.is_some())?
            .status
            .clone()
            .unwrap_or_default();
        exit_code(&status)
    }

    fn take(&mut self, data: &[u8]) -> Result<(), String> {
        let Some((&channel, payload)) = data.split_first() else {
            return Ok(());
        };
        match channel {
            1 => self.output.stdout.extend_from_slice(payload),
            2 => self.output.stderr.extend_from_slice(payload),
            3 if !payload.is_empty() => {
                self.output.status = Some(String::from_utf8_lossy(payload).into_owned())
            }
            3 => {}
            other => return Err(format!("stream: message on channel {other}")),
        }
        Ok(())
    }

    pub fn close(mut self) {
        let _ = self.socket.close(None);
        // The server's close answer; bounded by the read timeout.
        for _ in 0..10 {
            if self.socket.read().is_err() {
                break;
            }
        }
    }
}

/// The exit code a v4 `Status` tells: `Success` is 0, a `NonZeroExitCode` failure carries it in
/// a cause of reason `ExitCode`.
pub fn exit_code(status: &str) -> Result<i32, String> {
    let value: serde_json::Value =
        serde_json::from_str(status).map_err(|e| format!("status {status:?}: {e}"))?;
    match value["status"].as_str() {
        Some("Success") => Ok(0),
        Some("Failure") if value["reason"] == "NonZeroExitCode" => value["details"]["causes"]
            .as_array()
            .and_then(|causes| causes.iter().find(|c| c["reason"] == "ExitCode"))
            .and_then(|cause| cause["message"].as_str())
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("status {status:?} has no exit code")),
        _ => Err(format!("the process failed: {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::exit_code;

    #[test]
    fn statuses_give_exit_codes() {
        assert_eq!(exit_code(r#"{"metadata":{},"status":"Success"}"#), Ok(0));
        assert_eq!(
            exit_code(
                r#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"2"}]}}"#
            ),
            Ok(2)
        );
        assert!(
            exit_code(r#"{"status":"Failure","message":"no such container"}"#)
                .unwrap_err()
                .contains("no such container")
        );
        assert!(exit_code("not json").is_err());
    }
}
