//! What docker users type that tether does not take, answered in one line with what it has
//! instead (clap's own guess would send `inspect` to `spec` and `cp` to `completion`).

/// docker's commands tether has no command of that name for, and what to use.
const DOCKER_COMMANDS: &[(&str, &str)] = &[
    ("cp", "a container's root filesystem is a directory of the host (--rootfs DIR): copy into it, or `tether exec -i ID -- sh -c 'cat > FILE' < FILE`"),
    ("start", "`tether run` makes and starts a container; a stopped one is run again with `tether run --replace`"),
    ("restart", "`tether run --replace` starts a container of that id afresh"),
    ("create", "`tether run -d` makes and starts a container"),
    ("images", "tether runs a root filesystem (--rootfs DIR) or an OCI bundle (--bundle DIR), not images"),
    ("pull", "tether runs a root filesystem (--rootfs DIR) or an OCI bundle (--bundle DIR), not images"),
    ("build", "tether runs a root filesystem (--rootfs DIR) or an OCI bundle (--bundle DIR), not images"),
    ("rmi", "tether runs a root filesystem (--rootfs DIR) or an OCI bundle (--bundle DIR), not images"),
    ("port", "tether's containers have a network of their own with only loopback in it"),
    ("network", "tether's containers have a network of their own with only loopback in it"),
    ("volume", "`-v SRC:DST[:ro]` bind-mounts a directory of the host"),
    ("container", "its commands are tether's own: `tether ps`, `tether rm`, `tether state`"),
];

/// The one line to print instead of clap's error, for `args` (the command line without the
/// program's name) and the kind of error clap found.
pub fn hint(args: &[String], kind: clap::error::ErrorKind) -> Option<String> {
    let mut words = args.iter();
    let mut command = None;
    while let Some(word) = words.next() {
        if word == "--state-dir" {
            words.next();
        } else if !word.starts_with('-') {
            command = Some(word.as_str());
            break;
        }
    }
    let command = command?;
    match kind {
        clap::error::ErrorKind::InvalidSubcommand => DOCKER_COMMANDS
            .iter()
            .find(|(name, _)| *name == command)
            .map(|(name, instead)| format!("tether has no `{name}` command: {instead}")),
        clap::error::ErrorKind::UnknownArgument if command == "run" => {
            Some("put the command after --: tether run [FLAGS] ID -- CMD [ARGS...]".to_owned())
        }
        _ => None,
    }
}

/// clap's error as one line: its first line without `error: `, and its tip, if it has one.
pub fn one_line(rendered: &str) -> String {
    let mut lines = rendered.lines();
    let first = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned();
    match lines.find_map(|line| line.trim_start().strip_prefix("tip: ")) {
        Some(tip) => format!("{first} ({tip})"),
        None => first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn clap_errors_become_one_line_with_their_tip() {
        let rendered = "error: unrecognized subcommand 'stat'\n\n  tip: a similar subcommand exists: 'state'\n\nUsage: tether [OPTIONS] <COMMAND>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(rendered),
            "unrecognized subcommand 'stat' (a similar subcommand exists: 'state')"
        );
        assert_eq!(
            one_line(
                "error: invalid value 'x' for '--timeout'\n\nFor more information, try '--help'.\n"
            ),
            "invalid value 'x' for '--timeout'"
        );
    }

    #[test]
    fn docker_commands_get_what_tether_has_instead() {
        let said = hint(&args("images"), ErrorKind::InvalidSubcommand).unwrap();
        assert!(said.contains("not images"), "{said}");
        let said = hint(&args("--state-dir /x cp a b"), ErrorKind::InvalidSubcommand).unwrap();
        assert!(said.starts_with("tether has no `cp` command"), "{said}");
        assert_eq!(
            hint(&args("frobnicate"), ErrorKind::InvalidSubcommand),
            None
        );
        let said = hint(
            &args("run --rootfs r web echo hi"),
            ErrorKind::UnknownArgument,
        )
        .unwrap();
        assert!(said.contains("-- CMD"), "{said}");
        assert_eq!(hint(&args("ps --bogus"), ErrorKind::UnknownArgument), None);
    }
}
