//! Log lines that a client cannot forge: every field value is written with its
//! line breaks, terminal control characters and other invisible controls
//! escaped, so a certificate name, path, token or source sent by a client can
//! neither start a new log line nor recolour or rewrite a terminal.
//!
//! [`EscapingFields`] is the field formatter of a `tracing-subscriber` fmt
//! layer; [`Escaped`] escapes one value where it is written elsewhere.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// Whether `c` must be escaped: control characters (C0, DEL, C1), line and
/// paragraph separators, and the bidirectional overrides that reorder text.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Writes `text` with every character that [`needs_escape`] written as an escape.
fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    for c in text.chars() {
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if needs_escape(c) => write!(out, "\\u{{{:x}}}", u32::from(c))?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

/// A value displayed with its control characters escaped.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut escaping = EscapingWriter { inner: f };
        write!(escaping, "{}", self.0)
    }
}

/// Escapes what passes through it into `inner`.
struct EscapingWriter<'a, W> {
    inner: &'a mut W,
}

impl<W: fmt::Write> fmt::Write for EscapingWriter<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        write_escaped(self.inner, text)
    }
}

/// A field formatter that writes `name=value` pairs (the message first, bare)
/// with every value escaped.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapingFields;

impl<'writer> FormatFields<'writer> for EscapingFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = EscapingVisitor { writer, first: true, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl EscapingVisitor<'_> {
    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        let mut escaping = EscapingWriter { inner: &mut self.writer };
        self.result = if field.name() == "message" {
            escaping.inner.write_str(separator).and_then(|()| escaping.write_fmt(value))
        } else {
            write!(escaping.inner, "{separator}{}=", field.name()).and_then(|()| escaping.write_fmt(value))
        };
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, format_args!("{value:?}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }
}

/// Sends `tracing` to standard error with escaped fields, filtered by
/// `RUST_LOG` or else by `default` (such as `info`), in colour only on a terminal.
pub fn init_stderr(default: &str) {
    tracing_subscriber::fmt()
        .fmt_fields(EscapingFields)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_is_kept() {
        let forged = "ops\n2026-01-01 INFO audit: forged\x1b[31m\r\u{202e}é";
        let shown = Escaped(forged).to_string();
        assert_eq!(shown, "ops\\n2026-01-01 INFO audit: forged\\u{1b}[31m\\r\\u{202e}é");
        assert!(!shown.chars().any(needs_escape));
    }

    #[test]
    fn every_field_of_an_event_is_escaped() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapingFields)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let client = "evil\nINFO forged";
            let source = String::from("file:///x\x1b[2J");
            tracing::info!(%client, source = source.as_str(), path = ?"/v1/\r", "refused {}", "a\nb");
        });
        let text = String::from_utf8(captured.0.lock().unwrap_or_else(|p| p.into_inner()).clone()).expect("utf-8");
        assert_eq!(text.matches('\n').count(), 1, "one event, one line: {text:?}");
        assert!(!text.contains('\x1b') && !text.contains('\r'), "{text:?}");
        assert!(text.contains("refused a\\nb client=evil\\nINFO forged"), "{text:?}");
    }
}
