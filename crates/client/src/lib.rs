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
    /// The server could not be reached or the connection failed.
    #[error("cannot reach the EWS endpoint: {0}")]
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
    /// The response could not be understood.
    #[error("cannot decode the response: {0}")]
    Decode(String),
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
            .map_err(Error::Transport)?;
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
                r.phone_call_id
                    .map(|p| p.id)
                    .ok_or_else(|| Error::Decode("PlayOnPhoneResponse without PhoneCallId".into()))
            }
            other => Err(wrong(&other)),
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
                r.phone_call_information.ok_or_else(|| {
                    Error::Decode("GetPhoneCallInformationResponse without information".into())
                })
            }
            other => Err(wrong(&other)),
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
            other => Err(wrong(&other)),
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
        match decode_response(&bytes).map_err(|e| Error::Decode(e.to_string()))? {
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

fn wrong(response: &Response) -> Error {
    Error::Decode(format!("unexpected {}", response.element_name()))
}
