//! Security alerts: the hub's new security events (`Store::security_events`: refused logins,
//! refused record accesses, refused device trails, break-glass, account, key, device and
//! policy changes) posted as JSON to a webhook the clinic configures (`security_webhook` in
//! hub.toml), every few seconds, for as long as the hub runs. A delivery that fails is tried
//! again at the next round; nothing is posted twice in one run. Events from before the hub
//! started are not posted (the audit trail and `/admin/security-events` keep them).

use std::collections::{HashSet, VecDeque};
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

/// Ids remembered as posted (the oldest are forgotten first).
const REMEMBERED: usize = 10_000;

impl Alerts {
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
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
        let mut posted: HashSet<String> = HashSet::new();
        let mut order: VecDeque<String> = VecDeque::new();
        loop {
            let store = self.store.clone();
            let events = tokio::task::spawn_blocking(move || store.security_events(500))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let new: Vec<_> = events
                .into_iter()
                .rev()
                .filter(|e| e.time >= started && !posted.contains(&e.id))
                .collect();
            if !new.is_empty() {
                let body = json!({
                    "source": "hearth-hub",
                    "events": new.iter().map(store::AuditEntry::to_json).collect::<Vec<_>>(),
                });
                match client.post(&self.url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        for e in new {
                            posted.insert(e.id.clone());
                            order.push_back(e.id);
                            if order.len() > REMEMBERED
                                && let Some(old) = order.pop_front()
                            {
                                posted.remove(&old);
                            }
                        }
                    }
                    Ok(r) => eprintln!(
                        "hub: the security webhook answered {}; trying again",
                        r.status()
                    ),
                    Err(e) => {
                        eprintln!("hub: the security webhook is unreachable ({e}); trying again")
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = &mut stop => return,
            }
        }
    }
}
