//! openum as the caller, for `caller_compare` and `caller_memory`: the call service started as
//! `openum serve` starts it (SQLite store, registry, local audio, rsipstack over UDP), with one
//! gateway pointing at the benchmark's SIPp UAS; calls placed at ~500 per second.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use call_runtime::SipCallService;
use calls::id::mint_phone_call_id;
use calls::{CallRecord, CallService, CallState};
use server::config::{GatewayConfig, RtpSocketsMode, SipConfig};
use server::registry::Registry;
use server::voicemail::LocalAudio;

/// openum's SIP port in the benchmarks (53000–53999 is this harness's range).
pub(crate) const OPENUM_SIP: u16 = 53060;

pub(crate) struct Caller {
    pub(crate) registry: Arc<Registry>,
    pub(crate) service: SipCallService,
    item: String,
}

impl Caller {
    /// Starts the service in `dir` with a message of `message_secs` seconds, calling the UAS
    /// at `127.0.0.1:uas_port`, with one RTP socket pair per call or (`shared`) per shard.
    pub(crate) async fn start(dir: &Path, uas_port: u16, message_secs: f32, shared: bool) -> Self {
        let (registry, item) = crate::bench_store::bench_store(dir, message_secs).await;
        let sip = SipConfig {
            listen: ([127, 0, 0, 1], OPENUM_SIP).into(),
            rtp_sockets: if shared {
                RtpSocketsMode::Shared
            } else {
                RtpSocketsMode::PerCall
            },
            ..SipConfig::default()
        };
        let gateway = GatewayConfig {
            uri: format!("sip:{{number}}@127.0.0.1:{uas_port}"),
            max_concurrent_calls: 100_000,
            calls_per_second: 100_000,
            ring_timeout_secs: 300,
            ..GatewayConfig::default()
        };
        let service = SipCallService::start(
            Arc::clone(&registry) as _,
            Arc::new(LocalAudio::new(dir.to_owned())),
            &(&sip).into(),
            (&gateway).into(),
        )
        .await
        .expect("SIP call service");
        Self {
            registry,
            service,
            item,
        }
    }

    /// Places `n` calls to `number` at ~500 per second; returns their PhoneCallIds.
    pub(crate) async fn place(&self, n: usize, number: &str) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let record = CallRecord::dialling(
                mint_phone_call_id("bench"),
                "bench",
                "bench",
                number,
                self.item.clone(),
                0,
            );
            self.registry.insert(&record).await.expect("call recorded");
            self.service.place(&record).await.expect("call placed");
            ids.push(record.id);
            // ~500 calls per second, as call_load and the SIPp caller (-r 500).
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        ids
    }

    /// Waits (up to `within`) until every call of `ids` is in `state`; returns how many are.
    pub(crate) async fn wait_for(
        &self,
        ids: &[String],
        state: CallState,
        within: Duration,
    ) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let mut reached = 0;
            for id in ids {
                let record = self.registry.get(id).await.expect("registry read");
                if record.is_some_and(|r| r.state == state) {
                    reached += 1;
                }
            }
            if reached == ids.len() || Instant::now() >= deadline {
                return reached;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Hangs up `ids` and waits until no call is live.
    pub(crate) async fn hang_up(&self, ids: &[String]) {
        for id in ids {
            self.service.hangup(id).await;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.service.live_calls() > 0 {
            assert!(
                Instant::now() < deadline,
                "{} calls still live 60 s after the hang-up",
                self.service.live_calls()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
