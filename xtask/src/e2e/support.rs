//! What the cases share: a real terminal (tmux), a fifo reader that acts like a client, and checks
//! of the counters' output.

use super::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A real terminal: a private tmux server (its own socket) running one command; killed on drop.
pub(super) struct Terminal {
    server: String,
}

impl Terminal {
    pub(super) fn start(name: &str, command: &str) -> Result<Terminal, String> {
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

    pub(super) fn tmux(&self, args: &[&str]) -> Result<String, String> {
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

    pub(super) fn type_line(&self, line: &str) -> Check {
        self.tmux(&["send-keys", "-t", "main", "-l", line])?;
        self.tmux(&["send-keys", "-t", "main", "Enter"]).map(drop)
    }

    pub(super) fn screen(&self) -> Result<String, String> {
        self.tmux(&["capture-pane", "-p", "-t", "main"])
    }

    /// Waits until a line of the screen ends with `want`.
    pub(super) fn wait_for(&self, want: &str) -> Check {
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

/// Numbers read back from the counter's output must be 1, 2, 3, ... with nothing missing.
pub(super) fn check_counter(what: &str, output: &str, at_least: usize) -> Check {
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

pub(super) fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Reads a container's output fifo the way a client does (CRI, say), until told to stop or EOF.
/// Stopping never loses what was read: every read is kept before the stop flag is looked at.
pub(super) struct FifoReader {
    stop: Arc<AtomicBool>,
    data: Arc<Mutex<Vec<u8>>>,
    thread: std::thread::JoinHandle<Result<(), String>>,
}

impl FifoReader {
    pub(super) fn start(path: &Path) -> Result<FifoReader, String> {
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

    pub(super) fn lines(&self) -> usize {
        self.data
            .lock()
            .expect("data")
            .iter()
            .filter(|b| **b == b'\n')
            .count()
    }

    /// Stops reading (the fifo is closed) and returns everything read.
    pub(super) fn stop(self) -> Result<Vec<u8>, String> {
        self.stop.store(true, Ordering::SeqCst);
        self.join()
    }

    /// Waits for the end of the output (bounded), then returns everything read.
    pub(super) fn finish(self, timeout: Duration) -> Result<Vec<u8>, String> {
        let thread = &self.thread;
        let ended = wait_until(timeout, || Ok(thread.is_finished()));
        self.stop.store(true, Ordering::SeqCst);
        let data = self.join()?;
        ended.map_err(|e| format!("the output did not end: {e}"))?;
        Ok(data)
    }

    pub(super) fn join(self) -> Result<Vec<u8>, String> {
        self.thread
            .join()
            .map_err(|_| "fifo reader panicked".to_string())??;
        let data = std::mem::take(&mut *self.data.lock().expect("data"));
        Ok(data)
    }
}

/// The shim daemon serving container `id` (found by its command line, the same for every shim).
pub(super) fn shim_pid(id: &str) -> Option<i32> {
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
