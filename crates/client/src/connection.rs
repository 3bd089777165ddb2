//! Connecting and the two halves of a connection: connect (TCP or TLS,
//! either protocol version, credentials, keep-alive, clean or persistent
//! session), then a [`PacketReader`] and a [`PacketWriter`] that the
//! caller's loop drives from one `select!`.
//!
//! The writer batches: callers queue many packets into its buffer and one
//! `write` sends them all. Both halves keep their buffers across calls, so
//! [`PacketReader::fill`] and [`PacketWriter::write_some`] are cancel-safe
//! inside `select!`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tributary_mqtt::{
    decode, encode, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, ReasonCode,
};

use crate::{Error, Result, TlsConfig};

/// TCP connect, TLS handshake and CONNACK together must finish within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Room a reader makes before each `read`: small at first so that thousands
/// of idle connections stay cheap, doubling up to `READ_CHUNK_MAX` for busy
/// ones.
const READ_CHUNK_MIN: usize = 4 * 1024;
const READ_CHUNK_MAX: usize = 64 * 1024;

/// TCP or TLS, one type so the loops are written once.
// The TLS stream is much larger than a TcpStream; boxed so a plain TCP
// connection (the common case) stays small.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How a client's session starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStart {
    Clean,
    /// Resume (or create) a session the broker keeps after disconnect.
    Persistent,
}

/// Where a [`Connector`] connects and what its CONNECT says; each tool
/// (bench, bridge) fills it in from its own configuration.
/// Deliberately not `Debug`: it holds the password.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Host name or address; also the TLS server name.
    pub host: String,
    pub port: u16,
    /// `Some` connects over TLS.
    pub tls: Option<TlsConfig>,
    pub protocol: ProtocolVersion,
    /// Seconds; 0 turns keep-alive off.
    pub keep_alive: u16,
    pub username: Option<String>,
    pub password: Option<bytes::Bytes>,
    /// Largest packet accepted from the broker (5.0: announced as Maximum
    /// Packet Size).
    pub max_incoming: usize,
    /// 5.0 Session Expiry Interval of a [`SessionStart::Persistent`] session.
    pub session_expiry_secs: u32,
    /// 5.0 Receive Maximum announced in CONNECT: how many QoS 1/2 publishes
    /// the broker may send before we acknowledge; `None` leaves it at 65,535.
    pub receive_maximum: Option<u16>,
}

/// Opens connections to one broker with one set of options; shared by every
/// connection a tool opens (a bench run's clients share its TLS session cache).
pub struct Connector {
    addr: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    options: ConnectOptions,
}

impl Connector {
    pub fn new(options: &ConnectOptions) -> Result<Connector> {
        let tls = match &options.tls {
            Some(tls) => Some(crate::tls::connector(tls, &options.host)?),
            None => None,
        };
        let addr = if options.host.contains(':') && !options.host.starts_with('[') {
            format!("[{}]:{}", options.host, options.port)
        } else {
            format!("{}:{}", options.host, options.port)
        };
        Ok(Connector {
            addr,
            tls,
            options: options.clone(),
        })
    }

    /// `host:port` (IPv6 hosts in brackets), as connected to and named in errors.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Connects and completes the CONNECT/CONNACK exchange.
    pub async fn connect(&self, client_id: &str, session: SessionStart) -> Result<Client> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.connect_inner(client_id, session))
            .await
            .map_err(|_| Error::Timeout("CONNACK"))?
    }

    async fn connect_inner(&self, client_id: &str, session: SessionStart) -> Result<Client> {
        let tcp = TcpStream::connect(&self.addr)
            .await
            .map_err(|source| Error::Connect {
                addr: self.addr.clone(),
                source,
            })?;
        // Latency is what we measure: never let Nagle hold back an ack.
        tcp.set_nodelay(true)?;
        let stream = match &self.tls {
            None => Stream::Tcp(tcp),
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|source| Error::Tls {
                        host: name.to_str().into_owned(),
                        source,
                    })?;
                Stream::Tls(Box::new(tls))
            }
        };
        let options = &self.options;
        let (read_half, write_half) = tokio::io::split(stream);
        let mut reader = PacketReader {
            half: read_half,
            buf: BytesMut::new(),
            chunk: READ_CHUNK_MIN,
            version: options.protocol,
            max_packet: options.max_incoming,
        };
        let mut writer = PacketWriter {
            half: write_half,
            buf: BytesMut::new(),
            version: options.protocol,
            unflushed: false,
            last_write: Instant::now(),
        };

        let mut properties = Properties::default();
        if options.protocol == ProtocolVersion::V5 {
            properties.maximum_packet_size = Some(options.max_incoming as u32);
            properties.receive_maximum = options.receive_maximum;
            if session == SessionStart::Persistent {
                properties.session_expiry_interval = Some(options.session_expiry_secs);
            }
        }
        writer.queue(&Packet::Connect(Connect {
            protocol: options.protocol,
            clean_start: session == SessionStart::Clean,
            keep_alive: options.keep_alive,
            client_id: client_id.to_owned(),
            will: None,
            username: options.username.clone(),
            password: options.password.clone(),
            properties,
        }))?;
        writer.flush().await?;

        let connack = loop {
            match reader.next_packet()? {
                Some(Packet::ConnAck(ack)) => break ack,
                Some(Packet::Disconnect(d)) => return Err(Error::Closed(Some(d.reason))),
                Some(_) => return Err(Error::Unexpected("packet before CONNACK")),
                None => reader.fill().await?,
            }
        };
        if connack.reason.is_error() {
            return Err(Error::Refused(connack.reason));
        }
        Ok(Client {
            receive_maximum: connack.properties.receive_maximum.unwrap_or(u16::MAX),
            broker_max_packet: connack.properties.maximum_packet_size,
            session_present: connack.session_present,
            connack,
            keep_alive: options.keep_alive,
            reader,
            writer,
        })
    }
}

/// A connected client: the two halves and what the CONNACK said.
pub struct Client {
    pub reader: PacketReader,
    pub writer: PacketWriter,
    /// How many QoS 1/2 publishes the broker takes unacknowledged (5.0
    /// Receive Maximum; 65,535 when it says nothing).
    pub receive_maximum: u16,
    /// The broker's Maximum Packet Size (5.0), if it announced one.
    pub broker_max_packet: Option<u32>,
    pub session_present: bool,
    pub connack: ConnAck,
    keep_alive: u16,
}

impl Client {
    /// When the client must send something (a PINGREQ if nothing else) to
    /// keep the connection: half the keep-alive after the last write.
    pub fn ping_due(&self) -> Option<Instant> {
        (self.keep_alive > 0)
            .then(|| self.writer.last_write + Duration::from_secs(u64::from(self.keep_alive)) / 2)
    }

    /// Sends what is queued and a DISCONNECT, then closes; errors are
    /// ignored as the run is over for this client either way.
    pub async fn disconnect(mut self, grace: Duration) {
        let _ = self.writer.queue(&Packet::Disconnect(Disconnect::new(
            ReasonCode::NORMAL_DISCONNECTION,
        )));
        let _ = tokio::time::timeout(grace, async {
            self.writer.flush().await?;
            self.writer.half.shutdown().await.map_err(Error::Io)
        })
        .await;
    }
}

/// The read half with its buffer of bytes not yet decoded.
pub struct PacketReader {
    half: ReadHalf<Stream>,
    buf: BytesMut,
    /// How much room the next `read` gets.
    chunk: usize,
    version: ProtocolVersion,
    max_packet: usize,
}

impl PacketReader {
    /// Reads once from the socket into the buffer. Cancel-safe.
    pub async fn fill(&mut self) -> Result<()> {
        if self.buf.capacity() - self.buf.len() < self.chunk / 2 {
            self.buf.reserve(self.chunk);
        }
        let room = self.buf.capacity() - self.buf.len();
        match self.half.read_buf(&mut self.buf).await? {
            0 => Err(Error::Closed(None)),
            n => {
                if n == room {
                    self.chunk = (self.chunk * 2).min(READ_CHUNK_MAX);
                }
                Ok(())
            }
        }
    }

    /// Decodes the next whole packet from the buffer; `None` when more
    /// bytes are needed.
    pub fn next_packet(&mut self) -> Result<Option<Packet>> {
        match decode(&self.buf, self.version, self.max_packet) {
            Ok((packet, used)) => {
                self.buf.advance(used);
                Ok(Some(packet))
            }
            Err(tributary_mqtt::Error::Incomplete { .. }) => Ok(None),
            Err(e) => Err(Error::Protocol(e)),
        }
    }
}

/// The write half with its buffer of encoded packets not yet written.
pub struct PacketWriter {
    half: WriteHalf<Stream>,
    /// Encoded packets waiting for the socket; modes append publishes here
    /// directly.
    pub buf: BytesMut,
    version: ProtocolVersion,
    /// Bytes went into the stream since its last flush: TLS may hold them.
    unflushed: bool,
    last_write: Instant,
}

impl PacketWriter {
    pub fn queue(&mut self, packet: &Packet) -> Result<()> {
        encode(packet, self.version, &mut self.buf).map_err(Error::Encode)
    }

    /// Whether [`PacketWriter::write_some`] has work to do.
    pub fn wants_write(&self) -> bool {
        !self.buf.is_empty() || self.unflushed
    }

    /// One write of queued bytes, or a flush once all are written.
    /// Cancel-safe: the buffer only advances by what was written.
    pub async fn write_some(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            self.half.flush().await?;
            self.unflushed = false;
            return Ok(());
        }
        let n = self.half.write_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(Error::Io(io::ErrorKind::WriteZero.into()));
        }
        self.unflushed = true;
        self.last_write = Instant::now();
        Ok(())
    }

    /// Writes everything queued and flushes.
    pub async fn flush(&mut self) -> Result<()> {
        while self.wants_write() {
            self.write_some().await?;
        }
        Ok(())
    }
}
