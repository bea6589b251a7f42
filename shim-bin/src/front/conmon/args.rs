//! conmon's command line, read the way conmon's option parser (glib's) reads it: `--name value`
//! and `--name=value`, `-c ID` and `-cID`, grouped short switches (`-it`), repeated list options,
//! and words that are not options left alone (podman passes `--api-version 1`, where `1` is such a
//! word). Every option conmon 2.1.6 knows is accepted, the ones tether has no use for included;
//! anything else is refused before anything starts, in conmon's words, exit 1.

use std::path::PathBuf;

/// The longest value accepted from the command line (a path, an id, an argument).
const MAX_VALUE: usize = 64 * 1024;
/// The most values a list option may gather (`--exit-command-arg`, `--runtime-arg`, ...).
const MAX_LIST: usize = 4096;
/// The longest `--timeout` and `--exit-delay`, in seconds (conmon's are C ints).
const MAX_SECONDS: i64 = i32::MAX as i64;

/// What podman asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConmonArgs {
    pub version: bool,
    /// `-c`: the container's id (the runtime's name for it; the exit file's name).
    pub cid: Option<String>,
    /// `-u`: the container's id again, or an exec session's.
    pub cuuid: Option<String>,
    /// `-n`.
    pub name: Option<String>,
    /// `-r`: the runtime binary.
    pub runtime: Option<PathBuf>,
    /// `-b`: the bundle; holds `attach`, `ctl` and `oom`.
    pub bundle: Option<PathBuf>,
    /// `-p`: the container's pid file, which the runtime writes.
    pub container_pidfile: Option<PathBuf>,
    /// `-P`: where the monitor's own pid goes.
    pub conmon_pidfile: Option<PathBuf>,
    /// `--exit-dir`.
    pub exit_dir: Option<PathBuf>,
    /// `-l DRIVER:PATH`, in order.
    pub log_paths: Vec<String>,
    pub log_size_max: Option<i64>,
    pub log_level: Option<String>,
    pub log_tag: Option<String>,
    /// `--runtime-arg`: before the runtime's subcommand.
    pub runtime_args: Vec<String>,
    /// `--runtime-opt` (and `--restore-arg`): after the subcommand's options.
    pub runtime_opts: Vec<String>,
    /// `-t`.
    pub terminal: bool,
    /// `-i`.
    pub stdin: bool,
    pub leave_stdin_open: bool,
    /// `-s`.
    pub systemd_cgroup: bool,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// `-e`.
    pub exec: bool,
    pub exec_attach: bool,
    pub exec_process_spec: Option<PathBuf>,
    pub restore: Option<PathBuf>,
    /// `-T`: kill the container after this many seconds (0: never).
    pub timeout: i64,
    pub exit_command: Option<PathBuf>,
    pub exit_command_args: Vec<String>,
    pub exit_delay: i64,
    pub api_version: bool,
    pub full_attach: bool,
    pub sdnotify_socket: Option<PathBuf>,
    pub syslog: bool,
    /// Options conmon knows and tether has no use for: kept only to be named in the diagnostics.
    pub ignored: Vec<String>,
}

/// What an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takes {
    Switch,
    Value,
    Int,
}

/// conmon 2.1.6's options: long name, short name, what it takes.
const OPTIONS: &[(&str, Option<char>, Takes)] = &[
    ("api-version", None, Takes::Switch),
    ("bundle", Some('b'), Takes::Value),
    ("cid", Some('c'), Takes::Value),
    ("conmon-pidfile", Some('P'), Takes::Value),
    ("container-pidfile", Some('p'), Takes::Value),
    ("cuuid", Some('u'), Takes::Value),
    ("exec", Some('e'), Takes::Switch),
    ("exec-attach", None, Takes::Switch),
    ("exec-process-spec", None, Takes::Value),
    ("exit-command", None, Takes::Value),
    ("exit-command-arg", None, Takes::Value),
    ("exit-delay", None, Takes::Int),
    ("exit-dir", None, Takes::Value),
    ("leave-stdin-open", None, Takes::Switch),
    ("log-level", None, Takes::Value),
    ("log-path", Some('l'), Takes::Value),
    ("log-size-max", None, Takes::Int),
    ("log-global-size-max", None, Takes::Int),
    ("log-tag", None, Takes::Value),
    ("name", Some('n'), Takes::Value),
    ("no-new-keyring", None, Takes::Switch),
    ("no-pivot", None, Takes::Switch),
    ("no-sync-log", None, Takes::Switch),
    ("persist-dir", Some('0'), Takes::Value),
    ("pidfile", None, Takes::Value),
    ("replace-listen-pid", None, Takes::Switch),
    ("restore", None, Takes::Value),
    ("restore-arg", None, Takes::Value),
    ("runtime", Some('r'), Takes::Value),
    ("runtime-arg", None, Takes::Value),
    ("runtime-opt", None, Takes::Value),
    ("sdnotify-socket", None, Takes::Value),
    ("socket-dir-path", None, Takes::Value),
    ("stdin", Some('i'), Takes::Switch),
    ("sync", None, Takes::Switch),
    ("syslog", None, Takes::Switch),
    ("systemd-cgroup", Some('s'), Takes::Switch),
    ("terminal", Some('t'), Takes::Switch),
    ("timeout", Some('T'), Takes::Int),
    ("version", None, Takes::Switch),
    ("full-attach", None, Takes::Switch),
    ("seccomp-notify-socket", None, Takes::Value),
    ("seccomp-notify-plugins", None, Takes::Value),
];

impl ConmonArgs {
    /// Reads the arguments after the program's name. The error is conmon's one line.
    pub fn parse(args: &[String]) -> Result<ConmonArgs, String> {
        let mut parsed = ConmonArgs::default();
        let mut words = args.iter();
        while let Some(word) = words.next() {
            if word == "--" {
                break;
            }
            if let Some(long) = word.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((name, value)) => (name, Some(value.to_owned())),
                    None => (long, None),
                };
                let Some(&(name, _, takes)) = OPTIONS.iter().find(|(n, _, _)| *n == name) else {
                    return Err(format!("option parsing failed: Unknown option --{name}"));
                };
                let shown = format!("--{name}");
                let value = match (takes, inline) {
                    (Takes::Switch, Some(_)) => {
                        return Err(format!(
                            "option parsing failed: Unexpected argument to option {shown}"
                        ))
                    }
                    (Takes::Switch, None) => None,
                    (_, Some(value)) => Some(value),
                    (_, None) => Some(next_value(&mut words, &shown)?),
                };
                parsed.set(name, takes, value, &shown)?;
            } else if let Some(shorts) = word.strip_prefix('-').filter(|s| !s.is_empty()) {
                for (at, short) in shorts.char_indices() {
                    let Some(&(name, _, takes)) =
                        OPTIONS.iter().find(|(_, s, _)| *s == Some(short))
                    else {
                        return Err(format!("option parsing failed: Unknown option -{short}"));
                    };
                    let shown = format!("-{short}");
                    if takes == Takes::Switch {
                        parsed.set(name, takes, None, &shown)?;
                        continue;
                    }
                    // A short option that takes a value ends the group: the rest is its value.
                    let rest = &shorts[at + short.len_utf8()..];
                    let value = if rest.is_empty() {
                        next_value(&mut words, &shown)?
                    } else {
                        rest.to_owned()
                    };
                    parsed.set(name, takes, Some(value), &shown)?;
                    break;
                }
            }
            // Anything else is a word no option took: left alone, as glib leaves it.
        }
        Ok(parsed)
    }

    fn set(
        &mut self,
        name: &str,
        takes: Takes,
        value: Option<String>,
        shown: &str,
    ) -> Result<(), String> {
        if let Some(value) = &value {
            if value.len() > MAX_VALUE || value.contains('\0') {
                return Err(format!("option parsing failed: {shown}: value too long"));
            }
        }
        let int = || -> Result<i64, String> {
            let text = value.as_deref().unwrap_or_default();
            text.trim().parse::<i64>().map_err(|_| {
                format!("option parsing failed: Cannot parse integer value “{text}” for {shown}")
            })
        };
        let text = || value.clone().unwrap_or_default();
        let path = || Some(PathBuf::from(text()));
        match (name, takes) {
            ("api-version", _) => self.api_version = true,
            ("bundle", _) => self.bundle = path(),
            ("cid", _) => self.cid = Some(text()),
            ("conmon-pidfile", _) => self.conmon_pidfile = path(),
            ("container-pidfile" | "pidfile", _) => self.container_pidfile = path(),
            ("cuuid", _) => self.cuuid = Some(text()),
            ("exec", _) => self.exec = true,
            ("exec-attach", _) => self.exec_attach = true,
            ("exec-process-spec", _) => self.exec_process_spec = path(),
            ("exit-command", _) => self.exit_command = path(),
            ("exit-command-arg", _) => push(&mut self.exit_command_args, text(), shown)?,
            ("exit-delay", _) => self.exit_delay = seconds(int()?, shown)?,
            ("exit-dir", _) => self.exit_dir = path(),
            ("leave-stdin-open", _) => self.leave_stdin_open = true,
            ("log-level", _) => self.log_level = Some(text()),
            ("log-path", _) => push(&mut self.log_paths, text(), shown)?,
            ("log-size-max", _) => self.log_size_max = Some(int()?),
            ("log-tag", _) => self.log_tag = Some(text()),
            ("name", _) => self.name = Some(text()),
            ("no-new-keyring", _) => self.no_new_keyring = true,
            ("no-pivot", _) => self.no_pivot = true,
            ("restore", _) => self.restore = path(),
            ("restore-arg" | "runtime-opt", _) => push(&mut self.runtime_opts, text(), shown)?,
            ("runtime", _) => self.runtime = path(),
            ("runtime-arg", _) => push(&mut self.runtime_args, text(), shown)?,
            ("sdnotify-socket", _) => self.sdnotify_socket = path(),
            ("stdin", _) => self.stdin = true,
            ("syslog", _) => self.syslog = true,
            ("systemd-cgroup", _) => self.systemd_cgroup = true,
            ("terminal", _) => self.terminal = true,
            ("timeout", _) => self.timeout = seconds(int()?, shown)?,
            ("version", _) => self.version = true,
            ("full-attach", _) => self.full_attach = true,
            (_, Takes::Int) => {
                int()?;
                self.ignored.push(format!("--{name}"));
            }
            _ => self.ignored.push(format!("--{name}")),
        }
        Ok(())
    }

    /// The checks conmon makes before it starts anything; the error is its one line.
    pub fn validate(&self) -> Result<(), String> {
        if self.cid.is_none() {
            return Err("Container ID not provided. Use --cid".into());
        }
        if self.restore.is_some() && self.exec {
            return Err("Cannot use 'exec' and 'restore' at the same time".into());
        }
        if !self.exec && self.exec_attach {
            return Err("Attach can only be specified with exec".into());
        }
        if !self.api_version && self.exec_attach {
            return Err("Attach can only be specified for a non-legacy exec session".into());
        }
        if self.cuuid.is_none() && (!self.exec || self.api_version) {
            return Err("Container UUID not provided. Use --cuuid".into());
        }
        let Some(runtime) = &self.runtime else {
            return Err("Runtime path not provided. Use --runtime".into());
        };
        if nix::unistd::access(runtime, nix::unistd::AccessFlags::X_OK).is_err() {
            return Err(format!("Runtime path {} is not valid", runtime.display()));
        }
        if self.exec && self.exec_process_spec.is_none() {
            return Err("Exec process spec path not provided. Use --exec-process-spec".into());
        }
        if self.exit_delay < 0 {
            return Err(
                "Delay before invoking exit command must be greater than or equal to 0".into(),
            );
        }
        Ok(())
    }
}

fn next_value<'a>(
    words: &mut impl Iterator<Item = &'a String>,
    shown: &str,
) -> Result<String, String> {
    words
        .next()
        .cloned()
        .ok_or_else(|| format!("option parsing failed: Missing argument for {shown}"))
}

fn push(list: &mut Vec<String>, value: String, shown: &str) -> Result<(), String> {
    if list.len() >= MAX_LIST {
        return Err(format!(
            "option parsing failed: {shown} given more than {MAX_LIST} times"
        ));
    }
    list.push(value);
    Ok(())
}

fn seconds(value: i64, shown: &str) -> Result<i64, String> {
    if value > MAX_SECONDS {
        return Err(format!(
            "option parsing failed: Integer value “{value}” for {shown} out of range"
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<ConmonArgs, String> {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        ConmonArgs::parse(&words)
    }

    #[test]
    fn podmans_create_line_is_read() {
        let args = parse(&[
            "--api-version",
            "1",
            "-c",
            "abc",
            "-u",
            "abc",
            "-r",
            "/usr/bin/runc",
            "-b",
            "/b",
            "-p",
            "/r/pidfile",
            "-n",
            "web",
            "--exit-dir",
            "/x",
            "--full-attach",
            "-l",
            "k8s-file:/b/ctr.log",
            "--log-level",
            "warning",
            "--runtime-arg",
            "--log-format=json",
            "--runtime-arg",
            "--log",
            "--runtime-arg=/r/oci-log",
            "-i",
            "--timeout=5",
            "--log-size-max",
            "1000",
            "--conmon-pidfile",
            "/r/conmon.pid",
            "--exit-command",
            "/usr/bin/podman",
            "--exit-command-arg",
            "--root",
            "--exit-command-arg",
            "/g",
            "--runtime-opt",
            "--preserve-fds",
            "--runtime-opt",
            "2",
        ])
        .unwrap();
        assert!(args.api_version && args.full_attach && args.stdin && !args.terminal);
        assert_eq!(args.cid.as_deref(), Some("abc"));
        assert_eq!(args.runtime, Some(PathBuf::from("/usr/bin/runc")));
        assert_eq!(args.log_paths, ["k8s-file:/b/ctr.log"]);
        assert_eq!(
            args.runtime_args,
            ["--log-format=json", "--log", "/r/oci-log"]
        );
        assert_eq!(args.runtime_opts, ["--preserve-fds", "2"]);
        assert_eq!(args.exit_command_args, ["--root", "/g"]);
        assert_eq!((args.timeout, args.log_size_max), (5, Some(1000)));
        assert_eq!(args.conmon_pidfile, Some(PathBuf::from("/r/conmon.pid")));
    }

    #[test]
    fn short_forms_group_and_take_values_inline() {
        let args = parse(&["-it", "-cID", "-e", "--exec-attach", "-T", "3"]).unwrap();
        assert!(args.stdin && args.terminal && args.exec && args.exec_attach);
        assert_eq!(args.cid.as_deref(), Some("ID"));
        assert_eq!(args.timeout, 3);
        // A value-taking short ends its group.
        let args = parse(&["-ic", "X"]).unwrap();
        assert!(args.stdin);
        assert_eq!(args.cid.as_deref(), Some("X"));
    }

    #[test]
    fn options_tether_does_not_use_are_accepted() {
        let args = parse(&[
            "--sync",
            "--no-sync-log",
            "--persist-dir",
            "/p",
            "--socket-dir-path=/s",
            "--log-global-size-max",
            "10",
            "--replace-listen-pid",
            "--seccomp-notify-socket",
            "/n",
        ])
        .unwrap();
        assert_eq!(args.ignored.len(), 7);
    }

    #[test]
    fn bad_lines_get_conmons_words() {
        let unknown = parse(&["--bogus"]).unwrap_err();
        assert_eq!(unknown, "option parsing failed: Unknown option --bogus");
        assert!(parse(&["-Z"]).unwrap_err().contains("Unknown option -Z"));
        assert!(parse(&["-c"])
            .unwrap_err()
            .contains("Missing argument for -c"));
        assert!(parse(&["--timeout", "soon"])
            .unwrap_err()
            .contains("Cannot parse integer value “soon” for --timeout"));
        assert!(parse(&["--terminal=yes"])
            .unwrap_err()
            .contains("Unexpected argument"));
        assert!(parse(&["--exit-delay", "99999999999"])
            .unwrap_err()
            .contains("out of range"));
        let long = "x".repeat(MAX_VALUE + 1);
        assert!(parse(&["-c", &long]).unwrap_err().contains("too long"));
    }

    #[test]
    fn validation_wants_what_conmon_wants() {
        let base = ["-c", "a", "-u", "a", "-r", "/bin/sh"];
        assert!(parse(&base).unwrap().validate().is_ok());
        assert!(parse(&["-u", "a"])
            .unwrap()
            .validate()
            .unwrap_err()
            .contains("--cid"));
        assert!(parse(&["-c", "a", "-r", "/bin/sh"])
            .unwrap()
            .validate()
            .unwrap_err()
            .contains("--cuuid"));
        assert!(parse(&["-c", "a", "-u", "a", "-r", "/nonexistent"])
            .unwrap()
            .validate()
            .unwrap_err()
            .contains("not valid"));
        let mut exec: Vec<&str> = base.to_vec();
        exec.push("-e");
        assert!(parse(&exec)
            .unwrap()
            .validate()
            .unwrap_err()
            .contains("--exec-process-spec"));
        assert!(
            parse(&["-c", "a", "-u", "a", "-r", "/bin/sh", "--exec-attach"])
                .unwrap()
                .validate()
                .unwrap_err()
                .contains("only be specified with exec")
        );
    }
}
