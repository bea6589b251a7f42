//! The runc shim's runtime options (`containerd.runc.v1.Options`), which tether accepts so it can stand
//! in for `containerd-shim-runc-v2`: from the Create request, else from what containerd gave `start`
//! on stdin. What `delete` needs of them later is kept in the bundle.

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::Options;
use serde::{Deserialize, Serialize};
use shim_runc::Runc;
use std::path::{Path, PathBuf};

/// The longest path an option may name (PATH_MAX).
const MAX_PATH: usize = 4096;

/// The longest one runtime command may take before it is killed (a hung runtime must not hang the
/// shim's one thread for ever).
const RUNTIME_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Where `start` keeps the options containerd passed on stdin, and Create the ones in force.
const SAVED: &str = "tether-options.json";

/// The options tether acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeOptions {
    /// The runtime binary (`runc` on PATH when empty).
    pub binary_name: String,
    /// The runtime's `--root` (`/run/containerd/runc/<namespace>` when empty, as the runc shim).
    pub root: String,
    pub systemd_cgroup: bool,
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
    /// Owner of the process's stdio pipes (for user namespaces).
    pub io_uid: u32,
    pub io_gid: u32,
    /// A cgroup (v1 path) the shim daemon moves itself into.
    pub shim_cgroup: String,
}

impl RuntimeOptions {
    /// Decodes an `Options` message; an absent or empty one gives the defaults.
    pub fn decode(bytes: &[u8]) -> Result<RuntimeOptions, String> {
        if bytes.is_empty() {
            return Ok(RuntimeOptions::default());
        }
        let options =
            Options::parse_from_bytes(bytes).map_err(|e| format!("runtime options: {e}"))?;
        for (name, value) in [
            ("BinaryName", &options.binary_name),
            ("Root", &options.root),
            ("ShimCgroup", &options.shim_cgroup),
        ] {
            if value.len() > MAX_PATH || value.contains('\0') {
                return Err(format!(
                    "runtime options: {name} is not a path (a NUL byte, or over {MAX_PATH} bytes)"
                ));
            }
        }
        Ok(RuntimeOptions {
            binary_name: options.binary_name,
            root: options.root,
            systemd_cgroup: options.systemd_cgroup,
            no_pivot_root: options.no_pivot_root,
            no_new_keyring: options.no_new_keyring,
            io_uid: options.io_uid,
            io_gid: options.io_gid,
            shim_cgroup: options.shim_cgroup,
        })
    }

    /// The options containerd gives `start` on stdin: an `Any` (as containerd marshals its runtime
    /// configuration), holding runc options or nothing tether knows.
    pub fn from_start_input(bytes: &[u8]) -> Result<RuntimeOptions, String> {
        if bytes.is_empty() {
            return Ok(RuntimeOptions::default());
        }
        let any =
            Any::parse_from_bytes(bytes).map_err(|e| format!("runtime options on stdin: {e}"))?;
        Self::from_request(Some(&any), RuntimeOptions::default())
    }

    /// The options of a Create request: its own `options` if they are runc options, else
    /// `fallback`. Options of another type (the kubelet's CRI sends `runtimeoptions.v1.Options` for
    /// every runtime type but runc's) carry nothing tether acts on and are passed over; see
    /// [`RuntimeOptions::foreign_type`].
    pub fn from_request(
        any: Option<&Any>,
        fallback: RuntimeOptions,
    ) -> Result<RuntimeOptions, String> {
        match any {
            Some(any) if any.type_url.ends_with("runc.v1.Options") => Self::decode(&any.value),
            _ => Ok(fallback),
        }
    }

    /// The type of options that [`RuntimeOptions::from_request`] passes over, for the log.
    pub fn foreign_type(any: Option<&Any>) -> Option<&str> {
        any.filter(|any| !any.type_url.is_empty() && !any.type_url.ends_with("runc.v1.Options"))
            .map(|any| any.type_url.as_str())
    }

    /// The runtime's `--root`.
    pub fn runc_root(&self, namespace: &str) -> PathBuf {
        if self.root.is_empty() {
            Path::new("/run/containerd/runc").join(namespace)
        } else {
            PathBuf::from(&self.root)
        }
    }

    /// The runtime client these options describe.
    pub fn runc(&self, namespace: &str, bundle: &Path) -> Runc {
        let binary = if self.binary_name.is_empty() {
            "runc"
        } else {
            &self.binary_name
        };
        Runc::new(binary)
            .root(self.runc_root(namespace))
            .log(bundle.join("log.json"))
            .systemd_cgroup(self.systemd_cgroup)
            .timeout(RUNTIME_TIMEOUT)
            .scratch_dir(bundle)
    }

    /// Keeps the options in the bundle.
    pub fn save(&self, bundle: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).expect("options serialize");
        std::fs::write(bundle.join(SAVED), json)
    }

    /// The options kept in the bundle, else the defaults.
    pub fn load(bundle: &Path) -> RuntimeOptions {
        std::fs::read(bundle.join(SAVED))
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .unwrap_or_default()
    }
}

/// Moves this process into the v1 cgroup `path` of every mounted controller that has it.
pub fn join_cgroup(path: &str) -> Result<(), String> {
    let relative = path.trim_start_matches('/');
    let mut joined = false;
    let controllers =
        std::fs::read_dir("/sys/fs/cgroup").map_err(|e| format!("/sys/fs/cgroup: {e}"))?;
    for controller in controllers.flatten() {
        let procs = controller.path().join(relative).join("cgroup.procs");
        if procs.exists() && std::fs::write(&procs, std::process::id().to_string()).is_ok() {
            joined = true;
        }
    }
    if joined {
        Ok(())
    } else {
        Err(format!("shim cgroup {path}: no controller has it"))
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_decode_or_get_an_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(options) = RuntimeOptions::decode(&bytes) {
                prop_assert!(options.binary_name.len() <= MAX_PATH && !options.root.contains('\0'));
            }
            let _ = RuntimeOptions::from_start_input(&bytes);
        }

        #[test]
        fn any_path_length_is_bounded(len in 0usize..10_000) {
            let options = Options { root: "r".repeat(len), ..Default::default() };
            let decoded = RuntimeOptions::decode(&options.write_to_bytes().unwrap());
            prop_assert_eq!(decoded.is_ok(), len <= MAX_PATH);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_options_are_decoded_from_the_request() {
        let mut options = Options::new();
        options.binary_name = "/usr/bin/crun".into();
        options.root = "/run/x".into();
        options.systemd_cgroup = true;
        options.io_uid = 1000;
        let mut any = Any::new();
        any.type_url = "containerd.runc.v1.Options".into();
        any.value = options.write_to_bytes().unwrap();
        let decoded = RuntimeOptions::from_request(Some(&any), RuntimeOptions::default()).unwrap();
        assert_eq!(decoded.binary_name, "/usr/bin/crun");
        assert_eq!(decoded.root, "/run/x");
        assert!(decoded.systemd_cgroup);
        assert_eq!(decoded.io_uid, 1000);
    }

    #[test]
    fn start_input_is_an_any_holding_runc_options() {
        let options = Options {
            binary_name: "/usr/bin/crun".into(),
            ..Default::default()
        };
        let any = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: options.write_to_bytes().unwrap(),
            ..Default::default()
        };
        let decoded = RuntimeOptions::from_start_input(&any.write_to_bytes().unwrap()).unwrap();
        assert_eq!(decoded.binary_name, "/usr/bin/crun");
        assert_eq!(
            RuntimeOptions::from_start_input(&[]).unwrap(),
            RuntimeOptions::default()
        );
        assert!(RuntimeOptions::from_start_input(&[0xff, 0xff])
            .unwrap_err()
            .starts_with("runtime options on stdin"));
    }

    #[test]
    fn absent_and_foreign_options_fall_back() {
        let fallback = RuntimeOptions {
            root: "/r".into(),
            ..RuntimeOptions::default()
        };
        assert_eq!(
            RuntimeOptions::from_request(None, fallback.clone()).unwrap(),
            fallback
        );
        let mut any = Any::new();
        any.type_url = "runtimeoptions.v1.Options".into();
        any.value = vec![1, 2, 3];
        assert_eq!(
            RuntimeOptions::from_request(Some(&any), fallback.clone()).unwrap(),
            fallback
        );
        assert_eq!(
            RuntimeOptions::foreign_type(Some(&any)),
            Some("runtimeoptions.v1.Options")
        );
        let mut malformed = Any::new();
        malformed.type_url = "containerd.runc.v1.Options".into();
        malformed.value = vec![0xff, 0xff];
        assert!(RuntimeOptions::from_request(Some(&malformed), fallback)
            .unwrap_err()
            .starts_with("runtime options"));
    }
}
