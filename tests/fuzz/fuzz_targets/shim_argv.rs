//! containerd's command line for the shim (Go flag syntax), NUL-separated arguments.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../../../shim-bin/src/launch/args.rs"]
#[allow(dead_code)]
mod args;

fuzz_target!(|bytes: &[u8]| {
    let argv: Vec<String> = bytes
        .split(|&b| b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    match args::ShimArgs::parse(&argv) {
        Ok(parsed) => {
            assert!(parsed.action == args::Action::Version || !parsed.id.contains('/'));
        }
        Err(message) => assert!(!message.contains('\n')),
    }
});
