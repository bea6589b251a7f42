//! Decoding the runtime options containerd sends: the runc shim's own (`containerd.runc.v1.Options`),
//! which tether accepts so it can stand in for `containerd-shim-runc-v2`, and the CRI plugin's
//! `runtimeoptions.v1.Options`, which it sends for every other runtime type and which names a config
//! file (`ConfigPath`, or its text in `ConfigBody`). tether's config file is TOML with the runc
//! options' names, plus `LogMaxSize` and `LogMaxFiles` for `file://` logs:
//!
//! ```toml
//! BinaryName = "/usr/bin/crun"
//! Root = "/run/containerd/crun"
//! SystemdCgroup = true
//! LogMaxSize = "10m"
//! LogMaxFiles = 3
//! ```
//!
//! They come with the Create request, else from what containerd gave `start` on stdin. Every path
//! and size is bounded.

use crate::shim::runtime::RuntimeOptions;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{CodedInputStream, Message};
use containerd_shim_protos::shim::oci::Options;

/// The longest path an option may name (PATH_MAX).
const MAX_PATH: usize = 4096;
/// The largest config file read.
const MAX_CONFIG: u64 = 64 << 10;
/// The most rotated files kept.
const MAX_LOG_FILES: u32 = 1000;

/// Decodes an `Options` message; an absent or empty one gives the defaults.
pub fn decode(bytes: &[u8]) -> Result<RuntimeOptions, String> {
    if bytes.is_empty() {
        return Ok(RuntimeOptions::default());
    }
    let options = Options::parse_from_bytes(bytes).map_err(|e| format!("runtime options: {e}"))?;
    paths_checked(RuntimeOptions {
        binary_name: options.binary_name,
        root: options.root,
        systemd_cgroup: options.systemd_cgroup,
        no_pivot_root: options.no_pivot_root,
        no_new_keyring: options.no_new_keyring,
        io_uid: options.io_uid,
        io_gid: options.io_gid,
        shim_cgroup: options.shim_cgroup,
        ..RuntimeOptions::default()
    })
    .map_err(|e| format!("runtime options: {e}"))
}

/// The options, if those that name a path name one.
fn paths_checked(options: RuntimeOptions) -> Result<RuntimeOptions, String> {
    for (name, value) in [
        ("BinaryName", &options.binary_name),
        ("Root", &options.root),
        ("ShimCgroup", &options.shim_cgroup),
    ] {
        if value.len() > MAX_PATH || value.contains('\0') {
            return Err(format!(
                "{name} is not a path (a NUL byte, or over {MAX_PATH} bytes)"
            ));
        }
    }
    Ok(options)
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

/// The options of a Create request: its own `options` if they are runc options or a CRI config
/// reference, else `fallback`. Options of another type carry nothing tether acts on and are passed
/// over; see [`foreign_type`].
pub fn from_request(any: Option<&Any>, fallback: RuntimeOptions) -> Result<RuntimeOptions, String> {
    match any {
        Some(any) if any.type_url.ends_with("runc.v1.Options") => decode(&any.value),
        Some(any) if any.type_url.ends_with("runtimeoptions.v1.Options") => {
            from_cri(&any.value, fallback)
        }
        _ => Ok(fallback),
    }
}

/// The type of options that [`from_request`] passes over, for the log.
pub fn foreign_type(any: Option<&Any>) -> Option<&str> {
    let known =
        |url: &str| url.ends_with("runc.v1.Options") || url.ends_with("runtimeoptions.v1.Options");
    any.filter(|any| !any.type_url.is_empty() && !known(&any.type_url))
        .map(|any| any.type_url.as_str())
}

/// `runtimeoptions.v1.Options { type_url = 1; config_path = 2; config_body = 3 }`: the config file
/// it names (or carries), else `fallback` when it names none.
fn from_cri(bytes: &[u8], fallback: RuntimeOptions) -> Result<RuntimeOptions, String> {
    let invalid = |e: containerd_shim_protos::protobuf::Error| format!("CRI runtime options: {e}");
    let mut input = CodedInputStream::from_bytes(bytes);
    let (mut path, mut body) = (String::new(), Vec::new());
    while let Some(tag) = input.read_raw_tag_or_eof().map_err(invalid)? {
        match tag {
            // Field 2 and 3, length-delimited.
            0x12 => path = input.read_string().map_err(invalid)?,
            0x1a => body = input.read_bytes().map_err(invalid)?,
            _ => {
                let wire = containerd_shim_protos::protobuf::rt::WireType::new(tag & 7)
                    .ok_or_else(|| {
                        format!(
                            "CRI runtime options: wire type {} of field {}",
                            tag & 7,
                            tag >> 3
                        )
                    })?;
                input.skip_field(wire).map_err(invalid)?;
            }
        }
    }
    if body.is_empty() {
        if path.is_empty() {
            return Ok(fallback);
        }
        if path.len() > MAX_PATH || path.contains('\0') {
            return Err("CRI runtime options: ConfigPath is not a path".into());
        }
        body = read_config(&path)?;
    }
    if body.len() as u64 > MAX_CONFIG {
        return Err(format!(
            "tether config {path}: over {} KiB",
            MAX_CONFIG >> 10
        ));
    }
    let text =
        std::str::from_utf8(&body).map_err(|_| format!("tether config {path}: not UTF-8"))?;
    from_config(text).map_err(|e| {
        if path.is_empty() {
            format!("tether config (ConfigBody): {e}")
        } else {
            format!("tether config {path}: {e}")
        }
    })
}

fn read_config(path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("tether config {path}: {e}"))?;
    let mut body = Vec::new();
    file.take(MAX_CONFIG + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("tether config {path}: {e}"))?;
    Ok(body)
}

/// A size in the config file: bytes, or a string with a unit (`"10m"`).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

/// tether's config file.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "PascalCase", default)]
struct ConfigFile {
    binary_name: String,
    root: String,
    systemd_cgroup: bool,
    no_pivot_root: bool,
    no_new_keyring: bool,
    io_uid: u32,
    io_gid: u32,
    shim_cgroup: String,
    log_max_size: Option<Size>,
    log_max_files: Option<u32>,
}

/// The options a config file's text gives (TOML; see the module docs). The error is one line.
pub fn from_config(text: &str) -> Result<RuntimeOptions, String> {
    let config: ConfigFile = toml::from_str(text).map_err(|e| {
        // One line: the parser's message may span several.
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        match e.span() {
            Some(span) => {
                // Bytes, not a str slice: an offset inside a character must not panic.
                let before = &text.as_bytes()[..span.start.min(text.len())];
                let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
                // The key the line sets: a wrong type's message does not name it.
                match key_on_line(text, line) {
                    Some(key) if !message.contains(key) => {
                        format!("line {line}, {key}: {message}")
                    }
                    _ => format!("line {line}: {message}"),
                }
            }
            None => message,
        }
    })?;
    let log_max_size = match config.log_max_size {
        None => 0,
        Some(Size::Bytes(bytes)) => bytes,
        Some(Size::Text(text)) => {
            crate::common::units::parse_size(&text).map_err(|e| format!("LogMaxSize: {e}"))?
        }
    };
    let log_max_files = config.log_max_files.unwrap_or(1);
    if !(1..=MAX_LOG_FILES).contains(&log_max_files) {
        return Err(format!(
            "LogMaxFiles: {log_max_files} is not 1 to {MAX_LOG_FILES}"
        ));
    }
    if log_max_size != 0 && log_max_size < 4096 {
        return Err(format!(
            "LogMaxSize: {log_max_size} bytes is under the 4 KiB minimum"
        ));
    }
    paths_checked(RuntimeOptions {
        binary_name: config.binary_name,
        root: config.root,
        systemd_cgroup: config.systemd_cgroup,
        no_pivot_root: config.no_pivot_root,
        no_new_keyring: config.no_new_keyring,
        io_uid: config.io_uid,
        io_gid: config.io_gid,
        shim_cgroup: config.shim_cgroup,
        log_max_size,
        log_max_files,
    })
}

/// The bare key a `Key = value` line of `text` sets (line numbers from 1); None for any other
/// line, or a key too long to be one of ours.
fn key_on_line(text: &str, line: usize) -> Option<&str> {
    let (key, _) = text.lines().nth(line.checked_sub(1)?)?.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && key.len() <= 32 && key.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(key)
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
            let cri = Any { type_url: "runtimeoptions.v1.Options".into(), value: bytes, ..Default::default() };
            let _ = from_request(Some(&cri), RuntimeOptions::default());
        }

        #[test]
        fn any_config_text_parses_or_gets_a_one_line_error(text in "\\PC{0,200}") {
            if let Err(error) = from_config(&text) {
                prop_assert_eq!(error.lines().count(), 1);
            }
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
        any.type_url = "example.v1.Other".into();
        any.value = vec![1, 2, 3];
        assert_eq!(
            from_request(Some(&any), fallback.clone()).unwrap(),
            fallback
        );
        assert_eq!(foreign_type(Some(&any)), Some("example.v1.Other"));
        let mut malformed = Any::new();
        malformed.type_url = "containerd.runc.v1.Options".into();
        malformed.value = vec![0xff, 0xff];
        assert!(from_request(Some(&malformed), fallback)
            .unwrap_err()
            .starts_with("runtime options"));
    }

    fn cri(fields: &[(u8, &[u8])]) -> Any {
        let mut value = Vec::new();
        for (tag, bytes) in fields {
            value.push(*tag);
            value.push(bytes.len() as u8);
            value.extend_from_slice(bytes);
        }
        Any {
            type_url: "runtimeoptions.v1.Options".into(),
            value,
            ..Default::default()
        }
    }

    #[test]
    fn a_config_file_gives_runc_options_and_rotation() {
        let options = from_config(
            "BinaryName = \"/usr/bin/crun\"\nSystemdCgroup = true\nLogMaxSize = \"10m\"\nLogMaxFiles = 3\n",
        )
        .unwrap();
        assert_eq!(options.binary_name, "/usr/bin/crun");
        assert!(options.systemd_cgroup);
        assert_eq!((options.log_max_size, options.log_max_files), (10 << 20, 3));
        assert_eq!(from_config("").unwrap().log_max_size, 0);
        assert_eq!(from_config("LogMaxSize = 8192").unwrap().log_max_size, 8192);
    }

    #[test]
    fn a_bad_config_file_is_one_line_naming_the_problem() {
        for (text, want) in [
            ("Colour = 1", "unknown field"),
            (
                "SystemdCgroup = \"yes\"",
                "line 1, SystemdCgroup: invalid type",
            ),
            ("Root = \"/r\"\nNoPivotRoot = 1", "line 2, NoPivotRoot"),
            ("\n\nLogMaxSize = \"ten\"", "LogMaxSize"),
            ("LogMaxSize = 100", "4 KiB minimum"),
            ("LogMaxFiles = 0", "LogMaxFiles"),
            ("Root = \"a\\u0000b\"", "Root is not a path"),
            ("BinaryName = ", "line 1"),
        ] {
            let error = from_config(text).unwrap_err();
            assert!(error.contains(want), "{text:?}: {error}");
            assert_eq!(error.lines().count(), 1, "{text:?}: {error}");
        }
    }

    #[test]
    fn cri_options_carry_the_config_in_their_body_or_name_its_file() {
        let fallback = RuntimeOptions {
            root: "/r".into(),
            ..RuntimeOptions::default()
        };
        let body = cri(&[(0x0a, b"x"), (0x1a, b"Root = \"/from/body\"")]);
        let options = from_request(Some(&body), fallback.clone()).unwrap();
        assert_eq!(options.root, "/from/body");
        assert_eq!(foreign_type(Some(&body)), None);
        // Naming no config: the defaults containerd gave `start`.
        assert_eq!(
            from_request(Some(&cri(&[(0x0a, b"x")])), fallback.clone()).unwrap(),
            fallback
        );
        let missing = cri(&[(0x12, b"/nonexistent/tether.toml")]);
        let error = from_request(Some(&missing), fallback.clone()).unwrap_err();
        assert!(
            error.starts_with("tether config /nonexistent/tether.toml"),
            "{error}"
        );
        let mut truncated = cri(&[(0x12, b"/x")]);
        truncated.value.truncate(3);
        assert!(from_request(Some(&truncated), fallback).is_err());
    }
}
