//! containerd's runtime options: the `Options` message of a Create request, the `Any` that
//! `start` reads on stdin, the CRI's `runtimeoptions.v1.Options` and the config file it names.
#![no_main]
use libfuzzer_sys::fuzz_target;

// options.rs as it sits in shim-bin: `crate::shim::runtime` and `crate::common::units` beside it.
#[path = "../../../shim-bin/src/shim/runtime.rs"]
#[allow(dead_code)]
pub mod runtime;
mod shim {
    pub use super::runtime;
}
#[path = "../../../shim-bin/src/front/ttrpc/options.rs"]
#[allow(dead_code)]
mod options;
#[path = "../../../shim-bin/src/common/units.rs"]
#[allow(dead_code)]
pub mod units;
mod common {
    pub use super::units;
}

use containerd_shim_protos::protobuf::well_known_types::any::Any;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(decoded) = options::decode(bytes) {
        assert!(decoded.binary_name.len() <= 4096 && !decoded.root.contains('\0'));
    }
    let _ = options::from_start_input(bytes);
    let cri = Any {
        type_url: "runtimeoptions.v1.Options".into(),
        value: bytes.to_vec(),
        ..Default::default()
    };
    let _ = options::from_request(Some(&cri), Default::default());
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Err(error) = options::from_config(text) {
            assert!(!error.contains('\n'));
        }
    }
});
