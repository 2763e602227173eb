//! The one error envelope of the agent API and its stable codes.
//!
//! Every error from every endpoint has this shape:
//! `{"error": {"code": "...", "message": "...", "details": [{"field": "...", "code": "...", "message": "..."}]}}`.
//! The codes are part of the API: a client may match on them, so they never change
//! meaning once published.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code, each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request could not be read: bad JSON, bad header, bad path syntax (400).
    MalformedRequest,
    /// No usable client identity (401).
    Unauthenticated,
    /// The client's role does not allow this request (403).
    Forbidden,
    /// No such route or object (404).
    NotFound,
    /// The route exists but not with this method (405).
    MethodNotAllowed,
    /// Another operation is running on the node (409).
    OperationInProgress,
    /// The node's state forbids the request (409).
    Conflict,
    /// An update is already running on the cluster; the message names it (409, the service only).
    UpdateInProgress,
    /// The request body did not arrive in time (408); the connection is closed.
    RequestTimeout,
    /// `If-Match` did not match the node's current `ETag` (412).
    PreconditionFailed,
    /// The request body is larger than the configured limit (413).
    PayloadTooLarge,
    /// The request body is not `application/json` (415).
    UnsupportedMediaType,
    /// The request's target is longer than the server reads (414).
    UriTooLong,
    /// The request's header fields are too many or too large (431).
    HeadersTooLarge,
    /// The body parsed but a field is invalid; see the details (422).
    ValidationFailed,
    /// The incremental or skew rule refuses the target version (422).
    VersionRefused,
    /// A dependency (Kubernetes API server, disk, artifact source) is unavailable (503).
    DependencyUnavailable,
    /// An unexpected failure inside the agent (500). Never caused by input.
    Internal,
}

impl ErrorCode {
    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::MalformedRequest,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::OperationInProgress,
        ErrorCode::Conflict,
        ErrorCode::UpdateInProgress,
        ErrorCode::RequestTimeout,
        ErrorCode::PreconditionFailed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::UriTooLong,
        ErrorCode::HeadersTooLarge,
        ErrorCode::ValidationFailed,
        ErrorCode::VersionRefused,
        ErrorCode::DependencyUnavailable,
        ErrorCode::Internal,
    ];

    /// The HTTP status that goes with the code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::MalformedRequest => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::OperationInProgress | ErrorCode::Conflict | ErrorCode::UpdateInProgress => 409,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::PreconditionFailed => 412,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UriTooLong => 414,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::ValidationFailed | ErrorCode::VersionRefused => 422,
            ErrorCode::Internal => 500,
            ErrorCode::DependencyUnavailable => 503,
        }
    }

    /// The snake_case name as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::OperationInProgress => "operation_in_progress",
            ErrorCode::Conflict => "conflict",
            ErrorCode::UpdateInProgress => "update_in_progress",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::VersionRefused => "version_refused",
            ErrorCode::DependencyUnavailable => "dependency_unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// The field's path in the request, such as `artifacts[0].sha256`.
    pub field: String,
    /// A stable snake_case code for the problem, such as `invalid_format`.
    pub code: String,
    /// A sentence for a person.
    pub message: String,
}

impl ErrorDetail {
    /// A detail for `field`.
    pub fn new(field: impl Into<String>, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), code: code.into(), message: message.into() }
    }
}

/// The inside of the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// The stable code.
    pub code: ErrorCode,
    /// A sentence for a person.
    pub message: String,
    /// Per-field problems; empty when the error is not about fields.
    #[serde(default)]
    pub details: Vec<ErrorDetail>,
}

/// The envelope: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorObject,
}

impl ErrorBody {
    /// An error with no field details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { error: ErrorObject { code, message: message.into(), details: Vec::new() } }
    }

    /// An error with field details.
    pub fn with_details(code: ErrorCode, message: impl Into<String>, details: Vec<ErrorDetail>) -> Self {
        Self { error: ErrorObject { code, message: message.into(), details } }
    }

    /// The HTTP status that goes with the code.
    pub fn http_status(&self) -> u16 {
        self.error.code.http_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_the_documented_shape() {
        let body = ErrorBody::with_details(
            ErrorCode::ValidationFailed,
            "request has invalid fields",
            vec![ErrorDetail::new("target_version", "invalid_format", "not a version")],
        );
        let json = serde_json::to_value(&body).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "validation_failed", "message": "request has invalid fields",
                "details": [{"field": "target_version", "code": "invalid_format", "message": "not a version"}]}})
        );
    }

    #[test]
    fn every_code_has_a_stable_name_and_status() {
        for code in ErrorCode::ALL {
            let wire = serde_json::to_value(code).expect("serializes");
            assert_eq!(wire, serde_json::Value::String(code.as_str().to_owned()));
            let status = code.http_status();
            assert!((400..600).contains(&status), "{code} has status {status}");
        }
        assert_eq!(ErrorCode::PreconditionFailed.http_status(), 412);
        assert_eq!(ErrorCode::DependencyUnavailable.http_status(), 503);
    }

    #[test]
    fn only_the_internal_code_maps_to_500() {
        let five_hundreds: Vec<_> = ErrorCode::ALL.into_iter().filter(|c| c.http_status() == 500).collect();
        assert_eq!(five_hundreds, vec![ErrorCode::Internal]);
    }
}
