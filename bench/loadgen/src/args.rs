//! Command line: `loadgen MODE [--key value]... [--flag]...`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub const USAGE: &str = "\
usage: loadgen MODE --addr 127.0.0.1:PORT [options]
       loadgen report RESULTS.jsonl [--baseline LABEL] [--before LABEL]

modes:
  echo    N WebSocket connections, D messages in flight each, S-byte messages
  hold    N idle WebSocket connections; server RSS per connection (needs --pid)
  opens   N WebSocket opens (connect, upgrade, 101), nothing else; server CPU per open
  fanout  N SSE subscribers to /events, E events POSTed to /publish back to back
          on one keep-alive connection (or at a steady pace: --interval-us)
  wsfanout the same with N WebSocket subscribers to --path (default /chat), each
          event one message (its data read out of pushloop's JSON object)
  churn   open, upgrade, echo one message, close; over K parallel slots (per cycle)

options (default):
  --addr HOST:PORT     server; must be 127.0.0.1
  --publish-addr HOST:PORT  fanout: POST /publish here instead (a second node on the same
                       Redis, say); subscribers stay on --addr
  --pid PID            server process, for CPU (/proc/PID/stat) and RSS (/proc/PID/status)
  --conns N            connections / subscribers (echo 64, hold/opens 1000, fanout 100)
  --depth D            echo: messages in flight per connection (16)
  --size S             echo/churn: message bytes (20); fanout: event data bytes (64)
  --binary             echo/churn: binary messages instead of text
  --deflate            offer permessage-deflate (RFC 7692) as browsers do; where the
                       server accepts, messages go compressed and come back inflated
                       and checked; echo/hold send JSON-like text, fanout pads events
                       with words instead of x
  --distinct K         echo: K different messages, sent in turn (1; 64 with --deflate,
                       more than a 32 KiB window holds, so no message is a repeat of
                       one the server still has in view)
  --warm-msgs W        hold: each connection echoes W messages before it idles (0)
  --secs T             echo/churn: measured seconds after warm-up (5)
  --max-msgs M         echo: stop after M messages measured; churn: after M cycles (unbounded)
  --warmup SECS        echo/churn: unmeasured seconds first (1)
  --settle-ms MS       hold: wait after the last connection opened (1000);
                       fanout: wait after the last subscriber before publishing (300)
  --events E           fanout: events to publish (200)
  --interval-us US     fanout: 0 = back to back on one keep-alive connection, the next
                       publish as soon as one is answered (0); US > 0 = one publish
                       every US microseconds, each on a fresh connection
  --window W           fanout, back to back: publishes in flight, pipelined (1)
  --drain-ms MS        fanout: after the last publish, stop once nothing arrived for MS (2000)
  --slots K            churn: parallel open-close loops (16)
  --connect-batch C    most connections being opened at once (256)
  --timeout SECS       hard limit on the whole run (120)
  --path PATH          WebSocket path (/echo; wsfanout: /chat)
  --tls-ca FILE        speak TLS (https://, wss://; rustls on ring, ALPN http/1.1, SNI
                       localhost, no resumption), trusting the PEM certificate(s) in FILE
  --label NAME         server name, copied to the JSON output
  --scenario NAME      scenario name, copied to the JSON output
";

pub struct Args {
    pub mode: String,
    pub addr: SocketAddr,
    pub publish_addr: Option<SocketAddr>,
    pub pid: Option<String>,
    pub conns: Option<usize>,
    pub depth: usize,
    pub size: Option<usize>,
    pub binary: bool,
    pub deflate: bool,
    pub distinct: Option<usize>,
    pub warm_msgs: u64,
    pub secs: f64,
    pub max_msgs: u64,
    pub warmup: f64,
    pub settle_ms: Option<u64>,
    pub events: usize,
    pub interval: Duration,
    pub window: usize,
    pub drain: Duration,
    pub slots: usize,
    pub connect_batch: usize,
    pub timeout: Duration,
    pub path: String,
    pub tls_ca: Option<String>,
    pub label: String,
    pub scenario: String,
}

impl Args {
    pub fn parse(argv: &[String]) -> Result<Args, String> {
        let mode = argv.first().ok_or("missing MODE")?.clone();
        let mut a = Args {
            mode,
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6788),
            publish_addr: None,
            pid: None,
            conns: None,
            depth: 16,
            size: None,
            binary: false,
            deflate: false,
            distinct: None,
            warm_msgs: 0,
            secs: 5.0,
            max_msgs: u64::MAX,
            warmup: 1.0,
            settle_ms: None,
            events: 200,
            interval: Duration::ZERO,
            window: 1,
            drain: Duration::from_millis(2000),
            slots: 16,
            connect_batch: 256,
            timeout: Duration::from_secs(120),
            path: String::new(),
            tls_ca: None,
            label: String::new(),
            scenario: String::new(),
        };
        let mut it = argv[1..].iter();
        while let Some(key) = it.next() {
            if key == "--binary" {
                a.binary = true;
                continue;
            }
            if key == "--deflate" {
                a.deflate = true;
                continue;
            }
            let val = it.next().ok_or_else(|| format!("{key} needs a value"))?;
            let num = || val.parse::<u64>().map_err(|_| format!("{key}: not a number: {val}"));
            let float = || val.parse::<f64>().map_err(|_| format!("{key}: not a number: {val}"));
            match key.as_str() {
                "--addr" => a.addr = val.parse().map_err(|_| format!("--addr: not HOST:PORT: {val}"))?,
                "--publish-addr" => {
                    a.publish_addr = Some(val.parse().map_err(|_| format!("--publish-addr: not HOST:PORT: {val}"))?)
                }
                "--pid" => a.pid = Some(val.clone()),
                "--conns" => a.conns = Some(num()? as usize),
                "--depth" => a.depth = num()?.max(1) as usize,
                "--distinct" => a.distinct = Some(num()?.max(1) as usize),
                "--warm-msgs" => a.warm_msgs = num()?,
                "--size" => a.size = Some(num()? as usize),
                "--secs" => a.secs = float()?,
                "--max-msgs" => a.max_msgs = num()?,
                "--warmup" => a.warmup = float()?,
                "--settle-ms" => a.settle_ms = Some(num()?),
                "--events" => a.events = num()? as usize,
                "--interval-us" => a.interval = Duration::from_micros(num()?),
                "--window" => a.window = num()?.max(1) as usize,
                "--drain-ms" => a.drain = Duration::from_millis(num()?),
                "--slots" => a.slots = num()?.max(1) as usize,
                "--connect-batch" => a.connect_batch = num()?.max(1) as usize,
                "--timeout" => a.timeout = Duration::from_secs_f64(float()?),
                "--path" => a.path = val.clone(),
                "--tls-ca" => a.tls_ca = Some(val.clone()),
                "--label" => a.label = val.clone(),
                "--scenario" => a.scenario = val.clone(),
                _ => return Err(format!("unknown option {key}")),
            }
        }
        // This tool only ever loads a server on this machine.
        if a.addr.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST) {
            return Err(format!("--addr must be 127.0.0.1:PORT, not {}", a.addr));
        }
        Ok(a)
    }

    /// The WebSocket path: `--path`, or the mode's own.
    pub fn path(&self) -> &str {
        match (self.path.as_str(), self.mode.as_str()) {
            ("", "wsfanout") => "/chat",
            ("", _) => "/echo",
            (path, _) => path,
        }
    }
}
