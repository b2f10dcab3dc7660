//! The HTTP side: ranged GETs against the hub with redirects followed by hand, bounded
//! retries, resume of a dropped range, and every response checked against what was asked.
//!
//! # Why `ureq`
//!
//! A blocking HTTP/1.1 client is all an audit needs (a few connections in threads), and
//! `ureq` is the maintained one without an async runtime: it brings TLS through `rustls`
//! with the `ring` provider and the bundled webpki root certificates, so the `weightkin`
//! binary needs neither system OpenSSL nor Python. Redirects are *not* left to it: the hub
//! answers a file request with a redirect to a CDN host, and the access token must not
//! follow it there. Following them here keeps that rule in one visible place
//! (`Client::send`): the `Authorization` header goes only to the configured endpoint's
//! own scheme, host and port.
//!
//! # Trust
//!
//! Responses are untrusted input. A `206` must carry a `Content-Range` that starts where
//! the request did, ends inside it, and names the file size known before; a
//! `Content-Length` must agree with it. Bodies are read in fixed-size chunks into the
//! caller's sink and never allocated from a header value; a small document (JSON) is read
//! up to a cap. A server that ignores `Range` and answers `200` with the whole file is
//! accepted with a [`Warning::RangeIgnored`]: the body is read from its start, the bytes
//! before the range are skipped, and the connection is dropped at the range's end.

use std::io::Read;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ureq::http::Uri;

use crate::env::Token;
use crate::{Error, Result};

/// Redirects followed before giving up (the hub uses one: resolve → CDN).
const MAX_REDIRECTS: usize = 10;
/// Bytes read from a response body per `read` call.
const READ_CHUNK: usize = 256 << 10;

/// Something the user should know that does not stop the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// A server answered a ranged request with the whole file (`200`): weightkin read the
    /// body from its start up to the range it needed, which costs time and traffic.
    RangeIgnored {
        /// The URL (without the token, which never is in one).
        url: String,
    },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::RangeIgnored { url } => write!(
                f,
                "{url}: the server ignored the byte range asked for and sent the whole file; \
                 reading it from the start up to the bytes needed"
            ),
        }
    }
}

/// Where warnings go (the CLI prints them on stderr).
pub type WarningSink = Arc<dyn Fn(&Warning) + Send + Sync>;

/// How often and how patiently a failed request is retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in a row without progress before giving up.
    pub attempts: u32,
    /// Wait before the first retry; doubled on each further one, up to [`Retry::max_wait`].
    pub first_wait: Duration,
    /// Longest wait between two attempts.
    pub max_wait: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            first_wait: Duration::from_millis(500),
            max_wait: Duration::from_secs(8),
        }
    }
}

/// A failed attempt: worth another try, or final.
enum Attempt {
    Retry(Box<dyn std::error::Error + Send + Sync>),
    Fatal(Error),
}

impl From<Error> for Attempt {
    fn from(e: Error) -> Attempt {
        Attempt::Fatal(e)
    }
}

/// The hub's HTTP client (cheap to clone; clones share connections).
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    /// Scheme, host and port of the endpoint: the only origin the token is sent to.
    origin: Origin,
    token: Option<Token>,
    retry: Retry,
    warned: Arc<AtomicBool>,
    warn: WarningSink,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

fn origin(uri: &Uri) -> Option<Origin> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let port = uri.port_u16().or(match scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    })?;
    Some(Origin {
        host: uri.host()?.to_ascii_lowercase(),
        scheme,
        port,
    })
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A response whose status was accepted, with the URL it finally came from.
struct Answer {
    response: ureq::http::Response<ureq::Body>,
    url: String,
}

impl Client {
    /// A client for the hub at `endpoint`, sending `token` to it alone.
    pub fn new(
        endpoint: &str,
        token: Option<Token>,
        retry: Retry,
        warn: WarningSink,
    ) -> Result<Client> {
        let bad = |problem: &str| Error::BadResponse {
            url: endpoint.to_owned(),
            problem: format!("HF_ENDPOINT is not a usable URL: {problem}"),
        };
        let uri: Uri = endpoint.parse().map_err(|_| bad("it does not parse"))?;
        let origin = origin(&uri).ok_or_else(|| bad("it needs http:// or https:// and a host"))?;
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .user_agent(concat!("weightkin/", env!("CARGO_PKG_VERSION")));
        if is_loopback(&origin.host) {
            // A local endpoint (tests, a mirror on this machine) is never reached via a proxy.
            config = config.proxy(None);
        }
        Ok(Client {
            agent: config.build().into(),
            origin,
            token,
            retry,
            warned: Arc::new(AtomicBool::new(false)),
            warn,
        })
    }

    /// Whether a server has ignored a `Range` header (later fetches then ask for one span
    /// per file instead of many).
    pub fn range_ignored(&self) -> bool {
        self.warned.load(Ordering::Relaxed)
    }

    /// Whether a token will be sent to the endpoint.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// GETs a small document (at most `cap` bytes), retrying transport failures.
    pub fn get_small(&self, url: &str, cap: u64) -> Result<Vec<u8>> {
        self.with_retries(url, |_| {
            let Answer { response, url } = self.send(url, None)?;
            let status = response.status().as_u16();
            if status != 200 {
                return Err(self.refusal(url, status));
            }
            let mut body = Vec::new();
            let mut reader = response
                .into_body()
                .into_reader()
                .take(cap.saturating_add(1));
            reader
                .read_to_end(&mut body)
                .map_err(|e| Attempt::Retry(Box::new(e)))?;
            if body.len() as u64 > cap {
                return Err(Attempt::Fatal(Error::BadResponse {
                    url,
                    problem: format!("the document is larger than {cap} bytes"),
                }));
            }
            Ok(body)
        })
    }

    /// GETs bytes `range` of the file at `url`, handing them to `sink(offset, bytes)` in
    /// order. A dropped connection is resumed from the first byte not yet delivered; a
    /// server that ignores `Range` is read from the start (with a warning). Returns the
    /// file's total size as the server gave it (`None` when it did not say). `size`, when
    /// known, is checked against every response.
    pub fn get_range(
        &self,
        url: &str,
        range: Range<u64>,
        size: Option<u64>,
        sink: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<Option<u64>> {
        let mut pos = range.start;
        let mut total = size;
        let mut failures = 0u32;
        loop {
            if pos >= range.end {
                return Ok(total);
            }
            let before = pos;
            match self.range_attempt(url, pos..range.end, &mut total, &mut pos, sink) {
                Ok(()) => failures = 0,
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(e)) => {
                    if pos > before {
                        failures = 0; // progress: this is a resume, not a failure in a row
                    }
                    failures += 1;
                    if failures >= self.retry.attempts {
                        return Err(Error::Transport {
                            url: url.to_owned(),
                            attempts: failures,
                            source: e,
                        });
                    }
                    std::thread::sleep(self.wait(failures));
                }
            }
        }
    }

    /// One request for `want`; advances `pos` past every byte delivered to `sink`.
    fn range_attempt(
        &self,
        url: &str,
        want: Range<u64>,
        total: &mut Option<u64>,
        pos: &mut u64,
        sink: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<(), Attempt> {
        let header = format!("bytes={}-{}", want.start, want.end - 1);
        let Answer { response, url } = self.send(url, Some(&header))?;
        let status = response.status().as_u16();
        let header_text = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let length = header_text("content-length");
        let bad = |problem: String| {
            Attempt::Fatal(Error::BadResponse {
                url: url.clone(),
                problem,
            })
        };
        let length = match length {
            Some(l) => Some(
                l.trim()
                    .parse::<u64>()
                    .map_err(|_| bad(format!("Content-Length `{l}` is not a number")))?,
            ),
            None => None,
        };
        let (skip, body_end) = match status {
            206 => {
                let text = header_text("content-range")
                    .ok_or_else(|| bad("a 206 response without Content-Range".to_owned()))?;
                let (start, end, whole) = parse_content_range(&text)
                    .ok_or_else(|| bad(format!("Content-Range `{text}` does not parse")))?;
                if start != want.start || end < start || end >= want.end {
                    return Err(bad(format!(
                        "Content-Range `{text}` is not inside the bytes asked for ({header})"
                    )));
                }
                check_total(total, whole).map_err(bad)?;
                if length.is_some_and(|l| Some(l) != (end - start).checked_add(1)) {
                    return Err(bad(format!(
                        "Content-Length does not match Content-Range `{text}`"
                    )));
                }
                (0, end + 1)
            }
            200 => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    (self.warn)(&Warning::RangeIgnored { url: url.clone() });
                }
                if let Some(l) = length {
                    check_total(total, Some(l)).map_err(bad)?;
                }
                if total.is_some_and(|t| t < want.end) {
                    return Err(bad(format!(
                        "the file has {} bytes, fewer than the range asked for ({header})",
                        total.unwrap_or(0)
                    )));
                }
                (want.start, want.end)
            }
            _ => return Err(self.refusal(url, status)),
        };
        let mut reader = response.into_body().into_reader();
        let mut buf = vec![0u8; READ_CHUNK];
        // Bytes of the body before the range (a server that ignored `Range`) are skipped.
        let mut skipped = 0u64;
        while skipped < skip {
            let n = usize::try_from((skip - skipped).min(READ_CHUNK as u64)).unwrap_or(READ_CHUNK);
            let got = read_some(&mut reader, &mut buf[..n])?;
            skipped += got as u64;
        }
        while *pos < body_end {
            let n = usize::try_from((body_end - *pos).min(READ_CHUNK as u64)).unwrap_or(READ_CHUNK);
            let got = read_some(&mut reader, &mut buf[..n])?;
            sink(*pos, &buf[..got])?;
            *pos += got as u64;
        }
        Ok(())
    }

    /// What a status other than the one expected means: no access (401, 403), no such thing
    /// (404), try again (408, 429, 5xx), or a final error.
    fn refusal(&self, url: String, status: u16) -> Attempt {
        match status {
            401 | 403 => Attempt::Fatal(Error::Unauthorized {
                url,
                status,
                with_token: self.has_token(),
            }),
            404 => Attempt::Fatal(Error::NotFound { url }),
            408 | 429 | 500..=599 => Attempt::Retry(format!("{url}: HTTP {status}").into()),
            _ => Attempt::Fatal(Error::Status { url, status }),
        }
    }

    /// Sends a GET, following redirects; the token goes only to the endpoint's origin.
    fn send(&self, url: &str, range: Option<&str>) -> Result<Answer, Attempt> {
        let mut url = url.to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let uri: Uri = url.parse().map_err(|_| {
                Attempt::Fatal(Error::BadResponse {
                    url: url.clone(),
                    problem: "not a valid URL".to_owned(),
                })
            })?;
            let mut request = self.agent.get(&url);
            if let Some(r) = range {
                request = request.header("Range", r);
            }
            if let Some(token) = &self.token {
                if origin(&uri).as_ref() == Some(&self.origin) {
                    request = request.header("Authorization", token.header());
                }
            }
            let response = request.call().map_err(|e| Attempt::Retry(Box::new(e)))?;
            let status = response.status().as_u16();
            if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                return Ok(Answer { response, url });
            }
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    Attempt::Fatal(Error::BadResponse {
                        url: url.clone(),
                        problem: format!("a {status} redirect without a Location"),
                    })
                })?;
            url = join(&uri, location);
        }
        Err(Attempt::Fatal(Error::BadResponse {
            url,
            problem: format!("more than {MAX_REDIRECTS} redirects"),
        }))
    }

    fn with_retries<T>(
        &self,
        url: &str,
        mut f: impl FnMut(u32) -> Result<T, Attempt>,
    ) -> Result<T> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match f(attempt) {
                Ok(v) => return Ok(v),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(e)) if attempt >= self.retry.attempts => {
                    return Err(Error::Transport {
                        url: url.to_owned(),
                        attempts: attempt,
                        source: e,
                    })
                }
                Err(Attempt::Retry(_)) => std::thread::sleep(self.wait(attempt)),
            }
        }
    }

    /// Exponential backoff: `first_wait × 2^(n-1)`, at most `max_wait`.
    fn wait(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.retry
            .first_wait
            .saturating_mul(factor)
            .min(self.retry.max_wait)
    }
}

/// Reads at least one byte; end of body before the range is done is a drop (retry).
fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize, Attempt> {
    loop {
        match reader.read(buf) {
            Ok(0) => {
                return Err(Attempt::Retry(
                    "the connection closed before the range was complete".into(),
                ))
            }
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Attempt::Retry(Box::new(e))),
        }
    }
}

/// Records the file size a response gives, refusing one that differs from the known size.
fn check_total(total: &mut Option<u64>, given: Option<u64>) -> Result<(), String> {
    match (*total, given) {
        (Some(t), Some(g)) if t != g => Err(format!(
            "the file is {g} bytes by this response, but {t} bytes before"
        )),
        (None, Some(g)) => {
            *total = Some(g);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`) → (start, end inclusive, total).
fn parse_content_range(text: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = text.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (start, end) = span.trim().split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start.trim().parse().ok()?, end.trim().parse().ok()?, total))
}

/// Resolves a `Location` against the URL it came from.
fn join(base: &Uri, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let scheme = base.scheme_str().unwrap_or("https");
    let authority = base.authority().map_or("", |a| a.as_str());
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = base.path();
    let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
    format!("{scheme}://{authority}{dir}{location}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses_and_refuses_garbage() {
        assert_eq!(
            parse_content_range("bytes 0-7/100"),
            Some((0, 7, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        for bad in [
            "",
            "bytes",
            "bytes 1-/3",
            "items 0-1/2",
            "bytes a-b/c",
            "bytes 0-1/-1",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn locations_join_like_a_browser() {
        let base: Uri = "http://h:1/a/b/c?x=1".parse().unwrap();
        assert_eq!(join(&base, "http://o:2/p"), "http://o:2/p");
        assert_eq!(join(&base, "/p?q"), "http://h:1/p?q");
        assert_eq!(join(&base, "//o/p"), "http://o/p");
        assert_eq!(join(&base, "d"), "http://h:1/a/b/d");
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let o = |u: &str| origin(&u.parse::<Uri>().unwrap());
        assert_eq!(o("https://HF.co/x"), o("https://hf.co:443/y"));
        assert_ne!(o("https://hf.co/x"), o("http://hf.co/x"));
        assert_ne!(o("http://127.0.0.1:1/"), o("http://127.0.0.1:2/"));
        assert!(is_loopback("127.0.0.1") && is_loopback("[::1]") && !is_loopback("hf.co"));
    }
}
