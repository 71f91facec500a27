//! Typed errors. No text here ever contains the caller's `Authorization` value: the only
//! values shown are status codes, the server's own error text, URLs from the settings, and
//! transport errors (which name the URL, never headers).

use std::path::PathBuf;
use std::time::Duration;

use ews_proto::mailbox::MailboxDecodeError;
use ews_proto::ResponseCode;

/// Why a mailbox operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    /// HTTP 401 from the mailbox server: the caller's credentials were refused (also when the
    /// header value cannot be sent at all, e.g. it holds a line break).
    #[error("the mailbox server refused the caller's credentials (HTTP 401)")]
    Unauthorized,
    /// The server's per-item error (`ResponseClass="Error"`) or SOAP fault, to pass through to
    /// the EWS client. A code outside the vendored schema's enumeration is reported as
    /// `ErrorInternalServerError`, with the server's code appended to the message.
    #[error("the mailbox server answered {}: {message}", code.as_str())]
    Item {
        /// The server's response code (e.g. `ErrorItemNotFound`).
        code: ResponseCode,
        /// The server's `MessageText` (or the fault's message).
        message: String,
    },
    /// The item has no attachment that can be played (see the crate docs for the rules).
    #[error("the item (class {item_class:?}) has no playable audio attachment among its {attachments} attachment(s)")]
    NoAudio {
        /// The item's `ItemClass` (empty when the server sent none).
        item_class: String,
        /// How many attachments the item has, of any kind.
        attachments: usize,
    },
    /// The attachment is larger than `max_attachment_bytes`.
    #[error("the attachment is larger than the limit of {limit} bytes{}", size.map(|s| format!(" ({s} bytes)")).unwrap_or_default())]
    TooLarge {
        /// `max_attachment_bytes`.
        limit: u64,
        /// The attachment's size when known (the server's `Size`, or the decoded content's);
        /// `None` when the download was cut off at the limit.
        size: Option<u64>,
    },
    /// The mailbox server could not be reached or did not answer usably.
    #[error("the mailbox server is unavailable: {0}")]
    Unavailable(#[source] Unavailable),
    /// HTTP 200 (or a 500 that decodes) with a body that is not a usable EWS answer.
    #[error("the mailbox server's answer is not a usable EWS response: {0}")]
    BadResponse(#[source] BadResponse),
    /// The client could not be built from its settings.
    #[error("cannot set up the mailbox client: {0}")]
    Setup(#[source] SetupError),
}

/// Why the mailbox server is unavailable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// No complete answer within the configured timeout.
    #[error("no answer within {timeout:?}")]
    Timeout {
        /// The configured timeout.
        timeout: Duration,
        /// The transport's error.
        #[source]
        source: reqwest::Error,
    },
    /// The connection could not be made: name resolution, refused, TLS handshake or
    /// certificate. The text includes the whole cause chain.
    #[error("cannot connect: {}", calls::error_chain(.0))]
    Connect(#[source] reqwest::Error),
    /// The connection failed while sending or receiving.
    #[error("the connection failed: {}", calls::error_chain(.0))]
    Transport(#[source] reqwest::Error),
    /// A redirect: an EWS POST is never redirected by a correct configuration, so it is not
    /// followed.
    #[error("HTTP {status} redirect{}; EWS requests are not redirected: set ews_url to the final address", location.as_deref().map(|l| format!(" to {l}")).unwrap_or_default())]
    Redirect {
        /// The status (301, 302, 307, …).
        status: u16,
        /// The `Location` header, if any.
        location: Option<String>,
    },
    /// A transport other than the shared pool (a connection the caller authenticated) failed.
    #[error("the connection failed: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Any other HTTP status (5xx, 403, 404, …), or a 500 that is not a SOAP fault.
    #[error("HTTP status {status}")]
    Status {
        /// The status.
        status: u16,
    },
}

/// Why an answer is not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BadResponse {
    /// Not a decodable EWS response of the operation.
    #[error("{0}")]
    Decode(#[source] MailboxDecodeError),
    /// The body is larger than any answer to the operation can be.
    #[error("the {operation} answer is larger than {limit} bytes")]
    TooLarge {
        /// The operation (`GetFolder`, `GetItem`).
        operation: &'static str,
        /// The body limit.
        limit: u64,
    },
    /// A response to another operation.
    #[error("expected {expected}, got {got}")]
    WrongOperation {
        /// The response element asked for.
        expected: &'static str,
        /// The response element received.
        got: &'static str,
    },
    /// A successful answer without what it must carry.
    #[error("{0}")]
    Missing(&'static str),
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// `ews_url` is not an `http`/`https` URL.
    #[error("ews_url {url:?} is not a usable URL: {reason}")]
    Url {
        /// The setting.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A zero timeout would fail every request.
    #[error("the mailbox timeout must be longer than zero")]
    ZeroTimeout,
    /// `ca_file` could not be read.
    #[error("cannot read ca_file {}: {source}", path.display())]
    ReadCaFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `ca_file` is not a usable PEM certificate bundle.
    #[error("ca_file {} is not a usable PEM certificate bundle: {}", path.display(), calls::error_chain(.source))]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: reqwest::Error,
    },
    /// `ca_file` holds no certificate.
    #[error("ca_file {} holds no PEM certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {}", calls::error_chain(.0))]
    Client(#[source] reqwest::Error),
}
