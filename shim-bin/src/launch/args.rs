//! containerd's command line for a runtime v2 shim, in Go's `flag` syntax:
//! `-namespace NS -address ADDR -publish-binary BIN -id ID [-bundle DIR] [-debug] start|delete`.

use std::path::PathBuf;

/// What containerd asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start (or find) the shim daemon for the container and print its address.
    Start,
    /// Clean up after a shim that is gone; print a `DeleteResponse`.
    Delete,
    /// Be the shim daemon (what `start` runs; not containerd's word).
    Serve,
    /// Print the version.
    Version,
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimArgs {
    pub namespace: String,
    /// containerd's gRPC socket.
    pub address: String,
    /// The binary containerd names for publishing events (unused: events go over ttrpc).
    pub publish_binary: String,
    pub id: String,
    pub bundle: Option<PathBuf>,
    pub debug: bool,
    pub action: Action,
}

impl ShimArgs {
    /// Parses the arguments after the program name. The error is one line for containerd's log.
    pub fn parse(args: &[String]) -> Result<ShimArgs, String> {
        let mut parsed = ShimArgs {
            namespace: String::new(),
            address: String::new(),
            publish_binary: String::new(),
            id: String::new(),
            bundle: None,
            debug: false,
            action: Action::Serve,
        };
        let mut action = None;
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                if action.is_some() {
                    return Err(format!("unexpected argument {arg:?}"));
                }
                action = Some(match arg.as_str() {
                    "start" => Action::Start,
                    "delete" => Action::Delete,
                    "serve" => Action::Serve,
                    other => return Err(format!("unknown action {other:?} (start or delete)")),
                });
                continue;
            };
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (flag, None),
            };
            if name == "debug" {
                parsed.debug = inline.as_deref().is_none_or(|v| v == "true" || v == "1");
                continue;
            }
            if name == "v" || name == "version" {
                parsed.action = Action::Version;
                return Ok(parsed);
            }
            let value = match inline {
                Some(value) => value,
                None => rest
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("flag {} needs a value", shown(name)))?,
            };
            match name {
                "namespace" => parsed.namespace = value,
                "address" => parsed.address = value,
                "publish-binary" => parsed.publish_binary = value,
                "id" => parsed.id = value,
                "bundle" => parsed.bundle = Some(PathBuf::from(value)),
                // Flags of older containerd releases: accepted, not needed.
                "socket" | "containerd-binary" | "criu" | "systemd-cgroup" => {}
                other => return Err(format!("unknown flag {}", shown(other))),
            }
        }
        parsed.action = action.unwrap_or(Action::Serve);
        if parsed.namespace.is_empty() {
            return Err("-namespace is required".into());
        }
        if parsed.id.is_empty() {
            return Err("-id is required".into());
        }
        if parsed.id.contains('/') || parsed.id.starts_with('.') || parsed.id.len() > 1024 {
            return Err(format!("-id {:?} is not a container id", parsed.id));
        }
        Ok(parsed)
    }

    /// The bundle: `-bundle`, else the working directory containerd runs the shim in.
    pub fn bundle_dir(&self) -> Result<PathBuf, String> {
        match &self.bundle {
            Some(dir) => Ok(dir.clone()),
            None => std::env::current_dir().map_err(|e| format!("working directory: {e}")),
        }
    }
}

/// A flag as the error names it: `-name`, quoted and escaped when it holds anything but plain
/// visible characters (a newline in an argument must not split the one-line error).
fn shown(name: &str) -> String {
    if name.chars().all(|c| c.is_ascii_graphic()) {
        format!("-{name}")
    } else {
        format!("{:?}", format!("-{name}"))
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("-namespace".to_owned()),
            Just("-id".to_owned()),
            Just("--address=x".to_owned()),
            Just("-debug".to_owned()),
            Just("start".to_owned()),
            Just("delete".to_owned()),
            Just("-bundle".to_owned()),
            "\\PC{0,20}",
            "-[a-z\\n ]{1,8}",
        ]
    }

    proptest! {
        #[test]
        fn any_command_line_parses_or_gets_a_one_line_error(args in prop::collection::vec(word(), 0..12)) {
            match ShimArgs::parse(&args) {
                Ok(parsed) => {
                    // `-v` needs neither an id nor a namespace.
                    if parsed.action != Action::Version {
                        prop_assert!(!parsed.id.is_empty() && !parsed.id.contains('/') && parsed.id.len() <= 1024);
                        prop_assert!(!parsed.namespace.is_empty());
                    }
                }
                Err(message) => prop_assert!(!message.contains('\n')),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<ShimArgs, String> {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        ShimArgs::parse(&args)
    }

    #[test]
    fn containerd_start_invocation() {
        let args = parse(
            "-namespace k8s.io -address /run/containerd/containerd.sock -publish-binary /usr/bin/containerd -id abc -debug start",
        )
        .unwrap();
        assert_eq!(args.namespace, "k8s.io");
        assert_eq!(args.address, "/run/containerd/containerd.sock");
        assert_eq!(args.publish_binary, "/usr/bin/containerd");
        assert_eq!(args.id, "abc");
        assert!(args.debug);
        assert_eq!(args.action, Action::Start);
    }

    #[test]
    fn delete_with_bundle_and_inline_values() {
        let args = parse("--namespace=default -id=x -bundle /b delete").unwrap();
        assert_eq!(args.bundle, Some(PathBuf::from("/b")));
        assert_eq!(args.action, Action::Delete);
        assert!(!args.debug);
    }

    #[test]
    fn bad_command_lines_name_the_problem() {
        assert_eq!(
            parse("-namespace n -id x stop").unwrap_err(),
            "unknown action \"stop\" (start or delete)"
        );
        assert_eq!(
            parse("-namespace n -id").unwrap_err(),
            "flag -id needs a value"
        );
        assert_eq!(parse("-id x start").unwrap_err(), "-namespace is required");
        assert_eq!(
            parse("-namespace n -id ../x start").unwrap_err(),
            "-id \"../x\" is not a container id"
        );
        assert_eq!(
            parse("-namespace n -id x -frobnicate 1 start").unwrap_err(),
            "unknown flag -frobnicate"
        );
    }
}
