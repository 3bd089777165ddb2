//! The byte stream under a connection: plain TCP, or a layered stream (TLS,
//! WebSocket, or WebSocket over TLS).
//!
//! Plain TCP is read and written through readiness calls on `&TcpStream`,
//! so an idle connection holds neither buffers nor a split of its socket
//! (idle memory is most of what a device costs). A layered stream must be
//! polled through `&mut` and is split once into a read and a write half,
//! so that a connection's one `select!` loop can read and write at the same
//! time. Both are cancel-safe: a read or write that does not complete has
//! consumed nothing.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

/// What a layered stream is made of: anything that reads and writes bytes.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Io for T {}

pub(crate) type BoxedIo = Box<dyn Io>;

pub(crate) enum Transport {
    Tcp(TcpStream),
    /// Boxed: the layers are large, and a plain connection should not pay for them.
    Layered(Box<Layered>),
}

pub(crate) struct Layered {
    read: ReadHalf<BoxedIo>,
    write: WriteHalf<BoxedIo>,
    /// Bytes were handed to the stream that it may still buffer (TLS
    /// records, WebSocket frames): they go out with the next flush.
    unflushed: bool,
    /// The device named by a verified TLS client certificate.
    cert_device: Option<String>,
}

/// The reading side of a transport, borrowed for one read.
pub(crate) enum Reader<'a> {
    Tcp(&'a TcpStream),
    Layered(&'a mut ReadHalf<BoxedIo>),
}

/// The writing side of a transport, borrowed for one write.
pub(crate) enum Writer<'a> {
    Tcp(&'a TcpStream),
    Layered(&'a mut WriteHalf<BoxedIo>, &'a mut bool),
}

impl Transport {
    pub(crate) fn layered(io: BoxedIo, cert_device: Option<String>) -> Transport {
        let (read, write) = tokio::io::split(io);
        Transport::Layered(Box::new(Layered {
            read,
            write,
            unflushed: false,
            cert_device,
        }))
    }

    /// Both sides at once, for a loop that reads and writes concurrently.
    pub(crate) fn halves(&mut self) -> (Reader<'_>, Writer<'_>) {
        match self {
            Transport::Tcp(stream) => (Reader::Tcp(stream), Writer::Tcp(stream)),
            Transport::Layered(l) => (
                Reader::Layered(&mut l.read),
                Writer::Layered(&mut l.write, &mut l.unflushed),
            ),
        }
    }

    pub(crate) fn reader(&mut self) -> Reader<'_> {
        self.halves().0
    }

    pub(crate) fn writer(&mut self) -> Writer<'_> {
        self.halves().1
    }

    /// Plain TCP: the connection may wait for readability without a buffer.
    /// A layered stream cannot tell readability without reading (a TLS
    /// record may carry no application data), so it is always read into a buffer.
    pub(crate) fn is_plain(&self) -> bool {
        matches!(self, Transport::Tcp(_))
    }

    /// Resolves once plain TCP has bytes to read (or has ended); never for
    /// a layered stream.
    ///
    /// Peeks rather than `readable()`: tokio keeps a socket "readable" after
    /// a read that drained it (`try_read_buf` clears the readiness only on
    /// `WouldBlock`), so `readable()` resolved at once for every connection
    /// that had read anything, CONNECT included. The idle connection then
    /// made room for a read that found nothing and parked in the full loop
    /// holding that buffer and the loop's boxed future: 3.2 KB per idle
    /// connection (docs/benchmarks.md, scenario (d)). A peek that finds
    /// nothing clears the readiness and waits. `poll_peek` keeps the future
    /// one pointer (the idle task's size is the figure), its byte is on the
    /// stack of each poll. The read path keeps `try_read_buf`, so a busy
    /// connection still reads again without waiting for the next readiness event.
    pub(crate) async fn readable(&self) -> std::io::Result<()> {
        match self {
            Transport::Tcp(stream) => {
                std::future::poll_fn(|cx| {
                    let mut byte = [0u8; 1];
                    stream
                        .poll_peek(cx, &mut tokio::io::ReadBuf::new(&mut byte))
                        .map_ok(drop)
                })
                .await
            }
            Transport::Layered(_) => std::future::pending().await,
        }
    }

    /// True while written bytes may still sit in the stream's own buffer.
    pub(crate) fn has_unflushed(&self) -> bool {
        matches!(self, Transport::Layered(l) if l.unflushed)
    }

    /// The device named by a verified TLS client certificate, if any.
    pub(crate) fn cert_device(&self) -> Option<&str> {
        match self {
            Transport::Tcp(_) => None,
            Transport::Layered(l) => l.cert_device.as_deref(),
        }
    }

    /// Closes the write direction: TCP FIN, TLS close_notify, WebSocket Close.
    pub(crate) async fn shutdown(&mut self) {
        let _ = match self {
            Transport::Tcp(stream) => stream.shutdown().await,
            Transport::Layered(l) => l.write.shutdown().await,
        };
    }
}

impl Reader<'_> {
    /// Reads what is there into `buf`, with room for `chunk` bytes made
    /// only once plain TCP is readable, so an idle connection holds no read
    /// buffer. Returns 0 at end of stream.
    pub(crate) async fn read_some(
        self,
        buf: &mut BytesMut,
        chunk: usize,
    ) -> std::io::Result<usize> {
        match self {
            Reader::Tcp(stream) => loop {
                stream.readable().await?;
                if buf.capacity() - buf.len() < chunk / 2 {
                    buf.reserve(chunk);
                }
                match stream.try_read_buf(buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    result => return result,
                }
            },
            Reader::Layered(read) => {
                if buf.capacity() - buf.len() < chunk / 2 {
                    buf.reserve(chunk);
                }
                read.read_buf(buf).await
            }
        }
    }
}

impl Writer<'_> {
    /// Writes some of `buf`, or with an empty `buf` flushes what a layered
    /// stream still buffers (then returns 0).
    pub(crate) async fn write_some(self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Writer::Tcp(stream) => loop {
                stream.writable().await?;
                match stream.try_write(buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    result => return result,
                }
            },
            Writer::Layered(write, unflushed) => {
                if buf.is_empty() {
                    write.flush().await?;
                    *unflushed = false;
                    return Ok(0);
                }
                let n = write.write(buf).await?;
                *unflushed = true;
                Ok(n)
            }
        }
    }

    /// Writes all of `buf` and flushes it.
    pub(crate) async fn write_all(self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Writer::Tcp(stream) => {
                let mut rest = buf;
                while !rest.is_empty() {
                    let n = Writer::Tcp(stream).write_some(rest).await?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::WriteZero.into());
                    }
                    rest = &rest[n..];
                }
                Ok(())
            }
            Writer::Layered(write, unflushed) => {
                write.write_all(buf).await?;
                write.flush().await?;
                *unflushed = false;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::Poll;

    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Regression (scenario (d) of docs/benchmarks.md): after a read that
    /// drained the socket, `readable()` still resolved at once, so every
    /// idle connection left its idle wait and parked in the full loop with
    /// a 2 KiB read buffer.
    #[tokio::test]
    async fn drained_socket_is_not_readable_until_new_bytes() -> std::io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let mut client = TcpStream::connect(listener.local_addr()?).await?;
        let (server, _) = listener.accept().await?;
        let mut transport = Transport::Tcp(server);
        let mut buf = BytesMut::new();

        client.write_all(b"0123456789").await?;
        let n = transport.reader().read_some(&mut buf, 2048).await?;
        assert_eq!(&buf[..n], b"0123456789");

        {
            let mut readable = std::pin::pin!(transport.readable());
            let polled = std::future::poll_fn(|cx| Poll::Ready(readable.as_mut().poll(cx))).await;
            assert!(polled.is_pending(), "a drained socket reported readable");
            client.write_all(b"x").await?;
            readable.await?;
        }
        buf.clear();
        assert_eq!(transport.reader().read_some(&mut buf, 2048).await?, 1);
        assert_eq!(&buf[..], b"x");
        Ok(())
    }
}
