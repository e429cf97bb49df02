//! SIP sockets: UDP receive loops and TCP connections framed by Content-Length. They only move
//! bytes between the network and the SIP task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::sip::framing::StreamFramer;
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
        writer: mpsc::Sender<Arc<[u8]>>,
    },
    Closed {
        conn: ConnId,
    },
}

/// Where the SIP task sends what the user agent wants sent.
pub struct Outbound {
    udp: Vec<Arc<UdpSocket>>,
    tcp: HashMap<ConnId, mpsc::Sender<Arc<[u8]>>>,
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

    /// Sends one message; failures are logged (the transaction layer retries over UDP).
    pub async fn send(&self, peer: Peer, bytes: Arc<[u8]>) {
        match peer.transport {
            Transport::Udp => {
                let Some(socket) = self.udp_for(&peer) else {
                    tracing::warn!(to = %peer.addr, "no UDP socket to send from");
                    return;
                };
                if let Err(error) = socket.send_to(&bytes, peer.addr).await {
                    tracing::info!(%error, to = %peer.addr, "UDP send failed");
                }
            }
            Transport::Tcp(conn) => match self.tcp.get(&conn) {
                Some(writer) => {
                    if writer.send(bytes).await.is_err() {
                        tracing::info!(conn, "TCP connection closed before sending");
                    }
                }
                None if conn >= OUTBOUND_CONN_BASE => {
                    // A request too large for UDP: open the connection in the background so
                    // the SIP task never waits on a connect.
                    let fallback = self.udp_for(&peer).cloned();
                    tokio::spawn(connect_and_send(
                        conn,
                        peer,
                        bytes,
                        self.inbound.clone(),
                        fallback,
                    ));
                }
                None => {
                    tracing::info!(conn, to = %peer.addr, "TCP connection gone; message dropped")
                }
            },
        }
    }
}

/// Opens a TCP connection to `peer` (from the IP of its flow, so the peer sees the address
/// it knows), sends `first`, then serves the connection like an accepted one. When the peer
/// takes no TCP, the message goes over UDP after all.
async fn connect_and_send(
    conn: ConnId,
    peer: Peer,
    first: Arc<[u8]>,
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
        Ok(Ok(stream)) => return tcp_connection(conn, stream, addr, inbound, Some(first)).await,
        Ok(Err(error)) => error.to_string(),
        Err(_) => "connect timed out".to_string(),
    };
    tracing::info!(to = %addr, %why, "peer takes no TCP; sending the large request over UDP");
    if let Some(socket) = fallback {
        if let Err(error) = socket.send_to(&first, addr).await {
            tracing::info!(%error, to = %addr, "UDP send failed");
        }
    }
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

/// Accepts TCP connections forever; each gets a reader and a writer task.
pub async fn tcp_accept_loop(listener: TcpListener, inbound: mpsc::Sender<Inbound>) {
    static NEXT_CONN: AtomicU64 = AtomicU64::new(1);
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(tcp_connection(conn, stream, addr, inbound.clone(), None));
            }
            Err(error) => {
                tracing::warn!(%error, "TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one (a `select!` branch that never fires).
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn tcp_connection(
    conn: ConnId,
    stream: TcpStream,
    addr: SocketAddr,
    inbound: mpsc::Sender<Inbound>,
    first: Option<Arc<[u8]>>,
) {
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Arc<[u8]>>(64);
    if inbound
        .send(Inbound::Opened { conn, writer: tx })
        .await
        .is_err()
    {
        return;
    }
    let mut write_task = tokio::spawn(async move {
        if let Some(bytes) = first {
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    let peer = Peer {
        transport: Transport::Tcp(conn),
        addr,
        local: Some(local),
    };
    // Set while a message has begun and not completed: the framer says until when to wait.
    let mut stalled: Option<tokio::time::Instant> = None;
    'read: loop {
        let n = tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = sleep_until_some(stalled) => {
                tracing::info!(conn, from = %addr, "closing a TCP connection whose message never completed");
                break;
            }
            // A failed write leaves the connection useless: report it closed now, so the
            // dialogs on it move to a new one instead of losing message after message.
            _ = &mut write_task => {
                tracing::info!(conn, to = %addr, "TCP write failed; closing the connection");
                break;
            }
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
        stalled = framer
            .stalled_deadline(std::time::Instant::now())
            .map(tokio::time::Instant::from_std);
    }
    write_task.abort();
    let _ = inbound.send(Inbound::Closed { conn }).await;
}
