//! A JSON array written one element at a time, laid out as `serde_json`'s
//! pretty printer lays out a whole array, so that a long list (the status of
//! every node of a large fleet) is written as it comes and never held whole.

use std::io::{self, Write};

use serde::Serialize;

/// Writes `[`, the elements pretty-printed and indented, and `]` on finish.
pub struct PrettyArray<W: Write> {
    out: W,
    written: usize,
}

impl<W: Write> PrettyArray<W> {
    /// An array not yet opened: nothing is written until the first element or the finish.
    pub fn new(out: W) -> Self {
        Self { out, written: 0 }
    }

    /// Writes one element.
    pub fn push<T: Serialize>(&mut self, element: &T) -> io::Result<()> {
        self.push_pretty(&serde_json::to_string_pretty(element)?)
    }

    /// Writes one element given as `serde_json`'s pretty text of it.
    pub fn push_pretty(&mut self, text: &str) -> io::Result<()> {
        self.out.write_all(if self.written == 0 { b"[\n" } else { b",\n" })?;
        // A JSON text has no raw line break inside a string, so each line can be indented.
        for (number, line) in text.lines().enumerate() {
            if number > 0 {
                self.out.write_all(b"\n")?;
            }
            self.out.write_all(b"  ")?;
            self.out.write_all(line.as_bytes())?;
        }
        self.written += 1;
        Ok(())
    }

    /// Closes the array (`[]` when it has no element), flushes, and gives the writer back.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(if self.written == 0 { b"[]" } else { b"\n]" })?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn written(elements: &[Value]) -> String {
        let mut array = PrettyArray::new(Vec::new());
        for element in elements {
            array.push(element).expect("writes to memory");
        }
        String::from_utf8(array.finish().expect("writes to memory")).expect("JSON is UTF-8")
    }

    #[test]
    fn elements_written_one_by_one_read_as_serde_json_prints_the_whole_array() {
        let elements = vec![
            json!({"name": "cp-0", "state": {"components": [{"name": "kubelet", "v": "v1.30.2"}], "history": []}}),
            json!({"name": "worker-1", "note": "a \"quoted\"\nline", "empty": {}}),
            json!(null),
            json!([1, [2, 3], []]),
        ];
        assert_eq!(written(&elements), serde_json::to_string_pretty(&elements).expect("serializes"));
    }

    #[test]
    fn an_array_with_one_element_or_none_is_still_an_array() {
        assert_eq!(written(&[]), "[]");
        assert_eq!(written(&[json!(7)]), "[\n  7\n]");
    }
}
