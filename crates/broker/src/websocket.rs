//! MQTT over WebSocket (MQTT 5.0 §6, 3.1.1 §6): the HTTP upgrade on path
//! `/mqtt` with subprotocol `mqtt`, and the MQTT byte stream carried in
//! binary messages. Message boundaries mean nothing to MQTT: a packet may
//! span messages and a message may hold several packets.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The only path served.
pub(crate) const PATH: &str = "/mqtt";
/// Subprotocols accepted: `mqtt` (the standard name) and `mqttv3.1`, which
/// older 3.1.1 libraries still send.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];
/// Read buffer per connection: tungstenite's 128 KiB default is too much
/// for many mostly idle devices.
const READ_BUFFER: usize = 16 * 1024;

/// Performs the upgrade; a wrong path, a missing subprotocol or a request
/// that is not a WebSocket upgrade is answered with an HTTP error and
/// returned as `Err` with the reason.
// The callback's error type is tungstenite's HTTP response, large by nature.
#[allow(clippy::result_large_err)]
pub(crate) async fn accept<S>(stream: S, max_packet_size: usize) -> Result<WebSocketIo<S>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut refusal = None;
    let callback = |request: &Request, mut response: Response| {
        let refuse = |status: StatusCode, reason: String| {
            let mut error = ErrorResponse::new(Some(reason));
            *error.status_mut() = status;
            error
        };
        if request.uri().path() != PATH {
            refusal = Some(format!("path {} is not {PATH}", request.uri().path()));
            return Err(refuse(
                StatusCode::NOT_FOUND,
                format!("MQTT is served on {PATH}\n"),
            ));
        }
        let offered = request
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .find(|p| SUBPROTOCOLS.contains(p));
        let Some(protocol) = offered else {
            refusal = Some("no WebSocket subprotocol mqtt offered".to_owned());
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "the WebSocket subprotocol must be mqtt\n".to_owned(),
            ));
        };
        response.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(protocol).expect("a listed subprotocol is a valid header"),
        );
        Ok(response)
    };
    // A message may hold a whole packet plus the start of the next.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(2 * max_packet_size))
        .max_frame_size(Some(2 * max_packet_size));
    match tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await {
        Ok(ws) => Ok(WebSocketIo {
            ws,
            pending: Bytes::new(),
        }),
        Err(e) => Err(refusal.unwrap_or_else(|| format!("WebSocket handshake: {e}"))),
    }
}

/// A WebSocket connection seen as the byte stream MQTT expects.
pub(crate) struct WebSocketIo<S> {
    ws: WebSocketStream<S>,
    /// The rest of the binary message being read.
    pending: Bytes,
}

fn to_io(e: tokio_tungstenite::tungstenite::Error) -> io::Error {
    io::Error::other(e)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WebSocketIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(data))) => self.pending = data,
                // 5.0 §6: "If a Client sends data in a text frame, the Server
                // MUST close the connection."
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "MQTT over WebSocket takes binary messages only",
                    )))
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WebSocketIo<S> {
    /// One binary message per write; consumes nothing unless it returns `Ready`.
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(to_io)?;
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(to_io)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(to_io)
    }
}
