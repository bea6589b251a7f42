//! `tether completion bash|zsh|fish`: the script clap generates from the command definition,
//! without the commands people do not type (`daemon`, `man`), and, for bash and fish, container
//! ids (from `tether ps -q`) after the commands that take them.

use clap::CommandFactory;
use clap_complete::Shell;

/// The commands whose arguments are container ids.
const TAKE_IDS: &[&str] = &[
    "state",
    "logs",
    "kill",
    "stop",
    "wait",
    "pause",
    "resume",
    "unpause",
    "rm",
    "stats",
    "top",
    "reopen-log",
    "exec",
    "attach",
];

/// Writes the completion script for `shell` to stdout.
pub fn print(shell: Shell) {
    let full = crate::cli::Cli::command();
    let mut shown = clap::Command::new("tether")
        .about(full.get_about().cloned().unwrap_or_default())
        .args(full.get_arguments().cloned());
    for sub in full.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        shown = shown.subcommand(sub.clone());
    }
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut shown, "tether", &mut script);
    let ids = TAKE_IDS.join(" ");
    let extra = match shell {
        Shell::Bash => format!(
            r#"
# Container ids after the commands that take them.
_tether_ids() {{
    _tether "$@"
    local sub="" skip="" w
    for w in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
        if [[ -n "$skip" ]]; then skip=""; continue; fi
        case "$w" in --state-dir) skip=1 ;; -*) ;; *) sub="$w"; break ;; esac
    done
    case " {ids} " in *" $sub "*)
        if [[ -n "$sub" && "${{COMP_WORDS[COMP_CWORD]}}" != -* ]]; then
            COMPREPLY+=( $(compgen -W "$(tether ps -q 2>/dev/null)" -- "${{COMP_WORDS[COMP_CWORD]}}") )
        fi ;;
    esac
}}
complete -F _tether_ids -o bashdefault -o default tether
"#
        ),
        Shell::Fish => format!(
            "\n# Container ids after the commands that take them.\ncomplete -c tether -n '__fish_seen_subcommand_from {ids}' -f -a '(tether ps -q 2>/dev/null)'\n"
        ),
        _ => String::new(),
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&script);
    let _ = out.write_all(extra.as_bytes());
}
