//! A tiny blocking HTTP/1.1 client for the set-up steps (making the cookie pool, the read-only
//! check). The timed load comes from wrk.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

/// What a response said that the benchmark looks at.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Every `Set-Cookie` value.
    pub set_cookies: Vec<String>,
    /// The body as text.
    pub body: String,
}

impl Reply {
    /// The first cookie the response sets, as a `name=value` pair for a `Cookie` header.
    pub fn cookie_pair(&self) -> Option<String> {
        let first = self.set_cookies.first()?;
        Some(
            first
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned(),
        )
    }
}

/// `GET path` on the loopback port, with an optional `Cookie` header.
pub fn get(port: u16, path: &str, cookie: Option<&str>) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{cookie}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse(&raw)
}

/// A whole HTTP/1.1 response as read from a `Connection: close` stream.
pub fn parse(raw: &[u8]) -> std::io::Result<Reply> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
    let set_cookies = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.trim().to_owned())
        .collect();
    Ok(Reply {
        status,
        set_cookies,
        body: body.to_owned(),
    })
}
