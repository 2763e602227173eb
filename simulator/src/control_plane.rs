//! What the fleet's control plane ran over time, as the machines themselves
//! report it: each kube-apiserver container's version from the moment the
//! simulated kubelet starts it, each kubelet (re)start with the version it
//! runs, and which etcd members run Ready. The skew check reads the record;
//! the simulated API server (the oldest kube-apiserver) and etcd (a quorum of
//! Ready members) answer from the live view.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;
use upkeep_common::Version;

/// One thing a machine saw happen, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlPlaneEvent {
    /// The kubelet of a control-plane node started a kube-apiserver container.
    ApiServer {
        /// Milliseconds since the record started.
        at_ms: u64,
        /// The node.
        node: String,
        /// The version of the container's image.
        version: Version,
    },
    /// A node's kubelet (re)started.
    Kubelet {
        /// Milliseconds since the record started.
        at_ms: u64,
        /// The node.
        node: String,
        /// The version it runs.
        version: Version,
    },
}

#[derive(Debug, Default)]
struct Inner {
    api_servers: BTreeMap<String, Version>,
    etcd_ready: BTreeMap<String, bool>,
    events: Vec<ControlPlaneEvent>,
}

/// The fleet's control-plane record, shared by every machine.
#[derive(Debug)]
pub struct ControlPlaneLog {
    start: Instant,
    inner: Mutex<Inner>,
}

impl Default for ControlPlaneLog {
    fn default() -> Self {
        Self { start: Instant::now(), inner: Mutex::new(Inner::default()) }
    }
}

impl ControlPlaneLog {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// `node`'s kubelet started a kube-apiserver container of `version`.
    pub fn api_server_started(&self, node: &str, version: Version) {
        let at_ms = self.now_ms();
        let mut inner = self.inner();
        inner.api_servers.insert(node.to_owned(), version.clone());
        inner.events.push(ControlPlaneEvent::ApiServer { at_ms, node: node.to_owned(), version });
    }

    /// `node`'s kubelet (re)started on `version`.
    pub fn kubelet_started(&self, node: &str, version: Version) {
        let at_ms = self.now_ms();
        self.inner().events.push(ControlPlaneEvent::Kubelet { at_ms, node: node.to_owned(), version });
    }

    /// Whether `node`'s etcd member runs Ready.
    pub fn etcd_member(&self, node: &str, ready: bool) {
        self.inner().etcd_ready.insert(node.to_owned(), ready);
    }

    /// The oldest kube-apiserver running now, if any runs.
    pub fn oldest_api_server(&self) -> Option<Version> {
        self.inner().api_servers.values().min().cloned()
    }

    /// etcd's members that run Ready, and how many members there are.
    pub fn etcd_members(&self) -> (usize, usize) {
        let inner = self.inner();
        (inner.etcd_ready.values().filter(|ready| **ready).count(), inner.etcd_ready.len())
    }

    /// Everything recorded so far, in order.
    pub fn events(&self) -> Vec<ControlPlaneEvent> {
        self.inner().events.clone()
    }
}
