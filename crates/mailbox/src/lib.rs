//! openum's mailbox backend client: fetches a voice message from the caller's own Exchange (or
//! grommunio) mailbox over EWS, **with the caller's own `Authorization` header** (Basic or
//! Bearer, passed through verbatim), picks its audio attachment and downloads it.
//!
//! It speaks the wire types of `ews_proto::mailbox`: `GetFolder` of the inbox to check the
//! credentials and learn the mailbox's identity ([`MailboxClient::identity`]), `GetItem` to read
//! the item's class, subject, attachments and `PidTagVoiceMessageAttachmentOrder`
//! ([`MailboxClient::voice_message`]), and `GetAttachment` to download the audio
//! ([`MailboxClient::attachment`]).
//!
//! ```no_run
//! # async fn demo(authorization: &str, item_id: &str) -> Result<(), openum_mailbox::MailboxError> {
//! use std::time::Duration;
//! use openum_mailbox::{MailboxClient, MailboxSettings};
//!
//! let client = MailboxClient::new(MailboxSettings {
//!     ews_url: "https://mail.example.com/EWS/Exchange.asmx".into(),
//!     ca_file: None,
//!     timeout: Duration::from_secs(10),
//!     max_attachment_bytes: 16 * 1024 * 1024,
//! })?;
//! let mailbox = client.identity(authorization).await?;
//! let message = client.voice_message(authorization, item_id).await?;
//! let audio = client.attachment(authorization, &message.audio).await?;
//! println!("{} {}: {} bytes", mailbox.inbox_folder_id, message.audio.name, audio.len());
//! # Ok(()) }
//! ```
//!
//! # Choosing the audio
//!
//! A message is a voice message when its `ItemClass` starts with `IPM.Note.Microsoft.Voicemail`
//! (Exchange Unified Messaging, [MS-OXOUM] §2.2.2.1: `….UM.CA`, `….UM`, or a voice reply's
//! class suffixed with `.Microsoft.Voicemail`) or `IPM.Note.rpmsg.Microsoft.Voicemail` (its
//! protected form), compared case-insensitively ([`is_voice_mail_class`]) — or when it has an
//! audio attachment, as voice mail that PBXs e-mail does. Either way what is played is an
//! attachment, chosen as follows ([`choose_audio`]):
//!
//! 1. Only non-inline `t:FileAttachment`s with an `AttachmentId` are candidates; item
//!    attachments (`t:ItemAttachment`) and inline ones (signature images) never are.
//! 2. When the item has `PidTagVoiceMessageAttachmentOrder` (MAPI tag `0x6805`, `PtypString`,
//!    [MS-OXPROPS] §2.1060, defined by [MS-OXOUM] §2.2.5.9), its value lists the
//!    `PidTagAttachLongFilename`s (the EWS `Name`s) of the audio attachments to play, separated
//!    by `;` (spaces around names and a leading or trailing `;` allowed), **in the reverse of the
//!    order they were added: the most recent recording first** — the one played first, as
//!    ActiveSync's `UmAttOrder` 1 is the most recent voice attachment ([MS-ASEMAIL]
//!    §2.2.2.82). The chosen attachment is the candidate named by the first name of that list
//!    that names one (names compared case-insensitively: the spec's own example lists
//!    `Vm3.wav` for `vm3.wav`).
//! 3. Otherwise (no property, or none of its names matches), the first *audio* candidate in
//!    document order ([`is_audio_attachment`]): its `ContentType` is `audio/*` in any case
//!    (Unified Messaging writes `audio/mp3`, `audio/wma`, `audio/gsm`, `audio/WAV`; PBXs send
//!    `audio/x-wav`, `audio/mpeg`, `audio/x-ms-wma`, …), or its content type is missing or
//!    `application/octet-stream` and its name ends in `.wav`, `.mp3`, `.wma` or `.gsm`.
//! 4. Nothing chosen: [`MailboxError::NoAudio`] — whatever the class. (Protected voice mail
//!    keeps its audio, as `.umrmwav`/`.umrmwma`/`.umrmmp3`, inside the encrypted
//!    `message.rpmsg`, so it ends here too: it cannot be played without rights management.)
//!
//! Whether the chosen attachment's format can be played is the caller's business (the audio
//! crate decodes WAV and MP3; it refuses GSM 06.10 and WMA with a message naming the format).
//!
//! # Transport
//!
//! Every request is an HTTP POST of `text/xml; charset=utf-8` to `ews_url` with the SOAP header
//! `RequestServerVersion` `Exchange2013` and the caller's `Authorization` value, byte for byte
//! (marked sensitive, never logged or put in an error). Each request has the configured timeout
//! as its total deadline, connection to last body byte. Redirects are not followed. Bodies are
//! read in chunks and cut off at a bound: 4 MiB for `GetFolder`/`GetItem`, and for
//! `GetAttachment` the base64 size of `max_attachment_bytes` plus 64 KiB of envelope. TLS is
//! rustls, trusting the system's roots, the webpki roots and `ca_file` when set.
//!
//! Requests can also go over another [`Transport`] ([`MailboxClient::via`]): openum uses one
//! client connection's dedicated mailbox-server connection, which NTLM or Negotiate
//! authenticated, and sends no `Authorization` header on it (an empty `authorization`).
//!
//! HTTP 401 is [`MailboxError::Unauthorized`]; a SOAP fault (HTTP 500) or an `Error` response
//! message is [`MailboxError::Item`] with the server's code and text; a redirect, any other
//! status, or a failure to connect or to finish in time is [`MailboxError::Unavailable`]; an
//! HTTP 200 that is not a usable answer is [`MailboxError::BadResponse`].

mod choice;
mod error;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ews_proto::mailbox::{
    decode_mailbox_response, encode_mailbox_request, Attachment, AttachmentId, DecodeLimits,
    GetAttachment, GetFolder, GetItem, MailboxDecodeError, MailboxRequest, MailboxResponse,
    MailboxResponseDocument, MailboxResponseMessage,
};
use ews_proto::{ExchangeVersion, Fault, ItemId, ResponseClass, ResponseCode};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION};

pub use choice::{attachment_order, choose_audio, is_audio_attachment, is_voice_mail_class};
pub use error::{BadResponse, MailboxError, SetupError, Unavailable};

/// The schema version openum asks the mailbox server for.
const VERSION: ExchangeVersion = ExchangeVersion::Exchange2013;
/// The largest `GetFolder`/`GetItem` answer read (IdOnly plus a few properties).
const MAX_METADATA_BYTES: u64 = 4 * 1024 * 1024;
/// Room for the envelope around an attachment's base64 content.
const ENVELOPE_ALLOWANCE: u64 = 64 * 1024;

/// How to reach the mailbox server.
#[derive(Clone, Debug)]
pub struct MailboxSettings {
    /// The EWS endpoint, e.g. `https://mail.example.com/EWS/Exchange.asmx`.
    pub ews_url: String,
    /// A PEM file of extra root certificates to trust (besides the system's).
    pub ca_file: Option<PathBuf>,
    /// The total deadline of each request (connect to last body byte); must be non-zero.
    pub timeout: Duration,
    /// The largest attachment downloaded, in bytes.
    pub max_attachment_bytes: u64,
}

/// What a [`Transport`] got back: the status, the `Location` header, and the body read up to
/// the limit (`None` past it).
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The `Location` header, when visible ASCII.
    pub location: Option<String>,
    /// The body, or `None` when it is larger than the limit.
    pub body: Option<Vec<u8>>,
}

/// A boxed future of a [`Transport`].
pub type PostFuture<'a> = Pin<Box<dyn Future<Output = Result<Reply, MailboxError>> + Send + 'a>>;

/// How EWS requests reach the mailbox server.
pub trait Transport: Send + Sync {
    /// POSTs `body` (`text/xml`) to the EWS endpoint with `authorization` (sensitive; none when
    /// `None`) and reads the answer's body up to `limit` bytes. Transport failures are
    /// [`MailboxError::Unavailable`].
    fn post<'a>(
        &'a self,
        body: Vec<u8>,
        authorization: Option<&'a HeaderValue>,
        limit: u64,
    ) -> PostFuture<'a>;
}

/// The shared connection pool ([`reqwest`]).
struct Pooled {
    http: reqwest::Client,
    url: reqwest::Url,
    timeout: Duration,
}

impl Transport for Pooled {
    fn post<'a>(
        &'a self,
        body: Vec<u8>,
        authorization: Option<&'a HeaderValue>,
        limit: u64,
    ) -> PostFuture<'a> {
        Box::pin(async move {
            let mut request = self
                .http
                .post(self.url.clone())
                .header(CONTENT_TYPE, "text/xml; charset=utf-8")
                .header(ACCEPT, "text/xml");
            if let Some(credentials) = authorization {
                request = request.header(AUTHORIZATION, credentials.clone());
            }
            let reply = request
                .body(body)
                .send()
                .await
                .map_err(|e| transport(self.timeout, e))?;
            let status = reply.status().as_u16();
            let location = reply
                .headers()
                .get(LOCATION)
                // A Location that is not visible ASCII is only left out of the message.
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            let body = match read_body(reply, limit).await {
                Ok(body) => Some(body),
                Err(BodyError::TooLarge) => None,
                Err(BodyError::Transport(e)) => return Err(transport(self.timeout, e)),
            };
            Ok(Reply {
                status,
                location,
                body,
            })
        })
    }
}

/// A client of one mailbox server. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct MailboxClient {
    transport: Arc<dyn Transport>,
    url: reqwest::Url,
    timeout: Duration,
    max_attachment_bytes: u64,
}

impl std::fmt::Debug for MailboxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxClient")
            .field("url", &self.url.as_str())
            .field("timeout", &self.timeout)
            .field("max_attachment_bytes", &self.max_attachment_bytes)
            .finish_non_exhaustive()
    }
}

/// The mailbox the credentials open: its inbox's `FolderId`, the same for every login spelling
/// of one mailbox and different between mailboxes.
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct MailboxIdentity {
    /// The inbox's `FolderId/@Id`.
    pub inbox_folder_id: String,
}

/// A voice message: the item and its chosen audio attachment.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct VoiceMessage {
    /// The item's `ItemId/@Id`, as the server returned it.
    pub item_id: String,
    /// The item's `ChangeKey`.
    pub change_key: Option<String>,
    /// The item's `ItemClass` (empty when the server sent none).
    pub item_class: String,
    /// The item's `Subject`.
    pub subject: Option<String>,
    /// The chosen audio attachment.
    pub audio: AttachmentRef,
}

/// An attachment to download.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AttachmentRef {
    /// `AttachmentId/@Id`.
    pub id: String,
    /// `Name` (empty when the server sent none).
    pub name: String,
    /// `ContentType`.
    pub content_type: Option<String>,
    /// `Size` in bytes, as the server states it (on Exchange a little above the content's
    /// length: it counts the attachment's properties too).
    pub size: Option<u64>,
}

/// What a body read ran into.
enum BodyError {
    TooLarge,
    Transport(reqwest::Error),
}

impl MailboxClient {
    /// A client for `settings.ews_url`, trusting the system's roots (and webpki's) plus the
    /// certificates of `settings.ca_file` (PEM) when set.
    pub fn new(settings: MailboxSettings) -> Result<Self, MailboxError> {
        let setup = MailboxError::Setup;
        let url = reqwest::Url::parse(&settings.ews_url).map_err(|e| {
            setup(SetupError::Url {
                url: settings.ews_url.clone(),
                reason: e.to_string(),
            })
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(setup(SetupError::Url {
                url: settings.ews_url,
                reason: format!("the scheme is {:?}, not http or https", url.scheme()),
            }));
        }
        if settings.timeout.is_zero() {
            return Err(setup(SetupError::ZeroTimeout));
        }
        let builder = || {
            reqwest::Client::builder()
                .use_rustls_tls()
                .user_agent(concat!("openum-mailbox/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::none())
                .timeout(settings.timeout)
                .connect_timeout(settings.timeout)
        };
        let mut client = builder();
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path).map_err(|source| {
                setup(SetupError::ReadCaFile {
                    path: path.clone(),
                    source,
                })
            })?;
            let ca_error = |source| {
                setup(SetupError::CaFile {
                    path: path.clone(),
                    source,
                })
            };
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(ca_error)?;
            if certificates.is_empty() {
                return Err(setup(SetupError::NoCertificate { path: path.clone() }));
            }
            // The certificates are parsed only when a client is built: build one with them
            // alone first, so that a bad file is named as the cause.
            certificates
                .iter()
                .fold(builder().tls_built_in_root_certs(false), |b, c| {
                    b.add_root_certificate(c.clone())
                })
                .build()
                .map_err(ca_error)?;
            for certificate in certificates {
                client = client.add_root_certificate(certificate);
            }
        }
        let http = client.build().map_err(|e| setup(SetupError::Client(e)))?;
        Ok(Self {
            transport: Arc::new(Pooled {
                http,
                url: url.clone(),
                timeout: settings.timeout,
            }),
            url,
            timeout: settings.timeout,
            max_attachment_bytes: settings.max_attachment_bytes,
        })
    }

    /// This client with its requests sent over `transport` instead of the shared pool; an
    /// empty `authorization` then sends no `Authorization` header.
    #[must_use]
    pub fn via(&self, transport: Arc<dyn Transport>) -> Self {
        Self {
            transport,
            ..self.clone()
        }
    }

    /// Checks the caller's `Authorization` value (`Basic …` or `Bearer …`) against the mailbox
    /// server with `GetFolder` of the inbox; returns the mailbox's identity.
    pub async fn identity(&self, authorization: &str) -> Result<MailboxIdentity, MailboxError> {
        let request = MailboxRequest::GetFolder(GetFolder::inbox_id());
        let response = self
            .call(
                authorization,
                &request,
                MAX_METADATA_BYTES,
                DecodeLimits::default(),
            )
            .await?;
        let MailboxResponse::GetFolder(messages) = response else {
            return Err(wrong("GetFolderResponse", &response));
        };
        let message = messages.into_iter().next().ok_or(missing(
            "the GetFolder answer has no GetFolderResponseMessage",
        ))?;
        check(&message.message)?;
        message
            .folders
            .into_iter()
            .find_map(|f| f.folder_id)
            .map(|id| MailboxIdentity {
                inbox_folder_id: id.id,
            })
            .ok_or(missing("the GetFolder answer has no FolderId"))
    }

    /// The item's voice message (`GetItem`): its audio attachment chosen by the rules of the
    /// crate docs.
    pub async fn voice_message(
        &self,
        authorization: &str,
        item_id: &str,
    ) -> Result<VoiceMessage, MailboxError> {
        let id = ItemId {
            id: item_id.to_owned(),
            change_key: None,
        };
        self.voice_message_of(authorization, &id).await
    }

    /// As [`Self::voice_message`], for an `ItemId` whose `ChangeKey` (if the EWS client sent
    /// one) is passed on.
    pub async fn voice_message_of(
        &self,
        authorization: &str,
        item_id: &ItemId,
    ) -> Result<VoiceMessage, MailboxError> {
        let request = MailboxRequest::GetItem(GetItem::voice_message(item_id.clone()));
        let response = self
            .call(
                authorization,
                &request,
                MAX_METADATA_BYTES,
                DecodeLimits::default(),
            )
            .await?;
        let MailboxResponse::GetItem(messages) = response else {
            return Err(wrong("GetItemResponse", &response));
        };
        let message = messages
            .into_iter()
            .next()
            .ok_or(missing("the GetItem answer has no GetItemResponseMessage"))?;
        check(&message.message)?;
        let item = message
            .items
            .first()
            .ok_or(missing("the GetItem answer has no item"))?;
        VoiceMessage::from_item(item)
    }

    /// The attachment's bytes (`GetAttachment`), refused with [`MailboxError::TooLarge`] above
    /// `max_attachment_bytes`: before any request when its `Size` says so, else when the body
    /// outgrows the bound (it is read in chunks, never buffered past it) or the decoded content
    /// would.
    pub async fn attachment(
        &self,
        authorization: &str,
        attachment: &AttachmentRef,
    ) -> Result<Vec<u8>, MailboxError> {
        let limit = self.max_attachment_bytes;
        if let Some(size) = attachment.size.filter(|&s| s > limit) {
            return Err(MailboxError::TooLarge {
                limit,
                size: Some(size),
            });
        }
        let request = MailboxRequest::GetAttachment(GetAttachment {
            attachment_ids: vec![AttachmentId::new(attachment.id.clone())],
        });
        let body_limit = limit
            .div_ceil(3)
            .saturating_mul(4)
            .saturating_add(ENVELOPE_ALLOWANCE);
        let decode_limits = DecodeLimits {
            max_content_bytes: limit,
            ..DecodeLimits::default()
        };
        let response = self
            .call(authorization, &request, body_limit, decode_limits)
            .await
            .map_err(|e| match e {
                MailboxError::BadResponse(BadResponse::TooLarge { .. }) => {
                    MailboxError::TooLarge { limit, size: None }
                }
                MailboxError::BadResponse(BadResponse::Decode(
                    MailboxDecodeError::ContentTooLarge { size, .. },
                )) => MailboxError::TooLarge {
                    limit,
                    size: Some(size),
                },
                other => other,
            })?;
        let MailboxResponse::GetAttachment(messages) = response else {
            return Err(wrong("GetAttachmentResponse", &response));
        };
        let message = messages.into_iter().next().ok_or(missing(
            "the GetAttachment answer has no GetAttachmentResponseMessage",
        ))?;
        check(&message.message)?;
        match message.attachments.into_iter().next() {
            Some(Attachment::File(file)) => file
                .content
                .ok_or(missing("the GetAttachment answer's file has no Content")),
            Some(_) => Err(missing("the GetAttachment answer is not a file attachment")),
            None => Err(missing("the GetAttachment answer has no attachment")),
        }
    }

    /// Sends one request and returns the decoded response, or the error its answer means.
    async fn call(
        &self,
        authorization: &str,
        request: &MailboxRequest,
        body_limit: u64,
        limits: DecodeLimits,
    ) -> Result<MailboxResponse, MailboxError> {
        // A value that cannot be a header (a line break, …) cannot be checked either.
        let credentials = if authorization.is_empty() {
            None
        } else {
            let mut value =
                HeaderValue::from_str(authorization).map_err(|_| MailboxError::Unauthorized)?;
            value.set_sensitive(true);
            Some(value)
        };
        let reply = self
            .transport
            .post(
                encode_mailbox_request(VERSION, request).into_bytes(),
                credentials.as_ref(),
                body_limit,
            )
            .await?;
        let status =
            reqwest::StatusCode::from_u16(reply.status).unwrap_or(reqwest::StatusCode::BAD_GATEWAY);
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(MailboxError::Unauthorized);
        }
        if status.is_redirection() {
            return Err(MailboxError::Unavailable(Unavailable::Redirect {
                status: status.as_u16(),
                location: reply.location,
            }));
        }
        let fault = status == reqwest::StatusCode::INTERNAL_SERVER_ERROR;
        if status != reqwest::StatusCode::OK && !fault {
            return Err(unavailable_status(status));
        }
        let body = match reply.body {
            Some(body) => body,
            None if fault => return Err(unavailable_status(status)),
            None => {
                return Err(MailboxError::BadResponse(BadResponse::TooLarge {
                    operation: request.operation_name(),
                    limit: body_limit,
                }))
            }
        };
        match (decode_mailbox_response(&body, limits), fault) {
            (Ok(MailboxResponseDocument::Fault(f)), _) => Err(fault_error(f)),
            (Ok(MailboxResponseDocument::Response(r)), false) => Ok(r.body),
            // A 500 that is not a fault is the server failing, not answering.
            (_, true) => Err(unavailable_status(status)),
            (Err(e), false) => Err(MailboxError::BadResponse(BadResponse::Decode(e))),
        }
    }
}

fn transport(timeout: Duration, e: reqwest::Error) -> MailboxError {
    {
        MailboxError::Unavailable(if e.is_timeout() {
            Unavailable::Timeout { timeout, source: e }
        } else if e.is_connect() {
            Unavailable::Connect(e)
        } else {
            Unavailable::Transport(e)
        })
    }
}

/// The body, read chunk by chunk and given up as soon as it passes `limit`.
async fn read_body(mut reply: reqwest::Response, limit: u64) -> Result<Vec<u8>, BodyError> {
    if reply.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = reply.chunk().await.map_err(BodyError::Transport)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn unavailable_status(status: reqwest::StatusCode) -> MailboxError {
    MailboxError::Unavailable(Unavailable::Status {
        status: status.as_u16(),
    })
}

fn missing(what: &'static str) -> MailboxError {
    MailboxError::BadResponse(BadResponse::Missing(what))
}

fn wrong(expected: &'static str, got: &MailboxResponse) -> MailboxError {
    MailboxError::BadResponse(BadResponse::WrongOperation {
        expected,
        got: got.element_name(),
    })
}

/// An `Error` response message as [`MailboxError::Item`]; `Success` and `Warning` go on.
fn check(message: &MailboxResponseMessage) -> Result<(), MailboxError> {
    if message.response_class != ResponseClass::Error {
        return Ok(());
    }
    let text = message.message_text.clone().unwrap_or_default();
    let (code, message) = match &message.response_code {
        Some(value) => match value.known() {
            Some(code) => (code, text),
            None => (
                ResponseCode::ErrorInternalServerError,
                format!("{text} ({})", value.as_str()),
            ),
        },
        None => (ResponseCode::ErrorInternalServerError, text),
    };
    Err(MailboxError::Item { code, message })
}

fn fault_error(fault: Fault) -> MailboxError {
    let message = if fault.message.trim().is_empty() {
        fault.fault_string
    } else {
        fault.message
    };
    MailboxError::Item {
        code: fault.code,
        message,
    }
}
