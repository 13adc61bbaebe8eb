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
