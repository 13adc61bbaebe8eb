//! The plugin's view of HTTP: a GET in, status, headers and body out.
//!
//! The component implements [`Transport`] over `wasi:http`; tests and the
//! native benchmark driver implement it over anything else.

use std::time::Duration;

use url::Url;

/// A GET request to a TAXII endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The full URL, query included.
    pub url: Url,
    /// Request headers (names in lower case).
    pub headers: Vec<(String, String)>,
}

/// A response, read whole (one page at most).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// Response headers as received; names compared case-insensitively.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Where the answer came from, when redirects led away from the URL
    /// asked (see [`FollowRedirects`]).
    pub redirected_to: Option<Url>,
}

impl Response {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The host refused to send it (its egress policy).
    Denied(String),
    /// No connection or no timely answer; asking later may work.
    Unreachable(String),
    /// The body was larger than the plugin accepts.
    TooLarge(String),
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Denied(m) => write!(f, "request refused by the host: {m}"),
            Self::Unreachable(m) => write!(f, "server unreachable: {m}"),
            Self::TooLarge(m) => write!(f, "response too large: {m}"),
            Self::Other(m) => f.write_str(m),
        }
    }
}

/// Sends GET requests.
pub trait Transport {
    /// Sends one GET and reads the whole response.
    fn get(&mut self, request: &Request) -> Result<Response, TransportError>;

    /// Waits before asking again after a transient failure. Test
    /// transports need not wait.
    fn pause(&mut self, duration: Duration) {
        let _ = duration;
    }
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn get(&mut self, request: &Request) -> Result<Response, TransportError> {
        (**self).get(request)
    }

    fn pause(&mut self, duration: Duration) {
        (**self).pause(duration);
    }
}

/// Redirects followed for one request at most.
pub const MAX_REDIRECTS: usize = 5;

/// Follows HTTP redirects (301, 302, 303, 307, 308) for another transport.
///
/// Every hop is a request of its own, so the host judges each against its
/// egress policy: a redirect to another origin is refused unless the
/// operator allowed that origin, and it never carries the feed's
/// credentials (the host adds those for the feed's origin only).
pub struct FollowRedirects<T>(pub T);

impl<T: Transport> Transport for FollowRedirects<T> {
    fn get(&mut self, request: &Request) -> Result<Response, TransportError> {
        let mut hop = request.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut response = self.0.get(&hop).map_err(|e| redirected(e, request, &hop))?;
            let location = response.header("location").map(str::trim);
            let (true, Some(location)) = (is_redirect(response.status), location) else {
                if hop.url != request.url {
                    response.redirected_to = Some(hop.url);
                }
                return Ok(response);
            };
            let next = hop.url.join(location).map_err(|e| {
                let message = format!("{} redirected to {location:?}, not a URL ({e})", hop.url);
                TransportError::Other(message)
            })?;
            if !matches!(next.scheme(), "http" | "https") {
                let message = format!("{} redirected to {next}, which is not HTTP", hop.url);
                return Err(TransportError::Other(message));
            }
            hop.url = next;
        }
        Err(TransportError::Other(format!(
            "{} redirected more than {MAX_REDIRECTS} times",
            request.url
        )))
    }

    fn pause(&mut self, duration: Duration) {
        self.0.pause(duration);
    }
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// Says where a failed hop came from, when it was not the first.
fn redirected(error: TransportError, first: &Request, hop: &Request) -> TransportError {
    if hop.url == first.url {
        return error;
    }
    let from = format!("{} redirected to {}", first.url, hop.url);
    match error {
        TransportError::Denied(m) => TransportError::Denied(format!("{from}: {m}")),
        TransportError::Unreachable(m) => TransportError::Unreachable(format!("{from}: {m}")),
        TransportError::TooLarge(m) => TransportError::TooLarge(format!("{from}: {m}")),
        TransportError::Other(m) => TransportError::Other(format!("{from}: {m}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers by URL; records every request.
    struct Redirecting(Vec<(&'static str, u16, Option<&'static str>)>, Vec<String>);

    impl Transport for Redirecting {
        fn get(&mut self, request: &Request) -> Result<Response, TransportError> {
            self.1.push(request.url.to_string());
            let (_, status, location) = self
                .0
                .iter()
                .find(|(url, ..)| *url == request.url.as_str())
                .ok_or_else(|| TransportError::Denied(format!("{} is not allowed", request.url)))?;
            let headers = location
                .map(|l| vec![("Location".to_string(), l.to_string())])
                .unwrap_or_default();
            Ok(Response {
                status: *status,
                headers,
                ..Response::default()
            })
        }
    }

    fn get(url: &str) -> Request {
        Request {
            url: Url::parse(url).unwrap(),
            headers: vec![("accept".into(), "x".into())],
        }
    }

    #[test]
    fn follows_relative_and_absolute_redirects() {
        let server = Redirecting(
            vec![
                (
                    "http://h/api/collections/c",
                    301,
                    Some("/api/collections/c/"),
                ),
                (
                    "http://h/api/collections/c/",
                    307,
                    Some("https://h/api/collections/c/"),
                ),
                ("https://h/api/collections/c/", 200, None),
            ],
            Vec::new(),
        );
        let mut transport = FollowRedirects(server);
        let response = transport.get(&get("http://h/api/collections/c")).unwrap();
        assert_eq!(response.status, 200);
        let moved = response.redirected_to.map(String::from);
        assert_eq!(moved.as_deref(), Some("https://h/api/collections/c/"));
        assert_eq!(transport.0.1.len(), 3);
    }

    #[test]
    fn a_refused_hop_names_the_redirect() {
        let server = Redirecting(vec![("http://h/c/", 302, Some("http://evil/c/"))], vec![]);
        let error = FollowRedirects(server)
            .get(&get("http://h/c/"))
            .unwrap_err();
        let TransportError::Denied(message) = error else {
            panic!("{error:?}")
        };
        assert!(
            message.contains("http://h/c/ redirected to http://evil/c/"),
            "{message}"
        );
    }

    #[test]
    fn stops_a_redirect_loop() {
        let server = Redirecting(vec![("http://h/a", 302, Some("/a"))], vec![]);
        let mut transport = FollowRedirects(server);
        let error = transport.get(&get("http://h/a")).unwrap_err();
        assert!(error.to_string().contains("more than 5"), "{error}");
        assert_eq!(transport.0.1.len(), MAX_REDIRECTS + 1);
    }

    #[test]
    fn a_redirect_without_location_is_the_answer() {
        let server = Redirecting(vec![("http://h/a", 302, None)], vec![]);
        let response = FollowRedirects(server).get(&get("http://h/a")).unwrap();
        assert_eq!(response.status, 302);
    }
}
