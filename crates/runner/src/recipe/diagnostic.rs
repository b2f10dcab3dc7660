//! Recipe problems with their line and column, all collected before any is reported, with
//! "did you mean" suggestions (Levenshtein distance from `strsim`).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a recipe, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

/// All problems found in a recipe.
#[derive(Debug, thiserror::Error)]
pub struct RecipeError {
    /// The recipe file.
    pub path: PathBuf,
    /// Problems, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for RecipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.diagnostics.len();
        write!(
            f,
            "recipe {} has {n} problem{}:",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for d in &self.diagnostics {
            // Some messages (regex errors) span lines; indent the rest under the first.
            write!(
                f,
                "\n  {}:{}:{}: {}",
                self.path.display(),
                d.line,
                d.column,
                d.message.trim_end().replace('\n', "\n      ")
            )?;
        }
        Ok(())
    }
}

pub(super) struct Diagnostics<'a> {
    pub(super) source: &'a str,
    list: Vec<(usize, Diagnostic)>,
}

impl RecipeError {
    /// A recipe with one problem, at byte `offset` of `source`.
    pub(super) fn at(path: &Path, source: &str, offset: usize, message: &str) -> RecipeError {
        let (line, column) = line_col(source, offset);
        RecipeError {
            path: path.to_owned(),
            diagnostics: vec![Diagnostic {
                line,
                column,
                message: message.to_owned(),
            }],
        }
    }
}

impl<'a> Diagnostics<'a> {
    /// No problems yet, in `source`.
    pub(super) fn new(source: &'a str) -> Diagnostics<'a> {
        Diagnostics {
            source,
            list: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.source, span.start);
        self.list.push((
            span.start,
            Diagnostic {
                line,
                column,
                message: message.into(),
            },
        ));
    }

    pub(super) fn finish(mut self, path: &Path) -> Result<(), RecipeError> {
        if self.list.is_empty() {
            return Ok(());
        }
        self.list.sort_by_key(|(offset, _)| *offset);
        Err(RecipeError {
            path: path.to_owned(),
            diagnostics: self.list.into_iter().map(|(_, d)| d).collect(),
        })
    }
}

/// 1-based line and column of byte `offset` in `source`.
pub(super) fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset.min(source.len())).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// " (did you mean `x`?)" if some candidate is close to `word`, else the list of candidates.
pub fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let best = candidates
        .iter()
        .map(|c| (strsim::levenshtein(word, c), *c))
        .min();
    match best {
        Some((d, c)) if d <= word.chars().count().max(3) / 3 + 1 => {
            format!(" (did you mean `{c}`?)")
        }
        _ => format!(" (expected one of: {})", candidates.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let s = "ab\ncdé f\n";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 3), (2, 1));
        assert_eq!(line_col(s, 8), (2, 5));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("cosin", ["cosine", "pearson"]),
            " (did you mean `cosine`?)"
        );
        assert_eq!(
            suggest("xyz", ["cosine", "pearson"]),
            " (expected one of: cosine, pearson)"
        );
    }
}
