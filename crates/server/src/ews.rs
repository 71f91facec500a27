//! The three operations, and the one seam where domain call records become EWS wire types.

use std::sync::Arc;
use std::time::Duration;

use ews_proto::{
    decode_request, encode_fault, encode_response, ConnectionFailureCause, DisconnectPhoneCall,
    DisconnectPhoneCallResponse, Fault, GetPhoneCallInformation, GetPhoneCallInformationResponse,
    Limits, PhoneCallId, PhoneCallInformation, PhoneCallState, PlayOnPhone, PlayOnPhoneResponse,
    Request, RequestEnvelope, Response, ResponseCode, ResponseEnvelope, ResponseMessage,
    ServerVersionInfo,
};

use crate::auth::{Authenticator, Caller};
use crate::dialstring;
use crate::mailbox::{FetchError, MailboxService};
use crate::registry::{Refused, Registry};
use crate::store::{Store, StoreError};
use crate::voicemail::{parse_item_id, ItemIdError};
use calls::id::mint_phone_call_id;
use calls::{now_unix, CallRecord, CallService, CallState, Cause, Hangup, PlaceError};
use mailbox_client::MailboxError;

/// The `MessageText` MS-OXWUMS prescribes for an unknown PhoneCallId.
pub const INVALID_PHONE_CALL_ID_TEXT: &str = "The phone call ID isn't valid";

/// Everything a request handler needs.
pub struct AppState {
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Call records (this node's in memory, all in the store).
    pub registry: Arc<Registry>,
    /// The engine (or a stand-in) that places calls.
    pub calls: Arc<dyn CallService>,
    /// Credential checks.
    pub auth: Authenticator,
    /// `ServerVersionInfo` sent in every response header.
    pub server_version: ServerVersionInfo,
    /// This node's name (part of every PhoneCallId it mints).
    pub node: String,
    /// XML reading limits.
    pub limits: Limits,
    /// How long finished calls stay queryable.
    pub retention: Duration,
    /// Which numbers may be dialled, and as what.
    pub dial_plan: crate::dialplan::DialPlan,
    /// Concurrency caps.
    pub admission: crate::config::AdmissionConfig,
    /// The mailbox backend, with `[mailbox]`.
    pub mailbox: Option<Arc<MailboxService>>,
    /// Forwarding of every other EWS request to the mailbox server (`[mailbox] forward`).
    pub forwarder: Option<Arc<crate::forward::Forwarder>>,
}

/// An EWS answer: HTTP status and XML body.
#[derive(Debug)]
pub struct Answer {
    /// 200 for responses (success or per-message error), 500 for faults.
    pub status: u16,
    /// The XML document.
    pub body: String,
}

/// Handles one SOAP request from an authenticated caller.
pub async fn handle(state: &AppState, caller: &Caller, body: &[u8]) -> Answer {
    let started = std::time::Instant::now();
    let metrics = state.registry.metrics();
    let envelope = match decode_request(body, state.limits) {
        Ok(envelope) => envelope,
        Err(error) => {
            if matches!(error, ews_proto::RequestError::Invariant(_)) {
                tracing::error!(%error, "request failed inside the decoder");
            } else {
                tracing::info!(%error, "request refused with a SOAP fault");
            }
            let f = error.to_fault();
            metrics.request("unknown", f.code.as_str(), started.elapsed());
            return fault(&f);
        }
    };
    let operation = envelope.body.operation_name();
    if let Some(f) = check_impersonation(&envelope, caller.login()) {
        metrics.request(operation, f.code.as_str(), started.elapsed());
        return fault(&f);
    }
    let response = match respond(state, caller, &envelope.body).await {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(%error, operation = envelope.body.operation_name(), "internal error");
            Response::error_for(
                &envelope.body,
                ResponseCode::ErrorInternalServerError,
                "An internal server error occurred. The operation failed.",
            )
        }
    };
    answer(state, operation, response, started)
}

/// The answer to a request whose caller could not be identified because the mailbox server
/// could not be asked: the operation's own error, `ErrorMailboxStoreUnavailable`.
pub fn mailbox_unavailable(state: &AppState, body: &[u8]) -> Answer {
    let started = std::time::Instant::now();
    let envelope = match decode_request(body, state.limits) {
        Ok(envelope) => envelope,
        Err(error) => {
            let f = error.to_fault();
            state
                .registry
                .metrics()
                .request("unknown", f.code.as_str(), started.elapsed());
            return fault(&f);
        }
    };
    let response = Response::error_for(
        &envelope.body,
        ResponseCode::ErrorMailboxStoreUnavailable,
        MAILBOX_UNAVAILABLE_TEXT,
    );
    answer(state, envelope.body.operation_name(), response, started)
}

/// The `MessageText` of `ErrorMailboxStoreUnavailable`.
const MAILBOX_UNAVAILABLE_TEXT: &str =
    "The mailbox server is unavailable or did not answer in time. Try again later.";

fn answer(
    state: &AppState,
    operation: &'static str,
    response: Response,
    started: std::time::Instant,
) -> Answer {
    let outcome = response
        .message()
        .response_code
        .map_or("NoError", ResponseCode::as_str);
    state
        .registry
        .metrics()
        .request(operation, outcome, started.elapsed());
    Answer {
        status: 200,
        body: encode_response(&ResponseEnvelope {
            server_version_info: Some(state.server_version.clone()),
            body: response,
        }),
    }
}

/// A fault answer (HTTP 500).
pub fn fault(f: &Fault) -> Answer {
    Answer {
        status: 500,
        body: encode_fault(f),
    }
}

/// openum has no delegation model: a user may "impersonate" only themselves.
fn check_impersonation(envelope: &RequestEnvelope, user: &str) -> Option<Fault> {
    let sid = envelope.header.exchange_impersonation.as_ref()?;
    if sid.value().eq_ignore_ascii_case(user) {
        return None;
    }
    Some(Fault::header_refused(
        ResponseCode::ErrorImpersonateUserDenied,
        "The account does not have permission to impersonate the requested user.",
    ))
}

async fn respond(
    state: &AppState,
    caller: &Caller,
    request: &Request,
) -> Result<Response, StoreError> {
    let owner = caller.owner();
    match request {
        Request::PlayOnPhone(r) => play_on_phone(state, caller, r).await,
        Request::GetPhoneCallInformation(r) => get_phone_call_information(state, owner, r).await,
        Request::DisconnectPhoneCall(r) => disconnect_phone_call(state, owner, r).await,
    }
}

fn play_error(code: ResponseCode, text: impl Into<String>) -> Response {
    Response::PlayOnPhone(PlayOnPhoneResponse {
        message: ResponseMessage::error(code, text),
        phone_call_id: None,
    })
}

/// Where a PlayOnPhone's item lives.
enum ItemSource<'a> {
    /// Imported into this server's store.
    Local,
    /// In the caller's mailbox, read with their own header.
    Mailbox(&'a MailboxService, &'a str, Option<&'a crate::auth::Via>),
}

async fn play_on_phone(
    state: &AppState,
    caller: &Caller,
    request: &PlayOnPhone,
) -> Result<Response, StoreError> {
    let user = caller.owner();
    let enabled = match caller {
        Caller::Local(name) => state
            .store
            .user(name)
            .await?
            .is_some_and(|u| u.play_on_phone),
        // The mailbox server vouched for them; what they may play is what it lets them read.
        Caller::Mailbox { .. } => true,
    };
    if !enabled {
        return Ok(play_error(
            ResponseCode::ErrorUserNotUnifiedMessagingEnabled,
            "Play on Phone is not enabled for this user.",
        ));
    }
    let source =
        match (parse_item_id(&request.item_id.id), caller, &state.mailbox) {
            (Ok(_), _, _) => ItemSource::Local,
            (
                Err(ItemIdError::Malformed),
                Caller::Mailbox {
                    authorization, via, ..
                },
                Some(mailbox),
            ) => ItemSource::Mailbox(mailbox, authorization, via.as_ref()),
            (Err(ItemIdError::Empty), _, _) => {
                return Ok(play_error(
                    ResponseCode::ErrorInvalidIdEmpty,
                    "The ItemId is empty.",
                ))
            }
            (Err(ItemIdError::Malformed), _, _) => return Ok(play_error(
                ResponseCode::ErrorInvalidIdMalformed,
                "The ItemId is malformed: it is not a voice-mail item id issued by this server.",
            )),
        };
    let Some(number) = dialstring::normalize(&request.dial_string) else {
        return Ok(play_error(
            ResponseCode::ErrorInvalidPhoneNumber,
            "The DialString is not a valid phone number.",
        ));
    };
    // Mailbox callers resolve as their mailbox, never by the spelling of their login (which
    // would let another spelling escape, or match, a local name in `dialplan.user_groups`):
    // they get `dialplan.allowed_groups`.
    let (number, gateway_group) = match state.dial_plan.resolve(caller.owner(), &number) {
        Ok(resolved) => (resolved.dial, resolved.gateway_group),
        Err(refusal) => {
            return Ok(play_error(
                ResponseCode::ErrorPhoneNumberNotDialable,
                format!("The number cannot be dialled: {refusal}."),
            ))
        }
    };
    if !state.calls.available() {
        return Ok(play_error(
            ResponseCode::ErrorUnifiedMessagingServerNotFound,
            "No SIP gateway is configured on this server, so no call can be placed.",
        ));
    }
    // Held until the call is placed, so the audio cannot leave the cache before the runtime
    // has read it.
    let _audio = match source {
        ItemSource::Local => {
            let item = state
                .store
                .voicemail_item(&request.item_id.id)
                .await?
                .filter(|item| item.owner == user);
            let Some(item) = item else {
                return Ok(play_error(
                    ResponseCode::ErrorItemNotFound,
                    "The specified object was not found in the store.",
                ));
            };
            if !item.has_audio {
                return Ok(play_error(
                    ResponseCode::ErrorContentConversionFailed,
                    "The item has no playable audio.",
                ));
            }
            None
        }
        ItemSource::Mailbox(mailbox, authorization, via) => {
            let via = via.map(|v| Arc::clone(&v.0));
            match mailbox
                .fetch_via(via, authorization, &request.item_id.id)
                .await
            {
                Ok(pcm) => Some(pcm),
                Err(error) => return Ok(mailbox_fetch_error(&error)),
            }
        }
    };
    let record = CallRecord::dialling(
        mint_phone_call_id(&state.node),
        user,
        state.node.as_str(),
        number,
        request.item_id.id.as_str(),
        now_unix(),
    );
    let caps = &state.admission;
    match state
        .registry
        .admit(&record, caps.max_calls_per_user, caps.max_calls_per_node)
        .await?
    {
        Ok(()) => {}
        Err(refused) => {
            let text = match refused {
                Refused::PerUser(n) => {
                    format!(
                        "The per-user concurrent-call cap ({n}) is reached; hang up a call first."
                    )
                }
                Refused::PerNode(n) => {
                    format!("This server's concurrent-call cap ({n}) is reached; try again later.")
                }
            };
            return Ok(play_error(
                ResponseCode::ErrorUnifiedMessagingRequestFailed,
                text,
            ));
        }
    }
    if let Err(error) = state
        .calls
        .place_via(&record, gateway_group.as_deref())
        .await
    {
        let closed = CallRecord {
            state: CallState::Disconnected,
            cause: Cause::Other,
            ended_at: Some(now_unix()),
            ..record
        };
        state.registry.update(&closed).await?;
        let (code, text) = match &error {
            PlaceError::NoGateway => (
                ResponseCode::ErrorUnifiedMessagingServerNotFound,
                "No SIP gateway is configured on this server, so no call can be placed.".to_owned(),
            ),
            PlaceError::OverCapacity(which) => (
                ResponseCode::ErrorUnifiedMessagingRequestFailed,
                which.to_string(),
            ),
            PlaceError::Audio(_) => (
                ResponseCode::ErrorContentConversionFailed,
                "The message audio cannot be played.".to_owned(),
            ),
            // MediaSocket, Signalling, and whatever a future service adds: the cause goes to
            // the log, the client learns that the call did not start.
            _ => (
                ResponseCode::ErrorUnifiedMessagingRequestFailed,
                "The call could not be started.".to_owned(),
            ),
        };
        tracing::warn!(error = %calls::error_chain(&error), call = %closed.id, "call not placed");
        return Ok(play_error(code, text));
    }
    state.registry.metrics().call_started();
    Ok(Response::PlayOnPhone(PlayOnPhoneResponse {
        message: ResponseMessage::success(),
        phone_call_id: Some(PhoneCallId { id: record.id }),
    }))
}

/// The PlayOnPhone answer for a mailbox item that cannot be played. The mailbox server's
/// answer about the item is passed through as it gave it; its unavailability is
/// `ErrorMailboxStoreUnavailable`; audio openum cannot use is `ErrorContentConversionFailed`.
fn mailbox_fetch_error(error: &FetchError) -> Response {
    let (code, text) = match error {
        FetchError::Mailbox(MailboxError::Item { code, message }) => (*code, message.clone()),
        FetchError::Mailbox(MailboxError::NoAudio { .. }) => (
            ResponseCode::ErrorContentConversionFailed,
            "The item has no playable audio.".to_owned(),
        ),
        FetchError::Mailbox(MailboxError::TooLarge { limit, .. }) => (
            ResponseCode::ErrorContentConversionFailed,
            format!("The voice message is larger than this server plays ({limit} bytes)."),
        ),
        FetchError::Decode { .. } | FetchError::DecoderTask(_) => (
            ResponseCode::ErrorContentConversionFailed,
            "The message audio cannot be played.".to_owned(),
        ),
        // The credentials were accepted moments ago (or are cached): refused now, the item is
        // simply not readable for this caller.
        FetchError::Mailbox(MailboxError::Unauthorized) => (
            ResponseCode::ErrorAccessDenied,
            "The mailbox server refused access to the item.".to_owned(),
        ),
        FetchError::Mailbox(_) => (
            ResponseCode::ErrorMailboxStoreUnavailable,
            MAILBOX_UNAVAILABLE_TEXT.to_owned(),
        ),
    };
    match code {
        ResponseCode::ErrorMailboxStoreUnavailable | ResponseCode::ErrorAccessDenied => {
            tracing::warn!(error = %calls::error_chain(error), "voice message not fetched");
        }
        _ => tracing::info!(error = %calls::error_chain(error), "voice message not playable"),
    }
    play_error(code, text)
}

/// The caller's own, unexpired call with this id.
async fn own_call(
    state: &AppState,
    user: &str,
    id: &str,
) -> Result<Option<CallRecord>, StoreError> {
    let Some(record) = state.registry.get(id).await? else {
        return Ok(None);
    };
    if record.owner != user {
        return Ok(None);
    }
    let retention = i64::try_from(state.retention.as_secs()).unwrap_or(i64::MAX);
    if record
        .ended_at
        .is_some_and(|ended| ended.saturating_add(retention) < now_unix())
    {
        return Ok(None);
    }
    Ok(Some(record))
}

async fn get_phone_call_information(
    state: &AppState,
    user: &str,
    request: &GetPhoneCallInformation,
) -> Result<Response, StoreError> {
    let response = match own_call(state, user, &request.phone_call_id.id).await? {
        Some(record) => GetPhoneCallInformationResponse {
            message: ResponseMessage::success(),
            phone_call_information: Some(to_wire(&record)),
        },
        None => GetPhoneCallInformationResponse {
            message: ResponseMessage::error(
                ResponseCode::ErrorInvalidPhoneCallId,
                INVALID_PHONE_CALL_ID_TEXT,
            ),
            phone_call_information: None,
        },
    };
    Ok(Response::GetPhoneCallInformation(response))
}

async fn disconnect_phone_call(
    state: &AppState,
    user: &str,
    request: &DisconnectPhoneCall,
) -> Result<Response, StoreError> {
    let Some(record) = own_call(state, user, &request.phone_call_id.id).await? else {
        return Ok(Response::DisconnectPhoneCall(DisconnectPhoneCallResponse {
            message: ResponseMessage::error(
                ResponseCode::ErrorInvalidPhoneCallId,
                INVALID_PHONE_CALL_ID_TEXT,
            ),
        }));
    };
    // Hanging up a call that already ended succeeds and changes nothing (decisions §5).
    if record.is_finished() {
        return Ok(Response::DisconnectPhoneCall(DisconnectPhoneCallResponse {
            message: ResponseMessage::success(),
        }));
    }
    // Another node owns the call's signalling: ask it (through the store), which waits — bounded
    // by `cluster.hangup_wait_secs` — for the owner to confirm the call ended.
    if record.node != state.node {
        // A failure to ask the owner, or no confirmation in time, is an error, never a local
        // hang-up: the owner may still be playing the call.
        state.store.request_hangup(&record.node, &record.id).await?;
        return Ok(Response::DisconnectPhoneCall(DisconnectPhoneCallResponse {
            message: ResponseMessage::success(),
        }));
    }
    if state.calls.hangup(&record.id).await == Hangup::NotLive {
        // No engine runs this call (it was never placed here, or its node lost it): the user
        // asked for it to end, so record that.
        state
            .registry
            .update(&CallRecord {
                state: CallState::Disconnected,
                cause: Cause::None,
                ended_at: Some(now_unix()),
                ..record.clone()
            })
            .await?;
    }
    // Decisions §16 on every node: the others read this call from the store, so the answer
    // waits (bounded) for the ordered writer to store the change the hang-up made.
    state
        .registry
        .settle(&record.id, crate::registry::SETTLE_BOUND)
        .await;
    Ok(Response::DisconnectPhoneCall(DisconnectPhoneCallResponse {
        message: ResponseMessage::success(),
    }))
}

/// The seam: a domain call record as `t:PhoneCallInformation`.
pub fn to_wire(record: &CallRecord) -> PhoneCallInformation {
    PhoneCallInformation {
        phone_call_state: wire_state(record.state),
        connection_failure_cause: wire_cause(record.cause),
        sip_response_text: record.sip_code.and(record.sip_text.clone()),
        sip_response_code: record.sip_code.map(i32::from),
    }
}

/// A domain state as `t:PhoneCallStateType`. The wire's `Idle`, `Disconnecting`, `Incoming`,
/// `Transferring` and `Forwarding` have no domain counterpart: openum's calls never are in them.
pub fn wire_state(state: CallState) -> PhoneCallState {
    match state {
        CallState::Connecting => PhoneCallState::Connecting,
        CallState::Alerted => PhoneCallState::Alerted,
        CallState::Connected => PhoneCallState::Connected,
        CallState::Disconnected => PhoneCallState::Disconnected,
    }
}

/// A domain cause as `t:ConnectionFailureCauseType`.
pub fn wire_cause(cause: Cause) -> ConnectionFailureCause {
    match cause {
        Cause::None => ConnectionFailureCause::None,
        Cause::UserBusy => ConnectionFailureCause::UserBusy,
        Cause::NoAnswer => ConnectionFailureCause::NoAnswer,
        Cause::Unavailable => ConnectionFailureCause::Unavailable,
        Cause::Other => ConnectionFailureCause::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_domain_state_and_cause_maps_to_the_wire_value_of_the_same_name() {
        for state in CallState::ALL {
            assert_eq!(wire_state(state).as_str(), state.as_str());
        }
        for cause in Cause::ALL {
            assert_eq!(wire_cause(cause).as_str(), cause.as_str());
        }
    }
}
