//! The words tether speaks in, shared by the daemon and the CLI: validated container ids
//! ([`ContainerId`]), statuses and exit records ([`ContainerState`], [`ExitRecord`]), the JSON-lines
//! control protocol ([`protocol`]) and where things live on disk ([`StateLayout`]).
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

pub mod frame;
mod id;
mod layout;
pub mod protocol;
mod state;

pub use id::{ContainerId, InvalidId};
pub use layout::{check_trusted, StateLayout, Untrusted, DEFAULT_STATE_DIR};
pub use state::{ContainerState, ExitRecord, Status};
