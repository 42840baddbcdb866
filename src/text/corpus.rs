//! Corpus files: read as UTF-8 (any script), refused with the file and line when they are
//! not, and split into training and validation text by one fixed rule.

use crate::error::UserError;

/// One corpus file, its path as the spec gave it.
#[derive(Debug, Clone)]
pub struct CorpusFile {
    pub path: String,
    pub text: String,
}

impl CorpusFile {
    /// The file's training and validation parts: validation is the last `val_fraction` of
    /// its bytes, moved forward to the next line start (so no line is cut) when there is
    /// one, else to the next character boundary.
    pub fn split(&self, val_fraction: f64) -> (&str, &str) {
        let text = self.text.as_str();
        let mut cut = ((1.0 - val_fraction) * text.len() as f64) as usize;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        match text[cut..].find('\n') {
            Some(i) if cut + i + 1 < text.len() => cut += i + 1,
            _ => {}
        }
        text.split_at(cut)
    }
}

/// Reads every file of `data.corpus`.
pub fn read(paths: &[String]) -> Result<Vec<CorpusFile>, UserError> {
    paths.iter().map(|p| read_one(p)).collect()
}

fn read_one(path: &str) -> Result<CorpusFile, UserError> {
    let fail = |m: String| UserError::new("", Some("data.corpus"), format!("'{path}' {m}"));
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot be read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
        fail(format!(
            "is not UTF-8: byte 0x{:02x} at line {line} (byte offset {at}); save the file as \
             UTF-8",
            bytes[at]
        ))
    })?;
    if text.trim().is_empty() {
        return Err(fail("is empty: a corpus file needs text".into()));
    }
    Ok(CorpusFile {
        path: path.to_string(),
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> CorpusFile {
        CorpusFile {
            path: "x".into(),
            text: text.into(),
        }
    }

    #[test]
    fn validation_is_the_tail_cut_at_a_line_start() {
        let f = file("one\ntwo\nthree\nfour\nfive\n");
        let (train, val) = f.split(0.3);
        assert_eq!(format!("{train}{val}"), f.text);
        assert!(train.ends_with('\n'), "{train:?}");
        assert_eq!(val, "five\n");
    }

    #[test]
    fn a_single_line_is_cut_at_a_character_boundary() {
        let f = file("吾輩は猫である。名前はまだ無い。");
        let (train, val) = f.split(0.25);
        assert!(!train.is_empty() && !val.is_empty());
        assert_eq!(format!("{train}{val}"), f.text);
    }

    #[test]
    fn empty_missing_and_non_utf8_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, " \n").unwrap();
        let latin1 = dir.path().join("latin1.txt");
        std::fs::write(&latin1, b"ok\nna\xefve\n").unwrap();
        let p = |p: &std::path::Path| p.display().to_string();
        let e = read(&[p(&empty)]).unwrap_err().to_string();
        assert!(e.contains("data.corpus") && e.contains("is empty"), "{e}");
        let e = read(&[p(&latin1)]).unwrap_err().to_string();
        assert!(e.contains("not UTF-8") && e.contains("line 2"), "{e}");
        let e = read(&[p(&dir.path().join("none.txt"))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be read"), "{e}");
    }
}
