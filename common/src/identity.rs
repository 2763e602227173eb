//! Client identity: a certificate's Subject names a client and, through its
//! Organization (O) values, its role, as Kubernetes and Talos do.
//!
//! `upkeep:reader` < `upkeep:operator` < `upkeep:admin`; a certificate carrying
//! several roles gets the highest, and one carrying none has no role at all.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};

/// What a client may do. Ordered: each role may do everything the lower ones may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May read: `GET` on every endpoint.
    Reader,
    /// May also cordon, drain, upgrade and cancel.
    Operator,
    /// May also use `force` and roll back.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Reader, Role::Operator, Role::Admin];

    /// The Subject O value that grants this role.
    pub fn organization(self) -> &'static str {
        match self {
            Role::Reader => "upkeep:reader",
            Role::Operator => "upkeep:operator",
            Role::Admin => "upkeep:admin",
        }
    }

    /// The role an O value grants, if it is one of ours.
    pub fn from_organization(value: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.organization() == value)
    }

    /// The role and cluster of an O value `upkeep:ROLE:CLUSTER`, if it is one.
    pub fn scoped_of(value: &str) -> Option<(Role, &str)> {
        let (role, cluster) = value.rsplit_once(':')?;
        let role = Role::from_organization(role)?;
        (!cluster.is_empty()).then_some((role, cluster))
    }

    /// The highest role among a certificate's O values.
    pub fn highest_of<'a>(organizations: impl IntoIterator<Item = &'a str>) -> Option<Role> {
        organizations.into_iter().filter_map(Role::from_organization).max()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.organization())
    }
}

/// Who sent a request, as read from the client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The Subject's Common Name, or empty when it has none.
    pub common_name: String,
    /// The highest role among the Subject's O values, if any.
    pub role: Option<Role>,
    /// Roles held on one cluster only (`upkeep:ROLE:CLUSTER`), the highest per cluster.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cluster_roles: BTreeMap<String, Role>,
}

/// Why a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The bytes are not a DER X.509 certificate.
    #[error("client certificate is not valid DER X.509: {0}")]
    BadCertificate(String),
}

impl Identity {
    /// Reads the identity from a DER-encoded certificate (the handshake has
    /// already verified its chain; this only reads names).
    pub fn from_certificate_der(der: &[u8]) -> Result<Identity, IdentityError> {
        let (_, certificate) =
            X509Certificate::from_der(der).map_err(|error| IdentityError::BadCertificate(error.to_string()))?;
        let subject = certificate.subject();
        let common_name = subject.iter_common_name().find_map(|cn| cn.as_str().ok()).unwrap_or_default().to_owned();
        let organizations: Vec<&str> = subject.iter_organization().filter_map(|o| o.as_str().ok()).collect();
        let mut cluster_roles: BTreeMap<String, Role> = BTreeMap::new();
        for (role, cluster) in organizations.iter().filter_map(|o| Role::scoped_of(o)) {
            let held = cluster_roles.entry(cluster.to_owned()).or_insert(role);
            *held = (*held).max(role);
        }
        Ok(Identity { common_name, role: Role::highest_of(organizations), cluster_roles })
    }

    /// Whether this identity may do what `required` may on `cluster`: by a
    /// role on every cluster, or by one on that cluster.
    pub fn allows_on(&self, required: Role, cluster: &str) -> bool {
        self.allows(required) || self.cluster_roles.get(cluster).is_some_and(|role| *role >= required)
    }

    /// Whether this identity may do what `required` may.
    pub fn allows(&self, required: Role) -> bool {
        self.role.is_some_and(|role| role >= required)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The name comes from the client: escaped, so it cannot break a log line.
        let name = self.common_name.escape_debug();
        match self.role {
            Some(role) => write!(f, "{name} ({role})"),
            None => write!(f, "{name} (no role)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Reader < Role::Operator && Role::Operator < Role::Admin);
    }

    #[test]
    fn highest_known_role_wins_and_unknown_values_are_ignored() {
        assert_eq!(Role::highest_of(["acme", "upkeep:reader", "upkeep:admin"]), Some(Role::Admin));
        assert_eq!(Role::highest_of(["upkeep:operator"]), Some(Role::Operator));
        assert_eq!(Role::highest_of(["system:masters", "upkeep:Admin"]), None);
        assert_eq!(Role::highest_of([]), None);
    }

    #[test]
    fn allows_follows_the_order() {
        let operator =
            Identity { common_name: "ops".into(), role: Some(Role::Operator), cluster_roles: BTreeMap::new() };
        assert!(operator.allows(Role::Reader));
        assert!(operator.allows(Role::Operator));
        assert!(!operator.allows(Role::Admin));
        let nobody = Identity { common_name: "x".into(), role: None, cluster_roles: BTreeMap::new() };
        assert!(!nobody.allows(Role::Reader));
    }

    #[test]
    fn a_cluster_scoped_role_holds_on_that_cluster_only() {
        assert_eq!(Role::scoped_of("upkeep:operator:prod-eu-1"), Some((Role::Operator, "prod-eu-1")));
        assert_eq!(Role::scoped_of("upkeep:operator:"), None, "no cluster");
        assert_eq!(Role::scoped_of("upkeep:operator"), None, "a role on every cluster is not scoped");
        assert_eq!(Role::scoped_of("acme:operator:prod"), None);
        let scoped = Identity {
            common_name: "eu-ops".into(),
            role: Some(Role::Reader),
            cluster_roles: BTreeMap::from([("prod-eu-1".to_owned(), Role::Operator)]),
        };
        assert!(scoped.allows_on(Role::Operator, "prod-eu-1"));
        assert!(!scoped.allows_on(Role::Operator, "prod-us-1"), "another cluster");
        assert!(scoped.allows_on(Role::Reader, "prod-us-1"), "the role on every cluster still holds");
        assert!(!scoped.allows_on(Role::Admin, "prod-eu-1"));
    }

    #[test]
    fn a_name_with_control_characters_is_shown_escaped() {
        let forged = Identity {
            common_name: "ops\nINFO forged\x1b[31m".into(),
            role: Some(Role::Reader),
            cluster_roles: BTreeMap::new(),
        };
        assert_eq!(forged.to_string(), "ops\\nINFO forged\\u{1b}[31m (upkeep:reader)");
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(Identity::from_certificate_der(b"not a certificate"), Err(IdentityError::BadCertificate(_))));
    }
}
