//! SIP sockets: UDP receive loops and TCP connections framed by Content-Length. They only move
//! bytes between the network and the SIP task.
//!
//! Sending never makes the SIP task wait: a UDP datagram is handed to the kernel or dropped
//! like a lost packet, a TCP message goes into its connection's bounded queue or fails at
//! once, and a connection whose peer stops reading is closed after [`TCP_WRITE_STALL`]. One
//! stuck watcher thus costs its own NOTIFYs, never the calls and the other watchers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::sip::framing::StreamFramer;
use crate::sip::limits::connections::{ConnBudget, ConnectionTable};
use crate::sip::ua::{ConnId, Peer, Transport, OUTBOUND_CONN_BASE};

/// Largest UDP datagram we read (a SIP message over UDP must fit one).
const MAX_DATAGRAM: usize = 65_535;

/// Receive and send buffer asked for the SIP UDP sockets. A presence change to 1,000 watchers
/// brings 1,000 `200 OK`s back within a few milliseconds; the Linux default (208 KiB, about 300
/// small datagrams) drops the rest, and every lost answer holds that watcher's next NOTIFY for
/// a retransmission (500 ms and up). The kernel caps it at `net.core.rmem_max`/`wmem_max`.
const SIP_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Binds a SIP UDP socket with room for bursts of answers (see [`SIP_SOCKET_BUFFER`]).
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Smaller buffers only cost more drops under load: serve anyway.
    if let Err(error) = socket.set_recv_buffer_size(SIP_SOCKET_BUFFER) {
        tracing::warn!(%error, "cannot enlarge the SIP receive buffer");
    }
    if let Err(error) = socket.set_send_buffer_size(SIP_SOCKET_BUFFER) {
        tracing::warn!(%error, "cannot enlarge the SIP send buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let granted = socket.recv_buffer_size().unwrap_or(0);
    if granted < SIP_SOCKET_BUFFER {
        tracing::info!(
            granted,
            wanted = SIP_SOCKET_BUFFER,
            "SIP receive buffer capped by net.core.rmem_max; bursts of answers may be dropped"
        );
    }
    UdpSocket::from_std(socket.into())
}

/// Messages waiting in one TCP connection's queue, at most (the kernel's send buffer holds more).
const TCP_QUEUE_MESSAGES: usize = 64;

/// Bytes waiting in one TCP connection's queue, at most.
const TCP_QUEUE_BYTES: usize = 128 * 1024;

/// Kernel send buffer of a SIP TCP connection. Set rather than left to autotuning (which grows
/// to megabytes on loopback), so a peer that stops reading holds a bounded amount of memory
/// and its connection backs up, and is closed, after a bounded number of messages.
const TCP_SEND_BUFFER: usize = 64 * 1024;

/// How long one message's write may wait for a peer that reads nothing before its
/// connection is closed (what was queued for it is dropped; those transactions fail).
pub const TCP_WRITE_STALL: Duration = Duration::from_secs(5);

/// Why a message was not sent. The SIP task reports it to the user agent, which fails the
/// transaction waiting on it.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no UDP socket to send from")]
    NoUdpSocket,
    #[error("UDP send failed: {0}")]
    Udp(#[source] std::io::Error),
    #[error("TCP connection {0} is gone")]
    ConnectionGone(ConnId),
    #[error("TCP connection {0} is backed up (its peer reads too slowly)")]
    QueueFull(ConnId),
}

/// The sending side of one TCP connection: a queue bounded in messages and bytes, drained by
/// the connection's writer task. Sending to it never waits.
#[derive(Debug, Clone)]
pub struct ConnWriter {
    conn: ConnId,
    tx: mpsc::Sender<Arc<[u8]>>,
    /// Bytes queued and not yet written to the socket.
    queued: Arc<AtomicUsize>,
}

impl ConnWriter {
    /// A writer for connection `conn` and the receiving end its writer task drains.
    pub fn new(conn: ConnId) -> (ConnWriter, mpsc::Receiver<Arc<[u8]>>, Arc<AtomicUsize>) {
        let (tx, rx) = mpsc::channel(TCP_QUEUE_MESSAGES);
        let queued = Arc::new(AtomicUsize::new(0));
        let writer = ConnWriter {
            conn,
            tx,
            queued: queued.clone(),
        };
        (writer, rx, queued)
    }

    /// Queues `bytes`, or fails at once when the queue is full (in messages or bytes) or the
    /// connection is closed.
    pub fn try_send(&self, bytes: Arc<[u8]>) -> Result<(), SendError> {
        let len = bytes.len();
        if self.queued.load(Ordering::Relaxed).saturating_add(len) > TCP_QUEUE_BYTES {
            return Err(SendError::QueueFull(self.conn));
        }
        match self.tx.try_send(bytes) {
            Ok(()) => {
                self.queued.fetch_add(len, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(SendError::QueueFull(self.conn)),
            Err(TrySendError::Closed(_)) => Err(SendError::ConnectionGone(self.conn)),
        }
    }
}

/// A message for the SIP task, or news about a TCP connection.
#[derive(Debug)]
pub enum Inbound {
    Message {
        peer: Peer,
        local: SocketAddr,
        bytes: Vec<u8>,
    },
    Opened {
        conn: ConnId,
        writer: ConnWriter,
    },
    Closed {
        conn: ConnId,
    },
}

/// Where the SIP task sends what the user agent wants sent.
pub struct Outbound {
    udp: Vec<Arc<UdpSocket>>,
    tcp: HashMap<ConnId, ConnWriter>,
    /// For connections we open ourselves (their reader reports here like accepted ones).
    inbound: mpsc::Sender<Inbound>,
}

impl Outbound {
    /// An outbound side with no sockets yet.
    pub fn new(inbound: mpsc::Sender<Inbound>) -> Outbound {
        Outbound {
            udp: Vec::new(),
            tcp: HashMap::new(),
            inbound,
        }
    }

    /// The socket of `peer`'s flow (the one its dialog was made on); without one, the first
    /// of the destination's IP family.
    fn udp_for(&self, peer: &Peer) -> Option<&Arc<UdpSocket>> {
        let own = peer
            .local
            .and_then(|local| self.udp.iter().find(|s| s.local_addr().ok() == Some(local)));
        own.or_else(|| {
            self.udp.iter().find(|s| {
                s.local_addr()
                    .is_ok_and(|a| a.is_ipv4() == peer.addr.is_ipv4())
            })
        })
        .or_else(|| self.udp.first())
    }

    /// Adds a UDP socket we can send from.
    pub fn add_udp(&mut self, socket: Arc<UdpSocket>) {
        self.udp.push(socket);
    }

    /// Tracks TCP connections as they open and close.
    pub fn connection(&mut self, inbound: &Inbound) {
        match inbound {
            Inbound::Opened { conn, writer } => {
                self.tcp.insert(*conn, writer.clone());
            }
            Inbound::Closed { conn } => {
                self.tcp.remove(conn);
            }
            Inbound::Message { .. } => {}
        }
    }

    /// Sends one message without waiting: handed to the kernel (UDP) or queued on its
    /// connection (TCP). An error means the message is not going out; the caller tells the
    /// user agent. A UDP socket whose buffer is full drops the datagram like a lost packet
    /// (`Ok`): the transaction retransmits over UDP.
    pub fn send(&mut self, peer: Peer, bytes: Arc<[u8]>) -> Result<(), SendError> {
        match peer.transport {
            Transport::Udp => {
                let socket = self.udp_for(&peer).ok_or(SendError::NoUdpSocket)?;
                match socket.try_send_to(&bytes, peer.addr) {
                    Ok(_) => Ok(()),
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                        tracing::debug!(to = %peer.addr, "UDP send buffer full; datagram dropped");
                        Ok(())
                    }
                    Err(error) => Err(SendError::Udp(error)),
                }
            }
            Transport::Tcp(conn) => match self.tcp.get(&conn) {
                Some(writer) => writer.try_send(bytes),
                None if conn >= OUTBOUND_CONN_BASE => {
                    // A connection we open (a request too large for UDP, or dialogs whose
                    // connection closed): its queue exists at once, so every message for it
                    // waits there while the connect runs in the background, and the SIP task
                    // never waits on a connect.
                    let (writer, rx, queued) = ConnWriter::new(conn);
                    writer.try_send(bytes)?;
                    self.tcp.insert(conn, writer);
                    let fallback = self.udp_for(&peer).cloned();
                    tokio::spawn(connect_and_serve(
                        conn,
                        peer,
                        (rx, queued),
                        self.inbound.clone(),
                        fallback,
                    ));
                    Ok(())
                }
                None => Err(SendError::ConnectionGone(conn)),
            },
        }
    }
}

/// A connection's send queue and its byte count, made before the connection exists.
type Queue = (mpsc::Receiver<Arc<[u8]>>, Arc<AtomicUsize>);

/// How a connection came to be, which decides what it starts with.
pub(crate) enum Origin {
    /// A peer connected to us: its place in the connection table (`None` in tests), whose
    /// read budget the limits set.
    Accepted(Option<Admitted>),
    /// We connected to the peer: the queue the SIP task has been filling meanwhile.
    Opened(Queue),
}

/// Opens a TCP connection to `peer` (from the IP of its flow, so the peer sees the address
/// it knows), then serves it like an accepted one, starting with what `queue` holds. When the
/// peer takes no TCP, what was queued goes over UDP after all, and the connection is reported
/// closed so the next message tries again.
async fn connect_and_serve(
    conn: ConnId,
    peer: Peer,
    queue: Queue,
    inbound: mpsc::Sender<Inbound>,
    fallback: Option<Arc<UdpSocket>>,
) {
    let addr = peer.addr;
    let connect = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        connect_from(peer.local, addr),
    )
    .await;
    let why = match connect {
        Ok(Ok(stream)) => {
            return tcp_connection(conn, stream, addr, inbound, Origin::Opened(queue)).await
        }
        Ok(Err(error)) => error.to_string(),
        Err(_) => "connect timed out".to_string(),
    };
    tracing::info!(to = %addr, %why, "peer takes no TCP; sending what was queued over UDP");
    let (mut rx, _) = queue;
    rx.close();
    while let Ok(bytes) = rx.try_recv() {
        if let Some(socket) = &fallback {
            if let Err(error) = socket.send_to(&bytes, addr).await {
                tracing::info!(%error, to = %addr, "UDP send failed");
            }
        }
    }
    let _ = inbound.send(Inbound::Closed { conn }).await;
}

/// A TCP connection to `addr` from `local`'s IP (any port) when it is a concrete address of
/// the same family; else from whatever address the kernel picks.
async fn connect_from(local: Option<SocketAddr>, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let Some(local) = local.filter(|l| !l.ip().is_unspecified() && l.is_ipv4() == addr.is_ipv4())
    else {
        return TcpStream::connect(addr).await;
    };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(local.ip(), 0))?;
    socket.connect(addr).await
}

/// Reads datagrams forever and hands them to the SIP task.
pub async fn udp_loop(socket: Arc<UdpSocket>, inbound: mpsc::Sender<Inbound>) {
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(error) => {
            tracing::error!(%error, "UDP socket without an address");
            return;
        }
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((len, addr)) => {
                let bytes = buf.get(..len).unwrap_or_default().to_vec();
                let peer = Peer {
                    transport: Transport::Udp,
                    addr,
                    local: Some(local),
                };
                if inbound
                    .send(Inbound::Message { peer, local, bytes })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // ICMP port unreachable and the like surface here on some systems; keep serving.
            Err(error) => tracing::debug!(%error, "UDP receive error"),
        }
    }
}

/// One accepted connection's place in the [`ConnectionTable`], given back when it ends.
pub(crate) struct Admitted {
    table: Arc<Mutex<ConnectionTable>>,
    addr: SocketAddr,
    budget: ConnBudget,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut table) = self.table.lock() {
            table.release(self.addr.ip());
        }
    }
}

/// Accepts TCP connections forever; each the limits admit gets a reader and a writer task,
/// the others are closed at once.
pub async fn tcp_accept_loop(
    listener: TcpListener,
    inbound: mpsc::Sender<Inbound>,
    connections: Arc<Mutex<ConnectionTable>>,
) {
    static NEXT_CONN: AtomicU64 = AtomicU64::new(1);
    let mut last_log: Option<Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let now = Instant::now();
                let admitted = match connections.lock() {
                    Ok(mut table) => table.admit(addr.ip()).map(|()| table.budget(now)),
                    Err(_) => return tracing::error!("TCP connection table poisoned"),
                };
                let budget = match admitted {
                    Ok(budget) => budget,
                    Err(why) => {
                        // One line per interval, however many are refused.
                        if last_log.is_none_or(|at| now - at >= LOG_INTERVAL) {
                            last_log = Some(now);
                            tracing::warn!(from = %addr, %why, "TCP connection refused");
                        }
                        drop(stream);
                        continue;
                    }
                };
                let admitted = Admitted {
                    table: connections.clone(),
                    addr,
                    budget,
                };
                let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(tcp_connection(
                    conn,
                    stream,
                    addr,
                    inbound.clone(),
                    Origin::Accepted(Some(admitted)),
                ));
            }
            Err(error) => {
                tracing::warn!(%error, "TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// At most one log line per interval about refused connections.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Sleeps until `deadline`, or forever without one (a `select!` branch that never fires).
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Serves one TCP connection. `admitted` (accepted connections) carries the read budget the
/// limits set; the connection closes when the budget says so.
async fn tcp_connection(
    conn: ConnId,
    stream: TcpStream,
    addr: SocketAddr,
    inbound: mpsc::Sender<Inbound>,
    origin: Origin,
) {
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    if let Err(error) = socket2::SockRef::from(&stream).set_send_buffer_size(TCP_SEND_BUFFER) {
        tracing::debug!(%error, "cannot bound the TCP send buffer");
    }
    // A response and the NOTIFY after it are two writes: without this the second waits for
    // the peer's delayed ACK (Nagle), 40 ms and more per message.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot turn Nagle off");
    }
    let (reader, writer) = stream.into_split();
    serve_connection(conn, reader, writer, addr, local, inbound, origin).await;
}

/// Serves one connection (a TCP stream, or an in-memory pipe in tests): frames what it reads
/// for the SIP task and writes what the SIP task queues, until either side ends. A write
/// that waits longer than [`TCP_WRITE_STALL`] (the peer stopped reading) closes it.
pub(crate) async fn serve_connection<R, W>(
    conn: ConnId,
    mut reader: R,
    writer: W,
    addr: SocketAddr,
    local: SocketAddr,
    inbound: mpsc::Sender<Inbound>,
    origin: Origin,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    // A connection we opened has its queue already (the SIP task knows its writer).
    let (queue, mut admitted) = match origin {
        Origin::Opened(queue) => (Some(queue), None),
        Origin::Accepted(admitted) => (None, admitted),
    };
    let (rx, queued) = match queue {
        Some(queue) => queue,
        None => {
            let (tx, rx, queued) = ConnWriter::new(conn);
            if inbound
                .send(Inbound::Opened { conn, writer: tx })
                .await
                .is_err()
            {
                return;
            }
            (rx, queued)
        }
    };
    let mut write_task = tokio::spawn(write_loop(conn, writer, rx, queued));
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    let peer = Peer {
        transport: Transport::Tcp(conn),
        addr,
        local: Some(local),
    };
    'read: loop {
        let deadline = admitted.as_ref().and_then(|a| a.budget.deadline());
        let n = tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = sleep_until_some(deadline) => {
                tracing::info!(conn, from = %addr, "closing a TCP connection whose message never completed (limits.tcp.partial_timeout)");
                break;
            }
            // The writer gave up (a failed write, or a peer that stopped reading): report the
            // connection closed now, so the dialogs on it move to a new one instead of losing
            // message after message.
            _ = &mut write_task => break 'read,
        };
        framer.push(buf.get(..n).unwrap_or_default());
        loop {
            match framer.next_message() {
                Ok(Some(bytes)) => {
                    if inbound
                        .send(Inbound::Message { peer, local, bytes })
                        .await
                        .is_err()
                    {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::info!(%error, from = %addr, "closing a TCP connection that cannot be framed");
                    break 'read;
                }
            }
        }
        if let Some(admitted) = admitted.as_mut() {
            if let Err(why) = admitted
                .budget
                .on_read(n, framer.has_partial(), Instant::now())
            {
                tracing::info!(from = %addr, %why, "closing a TCP connection over its limits");
                break;
            }
        }
    }
    write_task.abort();
    let _ = inbound.send(Inbound::Closed { conn }).await;
}

/// Writes a connection's queue in order. Each write is bounded by [`TCP_WRITE_STALL`]: a peer
/// that stops reading fills the kernel buffer, then our queue (sends fail at once), and is then
/// dropped here; returning ends the connection.
async fn write_loop<W: AsyncWrite + Unpin>(
    conn: ConnId,
    mut writer: W,
    mut rx: mpsc::Receiver<Arc<[u8]>>,
    queued: Arc<AtomicUsize>,
) {
    while let Some(bytes) = rx.recv().await {
        let written = write_bounded(conn, &mut writer, &bytes).await;
        queued.fetch_sub(bytes.len(), Ordering::Relaxed);
        if !written {
            return;
        }
    }
}

/// One message to the socket within [`TCP_WRITE_STALL`]; false when the connection must close.
async fn write_bounded<W: AsyncWrite + Unpin>(conn: ConnId, writer: &mut W, bytes: &[u8]) -> bool {
    match tokio::time::timeout(TCP_WRITE_STALL, writer.write_all(bytes)).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::info!(conn, %error, "TCP write failed; closing the connection");
            false
        }
        Err(_) => {
            tracing::warn!(
                conn,
                stall = ?TCP_WRITE_STALL,
                "TCP peer stopped reading; closing the connection"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> Arc<[u8]> {
        vec![b'x'; len].into()
    }

    #[test]
    fn a_connection_queue_is_bounded_in_messages() {
        let (writer, _rx, _queued) = ConnWriter::new(7);
        for _ in 0..TCP_QUEUE_MESSAGES {
            writer.try_send(message(100)).unwrap();
        }
        assert!(matches!(
            writer.try_send(message(100)),
            Err(SendError::QueueFull(7))
        ));
    }

    #[test]
    fn a_connection_queue_is_bounded_in_bytes_and_frees_what_was_written() {
        let (writer, mut rx, queued) = ConnWriter::new(8);
        writer.try_send(message(TCP_QUEUE_BYTES - 10)).unwrap();
        assert!(matches!(
            writer.try_send(message(11)),
            Err(SendError::QueueFull(8))
        ));
        writer.try_send(message(10)).unwrap();
        // The writer task takes one and writes it: its bytes are free again.
        let taken = rx.try_recv().unwrap();
        queued.fetch_sub(taken.len(), Ordering::Relaxed);
        writer.try_send(message(1000)).unwrap();
    }

    #[test]
    fn a_closed_connection_fails_at_once() {
        let (writer, rx, _queued) = ConnWriter::new(9);
        drop(rx);
        assert!(matches!(
            writer.try_send(message(10)),
            Err(SendError::ConnectionGone(9))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_is_closed_after_the_stall_bound() {
        let (inbound_tx, mut inbound) = mpsc::channel(16);
        let (ours, theirs) = tokio::io::duplex(1024);
        let (reader, writer) = tokio::io::split(theirs);
        let addr: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let started = tokio::time::Instant::now();
        let served = tokio::spawn(serve_connection(
            3,
            reader,
            writer,
            addr,
            "127.0.0.1:5060".parse().unwrap(),
            inbound_tx,
            Origin::Accepted(None),
        ));
        let Some(Inbound::Opened { writer, .. }) = inbound.recv().await else {
            panic!("no Opened");
        };
        // 4 KiB into a 1 KiB pipe nobody reads: the write stalls.
        for _ in 0..4 {
            writer.try_send(message(1024)).unwrap();
        }
        let closed = tokio::time::timeout(TCP_WRITE_STALL * 2, inbound.recv())
            .await
            .expect("closed within the bound");
        assert!(matches!(closed, Some(Inbound::Closed { conn: 3 })));
        assert!(started.elapsed() >= TCP_WRITE_STALL);
        served.await.unwrap();
        assert!(matches!(
            writer.try_send(message(10)),
            Err(SendError::ConnectionGone(3))
        ));
        drop(ours);
    }

    #[tokio::test]
    async fn messages_for_a_connection_we_open_wait_for_it_and_share_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (inbound_tx, _inbound) = mpsc::channel(16);
        let mut outbound = Outbound::new(inbound_tx);
        let peer = Peer {
            transport: Transport::Tcp(OUTBOUND_CONN_BASE + 1),
            addr,
            local: None,
        };
        // Both are sent before the connect completes.
        outbound.send(peer, Arc::from(&b"first;"[..])).unwrap();
        outbound.send(peer, Arc::from(&b"second"[..])).unwrap();
        let limit = std::time::Duration::from_secs(5);
        let (mut stream, _) = tokio::time::timeout(limit, listener.accept())
            .await
            .unwrap()
            .unwrap();
        let mut got = vec![0u8; 12];
        tokio::time::timeout(limit, stream.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, b"first;second");
        let second =
            tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
        assert!(second.is_err(), "one connection for both messages");
    }
}
