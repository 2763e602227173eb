//! The update's event stream as it arrives: newline-delimited JSON in chunks
//! cut anywhere, empty lines as keep-alives, one [`UpdateEvent`] per line.
//! Pure: the caller feeds the bytes it read.

use bytes::{Buf, BytesMut};

use crate::service::model::UpdateEvent;

/// The longest event line accepted; an event is a few hundred bytes.
pub const MAX_EVENT_LINE_BYTES: usize = 1024 * 1024;

/// Why the stream's bytes are not events. Never retryable: the same bytes
/// would come again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLineError {
    /// A line (or the unfinished part of one) is longer than [`MAX_EVENT_LINE_BYTES`].
    #[error("an event line is longer than {MAX_EVENT_LINE_BYTES} bytes")]
    TooLong,
    /// A line is not an event.
    #[error("line {line} of the event stream is not an event: {reason}")]
    NotAnEvent {
        /// The line's number in the stream, from 1.
        line: u64,
        /// Why it did not parse.
        reason: String,
    },
}

/// Splits the stream into lines and reads each as an event.
#[derive(Debug, Default)]
pub struct EventLines {
    pending: BytesMut,
    lines: u64,
}

impl EventLines {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in the next chunk; answers the events its complete lines hold.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<UpdateEvent>, EventLineError> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|byte| *byte == b'\n') {
            let line = self.pending.split_to(end);
            self.pending.advance(1);
            if let Some(event) = self.line(&line)? {
                events.push(event);
            }
        }
        if self.pending.len() > MAX_EVENT_LINE_BYTES {
            return Err(EventLineError::TooLong);
        }
        Ok(events)
    }

    /// At the stream's end: the last line if it came without its newline.
    pub fn finish(&mut self) -> Result<Option<UpdateEvent>, EventLineError> {
        let rest = self.pending.split();
        self.line(&rest)
    }

    fn line(&mut self, line: &[u8]) -> Result<Option<UpdateEvent>, EventLineError> {
        if line.len() > MAX_EVENT_LINE_BYTES {
            return Err(EventLineError::TooLong);
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        self.lines += 1;
        serde_json::from_slice(line)
            .map(Some)
            .map_err(|error| EventLineError::NotAnEvent { line: self.lines, reason: error.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::model::{EventKind, TaskStatus, TaskType, UpdateStatus};

    const TASK: &str = r#"{"seq":1,"at":"2026-11-30T08:00:00Z","event":"task","task":"PreCheck","status":"Running","message":"asking 5 nodes"}"#;
    const STARTED: &str = r#"{"seq":2,"at":"2026-11-30T08:00:01Z","event":"node_started","node":"worker-1"}"#;
    const STATUS: &str = r#"{"seq":3,"at":"2026-11-30T08:00:09Z","event":"status","status":"Successful"}"#;

    fn kinds(events: &[UpdateEvent]) -> Vec<(u64, EventKind)> {
        events.iter().map(|event| (event.seq, event.kind.clone())).collect()
    }

    #[test]
    fn lines_cut_anywhere_give_the_same_events() {
        let stream = format!("{TASK}\n{STARTED}\n{STATUS}\n");
        let expected = vec![
            (
                1,
                EventKind::Task {
                    task: TaskType::PreCheck,
                    status: TaskStatus::Running,
                    message: "asking 5 nodes".into(),
                },
            ),
            (2, EventKind::NodeStarted { node: "worker-1".into() }),
            (3, EventKind::Status { status: UpdateStatus::Successful }),
        ];
        for cut in 1..stream.len() {
            let mut lines = EventLines::new();
            let mut events = lines.push(&stream.as_bytes()[..cut]).expect("first part");
            events.extend(lines.push(&stream.as_bytes()[cut..]).expect("second part"));
            assert_eq!(lines.finish().expect("clean end"), None);
            assert_eq!(kinds(&events), expected, "cut at byte {cut}");
        }
        let mut lines = EventLines::new();
        let one_byte_at_a_time: Vec<UpdateEvent> =
            stream.bytes().flat_map(|byte| lines.push(&[byte]).expect("byte")).collect();
        assert_eq!(kinds(&one_byte_at_a_time), expected);
    }

    #[test]
    fn keep_alive_lines_are_skipped_and_a_last_line_without_newline_counts() {
        let mut lines = EventLines::new();
        assert!(lines.push(b"\n\n").expect("keep-alives").is_empty());
        assert!(lines.push(b"\r\n  \n").expect("blank lines").is_empty());
        let events = lines.push(format!("{TASK}\r\n\n{STARTED}").as_bytes()).expect("events");
        assert_eq!(events.len(), 1, "the second line is not finished yet");
        assert_eq!(lines.finish().expect("ends").map(|event| event.seq), Some(2));
    }

    #[test]
    fn a_bad_line_is_an_error_naming_it() {
        let mut lines = EventLines::new();
        let error = lines.push(format!("{TASK}\n\n{{\"seq\":2}}\n").as_bytes()).expect_err("not an event");
        assert!(matches!(error, EventLineError::NotAnEvent { line: 2, .. }), "{error:?}");
        let mut lines = EventLines::new();
        let error = lines.push(b"<html>\n").expect_err("not JSON");
        assert!(matches!(error, EventLineError::NotAnEvent { line: 1, .. }), "{error:?}");
    }

    #[test]
    fn an_endless_line_is_refused_before_it_fills_memory() {
        let mut lines = EventLines::new();
        let chunk = vec![b'x'; 64 * 1024];
        let mut refused = None;
        for round in 0..20 {
            if let Err(error) = lines.push(&chunk) {
                refused = Some((round, error));
                break;
            }
        }
        let (round, error) = refused.expect("refused");
        assert_eq!(error, EventLineError::TooLong);
        assert_eq!(round, MAX_EVENT_LINE_BYTES / chunk.len(), "refused as soon as the line passes the limit");
    }
}
