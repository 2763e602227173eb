//! The scripted agent itself: honest, it upgrades through the coordinator's
//! client like a real agent; scripted, each misbehaviour shows on the wire.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use upkeep_common::ErrorCode;
use upkeep_common::api::{Artifact, NodeState, Operation, OperationKind, OperationPhase, UpgradeRequest};
use upkeep_common::ids::OperationId;
use upkeep_coordinator::client::{AgentClient, ClientError, ClientSettings, tls_config};
use upkeep_tests::client::{ApiClient, Reply, client_config, connect_tls};
use upkeep_tests::pki::Pki;
use upkeep_tests::scripted_agent::{
    Behaviour, REDIRECT_LOCATION, ScriptedAgent, UNKNOWN_CODE, UNKNOWN_CODE_MESSAGE, UNREADABLE_BODY,
};

const FROM: &str = "v1.30.2";
const TARGET: &str = "v1.30.3";

fn client(pki: &Pki, timeout: Duration) -> AgentClient {
    let files = pki.client("operator");
    let tls = tls_config(&pki.ca_cert(), &files.cert, &files.key).expect("client TLS");
    AgentClient::new(tls, ClientSettings { timeout, attempts: 1, ..ClientSettings::default() })
}

fn upgrade_request(token: &str) -> UpgradeRequest {
    UpgradeRequest {
        target_version: TARGET.parse().expect("version"),
        artifacts: vec![Artifact {
            component: "kubelet".parse().expect("component"),
            source: "https://artifacts.invalid/kubelet".to_owned(),
            sha256: "0".repeat(64).parse().expect("digest"),
            signature: None,
        }],
        request_token: Some(token.parse().expect("token")),
        force: false,
        drain: None,
        dry_run: false,
        stage_only: false,
        images: Vec::new(),
        control_plane_version: None,
    }
}

fn kubelet(node: &NodeState) -> String {
    let kubelet = node.components.iter().find(|c| c.name.as_str() == "kubelet").expect("a kubelet");
    kubelet.observed_version.as_ref().expect("a version").to_string()
}

/// `GET path` on a connection, within 30 seconds.
async fn get(api: &mut ApiClient, path: &str) -> Reply {
    let reply = tokio::time::timeout(Duration::from_secs(30), api.get(path)).await;
    reply.unwrap_or_else(|_| panic!("{path}: no answer within 30 s")).expect("an answer")
}

/// Asks for operation `id` until it ends (or 20 seconds pass), returning every phase seen.
async fn phases_until_the_end(client: &AgentClient, address: &str, id: &OperationId) -> Vec<OperationPhase> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut phases = Vec::new();
    loop {
        let operation = client.operation(address, id).await.expect("operation");
        assert_eq!(&operation.id, id);
        phases.push(operation.phase);
        if operation.phase.is_terminal() || Instant::now() > deadline {
            return phases;
        }
    }
}

/// Asks for an upgrade and then for the operation `polls` times, returning every answer.
async fn upgrade_and_poll(client: &AgentClient, address: &str, polls: usize) -> (Operation, Vec<Operation>) {
    let accepted = client.upgrade(address, &upgrade_request("tok-1"), None).await.expect("accepted");
    let mut answers = Vec::new();
    for _ in 0..polls {
        answers.push(client.operation(address, &accepted.id).await.expect("an operation"));
    }
    (accepted, answers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_agent_upgrades_through_the_coordinators_client() {
    let pki = Pki::new();
    let agent = ScriptedAgent::start(&pki, "127.0.0.40:0", "worker-40", FROM, Behaviour::Honest).await;
    let client = client(&pki, Duration::from_secs(10));
    let address = agent.address();

    let node = client.node(&address).await.expect("node");
    assert_eq!(node.name.as_str(), "worker-40");
    assert_eq!(kubelet(&node), FROM);

    let staging = UpgradeRequest { stage_only: true, ..upgrade_request("stage-1") };
    let staged = client.upgrade(&address, &staging, None).await.expect("staging accepted");
    assert_eq!(phases_until_the_end(&client, &address, &staged.id).await.last(), Some(&OperationPhase::Succeeded));
    assert_eq!(kubelet(&client.node(&address).await.expect("node")), FROM, "staging installs nothing");

    let accepted = client.upgrade(&address, &upgrade_request("tok-1"), None).await.expect("accepted");
    assert_ne!(accepted.id, staged.id);
    assert_eq!(accepted.phase, OperationPhase::Pending);
    assert_eq!(accepted.kind, OperationKind::Upgrade);
    assert_eq!(accepted.target_version.as_ref().map(ToString::to_string).as_deref(), Some(TARGET));
    assert_eq!(accepted.request_token.as_ref().map(|t| t.as_str()), Some("tok-1"));
    let again = client.upgrade(&address, &upgrade_request("tok-1"), None).await.expect("replayed");
    assert_eq!(again.id, accepted.id, "the same token names the same operation");
    match client.upgrade(&address, &upgrade_request("tok-2"), None).await {
        Err(ClientError::Api { status: 409, code, .. }) => assert_eq!(code, ErrorCode::OperationInProgress.as_str()),
        other => panic!("a second upgrade while one runs: {other:?}"),
    }

    let phases = phases_until_the_end(&client, &address, &accepted.id).await;
    assert_eq!(phases, [OperationPhase::Running, OperationPhase::Succeeded]);
    assert_eq!(kubelet(&client.node(&address).await.expect("node")), TARGET);
    let listed: Vec<OperationId> =
        client.operations(&address).await.expect("operations").into_iter().map(|operation| operation.id).collect();
    assert_eq!(listed, [accepted.id, staged.id], "newest first");
    let tokens: Vec<Option<String>> =
        agent.operations().iter().map(|operation| operation.request_token.as_ref().map(|t| t.to_string())).collect();
    assert_eq!(tokens, [Some("tok-1".to_owned()), Some("stage-1".to_owned())]);
    assert_eq!(agent.upgrade_requests(), 4);
    assert_eq!(agent.requests(), 12, "node, staging, 2 polls, node, 3 upgrades, 2 polls, node, list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scripted_answer_differs_from_the_honest_one_where_it_says() {
    let pki = Pki::new();
    let client = client(&pki, Duration::from_secs(10));
    let phases = |answers: &[Operation]| answers.iter().map(|operation| operation.phase).collect::<Vec<_>>();
    for behaviour in [
        Behaviour::StaysRunning,
        Behaviour::PhaseGoesBack,
        Behaviour::WrongOperationId,
        Behaviour::WrongKind,
        Behaviour::WrongTarget,
        Behaviour::SucceedsWithoutChange,
        Behaviour::WrongNodeName,
    ] {
        let agent = ScriptedAgent::start(&pki, "127.0.0.41:0", "worker-41", FROM, behaviour).await;
        let address = agent.address();
        let (accepted, answers) = upgrade_and_poll(&client, &address, 3).await;
        let node = client.node(&address).await.expect("node");
        let context = format!("{behaviour:?}: accepted {accepted:?}, then {answers:?}, node {node:?}");
        let target = accepted.target_version.as_ref().map(ToString::to_string);
        match behaviour {
            Behaviour::StaysRunning => assert_eq!(phases(&answers), [OperationPhase::Running; 3], "{context}"),
            Behaviour::PhaseGoesBack => assert_eq!(
                phases(&answers),
                [OperationPhase::Running, OperationPhase::Pending, OperationPhase::Pending],
                "{context}"
            ),
            Behaviour::WrongOperationId => {
                assert!(answers.iter().all(|answer| answer.id != accepted.id), "{context}");
                assert_eq!(kubelet(&node), TARGET, "{context}");
            }
            Behaviour::WrongKind => {
                assert_eq!(accepted.kind, OperationKind::Drain, "{context}");
                assert_eq!(kubelet(&node), FROM, "{context}");
            }
            Behaviour::WrongTarget => {
                assert_eq!(target.as_deref(), Some("v1.30.4"), "{context}");
                assert_eq!(kubelet(&node), "v1.30.4", "{context}");
            }
            Behaviour::SucceedsWithoutChange => {
                assert_eq!(answers.last().map(|a| a.phase), Some(OperationPhase::Succeeded), "{context}");
                assert_eq!(kubelet(&node), FROM, "{context}");
            }
            Behaviour::WrongNodeName => {
                assert_eq!(node.name.as_str(), "impostor-worker-41", "{context}");
                assert_eq!(kubelet(&node), TARGET, "{context}");
            }
            _ => unreachable!(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_that_do_not_verify_fail_the_handshake_for_the_test_pki_client() {
    let pki = Pki::new();
    let config = client_config(&pki.ca_cert(), Some(&pki.client("reader")));
    let honest = ScriptedAgent::start(&pki, "127.0.0.42:0", "worker-42", FROM, Behaviour::Honest).await;
    connect_tls(honest.addr, config.clone()).await.expect("the honest agent's certificate verifies");
    for behaviour in [Behaviour::UntrustedCertificate, Behaviour::CertificateForAnotherAddress] {
        let agent = ScriptedAgent::start(&pki, "127.0.0.42:0", "worker-42", FROM, behaviour).await;
        assert!(connect_tls(agent.addr, config.clone()).await.is_err(), "{behaviour:?}: the handshake succeeded");
        assert!(client(&pki, Duration::from_secs(10)).node(&agent.address()).await.is_err(), "{behaviour:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while agent.refused_handshakes() < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(agent.refused_handshakes(), 2, "{behaviour:?}");
        assert_eq!(agent.requests(), 0, "{behaviour:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_and_busy_refuse_as_often_as_scripted_then_answer_honestly() {
    let pki = Pki::new();
    let client = client(&pki, Duration::from_secs(10));
    let agent =
        ScriptedAgent::start(&pki, "127.0.0.43:0", "worker-43", FROM, Behaviour::Unavailable { times: 2 }).await;
    for _ in 0..2 {
        match client.node(&agent.address()).await {
            Err(ClientError::Api { status: 503, code, .. }) => {
                assert_eq!(code, ErrorCode::DependencyUnavailable.as_str());
            }
            other => panic!("expected 503 dependency_unavailable, got {other:?}"),
        }
    }
    assert_eq!(client.node(&agent.address()).await.expect("then honest").name.as_str(), "worker-43");

    let agent = ScriptedAgent::start(&pki, "127.0.0.43:0", "worker-43", FROM, Behaviour::Busy { times: 1 }).await;
    client.node(&agent.address()).await.expect("reads are not refused");
    match client.upgrade(&agent.address(), &upgrade_request("tok-1"), None).await {
        Err(ClientError::Api { status: 409, code, .. }) => assert_eq!(code, ErrorCode::OperationInProgress.as_str()),
        other => panic!("expected 409 operation_in_progress, got {other:?}"),
    }
    let accepted = client.upgrade(&agent.address(), &upgrade_request("tok-1"), None).await.expect("then honest");
    assert_eq!(accepted.phase, OperationPhase::Pending);
    assert_eq!(agent.upgrade_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_client_cannot_use_are_sent_as_scripted() {
    let pki = Pki::new();
    let config = client_config(&pki.ca_cert(), Some(&pki.client("reader")));
    let paths = ["/v1/node", "/healthz"];

    let agent = ScriptedAgent::start(&pki, "127.0.0.44:0", "worker-44", FROM, Behaviour::UnknownErrorCode).await;
    let mut api = ApiClient::connect(agent.addr, config.clone()).await.expect("connect");
    for path in paths {
        let reply = get(&mut api, path).await;
        assert_eq!(reply.status, 429, "{path}");
        let body = reply.json();
        assert_eq!(body["error"]["code"], UNKNOWN_CODE, "{path}");
        assert_eq!(body["error"]["message"], UNKNOWN_CODE_MESSAGE, "{path}");
    }

    let agent = ScriptedAgent::start(&pki, "127.0.0.44:0", "worker-44", FROM, Behaviour::Redirect).await;
    let mut api = ApiClient::connect(agent.addr, config.clone()).await.expect("connect");
    for path in paths {
        let reply = get(&mut api, path).await;
        assert_eq!((reply.status, reply.header("location").as_deref()), (307, Some(REDIRECT_LOCATION)), "{path}");
    }

    let agent = ScriptedAgent::start(&pki, "127.0.0.44:0", "worker-44", FROM, Behaviour::UnreadableBody).await;
    let mut api = ApiClient::connect(agent.addr, config.clone()).await.expect("connect");
    for path in paths {
        let reply = get(&mut api, path).await;
        assert_eq!((reply.status, &reply.body[..]), (200, UNREADABLE_BODY.as_bytes()), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_misbehaviours_happen_on_the_wire() {
    let pki = Pki::new();
    let config = client_config(&pki.ca_cert(), Some(&pki.client("reader")));

    let agent = ScriptedAgent::start(&pki, "127.0.0.45:0", "worker-45", FROM, Behaviour::ClosesEveryConnection).await;
    assert!(connect_tls(agent.addr, config.clone()).await.is_err(), "a handshake with a closed connection");
    assert_eq!((agent.connections(), agent.refused_handshakes()), (1, 0));

    let agent = ScriptedAgent::start(&pki, "127.0.0.45:0", "worker-45", FROM, Behaviour::NeverAnswers).await;
    let answer = client(&pki, Duration::from_millis(500)).node(&agent.address()).await;
    assert!(answer.is_err(), "an agent that never answers answered {answer:?}");
    assert_eq!(agent.requests(), 1);

    let agent = ScriptedAgent::start(&pki, "127.0.0.45:0", "worker-45", FROM, Behaviour::OneBytePerSecond).await;
    let mut stream = connect_tls(agent.addr, config).await.expect("handshake");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: upkeep\r\n\r\n").await.expect("request");
    let mut first = [0u8; 3];
    tokio::time::timeout(Duration::from_secs(30), stream.read_exact(&mut first))
        .await
        .expect("three bytes within 30 s")
        .expect("read");
    assert_eq!(&first, b"HTT");
    // Three bytes take two seconds; the whole answer would take over a minute.
    let streamed = agent.bytes_streamed();
    assert!((3..20).contains(&streamed), "{streamed} bytes written by now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_agent_ends_its_listener_and_its_connections() {
    let pki = Pki::new();
    let config = client_config(&pki.ca_cert(), Some(&pki.client("reader")));
    let agent = ScriptedAgent::start(&pki, "127.0.0.46:0", "worker-46", FROM, Behaviour::EndlessBody).await;
    let addr = agent.addr;
    let mut stream = connect_tls(addr, config.clone()).await.expect("handshake");
    stream.write_all(b"GET /v1/node HTTP/1.1\r\nhost: upkeep\r\n\r\n").await.expect("request");
    let mut piece = vec![0u8; 64 * 1024];
    stream.read_exact(&mut piece).await.expect("the body streams");
    drop(agent);
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while matches!(stream.read(&mut piece).await, Ok(read) if read > 0) {}
    })
    .await;
    assert!(ended.is_ok(), "the endless body still streams after the agent was dropped");
    assert!(connect_tls(addr, config).await.is_err(), "the listener still accepts");
}
