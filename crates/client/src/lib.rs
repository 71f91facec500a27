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
    /// The TLS configuration could not be built.
    #[error("cannot set up TLS: {0}")]
    Tls(#[source] Box<rustls::Error>),
    /// The server could not be reached, the request could not be built (e.g. a malformed URL),
    /// or the connection failed. The message includes the whole cause chain.
    #[error("cannot reach the EWS endpoint: {}", calls::error_chain(.0))]
    Transport(#[source] reqwest::Error),
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
    /// A client for `url` (e.g. `https://mail.example.com/EWS/Exchange.asmx`).
    pub fn new(url: impl Into<String>, auth: Auth) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("openum-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::Setup)?;
        Ok(Self {
            http,
            url: url.into(),
            auth,
            version: ExchangeVersion::Exchange2010,
        })
    }

    /// A client for `url` that trusts exactly the certificates in `roots` (e.g. a private CA's
    /// root), not the built-in ones; TLS 1.2+ with rustls (ring).
    pub fn with_root_store(
        url: impl Into<String>,
        auth: Auth,
        roots: rustls::RootCertStore,
    ) -> Result<Self, Error> {
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::Tls(Box::new(error)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .user_agent(concat!("openum-client/", env!("CARGO_PKG_VERSION")))
            .use_preconfigured_tls(tls)
            .build()
            .map_err(Error::Setup)?;
        Ok(Self {
            http,
            url: url.into(),
            auth,
            version: ExchangeVersion::Exchange2010,
        })
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
        let reply = request.send().await.map_err(Error::Transport)?;
        let status = reply.status().as_u16();
        if status == 401 {
            return Err(Error::Unauthorized);
        }
        if status != 200 && status != 500 {
            return Err(Error::Status(status));
        }
        let bytes = reply.bytes().await.map_err(Error::Transport)?;
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
    async fn refused_connection_names_the_os_error_in_the_message() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/EWS/Exchange.asmx",
            listener.local_addr().unwrap()
        );
        drop(listener);
        let err = bearer(&url).disconnect_phone_call("x").await.unwrap_err();
        assert!(matches!(err, Error::Transport(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("cannot reach the EWS endpoint: error sending request"),
            "{text}"
        );
        assert!(text.contains("Connection refused"), "{text}");
        let source = std::error::Error::source(&err).unwrap();
        assert!(source.downcast_ref::<reqwest::Error>().is_some());
    }

    #[tokio::test]
    async fn malformed_url_names_the_parse_error() {
        let err = bearer("mail.example.com/EWS/Exchange.asmx")
            .get_phone_call_information("x")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Transport(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("builder error"), "{text}");
        assert!(text.contains("relative URL without a base"), "{text}");
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
