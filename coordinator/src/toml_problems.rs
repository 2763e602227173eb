//! Reading a TOML file into its raw, serde-shaped struct while keeping every
//! problem with where it is: each unknown key by its path and line
//! (`releases[2].artifacts[0].colour (line 31)`), a syntax or type error by its line.
//! The release catalog and the service's config are read through it; the
//! inventory shares [`Lines`].

use serde::de::DeserializeOwned;

/// The prefix of the keys `toml::Spanned` uses internally; never a user's key.
const SPANNED_KEY_PREFIX: &str = "$__serde_spanned_private";

/// Why a text file could not be read whole.
#[derive(Debug)]
pub enum FileTextError {
    /// The file could not be opened or read.
    Io(std::io::Error),
    /// The file is longer than allowed.
    TooLarge,
}

/// The text of the file at `path`, when it holds at most `max_bytes`; no
/// more than that plus one byte is ever read.
pub fn read_file_text(path: &std::path::Path, max_bytes: u64) -> Result<String, FileTextError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(FileTextError::Io)?;
    let mut text = String::new();
    file.take(max_bytes + 1).read_to_string(&mut text).map_err(FileTextError::Io)?;
    if text.len() as u64 > max_bytes {
        return Err(FileTextError::TooLarge);
    }
    Ok(text)
}

/// Deserializes `text` into `T`. Unknown keys do not stop the reading: they
/// come back as problems beside the value, so the caller can add the problems
/// of its own checks and report everything at once. A syntax error or a value
/// of the wrong type ends the reading (`None`), named by its line.
pub fn read<T: DeserializeOwned>(text: &str) -> (Option<T>, Vec<String>) {
    let lines = Lines::of(text);
    let deserializer = match toml::Deserializer::parse(text) {
        Ok(deserializer) => deserializer,
        Err(error) => return (None, vec![located(&lines, &error, "not valid TOML: ")]),
    };
    let mut unknown = Vec::new();
    let read = serde_ignored::deserialize(deserializer, |path| unknown.push(segments(&path)));
    let document = if unknown.is_empty() { None } else { toml::de::DeTable::parse(text).ok() };
    let mut problems: Vec<String> =
        unknown.iter().map(|path| unknown_key(document.as_ref().map(|d| d.get_ref()), &lines, path)).collect();
    match read {
        Ok(raw) => (Some(raw), problems),
        Err(error) => {
            problems.push(located(&lines, &error, ""));
            (None, problems)
        }
    }
}

/// One step of a key's path: a table key or an array index.
enum Segment {
    Key(String),
    Index(usize),
}

/// `releases[2].colour (line 31): unknown key`, the line found in the text.
fn unknown_key(document: Option<&toml::de::DeTable<'_>>, lines: &Lines, path: &[Segment]) -> String {
    let mut key = String::new();
    for segment in path {
        match segment {
            Segment::Key(name) if key.is_empty() => key.push_str(name),
            Segment::Key(name) => key = format!("{key}.{name}"),
            Segment::Index(index) => key = format!("{key}[{index}]"),
        }
    }
    match document.and_then(|document| key_start(document, path)) {
        Some(start) => format!("{key} (line {}): unknown key", lines.line_of(start)),
        None => format!("{key}: unknown key"),
    }
}

/// Where the key at `path` is written, found by walking the parsed document.
fn key_start(document: &toml::de::DeTable<'_>, path: &[Segment]) -> Option<usize> {
    use toml::de::DeValue;
    let mut value: Option<&DeValue<'_>> = None;
    let mut start = None;
    for segment in path {
        match (segment, value) {
            (Segment::Key(name), None) => {
                let (key, next) = document.iter().find(|(key, _)| key.get_ref() == name)?;
                (start, value) = (Some(key.span().start), Some(next.get_ref()));
            }
            (Segment::Key(name), Some(DeValue::Table(table))) => {
                let (key, next) = table.iter().find(|(key, _)| key.get_ref() == name)?;
                (start, value) = (Some(key.span().start), Some(next.get_ref()));
            }
            (Segment::Index(index), Some(DeValue::Array(array))) => value = Some(array.get(*index)?.get_ref()),
            _ => return None,
        }
    }
    start
}

/// A path as serde_ignored reports it, without the internals of `toml::Spanned`.
fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    use serde_ignored::Path;
    let mut segments = match path {
        Path::Root => return Vec::new(),
        Path::Seq { parent, .. }
        | Path::Map { parent, .. }
        | Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent),
    };
    match path {
        Path::Seq { index, .. } => segments.push(Segment::Index(*index)),
        Path::Map { key, .. } if !key.starts_with(SPANNED_KEY_PREFIX) => segments.push(Segment::Key(key.clone())),
        _ => {}
    }
    segments
}

fn located(lines: &Lines, error: &toml::de::Error, prefix: &str) -> String {
    let at = error.span().map(|span| format!("line {}: ", lines.line_of(span.start))).unwrap_or_default();
    format!("{at}{prefix}{}", error.message().trim_end())
}

/// Where each line of a text starts, to name the line of a byte offset in
/// logarithmic time (one pass over the text, however many entries it has).
pub struct Lines(Vec<usize>);

impl Lines {
    /// Indexes the line ends of `text`.
    pub fn of(text: &str) -> Lines {
        Lines(text.bytes().enumerate().filter(|(_, byte)| *byte == b'\n').map(|(at, _)| at).collect())
    }

    /// The 1-based line of byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        self.0.partition_point(|&newline| newline < offset) + 1
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Outer {
        name: String,
        #[serde(default)]
        items: Vec<toml::Spanned<Inner>>,
    }

    #[derive(Debug, Deserialize)]
    struct Inner {
        size: u32,
    }

    #[test]
    fn every_unknown_key_is_named_by_its_path() {
        let text = "name = \"a\"\ncolour = 1\n[[items]]\nsize = 1\n[[items]]\nsize = 2\nshape = \"round\"\n";
        let (raw, problems) = read::<Outer>(text);
        let raw = raw.expect("unknown keys do not stop the reading");
        assert_eq!(raw.name, "a");
        assert_eq!(raw.items[1].get_ref().size, 2);
        assert_eq!(problems, ["colour (line 2): unknown key", "items[1].shape (line 7): unknown key"]);
    }

    #[test]
    fn a_wrong_type_and_broken_syntax_name_the_line() {
        let (raw, problems) = read::<Outer>("name = \"a\"\n[[items]]\nsize = \"big\"\n");
        assert!(raw.is_none());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("line 3: "), "{problems:?}");
        let (raw, problems) = read::<Outer>("name = \"a\"\nsize = \n");
        assert!(raw.is_none());
        assert!(problems[0].starts_with("line 2: not valid TOML: "), "{problems:?}");
    }

    #[test]
    fn lines_are_counted_from_one_and_a_newline_ends_its_own_line() {
        let lines = Lines::of("ab\ncd\n\ne");
        let found: Vec<usize> = (0..9).map(|offset| lines.line_of(offset)).collect();
        assert_eq!(found, [1, 1, 1, 2, 2, 2, 3, 4, 4]);
    }
}
