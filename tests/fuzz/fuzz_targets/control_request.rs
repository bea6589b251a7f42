//! A control-socket request line: parsed into a request within bounds, or a bad_request answer.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    if let Ok(request) = shim_core::protocol::parse_request(line) {
        assert!(request.check_bounds().is_ok());
        // What was accepted serializes back (the daemon logs and answers with it).
        let _ = serde_json::to_vec(&request).unwrap();
    }
});
