//! The listeners — plain MQTT, MQTT over TLS, over WebSocket and over
//! secure WebSocket — and the layers a new connection passes before its
//! first MQTT byte: the PROXY v2 header (where the listener expects one),
//! the TLS handshake, the WebSocket upgrade.

use std::net::SocketAddr;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::config::{BrokerConfig, ListenerConfig, ListenerKind};
use crate::transport::Transport;
use crate::{Error, Result};

/// One bound listener.
pub(crate) struct Listener {
    pub kind: ListenerKind,
    pub proxy_protocol: bool,
    pub socket: TcpListener,
}

/// Every listener of a broker, bound, with the TLS acceptor they share.
pub struct Listeners {
    pub(crate) all: Vec<Listener>,
    pub(crate) tls: Option<TlsAcceptor>,
}

impl Listeners {
    /// Loads the certificates and binds every listener the config turns on.
    pub async fn bind(config: &BrokerConfig) -> Result<Listeners> {
        let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
        let mut all = Vec::new();
        for (
            kind,
            ListenerConfig {
                listen,
                proxy_protocol,
            },
        ) in config.listeners()
        {
            let socket = TcpListener::bind(listen).await.map_err(|e| Error::Listen {
                what: kind.to_string(),
                addr: listen,
                source: e,
            })?;
            all.push(Listener {
                kind,
                proxy_protocol,
                socket,
            });
        }
        Ok(Listeners { all, tls })
    }

    /// Each listener's kind and bound address (port 0 resolved).
    pub fn addresses(&self) -> Vec<(ListenerKind, SocketAddr)> {
        self.all
            .iter()
            .filter_map(|l| Some((l.kind, l.socket.local_addr().ok()?)))
            .collect()
    }
}

/// The layers of one listener, shared by its connections.
#[derive(Clone)]
pub(crate) struct Layers {
    pub kind: ListenerKind,
    pub proxy_protocol: bool,
    pub tls: Option<TlsAcceptor>,
    pub max_packet_size: usize,
}

impl Layers {
    /// Takes a new connection through the PROXY header, TLS and WebSocket
    /// as its listener requires; returns the MQTT byte stream and the
    /// client's address, or `None` (with one log line) when a layer refused it.
    pub(crate) async fn open(
        &self,
        mut stream: TcpStream,
        mut peer: SocketAddr,
    ) -> Option<(Transport, SocketAddr)> {
        if self.proxy_protocol {
            match read_proxy_header(&mut stream).await {
                Ok(crate::proxy::Header::Proxied { source }) => peer = source,
                Ok(crate::proxy::Header::Local) => {}
                Err(e) => {
                    tracing::info!(%peer, listener = %self.kind, error = %e, "refused: listener expects a PROXY v2 header");
                    return None;
                }
            }
        }
        let transport = match self.kind {
            ListenerKind::Tcp => Transport::Tcp(stream),
            ListenerKind::Ws => {
                let ws = self.websocket(stream, peer).await?;
                Transport::layered(Box::new(ws), None)
            }
            ListenerKind::Tls | ListenerKind::Wss => {
                let acceptor = self
                    .tls
                    .as_ref()
                    .expect("validated: TLS listeners have [tls]");
                let tls = match acceptor.accept(stream).await {
                    Ok(tls) => tls,
                    Err(e) => {
                        tracing::info!(%peer, listener = %self.kind, error = %e, "refused: TLS handshake failed");
                        return None;
                    }
                };
                let device = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(crate::tls::device_of);
                if self.kind == ListenerKind::Tls {
                    Transport::layered(Box::new(tls), device)
                } else {
                    let ws = self.websocket(tls, peer).await?;
                    Transport::layered(Box::new(ws), device)
                }
            }
        };
        Some((transport, peer))
    }

    async fn websocket<S>(
        &self,
        stream: S,
        peer: SocketAddr,
    ) -> Option<crate::websocket::WebSocketIo<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        match crate::websocket::accept(stream, self.max_packet_size).await {
            Ok(ws) => Some(ws),
            Err(reason) => {
                tracing::info!(%peer, listener = %self.kind, %reason, "refused: WebSocket upgrade");
                None
            }
        }
    }
}

/// Reads a PROXY v2 header and not one byte more: what follows belongs to
/// TLS or MQTT. Something that is not a header is refused from its first bytes.
async fn read_proxy_header(
    stream: &mut TcpStream,
) -> std::result::Result<crate::proxy::Header, String> {
    // Every header is at least 16 bytes: reading up to 16 never over-reads.
    let mut buf = vec![0u8; 16];
    let mut have = 0;
    loop {
        match crate::proxy::parse(&buf[..have]) {
            Ok((header, _)) => return Ok(header),
            Err(crate::proxy::Error::Incomplete) => {}
            Err(e) => return Err(e.to_string()),
        }
        if have >= 16 {
            // The fixed part is complete: now the header's length is known.
            let length = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
            buf.resize(length, 0);
        }
        match stream.read(&mut buf[have..]).await {
            Ok(0) => return Err("closed before the header ended".into()),
            Ok(n) => have += n,
            Err(e) => return Err(e.to_string()),
        }
    }
}
