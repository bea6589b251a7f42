//! A shim serves only its owner: every door checks who is at the other end of a connection
//! (`SO_PEERCRED`) before it reads a byte, and says a refusal in the shim's log, once for the first
//! and then at every power of two (a stranger knocking in a loop cannot flood the log).

use std::os::fd::AsFd;

/// Refused connections so far.
#[derive(Debug, Default)]
pub struct Refusals(u64);

/// Admits a connection whose peer runs as one of `uids`. Otherwise returns why, with the line
/// for the shim's log when this refusal is one to say.
pub fn check(
    stream: &impl AsFd,
    uids: &[u32],
    refusals: &mut Refusals,
) -> Result<(), (String, Option<String>)> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let why = match getsockopt(stream, PeerCredentials) {
        Ok(credentials) if uids.contains(&credentials.uid()) => return Ok(()),
        Ok(credentials) => format!(
            "uid {} may not use this shim (it serves uid {})",
            credentials.uid(),
            uids.last().copied().unwrap_or_default()
        ),
        Err(e) => format!("peer credentials: {e}"),
    };
    refusals.0 += 1;
    let say = (refusals.0 == 1 || refusals.0.is_power_of_two()).then(|| {
        format!(
            "refused a connection: {why} ({} refused so far)",
            refusals.0
        )
    });
    Err((why, say))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn the_owner_is_admitted_and_a_stranger_refused_and_said_sparingly() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let mut refusals = Refusals::default();
        assert_eq!(check(&ours, &[me], &mut refusals), Ok(()));
        let stranger = me.wrapping_add(1);
        let said: Vec<bool> = (0..5)
            .map(|_| {
                let (why, say) = check(&ours, &[stranger], &mut refusals).unwrap_err();
                assert_eq!(
                    why,
                    format!("uid {me} may not use this shim (it serves uid {stranger})")
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
}
