//! `tether inspect [--format TEMPLATE] ID...`: a container's state, as `tether state` prints it,
//! or the fields a template names: docker's Go-template names for the common ones
//! (`{{.Id}}`, `{{.State.Pid}}`, `{{.State.ExitCode}}`, ...) or a path into the state's JSON
//! (`{{.exit.code}}`, `{{.pid}}`); a field the state has none of (yet) is `<no value>`, as in
//! Go's templates. Only `{{ FIELD }}` is understood: no functions, pipes or ranges; anything
//! else is an error that says so.

use serde_json::Value;

/// docker's names for fields of tether's state (a path into its JSON).
const DOCKER_NAMES: &[(&str, &[&str])] = &[
    (".Id", &["id"]),
    (".Name", &["id"]),
    (".Created", &["created_at"]),
    (".LogPath", &["log_path"]),
    (".State.Pid", &["pid"]),
    (".State.Status", &["status"]),
    (".State.ExitCode", &["exit", "code"]),
    (".State.OOMKilled", &["oom_killed"]),
    (".State.Running", &["status"]),
];

/// `template` filled in from `state` (the container's state as JSON).
pub fn render(template: &str, state: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("--format {template:?}: a {{{{ without }}}}"))?;
        out.push_str(&field(after[..close].trim(), state, template)?);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    // docker's templates take \n and \t as written.
    Ok(out.replace("\\n", "\n").replace("\\t", "\t"))
}

fn field(name: &str, state: &Value, template: &str) -> Result<String, String> {
    if name == "json ." {
        return Ok(state.to_string());
    }
    if !name.starts_with('.') || name.contains(char::is_whitespace) {
        return Err(format!(
            "--format {template:?}: {{{{{name}}}}} is not a field (say {{{{.State.Pid}}}} or {{{{.exit.code}}}}; no functions)"
        ));
    }
    let value = match DOCKER_NAMES.iter().find(|(docker, _)| *docker == name) {
        Some((".State.Running", _)) => Value::Bool(state["status"] == "running"),
        Some((".State.ExitCode", path)) => {
            // docker says 0 for a container still running.
            lookup(state, path)
                .filter(|v| !v.is_null())
                .unwrap_or(Value::from(0))
        }
        Some((_, path)) => lookup(state, path).unwrap_or(Value::Null),
        None => {
            let path: Vec<&str> = name[1..].split('.').collect();
            lookup(state, &path)
                .ok_or_else(|| format!("--format {template:?}: the state has no field {name}"))?
        }
    };
    Ok(match value {
        Value::String(text) => text,
        Value::Null => "<no value>".to_owned(),
        other => other.to_string(),
    })
}

/// The value at `path`, or null where the state has none there (an exit not there yet): as Go's
/// templates do, it shows as `<no value>`.
fn lookup(state: &Value, path: &[&str]) -> Option<Value> {
    Some(
        path.iter()
            .try_fold(state, |value, key| value.get(key))
            .cloned()
            .unwrap_or(Value::Null),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Value {
        serde_json::json!({
            "id": "web", "status": "stopped", "pid": 42, "exit": {"code": 137, "signal": 9},
            "oom_killed": true, "created_at": "2026-12-07T05:00:00Z", "log_path": "/l"
        })
    }

    #[test]
    fn docker_names_and_json_paths() {
        let state = state();
        assert_eq!(render("{{.Id}} {{.State.Pid}}", &state).unwrap(), "web 42");
        assert_eq!(render("{{ .State.ExitCode }}", &state).unwrap(), "137");
        assert_eq!(
            render("{{.State.Running}}/{{.State.OOMKilled}}", &state).unwrap(),
            "false/true"
        );
        assert_eq!(render("{{.exit.signal}}\\n", &state).unwrap(), "9\n");
        assert_eq!(render("{{.nope}}", &state).unwrap(), "<no value>");
        assert!(render("{{len .Id}}", &state)
            .unwrap_err()
            .contains("no functions"));
        assert!(render("{{.Id", &state).is_err());
        let running = serde_json::json!({"id": "a", "status": "running", "exit": null});
        assert_eq!(
            render("{{.State.ExitCode}} {{.State.Running}}", &running).unwrap(),
            "0 true"
        );
    }
}
