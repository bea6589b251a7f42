//! The words tether speaks in, shared by the supervisor, its doors and the CLI: validated container
//! ids ([`ContainerId`]), processes ([`ProcessKey`]), exits ([`Exit`]), the one error type
//! ([`Error`], with a kind every door maps to its wire), domain events ([`Event`]), the lifecycle rules as pure decisions
//! ([`lifecycle`]), statuses and records ([`ContainerState`], [`ExitRecord`]), the JSON-lines
//! control protocol ([`protocol`]) and where things live on disk ([`StateLayout`]). No I/O.
//!
//! # Example
//!
//! ```
//! use shim_core::{ContainerId, StateLayout};
//! use shim_core::protocol::Request;
//!
//! let id: ContainerId = "web-1".parse()?;
//! let layout = StateLayout::new("/run/tether");
//! assert_eq!(layout.control_socket(&id).to_str(), Some("/run/tether/web-1/control.sock"));
//! assert!("../etc".parse::<ContainerId>().is_err());
//!
//! let request: Request = serde_json::from_str(r#"{"op":"kill","signal":9}"#)?;
//! assert_eq!(request, Request::Kill { signal: 9, all: false });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod error;
mod event;
mod exit;
pub mod frame;
mod id;
mod layout;
pub mod lifecycle;
mod process;
pub mod protocol;
mod state;

pub use error::{Error, ErrorKind, Result};
pub use event::{Event, RootfsMount, StdioPaths};
pub use exit::{Exit, ExitStatus};
pub use id::{ContainerId, InvalidId};
pub use layout::{check_trusted, StateLayout, Untrusted, DEFAULT_STATE_DIR};
pub use process::{ExecId, ProcessKey};
pub use state::{ContainerState, ExitRecord, Status};
