//! The relay: the hub replicates each of its databases with the upstream, both ways, in rounds
//! (every `relay_interval_secs`), for as long as it runs. While the upstream is unreachable
//! the changes wait in the hub's store (the backlog) and the round is retried; checkpoints on
//! both ends mean nothing is sent twice once it returns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hub::admin::RelayStatus;
use hub::secrets::Upstream;
use replicate::{Endpoint, HttpDb, LocalDb, Replication, Retry};
use store::Store;

pub struct Relay {
    pub store: Arc<Store>,
    pub upstream: Upstream,
    pub databases: Vec<String>,
    pub interval: Duration,
    pub status: RelayStatus,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Relay {
    fn endpoints(&self, db: &str) -> Result<(Endpoint, Endpoint), replicate::Error> {
        let local = Endpoint::Local(LocalDb {
            store: self.store.clone(),
            db: db.to_owned(),
            // The hub's relay, its own principal: no role, so no records and no role checks;
            // this endpoint on the hub's own copy is all it reaches.
            actor: store::Session::relay(),
        });
        let url = format!("{}/{}", self.upstream.url, replicate::encode_component(db));
        let fp = (!self.upstream.tls_fingerprint.is_empty())
            .then_some(self.upstream.tls_fingerprint.as_str());
        let remote = HttpDb::new_pinned(
            &url,
            Some(&self.upstream.user),
            Some(&self.upstream.password),
            fp,
        )?;
        Ok((local, Endpoint::Http(remote)))
    }

    async fn round(
        &self,
        pushed: &mut HashMap<String, u64>,
    ) -> Result<(u64, u64), replicate::Error> {
        let (mut up, mut down) = (0, 0);
        for db in &self.databases {
            let (local, remote) = self.endpoints(db)?;
            let quick = Retry {
                max_retries: 1,
                initial: Duration::from_millis(200),
                max_delay: Duration::from_secs(1),
            };
            let mut push = Replication::new(local.clone(), remote.clone());
            push.retry = quick;
            let s = push.run_once(|_| {}).await?;
            up += s.docs_written;
            if let Some(seq) = s.last_seq.as_u64() {
                pushed.insert(db.clone(), seq);
            }
            let mut pull = Replication::new(remote, local);
            pull.retry = quick;
            pull.create_target = false;
            down += pull.run_once(|_| {}).await?.docs_written;
        }
        Ok((up, down))
    }

    fn backlog(&self, pushed: &HashMap<String, u64>) -> u64 {
        self.databases
            .iter()
            .map(|db| {
                let seq = self.store.update_seq(db).unwrap_or(0);
                seq.saturating_sub(pushed.get(db).copied().unwrap_or(0))
            })
            .sum()
    }

    /// Runs rounds until `stop` completes.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let mut pushed = HashMap::new();
        tokio::pin!(stop);
        loop {
            let result = tokio::select! {
                r = self.round(&mut pushed) => r,
                _ = &mut stop => return,
            };
            let backlog = self.backlog(&pushed);
            {
                let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
                s.backlog = backlog;
                match result {
                    Ok((up, down)) => {
                        s.last_success = Some(now());
                        s.docs_pushed += up;
                        s.docs_pulled += down;
                    }
                    Err(e) => {
                        s.errors += 1;
                        s.last_error = Some((now(), e.to_string()));
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
