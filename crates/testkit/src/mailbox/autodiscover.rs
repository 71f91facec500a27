//! SOAP Autodiscover (`POST /autodiscover/autodiscover.svc`): `GetUserSettings`, as Microsoft
//! documents it (`getusersettings-operation-soap`, `usersettings-soap`, `usersettingerrors-soap`,
//! `errorcode-soap`). exchangelib 5.x discovers with this operation only (POX is not tried).
//!
//! Each requested user is answered `NoError` with the settings the double models —
//! `UserDisplayName`, `AutoDiscoverSMTPAddress`, `ExternalEwsUrl`, `InternalEwsUrl` (both the
//! double's EWS URL), `EwsSupportedSchemas`, `CasVersion` — and every other requested setting as
//! a `UserSettingError` `SettingIsNotAvailable`; an address without a mailbox is `InvalidUser`.
//! A request that is not a `GetUserSettingsRequestMessage` envelope is a SOAP fault (HTTP 500).

use std::fmt::Write as _;

use super::xml::{self, escape, Element, SOAP};
use super::Store;

/// The SOAP Autodiscover path (matched case-insensitively).
pub(super) const SVC_PATH: &str = "/autodiscover/autodiscover.svc";

/// The Autodiscover SOAP namespace.
const ANS: &str = "http://schemas.microsoft.com/exchange/2010/Autodiscover";
/// WS-Addressing, for the `Action` header.
const WSA: &str = "http://www.w3.org/2005/08/addressing";

/// The schemas an Exchange 2013 SP1+ CAS lists in `EwsSupportedSchemas`.
const SCHEMAS: &str = "Exchange2007, Exchange2007_SP1, Exchange2010, Exchange2010_SP1, Exchange2010_SP2, Exchange2013, Exchange2013_SP1";

/// The answer to one request: whether it is a fault (HTTP 500), and the document.
pub(super) fn respond(store: &Store, body: &[u8], ews_url: &str) -> (bool, String) {
    let request = std::str::from_utf8(body)
        .ok()
        .and_then(|text| xml::parse(text).ok())
        .and_then(|root| parse_request(&root));
    let Some((users, settings)) = request else {
        return (true, fault());
    };
    let mut responses = String::new();
    for user in &users {
        let mailbox = store
            .mailboxes
            .iter()
            .find(|m| m.primary_smtp.eq_ignore_ascii_case(user) || m.answers_to(user));
        let Some(mailbox) = mailbox else {
            let _ = write!(
                responses,
                "<UserResponse><ErrorCode>InvalidUser</ErrorCode><ErrorMessage>Invalid user: '{}'</ErrorMessage><RedirectTarget i:nil=\"true\"/><UserSettingErrors/><UserSettings/></UserResponse>",
                escape(user)
            );
            continue;
        };
        let smtp = &mailbox.primary_smtp;
        let mut values = String::new();
        let mut errors = String::new();
        for setting in &settings {
            let value = match setting.as_str() {
                "UserDisplayName" | "AutoDiscoverSMTPAddress" => Some(smtp.as_str()),
                "ExternalEwsUrl" | "InternalEwsUrl" => Some(ews_url),
                "EwsSupportedSchemas" => Some(SCHEMAS),
                "CasVersion" => Some("15.00.0939.012"),
                _ => None,
            };
            match value {
                Some(value) => {
                    let _ = write!(
                        values,
                        "<UserSetting i:type=\"StringSetting\"><Name>{}</Name><Value>{}</Value></UserSetting>",
                        escape(setting),
                        escape(value)
                    );
                }
                None => {
                    let _ = write!(
                        errors,
                        "<UserSettingError><ErrorCode>SettingIsNotAvailable</ErrorCode><ErrorMessage>User setting '{0}' is not available. </ErrorMessage><SettingName>{0}</SettingName></UserSettingError>",
                        escape(setting)
                    );
                }
            }
        }
        let _ = write!(
            responses,
            "<UserResponse><ErrorCode>NoError</ErrorCode><ErrorMessage>No error.</ErrorMessage><RedirectTarget i:nil=\"true\"/><UserSettingErrors>{errors}</UserSettingErrors><UserSettings>{values}</UserSettings></UserResponse>"
        );
    }
    let document = format!(
        concat!(
            "<s:Envelope xmlns:s=\"{soap}\" xmlns:a=\"{wsa}\"><s:Header>",
            "<a:Action s:mustUnderstand=\"1\">http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/GetUserSettingsResponse</a:Action>",
            "<h:ServerVersionInfo xmlns:h=\"{ans}\" xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\">",
            "<h:MajorVersion>15</h:MajorVersion><h:MinorVersion>0</h:MinorVersion>",
            "<h:MajorBuildNumber>939</h:MajorBuildNumber><h:MinorBuildNumber>12</h:MinorBuildNumber>",
            "<h:Version>Exchange2013_SP1</h:Version></h:ServerVersionInfo></s:Header><s:Body>",
            "<GetUserSettingsResponseMessage xmlns=\"{ans}\"><Response xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\">",
            "<ErrorCode>NoError</ErrorCode><ErrorMessage/><UserResponses>{responses}</UserResponses>",
            "</Response></GetUserSettingsResponseMessage></s:Body></s:Envelope>"
        ),
        soap = SOAP,
        wsa = WSA,
        ans = ANS,
        responses = responses,
    );
    (false, document)
}

/// The users' addresses and the requested setting names of a `GetUserSettingsRequestMessage`.
fn parse_request(root: &Element) -> Option<(Vec<String>, Vec<String>)> {
    if !root.is(SOAP, "Envelope") {
        return None;
    }
    let request = root
        .child(SOAP, "Body")?
        .child(ANS, "GetUserSettingsRequestMessage")?
        .child(ANS, "Request")?;
    let users: Vec<String> = request
        .child(ANS, "Users")?
        .children
        .iter()
        .filter(|u| u.is(ANS, "User"))
        .filter_map(|u| u.child(ANS, "Mailbox"))
        .map(|m| m.text.trim().to_owned())
        .collect();
    let settings: Vec<String> = request
        .child(ANS, "RequestedSettings")?
        .children
        .iter()
        .filter(|s| s.is(ANS, "Setting"))
        .map(|s| s.text.trim().to_owned())
        .collect();
    (!users.is_empty() && !settings.is_empty()).then_some((users, settings))
}

/// `a:InvalidRequest`, as a SOAP 1.1 fault.
fn fault() -> String {
    format!(
        "<s:Envelope xmlns:s=\"{SOAP}\"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring xml:lang=\"en-US\">The request is not a GetUserSettings request.</faultstring></s:Fault></s:Body></s:Envelope>"
    )
}

#[cfg(test)]
mod tests {
    use super::super::{Mailbox, Store};
    use super::*;

    fn request(user: &str, settings: &[&str]) -> String {
        let settings: String = settings
            .iter()
            .map(|s| format!("<a:Setting>{s}</a:Setting>"))
            .collect();
        format!(
            "<?xml version='1.0' encoding='utf-8'?><s:Envelope xmlns:s=\"{SOAP}\" xmlns:a=\"{ANS}\" xmlns:wsa=\"{WSA}\"><s:Header><a:RequestedServerVersion>Exchange2013</a:RequestedServerVersion></s:Header><s:Body><a:GetUserSettingsRequestMessage><a:Request><a:Users><a:User><a:Mailbox>{user}</a:Mailbox></a:User></a:Users><a:RequestedSettings>{settings}</a:RequestedSettings></a:Request></a:GetUserSettingsRequestMessage></s:Body></s:Envelope>"
        )
    }

    #[test]
    fn known_settings_are_answered_and_the_rest_are_not_available() {
        let mut store = Store::default();
        store.add_mailbox(Mailbox::new("alice@example.com"));
        let body = request(
            "Alice@Example.com",
            &["ExternalEwsUrl", "EwsSupportedSchemas", "ExternalOABUrl"],
        );
        let (is_fault, doc) = respond(&store, body.as_bytes(), "http://x/EWS/Exchange.asmx");
        assert!(!is_fault);
        assert!(
            doc.contains("<Name>ExternalEwsUrl</Name><Value>http://x/EWS/Exchange.asmx</Value>")
        );
        assert!(doc.contains("Exchange2013_SP1</Value>"));
        assert!(doc.contains("<ErrorCode>SettingIsNotAvailable</ErrorCode><ErrorMessage>User setting 'ExternalOABUrl' is not available. </ErrorMessage><SettingName>ExternalOABUrl</SettingName>"));
        let root = xml::parse(&doc).unwrap();
        assert!(root.is(SOAP, "Envelope"));

        let (_, doc) = respond(
            &store,
            request("nobody@example.com", &["ExternalEwsUrl"]).as_bytes(),
            "u",
        );
        assert!(doc.contains("<ErrorCode>InvalidUser</ErrorCode>"));
        let (is_fault, _) = respond(&store, b"<x/>", "u");
        assert!(is_fault);
    }
}
