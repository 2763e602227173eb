//! TLS sessions remembered for resumption: the newest TLS 1.3 ticket of each
//! agent and nothing more.
//!
//! rustls' own in-memory store sets aside room for eight tickets per server;
//! a client of a whole fleet keeps one entry per node, so that room is most of
//! what the coordinator holds per node. Agents send one ticket per handshake,
//! and a ticket is used once, so the newest one is all a later connection
//! needs. upkeep's agents and this client agree on TLS 1.3; a TLS 1.2
//! session is never kept, so a server that only speaks TLS 1.2 pays a full
//! handshake every time.

use std::collections::HashMap;
use std::sync::Mutex;

use rustls::NamedGroup;
use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls_pki_types::ServerName;

/// What is kept of one server.
#[derive(Debug, Default)]
struct Remembered {
    kx_hint: Option<NamedGroup>,
    ticket: Option<Tls13ClientSessionValue>,
}

/// A bounded store of one ticket per server.
#[derive(Debug)]
pub struct NewestTicketStore {
    servers: Mutex<HashMap<ServerName<'static>, Remembered>>,
    max_servers: usize,
}

impl NewestTicketStore {
    /// A store for up to `max_servers` servers; past that, one remembered
    /// server is forgotten for each new one (its next connection pays a full
    /// handshake). Zero remembers none.
    pub fn new(max_servers: usize) -> Self {
        Self { servers: Mutex::new(HashMap::new()), max_servers }
    }

    /// How many servers are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no server is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ServerName<'static>, Remembered>> {
        self.servers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes what is kept of `server`, making room for it first when it is new.
    fn change(&self, server: ServerName<'static>, change: impl FnOnce(&mut Remembered)) {
        if self.max_servers == 0 {
            return;
        }
        let mut servers = self.lock();
        if !servers.contains_key(&server) && servers.len() >= self.max_servers {
            let forgotten = servers.keys().next().cloned();
            if let Some(forgotten) = forgotten {
                servers.remove(&forgotten);
            }
        }
        change(servers.entry(server).or_default());
    }
}

impl ClientSessionStore for NewestTicketStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.change(server_name, |remembered| remembered.kx_hint = Some(group));
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.lock().get(server_name).and_then(|remembered| remembered.kx_hint)
    }

    fn set_tls12_session(&self, _server_name: ServerName<'static>, _value: Tls12ClientSessionValue) {}

    fn tls12_session(&self, _server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _server_name: &ServerName<'static>) {}

    fn insert_tls13_ticket(&self, server_name: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.change(server_name, |remembered| remembered.ticket = Some(value));
    }

    fn take_tls13_ticket(&self, server_name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.lock().get_mut(server_name).and_then(|remembered| remembered.ticket.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(address: &str) -> ServerName<'static> {
        ServerName::try_from(address.to_owned()).expect("valid server name")
    }

    #[test]
    fn the_store_is_bounded_by_its_servers() {
        let store = NewestTicketStore::new(2);
        for address in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
            store.set_kx_hint(server(address), NamedGroup::X25519);
        }
        assert_eq!(store.len(), 2, "a third server replaces one of the two");
        assert_eq!(store.kx_hint(&server("127.0.0.3")), Some(NamedGroup::X25519), "the newest is kept");
        store.set_kx_hint(server("127.0.0.3"), NamedGroup::secp256r1);
        assert_eq!(store.len(), 2, "a known server takes no more room");
        assert_eq!(store.kx_hint(&server("127.0.0.3")), Some(NamedGroup::secp256r1));
    }

    #[test]
    fn a_store_of_no_servers_keeps_nothing() {
        let store = NewestTicketStore::new(0);
        store.set_kx_hint(server("127.0.0.1"), NamedGroup::X25519);
        assert!(store.is_empty());
        assert_eq!(store.kx_hint(&server("127.0.0.1")), None);
    }
}
