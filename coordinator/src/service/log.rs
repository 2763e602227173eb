//! A running update's record and events, changed in memory and written to the
//! store together: one batch (one fsync) per flush, however many nodes moved.
//! Events get their sequence numbers when they happen but are only read by
//! streams once stored, so a number a client saw is never reused after a
//! restart.

use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::Utc;
use tokio::sync::watch;

use crate::store::{Batch, StoreError};

use super::model::{EventKind, Update, UpdateEvent};
use super::records::Records;

/// A running update's record and its events not yet stored.
pub struct UpdateLog {
    records: Records,
    state: Mutex<State>,
    /// The last stored event's sequence number.
    stored: watch::Sender<u64>,
}

struct State {
    update: Update,
    next_seq: u64,
    pending: Vec<UpdateEvent>,
    changed: bool,
}

impl UpdateLog {
    /// The log of `update`, whose stored events end at `last_seq`.
    pub fn new(records: Records, update: Update, last_seq: u64) -> Self {
        let state = State { update, next_seq: last_seq + 1, pending: Vec::new(), changed: false };
        Self { records, state: Mutex::new(state), stored: watch::channel(last_seq).0 }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The update as it is now (possibly ahead of the store).
    pub fn update(&self) -> Update {
        self.state().update.clone()
    }

    /// Changes the update's record.
    pub fn edit<T>(&self, change: impl FnOnce(&mut Update) -> T) -> T {
        let mut state = self.state();
        state.changed = true;
        change(&mut state.update)
    }

    /// Records an event.
    pub fn push(&self, kind: EventKind) {
        let mut state = self.state();
        let seq = state.next_seq;
        state.next_seq += 1;
        state.pending.push(UpdateEvent { seq, at: Utc::now(), kind });
    }

    /// Watches the last stored event's sequence number.
    pub fn stored(&self) -> watch::Receiver<u64> {
        self.stored.subscribe()
    }

    /// Writes the record and the pending events, with `extra` writes, in one batch.
    pub async fn flush_with(&self, mut batch: Batch) -> Result<(), StoreError> {
        let (events, last) = {
            let mut state = self.state();
            if state.changed || !batch.is_empty() || !state.pending.is_empty() {
                Records::put_update(&mut batch, &state.update);
                state.changed = false;
            }
            let events = std::mem::take(&mut state.pending);
            for event in &events {
                Records::put_event(&mut batch, &state.update.cluster, &state.update.id, event);
            }
            (events, state.next_seq - 1)
        };
        if let Err(error) = self.records.store().commit(batch).await {
            // Not stored: keep the events for the next flush.
            let mut state = self.state();
            state.changed = true;
            let later = std::mem::replace(&mut state.pending, events);
            state.pending.extend(later);
            return Err(error);
        }
        self.stored.send_replace(last);
        Ok(())
    }

    /// Writes the record and the pending events.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.flush_with(Batch::new()).await
    }
}
