//! Where the service keeps each cluster's records in the store: the spec, the
//! running update, every update, the request tokens, the history, each
//! update's events and its rollout journal. Reads are async calls; writes go
//! into a [`Batch`] the caller commits with whatever else belongs with them.

use std::sync::Arc;

use crate::journal::JournalStore;
use crate::store::{Batch, Store, StoreError, decode_json, get_json, json, scan_json};

use super::checks::NodesBefore;
use super::model::{ClusterSpec, HistoryEntry, Update, UpdateEvent};

/// The service's records in a store.
#[derive(Clone)]
pub struct Records {
    store: Arc<dyn Store>,
}

fn cluster_key(cluster: &str, rest: &str) -> String {
    format!("clusters/{cluster}/{rest}")
}

fn event_prefix(cluster: &str, update: &str) -> String {
    format!("events/{cluster}/{update}/")
}

impl Records {
    /// The records in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The store itself, to commit batches.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The cluster's spec, once one was saved.
    pub async fn spec(&self, cluster: &str) -> Result<Option<ClusterSpec>, StoreError> {
        get_json(self.store.as_ref(), &cluster_key(cluster, "spec")).await
    }

    /// Saves the cluster's spec.
    pub fn put_spec(batch: &mut Batch, cluster: &str, spec: &ClusterSpec) {
        batch.put(cluster_key(cluster, "spec"), json(spec));
    }

    /// The id of the cluster's running update, if any.
    pub async fn current(&self, cluster: &str) -> Result<Option<String>, StoreError> {
        get_json(self.store.as_ref(), &cluster_key(cluster, "current")).await
    }

    /// Sets or clears the cluster's running update.
    pub fn put_current(batch: &mut Batch, cluster: &str, update: Option<&str>) {
        match update {
            Some(id) => batch.put(cluster_key(cluster, "current"), json(&id)),
            None => batch.delete(cluster_key(cluster, "current")),
        };
    }

    /// One update.
    pub async fn update(&self, cluster: &str, id: &str) -> Result<Option<Update>, StoreError> {
        get_json(self.store.as_ref(), &cluster_key(cluster, &format!("updates/{id}"))).await
    }

    /// Every update of the cluster, oldest first (ids sort by creation time).
    pub async fn updates(&self, cluster: &str) -> Result<Vec<Update>, StoreError> {
        let entries: Vec<(String, Update)> = scan_json(self.store.as_ref(), &cluster_key(cluster, "updates/")).await?;
        Ok(entries.into_iter().map(|(_, update)| update).collect())
    }

    /// Saves an update.
    pub fn put_update(batch: &mut Batch, update: &Update) {
        batch.put(cluster_key(&update.cluster, &format!("updates/{}", update.id)), json(update));
    }

    /// The update a caller's request token started, if any.
    pub async fn token(&self, cluster: &str, token: &str) -> Result<Option<String>, StoreError> {
        get_json(self.store.as_ref(), &cluster_key(cluster, &format!("tokens/{token}"))).await
    }

    /// Remembers which update a request token started.
    pub fn put_token(batch: &mut Batch, cluster: &str, token: &str, update: &str) {
        batch.put(cluster_key(cluster, &format!("tokens/{token}")), json(&update));
    }

    /// The cluster's history, newest first.
    pub async fn history(&self, cluster: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        Ok(get_json(self.store.as_ref(), &cluster_key(cluster, "history")).await?.unwrap_or_default())
    }

    /// Saves the cluster's history.
    pub fn put_history(batch: &mut Batch, cluster: &str, history: &[HistoryEntry]) {
        batch.put(cluster_key(cluster, "history"), json(&history));
    }

    /// Up to `limit` stored events of an update from sequence number `from`.
    pub async fn events(
        &self,
        cluster: &str,
        update: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<UpdateEvent>, StoreError> {
        let prefix = event_prefix(cluster, update);
        let after = (from > 0).then(|| format!("{prefix}{:012}", from - 1));
        let entries = self.store.scan(&prefix, after.as_deref(), limit).await?;
        entries.into_iter().map(|(key, bytes)| decode_json(&key, &bytes)).collect()
    }

    /// The last stored sequence number of an update's events (0 when none).
    pub async fn last_event(&self, cluster: &str, update: &str) -> Result<u64, StoreError> {
        let mut last = 0;
        loop {
            let page = self.events(cluster, update, last + 1, 10_000).await?;
            match page.last() {
                Some(event) => last = event.seq,
                None => return Ok(last),
            }
        }
    }

    /// Saves an event.
    pub fn put_event(batch: &mut Batch, cluster: &str, update: &str, event: &UpdateEvent) {
        batch.put(format!("{}{:012}", event_prefix(cluster, update), event.seq), json(event));
    }

    /// What PreCheck learned of the nodes before an update.
    pub async fn nodes_before(&self, cluster: &str, update: &str) -> Result<Option<NodesBefore>, StoreError> {
        get_json(self.store.as_ref(), &format!("before/{cluster}/{update}")).await
    }

    /// Saves what PreCheck learned of the nodes.
    pub fn put_nodes_before(batch: &mut Batch, cluster: &str, update: &str, before: &NodesBefore) {
        batch.put(format!("before/{cluster}/{update}"), json(before));
    }

    /// The rollout journal of an update.
    pub fn journal(&self, cluster: &str, update: &str) -> JournalStore {
        JournalStore::new(self.store.clone(), format!("rollouts/{cluster}/{update}/"))
    }
}
