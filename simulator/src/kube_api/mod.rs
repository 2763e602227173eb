//! A fake Kubernetes API server over real HTTPS, serving what the agent uses
//! with Kubernetes' own object shapes, keeping state, and scriptable.
//!
//! # Endpoints and behaviours followed
//!
//! | request | behaviour |
//! |---|---|
//! | `GET /version` | the oldest version a stand-in kubelet reports its kube-apiserver runs, else the configured `gitVersion` (and major, minor...) |
//! | `GET /api/v1/nodes/{name}` | the Node (annotations, `spec.unschedulable`, the Ready condition with its `lastHeartbeatTime`, `status.nodeInfo.kubeletVersion`), or a 404 `Status` |
//! | `PATCH /api/v1/nodes/{name}` | JSON merge patch (RFC 7386) with `application/merge-patch+json` or `application/strategic-merge-patch+json`; any other content type is 415 |
//! | `GET /api/v1/pods?fieldSelector=spec.nodeName=N` | a `PodList` of the pods bound to N (other selectors: 400) |
//! | `GET /api/v1/namespaces/{ns}/pods/{name}` | the Pod, or 404 |
//! | `POST /api/v1/namespaces/{ns}/pods/{name}/eviction` | a policy/v1 `Eviction`: 429 `TooManyRequests` while the pod's scripted disruption budget refuses, else the pod starts terminating (201 `Status` Success) |
//! | `DELETE /api/v1/namespaces/{ns}/pods/{name}` | the pod is gone at once (200 with the Pod) |
//!
//! Every request needs `Authorization: Bearer TOKEN` (401 otherwise). Errors
//! are `Status` objects with `code`, `reason` and `message`, as the real API
//! server sends. A terminating pod keeps its `deletionTimestamp` until its
//! scripted termination time passes, then is gone (404). The server can be
//! made slow (every answer delayed) or down (connections closed at once).
//!
//! A [`SimulatedKubelet`] moves a Node's kubelet version and Ready heartbeat
//! when the kubelet service of a real agent under test is restarted; a
//! [`StaticPodKubelet`] runs the static pods of a real manifest directory and
//! reports their containers in mirror pods' `status.containerStatuses`.

mod kubelet;
mod merge;
mod server;
mod state;
mod static_pods;

pub use kubelet::{KubeletReports, SimulatedKubelet};
pub use server::{FakeApiError, FakeApiServer};
pub use state::{ApiState, FakePod};
pub(crate) use static_pods::read_pod;
pub use static_pods::{RunningPod, StaticPodKubelet};
