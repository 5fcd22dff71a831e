//! Security alerts: the hub's new security events (`Store::security_events_after`: refused
//! logins, refused record accesses, refused device trails, break-glass, account, key, device
//! and policy changes) posted as JSON to a webhook the clinic configures (`security_webhook` in
//! hub.toml), every few seconds, for as long as the hub runs. Each round reads only the trail
//! rows added since the last (a cursor, not a scan); a delivery that fails is sent again at the
//! next round. Events from before the hub started are not posted (the audit trail and
//! `/admin/security-events` keep them).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use store::Store;

/// Posts new security events to `url`.
pub struct Alerts {
    pub store: Arc<Store>,
    pub url: String,
    pub interval: Duration,
}

impl Alerts {
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("hub: security alerts are off: {e}");
                return;
            }
        };
        let store = self.store.clone();
        let Ok(Ok(mut cursor)) = tokio::task::spawn_blocking(move || store.security_cursor()).await
        else {
            eprintln!("hub: security alerts are off: the audit trail cannot be read");
            return;
        };
        loop {
            let store = self.store.clone();
            let read = tokio::task::spawn_blocking(move || store.security_events_after(cursor))
                .await
                .ok()
                .and_then(Result::ok);
            if let Some((events, next)) = read {
                let delivered = events.is_empty() || {
                    let body = json!({
                        "source": "hearth-hub",
                        "events": events.iter().map(store::AuditEntry::to_json).collect::<Vec<_>>(),
                    });
                    match client.post(&self.url).json(&body).send().await {
                        Ok(r) if r.status().is_success() => true,
                        Ok(r) => {
                            eprintln!(
                                "hub: the security webhook answered {}; trying again",
                                r.status()
                            );
                            false
                        }
                        Err(e) => {
                            // Without the URL: it may carry the receiver's secret.
                            eprintln!(
                                "hub: the security webhook is unreachable ({}); trying again",
                                e.without_url()
                            );
                            false
                        }
                    }
                };
                if delivered {
                    cursor = next;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = &mut stop => return,
            }
        }
    }
}
