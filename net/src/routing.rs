//! Matching a request to a route: the methods an API uses, path templates
//! with `{name}` segments, and the envelopes for a method a path does not
//! allow (405 with `Allow`) and for a role a caller lacks (403).

use std::fmt;

use hyper::header::{ALLOW, HeaderValue};
use hyper::{Method, Response};
use upkeep_common::{ErrorBody, ErrorCode, Identity, Role};

use crate::log::Escaped;
use crate::response::{self, Body};

/// The HTTP methods upkeep's APIs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiMethod {
    /// Reads.
    Get,
    /// Writes.
    Post,
    /// Partial updates.
    Patch,
}

impl ApiMethod {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiMethod::Get => "GET",
            ApiMethod::Post => "POST",
            ApiMethod::Patch => "PATCH",
        }
    }

    /// The API method of an HTTP method, if the APIs use it.
    pub fn of(method: &Method) -> Option<ApiMethod> {
        match *method {
            Method::GET => Some(ApiMethod::Get),
            Method::POST => Some(ApiMethod::Post),
            Method::PATCH => Some(ApiMethod::Patch),
            _ => None,
        }
    }
}

impl fmt::Display for ApiMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One route of an API: method, path template, the least role it needs, and
/// what it does (`E`, the API's own list of endpoints).
#[derive(Debug, Clone, Copy)]
pub struct Route<E> {
    /// Its method.
    pub method: ApiMethod,
    /// Its path template; `{name}` matches one segment.
    pub path: &'static str,
    /// The least role allowed; `None` means any verified client.
    pub role: Option<Role>,
    /// What it does.
    pub endpoint: E,
}

impl<E> Route<E> {
    /// A route.
    pub const fn new(method: ApiMethod, path: &'static str, role: Option<Role>, endpoint: E) -> Self {
        Route { method, path, role, endpoint }
    }
}

/// Matches `path` against a template whose `{name}` segments match any one
/// non-empty segment; returns those segments in order, still percent-encoded.
pub fn match_template<'p>(template: &str, path: &'p str) -> Option<Vec<&'p str>> {
    let mut template_segments = template.split('/');
    let mut path_segments = path.split('/');
    let mut values = Vec::new();
    loop {
        match (template_segments.next(), path_segments.next()) {
            (None, None) => return Some(values),
            (Some(expected), Some(segment)) if expected.starts_with('{') && !segment.is_empty() => {
                values.push(segment);
            }
            (Some(expected), Some(segment)) if expected == segment => {}
            _ => return None,
        }
    }
}

/// Where a request goes: its route with the path's `{name}` segments, or
/// the answer when no route takes it (404, or 405 naming the allowed methods).
pub enum Routed<'r, E> {
    /// The route and its segments (still percent-encoded).
    Found(&'r Route<E>, Vec<String>),
    /// No route takes it: the label to count it under and the answer.
    Refused(&'static str, Response<Body>),
}

/// Finds the route of `method` and `path` among `routes`.
pub fn route<'r, E>(routes: &'r [Route<E>], method: &Method, path: &str) -> Routed<'r, E> {
    let matching: Vec<(&Route<E>, Vec<&str>)> =
        routes.iter().filter_map(|route| match_template(route.path, path).map(|values| (route, values))).collect();
    let api_method = ApiMethod::of(method);
    if let Some((route, values)) = matching.iter().find(|(route, _)| Some(route.method) == api_method) {
        return Routed::Found(route, values.iter().map(|v| (*v).to_owned()).collect());
    }
    match matching.first() {
        Some((route, _)) => {
            let allowed: Vec<ApiMethod> = matching.iter().map(|(route, _)| route.method).collect();
            Routed::Refused(route.path, method_not_allowed(&allowed, method))
        }
        None => Routed::Refused(
            "unmatched",
            response::error(&ErrorBody::new(ErrorCode::NotFound, format!("no route for {}", Escaped(path)))),
        ),
    }
}

/// 405 for a path that exists with other methods, naming them in `Allow`.
pub fn method_not_allowed(allowed: &[ApiMethod], method: &Method) -> Response<Body> {
    let allow = allowed.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ");
    let mut response = response::error(&ErrorBody::new(
        ErrorCode::MethodNotAllowed,
        format!("{method} is not allowed here; use {allow}"),
    ));
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(ALLOW, value);
    }
    response
}

/// The 403 envelope for a caller whose role is below `required`.
pub fn forbidden(identity: &Identity, required: Role, scope: &str) -> ErrorBody {
    let has = identity.role.map_or_else(|| "no upkeep role".to_owned(), |role| role.to_string());
    ErrorBody::new(
        ErrorCode::Forbidden,
        format!("this request needs {required}{scope}; the certificate of {:?} carries {has}", identity.common_name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_segments_and_return_the_named_ones() {
        let template = "/v1/clusters/{cluster}/updates/{id}";
        assert_eq!(match_template(template, "/v1/clusters/a/updates/u1"), Some(vec!["a", "u1"]));
        assert_eq!(match_template(template, "/v1/clusters//updates/u1"), None, "an empty segment is no value");
        assert_eq!(match_template(template, "/v1/clusters/a/updates"), None);
        assert_eq!(match_template(template, "/v1/clusters/a/updates/u1/"), None, "a trailing slash is another path");
        assert_eq!(match_template("/v1/node", "/v1/node"), Some(vec![]));
        assert_eq!(match_template("/v1/node", "/v1/nodes"), None);
        assert_eq!(match_template("/v1/operations/{id}", "/v1/operations/op-1/cancel"), None);
        assert_eq!(match_template("/v1/operations/{id}/cancel", "/v1/operations/op-1/cancel"), Some(vec!["op-1"]));
    }

    #[test]
    fn a_wrong_method_names_the_allowed_ones() {
        let response = method_not_allowed(&[ApiMethod::Get, ApiMethod::Patch], &Method::DELETE);
        assert_eq!(response.status().as_u16(), 405);
        assert_eq!(response.headers()[ALLOW], "GET, PATCH");
    }
}
