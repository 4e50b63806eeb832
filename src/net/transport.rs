//! The TCP layer under ureq: opens sockets, counts them, and tells each call
//! whether it paid for a new connection.
//!
//! ureq's own `TcpConnector` hides its socket, so it cannot set TCP keep-alive
//! nor report when a connection is opened. This connector does both. TLS is
//! layered on top (ureq's `RustlsConnector` inside `CountedTls`) in the
//! connector chain built in `client/agent.rs`.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::log::{self, Level, Logger};

use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, NextTimeout, RustlsConnector, Transport,
};
use ureq::Timeout;

use super::buffers::ConnBuffers;
use super::live::{LiveSlot, LiveSockets};
use crate::exec::fiber;
use crate::exec::reactor::{Registration, Waited};

/// Process-wide counters for one client's sockets.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Sockets opened since the client was created.
    pub opened: AtomicU64,
    /// Sockets open right now (pooled or in use).
    pub open_now: AtomicU64,
    /// Bytes of I/O buffers the open connections hold right now: the TCP
    /// layer's (`ConnBuffers`, none while a connection is idle) plus the
    /// fixed input and output buffers ureq's TLS layer keeps per TLS
    /// connection (see [`CountedTls`]).
    pub buffer_bytes: Arc<AtomicU64>,
}

/// What happened on the calling thread during one attempt.
///
/// ureq runs the connector and all socket I/O of a synchronous call on the
/// caller's thread, so a thread-local is an exact per-call attribution. It is
/// internal bookkeeping only; no error state is ever kept here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttemptIo {
    /// When the attempt began.
    pub started: Option<Instant>,
    /// Name resolution (a cache hit or an IP literal costs ~0).
    pub dns: Duration,
    /// TCP connect of the connection this attempt opened.
    pub connect: Duration,
    /// TLS handshake of the connection this attempt opened.
    pub tls: Duration,
    /// When the connection was ready to carry the request (after TLS);
    /// `None` for a pooled one (ready at once).
    pub ready: Option<Instant>,
    /// The first byte of the answer arrived (handshake bytes excluded).
    pub first_byte: Option<Instant>,
    /// Between TCP connect and the end of the connector chain: reads are
    /// handshake, not answer.
    in_setup: bool,
    tcp_done: Option<Instant>,
    /// Connections opened by this attempt (0 means the pool served it).
    pub opened: u32,
    /// Bytes received from the network by this attempt.
    pub bytes_in: u64,
    /// This attempt did I/O on a connection opened by an earlier one (a
    /// pooled connection). False when it never got as far as a connection.
    pub pooled: bool,
}

thread_local! {
    static ATTEMPT: Cell<AttemptIo> = const { Cell::new(AttemptIo {
        started: None,
        dns: Duration::ZERO,
        connect: Duration::ZERO,
        tls: Duration::ZERO,
        ready: None,
        first_byte: None,
        in_setup: false,
        tcp_done: None,
        opened: 0,
        bytes_in: 0,
        pooled: false,
    }) };
    /// The id of this thread's current attempt, so a connection knows
    /// whether the current attempt opened it.
    static SEQ: Cell<u64> = const { Cell::new(0) };
    /// The connection opened last on this thread (id, peer, TLS version
    /// seen in its ServerHello), for the "opened" log line.
    static CONN_INFO: Cell<(u64, SocketAddr, Option<&'static str>)> =
        const { Cell::new((0, SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0)), None)) };
}

/// This module's per-call thread-locals, as a suspended fiber carries them.
type Carried = (AttemptIo, u64, (u64, SocketAddr, Option<&'static str>));

fn carry_take() -> Box<dyn std::any::Any> {
    let c: Carried = (
        ATTEMPT.with(|a| a.take()),
        SEQ.with(|s| s.take()),
        CONN_INFO.with(|c| c.get()),
    );
    Box::new(c)
}

fn carry_put(v: Box<dyn std::any::Any>) {
    if let Ok(c) = v.downcast::<Carried>() {
        ATTEMPT.with(|a| a.set(c.0));
        SEQ.with(|s| s.set(c.1));
        CONN_INFO.with(|i| i.set(c.2));
    }
}

/// Starts a new attempt on this thread and forgets the previous one.
pub fn begin_attempt() {
    static CARRY: std::sync::Once = std::sync::Once::new();
    CARRY.call_once(|| {
        fiber::carry::register(fiber::carry::Hook {
            take: carry_take,
            put: carry_put,
        })
    });
    ATTEMPT.with(|a| {
        a.set(AttemptIo {
            started: Some(Instant::now()),
            ..AttemptIo::default()
        })
    });
    // Ids are unique across threads: a pooled connection opened by one
    // thread's attempt and reused by another's must never look fresh.
    static NEXT: AtomicU64 = AtomicU64::new(1);
    SEQ.with(|s| s.set(NEXT.fetch_add(1, Ordering::Relaxed)));
}

fn current_seq() -> u64 {
    SEQ.with(|s| s.get())
}

/// What the current attempt on this thread has done so far.
pub fn attempt_io() -> AttemptIo {
    ATTEMPT.with(|a| a.get())
}

/// Adds name-resolution time to the current attempt.
pub fn note_dns(d: Duration) {
    note(|a| a.dns += d);
}

impl AttemptIo {
    /// Time from a ready connection (or the attempt's start on a pooled
    /// one) to the first byte of the answer.
    pub fn ttfb(&self) -> Option<Duration> {
        let from = self.ready.or(self.started)?;
        Some(self.first_byte?.saturating_duration_since(from))
    }
}

fn note(f: impl FnOnce(&mut AttemptIo)) {
    ATTEMPT.with(|a| {
        let mut v = a.get();
        f(&mut v);
        a.set(v);
    });
}

/// Opens plain TCP connections with `TCP_NODELAY` and TCP keep-alive.
#[derive(Debug)]
pub struct PoolConnector {
    pub stats: Arc<ConnStats>,
    pub tcp_keepalive: Option<Duration>,
    /// `pool_max_age_ms`: an older connection is not reused.
    pub max_age: Option<Duration>,
    /// The agent's sockets, for `llmpool_cancel` to shut them down.
    pub live: Arc<LiveSockets>,
}

impl<In: Transport> Connector<In> for PoolConnector {
    type Out = Either<In, CountedTcp>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        if let Some(t) = chained {
            return Ok(Some(Either::A(t)));
        }
        let per_addr = details.timeout.not_zero().map(|d| *d);
        let mut last_err: Option<ureq::Error> = None;
        let mut stream = None;
        let t0 = Instant::now();
        // An async call's cancel ends a connect still waiting (see `connect`).
        let token = crate::exec::token::current();
        for addr in details.addrs.iter() {
            match super::connect::connect(addr, per_addr, token.as_deref()) {
                Ok(s) => {
                    stream = Some((s, *addr));
                    break;
                }
                Err(e) if super::connect::is_cancel(&e) => {
                    log::in_scope(Level::Info, || {
                        format!("connect to {} ({addr}) cancelled", details.uri)
                    });
                    return Err(ureq::Error::Io(e));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    ) =>
                {
                    last_err = Some(ureq::Error::Timeout(Timeout::Connect));
                }
                Err(e) => last_err = Some(ureq::Error::Io(e)),
            }
        }
        let (stream, peer) = match stream {
            Some(s) => s,
            None => {
                let e = last_err.unwrap_or(ureq::Error::ConnectionFailed);
                log::in_scope(Level::Warn, || {
                    format!("could not connect to {}: {e}", details.uri)
                });
                return Err(e);
            }
        };
        let tcp_done = Instant::now();
        stream.set_nodelay(details.config.no_delay())?;
        if let Some(idle) = self.tcp_keepalive {
            super::sys::set_tcp_keepalive(&stream, idle)?;
        }
        let stream = Arc::new(stream);
        // Lets llmpool_cancel interrupt I/O blocked on this socket.
        let live = LiveSockets::add(&self.live, &stream)?;
        self.stats.opened.fetch_add(1, Ordering::Relaxed);
        self.stats.open_now.fetch_add(1, Ordering::Relaxed);
        let id = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
        CONN_INFO.with(|c| c.set((id, peer, None)));
        note(|a| {
            a.opened += 1;
            a.connect += tcp_done - t0;
            a.tcp_done = Some(tcp_done);
            a.in_setup = true;
        });
        Ok(Some(Either::B(CountedTcp {
            reg: None,
            stream,
            _live: live,
            buffers: ConnBuffers::new(self.stats.buffer_bytes.clone()),
            stats: self.stats.clone(),
            opened_in: current_seq(),
            retire_at: self.max_age.map(|a| std::time::Instant::now() + a),
            registered_in: 0,
            read_timeout: None,
            write_timeout: None,
            id,
            peer,
            log: log::current().map(|(l, _)| l),
            opened_at: tcp_done,
            first_read: true,
            close_reason: "closed by llmpool (pool idle timeout or size limit, answer not reusable, pool reset, cancel or client freed)",
        })))
    }
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// The last link of the connector chain: the connection is ready (TCP and,
/// for https, TLS done). Measures the handshake and logs the new connection.
#[derive(Debug)]
pub struct ConnReady;

impl<In: Transport> Connector<In> for ConnReady {
    type Out = In;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let a = attempt_io();
        if chained.is_some() && a.in_setup {
            let now = Instant::now();
            let tls = details.needs_tls();
            note(|a| {
                a.in_setup = false;
                a.ready = Some(now);
                if tls {
                    a.tls = a.tcp_done.map_or(Duration::ZERO, |t| now - t);
                }
            });
            log::in_scope(Level::Info, || {
                let a = attempt_io();
                let (id, peer, version) = CONN_INFO.with(|c| c.get());
                let mut line = format!(
                    "conn#{id} opened to {} ({peer}): tcp connect {:.1} ms",
                    authority(details),
                    ms(a.connect)
                );
                if tls {
                    line.push_str(&format!(
                        ", {} handshake {:.1} ms",
                        version.unwrap_or("TLS"),
                        ms(a.tls)
                    ));
                }
                line
            });
        }
        Ok(chained)
    }
}

fn authority(details: &ConnectionDetails) -> String {
    details
        .uri
        .authority()
        .map_or_else(String::new, |a| a.host().to_string())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The TLS version a ServerHello announces: TLS 1.3 suites are 0x13xx
/// (its legacy version field says 1.2); otherwise the version field.
fn tls_version_of(b: &[u8]) -> Option<&'static str> {
    // Record header (5 bytes, type 22 = handshake), handshake type 2 =
    // ServerHello, length (3), version (2), random (32), session id.
    if b.len() < 44 || b[0] != 0x16 || b[5] != 0x02 {
        return None;
    }
    let sid = b[43] as usize;
    let suite = b.get(44 + sid..46 + sid)?;
    if suite[0] == 0x13 {
        return Some("TLSv1.3");
    }
    match (b[9], b[10]) {
        (3, 3) => Some("TLSv1.2"),
        (3, 2) => Some("TLSv1.1"),
        (3, 1) => Some("TLSv1.0"),
        _ => None,
    }
}

/// A TCP socket that counts itself in [`ConnStats`] while it lives.
pub struct CountedTcp {
    /// The socket's place in the reactor, made the first time an async
    /// call waits on it; declared first so it is dropped before the socket
    /// closes.
    reg: Option<Registration>,
    stream: Arc<TcpStream>,
    _live: LiveSlot,
    /// Input, and output not yet written (see `transmit_output`).
    buffers: ConnBuffers,
    stats: Arc<ConnStats>,
    /// The attempt (see `SEQ`) that opened this connection; any other
    /// attempt using it is reusing a pooled connection.
    opened_in: u64,
    retire_at: Option<std::time::Instant>,
    /// The attempt that last registered this socket with its async call's
    /// cancel token (see `exec::token`), so it is registered once per attempt.
    registered_in: u64,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// For the log: a process-wide connection number, the peer, the
    /// opening call's logger (drop may run on any thread), and why it closed.
    id: u64,
    peer: SocketAddr,
    log: Option<Arc<Logger>>,
    opened_at: Instant,
    first_read: bool,
    close_reason: &'static str,
}

/// Pending output is written once it reaches this size, even before the
/// next read.
const COALESCE_MAX: usize = 64 * 1024;

impl std::fmt::Debug for CountedTcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountedTcp")
            .field("peer", &self.stream.peer_addr().ok())
            .finish()
    }
}

impl Drop for CountedTcp {
    fn drop(&mut self) {
        self.stats.open_now.fetch_sub(1, Ordering::Relaxed);
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(l) = &self.log {
            log::log!(
                l,
                Level::Debug,
                None,
                "conn#{} to {} closed after {:.0} ms: {}",
                self.id,
                self.peer,
                ms(self.opened_at.elapsed()),
                self.close_reason
            );
        }
    }
}

impl CountedTcp {
    /// Writes all pending output within `timeout`; with `release`, the
    /// output buffer is freed afterwards (the request is complete).
    fn flush(&mut self, timeout: NextTimeout, release: bool) -> Result<(), ureq::Error> {
        if self.buffers.pending().is_empty() {
            self.buffers.output_written(release);
            return Ok(());
        }
        let timeout = timeout.for_write();
        let deadline = Deadline::new(remaining(timeout)?);
        let on_fiber = self.fiber_ready();
        let mut output = self.buffers.pending();
        while !output.is_empty() {
            let written = match &self.reg {
                Some(reg) if on_fiber => on_reactor(reg, &deadline, || {
                    super::sys::send_nowait(&self.stream, output)
                }),
                _ => {
                    arm(
                        &self.stream,
                        deadline.left(),
                        &mut self.write_timeout,
                        TcpStream::set_write_timeout,
                    )?;
                    (&*self.stream).write(output)
                }
            };
            match written {
                Ok(0) => return Err(ureq::Error::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => output = &output[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) && !deadline.passed() => {}
                Err(e) => return Err(map_io(e, timeout.reason)),
            }
        }
        self.buffers.output_written(release);
        Ok(())
    }

    /// Whether this I/O runs on an async call's fiber with the socket
    /// registered in the reactor (registering it the first time): then it
    /// waits by suspending the fiber, not by blocking the thread.
    fn fiber_ready(&mut self) -> bool {
        if !fiber::on_fiber() {
            return false;
        }
        if self.reg.is_none() {
            self.reg = Registration::new(std::os::fd::AsRawFd::as_raw_fd(&*self.stream));
        }
        self.reg.is_some()
    }

    fn note_use(&mut self) {
        let seq = current_seq();
        if self.opened_in != seq {
            note(|a| a.pooled = true);
        }
        if self.registered_in != seq {
            // Lets llmpool_call_cancel interrupt I/O blocked on this socket.
            self.registered_in = seq;
            crate::exec::token::register_socket(&self.stream);
        }
    }
}

/// Runs the non-blocking `io` until it does not find the socket busy,
/// suspending the fiber between tries until the reactor sees the socket
/// ready or the deadline passes (then `ErrorKind::TimedOut`).
fn on_reactor(
    reg: &Registration,
    deadline: &Deadline,
    mut io: impl FnMut() -> io::Result<usize>,
) -> io::Result<usize> {
    loop {
        let seen = reg.generation();
        match io() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            r => return r,
        }
        if reg.wait(seen, deadline.0) == Waited::TimedOut {
            return Err(io::ErrorKind::TimedOut.into());
        }
    }
}

/// When one blocking I/O must give up; `None` waits forever.
struct Deadline(Option<std::time::Instant>);

impl Deadline {
    fn new(t: Option<Duration>) -> Deadline {
        Deadline(t.map(|t| std::time::Instant::now() + t))
    }

    fn left(&self) -> Option<Duration> {
        // A zero socket timeout means "block forever": never arm one.
        self.0.map(|d| {
            d.saturating_duration_since(std::time::Instant::now())
                .max(Duration::from_millis(1))
        })
    }

    fn passed(&self) -> bool {
        self.0.is_some_and(|d| std::time::Instant::now() >= d)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// Sets the socket timeout for the next I/O, skipping the system call when
/// the armed one is close enough: not longer than what is left (so a
/// deadline is never overshot) and at least half of it (an early expiry is
/// re-armed by the caller). The remaining time shrinks on every call, so an
/// exact match would cost two `setsockopt`s per request on a pooled
/// connection.
fn arm(
    stream: &TcpStream,
    want: Option<Duration>,
    armed: &mut Option<Duration>,
    set: fn(&TcpStream, Option<Duration>) -> io::Result<()>,
) -> io::Result<()> {
    let keep = match (want, *armed) {
        (None, None) => true,
        (Some(w), Some(a)) => a <= w && a >= w / 2,
        _ => false,
    };
    if !keep {
        set(stream, want)?;
        *armed = want;
    }
    Ok(())
}

/// The timeout for the next I/O, or the timeout error when none is left.
fn remaining(t: NextTimeout) -> Result<Option<Duration>, ureq::Error> {
    if t.after.is_zero() {
        return Err(ureq::Error::Timeout(t.reason));
    }
    Ok(t.not_zero().map(|d| *d))
}

fn map_io(e: io::Error, reason: Timeout) -> ureq::Error {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ureq::Error::Timeout(reason),
        _ => ureq::Error::Io(e),
    }
}

impl Transport for CountedTcp {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    /// ureq hands over the request head and the body in separate calls;
    /// written as they come, with `TCP_NODELAY`, they leave as two packets
    /// and the server reads twice. The output is kept until the next read
    /// (a request is always followed by waiting for its answer) or until it
    /// grows large, so a small request goes out in one write, as curl's do.
    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.note_use();
        // ureq wrote into the window after the pending bytes (`output()`).
        self.buffers.push_output(amount);
        if self.buffers.pending().len() >= COALESCE_MAX {
            self.flush(timeout, false)?;
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.note_use();
        self.flush(timeout, true)?;
        let timeout = timeout.for_read();
        let deadline = Deadline::new(remaining(timeout)?);
        let on_fiber = self.fiber_ready();
        let (n, offered) = loop {
            if !on_fiber {
                arm(
                    &self.stream,
                    deadline.left(),
                    &mut self.read_timeout,
                    TcpStream::set_read_timeout,
                )?;
            }
            let (got, offered) = match &self.reg {
                Some(reg) if on_fiber => loop {
                    let seen = reg.generation();
                    let buf = self.buffers.read_buf();
                    let offered = buf.len();
                    match super::sys::recv_nowait(&self.stream, buf) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        r => break (r, offered),
                    }
                    // Nothing to read: wait holding no input buffer.
                    self.buffers.release_empty_input();
                    if reg.wait(seen, deadline.0) == Waited::TimedOut {
                        break (Err(io::ErrorKind::TimedOut.into()), offered);
                    }
                },
                _ => {
                    let buf = self.buffers.read_buf();
                    let offered = buf.len();
                    ((&*self.stream).read(buf), offered)
                }
            };
            match got {
                Ok(n) => break (n, offered),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The armed timeout may be shorter than what is left (see
                // `arm`): re-arm and go on until the real deadline.
                Err(e) if is_timeout(&e) && !deadline.passed() => {}
                Err(e) => {
                    self.close_reason = if is_timeout(&e) {
                        "timed out"
                    } else {
                        "i/o error"
                    };
                    return Err(map_io(e, timeout.reason));
                }
            }
        };
        if n == 0 {
            self.close_reason = "closed by the server";
        }
        if self.first_read && n > 0 {
            self.first_read = false;
            if let Some(v) = tls_version_of(&self.buffers.read_buf()[..n]) {
                CONN_INFO.with(|c| {
                    if c.get().0 == self.id {
                        c.set((self.id, self.peer, Some(v)));
                    }
                });
            }
        }
        self.buffers.input_read(n, offered);
        note(|a| {
            a.bytes_in += n as u64;
            // The clock is read once per attempt, not once per read.
            if n > 0 && !a.in_setup && a.first_byte.is_none() {
                a.first_byte = Some(Instant::now());
            }
        });
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        // ureq asks when it returns a connection to the pool (the response
        // read to its end) and before reusing one: either way it is idle,
        // so its buffers go back (see `ConnBuffers`).
        self.buffers.release_idle();
        // Past its age (`pool_max_age_ms`), say no, and it is dropped.
        if self
            .retire_at
            .is_some_and(|t| std::time::Instant::now() >= t)
        {
            self.close_reason = "older than pool_max_age_ms";
            return false;
        }
        let ok = super::sys::is_reusable(&self.stream);
        if !ok {
            self.close_reason = "closed by the server while idle in the pool";
        }
        ok
    }
}

/// ureq's `RustlsConnector`, with the input and output buffers its TLS
/// layer keeps for a connection's life (`input_buffer_size` +
/// `output_buffer_size`, allocated at the first request) counted in
/// [`ConnStats::buffer_bytes`] while the layer lives, through a proxy's
/// tunnel too.
#[derive(Debug)]
pub struct CountedTls {
    pub inner: RustlsConnector,
    pub stats: Arc<ConnStats>,
}

impl<In: Transport> Connector<In> for CountedTls {
    type Out = Either<In, TlsLayer>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        Ok(match self.inner.connect(details, chained)? {
            None => None,
            Some(Either::A(plain)) => Some(Either::A(plain)),
            Some(Either::B(tls)) => {
                let bytes = (details.config.input_buffer_size()
                    + details.config.output_buffer_size()) as u64;
                self.stats.buffer_bytes.fetch_add(bytes, Ordering::Relaxed);
                Some(Either::B(TlsLayer {
                    inner: tls.boxed(),
                    bytes,
                    held: self.stats.buffer_bytes.clone(),
                }))
            }
        })
    }
}

/// A TLS transport from [`CountedTls`].
#[derive(Debug)]
pub struct TlsLayer {
    inner: Box<dyn Transport>,
    bytes: u64,
    held: Arc<AtomicU64>,
}

impl Drop for TlsLayer {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Transport for TlsLayer {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.inner.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}
