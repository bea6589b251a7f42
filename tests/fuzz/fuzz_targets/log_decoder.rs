//! `tether logs`' decoders: any log file, in any of the three formats (the first byte chooses).
#![no_main]
use libfuzzer_sys::fuzz_target;
use shim_io::{LogDecoder, LogFormat, MAX_DECODED_LINE};

fuzz_target!(|bytes: &[u8]| {
    let Some((&choice, log)) = bytes.split_first() else {
        return;
    };
    let format = match choice % 3 {
        0 => LogFormat::Cri,
        1 => LogFormat::JsonFile,
        _ => LogFormat::Raw,
    };
    let mut decoder = LogDecoder::new(format);
    let mut check =
        |line: shim_io::DecodedLine| assert!(line.text.len() <= MAX_DECODED_LINE + log.len());
    for record in log.split(|&b| b == b'\n') {
        decoder.record(record, &mut check);
    }
    decoder.finish(&mut check);
});
