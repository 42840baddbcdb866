//! Character-level vocabulary. Ids as in the origin project: 0 = padding, then each pair's
//! opener and closer in pair order, then `input`, `,output`, `,`. With the default pairs:
//! `(`=1 `)`=2 `【`=3 `】`=4 `{`=5 `}`=6 `input`=7 `,output`=8 `,`=9.

pub const PAD: u32 = 0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    pairs: Vec<(char, char)>,
}

/// A character that is not one of the run's brackets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{ch}' at position {position} is not one of the brackets {allowed}")]
pub struct UnknownChar {
    pub ch: char,
    /// Zero-based character position.
    pub position: usize,
    pub allowed: String,
}

impl Vocab {
    pub fn new(pairs: &[(char, char)]) -> Self {
        Self {
            pairs: pairs.to_vec(),
        }
    }

    pub fn pairs(&self) -> &[(char, char)] {
        &self.pairs
    }

    pub fn n_pairs(&self) -> usize {
        self.pairs.len()
    }

    /// Number of ids including padding.
    pub fn size(&self) -> usize {
        2 * self.pairs.len() + 4
    }

    pub fn opener(&self, pair: usize) -> u32 {
        2 * pair as u32 + 1
    }

    pub fn closer(&self, pair: usize) -> u32 {
        2 * pair as u32 + 2
    }

    pub fn input(&self) -> u32 {
        2 * self.pairs.len() as u32 + 1
    }

    pub fn output(&self) -> u32 {
        self.input() + 1
    }

    /// The `,` that ends every answer.
    pub fn end(&self) -> u32 {
        self.input() + 2
    }

    pub fn is_opener(&self, id: u32) -> bool {
        id >= 1 && id <= 2 * self.pairs.len() as u32 && id % 2 == 1
    }

    pub fn is_closer(&self, id: u32) -> bool {
        id >= 2 && id <= 2 * self.pairs.len() as u32 && id.is_multiple_of(2)
    }

    /// The closer matching an opener id.
    pub fn closer_of(&self, opener: u32) -> u32 {
        opener + 1
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>, UnknownChar> {
        text.chars()
            .enumerate()
            .map(|(position, ch)| {
                self.id_of(ch).ok_or_else(|| UnknownChar {
                    ch,
                    position,
                    allowed: self.brackets(),
                })
            })
            .collect()
    }

    fn id_of(&self, ch: char) -> Option<u32> {
        self.pairs.iter().enumerate().find_map(|(i, &(o, c))| {
            if ch == o {
                Some(self.opener(i))
            } else if ch == c {
                Some(self.closer(i))
            } else {
                None
            }
        })
    }

    /// Every bracket character, openers and closers, e.g. `()【】{}`.
    pub fn brackets(&self) -> String {
        self.pairs.iter().flat_map(|&(o, c)| [o, c]).collect()
    }

    /// One token as text; special tokens as the origin wrote them.
    pub fn token(&self, id: u32) -> String {
        let n = self.pairs.len() as u32;
        match id {
            PAD => String::new(),
            i if i <= 2 * n => {
                let (o, c) = self.pairs[((i - 1) / 2) as usize];
                if i % 2 == 1 { o } else { c }.to_string()
            }
            i if i == self.input() => "input".into(),
            i if i == self.output() => ",output".into(),
            i if i == self.end() => ",".into(),
            other => format!("<{other}>"),
        }
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter().map(|&id| self.token(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_vocab() -> Vocab {
        Vocab::new(&[('(', ')'), ('【', '】'), ('{', '}')])
    }

    #[test]
    fn ids_match_the_origin_project() {
        let v = default_vocab();
        assert_eq!(v.encode("()【】{}").unwrap(), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!((v.input(), v.output(), v.end(), v.size()), (7, 8, 9, 10));
        assert_eq!(v.decode(&[7, 3, 1, 8, 2, 9]), "input【(,output),");
    }

    #[test]
    fn encode_then_decode_is_identity_including_wide_brackets() {
        let v = default_vocab();
        for text in ["", "【", "【(){}】", "}}}】】", "(【{}】)"] {
            assert_eq!(v.decode(&v.encode(text).unwrap()), text);
        }
    }

    #[test]
    fn unknown_characters_are_reported_by_position() {
        let err = default_vocab().encode("(【[").unwrap_err();
        assert_eq!((err.ch, err.position), ('[', 2));
        assert!(err.to_string().contains("()【】{}"));
    }

    #[test]
    fn openers_and_closers_are_told_apart() {
        let v = default_vocab();
        assert!(v.is_opener(3) && !v.is_opener(4) && !v.is_opener(7));
        assert!(v.is_closer(6) && !v.is_closer(7) && !v.is_closer(0));
        assert_eq!(v.closer_of(5), 6);
    }
}
