//! Who may use a door, and how many at once: the one admission step of both socket servers
//! (tether's control socket and containerd's ttrpc). A shim serves only its owner: the socket is
//! made 0600 whatever the umask ([`bind_owner_only`]), and every connection's peer is checked
//! (`SO_PEERCRED`) before a byte is read; past the door's cap a connection is refused. Refusals
//! are said in the shim's log once for the first and then at every power of two, so a stranger
//! knocking in a loop cannot flood it.

use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;

/// Binds a unix socket at `path` (a stale one there is replaced) that only its owner may
/// connect to: mode 0600, whatever the umask. Its directory is the caller's to keep private.
pub fn bind_owner_only(path: &Path) -> std::io::Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(crate::common::sockpath::SocketPath::new(path)?.as_path())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its peer is not one the door serves (or could not be told).
    Stranger(String),
    /// The door has as many connections as it takes.
    Full(String),
}

impl Refusal {
    /// The reason, one line.
    pub fn why(&self) -> &str {
        match self {
            Refusal::Stranger(why) | Refusal::Full(why) => why,
        }
    }
}

/// One door's admission rules and its refusals so far.
#[derive(Debug)]
pub struct Admission {
    /// The users served.
    uids: Vec<u32>,
    /// The most connections open at once.
    cap: usize,
    strangers: u64,
    full: u64,
}

impl Admission {
    /// Admits peers running as one of `uids`, up to `cap` connections.
    pub fn new(uids: &[u32], cap: usize) -> Self {
        Admission {
            uids: uids.to_vec(),
            cap,
            strangers: 0,
            full: 0,
        }
    }

    /// Admits a connection while `open` are open already. Otherwise returns why, with the line for
    /// the shim's log when this refusal is one to say.
    pub fn admit(
        &mut self,
        stream: &impl AsFd,
        open: usize,
    ) -> Result<(), (Refusal, Option<String>)> {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let (refusal, count) = match getsockopt(stream, PeerCredentials) {
            Ok(credentials) if self.uids.contains(&credentials.uid()) => {
                if open < self.cap {
                    return Ok(());
                }
                self.full += 1;
                let why = format!("too many connections (limit {})", self.cap);
                (Refusal::Full(why), self.full)
            }
            Ok(credentials) => {
                self.strangers += 1;
                let why = format!(
                    "uid {} may not use this shim (it serves uid {})",
                    credentials.uid(),
                    self.uids.last().copied().unwrap_or_default()
                );
                (Refusal::Stranger(why), self.strangers)
            }
            Err(e) => {
                self.strangers += 1;
                (
                    Refusal::Stranger(format!("peer credentials: {e}")),
                    self.strangers,
                )
            }
        };
        let say = (count == 1 || count.is_power_of_two()).then(|| {
            format!(
                "refused a connection: {} ({count} refused so far)",
                refusal.why()
            )
        });
        Err((refusal, say))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn the_owner_is_admitted_and_a_stranger_refused_and_said_sparingly() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(Admission::new(&[me], 4).admit(&ours, 0), Ok(()));
        let stranger = me.wrapping_add(1);
        let mut door = Admission::new(&[stranger], 4);
        let said: Vec<bool> = (0..5)
            .map(|_| {
                let (refusal, say) = door.admit(&ours, 0).unwrap_err();
                assert_eq!(
                    refusal,
                    Refusal::Stranger(format!(
                        "uid {me} may not use this shim (it serves uid {stranger})"
                    ))
                );
                say.is_some()
            })
            .collect();
        assert_eq!(
            said,
            [true, true, false, true, false],
            "the 1st, 2nd and 4th"
        );
    }

    #[test]
    fn past_the_cap_the_owner_is_refused_too() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let mut door = Admission::new(&[me], 2);
        assert_eq!(door.admit(&ours, 1), Ok(()));
        let (refusal, say) = door.admit(&ours, 2).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::Full("too many connections (limit 2)".into())
        );
        assert!(say.is_some());
    }

    #[test]
    fn the_socket_is_the_owners_alone() {
        // (The umask is the process's, shared by parallel tests: it is not changed here. Under
        // the usual 022 a socket is made 0755, so 0600 is the chmod's.)
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        bind_owner_only(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
