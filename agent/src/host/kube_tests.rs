//! Tests of reading Kubernetes objects into what the agent needs.

use super::*;

fn pod(json: serde_json::Value) -> Pod {
    serde_json::from_value(json).expect("valid pod")
}

#[test]
fn a_node_reads_as_cordon_owner_ready_heartbeat_and_kubelet_version() {
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "worker-1", "annotations": {CORDONED_BY: "op-1"}},
        "spec": {"unschedulable": true},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "lastHeartbeatTime": "2026-01-01T00:00:05Z"}],
            "nodeInfo": {"kubeletVersion": "v1.30.3", "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "",
                         "kernelVersion": "", "kubeProxyVersion": "", "machineID": "", "operatingSystem": "linux",
                         "osImage": "", "systemUUID": ""}}
    }))
    .expect("valid node");
    let observed = observation_of(&node);
    assert!(observed.unschedulable);
    assert_eq!(observed.kubelet_version.as_deref(), Some("v1.30.3"));
    let ready = observed.ready.clone().expect("ready condition");
    assert!(ready.is_true());
    assert_eq!(ready.last_heartbeat.map(|t| t.to_rfc3339()).as_deref(), Some("2026-01-01T00:00:05+00:00"));
    let mine: OperationId = "op-1".parse().expect("valid");
    let other: OperationId = "op-2".parse().expect("valid");
    assert!(cordoned_by(&observed, &mine));
    assert!(!cordoned_by(&observed, &other), "another operation's cordon is not this one's");
    let bare = observation_of(&serde_json::from_value(serde_json::json!({"metadata": {"name": "x"}})).expect("node"));
    assert_eq!(bare, NodeObservation { unschedulable: false, cordoned_by: None, ready: None, kubelet_version: None });
}

#[test]
fn daemon_set_mirror_finished_and_selected_pods_stay() {
    let skip = parse_selector(Some("app=critical"));
    let daemon = pod(serde_json::json!({"metadata": {"name": "ds", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "x", "uid": "1"}]}}));
    let mirror =
        pod(serde_json::json!({"metadata": {"name": "m", "annotations": {"kubernetes.io/config.mirror": "abc"}}}));
    let done = pod(serde_json::json!({"metadata": {"name": "d"}, "status": {"phase": "Succeeded"}}));
    let selected = pod(serde_json::json!({"metadata": {"name": "s", "labels": {"app": "critical"}}}));
    let local = pod(
        serde_json::json!({"metadata": {"name": "l"}, "spec": {"containers": [], "volumes": [{"name": "v", "emptyDir": {}}]}}),
    );
    let plain = pod(serde_json::json!({"metadata": {"name": "p", "labels": {"app": "web"}}}));
    for stays in [&daemon, &mirror, &done, &selected] {
        assert_eq!(classify_pod(stays, &skip, false), PodFate::Stays, "{:?}", stays.metadata.name);
    }
    assert!(matches!(classify_pod(&local, &skip, false), PodFate::Blocks(_)));
    assert_eq!(classify_pod(&local, &skip, true), PodFate::Evict);
    assert_eq!(classify_pod(&plain, &skip, false), PodFate::Evict);
}

#[test]
fn a_mirror_pods_container_reads_as_image_id_ready_and_restarts() {
    let mirror = pod(serde_json::json!({
        "metadata": {"name": "kube-apiserver-cp-1", "namespace": "kube-system"},
        "status": {"containerStatuses": [
            {"name": "sidecar", "image": "x", "imageID": "y", "ready": false, "restartCount": 9},
            {"name": "kube-apiserver", "image": "registry.k8s.io/kube-apiserver:v1.31.0",
             "imageID": "registry.k8s.io/kube-apiserver@sha256:abc", "ready": true, "restartCount": 2}]}
    }));
    let observed = container_of(&mirror, "kube-apiserver").expect("reported");
    assert_eq!(observed.image_id, "registry.k8s.io/kube-apiserver@sha256:abc");
    assert!(observed.ready);
    assert_eq!(observed.restart_count, 2);
    assert_eq!(container_of(&mirror, "etcd"), None);
}
