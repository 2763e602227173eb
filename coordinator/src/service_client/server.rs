//! Where the service is (`--server https://HOST:PORT`) and the path segments
//! a request carries (cluster names, update ids), checked before anything is sent.

use hyper::Uri;

use crate::client::ClientError;

/// The longest cluster name or update id sent in a path.
pub const MAX_SEGMENT_CHARS: usize = 128;

/// The `HOST:PORT` of a server URL `https://HOST[:PORT][/]` (443 when no port is given).
pub fn server_authority(server: &str) -> Result<String, ClientError> {
    let refused = |reason: &str| ClientError::Request { address: server.to_owned(), reason: reason.to_owned() };
    let uri: Uri = server.parse().map_err(|_| refused("not a URL; expected https://HOST:PORT"))?;
    if uri.scheme_str() != Some("https") {
        return Err(refused("the service is reached over https only; expected https://HOST:PORT"));
    }
    let authority = uri.authority().ok_or_else(|| refused("no host; expected https://HOST:PORT"))?;
    if authority.as_str().contains('@') {
        return Err(refused("a user name has no place in the server URL; the client certificate says who calls"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(refused("the server URL takes no path or query; expected https://HOST:PORT"));
    }
    if authority.host().is_empty() {
        return Err(refused("no host; expected https://HOST:PORT"));
    }
    Ok(format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(443)))
}

/// `value` as one path segment: letters, digits, `-`, `_` and `.` only (what
/// cluster names and update ids are made of), so it never needs escaping and
/// never reaches another route.
pub(super) fn path_segment<'a>(what: &str, value: &'a str) -> Result<&'a str, ClientError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if value.is_empty()
        || value.chars().count() > MAX_SEGMENT_CHARS
        || matches!(value, "." | "..")
        || !value.chars().all(allowed)
    {
        return Err(ClientError::Request {
            address: String::new(),
            reason: format!(
                "{what} {:?} is not 1 to {MAX_SEGMENT_CHARS} letters, digits, '-', '_' or '.'",
                value.chars().take(MAX_SEGMENT_CHARS + 1).collect::<String>()
            ),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_an_https_host_and_port() {
        assert_eq!(server_authority("https://upkeep.example:8443").expect("valid"), "upkeep.example:8443");
        assert_eq!(server_authority("https://127.0.0.1:9443/").expect("valid"), "127.0.0.1:9443");
        assert_eq!(server_authority("https://upkeep.example").expect("valid"), "upkeep.example:443");
        assert_eq!(server_authority("https://[::1]:8443").expect("valid"), "[::1]:8443");
        for refused in [
            "http://upkeep.example:8443",
            "upkeep.example:8443",
            "https://upkeep.example:8443/v1",
            "https://upkeep.example:8443/?x=1",
            "https://ops@upkeep.example:8443",
            "https://",
            "",
        ] {
            let error = server_authority(refused).expect_err(refused);
            assert_eq!(error.report_code(), "invalid_request", "{refused}");
        }
    }

    #[test]
    fn path_segments_cannot_leave_their_route() {
        assert_eq!(path_segment("cluster", "prod-eu_1.a").expect("valid"), "prod-eu_1.a");
        for refused in ["", ".", "..", "a/b", "a?b", "a#b", "a b", "a%2F", "é"] {
            assert!(path_segment("cluster", refused).is_err(), "{refused:?}");
        }
        assert!(path_segment("cluster", &"a".repeat(MAX_SEGMENT_CHARS)).is_ok());
        assert!(path_segment("cluster", &"a".repeat(MAX_SEGMENT_CHARS + 1)).is_err());
    }
}
