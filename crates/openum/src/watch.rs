//! `openum watch` (and `call --wait`): follow a call until it ends.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ews_proto::{PhoneCallInformation, PhoneCallState};

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

/// One JSON object for a state.
pub(crate) fn json(info: &PhoneCallInformation) -> String {
    format!(
        "{{\"state\":\"{}\",\"cause\":\"{}\",\"sip_code\":{},\"sip_text\":{}}}",
        info.phone_call_state.as_str(),
        info.connection_failure_cause.as_str(),
        info.sip_response_code
            .map_or_else(|| "null".to_owned(), |c| c.to_string()),
        info.sip_response_text
            .as_deref()
            .map_or_else(|| "null".to_owned(), |t| format!("{t:?}")),
    )
}

/// Polls until the call is Disconnected. On a terminal (and without `--json`) one progress line
/// is redrawn with a spinner and the elapsed time; otherwise each change is printed on its own
/// line (text, or JSON lines with `--json`). Exit code 0 when the call ended.
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
                return crate::remote::client_failure(&error);
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
            return ExitCode::SUCCESS;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
