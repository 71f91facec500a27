//! Outbound registration (RFC 3261 §10) for gateways that take calls only from registered
//! users, such as SIP trunk providers.
//!
//! One task per gateway with `register` set: it sends REGISTER to the registrar with the
//! gateway's `username`/`password` answering 401/407 digest challenges (openum's own digest,
//! [`call_engine::digest`], which also answers SHA-256), keeps one Call-ID and increasing CSeq
//! across refreshes (§10.2.4), refreshes at half the lifetime the registrar granted, follows a
//! 423's Min-Expires, and after a failure tries again with back-off (1 s doubling to 5 min).
//! The state ([`Registration`]) is logged on change and shown in `/metrics`; new calls through
//! the gateway wait for the first registration up to `call_wait` and skip the gateway while it
//! is not registered.

use std::sync::Arc;
use std::time::Duration;

use call_engine::digest;
use rand::Rng as _;
use rsipstack::sip::{Header, Method, Response, SipMessage, Uri};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::make_tag;
use rsipstack::transaction::transaction::Transaction;

use crate::gateways::{split_host_port, uri_host_port, Gateway, Gateways, Registration};
use crate::settings::{RegisterSettings, Transport as GatewayTransport};
use crate::sip::SipStack;

/// Challenges answered for one REGISTER before giving up (the credentials are refused).
const MAX_CHALLENGES: u32 = 2;

/// Why a registration attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The registrar cannot be reached.
    #[error("cannot route the REGISTER")]
    Route(#[from] crate::options::RouteError),
    /// The request could not be built from the gateway's settings.
    #[error("invalid registration setting {0}")]
    Setting(String),
    /// rsipstack could not send it.
    #[error("cannot send the REGISTER")]
    Send(#[source] Box<rsipstack::Error>),
    /// No connection to the registrar (over TLS: the connection or the certificate check
    /// failed).
    #[error("cannot reach the registrar")]
    Connect(#[source] Box<crate::sip::SipError>),
    /// No final response came (Timer F).
    #[error("no response from the registrar")]
    NoResponse,
    /// The registrar refused it.
    #[error("the registrar answered {code} {reason}")]
    Refused {
        /// The status code.
        code: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// A challenge could not be answered.
    #[error("cannot answer the registrar's challenge")]
    Challenge(#[source] digest::DigestError),
    /// The registrar challenged again after credentials were sent.
    #[error("the registrar refused the credentials")]
    CredentialsRefused,
}

/// Starts one registration task per gateway that registers; they end with the stack.
pub(crate) fn spawn_registrations(
    stack: &Arc<SipStack>,
    gateways: &Arc<Gateways>,
    resolver: &crate::dns::Resolver,
) {
    for gateway in gateways.all() {
        let Some(register) = gateway.settings.register.clone() else {
            continue;
        };
        let stack = Arc::clone(stack);
        let gateway = Arc::clone(gateway);
        let resolver = resolver.clone();
        let cancel = stack.cancel_token();
        tokio::spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = register_loop(&stack, &resolver, &gateway, &register) => {}
            }
        });
    }
}

/// When to refresh a binding granted for `granted`: at half its lifetime, at least 1 s.
pub fn refresh_after(granted: Duration) -> Duration {
    (granted / 2).max(Duration::from_secs(1))
}

/// How long to wait after `failures` failed attempts in a row: 1 s doubling to 5 min.
pub fn retry_after(failures: u32) -> Duration {
    Duration::from_secs(1_u64 << failures.saturating_sub(1).min(9)).min(Duration::from_secs(300))
}

async fn register_loop(
    stack: &SipStack,
    resolver: &crate::dns::Resolver,
    gateway: &Gateway,
    register: &RegisterSettings,
) {
    let mut session = Session {
        call_id: format!("{:032x}@openum", rand::thread_rng().gen::<u128>()),
        from_tag: make_tag().to_string(),
        cseq: 0,
        expires: register.expires_secs,
    };
    let mut failures = 0_u32;
    loop {
        let wait = match session.register(stack, resolver, gateway, register).await {
            Ok(granted) => {
                failures = 0;
                if gateway.set_registration(Registration::Registered) {
                    tracing::info!(gateway = %gateway.name(), registrar = %register.registrar, expires = granted.as_secs(), "gateway registered");
                }
                refresh_after(granted)
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let retry = retry_after(failures);
                gateway.set_registration(Registration::Failed);
                tracing::warn!(
                    gateway = %gateway.name(),
                    registrar = %register.registrar,
                    error = %calls::error_chain(&error),
                    retry_in_secs = retry.as_secs(),
                    "gateway registration failed"
                );
                retry
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// One registration's identity across refreshes.
struct Session {
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// The lifetime asked for (raised by a 423's Min-Expires).
    expires: u32,
}

impl Session {
    /// One REGISTER exchange, answering challenges; the lifetime granted.
    async fn register(
        &mut self,
        stack: &SipStack,
        resolver: &crate::dns::Resolver,
        gateway: &Gateway,
        register: &RegisterSettings,
    ) -> Result<Duration, RegisterError> {
        let settings = &gateway.settings;
        let (username, password) = settings
            .credentials
            .clone()
            .unwrap_or_else(|| ("openum".to_owned(), String::new()));
        let registrar_host = uri_host_port(&register.registrar).to_owned();
        let (registrar_name, _) =
            split_host_port(&registrar_host).map_err(RegisterError::Setting)?;
        // A sips: registrar (RFC 3261 §10.2.1, §26.2.2): a SIPS address of record and Contact;
        // over TLS to a sip: one, the Contact says transport=tls.
        let sips = register.registrar.starts_with("sips:");
        let scheme = if sips { "sips" } else { "sip" };
        let aor = format!("{scheme}:{username}@{registrar_name}");
        let contact_suffix = match settings.transport {
            _ if sips => "",
            _ if gateway.tls.is_some() => ";transport=tls",
            GatewayTransport::Udp => "",
            GatewayTransport::Tcp | GatewayTransport::Tls => ";transport=tcp",
        };
        let contact = format!(
            "<{scheme}:{username}@{}{contact_suffix}>",
            stack.local_addr()
        );
        // The gateway's `address` if set, else the registrar's host: over TLS with 5061 by
        // default, through the gateway's own connection; otherwise located as for calls.
        let tls = gateway.tls.is_some();
        let destination_text = settings.address.clone().unwrap_or_else(|| {
            if tls || sips {
                with_default_port(&registrar_host, true)
            } else {
                registrar_host
            }
        });
        let mut authorization: Option<Header> = None;
        let mut challenges = 0;
        loop {
            self.cseq = self.cseq.wrapping_add(1);
            let request_uri = Uri::try_from(register.registrar.as_str()).map_err(|e| {
                RegisterError::Setting(format!("registrar {:?}: {e}", register.registrar))
            })?;
            let aor_uri = Uri::try_from(aor.as_str())
                .map_err(|e| RegisterError::Setting(format!("address of record {aor:?}: {e}")))?;
            let endpoint = &stack.endpoint;
            let (destination, via) = if tls {
                let (destination, transport) = stack
                    .destination(gateway, &destination_text)
                    .await
                    .map_err(|e| RegisterError::Connect(Box::new(e)))?;
                let via = stack.via(transport).map_err(RegisterError::Send)?;
                (destination, via)
            } else {
                crate::options::route_request(
                    stack,
                    resolver,
                    &destination_text,
                    settings.transport,
                )
                .await?
            };
            let from = rsipstack::sip::typed::From {
                display_name: None,
                uri: aor_uri.clone(),
                params: vec![],
            }
            .with_tag(self.from_tag.clone().into());
            let to = rsipstack::sip::typed::To {
                display_name: None,
                uri: aor_uri,
                params: vec![],
            };
            let mut request = endpoint.make_request(
                Method::Register,
                request_uri,
                via,
                from,
                to,
                self.cseq,
                Some(self.call_id.clone().into()),
            );
            request
                .headers
                .push(Header::Contact(contact.clone().into()));
            request
                .headers
                .push(Header::Expires(self.expires.to_string().into()));
            if let Some(header) = authorization.take() {
                request.headers.push(header);
            }
            let key = TransactionKey::from_request(&request, TransactionRole::Client)
                .map_err(|e| RegisterError::Send(Box::new(e)))?;
            let mut tx = Transaction::new_client(key, request, endpoint.clone(), None);
            tx.destination = Some(destination);
            tx.send()
                .await
                .map_err(|e| RegisterError::Send(Box::new(e)))?;
            let response = final_response(&mut tx).await?;
            let code = response.status_code.code();
            match code {
                200..=299 => return Ok(granted(&response, self.expires)),
                401 | 407 => {
                    challenges += 1;
                    if challenges > MAX_CHALLENGES {
                        return Err(RegisterError::CredentialsRefused);
                    }
                    let proxy = code == 407;
                    let values: Vec<&str> = response
                        .headers
                        .iter()
                        .filter_map(|h| match h {
                            Header::WwwAuthenticate(v) if !proxy => Some(v.value()),
                            Header::ProxyAuthenticate(v) if proxy => Some(v.value()),
                            _ => None,
                        })
                        .collect();
                    let challenge = digest::choose(values).map_err(RegisterError::Challenge)?;
                    let cnonce = format!("{:032x}", rand::thread_rng().gen::<u128>());
                    let value = digest::answer(
                        &challenge,
                        &digest::Request {
                            method: "REGISTER",
                            uri: &register.registrar,
                            username: &username,
                            password: &password,
                            cnonce: &cnonce,
                            nonce_count: 1,
                        },
                    );
                    authorization = Some(if proxy {
                        Header::ProxyAuthorization(value.into())
                    } else {
                        Header::Authorization(value.into())
                    });
                }
                423 => {
                    let min = header_value(&response, "Min-Expires")
                        .and_then(|v| v.trim().parse::<u32>().ok())
                        .filter(|&min| min > self.expires)
                        .ok_or_else(|| refused(&response))?;
                    self.expires = min;
                }
                _ => return Err(refused(&response)),
            }
        }
    }
}

/// `host:port` with 5060 added when no port is given.
fn with_default_port(host_port: &str, tls: bool) -> String {
    match split_host_port(host_port) {
        Ok((_, Some(_))) => host_port.to_owned(),
        _ if tls => format!("{host_port}:5061"),
        _ => format!("{host_port}:5060"),
    }
}

async fn final_response(tx: &mut Transaction) -> Result<Response, RegisterError> {
    while let Some(message) = tx.receive().await {
        if let SipMessage::Response(response) = message {
            let code = response.status_code.code();
            // rsipstack's own 408 on Timer F carries no To-tag: no peer sent it.
            if code == 408 && !crate::sip::has_to_tag(&response) {
                return Err(RegisterError::NoResponse);
            }
            if code >= 200 {
                return Ok(response);
            }
        }
    }
    Err(RegisterError::NoResponse)
}

fn refused(response: &Response) -> RegisterError {
    let status = crate::sip::status_of(response);
    RegisterError::Refused {
        code: status.code,
        reason: status.reason,
    }
}

fn header_value<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers.iter().find_map(|h| match h {
        Header::Other(n, v) if n.eq_ignore_ascii_case(name) => Some(v.as_str()),
        Header::MinExpires(v) if name.eq_ignore_ascii_case("Min-Expires") => Some(v.value()),
        Header::Expires(v) if name.eq_ignore_ascii_case("Expires") => Some(v.value()),
        _ => None,
    })
}

/// The lifetime the registrar granted: the `expires` parameter of a Contact in the 200 (the
/// registrar lists our binding, and a registration of one binding gets one back), else the
/// `Expires` header, else what was asked.
fn granted(response: &Response, asked: u32) -> Duration {
    let from_contact = response.headers.iter().find_map(|h| match h {
        Header::Contact(v) => v
            .value()
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("expires="))
            .find_map(|v| v.trim().parse::<u64>().ok()),
        _ => None,
    });
    let secs = from_contact
        .or_else(|| header_value(response, "Expires").and_then(|v| v.trim().parse().ok()))
        .unwrap_or(u64::from(asked));
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_come_at_half_the_lifetime_and_retries_back_off_to_five_minutes() {
        assert_eq!(
            refresh_after(Duration::from_secs(600)),
            Duration::from_secs(300)
        );
        assert_eq!(refresh_after(Duration::ZERO), Duration::from_secs(1));
        let waits: Vec<u64> = (1..=12).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }

    #[test]
    fn the_granted_lifetime_comes_from_the_contact_then_expires() {
        let parse = |text: &str| match SipMessage::try_from(text).unwrap() {
            SipMessage::Response(r) => r,
            SipMessage::Request(_) => unreachable!(),
        };
        let head = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@r>;tag=1\r\nTo: <sip:a@r>;tag=2\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n";
        let r = parse(&format!(
            "{head}Contact: <sip:a@127.0.0.1:5060>;expires=120\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
        ));
        assert_eq!(granted(&r, 600), Duration::from_secs(120));
        let r = parse(&format!("{head}Expires: 90\r\nContent-Length: 0\r\n\r\n"));
        assert_eq!(granted(&r, 600), Duration::from_secs(90));
        let r = parse(&format!("{head}Content-Length: 0\r\n\r\n"));
        assert_eq!(granted(&r, 600), Duration::from_secs(600));
        assert_eq!(with_default_port("kam.example", false), "kam.example:5060");
        assert_eq!(with_default_port("kam.example", true), "kam.example:5061");
        assert_eq!(with_default_port("127.0.0.1:5070", true), "127.0.0.1:5070");
    }
}
