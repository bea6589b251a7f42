//! The framed half of the control protocol (exec and attach streams).
#![no_main]
use libfuzzer_sys::fuzz_target;
use shim_core::frame;

fuzz_target!(|bytes: &[u8]| {
    let mut buffer = bytes.to_vec();
    while let Ok(Some((kind, payload))) = frame::decode(&mut buffer) {
        assert!(payload.len() <= frame::MAX_PAYLOAD);
        if kind == frame::FrameKind::Resize {
            let _ = frame::parse_resize(&payload);
        }
    }
});
