//! Validated identifiers: node and component names, operation ids, request
//! tokens and sha256 digests. Each is parsed once at the edge and then trusted.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid identifier of some kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {value:?} is invalid: {rule}")]
pub struct IdError {
    /// Which kind of identifier was expected.
    pub kind: &'static str,
    /// The rejected input (cut to 80 characters).
    pub value: String,
    /// The rule it broke.
    pub rule: &'static str,
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $rule:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                let check: fn(&str) -> bool = $check;
                if check(value) {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(IdError { kind: $kind, value: value.chars().take(80).collect(), rule: $rule })
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

fn is_dns_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

fn is_token(text: &str) -> bool {
    (1..=128).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

string_id!(
    /// A Kubernetes node name: a DNS subdomain (RFC 1123), as the Node object has.
    NodeName,
    "node name",
    "lowercase letters, digits, '-' and '.', labels of 1 to 63 characters, 253 at most",
    is_dns_subdomain
);

string_id!(
    /// The name of a managed component, such as `kubelet` or `kube-proxy`.
    ComponentName,
    "component name",
    "a DNS label: lowercase letters, digits and '-', 1 to 63 characters",
    is_dns_label
);

string_id!(
    /// The id of an operation on one node, chosen by the agent.
    OperationId,
    "operation id",
    "1 to 128 characters of letters, digits, '.', '_', ':' and '-'",
    is_token
);

string_id!(
    /// A client-chosen idempotency token: the same token always names the same operation.
    RequestToken,
    "request token",
    "1 to 128 characters of letters, digits, '.', '_', ':' and '-'",
    is_token
);

string_id!(
    /// A sha256 digest as 64 lowercase hexadecimal characters.
    Sha256,
    "sha256 digest",
    "64 lowercase hexadecimal characters",
    |text| text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
);

impl Sha256 {
    /// The digest of raw 32 bytes, as lowercase hex.
    pub fn from_bytes(bytes: &[u8; 32]) -> Sha256 {
        Sha256(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
    }

    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&self.0[2 * index..2 * index + 2], 16).unwrap_or(0);
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_follow_rfc_1123() {
        assert!("worker-1".parse::<NodeName>().is_ok());
        assert!("ip-10-0-1-5.eu-west-1.compute.internal".parse::<NodeName>().is_ok());
        assert!("Worker".parse::<NodeName>().is_err());
        assert!("-worker".parse::<NodeName>().is_err());
        assert!("worker..1".parse::<NodeName>().is_err());
        assert!("".parse::<NodeName>().is_err());
        assert!("a".repeat(64).parse::<NodeName>().is_err());
    }

    #[test]
    fn tokens_and_digests() {
        assert!("rollout-7:worker-1".parse::<RequestToken>().is_ok());
        assert!("has space".parse::<RequestToken>().is_err());
        assert!("x".repeat(129).parse::<RequestToken>().is_err());
        assert!("ab".repeat(32).parse::<Sha256>().is_ok());
        assert!("AB".repeat(32).parse::<Sha256>().is_err());
        assert!("ab".repeat(31).parse::<Sha256>().is_err());
    }

    #[test]
    fn digests_convert_to_and_from_bytes() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 9) as u8);
        let digest = Sha256::from_bytes(&bytes);
        assert_eq!(digest.as_str().len(), 64);
        assert_eq!(digest.to_bytes(), bytes);
        assert_eq!(digest.as_str().parse::<Sha256>().expect("valid"), digest);
    }

    #[test]
    fn errors_name_the_kind_and_rule() {
        let error = "Bad Name".parse::<ComponentName>().expect_err("uppercase is refused");
        assert_eq!(error.kind, "component name");
        assert!(error.to_string().contains("DNS label"));
    }

    #[test]
    fn serde_validates_on_the_way_in() {
        assert!(serde_json::from_str::<NodeName>("\"worker-1\"").is_ok());
        assert!(serde_json::from_str::<NodeName>("\"Worker 1\"").is_err());
        assert_eq!(
            serde_json::to_string(&"kubelet".parse::<ComponentName>().expect("valid")).expect("ok"),
            "\"kubelet\""
        );
    }
}
