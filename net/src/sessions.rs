//! The TLS sessions a server remembers so its clients can resume: the newest
//! few, held in memory that grows with the sessions actually given out (rustls'
//! own cache sets aside its whole room up front, per server).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;

use rustls::server::StoresServerSessions;

/// The newest `room` sessions; the oldest is forgotten to make space.
pub struct RecentSessions {
    room: usize,
    sessions: Mutex<VecDeque<(Vec<u8>, Vec<u8>)>>,
}

impl RecentSessions {
    /// An empty store with room for `room` sessions (at least one).
    pub fn new(room: usize) -> Self {
        Self { room: room.max(1), sessions: Mutex::new(VecDeque::new()) }
    }

    /// How many sessions it holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Vec<u8>, Vec<u8>)>> {
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for RecentSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecentSessions").field("room", &self.room).field("held", &self.len()).finish()
    }
}

impl StoresServerSessions for RecentSessions {
    fn put(&self, key: Vec<u8>, mut value: Vec<u8>) -> bool {
        // The encoded session (with the client's certificate chain) arrives with
        // its encoder's spare capacity, up to as much again as its length.
        value.shrink_to_fit();
        let mut sessions = self.lock();
        sessions.retain(|(held, _)| *held != key);
        if sessions.len() >= self.room {
            sessions.pop_front();
        }
        sessions.push_back((key, value));
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.lock().iter().find(|(held, _)| held == key).map(|(_, value)| value.clone())
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut sessions = self.lock();
        let index = sessions.iter().position(|(held, _)| held == key)?;
        sessions.remove(index).map(|(_, value)| value)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Vec<u8> {
        vec![n; 32]
    }

    #[test]
    fn a_session_is_found_until_taken() {
        let store = RecentSessions::new(4);
        assert!(store.is_empty());
        assert!(store.put(key(1), b"one".to_vec()));
        assert_eq!(store.get(&key(1)), Some(b"one".to_vec()));
        assert_eq!(store.take(&key(1)), Some(b"one".to_vec()));
        assert_eq!(store.take(&key(1)), None, "a taken session resumes once");
        assert_eq!(store.get(&key(2)), None);
    }

    #[test]
    fn the_oldest_session_makes_room_for_a_new_one() {
        let store = RecentSessions::new(2);
        store.put(key(1), b"one".to_vec());
        store.put(key(2), b"two".to_vec());
        store.put(key(3), b"three".to_vec());
        assert_eq!(store.len(), 2);
        assert_eq!(store.get(&key(1)), None, "the oldest went");
        assert_eq!(store.get(&key(2)), Some(b"two".to_vec()));
        assert_eq!(store.get(&key(3)), Some(b"three".to_vec()));
    }

    #[test]
    fn a_key_put_again_replaces_its_value_without_taking_more_room() {
        let store = RecentSessions::new(2);
        store.put(key(1), b"one".to_vec());
        store.put(key(2), b"two".to_vec());
        store.put(key(1), b"uno".to_vec());
        assert_eq!(store.len(), 2);
        assert_eq!(store.get(&key(1)), Some(b"uno".to_vec()));
        assert_eq!(store.get(&key(2)), Some(b"two".to_vec()), "replacing a key evicts nothing");
    }
}
