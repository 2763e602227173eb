//! Why a call to an agent failed, with a stable code for reports, whether
//! trying again may help, and the classification of transport errors
//! (a certificate that does not verify is not "unreachable").

use std::time::Duration;

use upkeep_common::{ErrorCode, ErrorDetail};

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The TLS files could not be read.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The request could not be built (an address that makes no URI, a body
    /// that does not serialize): never sent, and never retried.
    #[error("cannot build a request to {address}: {reason}")]
    Request {
        /// The node's address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The node could not be reached (connect, handshake, or connection lost).
    #[error("{address} unreachable: {reason}")]
    Unreachable {
        /// The node's address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The agent's certificate does not verify, or the agent refused ours:
    /// trying again does not help.
    #[error("{address}: {problem}: {reason}")]
    Certificate {
        /// The node's address.
        address: String,
        /// Which side's certificate failed.
        problem: CertificateProblem,
        /// What TLS said.
        reason: String,
    },
    /// The node did not answer within the timeout.
    #[error("{address} did not answer within {timeout:?}")]
    Timeout {
        /// The node's address.
        address: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The agent answered with an error envelope; its code is kept as sent,
    /// even one this coordinator does not know.
    #[error("{address} answered {status} {code}: {message}")]
    Api {
        /// The node's address.
        address: String,
        /// The HTTP status.
        status: u16,
        /// The agent's code.
        code: String,
        /// The agent's message.
        message: String,
        /// The agent's per-field problems.
        details: Vec<ErrorDetail>,
    },
    /// The agent answered with a redirect, which the coordinator does not follow.
    #[error("{address} answered {status} redirecting to {location:?}, which is not followed")]
    Redirect {
        /// The node's address.
        address: String,
        /// The HTTP status.
        status: u16,
        /// The `Location` header (cut to 200 characters), if any.
        location: String,
    },
    /// The agent's answer was longer than [`super::MAX_RESPONSE_BYTES`]; only that much was read.
    #[error("{address} answered with a body over {limit} bytes")]
    TooLarge {
        /// The node's address.
        address: String,
        /// The limit.
        limit: usize,
    },
    /// The agent answered something that is not the expected JSON.
    #[error("{address} answered {status} with an unreadable body: {reason}")]
    Decode {
        /// The node's address.
        address: String,
        /// The HTTP status.
        status: u16,
        /// Why it did not parse.
        reason: String,
    },
}

/// Which certificate failed a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertificateProblem {
    /// The server's certificate (an agent's or the service's) is not signed by the trusted CA, expired, or malformed.
    #[error("the server's certificate does not verify")]
    Untrusted,
    /// The server's certificate is valid but names other addresses.
    #[error("the server's certificate is for another address")]
    WrongAddress,
    /// The server refused the client certificate.
    #[error("the server refused our client certificate")]
    Refused,
}

impl ClientError {
    /// The agent's error code, when the agent answered with one this coordinator knows.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } => serde_json::from_value(serde_json::Value::String(code.clone())).ok(),
            _ => None,
        }
    }

    /// Whether trying the same call again soon may help (the node was not
    /// reached or did not answer).
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. } | ClientError::Timeout { .. })
    }

    /// Whether the agent said "not now": 503 `dependency_unavailable` or 409
    /// `operation_in_progress`, worth asking again after a while.
    pub fn is_busy(&self) -> bool {
        matches!(self.code(), Some(ErrorCode::DependencyUnavailable | ErrorCode::OperationInProgress))
    }

    /// A short stable code for reports: the agent's code, or one of
    /// `unreachable`, `timeout`, `certificate_invalid`, `certificate_rejected`,
    /// `redirect`, `bad_response`, `response_too_large`, `invalid_request`, `tls_setup`.
    pub fn report_code(&self) -> String {
        match self {
            ClientError::Api { code, .. } => code.clone(),
            ClientError::Unreachable { .. } => "unreachable".to_owned(),
            ClientError::Tls(_) => "tls_setup".to_owned(),
            ClientError::Request { .. } => "invalid_request".to_owned(),
            ClientError::Certificate { problem: CertificateProblem::Refused, .. } => "certificate_rejected".to_owned(),
            ClientError::Certificate { .. } => "certificate_invalid".to_owned(),
            ClientError::Timeout { .. } => "timeout".to_owned(),
            ClientError::Redirect { .. } => "redirect".to_owned(),
            ClientError::Decode { .. } => "bad_response".to_owned(),
            ClientError::TooLarge { .. } => "response_too_large".to_owned(),
        }
    }

    /// The error of a request that failed before any answer: a certificate
    /// problem when TLS names one, otherwise unreachable.
    pub(crate) fn from_transport(address: &str, error: &(dyn std::error::Error + 'static)) -> ClientError {
        let reason = error_chain(error);
        match certificate_problem(error) {
            Some(problem) => ClientError::Certificate { address: address.to_owned(), problem, reason },
            None => ClientError::Unreachable { address: address.to_owned(), reason },
        }
    }
}

/// The certificate problem somewhere in an error's chain, if any. TLS errors
/// arrive wrapped in `io::Error`s (sometimes one inside another), whose
/// `source` skips the wrapped error, so each link is also unwrapped.
fn certificate_problem(error: &(dyn std::error::Error + 'static)) -> Option<CertificateProblem> {
    let mut link = Some(error);
    while let Some(current) = link {
        let mut unwrapped: &(dyn std::error::Error + 'static) = current;
        while let Some(inner) = unwrapped.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            unwrapped = inner;
        }
        if let Some(tls) = unwrapped.downcast_ref::<rustls::Error>() {
            return classify_tls(tls);
        }
        link = current.source();
    }
    None
}

fn classify_tls(error: &rustls::Error) -> Option<CertificateProblem> {
    use rustls::{AlertDescription, CertificateError};
    match error {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => Some(CertificateProblem::WrongAddress),
        rustls::Error::InvalidCertificate(_) => Some(CertificateProblem::Untrusted),
        rustls::Error::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied
            | AlertDescription::CertificateRequired,
        ) => Some(CertificateProblem::Refused),
        _ => None,
    }
}

/// An error and its causes, joined by ": ".
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the HTTPS connector passes it on: an `io::Error` around the TLS
    /// stream's `io::Error` around the TLS error.
    fn wrapped(error: rustls::Error) -> std::io::Error {
        std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, error))
    }

    #[test]
    fn certificate_failures_are_named_and_permanent() {
        let cases = [
            (rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer), "certificate_invalid"),
            (rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName), "certificate_invalid"),
            (rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate), "certificate_rejected"),
        ];
        for (tls, code) in cases {
            let error = ClientError::from_transport("127.0.0.9:1", &wrapped(tls.clone()));
            assert_eq!(error.report_code(), code, "{tls:?}");
            assert!(!error.is_transient(), "{tls:?} is not worth retrying");
        }
        let name = ClientError::from_transport(
            "127.0.0.9:1",
            &wrapped(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)),
        );
        assert!(name.to_string().contains("for another address"), "{name}");
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let error = ClientError::from_transport("127.0.0.9:1", &refused);
        assert_eq!(error.report_code(), "unreachable");
        assert!(error.is_transient());
    }

    #[test]
    fn unknown_agent_codes_are_kept_and_busy_codes_are_recognised() {
        let api = |code: &str| ClientError::Api {
            address: "a:1".into(),
            status: 503,
            code: code.into(),
            message: "the node's quota is exhausted".into(),
            details: vec![],
        };
        let unknown = api("quota_exhausted");
        assert_eq!(unknown.report_code(), "quota_exhausted");
        assert_eq!(unknown.code(), None);
        assert!(unknown.to_string().contains("the node's quota is exhausted"));
        assert!(!unknown.is_busy());
        assert!(api("dependency_unavailable").is_busy());
        assert!(api("operation_in_progress").is_busy());
        assert!(!api("conflict").is_busy());
    }
}
