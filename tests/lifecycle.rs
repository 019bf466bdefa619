//! The loop's life: timers, the cross-thread Handle, graceful shutdown.

mod common;

use std::sync::mpsc::{channel, Sender};
use std::time::{Duration, Instant};

use common::*;
use pushloop::app::{Accept, App, ConnId, Context, Message, Reply, TimerId, TopicId, Upgrading};
use pushloop::http::{Request, Response};
use pushloop::ws::close::CloseCode;
use pushloop::ws::handshake::Upgrade;

/// Reports timer ticks and socket ids to the test.
struct Clock {
    ticks: Sender<Instant>,
    opened: Sender<ConnId>,
    interval: Option<TimerId>,
    topic: TopicId,
}

impl App for Clock {
    fn start(&mut self, ctx: &mut Context) {
        self.interval = Some(ctx.set_interval(Duration::from_millis(20)));
        let cancelled = ctx.set_timeout(Duration::from_millis(10));
        assert!(ctx.clear_timer(cancelled));
        assert!(
            !ctx.clear_timer(cancelled),
            "a cleared timer cannot be cleared twice"
        );
    }

    fn timer(&mut self, ctx: &mut Context, timer: TimerId) {
        assert_eq!(
            Some(timer),
            self.interval,
            "the cleared timeout never fires"
        );
        let _ = self.ticks.send(ctx.now());
    }

    fn request(&mut self, ctx: &mut Context, _: ConnId, req: &Request, _: &[u8]) -> Reply {
        match req.path() {
            "/stop-ticking" => {
                if let Some(timer) = self.interval.take() {
                    ctx.clear_timer(timer);
                }
                Reply::Response(Response::text(200, "stopped"))
            }
            "/events" => Reply::EventStream {
                topics: vec![self.topic],
                after: None,
            },
            "/longpoll" => Reply::LongPoll {
                topics: vec![self.topic],
                after: 0,
            },
            "/shutdown" => {
                ctx.shutdown();
                Reply::Response(Response::text(200, "bye"))
            }
            _ => Reply::Response(Response::text(404, "not found")),
        }
    }

    fn upgrade(&mut self, _: &mut Context, id: ConnId, _: &Request, _: &Upgrade) -> Upgrading {
        let _ = self.opened.send(id);
        Upgrading::Accept(Accept::new())
    }

    fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
        let _ = ctx.send(id, message);
    }
}

struct Started {
    server: TestServer,
    ticks: std::sync::mpsc::Receiver<Instant>,
    opened: std::sync::mpsc::Receiver<ConnId>,
}

fn start() -> Started {
    let (ticks, tick_rx) = channel();
    let (opened, opened_rx) = channel();
    let server = serve(quick_config(), move |server| Clock {
        ticks,
        opened,
        interval: None,
        topic: server.topic("t").expect("a valid topic name"),
    });
    Started {
        server,
        ticks: tick_rx,
        opened: opened_rx,
    }
}

#[test]
fn an_interval_ticks_until_cleared() {
    let started = start();
    let ticks: Vec<Instant> = (0..5)
        .map(|_| started.ticks.recv_timeout(READ_TIMEOUT).unwrap())
        .collect();
    // That each tick is scheduled from the previous deadline (no drift) is
    // the timers' unit test (`a_periodic_timer_rearms_from_its_own_deadline`):
    // here, on a shared machine, only the order is certain.
    assert!(ticks.windows(2).all(|pair| pair[0] <= pair[1]));
    assert_eq!(get(started.server.addr, "/stop-ticking").status, 200);
    while started
        .ticks
        .recv_timeout(Duration::from_millis(100))
        .is_ok()
    {}
    assert!(
        started
            .ticks
            .recv_timeout(Duration::from_millis(100))
            .is_err(),
        "no tick after clear_timer"
    );
}

#[test]
fn the_handle_sends_broadcasts_and_closes_from_another_thread() {
    let started = start();
    let mut a = WsClient::connect(started.server.addr, "/ws");
    let a_id = started.opened.recv_timeout(READ_TIMEOUT).unwrap();
    let mut b = WsClient::connect(started.server.addr, "/ws");
    let handle = started.server.handle.clone();
    std::thread::spawn(move || {
        handle.send_text(a_id, "just for a").unwrap();
        handle.broadcast_binary(vec![1, 2, 3]).unwrap();
        handle
            .close(a_id, CloseCode(4001), "from a thread")
            .unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(a.recv_data(), Received::Text("just for a".into()));
    assert_eq!(a.recv_data(), Received::Binary(vec![1, 2, 3]));
    assert_eq!(
        a.recv_data(),
        Received::Close(Some(4001), "from a thread".into())
    );
    assert_eq!(b.recv_data(), Received::Binary(vec![1, 2, 3]));
}

#[test]
fn graceful_shutdown_closes_sockets_with_1001_ends_streams_and_returns_ok() {
    let started = start();
    let mut socket = WsClient::connect(started.server.addr, "/ws");
    let mut stream = connect(started.server.addr);
    std::io::Write::write_all(&mut stream, b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut held = connect(started.server.addr);
    std::io::Write::write_all(&mut held, b"GET /longpoll HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let _idle = connect(started.server.addr);
    std::thread::sleep(Duration::from_millis(50));
    let addr = started.server.addr;
    let began = Instant::now();
    let stopping = std::thread::spawn(move || started.server.stop());
    assert_eq!(
        socket.recv_data(),
        Received::Close(Some(1001), "server shutting down".into())
    );
    socket.send_close(1001, "");
    assert!(String::from_utf8_lossy(&read_to_close(&mut stream)).contains("text/event-stream"));
    read_to_close(&mut held);
    stopping.join().unwrap().expect("run returns Ok");
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "took {:?}",
        began.elapsed()
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the listener is gone"
    );
}

#[test]
fn a_callback_can_ask_for_shutdown() {
    let started = start();
    assert_eq!(get(started.server.addr, "/shutdown").text(), "bye");
    started.server.stop().expect("run returns Ok");
}
