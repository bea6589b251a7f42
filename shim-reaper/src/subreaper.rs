//! PR_SET_CHILD_SUBREAPER: orphans of our descendants are reparented to us instead of PID 1.

use crate::{Error, Result};
use nix::sys::prctl;

/// Makes the calling process a child subreaper: every orphaned descendant is reparented to it, so the
/// container's init (whose parent `runc create` exits) lands here and can be reaped and reported.
pub fn set_child_subreaper() -> Result<()> {
    prctl::set_child_subreaper(true).map_err(|source| Error::Subreaper {
        action: "set",
        source,
    })
}

/// Whether the calling process is a child subreaper.
pub fn is_child_subreaper() -> Result<bool> {
    prctl::get_child_subreaper().map_err(|source| Error::Subreaper {
        action: "get",
        source,
    })
}
