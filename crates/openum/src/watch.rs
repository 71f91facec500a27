//! `openum watch` (and `call --wait`): follow a call until it ends.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ews_proto::{ConnectionFailureCause, PhoneCallInformation, PhoneCallState, ResponseCode};
use serde::Serialize;

use crate::remote::{exit, Report};

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// One line of text for a state.
pub(crate) fn describe(info: &PhoneCallInformation) -> String {
    let mut line = format!(
        "{} {}",
        info.phone_call_state.as_str(),
        info.connection_failure_cause.as_str()
    );
    if let Some(code) = info.sip_response_code {
        line.push_str(&format!(" {code}"));
    }
    if let Some(text) = &info.sip_response_text {
        line.push_str(&format!(" {text}"));
    }
    line
}

/// One JSON object for a state: `{"state":…,"cause":…,"sip_code":…,"sip_text":…}`, the SIP
/// fields `null` when absent.
pub(crate) fn json(info: &PhoneCallInformation) -> String {
    #[derive(Serialize)]
    struct State<'a> {
        state: &'a str,
        cause: &'a str,
        sip_code: Option<i32>,
        sip_text: Option<&'a str>,
    }
    json_line(&State {
        state: info.phone_call_state.as_str(),
        cause: info.connection_failure_cause.as_str(),
        sip_code: info.sip_response_code,
        sip_text: info.sip_response_text.as_deref(),
    })
}

/// The JSON object `openum call --json` prints for a placed call: `{"phone_call_id":…}`.
pub(crate) fn json_call_id(id: &str) -> String {
    #[derive(Serialize)]
    struct Placed<'a> {
        phone_call_id: &'a str,
    }
    json_line(&Placed { phone_call_id: id })
}

/// The JSON object `openum hangup --json` prints when the call was ended:
/// `{"response_code":"NoError"}`.
pub(crate) fn json_hung_up() -> String {
    #[derive(Serialize)]
    struct HungUp {
        response_code: &'static str,
    }
    json_line(&HungUp {
        response_code: ResponseCode::NoError.as_str(),
    })
}

/// The JSON object a call command writes to stderr for an error with `--json`:
/// `{"error":…,"class":…,"exit_code":…}` — `class` is e.g. `connection_refused`,
/// `certificate_not_trusted`, `invalid_url`, `unauthorized`, `ews_error`, `usage`, `call_failed`.
pub(crate) fn json_error(message: &str, class: &str, exit_code: u8) -> String {
    #[derive(Serialize)]
    struct Failure<'a> {
        error: &'a str,
        class: &'a str,
        exit_code: u8,
    }
    json_line(&Failure {
        error: message,
        class,
        exit_code,
    })
}

/// The exit code of a call that ended: 0 without a failure cause, else 5 (said on stderr).
fn ended(info: &PhoneCallInformation, as_json: bool) -> ExitCode {
    if info.connection_failure_cause == ConnectionFailureCause::None {
        return ExitCode::SUCCESS;
    }
    let mut message = format!(
        "the call ended with {}",
        info.connection_failure_cause.as_str()
    );
    if let Some(code) = info.sip_response_code {
        message.push_str(&format!(" (SIP {code}"));
        if let Some(text) = &info.sip_response_text {
            message.push_str(&format!(" {text}"));
        }
        message.push(')');
    }
    Report { json: as_json }.fail(exit::CALL_FAILED, "call_failed", &message)
}

/// `value` as one line of JSON. These plain structs always serialise; were one not to, the line
/// would be JSON `null` rather than a panic.
fn json_line<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// Polls until the call is Disconnected. On a terminal (and without `--json`) one progress line
/// is redrawn with a spinner and the elapsed time; otherwise each change is printed on its own
/// line (text, or JSON lines with `--json`). Exit code 0 when the call ended without a failure
/// cause, 5 (said on stderr) when it ended busy, unanswered, unavailable or otherwise failed.
pub(crate) async fn follow(client: &client::Client, id: &str, as_json: bool) -> ExitCode {
    let live = !as_json && std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut last = String::new();
    let mut tick = 0usize;
    loop {
        let info = match client.get_phone_call_information(id).await {
            Ok(info) => info,
            Err(error) => {
                if live {
                    println!();
                }
                return Report { json: as_json }.client(&error);
            }
        };
        let text = describe(&info);
        let done = info.phone_call_state == PhoneCallState::Disconnected;
        if live {
            let mark = if done {
                '✔'
            } else {
                SPINNER[tick % SPINNER.len()]
            };
            print!(
                "\r\x1b[2K{mark} {text}  ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
            // A progress line that cannot be flushed is shown with the next one; a closed
            // stdout is noticed by the next println!.
            let _ = std::io::stdout().flush();
            tick += 1;
        } else if text != last {
            println!("{}", if as_json { json(&info) } else { text.clone() });
        }
        last = text;
        if done {
            if live {
                println!();
            }
            return ended(&info, as_json);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::Value;

    /// Quotes, backslashes, control characters (C0, DEL, C1) and non-ASCII text.
    const HOSTILE: &str =
        "say \"hi\" \\ C:\\dir\n\t\r\u{0}\u{1}\u{1b}[31m\u{7f}\u{85} naïve — 日本 😀 \u{2028}";

    fn info(text: Option<&str>, code: Option<i32>) -> PhoneCallInformation {
        PhoneCallInformation {
            phone_call_state: PhoneCallState::Disconnected,
            connection_failure_cause: ConnectionFailureCause::UserBusy,
            sip_response_text: text.map(str::to_owned),
            sip_response_code: code,
        }
    }

    #[test]
    fn state_json_with_hostile_sip_text_parses_back_to_the_same_strings() {
        let line = json(&info(Some(HOSTILE), Some(486)));
        assert!(!line.contains('\n'), "one line: {line}");
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["state"], "Disconnected");
        assert_eq!(value["cause"], "UserBusy");
        assert_eq!(value["sip_code"], 486);
        assert_eq!(value["sip_text"].as_str(), Some(HOSTILE));
    }

    #[test]
    fn state_json_keeps_its_key_order_and_writes_absent_sip_fields_as_null() {
        assert_eq!(
            json(&info(Some("Busy Here"), Some(486))),
            r#"{"state":"Disconnected","cause":"UserBusy","sip_code":486,"sip_text":"Busy Here"}"#
        );
        assert_eq!(
            json(&info(None, None)),
            r#"{"state":"Disconnected","cause":"UserBusy","sip_code":null,"sip_text":null}"#
        );
    }

    #[test]
    fn call_id_json_with_hostile_characters_parses_back_to_the_same_string() {
        let line = json_call_id(HOSTILE);
        assert!(!line.contains('\n'), "one line: {line}");
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["phone_call_id"].as_str(), Some(HOSTILE));
        assert_eq!(
            json_call_id("AbrJd11T1k9Ft+uEv6pRi/4="),
            r#"{"phone_call_id":"AbrJd11T1k9Ft+uEv6pRi/4="}"#
        );
    }

    #[test]
    fn error_json_with_hostile_text_parses_back_to_the_same_fields() {
        let line = json_error(HOSTILE, "connection_refused", 1);
        assert!(!line.contains('\n'), "one line: {line}");
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["error"].as_str(), Some(HOSTILE));
        assert_eq!(value["class"], "connection_refused");
        assert_eq!(value["exit_code"], 1);
    }

    #[test]
    fn hang_up_json_is_the_no_error_response_code() {
        assert_eq!(json_hung_up(), r#"{"response_code":"NoError"}"#);
    }
}
