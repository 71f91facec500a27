//! One HTTP/1.1 exchange written by hand on a kept-alive connection: connection-oriented
//! authentication (NTLM, Negotiate) is tested on one TCP connection, which HTTP client libraries
//! do not promise to keep.

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

/// What came back.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Every `WWW-Authenticate` value, in order.
    pub challenges: Vec<String>,
    /// The body (`Content-Length` or chunked).
    pub body: String,
}

/// POSTs `body` (`text/xml`) to `path` on `stream`, with `Authorization: <authorization>` when
/// given, and reads the whole answer, leaving the connection open for the next exchange.
pub async fn post(
    stream: &mut BufReader<TcpStream>,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> std::io::Result<Reply> {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: text/xml; charset=utf-8\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.get_mut().write_all(request.as_bytes()).await?;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut status_line = String::new();
    stream.read_line(&mut status_line).await?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("not a status line: {status_line:?}")))?;
    let (mut challenges, mut length, mut chunked) = (Vec::new(), 0usize, false);
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(&format!("not a header: {line:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("www-authenticate") {
            challenges.push(value.to_owned());
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().map_err(|_| bad("Content-Length"))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            stream.read_line(&mut size).await?;
            let size = usize::from_str_radix(size.trim(), 16).map_err(|_| bad("chunk size"))?;
            let mut chunk = vec![0; size + 2];
            stream.read_exact(&mut chunk).await?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        stream.read_exact(&mut body).await?;
    }
    Ok(Reply {
        status,
        challenges,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
