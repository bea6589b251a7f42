//! Properties of the parsers of outside input: the control protocol's request lines and frames.
//! Whatever a client sends, parsing answers (never panics), and what it accepts is within bounds.

use proptest::prelude::*;
use shim_core::frame::{self, FrameKind, MAX_PAYLOAD};
use shim_core::protocol::{
    parse_request, ErrorKind, ExecRequest, Request, Response, MAX_EXEC_TIMEOUT_SECS, MAX_SIGNAL,
};

fn exec_request() -> impl Strategy<Value = ExecRequest> {
    (
        prop::collection::vec("[a-z/ -]{1,12}", 1..4),
        prop::collection::vec("[A-Z]{1,4}=[a-z]{0,4}", 0..3),
        prop::option::of("[0-9]{1,4}(:[0-9]{1,4})?"),
        prop::option::of("/[a-z]{0,8}"),
        any::<(bool, bool, bool)>(),
        prop::option::of(1..=MAX_EXEC_TIMEOUT_SECS),
        prop::option::of((1..=u16::MAX, 1..=u16::MAX)),
    )
        .prop_map(
            |(args, env, user, cwd, (tty, stdin, detach), timeout_secs, window)| ExecRequest {
                args,
                env,
                user,
                cwd,
                tty,
                stdin,
                detach,
                timeout_secs,
                window,
            },
        )
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::State),
        Just(Request::Wait),
        Just(Request::Pids),
        Just(Request::Pause),
        Just(Request::Resume),
        Just(Request::ReopenLog),
        Just(Request::Attach),
        any::<bool>().prop_map(|force| Request::Delete { force }),
        (1..=MAX_SIGNAL, any::<bool>()).prop_map(|(signal, all)| Request::Kill { signal, all }),
        exec_request().prop_map(Request::Exec),
        "[a-z0-9-]{1,128}".prop_map(|exec_id| Request::ExecState { exec_id }),
    ]
}

fn bad_request(line: &[u8]) -> bool {
    matches!(parse_request(line), Err(Response::Error(body)) if body.kind == ErrorKind::BadRequest)
}

proptest! {
    #[test]
    fn any_bytes_get_an_answer(line in prop::collection::vec(any::<u8>(), 0..512)) {
        // Either a request within bounds, or a bad_request answer: never a panic.
        if let Ok(request) = parse_request(&line) {
            prop_assert!(request.check_bounds().is_ok());
        } else {
            prop_assert!(bad_request(&line));
        }
    }

    #[test]
    fn valid_requests_round_trip(request in request()) {
        let line = serde_json::to_vec(&request).unwrap();
        prop_assert_eq!(parse_request(&line).unwrap(), request);
    }

    #[test]
    fn out_of_range_signals_are_refused(signal in any::<i32>().prop_filter("out of range", |s| !(1..=MAX_SIGNAL).contains(s))) {
        let line = format!(r#"{{"op":"kill","signal":{signal}}}"#);
        prop_assert!(bad_request(line.as_bytes()));
    }

    #[test]
    fn out_of_range_timeouts_are_refused(secs in (MAX_EXEC_TIMEOUT_SECS + 1)..=u64::MAX) {
        let line = format!(r#"{{"op":"exec","args":["true"],"timeout_secs":{secs}}}"#);
        prop_assert!(bad_request(line.as_bytes()));
    }

    #[test]
    fn deeply_nested_json_is_refused_not_a_stack_overflow(depth in 100usize..5000) {
        let line = format!(r#"{{"op":"exec","args":{}{}}}"#, "[".repeat(depth), "]".repeat(depth));
        prop_assert!(bad_request(line.as_bytes()));
    }

    #[test]
    fn any_bytes_decode_as_frames_or_an_error(mut bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        while let Ok(Some((_, payload))) = frame::decode(&mut bytes) {
            prop_assert!(payload.len() <= MAX_PAYLOAD);
        }
    }

    #[test]
    fn frames_round_trip_in_any_pieces(
        frames in prop::collection::vec((0u8..7, prop::collection::vec(any::<u8>(), 0..300)), 0..20),
        piece in 1usize..64,
    ) {
        let kind = |byte: u8| match byte {
            0 => FrameKind::Stdin, 1 => FrameKind::Stdout, 2 => FrameKind::Stderr, 3 => FrameKind::Exit,
            4 => FrameKind::StdinEof, 5 => FrameKind::Resize, _ => FrameKind::Notice,
        };
        let mut wire = Vec::new();
        for (k, payload) in &frames {
            frame::encode(&mut wire, kind(*k), payload);
        }
        let mut buffer = Vec::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(piece) {
            buffer.extend_from_slice(chunk);
            while let Some(frame) = frame::decode(&mut buffer).unwrap() {
                got.push(frame);
            }
        }
        let want: Vec<(FrameKind, Vec<u8>)> = frames.iter().map(|(k, p)| (kind(*k), p.clone())).collect();
        prop_assert_eq!(got, want);
    }
}
