//! The coordinator's client against an agent that answers too much: a body
//! longer than the client reads is an error for that node, read only up to the
//! limit, whether it declares its length or streams without end; and a request
//! the client cannot build is an error of its own, never "unreachable".

use std::time::Duration;

use upkeep_coordinator::client::{AgentClient, ClientError, ClientSettings, MAX_RESPONSE_BYTES, tls_config};
use upkeep_tests::pki::Pki;
use upkeep_tests::scripted_agent::{Behaviour, ScriptedAgent};

fn client(pki: &Pki) -> AgentClient {
    let files = pki.client("reader");
    let tls = tls_config(&pki.ca_cert(), &files.cert, &files.key).expect("client TLS");
    AgentClient::new(tls, ClientSettings { timeout: Duration::from_secs(30), attempts: 1, ..ClientSettings::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_past_the_limit_is_an_error_for_that_node_and_is_not_read_to_its_end() {
    let pki = Pki::new();
    for behaviour in [Behaviour::HugeBody, Behaviour::EndlessBody] {
        let agent = ScriptedAgent::start(&pki, "127.0.0.1:0", "worker-1", "v1.30.2", behaviour).await;
        let answer = client(&pki).node(&agent.address()).await;
        match &answer {
            Err(ClientError::TooLarge { limit, .. }) => assert_eq!(*limit, MAX_RESPONSE_BYTES),
            other => panic!("{behaviour:?}: expected TooLarge, got {other:?}"),
        }
        assert_eq!(answer.expect_err("too large").report_code(), "response_too_large");
        let sent = agent.bytes_streamed();
        assert!(sent < 64 * 1024 * 1024, "{behaviour:?}: the client stopped reading early, not after {sent} bytes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_be_built_is_an_error_and_not_retried_as_unreachable() {
    let pki = Pki::new();
    let answer = client(&pki).node("exa mple:10265").await;
    let error = answer.expect_err("no URI has a space in its host");
    assert!(matches!(error, ClientError::Request { .. }), "{error:?}");
    assert_eq!(error.report_code(), "invalid_request");
    assert!(!error.is_transient(), "building it again gives the same error");
}
