//! What the end-to-end tests stand on: a busybox OCI bundle made in a few milliseconds with no network
//! ([`fixture`]), and a harness that gives each test its own bundle, container id and runtime root and
//! cleans up after it even when it fails ([`harness`]).
//!
//! # Example
//!
//! ```no_run
//! use tether_tests::fixture::BundleSpec;
//!
//! let dir = tempfile::tempdir()?;
//! let bundle = BundleSpec::new(["echo", "hello"]).create(dir.path().join("bundle"))?;
//! assert!(bundle.config_path().exists());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod fixture;
pub mod harness;
pub mod tether;
