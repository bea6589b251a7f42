//! An exec's process spec: the container's own process with a client's request applied.

use oci_spec::runtime::Process;
use shim_core::protocol::ExecRequest;

/// The exec's process: the container's own process (capabilities, rlimits, user, env, cwd) with the
/// request's command, terminal, extra environment, user (names looked up in `rootfs`) and working
/// directory.
pub fn build_process(
    base: &Process,
    request: &ExecRequest,
    rootfs: Option<&std::path::Path>,
) -> Result<Process, String> {
    if request.args.is_empty() {
        return Err("exec: no command given".into());
    }
    let mut process = base.clone();
    process.set_args(Some(request.args.clone()));
    process.set_terminal(Some(request.tty));
    process.set_console_size(None);
    let mut env = base.env().clone().unwrap_or_default();
    for entry in &request.env {
        let Some((key, _)) = entry.split_once('=') else {
            return Err(format!(
                "exec: environment entry {entry:?} is not KEY=VALUE"
            ));
        };
        env.retain(|existing| existing.split_once('=').map(|(k, _)| k) != Some(key));
        env.push(entry.clone());
    }
    process.set_env(Some(env));
    if let Some(cwd) = &request.cwd {
        if !cwd.starts_with('/') {
            return Err(format!("exec: working directory {cwd:?} is not absolute"));
        }
        process.set_cwd(cwd.into());
    }
    if let Some(user) = &request.user {
        process.set_user(
            crate::common::users::resolve(user, rootfs).map_err(|e| format!("exec: {e}"))?,
        );
    }
    Ok(process)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Process {
        let mut process = Process::default();
        process.set_env(Some(vec!["PATH=/bin".into(), "A=1".into()]));
        process
    }

    #[test]
    fn process_takes_the_request() {
        let request = ExecRequest {
            args: vec!["echo".into(), "hi".into()],
            env: vec!["A=2".into(), "B=3".into()],
            user: Some("1000:100".into()),
            cwd: Some("/tmp".into()),
            tty: true,
            ..ExecRequest::default()
        };
        let process = build_process(&base(), &request, None).unwrap();
        assert_eq!(process.args().as_ref().unwrap(), &["echo", "hi"]);
        assert_eq!(
            process.env().as_ref().unwrap(),
            &["PATH=/bin", "A=2", "B=3"]
        );
        assert_eq!(process.cwd().to_str(), Some("/tmp"));
        assert_eq!((process.user().uid(), process.user().gid()), (1000, 100));
        assert_eq!(process.terminal(), Some(true));
    }

    #[test]
    fn bad_requests_are_refused() {
        let empty = ExecRequest::default();
        assert!(build_process(&base(), &empty, None).is_err());
        let bad_env = ExecRequest {
            args: vec!["true".into()],
            env: vec!["NOEQUALS".into()],
            ..ExecRequest::default()
        };
        assert!(build_process(&base(), &bad_env, None)
            .unwrap_err()
            .contains("KEY=VALUE"));
        let as_user = |user: &str| ExecRequest {
            args: vec!["true".into()],
            user: Some(user.into()),
            ..ExecRequest::default()
        };
        assert!(build_process(&base(), &as_user("root"), None).is_err());
        assert!(build_process(&base(), &as_user("1:x"), None).is_err());
        let process = build_process(&base(), &as_user("7"), None).unwrap();
        assert_eq!(process.user().gid(), 7);
    }
}
