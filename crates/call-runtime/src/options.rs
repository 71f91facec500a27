//! OPTIONS pings (RFC 3261 §11) marking gateways up and down.
//!
//! A gateway with `options` set is pinged every `interval`. A ping counts as answered when a
//! final response other than 408 or 5xx arrives (a 404 or 405 still proves the gateway is
//! there); no response before Timer F, a transport failure, a 408 or a 5xx count as failed.
//! `down_after` failed pings in a row mark an up gateway down, `up_after` answered ones in a
//! row mark a down gateway up; each change is logged. Down gateways are skipped by new calls
//! (see [`crate::gateways`]).

use std::sync::Arc;

use rsipstack::sip::{Method, SipMessage, Transport, Uri};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transaction::{make_tag, make_via_branch};
use rsipstack::transport::SipAddr;

use crate::gateways::{uri_host_port, Gateway, Gateways};
use crate::settings::{OptionsPing, Transport as GatewayTransport};
use crate::sip::SipStack;

/// Why an out-of-dialog request (OPTIONS, REGISTER) cannot be routed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The gateway's host could not be located.
    #[error(transparent)]
    Dns(#[from] crate::dns::DnsError),
    /// It located to nothing.
    #[error("the gateway host {0} has no address")]
    NoAddress(String),
    /// No connection to it could be found or opened.
    #[error("no transport to {target}")]
    Transport {
        /// Where to.
        target: String,
        /// rsipstack's error.
        #[source]
        source: Box<rsipstack::Error>,
    },
}

/// Where an out-of-dialog request to `host_port` goes, and the Via for it: the host located as
/// for calls (RFC 3263; the first address), and the local transport it leaves on (the
/// connection looked up, or opened for TCP), so that Via names that transport and address.
pub(crate) async fn route_request(
    stack: &SipStack,
    resolver: &crate::dns::Resolver,
    host_port: &str,
    transport: GatewayTransport,
) -> Result<(SipAddr, rsipstack::sip::typed::Via), RouteError> {
    let target = resolver
        .locate(host_port, transport)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| RouteError::NoAddress(host_port.to_owned()))?;
    let destination = SipAddr {
        r#type: Some(match transport {
            GatewayTransport::Udp => Transport::Udp,
            // TLS gateways are reached through their own connection (see `send_options`).
            GatewayTransport::Tcp | GatewayTransport::Tls => Transport::Tcp,
        }),
        addr: target.into(),
    };
    let transport_error = |source| RouteError::Transport {
        target: target.to_string(),
        source: Box::new(source),
    };
    let (connection, _) = stack
        .endpoint
        .transport_layer
        .lookup(&destination, None)
        .await
        .map_err(transport_error)?;
    let via = stack
        .endpoint
        .get_via(Some(connection.get_addr().clone()), Some(make_via_branch()))
        .map_err(transport_error)?;
    Ok((destination, via))
}

/// Why a ping counts as failed.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    /// The gateway cannot be reached.
    #[error("cannot route the OPTIONS")]
    Route(#[from] RouteError),
    /// The request could not be built from the gateway's settings.
    #[error("invalid gateway setting {0}")]
    Setting(String),
    /// rsipstack could not send it.
    #[error("cannot send the OPTIONS")]
    Send(#[source] Box<rsipstack::Error>),
    /// No connection to the gateway (over TLS: the connection or the certificate check failed).
    #[error("cannot reach the gateway")]
    Connect(#[source] Box<crate::sip::SipError>),
    /// No final response came (Timer F).
    #[error("no response")]
    NoResponse,
    /// The gateway answered with a failure that means it takes no calls.
    #[error("answered {0}")]
    Refused(u16),
}

/// Starts one ping task per gateway that has pings configured; they end with the stack.
pub(crate) fn spawn_pings(
    stack: &Arc<SipStack>,
    gateways: &Arc<Gateways>,
    resolver: &crate::dns::Resolver,
) {
    for gateway in gateways.all() {
        let Some(ping) = gateway.settings.options else {
            continue;
        };
        let stack = Arc::clone(stack);
        let gateway = Arc::clone(gateway);
        let resolver = resolver.clone();
        let cancel = stack.cancel_token();
        tokio::spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = ping_loop(&stack, &gateway, &resolver, ping) => {}
            }
        });
    }
}

async fn ping_loop(
    stack: &SipStack,
    gateway: &Gateway,
    resolver: &crate::dns::Resolver,
    ping: OptionsPing,
) {
    let mut counter = Counter::default();
    let mut ticks = tokio::time::interval(ping.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0_u32;
    loop {
        ticks.tick().await;
        seq = seq.wrapping_add(1);
        let result = send_options(stack, resolver, gateway, seq).await;
        let answered = result.is_ok();
        if let Err(error) = &result {
            tracing::debug!(gateway = %gateway.name(), error = %calls::error_chain(error), "OPTIONS ping failed");
        }
        if let Some(up) = counter.record(answered, gateway.is_up(), ping) {
            if gateway.set_up(up) {
                if up {
                    tracing::info!(gateway = %gateway.name(), "gateway up: it answers OPTIONS again");
                } else {
                    let error = result.err().map(|e| calls::error_chain(&e));
                    tracing::warn!(gateway = %gateway.name(), error = ?error, failed = ping.down_after, "gateway down: OPTIONS unanswered");
                }
            }
        }
    }
}

/// Consecutive ping outcomes.
#[derive(Debug, Default)]
struct Counter {
    answered: u32,
    failed: u32,
}

impl Counter {
    /// Records one outcome; the state the gateway must take, if a threshold is reached.
    fn record(&mut self, answered: bool, up: bool, ping: OptionsPing) -> Option<bool> {
        if answered {
            self.answered = self.answered.saturating_add(1);
            self.failed = 0;
            (!up && self.answered >= ping.up_after).then_some(true)
        } else {
            self.failed = self.failed.saturating_add(1);
            self.answered = 0;
            (up && self.failed >= ping.down_after).then_some(false)
        }
    }
}

/// Sends one OPTIONS to `gateway` and waits for its final response.
pub async fn send_options(
    stack: &SipStack,
    resolver: &crate::dns::Resolver,
    gateway: &Gateway,
    seq: u32,
) -> Result<(), PingError> {
    let settings = &gateway.settings;
    let host_port = uri_host_port(&settings.uri).to_owned();
    // Over TLS: a sips: target for a sips: URI, else transport=tls (RFC 3261 §26.2.2).
    let sips = settings.uri.starts_with("sips:");
    let (scheme, suffix) = match settings.transport {
        _ if sips => ("sips", ""),
        _ if gateway.tls.is_some() => ("sip", ";transport=tls"),
        GatewayTransport::Udp => ("sip", ""),
        GatewayTransport::Tcp | GatewayTransport::Tls => ("sip", ";transport=tcp"),
    };
    let target_text = format!("{scheme}:{host_port}{suffix}");
    let target = Uri::try_from(target_text.as_str())
        .map_err(|e| PingError::Setting(format!("uri {target_text:?}: {e}")))?;
    let destination_text = settings.address.clone().unwrap_or(host_port);
    let (destination, via) = if gateway.tls.is_some() {
        // Over TLS, through the gateway's own connection (its CA, client certificate and
        // server name); a port is needed to connect: the URI's, else 5061.
        let target = crate::sip::gateway_target(settings);
        let (destination, transport) = stack
            .destination(gateway, &target)
            .await
            .map_err(|e| PingError::Connect(Box::new(e)))?;
        let via = stack.via(transport).map_err(PingError::Send)?;
        (destination, via)
    } else {
        route_request(stack, resolver, &destination_text, settings.transport).await?
    };
    let from_text = settings
        .from
        .clone()
        .unwrap_or_else(|| format!("sip:openum@{}", stack.local_addr()));
    let from_uri = Uri::try_from(from_text.as_str())
        .map_err(|e| PingError::Setting(format!("from {from_text:?}: {e}")))?;
    let endpoint = &stack.endpoint;

    let from = rsipstack::sip::typed::From {
        display_name: None,
        uri: from_uri,
        params: vec![],
    }
    .with_tag(make_tag());
    let to = rsipstack::sip::typed::To {
        display_name: None,
        uri: target.clone(),
        params: vec![],
    };
    let request = endpoint.make_request(Method::Options, target, via, from, to, seq, None);
    let key = TransactionKey::from_request(&request, TransactionRole::Client)
        .map_err(|e| PingError::Send(Box::new(e)))?;
    let mut tx = Transaction::new_client(key, request, endpoint.clone(), None);
    tx.destination = Some(destination);
    tx.send().await.map_err(|e| PingError::Send(Box::new(e)))?;
    while let Some(message) = tx.receive().await {
        if let SipMessage::Response(response) = message {
            let code = response.status_code.code();
            match code {
                100..=199 => {}
                // rsipstack's own 408 on Timer F carries no To-tag: no peer sent it.
                408 if !crate::sip::has_to_tag(&response) => return Err(PingError::NoResponse),
                408 | 500..=599 => return Err(PingError::Refused(code)),
                _ => return Ok(()),
            }
        }
    }
    Err(PingError::NoResponse)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn thresholds_flip_the_state_once_each_way() {
        let ping = OptionsPing {
            interval: Duration::from_secs(1),
            down_after: 2,
            up_after: 3,
        };
        let mut c = Counter::default();
        assert_eq!(c.record(false, true, ping), None);
        assert_eq!(
            c.record(true, true, ping),
            None,
            "an answer resets the count"
        );
        assert_eq!(c.record(false, true, ping), None);
        assert_eq!(c.record(false, true, ping), Some(false));
        assert_eq!(c.record(true, false, ping), None);
        assert_eq!(c.record(true, false, ping), None);
        assert_eq!(c.record(true, false, ping), Some(true));
        assert_eq!(c.record(true, true, ping), None, "already up");
    }
}
