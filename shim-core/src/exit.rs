//! How a process ended: the one exit type of tether. The reaper makes them, the supervisor records
//! them, every door reports them (as the shell's single code, or code and signal).

use std::fmt;
use std::time::SystemTime;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It called `exit` with this code (0..=255).
    Exited(i32),
    /// It was killed by this signal number.
    Signaled { signal: i32, core_dumped: bool },
}

impl ExitStatus {
    /// Decodes a raw wait status as returned by `waitpid(2)`.
    pub fn from_wait_status(raw: i32) -> Self {
        if libc_wifexited(raw) {
            ExitStatus::Exited((raw >> 8) & 0xff)
        } else {
            ExitStatus::Signaled {
                signal: raw & 0x7f,
                core_dumped: raw & 0x80 != 0,
            }
        }
    }

    /// The raw wait status this value stands for, as `std::process::ExitStatus::from_raw` expects.
    pub fn to_wait_status(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => (code & 0xff) << 8,
            ExitStatus::Signaled {
                signal,
                core_dumped,
            } => (signal & 0x7f) | if core_dumped { 0x80 } else { 0 },
        }
    }

    /// The shell's convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled { signal, .. } => 128 + signal,
        }
    }

    /// Whether the process exited with code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }
}

fn libc_wifexited(raw: i32) -> bool {
    raw & 0x7f == 0
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Exited(code) => write!(f, "exit status {code}"),
            ExitStatus::Signaled {
                signal,
                core_dumped,
            } => {
                let name = nix::sys::signal::Signal::try_from(signal)
                    .map(|s| s.as_str())
                    .unwrap_or("unknown signal");
                write!(f, "killed by {name}")?;
                if core_dumped {
                    write!(f, " (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

/// One process's end: who, how, when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The pid it had.
    pub pid: i32,
    /// How it ended.
    pub status: ExitStatus,
    /// When the reaper collected it.
    pub reaped_at: SystemTime,
}

impl Exit {
    /// What is recorded for a process removed by force before its exit was seen: SIGKILL, code
    /// 137, on every door (`tether rm -f`, containerd's forced Delete).
    pub fn forced(pid: i32, at: SystemTime) -> Exit {
        Exit {
            pid,
            status: ExitStatus::Signaled {
                signal: 9,
                core_dumped: false,
            },
            reaped_at: at,
        }
    }

    /// The shell's single code (see [`ExitStatus::code`]).
    pub fn code(&self) -> i32 {
        self.status.code()
    }

    /// The signal that ended it, if one did (an `exit 130` is a code, not SIGINT).
    pub fn signal(&self) -> Option<i32> {
        match self.status {
            ExitStatus::Signaled { signal, .. } => Some(signal),
            ExitStatus::Exited(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status_round_trips() {
        for status in [
            ExitStatus::Exited(0),
            ExitStatus::Exited(255),
            ExitStatus::Signaled {
                signal: 9,
                core_dumped: false,
            },
            ExitStatus::Signaled {
                signal: 6,
                core_dumped: true,
            },
        ] {
            assert_eq!(
                ExitStatus::from_wait_status(status.to_wait_status()),
                status
            );
        }
    }

    #[test]
    fn shell_codes() {
        assert_eq!(ExitStatus::Exited(7).code(), 7);
        let term = ExitStatus::Signaled {
            signal: 15,
            core_dumped: false,
        };
        assert_eq!(term.code(), 143);
        assert_eq!(term.to_string(), "killed by SIGTERM");
    }

    #[test]
    fn a_forced_removal_is_sigkill_and_137() {
        let exit = Exit::forced(42, SystemTime::UNIX_EPOCH);
        assert_eq!((exit.code(), exit.signal()), (137, Some(9)));
    }

    #[test]
    fn an_exit_code_of_130_is_not_a_signal() {
        let exit = Exit {
            pid: 1,
            status: ExitStatus::Exited(130),
            reaped_at: SystemTime::UNIX_EPOCH,
        };
        assert_eq!((exit.code(), exit.signal()), (130, None));
        assert_eq!(exit.status.to_string(), "exit status 130");
    }
}
