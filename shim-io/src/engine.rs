//! The copy engine: pipes registered with a [`mio::Registry`], copied on readiness into log sinks
//! (container output) or into another pipe (stdin), one thread, no blocking reads.

use crate::encode::Stream;
use crate::fdio::set_nonblocking;
use crate::sink::{LogFormat, LogSink};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

/// Size of the one read buffer the engine shares between all its pipes.
const READ_BUFFER: usize = 128 * 1024;
/// Bytes copied from one pipe per event before other work gets a turn; the rest is "backlog", picked
/// up by [`IoEngine::work_backlog`]. Bounds how long a container writing flat out can hold the loop.
const BUDGET_PER_TURN: usize = 4 * 1024 * 1024;
/// Buffer for stdin copying: at most this much is read from the source before the container takes it.
const INPUT_BUFFER: usize = 64 * 1024;
/// Coalescing: an output that keeps waking the loop for small reads (less than `COALESCE_BELOW` bytes,
/// turns less than `COALESCE_WINDOW` apart) is left alone for `COALESCE_HOLD` so its output gathers in
/// the pipe and is copied in one turn. A container writing flat out otherwise costs a wakeup, a read
/// and a write per few KiB; this cuts the daemon's CPU for a busy log by about a third. A single line
/// after a quiet spell is still copied at once; a line in a burst is in the log at most 1 ms later.
const COALESCE_BELOW: usize = 64 * 1024;
const COALESCE_WINDOW: Duration = Duration::from_millis(5);
const COALESCE_HOLD: Duration = Duration::from_millis(1);

/// A sink's handle within the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SinkId(usize);

/// Something the owner of the engine needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoEvent {
    /// Bytes read from a tapped output (see [`IoEngine::set_tap`]), after they went to the sink.
    Data {
        /// The pipe's token.
        token: Token,
        /// Which stream.
        stream: Stream,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// An output pipe reached end of stream; everything it carried is in its sink.
    OutputClosed {
        /// The pipe's token.
        token: Token,
        /// The sink it fed.
        sink: SinkId,
        /// Which stream it was.
        stream: Stream,
    },
    /// A stdin copy ended (its source reached EOF and the destination was closed, or the destination
    /// went away).
    InputClosed {
        /// The source's token.
        source: Token,
    },
}

struct Output {
    pipe: File,
    stream: Stream,
    sink: SinkId,
    /// When a turn last found output.
    last_turn: Option<Instant>,
    /// Set while the pipe is deregistered to let output gather.
    held_until: Option<Instant>,
    /// Hand copies of what is read to the owner (attach clients).
    tapped: bool,
}

struct InputCopy {
    source: File,
    source_token: Token,
    destination: File,
    destination_token: Token,
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
    source_done: bool,
}

enum Pump {
    /// The pipe is empty; this many bytes were copied.
    WouldBlock(usize),
    OverBudget,
    Eof,
}

/// Copies container output into log sinks and stdin into the container. See the crate docs.
pub struct IoEngine {
    sinks: Vec<Option<LogSink>>,
    outputs: HashMap<Token, Output>,
    inputs: HashMap<Token, InputCopy>,
    input_destinations: HashMap<Token, Token>,
    backlog: VecDeque<Token>,
    buffer: Box<[u8]>,
}

impl std::fmt::Debug for IoEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoEngine")
            .field("sinks", &self.sinks.iter().flatten().count())
            .field("outputs", &self.outputs.len())
            .field("inputs", &self.inputs.len())
            .field("backlog", &self.backlog)
            .finish()
    }
}

impl Default for IoEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl IoEngine {
    /// An engine with no pipes.
    pub fn new() -> Self {
        IoEngine {
            sinks: Vec::new(),
            outputs: HashMap::new(),
            inputs: HashMap::new(),
            input_destinations: HashMap::new(),
            backlog: VecDeque::new(),
            buffer: Box::default(),
        }
    }

    /// Gives back the read buffer and what the sinks grew, when nothing waits to be copied; each
    /// is taken again when output comes. (The buffer is also first taken then: a container that
    /// never writes never costs it.)
    pub fn release_memory(&mut self) {
        if !self.backlog.is_empty() {
            return;
        }
        self.buffer = Box::default();
        for sink in self.sinks.iter_mut().flatten() {
            sink.release_memory();
        }
    }

    /// Takes ownership of a sink.
    pub fn add_sink(&mut self, sink: LogSink) -> SinkId {
        self.sinks.push(Some(sink));
        SinkId(self.sinks.len() - 1)
    }

    /// The sink, while the engine has it.
    pub fn sink_mut(&mut self, id: SinkId) -> Option<&mut LogSink> {
        self.sinks.get_mut(id.0)?.as_mut()
    }

    /// The sink, while the engine has it.
    pub fn sink(&self, id: SinkId) -> Option<&LogSink> {
        self.sinks.get(id.0)?.as_ref()
    }

    /// Gives the sink back (its outputs should be closed first).
    pub fn remove_sink(&mut self, id: SinkId) -> Option<LogSink> {
        self.sinks.get_mut(id.0)?.take()
    }

    /// Registers the read end of a container output pipe under `token`; it is made nonblocking.
    pub fn add_output(
        &mut self,
        registry: &Registry,
        token: Token,
        pipe: OwnedFd,
        stream: Stream,
        sink: SinkId,
    ) -> io::Result<()> {
        set_nonblocking(&pipe)?;
        registry.register(&mut SourceFd(&pipe.as_raw_fd()), token, Interest::READABLE)?;
        self.outputs.insert(
            token,
            Output {
                pipe: File::from(pipe),
                stream,
                sink,
                last_turn: None,
                held_until: None,
                tapped: false,
            },
        );
        // Output may already be waiting; edge-triggered readiness would not report it.
        self.backlog.push_back(token);
        Ok(())
    }

    /// Copies `source` into `destination` (typically the caller's stdin into the container's stdin
    /// pipe), never holding more than 64 KiB: the source is read only when the destination has taken
    /// what was read before. When the source ends, the destination is closed.
    pub fn add_input(
        &mut self,
        registry: &Registry,
        source_token: Token,
        source: OwnedFd,
        destination_token: Token,
        destination: OwnedFd,
    ) -> io::Result<()> {
        set_nonblocking(&source)?;
        set_nonblocking(&destination)?;
        registry.register(
            &mut SourceFd(&source.as_raw_fd()),
            source_token,
            Interest::READABLE,
        )?;
        if let Err(e) = registry.register(
            &mut SourceFd(&destination.as_raw_fd()),
            destination_token,
            Interest::WRITABLE,
        ) {
            let _ = registry.deregister(&mut SourceFd(&source.as_raw_fd()));
            return Err(e);
        }
        self.input_destinations
            .insert(destination_token, source_token);
        self.inputs.insert(
            source_token,
            InputCopy {
                source: File::from(source),
                source_token,
                destination: File::from(destination),
                destination_token,
                buffer: vec![0; INPUT_BUFFER].into_boxed_slice(),
                start: 0,
                end: 0,
                source_done: false,
            },
        );
        self.backlog.push_back(source_token);
        Ok(())
    }

    /// Whether `token` is an output pipe still open.
    pub fn is_output_open(&self, token: Token) -> bool {
        self.outputs.contains_key(&token)
    }

    /// Whether some pipe has more to copy than its last turn allowed.
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// When [`IoEngine::work_backlog`] must run next for outputs held back to coalesce small reads;
    /// poll no longer than this.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.outputs.values().filter_map(|o| o.held_until).min()
    }

    /// Handles a readiness event. Returns None when `token` is not one of the engine's.
    pub fn handle(&mut self, registry: &Registry, token: Token) -> Option<Vec<IoEvent>> {
        if self.outputs.contains_key(&token) {
            let mut events = Vec::new();
            self.turn_output(registry, token, BUDGET_PER_TURN, &mut events);
            return Some(events);
        }
        let source = if self.inputs.contains_key(&token) {
            token
        } else {
            *self.input_destinations.get(&token)?
        };
        let mut events = Vec::new();
        self.turn_input(registry, source, &mut events);
        Some(events)
    }

    /// Gives every pipe with a backlog one more turn, and every held pipe whose time is up.
    pub fn work_backlog(&mut self, registry: &Registry) -> Vec<IoEvent> {
        let mut events = Vec::new();
        let now = Instant::now();
        let due: Vec<Token> = self
            .outputs
            .iter()
            .filter(|(_, o)| o.held_until.is_some_and(|t| t <= now))
            .map(|(t, _)| *t)
            .collect();
        for token in due {
            self.release(registry, token);
            if !self.backlog.contains(&token) {
                self.backlog.push_back(token);
            }
        }
        for token in std::mem::take(&mut self.backlog) {
            if self.outputs.contains_key(&token) {
                self.turn_output(registry, token, BUDGET_PER_TURN, &mut events);
            } else if self.inputs.contains_key(&token) {
                self.turn_input(registry, token, &mut events);
            }
        }
        events
    }

    /// Copies everything the pipe holds right now, however much; the events end with
    /// `OutputClosed` if it reached end of stream. For recording an exit only once the output is in
    /// the log.
    pub fn drain_output(&mut self, registry: &Registry, token: Token) -> Vec<IoEvent> {
        let mut events = Vec::new();
        self.turn_output(registry, token, usize::MAX, &mut events);
        events
    }

    /// Stops copying from an output pipe that has not reached EOF (an orphan holds its write end):
    /// copies what it holds now, writes the unterminated last line, and closes it.
    pub fn close_output(&mut self, registry: &Registry, token: Token) -> Vec<IoEvent> {
        let mut events = self.drain_output(registry, token);
        events.extend(self.finish_output(registry, token));
        events
    }

    /// Whether copies of what is read from `token` are handed out as [`IoEvent::Data`]. While
    /// tapped, a raw log is written through memory instead of spliced.
    pub fn set_tap(&mut self, token: Token, on: bool) {
        if let Some(output) = self.outputs.get_mut(&token) {
            output.tapped = on;
        }
    }

    fn turn_output(
        &mut self,
        registry: &Registry,
        token: Token,
        budget: usize,
        events: &mut Vec<IoEvent>,
    ) {
        match self.pump_output(token, budget, events) {
            None => {}
            Some(Pump::WouldBlock(copied)) => self.maybe_hold(registry, token, copied),
            Some(Pump::OverBudget) if !self.backlog.contains(&token) => {
                self.backlog.push_back(token);
            }
            Some(Pump::OverBudget) => {}
            Some(Pump::Eof) => events.extend(self.finish_output(registry, token)),
        }
    }

    /// Holds a trickling output back for a moment (see `COALESCE_HOLD`).
    fn maybe_hold(&mut self, registry: &Registry, token: Token, copied: usize) {
        let Some(output) = self.outputs.get_mut(&token) else {
            return;
        };
        if copied == 0 {
            return;
        }
        let now = Instant::now();
        // Busy: the previous turn that found output was only moments ago.
        let busy = output
            .last_turn
            .is_some_and(|at| now.duration_since(at) < COALESCE_WINDOW);
        output.last_turn = Some(now);
        if busy && copied < COALESCE_BELOW && output.held_until.is_none() {
            let fd = output.pipe.as_raw_fd();
            if registry.deregister(&mut SourceFd(&fd)).is_ok() {
                output.held_until = Some(now + COALESCE_HOLD);
            }
        }
    }

    /// Registers a held output again.
    fn release(&mut self, registry: &Registry, token: Token) {
        let Some(output) = self.outputs.get_mut(&token) else {
            return;
        };
        if output.held_until.take().is_some() {
            let fd = output.pipe.as_raw_fd();
            let _ = registry.register(&mut SourceFd(&fd), token, Interest::READABLE);
        }
    }

    fn pump_output(
        &mut self,
        token: Token,
        budget: usize,
        events: &mut Vec<IoEvent>,
    ) -> Option<Pump> {
        // An empty buffer would read as the end of the pipe.
        if self.buffer.is_empty() {
            self.buffer = vec![0; READ_BUFFER].into_boxed_slice();
        }
        let output = self.outputs.get_mut(&token)?;
        let sink = self.sinks.get_mut(output.sink.0)?.as_mut()?;
        let mut copied = 0usize;
        if sink.options().format == LogFormat::Raw && !output.tapped {
            loop {
                match sink.splice_from(output.pipe.as_fd(), 1 << 20) {
                    Ok(0) => return Some(Pump::Eof),
                    Ok(n) => {
                        copied += n;
                        if copied >= budget {
                            return Some(Pump::OverBudget);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Some(Pump::WouldBlock(copied))
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // Not spliceable now (or a splice error on the log side): copy through memory.
                    Err(_) => break,
                }
            }
        }
        loop {
            match output.pipe.read(&mut self.buffer) {
                Ok(0) => return Some(Pump::Eof),
                Ok(n) => {
                    sink.write(output.stream, &self.buffer[..n], SystemTime::now());
                    if output.tapped {
                        events.push(IoEvent::Data {
                            token,
                            stream: output.stream,
                            bytes: self.buffer[..n].to_vec(),
                        });
                    }
                    copied += n;
                    if copied >= budget {
                        return Some(Pump::OverBudget);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Some(Pump::WouldBlock(copied))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EIO and friends: the pipe is unusable; treat it as closed.
                Err(_) => return Some(Pump::Eof),
            }
        }
    }

    fn finish_output(&mut self, registry: &Registry, token: Token) -> Option<IoEvent> {
        let output = self.outputs.remove(&token)?;
        if output.held_until.is_none() {
            let _ = registry.deregister(&mut SourceFd(&output.pipe.as_raw_fd()));
        }
        self.backlog.retain(|t| *t != token);
        if let Some(sink) = self.sink_mut(output.sink) {
            sink.finish(output.stream, SystemTime::now());
        }
        Some(IoEvent::OutputClosed {
            token,
            sink: output.sink,
            stream: output.stream,
        })
    }

    fn turn_input(&mut self, registry: &Registry, source: Token, events: &mut Vec<IoEvent>) {
        let Some(input) = self.inputs.get_mut(&source) else {
            return;
        };
        let done = loop {
            if input.start < input.end {
                match input
                    .destination
                    .write(&input.buffer[input.start..input.end])
                {
                    Ok(n) => input.start += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // EPIPE: the container closed its stdin; nothing more can be delivered.
                    Err(_) => break true,
                }
                continue;
            }
            if input.source_done {
                break true;
            }
            input.start = 0;
            input.end = 0;
            match input.source.read(&mut input.buffer) {
                Ok(0) => input.source_done = true,
                Ok(n) => input.end = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => input.source_done = true,
            }
        };
        if done {
            let input = self.inputs.remove(&source).expect("present above");
            let _ = registry.deregister(&mut SourceFd(&input.source.as_raw_fd()));
            let _ = registry.deregister(&mut SourceFd(&input.destination.as_raw_fd()));
            self.input_destinations.remove(&input.destination_token);
            self.backlog.retain(|t| *t != input.source_token);
            events.push(IoEvent::InputClosed { source });
        }
    }
}
