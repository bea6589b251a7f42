//! Decoding the runc shim's runtime options (`containerd.runc.v1.Options`), which tether accepts so
//! it can stand in for `containerd-shim-runc-v2`: from the Create request, else from what containerd
//! gave `start` on stdin. Every path is bounded.

use crate::shim::runtime::RuntimeOptions;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::Options;

/// The longest path an option may name (PATH_MAX).
const MAX_PATH: usize = 4096;

/// Decodes an `Options` message; an absent or empty one gives the defaults.
pub fn decode(bytes: &[u8]) -> Result<RuntimeOptions, String> {
    if bytes.is_empty() {
        return Ok(RuntimeOptions::default());
    }
    let options = Options::parse_from_bytes(bytes).map_err(|e| format!("runtime options: {e}"))?;
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
    let any = Any::parse_from_bytes(bytes).map_err(|e| format!("runtime options on stdin: {e}"))?;
    from_request(Some(&any), RuntimeOptions::default())
}

/// The options of a Create request: its own `options` if they are runc options, else
/// `fallback`. Options of another type (the kubelet's CRI sends `runtimeoptions.v1.Options` for
/// every runtime type but runc's) carry nothing tether acts on and are passed over; see
/// [`foreign_type`].
pub fn from_request(any: Option<&Any>, fallback: RuntimeOptions) -> Result<RuntimeOptions, String> {
    match any {
        Some(any) if any.type_url.ends_with("runc.v1.Options") => decode(&any.value),
        _ => Ok(fallback),
    }
}

/// The type of options that [`from_request`] passes over, for the log.
pub fn foreign_type(any: Option<&Any>) -> Option<&str> {
    any.filter(|any| !any.type_url.is_empty() && !any.type_url.ends_with("runc.v1.Options"))
        .map(|any| any.type_url.as_str())
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_decode_or_get_an_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(options) = decode(&bytes) {
                prop_assert!(options.binary_name.len() <= MAX_PATH && !options.root.contains('\0'));
            }
            let _ = from_start_input(&bytes);
        }

        #[test]
        fn any_path_length_is_bounded(len in 0usize..10_000) {
            let options = Options { root: "r".repeat(len), ..Default::default() };
            let decoded = decode(&options.write_to_bytes().unwrap());
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
        let decoded = from_request(Some(&any), RuntimeOptions::default()).unwrap();
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
        let decoded = from_start_input(&any.write_to_bytes().unwrap()).unwrap();
        assert_eq!(decoded.binary_name, "/usr/bin/crun");
        assert_eq!(from_start_input(&[]).unwrap(), RuntimeOptions::default());
        assert!(from_start_input(&[0xff, 0xff])
            .unwrap_err()
            .starts_with("runtime options on stdin"));
    }

    #[test]
    fn absent_and_foreign_options_fall_back() {
        let fallback = RuntimeOptions {
            root: "/r".into(),
            ..RuntimeOptions::default()
        };
        assert_eq!(from_request(None, fallback.clone()).unwrap(), fallback);
        let mut any = Any::new();
        any.type_url = "runtimeoptions.v1.Options".into();
        any.value = vec![1, 2, 3];
        assert_eq!(
            from_request(Some(&any), fallback.clone()).unwrap(),
            fallback
        );
        assert_eq!(foreign_type(Some(&any)), Some("runtimeoptions.v1.Options"));
        let mut malformed = Any::new();
        malformed.type_url = "containerd.runc.v1.Options".into();
        malformed.value = vec![0xff, 0xff];
        assert!(from_request(Some(&malformed), fallback)
            .unwrap_err()
            .starts_with("runtime options"));
    }
}
