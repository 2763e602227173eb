//! The coordinator's client against an agent that answers too much: a body
//! longer than the client reads is an error for that node, read only up to the
//! limit, whether it declares its length or streams without end; and a request
//! the client cannot build is an error of its own, never "unreachable".

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use upkeep_coordinator::client::{AgentClient, ClientError, ClientSettings, MAX_RESPONSE_BYTES, tls_config};
use upkeep_net::tls::{read_certificates, read_private_key, server_config};
use upkeep_tests::pki::Pki;

/// A TLS server that answers every request with `head` and then zeros for
/// ever, counting how many bytes of body it managed to send.
async fn endless_agent(pki: &Pki, head: &'static str) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let config = server_config(
        read_certificates(&pki.ca_cert(), "CA").expect("CA"),
        read_certificates(&pki.file("node.crt"), "certificate").expect("certificate"),
        read_private_key(&pki.file("node.key")).expect("key"),
    )
    .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else { return };
                let mut request = [0u8; 4096];
                let _ = tls.read(&mut request).await;
                if tls.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'0'; 64 * 1024];
                while tls.write_all(&chunk).await.is_ok() {
                    counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    (address, sent)
}

fn client(pki: &Pki) -> AgentClient {
    let files = pki.client("reader");
    let tls = tls_config(&pki.ca_cert(), &files.cert, &files.key).expect("client TLS");
    AgentClient::new(tls, ClientSettings { timeout: Duration::from_secs(30), attempts: 1, ..ClientSettings::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_past_the_limit_is_an_error_for_that_node_and_is_not_read_to_its_end() {
    let pki = Pki::new();
    let heads = [
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 200000000\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: identity\r\nconnection: close\r\n\r\n",
    ];
    for head in heads {
        let (address, sent) = endless_agent(&pki, head).await;
        let answer = client(&pki).node(&address).await;
        match &answer {
            Err(ClientError::TooLarge { limit, .. }) => assert_eq!(*limit, MAX_RESPONSE_BYTES),
            other => panic!("{head:?}: expected TooLarge, got {other:?}"),
        }
        assert_eq!(answer.expect_err("too large").report_code(), "response_too_large");
        let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
        assert!(sent < 64 * 1024 * 1024, "{head:?}: the client stopped reading early, not after {sent} bytes");
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
