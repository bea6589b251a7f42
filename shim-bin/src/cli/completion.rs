//! `tether completion bash|zsh|fish`: the script clap generates from the command definition,
//! without the commands people do not type (`daemon`, `man`), and, for bash, zsh and fish,
//! container ids (from `tether ps -q`) after the commands that take them.

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

/// The zsh function that offers container ids.
const ZSH_IDS: &str = r#"# Container ids after the commands that take them.
(( $+functions[_tether_ids] )) ||
_tether_ids() {
    local -a ids
    ids=(${(f)"$(tether ps -q 2>/dev/null)"})
    _describe -t containers 'container' ids
}

"#;

/// clap's zsh script with the id arguments (`id`, `ids`) completed by `_tether_ids`, defined
/// before the script's last lines call `_tether` (as an autoloaded function it runs at once).
fn zsh_with_ids(script: &str) -> String {
    let mut out = String::with_capacity(script.len() + ZSH_IDS.len());
    for line in script.split_inclusive('\n') {
        if line.starts_with("if [ \"$funcstack[1]\" = \"_tether\" ]") {
            out.push_str(ZSH_IDS);
        }
        let takes_ids = line.starts_with("':id -- ") || line.starts_with("'*::ids -- ");
        match line.strip_suffix(":_default' \\\n") {
            Some(head) if takes_ids => {
                out.push_str(head);
                out.push_str(":_tether_ids' \\\n");
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// Writes the completion script for `shell` to stdout.
pub fn print(shell: Shell) {
    let full = crate::cli::args::Cli::command();
    let mut shown = clap::Command::new("tether")
        .about(full.get_about().cloned().unwrap_or_default())
        .args(full.get_arguments().cloned());
    for sub in full.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        shown = shown.subcommand(sub.clone());
    }
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut shown, "tether", &mut script);
    if shell == Shell::Zsh {
        script = zsh_with_ids(&String::from_utf8_lossy(&script)).into_bytes();
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zsh_completes_ids_where_ids_go_and_nowhere_else() {
        let script = "':id -- The container id:_default' \\\n\
                      '::name -- The container id:_default' \\\n\
                      '*::ids -- The container ids:_default' \\\n\
                      '*::command -- The command:_default' \\\n\
                      if [ \"$funcstack[1]\" = \"_tether\" ]; then\n";
        let out = zsh_with_ids(script);
        assert!(out.contains("':id -- The container id:_tether_ids' \\\n"));
        assert!(out.contains("'*::ids -- The container ids:_tether_ids' \\\n"));
        assert!(out.contains("'::name -- The container id:_default' \\\n"));
        assert!(out.contains("'*::command -- The command:_default' \\\n"));
        let defined = out.find("_tether_ids() {").unwrap();
        assert!(defined < out.find("if [ \"$funcstack[1]\"").unwrap());
    }
}
