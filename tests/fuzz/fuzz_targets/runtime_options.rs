//! containerd's runtime options: the `Options` message of a Create request, and the `Any` that
//! `start` reads on stdin.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../../../shim-bin/src/containerd/options.rs"]
#[allow(dead_code)]
mod options;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(decoded) = options::RuntimeOptions::decode(bytes) {
        assert!(decoded.binary_name.len() <= 4096 && !decoded.root.contains('\0'));
    }
    let _ = options::RuntimeOptions::from_start_input(bytes);
});
