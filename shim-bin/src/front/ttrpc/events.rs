//! Task events to containerd: `containerd.services.events.ttrpc.v1.Events/Forward` on the socket in
//! `TTRPC_ADDRESS`. Events are sent in order by one thread; an event that cannot be delivered
//! (containerd restarting, say) is retried, with growing pauses, until it is, so no event is lost
//! or reordered while containerd is away.
//!
//! The call is made on one blocking connection with ttrpc's framing written here (the door's own
//! wire, [`super::door`]): the ttrpc crate's client spends two more threads per connection, each
//! with its stack, for what is one request and one answer at a time.

use super::calls::timestamp;
use crate::shim::diag::Diag;
use crate::shim::EventSink;
use containerd_shim_protos::api::Mount;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::topics;
use containerd_shim_protos::ttrpc::{self, Code};
use shim_core::{Event, ProcessKey};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Events kept while containerd cannot be reached; past this the oldest are dropped (and said).
const QUEUE_LIMIT: usize = 4096;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// containerd's events service.
const EVENTS_SERVICE: &str = "containerd.services.events.ttrpc.v1.Events";
/// Bytes before a frame's payload: length and stream id (big-endian u32), a type and a flags byte.
const HEADER: usize = 10;
const TYPE_REQUEST: u8 = 1;
const TYPE_RESPONSE: u8 = 2;
/// The largest answer taken (ttrpc's own limit; an answer to Forward is a few bytes).
const MAX_MESSAGE: usize = 4 << 20;

/// A connection to containerd's events service: one call at a time, each waited for.
struct EventsConnection {
    stream: UnixStream,
    /// Client streams are odd, and each call takes the next.
    next_stream: u32,
}

impl EventsConnection {
    /// Connects to `address`: a socket path, `unix://` and a path, or `unix://@` and an abstract
    /// name.
    fn connect(address: &str) -> io::Result<EventsConnection> {
        let path = address.strip_prefix("unix://").unwrap_or(address);
        let stream = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                UnixStream::connect_addr(&addr)?
            }
            None if address.contains("://") && !address.starts_with("unix://") => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("{address}: only unix sockets are supported"),
                ))
            }
            None => UnixStream::connect(path)?,
        };
        stream.set_read_timeout(Some(FORWARD_TIMEOUT))?;
        stream.set_write_timeout(Some(FORWARD_TIMEOUT))?;
        Ok(EventsConnection {
            stream,
            next_stream: 1,
        })
    }

    /// Calls Forward and waits for its answer.
    fn forward(&mut self, request: &ForwardRequest) -> io::Result<()> {
        let call = ttrpc::Request {
            service: EVENTS_SERVICE.to_owned(),
            method: "Forward".to_owned(),
            payload: request.write_to_bytes().map_err(io::Error::other)?,
            timeout_nano: FORWARD_TIMEOUT.as_nanos() as i64,
            ..Default::default()
        };
        let body = call.write_to_bytes().map_err(io::Error::other)?;
        let id = self.next_stream;
        self.next_stream = self.next_stream.wrapping_add(2);
        let length = u32::try_from(body.len()).map_err(io::Error::other)?;
        let mut frame = Vec::with_capacity(HEADER + body.len());
        frame.extend_from_slice(&length.to_be_bytes());
        frame.extend_from_slice(&id.to_be_bytes());
        frame.extend_from_slice(&[TYPE_REQUEST, 0]);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame)?;
        loop {
            let mut header = [0u8; HEADER];
            self.stream.read_exact(&mut header)?;
            let [l0, l1, l2, l3, s0, s1, s2, s3, kind, _flags] = header;
            let length = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
            if length > MAX_MESSAGE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("an answer of {length} bytes"),
                ));
            }
            let mut body = vec![0; length];
            self.stream.read_exact(&mut body)?;
            if u32::from_be_bytes([s0, s1, s2, s3]) != id || kind != TYPE_RESPONSE {
                continue; // not the answer to this call
            }
            let response = ttrpc::Response::parse_from_bytes(&body)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let status = response.status.into_option().unwrap_or_default();
            return match status.code() {
                Code::OK => Ok(()),
                code => Err(io::Error::other(format!("{code:?}: {}", status.message))),
            };
        }
    }
}

/// A task event as containerd's events service takes it: its topic, and the message under the name
/// containerd's type registry knows it by. (Names spelled out rather than taken from the message
/// descriptors: building protobuf reflection data costs resident memory for good.)
#[derive(Debug)]
pub struct TaskEvent {
    pub topic: &'static str,
    pub event: Any,
}

fn pack(topic: &'static str, name: &str, message: &impl Message) -> TaskEvent {
    let mut event = Any::new();
    event.type_url = format!("containerd.events.{name}");
    event.value = message.write_to_bytes().unwrap_or_default();
    TaskEvent { topic, event }
}

/// The supervisor's event as containerd's task event.
pub fn task_event(container_id: &str, event: Event) -> TaskEvent {
    use topics::*;
    let container_id = container_id.to_owned();
    match event {
        Event::Created {
            pid,
            bundle,
            rootfs,
            stdio,
        } => pack(
            TASK_CREATE_EVENT_TOPIC,
            "TaskCreate",
            &ev::TaskCreate {
                container_id,
                bundle: bundle.to_string_lossy().into_owned(),
                rootfs: rootfs
                    .into_iter()
                    .map(|m| Mount {
                        type_: m.kind,
                        source: m.source,
                        options: m.options,
                        ..Default::default()
                    })
                    .collect(),
                io: Some(ev::TaskIO {
                    stdin: stdio.stdin,
                    stdout: stdio.stdout,
                    stderr: stdio.stderr,
                    terminal: stdio.terminal,
                    ..Default::default()
                })
                .into(),
                pid: pid as u32,
                ..Default::default()
            },
        ),
        Event::Started {
            key: ProcessKey::Init,
            pid,
        } => pack(
            TASK_START_EVENT_TOPIC,
            "TaskStart",
            &ev::TaskStart {
                container_id,
                pid: pid as u32,
                ..Default::default()
            },
        ),
        Event::Started {
            key: ProcessKey::Exec(exec_id),
            pid,
        } => pack(
            TASK_EXEC_STARTED_EVENT_TOPIC,
            "TaskExecStarted",
            &ev::TaskExecStarted {
                container_id,
                exec_id: exec_id.to_string(),
                pid: pid as u32,
                ..Default::default()
            },
        ),
        Event::ExecAdded { exec } => pack(
            TASK_EXEC_ADDED_EVENT_TOPIC,
            "TaskExecAdded",
            &ev::TaskExecAdded {
                container_id,
                exec_id: exec.to_string(),
                ..Default::default()
            },
        ),
        Event::Exited { key, exit } => pack(
            TASK_EXIT_EVENT_TOPIC,
            "TaskExit",
            &ev::TaskExit {
                id: match key {
                    ProcessKey::Init => container_id.clone(),
                    ProcessKey::Exec(exec_id) => exec_id.to_string(),
                },
                container_id,
                pid: exit.pid as u32,
                exit_status: exit.code() as u32,
                exited_at: Some(timestamp(exit.reaped_at)).into(),
                ..Default::default()
            },
        ),
        Event::Oom => pack(
            TASK_OOM_EVENT_TOPIC,
            "TaskOOM",
            &ev::TaskOOM {
                container_id,
                ..Default::default()
            },
        ),
        Event::Paused => pack(
            TASK_PAUSED_EVENT_TOPIC,
            "TaskPaused",
            &ev::TaskPaused {
                container_id,
                ..Default::default()
            },
        ),
        Event::Resumed => pack(
            TASK_RESUMED_EVENT_TOPIC,
            "TaskResumed",
            &ev::TaskResumed {
                container_id,
                ..Default::default()
            },
        ),
        Event::Deleted { pid, exit } => pack(
            TASK_DELETE_EVENT_TOPIC,
            "TaskDelete",
            &ev::TaskDelete {
                id: container_id.clone(),
                container_id,
                pid: pid as u32,
                exit_status: exit.code() as u32,
                exited_at: Some(timestamp(exit.reaped_at)).into(),
                ..Default::default()
            },
        ),
    }
}

impl EventSink for Publisher {
    fn publish(&mut self, container_id: &str, event: Event) {
        self.send(task_event(container_id, event));
    }
}

#[derive(Default)]
struct Queue {
    envelopes: VecDeque<Envelope>,
    /// The sender is working on the front one.
    busy: bool,
    closed: bool,
}

/// Hands events to the sending thread.
#[derive(Clone)]
pub struct Publisher {
    namespace: String,
    shared: Arc<(Mutex<Queue>, Condvar)>,
    diag: Diag,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl Publisher {
    /// Starts the sending thread for containerd's ttrpc socket at `address` (None: events are
    /// dropped, as when run by hand without containerd).
    pub fn start(namespace: &str, address: Option<String>, diag: Diag) -> Publisher {
        let publisher = Publisher {
            namespace: namespace.to_owned(),
            shared: Arc::new((Mutex::new(Queue::default()), Condvar::new())),
            diag,
        };
        if let Some(address) = address {
            let worker = publisher.clone();
            std::thread::spawn(move || worker.send_loop(&address));
        } else {
            publisher.shared.0.lock().expect("queue").closed = true;
        }
        publisher
    }

    /// Queues an event.
    pub fn send(&self, event: TaskEvent) {
        let mut envelope = Envelope::new();
        envelope.timestamp = Some(timestamp(SystemTime::now())).into();
        envelope.namespace = self.namespace.clone();
        envelope.topic = event.topic.to_owned();
        envelope.event = Some(event.event).into();
        self.diag
            .debug(format_args!("publish {}", envelope.topic.as_str()));
        let (lock, ready) = &*self.shared;
        let mut queue = lock.lock().expect("queue");
        if queue.closed {
            return;
        }
        if queue.envelopes.len() >= QUEUE_LIMIT {
            queue.envelopes.pop_front();
            self.diag.warn(format_args!(
                "event queue full: the oldest event was dropped"
            ));
        }
        queue.envelopes.push_back(envelope);
        ready.notify_all();
    }

    /// Waits until every queued event has been delivered (true), or `timeout` (false).
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, ready) = &*self.shared;
        let mut queue = lock.lock().expect("queue");
        while !queue.closed && (queue.busy || !queue.envelopes.is_empty()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            queue = ready.wait_timeout(queue, left).expect("queue").0;
        }
        true
    }

    fn send_loop(&self, address: &str) {
        let mut connection: Option<EventsConnection> = None;
        let mut pause = Duration::from_millis(20);
        let (lock, ready) = &*self.shared;
        loop {
            let envelope = {
                let mut queue = lock.lock().expect("queue");
                queue.busy = false;
                ready.notify_all();
                while queue.envelopes.is_empty() {
                    queue = ready.wait(queue).expect("queue");
                }
                queue.busy = true;
                queue.envelopes.front().cloned().expect("not empty")
            };
            let mut request = ForwardRequest::new();
            request.envelope = Some(envelope).into();
            let sent = match &mut connection {
                Some(open) => open.forward(&request),
                None => EventsConnection::connect(address).and_then(|mut open| {
                    let sent = open.forward(&request);
                    connection = Some(open);
                    sent
                }),
            };
            match sent {
                Ok(()) => {
                    lock.lock().expect("queue").envelopes.pop_front();
                    pause = Duration::from_millis(20);
                }
                Err(e) => {
                    self.diag
                        .debug(format_args!("forward event: {e}; retrying in {pause:?}"));
                    connection = None;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::MessageFull;

    #[test]
    fn type_urls_are_the_message_names() {
        let exit = shim_core::Exit {
            pid: 1,
            status: shim_core::ExitStatus::Exited(0),
            reaped_at: SystemTime::UNIX_EPOCH,
        };
        let exec = || ProcessKey::Exec(shim_core::ExecId::new("e").unwrap());
        let events = [
            (
                Event::Created {
                    pid: 1,
                    bundle: "/b".into(),
                    rootfs: Vec::new(),
                    stdio: Default::default(),
                },
                ev::TaskCreate::descriptor(),
            ),
            (
                Event::Started {
                    key: ProcessKey::Init,
                    pid: 1,
                },
                ev::TaskStart::descriptor(),
            ),
            (
                Event::ExecAdded {
                    exec: shim_core::ExecId::new("e").unwrap(),
                },
                ev::TaskExecAdded::descriptor(),
            ),
            (
                Event::Started {
                    key: exec(),
                    pid: 2,
                },
                ev::TaskExecStarted::descriptor(),
            ),
            (
                Event::Exited { key: exec(), exit },
                ev::TaskExit::descriptor(),
            ),
            (
                Event::Deleted { pid: 1, exit },
                ev::TaskDelete::descriptor(),
            ),
            (Event::Paused, ev::TaskPaused::descriptor()),
            (Event::Resumed, ev::TaskResumed::descriptor()),
            (Event::Oom, ev::TaskOOM::descriptor()),
        ];
        for (event, descriptor) in events {
            assert_eq!(
                task_event("c", event).event.type_url,
                descriptor.full_name()
            );
        }
    }
}

#[cfg(test)]
mod mapping_tests {
    use super::*;
    use shim_core::{ExecId, Exit, ExitStatus};

    #[test]
    fn an_exec_exit_names_the_exec_and_the_init_exit_the_container() {
        let exit = Exit {
            pid: 7,
            status: ExitStatus::Exited(130),
            reaped_at: SystemTime::UNIX_EPOCH,
        };
        let exec = ProcessKey::Exec(ExecId::new("e1").unwrap());
        let exited = task_event("web", Event::Exited { key: exec, exit });
        assert_eq!(exited.topic, topics::TASK_EXIT_EVENT_TOPIC);
        let event = ev::TaskExit::parse_from_bytes(&exited.event.value).unwrap();
        assert_eq!(
            (event.container_id.as_str(), event.id.as_str()),
            ("web", "e1")
        );
        assert_eq!((event.pid, event.exit_status), (7, 130));
        let init = Event::Exited {
            key: ProcessKey::Init,
            exit,
        };
        let event = ev::TaskExit::parse_from_bytes(&task_event("web", init).event.value).unwrap();
        assert_eq!(event.id, "web");
        let started = Event::Started {
            key: ProcessKey::Exec(ExecId::new("e1").unwrap()),
            pid: 9,
        };
        let started = task_event("web", started).event;
        let started = ev::TaskExecStarted::parse_from_bytes(&started.value).unwrap();
        assert_eq!((started.exec_id.as_str(), started.pid), ("e1", 9));
    }
}

#[cfg(test)]
mod delivery_tests {
    use super::*;
    use containerd_shim_protos::api::Empty;
    use containerd_shim_protos::ttrpc::{self, TtrpcContext};

    /// containerd's events endpoint, as far as Forward goes: it keeps what it is sent.
    struct Receiver(Arc<Mutex<Vec<String>>>);

    impl containerd_shim_protos::Events for Receiver {
        fn forward(&self, _: &TtrpcContext, request: ForwardRequest) -> ttrpc::Result<Empty> {
            let envelope = request.envelope.into_option().unwrap_or_default();
            let event = envelope.event.into_option().unwrap_or_default();
            self.0.lock().unwrap().push(format!(
                "{} {} {}",
                envelope.namespace, envelope.topic, event.type_url
            ));
            Ok(Empty::new())
        }
    }

    #[test]
    fn events_sent_while_nobody_listens_arrive_later_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix://{}", dir.path().join("events.sock").display());
        let publisher = Publisher::start("ns", Some(address.clone()), Diag::new("t", false));
        let exit = shim_core::Exit {
            pid: 1,
            status: shim_core::ExitStatus::Exited(0),
            reaped_at: SystemTime::UNIX_EPOCH,
        };
        let created = Event::Created {
            pid: 1,
            bundle: "/b".into(),
            rootfs: Vec::new(),
            stdio: Default::default(),
        };
        let started = Event::Started {
            key: ProcessKey::Init,
            pid: 1,
        };
        let exited = Event::Exited {
            key: ProcessKey::Init,
            exit,
        };
        for event in [created, started, exited] {
            publisher.send(task_event("c", event));
        }
        assert!(
            !publisher.flush(Duration::from_millis(100)),
            "nobody listens yet: nothing can be delivered"
        );
        let received = Arc::new(Mutex::new(Vec::new()));
        let service = containerd_shim_protos::create_events(Arc::new(Receiver(received.clone())));
        let mut server = ttrpc::Server::new()
            .bind(&address)
            .unwrap()
            .register_service(service);
        server.start().unwrap();
        assert!(
            publisher.flush(Duration::from_secs(10)),
            "delivered once heard"
        );
        assert_eq!(
            *received.lock().unwrap(),
            [
                "ns /tasks/create containerd.events.TaskCreate",
                "ns /tasks/start containerd.events.TaskStart",
                "ns /tasks/exit containerd.events.TaskExit",
            ]
        );
        server.shutdown();
    }
}
