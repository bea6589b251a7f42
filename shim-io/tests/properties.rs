//! Properties of `tether logs`' decoders, which read files anyone with access to the log could
//! have written: any bytes decode without a panic into bounded lines, and what the sinks wrote
//! decodes back to the output, byte for byte.

use proptest::prelude::*;
use shim_io::{LogDecoder, LogFormat, LogSink, SinkOptions, Stream, MAX_DECODED_LINE};
use std::time::SystemTime;

fn format() -> impl Strategy<Value = LogFormat> {
    prop_oneof![
        Just(LogFormat::Cri),
        Just(LogFormat::JsonFile),
        Just(LogFormat::Raw)
    ]
}

/// Output with newlines, carriage returns and multi-byte text; invalid UTF-8 too for CRI and raw.
fn output() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just("\u{e9}\u{20ac}\u{1F600}".as_bytes().to_vec()),
            "[a-z ]{0,40}".prop_map(String::into_bytes),
            Just(vec![b'L'; 20_000]),
        ],
        0..40,
    )
    .prop_map(|pieces| pieces.concat())
}

fn decode(format: LogFormat, log: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut decoder = LogDecoder::new(format);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut emit = |line: shim_io::DecodedLine| match line.stream {
        Stream::Stdout => out.extend_from_slice(&line.text),
        Stream::Stderr => err.extend_from_slice(&line.text),
    };
    for record in log.split(|&b| b == b'\n') {
        if !record.is_empty() {
            decoder.record(record, &mut emit);
        }
    }
    decoder.finish(&mut emit);
    (out, err)
}

proptest! {
    #[test]
    fn any_bytes_decode_into_bounded_lines(format in format(), log in prop::collection::vec(any::<u8>(), 0..4096)) {
        let mut decoder = LogDecoder::new(format);
        let mut longest = 0;
        for record in log.split(|&b| b == b'\n') {
            decoder.record(record, &mut |line| longest = longest.max(line.text.len()));
        }
        decoder.finish(&mut |line| longest = longest.max(line.text.len()));
        prop_assert!(longest <= MAX_DECODED_LINE + 4096);
    }

    #[test]
    fn what_the_cri_sink_wrote_decodes_to_the_output(stdout in output(), stderr in output(), cut in 1usize..5000) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut sink = LogSink::open(&path, SinkOptions::new(LogFormat::Cri)).unwrap();
        for (stream, data) in [(Stream::Stdout, &stdout), (Stream::Stderr, &stderr)] {
            for chunk in data.chunks(cut) {
                sink.write(stream, chunk, SystemTime::now());
            }
            sink.finish(stream, SystemTime::now());
        }
        let (out, err) = decode(LogFormat::Cri, &std::fs::read(&path).unwrap());
        prop_assert_eq!(out, stdout);
        prop_assert_eq!(err, stderr);
    }
}
