//! Sending a plugin's request on its behalf: resolve the host, refuse the
//! addresses the run may not reach, connect, TLS, HTTP/1.1, with timeouts
//! and a cap on the response body.
//!
//! The addresses are checked after resolution and the connection is made
//! to the checked address itself, so a name that resolves differently the
//! second time cannot lead a run to a private address.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http::{Request, Response, Uri};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use crate::limits::{LimitHit, RunWatch};

/// Default time to connect (and to finish TLS).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time from sending a request to its first response byte.
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default time between two reads of a response body.
pub const DEFAULT_BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(60);

/// The future that drives a connection after its response has arrived.
pub type ConnectionFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// How one run's requests are sent.
pub struct Sender {
    /// TLS settings for `https://`.
    pub tls: Arc<rustls::ClientConfig>,
    /// Whether private, loopback and link-local addresses may be reached.
    pub allow_private: bool,
    /// The largest response body accepted.
    pub response_bytes: u64,
    /// Timeouts, each capped by the plugin's own request options.
    pub timeouts: Timeouts,
    /// Where denials and limit hits are recorded.
    pub watch: Arc<RunWatch>,
}

/// Connect, first-byte and between-bytes timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To connect and finish TLS.
    pub connect: Duration,
    /// To the first response byte.
    pub first_byte: Duration,
    /// Between response body reads.
    pub between_bytes: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: DEFAULT_CONNECT_TIMEOUT,
            first_byte: DEFAULT_FIRST_BYTE_TIMEOUT,
            between_bytes: DEFAULT_BETWEEN_BYTES_TIMEOUT,
        }
    }
}

impl Timeouts {
    /// The shorter of the host's timeouts and the plugin's.
    fn capped_by(self, options: Option<RequestOptions>) -> Self {
        let cap = |ours: Duration, theirs: Option<Duration>| {
            theirs
                .filter(|t| !t.is_zero())
                .map_or(ours, |t| t.min(ours))
        };
        let options = options.unwrap_or_default();
        Self {
            connect: cap(self.connect, options.connect_timeout),
            first_byte: cap(self.first_byte, options.first_byte_timeout),
            between_bytes: cap(self.between_bytes, options.between_bytes_timeout),
        }
    }
}

/// True for an address on the public internet: not loopback, private,
/// link-local, shared (carrier NAT), unspecified, broadcast, multicast or
/// documentation.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [first, second, ..] = a.octets();
            let shared = first == 100 && (64..128).contains(&second);
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || a.is_documentation()
                || shared
                || first == 0)
        }
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                !(a.is_loopback()
                    || a.is_unspecified()
                    || a.is_multicast()
                    || a.is_unique_local()
                    || a.is_unicast_link_local())
            }
        },
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

impl Sender {
    /// Sends a request and returns its response, whose body is guarded by
    /// the between-bytes timeout and the size cap.
    pub async fn send(
        &self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<(Response<WasiBody>, ConnectionFuture), Error> {
        let result = self.exchange(request, options).await;
        if let Err(Error::Hyper(e)) = &result
            && let Some(detail) = tls_cause(e)
        {
            self.watch.tls_failed(detail);
        }
        result
    }

    async fn exchange(
        &self,
        mut request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<(Response<WasiBody>, ConnectionFuture), Error> {
        let timeouts = self.timeouts.capped_by(options);
        let uri = request.uri().clone();
        let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let https = uri.scheme() == Some(&Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });

        let addresses = self.resolve(&host, port, timeouts.connect).await?;
        let tcp = connect(&addresses, timeouts.connect).await?;
        let io: Box<dyn Io> = if https {
            Box::new(self.tls_handshake(&host, tcp, timeouts.connect).await?)
        } else {
            Box::new(tcp)
        };
        let (mut client, connection) = tokio::time::timeout(
            timeouts.connect,
            hyper::client::conn::http1::handshake(TokioIo::new(io)),
        )
        .await
        .map_err(|_| Error::ConnectionTimeout)??;

        *request.uri_mut() = path_only(&uri)?;
        let mut connection = Box::pin(connection);
        let mut connection_done = false;
        let mut sent = Box::pin(tokio::time::timeout(
            timeouts.first_byte,
            client.send_request(request),
        ));
        let response = loop {
            tokio::select! {
                answer = &mut sent => break answer,
                done = &mut connection, if !connection_done => {
                    connection_done = true;
                    done?;
                }
            }
        };
        let response = response.map_err(|_| Error::ConnectionReadTimeout)??;
        if let Some(length) = content_length(&response)
            && length > self.response_bytes
        {
            self.watch.hit(LimitHit::ResponseSize(self.response_bytes));
            return Err(Error::HttpResponseBodySize(Some(length)));
        }
        let watch = self.watch.clone();
        let limit = self.response_bytes;
        let response = response.map(|incoming| {
            GuardedBody::new(incoming, timeouts.between_bytes, limit, watch).boxed_unsync()
        });
        let drive: ConnectionFuture = Box::new(async move {
            if !connection_done {
                connection.await?;
            }
            Ok(())
        });
        Ok((response, drive))
    }

    /// The host's addresses that this run may reach.
    async fn resolve(
        &self,
        host: &str,
        port: u16,
        limit: Duration,
    ) -> Result<Vec<SocketAddr>, Error> {
        let all: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(limit, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| Error::DnsTimeout)?
                .map_err(|e| Error::DnsError {
                    rcode: Some(e.to_string()),
                    info_code: None,
                })?
                .collect(),
        };
        let allowed: Vec<SocketAddr> = all
            .iter()
            .copied()
            .filter(|a| self.allow_private || is_public(a.ip()))
            .collect();
        if allowed.is_empty() && !all.is_empty() {
            self.watch.deny_private();
            tracing::warn!(
                host,
                "request denied: {host} resolves only to private, loopback or link-local \
                 addresses, which this feed may not reach (allow them with --allow-private)"
            );
            return Err(Error::DestinationIpProhibited);
        }
        if allowed.is_empty() {
            return Err(Error::DestinationNotFound);
        }
        Ok(allowed)
    }

    async fn tls_handshake(
        &self,
        host: &str,
        tcp: TcpStream,
        limit: Duration,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
            Err(_) => rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|_| Error::HttpRequestUriInvalid)?,
        };
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let stream = tokio::time::timeout(limit, connector.connect(name, tcp))
            .await
            .map_err(|_| Error::ConnectionTimeout)?
            .map_err(|e| {
                tracing::warn!(host, error = %e, "TLS handshake failed");
                self.watch
                    .tls_failed(format!("the TLS handshake with {host} failed: {e}"));
                match e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                {
                    Some(rustls::Error::InvalidCertificate(_)) => Error::TlsCertificateError,
                    Some(rustls::Error::AlertReceived(alert)) => Error::TlsAlertReceived {
                        alert_id: Some(u8::from(*alert)),
                        alert_message: Some(format!("{alert:?}")),
                    },
                    _ => Error::Tls(e),
                }
            })?;
        Ok(stream)
    }
}

/// The TLS error somewhere in an error's causes, described.
fn tls_cause(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls {
            return Some(format!("the TLS connection failed: {tls}"));
        }
        cause = e.source();
    }
    None
}

async fn connect(addresses: &[SocketAddr], limit: Duration) -> Result<TcpStream, Error> {
    let mut last = Error::ConnectionRefused;
    for address in addresses {
        match tokio::time::timeout(limit, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = Error::Connect(e),
            Err(_) => last = Error::ConnectionTimeout,
        }
    }
    Err(last)
}

/// The request target as sent to an origin server: path and query only.
fn path_only(uri: &Uri) -> Result<Uri, Error> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    path.parse().map_err(|_| Error::HttpRequestUriInvalid)
}

fn content_length<B>(response: &Response<B>) -> Option<u64> {
    response
        .headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A response body with a between-bytes timeout and a size cap.
struct GuardedBody {
    inner: hyper::body::Incoming,
    idle: Pin<Box<tokio::time::Sleep>>,
    between_bytes: Duration,
    remaining: u64,
    limit: u64,
    watch: Arc<RunWatch>,
}

impl GuardedBody {
    fn new(
        inner: hyper::body::Incoming,
        between_bytes: Duration,
        limit: u64,
        watch: Arc<RunWatch>,
    ) -> Self {
        Self {
            inner,
            idle: Box::pin(tokio::time::sleep(between_bytes)),
            between_bytes,
            remaining: limit,
            limit,
            watch,
        }
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let size = frame.data_ref().map_or(0, |d| d.len() as u64);
                if size > self.remaining {
                    self.watch.hit(LimitHit::ResponseSize(self.limit));
                    return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(self.limit)))));
                }
                self.remaining -= size;
                let next = tokio::time::Instant::now() + self.between_bytes;
                self.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(detail) = tls_cause(&e) {
                    self.watch.tls_failed(detail);
                }
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "192.0.2.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn the_plugin_may_shorten_timeouts_but_not_lengthen_them() {
        let ours = Timeouts::default();
        let theirs = RequestOptions {
            connect_timeout: Some(Duration::from_secs(1)),
            first_byte_timeout: Some(Duration::from_secs(100_000)),
            between_bytes_timeout: None,
        };
        let both = ours.capped_by(Some(theirs));
        assert_eq!(both.connect, Duration::from_secs(1));
        assert_eq!(both.first_byte, ours.first_byte);
        assert_eq!(both.between_bytes, ours.between_bytes);
    }

    #[test]
    fn requests_go_out_with_the_path_only() {
        let uri: Uri = "http://h:8080/api/x/?a=1".parse().unwrap();
        assert_eq!(path_only(&uri).unwrap(), "/api/x/?a=1");
    }
}
