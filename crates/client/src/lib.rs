//! A typed async client for the three EWS "Play on Phone" operations, for openum or any EWS
//! server that implements them. It speaks the shared wire types of `openum-ews-proto`, so what it
//! sends is exactly what the server decodes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), openum_client::Error> {
//! use openum_client::{Auth, Client};
//!
//! let client = Client::new(
//!     "http://127.0.0.1:8080/EWS/Exchange.asmx",
//!     Auth::Basic { user: "alice".into(), password: "secret".into() },
//! )?;
//! let call = client.play_on_phone("AbrJd11T1k9Ft+uEv6pRi/4=", "+1 425 555 0100").await?;
//! let info = client.get_phone_call_information(&call).await?;
//! println!("{:?} {:?}", info.phone_call_state, info.connection_failure_cause);
//! client.disconnect_phone_call(&call).await?;
//! # Ok(()) }
//! ```
//!
//! An `https` endpoint is trusted through the system's root store and the webpki roots; an
//! on-premises Exchange with a private CA needs [`ClientOptions::ca_file`] (with
//! [`Client::with_options`]). Errors are classes, each keeping its cause chain: a bad URL or CA
//! file when the client is made ([`Error::InvalidUrl`], [`Error::CaFile`]); no HTTP answer
//! ([`Error::Transport`] with a [`TransportCause`]: connection refused, DNS failure, timeout,
//! certificate not trusted / for another name / expired, …); then what the server answered.

use std::path::PathBuf;
use std::time::Duration;

use ews_proto::{
    decode_response, encode_request, DisconnectPhoneCall, ExchangeVersion, Fault,
    GetPhoneCallInformation, ItemId, PhoneCallId, PhoneCallInformation, PlayOnPhone, Request,
    RequestEnvelope, RequestHeader, RequestServerVersion, Response, ResponseCode, ResponseDocument,
    ResponseMessage,
};

/// How to authenticate.
#[derive(Clone)]
pub enum Auth {
    /// HTTP Basic.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// `Authorization: Bearer` (an openum API token, or an OAuth token for Exchange).
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    /// Credentials are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { user, .. } => write!(f, "Basic({user}, <redacted>)"),
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// What went wrong, by class.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The HTTP client could not be set up (e.g. no TLS back end).
    #[error("cannot set up the HTTP client: {}", calls::error_chain(.0))]
    Setup(#[source] reqwest::Error),
    /// The endpoint URL is not an absolute `http://` or `https://` URL.
    #[error("invalid URL {url:?}: {problem}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        #[source]
        problem: UrlProblem,
    },
    /// The extra CA file (`ClientOptions::ca_file`) cannot be used.
    #[error("cannot use the CA file {}: {problem}", path.display())]
    CaFile {
        /// The file as given.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        problem: CaFileProblem,
    },
    /// No HTTP answer: the server could not be reached, did not complete the TLS handshake, or
    /// did not answer in time. `cause` is the class; the message adds the whole cause chain.
    #[error("cannot reach the EWS endpoint {url}: {} ({})", cause.describe(), calls::error_chain(source))]
    Transport {
        /// The endpoint.
        url: String,
        /// The class of the failure, read from the cause chain.
        cause: TransportCause,
        /// The HTTP client's error (its chain holds the OS, DNS or TLS error).
        #[source]
        source: reqwest::Error,
    },
    /// HTTP 401: the credentials were refused.
    #[error("the server refused the credentials (HTTP 401)")]
    Unauthorized,
    /// Any other unexpected HTTP status.
    #[error("unexpected HTTP status {0}")]
    Status(u16),
    /// A SOAP fault (HTTP 500): the request as a whole was refused.
    #[error("SOAP fault {}: {}", .0.code.as_str(), .0.message)]
    Fault(Box<Fault>),
    /// The operation failed (`ResponseClass="Error"`).
    #[error("{}: {message}", code.as_str())]
    Response {
        /// The response code (e.g. `ErrorInvalidPhoneCallId`).
        code: ResponseCode,
        /// The server's `MessageText`.
        message: String,
    },
    /// The response is not a well-formed EWS response document.
    #[error("cannot decode the response: {0}")]
    Decode(#[source] ews_proto::ResponseError),
    /// The response is for another operation than the one requested.
    #[error("cannot decode the response: expected {expected}, got {got}")]
    UnexpectedResponse {
        /// The response element the request calls for (e.g. `PlayOnPhoneResponse`).
        expected: &'static str,
        /// The response element that came back.
        got: &'static str,
    },
    /// A successful response lacks an element it must carry.
    #[error("cannot decode the response: {response} without {element}")]
    MissingElement {
        /// The response element (e.g. `PlayOnPhoneResponse`).
        response: &'static str,
        /// The missing element (e.g. `PhoneCallId`).
        element: &'static str,
    },
}

impl Error {
    /// The EWS response code, for faults and error responses.
    pub fn response_code(&self) -> Option<ResponseCode> {
        match self {
            Self::Fault(f) => Some(f.code),
            Self::Response { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The class of a transport failure.
    pub fn transport_cause(&self) -> Option<TransportCause> {
        match self {
            Self::Transport { cause, .. } => Some(*cause),
            _ => None,
        }
    }
}

/// What is wrong with an endpoint URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UrlProblem {
    /// It does not parse (e.g. no scheme: "relative URL without a base").
    #[error("{0} (give the whole URL, e.g. https://mail.example.com/EWS/Exchange.asmx)")]
    Parse(#[source] url::ParseError),
    /// Its scheme is neither `http` nor `https`.
    #[error("the scheme is {0:?}, not http or https")]
    Scheme(String),
}

/// What is wrong with a CA file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaFileProblem {
    /// It cannot be read.
    #[error("{0}")]
    Read(#[source] std::io::Error),
    /// It is not a PEM certificate bundle, or a certificate in it is not usable as a root.
    #[error("not a usable PEM certificate bundle: {}", calls::error_chain(.0))]
    Pem(#[source] reqwest::Error),
    /// It holds no PEM certificate at all.
    #[error("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate,
}

/// Why a request got no HTTP answer, as read from the cause chain.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum TransportCause {
    /// The server's certificate has expired (or is not valid yet).
    CertificateExpired,
    /// The server's certificate is not valid for the host name in the URL.
    CertificateHostnameMismatch,
    /// The server's certificate is signed by no trusted CA (unknown issuer): the system roots
    /// and the CA file do not vouch for it.
    CertificateNotTrusted,
    /// Another certificate problem (revoked, wrong usage, bad signature, …).
    CertificateRejected,
    /// Nothing listens on the port (connection refused).
    ConnectionRefused,
    /// The server closed or reset the connection without an answer.
    ConnectionReset,
    /// The host name does not resolve.
    DnsFailure,
    /// The server did not answer within the timeout.
    Timeout,
    /// The TLS handshake failed for another reason (e.g. the server does not speak TLS).
    Tls,
    /// Anything else (the message has the whole chain).
    Other,
}

impl TransportCause {
    /// A short description, e.g. "connection refused".
    pub fn describe(self) -> &'static str {
        match self {
            Self::CertificateExpired => "certificate expired or not yet valid",
            Self::CertificateHostnameMismatch => {
                "certificate not valid for this host name (hostname mismatch)"
            }
            Self::CertificateNotTrusted => "certificate not trusted (unknown issuer)",
            Self::CertificateRejected => "certificate rejected",
            Self::ConnectionRefused => "connection refused",
            Self::ConnectionReset => "connection closed without an answer",
            Self::DnsFailure => "DNS failure (the host name does not resolve)",
            Self::Timeout => "timed out",
            Self::Tls => "TLS handshake failed",
            Self::Other => "transport failure",
        }
    }

    /// Whether this is one of the certificate classes.
    pub fn is_certificate(self) -> bool {
        matches!(
            self,
            Self::CertificateExpired
                | Self::CertificateHostnameMismatch
                | Self::CertificateNotTrusted
                | Self::CertificateRejected
        )
    }

    /// Reads the class from `error`'s cause chain: a rustls certificate error, an OS error
    /// kind, hyper-util's "dns error", or reqwest's own timeout flag.
    fn of(error: &reqwest::Error) -> Self {
        let layers = layers(error);
        if let Some(tls) = layers
            .iter()
            .find_map(|l| l.downcast_ref::<rustls::Error>())
        {
            return Self::of_tls(tls);
        }
        if error.is_timeout() {
            return Self::Timeout;
        }
        for layer in &layers {
            if let Some(io) = layer.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => return Self::ConnectionRefused,
                    std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::BrokenPipe => return Self::ConnectionReset,
                    std::io::ErrorKind::TimedOut => return Self::Timeout,
                    _ => {}
                }
            }
            // hyper-util's connector and hyper name these steps so (their types are private).
            match layer.to_string().as_str() {
                "dns error" => return Self::DnsFailure,
                "connection closed before message completed" => return Self::ConnectionReset,
                _ => {}
            }
        }
        Self::Other
    }

    fn of_tls(error: &rustls::Error) -> Self {
        use rustls::CertificateError as C;
        match error {
            rustls::Error::InvalidCertificate(c) => match c {
                C::UnknownIssuer => Self::CertificateNotTrusted,
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    Self::CertificateHostnameMismatch
                }
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. } => Self::CertificateExpired,
                _ => Self::CertificateRejected,
            },
            _ => Self::Tls,
        }
    }
}

/// `error` and its causes, outermost first, with the payloads of `io::Error`s (whose `source`
/// skips them: rustls's errors travel inside two of them).
fn layers<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut layers = Vec::new();
    let mut next = Some(error);
    while let Some(layer) = next {
        layers.push(layer);
        let mut io = layer.downcast_ref::<std::io::Error>();
        while let Some(payload) = io.and_then(std::io::Error::get_ref) {
            let payload: &(dyn std::error::Error + 'static) = payload;
            layers.push(payload);
            io = payload.downcast_ref::<std::io::Error>();
        }
        next = layer.source();
    }
    layers
}

/// Settings of a [`Client`] beyond its URL and identity.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// A PEM file of extra trusted root certificates (a private CA), trusted besides the
    /// system's root store and the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// The longest one request may take, connection included; none by default.
    pub timeout: Option<Duration>,
}

/// An EWS client for one endpoint and identity.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    auth: Auth,
    version: ExchangeVersion,
}

impl Client {
    /// A client for `url` (e.g. `https://mail.example.com/EWS/Exchange.asmx`), trusting the
    /// system's root store (and the webpki roots).
    pub fn new(url: impl Into<String>, auth: Auth) -> Result<Self, Error> {
        Self::with_options(url, auth, &ClientOptions::default())
    }

    /// A client for `url` with `options` (an extra CA file, a timeout).
    pub fn with_options(
        url: impl Into<String>,
        auth: Auth,
        options: &ClientOptions,
    ) -> Result<Self, Error> {
        let url = url.into();
        match url::Url::parse(&url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            Ok(parsed) => {
                let scheme = parsed.scheme().to_owned();
                return Err(Error::InvalidUrl {
                    url,
                    problem: UrlProblem::Scheme(scheme),
                });
            }
            Err(e) => {
                return Err(Error::InvalidUrl {
                    url,
                    problem: UrlProblem::Parse(e),
                })
            }
        }
        let builder = || {
            let builder = reqwest::Client::builder()
                .use_rustls_tls()
                .user_agent(concat!("openum-client/", env!("CARGO_PKG_VERSION")));
            match options.timeout {
                Some(timeout) => builder.timeout(timeout),
                None => builder,
            }
        };
        let mut http = builder();
        if let Some(path) = &options.ca_file {
            let ca_error = |problem| Error::CaFile {
                path: path.clone(),
                problem,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(CaFileProblem::Read(e)))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ca_error(CaFileProblem::Pem(e)))?;
            if certificates.is_empty() {
                return Err(ca_error(CaFileProblem::NoCertificate));
            }
            // The certificates are parsed only when a client is built: build one with them
            // alone first, so that a bad certificate is blamed on the file.
            certificates
                .iter()
                .fold(builder().tls_built_in_root_certs(false), |b, c| {
                    b.add_root_certificate(c.clone())
                })
                .build()
                .map_err(|e| ca_error(CaFileProblem::Pem(e)))?;
            for certificate in certificates {
                http = http.add_root_certificate(certificate);
            }
        }
        let http = http.build().map_err(Error::Setup)?;
        Ok(Self {
            http,
            url,
            auth,
            version: ExchangeVersion::Exchange2010,
        })
    }

    /// The endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends `RequestServerVersion` `version` instead of `Exchange2010`.
    pub fn with_version(mut self, version: ExchangeVersion) -> Self {
        self.version = version;
        self
    }

    /// `PlayOnPhone`: dials `dial_string` and plays the item; returns the PhoneCallId.
    pub async fn play_on_phone(&self, item_id: &str, dial_string: &str) -> Result<String, Error> {
        let response = self
            .send(Request::PlayOnPhone(PlayOnPhone {
                item_id: ItemId {
                    id: item_id.to_owned(),
                    change_key: None,
                },
                dial_string: dial_string.to_owned(),
            }))
            .await?;
        match response {
            Response::PlayOnPhone(r) => {
                check(&r.message)?;
                r.phone_call_id.map(|p| p.id).ok_or(Error::MissingElement {
                    response: "PlayOnPhoneResponse",
                    element: "PhoneCallId",
                })
            }
            other => Err(wrong("PlayOnPhoneResponse", &other)),
        }
    }

    /// `GetPhoneCallInformation`.
    pub async fn get_phone_call_information(
        &self,
        phone_call_id: &str,
    ) -> Result<PhoneCallInformation, Error> {
        let response = self
            .send(Request::GetPhoneCallInformation(GetPhoneCallInformation {
                phone_call_id: PhoneCallId {
                    id: phone_call_id.to_owned(),
                },
            }))
            .await?;
        match response {
            Response::GetPhoneCallInformation(r) => {
                check(&r.message)?;
                r.phone_call_information.ok_or(Error::MissingElement {
                    response: "GetPhoneCallInformationResponse",
                    element: "PhoneCallInformation",
                })
            }
            other => Err(wrong("GetPhoneCallInformationResponse", &other)),
        }
    }

    /// `DisconnectPhoneCall`.
    pub async fn disconnect_phone_call(&self, phone_call_id: &str) -> Result<(), Error> {
        let response = self
            .send(Request::DisconnectPhoneCall(DisconnectPhoneCall {
                phone_call_id: PhoneCallId {
                    id: phone_call_id.to_owned(),
                },
            }))
            .await?;
        match response {
            Response::DisconnectPhoneCall(r) => check(&r.message),
            other => Err(wrong("DisconnectPhoneCallResponse", &other)),
        }
    }

    fn transport(&self, error: reqwest::Error) -> Error {
        Error::Transport {
            url: self.url.clone(),
            cause: TransportCause::of(&error),
            // The URL leads the message already.
            source: error.without_url(),
        }
    }

    async fn send(&self, body: Request) -> Result<Response, Error> {
        let envelope = RequestEnvelope {
            header: RequestHeader {
                request_server_version: Some(RequestServerVersion {
                    version: self.version,
                }),
                ..RequestHeader::default()
            },
            body,
        };
        let request = self
            .http
            .post(&self.url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("Accept", "text/xml")
            .body(encode_request(&envelope));
        let request = match &self.auth {
            Auth::Basic { user, password } => request.basic_auth(user, Some(password)),
            Auth::Bearer(token) => request.bearer_auth(token),
        };
        let reply = request.send().await.map_err(|e| self.transport(e))?;
        let status = reply.status().as_u16();
        if status == 401 {
            return Err(Error::Unauthorized);
        }
        if status != 200 && status != 500 {
            return Err(Error::Status(status));
        }
        let bytes = reply.bytes().await.map_err(|e| self.transport(e))?;
        match decode_response(&bytes).map_err(Error::Decode)? {
            ResponseDocument::Response(r) if status == 200 => Ok(r.body),
            ResponseDocument::Fault(f) => Err(Error::Fault(Box::new(f))),
            ResponseDocument::Response(_) => Err(Error::Status(status)),
        }
    }
}

fn check(message: &ResponseMessage) -> Result<(), Error> {
    if message.is_success() {
        return Ok(());
    }
    Err(Error::Response {
        code: message
            .response_code
            .unwrap_or(ResponseCode::ErrorInternalServerError),
        message: message.message_text.clone().unwrap_or_default(),
    })
}

fn wrong(expected: &'static str, got: &Response) -> Error {
    Error::UnexpectedResponse {
        expected,
        got: got.element_name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use ews_proto::{
        encode_response, DisconnectPhoneCallResponse, PlayOnPhoneResponse, ResponseEnvelope,
    };
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn bearer(url: &str) -> Client {
        Client::new(url, Auth::Bearer("t".into())).unwrap()
    }

    /// Answers every request with HTTP `status` and `body`; returns the endpoint's URL.
    async fn canned(status: u16, body: String) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/EWS/Exchange.asmx",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                // Read the whole request (head, then Content-Length bytes) before answering.
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let reply = format!(
                    "HTTP/1.1 {status} Canned\r\nContent-Type: text/xml; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        url
    }

    fn document(body: Response) -> String {
        encode_response(&ResponseEnvelope {
            server_version_info: None,
            body,
        })
    }

    #[tokio::test]
    async fn refused_connection_names_the_class_and_the_os_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/EWS/Exchange.asmx",
            listener.local_addr().unwrap()
        );
        drop(listener);
        let err = bearer(&url).disconnect_phone_call("x").await.unwrap_err();
        assert_eq!(
            err.transport_cause(),
            Some(TransportCause::ConnectionRefused),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "cannot reach the EWS endpoint {url}: connection refused (error sending request"
            )),
            "{text}"
        );
        assert!(text.contains("Connection refused (os error"), "{text}");
        let source = std::error::Error::source(&err).unwrap();
        assert!(source.downcast_ref::<reqwest::Error>().is_some());
    }

    #[test]
    fn malformed_url_is_refused_when_the_client_is_made_naming_the_parse_error() {
        let err = Client::new(
            "mail.example.com/EWS/Exchange.asmx",
            Auth::Bearer("t".into()),
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidUrl { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "invalid URL \"mail.example.com/EWS/Exchange.asmx\": relative URL without a base \
             (give the whole URL, e.g. https://mail.example.com/EWS/Exchange.asmx)"
        );
        let err = Client::new("ftp://mail.example.com/EWS", Auth::Bearer("t".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid URL \"ftp://mail.example.com/EWS\": the scheme is \"ftp\", not http or https"
        );
        let err = Client::new("http://[::1/EWS", Auth::Bearer("t".into())).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid URL \"http://[::1/EWS\": invalid IPv6"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn non_xml_answer_is_a_decode_error_with_the_proto_error_as_source() {
        let url = canned(200, "<html>Service unavailable".into()).await;
        let err = bearer(&url).disconnect_phone_call("x").await.unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err:?}");
        assert!(
            err.to_string().starts_with("cannot decode the response: "),
            "{err}"
        );
        let source = std::error::Error::source(&err).unwrap();
        assert!(
            source.downcast_ref::<ews_proto::ResponseError>().is_some(),
            "{source:?}"
        );
    }

    #[tokio::test]
    async fn success_without_a_phone_call_id_names_the_missing_element() {
        let url = canned(
            200,
            document(Response::PlayOnPhone(PlayOnPhoneResponse {
                message: ResponseMessage::success(),
                phone_call_id: None,
            })),
        )
        .await;
        let err = bearer(&url)
            .play_on_phone("item", "5551212")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::MissingElement {
                    response: "PlayOnPhoneResponse",
                    element: "PhoneCallId"
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "cannot decode the response: PlayOnPhoneResponse without PhoneCallId"
        );
    }

    #[tokio::test]
    async fn answer_for_another_operation_names_both_operations() {
        let url = canned(
            200,
            document(Response::DisconnectPhoneCall(DisconnectPhoneCallResponse {
                message: ResponseMessage::success(),
            })),
        )
        .await;
        let err = bearer(&url)
            .play_on_phone("item", "5551212")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnexpectedResponse {
                    expected: "PlayOnPhoneResponse",
                    got: "DisconnectPhoneCallResponse"
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "cannot decode the response: expected PlayOnPhoneResponse, got DisconnectPhoneCallResponse"
        );
    }

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn causes_are_listed_once_each_in_order() {
        let chain = Layer(
            "error sending request",
            Some(Box::new(Layer(
                "tcp connect error: Connection refused",
                Some(Box::new(Layer("Connection refused", None))),
            ))),
        );
        assert_eq!(
            calls::error_chain(&chain),
            "error sending request: tcp connect error: Connection refused"
        );
    }
}
