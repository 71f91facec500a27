//! EWS as the tests speak it to `openum serve`: a SOAP envelope POSTed to `/EWS/Exchange.asmx`
//! with Basic auth as `alice` (password [`PASSWORD`]), and the three phone-call operations with
//! their answers decoded by `ews-proto`.

use ews_proto::{PhoneCallInformation, Response, ResponseCode, ResponseDocument};

use super::PASSWORD;

/// The EWS messages namespace, bound to the prefix `m` in [`envelope`].
pub const M: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";

/// `body` (elements with the `m:` prefix) in a SOAP 1.1 envelope.
pub fn envelope(body: &str) -> String {
    format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:m=\"{M}\"><s:Body>{body}</s:Body></s:Envelope>"
    )
}

/// The PlayOnPhone request for `item` to `dial`.
pub fn play_on_phone(item: &str, dial: &str) -> String {
    format!(
        "<m:PlayOnPhone><m:ItemId Id=\"{item}\"/><m:DialString>{dial}</m:DialString></m:PlayOnPhone>"
    )
}

/// The GetPhoneCallInformation request for the call `id`.
pub fn get_phone_call_information(id: &str) -> String {
    format!("<m:GetPhoneCallInformation><m:PhoneCallId Id=\"{id}\"/></m:GetPhoneCallInformation>")
}

/// POSTs `body` in an envelope to `base`/EWS/Exchange.asmx as alice; the answer's text (an
/// error only when no HTTP answer came).
pub async fn post(
    http: &reqwest::Client,
    base: &str,
    body: &str,
) -> Result<String, reqwest::Error> {
    http.post(format!("{base}/EWS/Exchange.asmx"))
        .basic_auth("alice", Some(PASSWORD))
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(envelope(body))
        .send()
        .await?
        .text()
        .await
}

/// [`post`], its answer decoded.
pub async fn ews(http: &reqwest::Client, base: &str, body: &str) -> ResponseDocument {
    let reply = post(http, base, body).await.unwrap();
    ews_proto::decode_response(reply.as_bytes()).unwrap()
}

/// PlayOnPhone of `item` to `dial`, which must succeed; the PhoneCallId.
pub async fn play(http: &reqwest::Client, base: &str, item: &str, dial: &str) -> String {
    match ews(http, base, &play_on_phone(item, dial)).await {
        ResponseDocument::Response(r) => match r.body {
            Response::PlayOnPhone(p) => {
                assert_eq!(
                    p.message.response_code,
                    Some(ResponseCode::NoError),
                    "{p:?}"
                );
                p.phone_call_id.unwrap().id
            }
            other => panic!("{other:?}"),
        },
        ResponseDocument::Fault(f) => panic!("{f:?}"),
    }
}

/// PlayOnPhone of `item` to `dial`, which openum must refuse
/// (ErrorUnifiedMessagingRequestFailed).
pub async fn play_refused(http: &reqwest::Client, base: &str, item: &str, dial: &str) {
    let doc = ews(http, base, &play_on_phone(item, dial)).await;
    let ResponseDocument::Response(r) = doc else {
        panic!("{doc:?}")
    };
    assert_eq!(
        r.body.message().response_code,
        Some(ResponseCode::ErrorUnifiedMessagingRequestFailed)
    );
}

/// GetPhoneCallInformation of the call `id`, which must be known.
pub async fn info(http: &reqwest::Client, base: &str, id: &str) -> PhoneCallInformation {
    match ews(http, base, &get_phone_call_information(id)).await {
        ResponseDocument::Response(r) => match r.body {
            Response::GetPhoneCallInformation(g) => g
                .phone_call_information
                .unwrap_or_else(|| panic!("{:?}", g.message)),
            other => panic!("{other:?}"),
        },
        ResponseDocument::Fault(f) => panic!("{f:?}"),
    }
}

/// DisconnectPhoneCall of the call `id`; its response code.
pub async fn disconnect(http: &reqwest::Client, base: &str, id: &str) -> ResponseCode {
    match ews(
        http,
        base,
        &format!("<m:DisconnectPhoneCall><m:PhoneCallId Id=\"{id}\"/></m:DisconnectPhoneCall>"),
    )
    .await
    {
        ResponseDocument::Response(r) => r.body.message().response_code.unwrap(),
        ResponseDocument::Fault(f) => panic!("{f:?}"),
    }
}

/// The text of `<name>…</name>` in an EWS answer (any prefix).
pub fn element(answer: &str, name: &str) -> Option<String> {
    let at = answer.find(&format!(":{name}"))?;
    let text = &answer[at..];
    let text = &text[text.find('>')? + 1..];
    Some(text.split('<').next()?.to_owned())
}

/// The PhoneCallId in a PlayOnPhone answer's text; panics with the answer and `context` when
/// there is none.
pub fn phone_call_id(answer: &str, context: &str) -> String {
    answer
        .split("PhoneCallId Id=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("{answer}\n{context}"))
        .to_owned()
}

/// The value of the metric line starting with `name` (name and labels, then a space) in a
/// `/metrics` text, if there is one.
pub fn metric(metrics: &str, name: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
}
