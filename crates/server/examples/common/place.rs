//! Placing benchmark calls and waiting for them to connect, shared by `call_load` and
//! `secure_call_load`.

use std::time::{Duration, Instant};

use call_runtime::SipCallService;
use calls::id::mint_phone_call_id;
use calls::{CallRecord, CallService, CallState};
use server::registry::Registry;

/// Places `n` calls to 2005551234 playing `item`, ~500 per second (a realistic burst that SIPp
/// keeps up with); returns their PhoneCallIds.
pub(crate) async fn place_calls(
    service: &SipCallService,
    registry: &Registry,
    item: &str,
    n: usize,
) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let record = CallRecord::dialling(
            mint_phone_call_id("bench"),
            "bench",
            "bench",
            "2005551234",
            item.to_owned(),
            0,
        );
        registry.insert(&record).await.unwrap();
        service.place(&record).await.unwrap();
        ids.push(record.id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    ids
}

/// How many of `ids` are Connected once all are, or after 60 s (checked every `poll`).
pub(crate) async fn wait_connected(registry: &Registry, ids: &[String], poll: Duration) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut connected = 0;
    while Instant::now() < deadline {
        connected = 0;
        for id in ids {
            if registry
                .get(id)
                .await
                .unwrap()
                .is_some_and(|r| r.state == CallState::Connected)
            {
                connected += 1;
            }
        }
        if connected == ids.len() {
            break;
        }
        tokio::time::sleep(poll).await;
    }
    connected
}
