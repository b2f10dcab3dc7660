//! `hf://org/name[@revision][/subpath]`: parsing and validation.
//!
//! Every part is checked against the hub's own naming rules before it becomes a path
//! component (of the Hugging Face cache, of the fetched-bytes store) or a URL segment, so a
//! reference can never name a path outside those directories: organisation and repository
//! names are `[A-Za-z0-9._-]` without `--` or `..` and not starting or ending with `-` or
//! `.` (the hub's rule, which is also what makes the cache's `models--org--name` folder
//! unambiguous); a revision is a branch, tag or commit made of the same characters plus `/`
//! (written `%2F` in the reference, as in `refs%2Fpr%2F1`); a subpath is `/`-separated
//! components, none empty, `.` or `..`, and no backslash or control character.

use std::fmt;

use crate::{Error, Result};

/// The scheme prefix.
pub const SCHEME: &str = "hf://";
/// The revision used when a reference names none (the hub's default branch).
pub const DEFAULT_REVISION: &str = "main";
/// The hub's cap on an organisation or repository name.
const MAX_NAME: usize = 96;
/// A cap on a revision or subpath, far above anything the hub allows.
const MAX_PATH: usize = 1024;

/// A parsed `hf://` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfRef {
    /// Organisation (or user).
    pub org: String,
    /// Repository name.
    pub name: String,
    /// Branch, tag or commit as given (`None`: [`DEFAULT_REVISION`]).
    pub revision: Option<String>,
    /// A file or directory inside the repository (`/`-separated), if given.
    pub subpath: Option<String>,
}

impl HfRef {
    /// Whether `text` is meant as an `hf://` reference (starts with the scheme).
    pub fn is_hf(text: &str) -> bool {
        text.starts_with(SCHEME)
    }

    /// Parses `hf://org/name[@revision][/subpath]`.
    pub fn parse(text: &str) -> Result<HfRef> {
        let bad = |problem| Error::BadReference {
            text: text.to_owned(),
            problem,
        };
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or(bad("it does not start with hf://"))?;
        let (org, rest) = rest
            .split_once('/')
            .ok_or(bad("it names no repository: write hf://org/name"))?;
        let (repo, subpath) = match rest.split_once('/') {
            Some((repo, sub)) => (repo, Some(sub)),
            None => (rest, None),
        };
        let (name, revision) = match repo.split_once('@') {
            Some((name, rev)) => (name, Some(rev)),
            None => (repo, None),
        };
        check_name(org).map_err(bad)?;
        check_name(name).map_err(bad)?;
        let revision = revision
            .map(|r| {
                let decoded = r.replace("%2F", "/").replace("%2f", "/");
                check_revision(&decoded).map(|()| decoded)
            })
            .transpose()
            .map_err(bad)?;
        let subpath = match subpath {
            None | Some("") => None,
            Some(s) => {
                let s = s.strip_suffix('/').unwrap_or(s);
                check_path(s, "the subpath").map_err(bad)?;
                Some(s.to_owned())
            }
        };
        Ok(HfRef {
            org: org.to_owned(),
            name: name.to_owned(),
            revision,
            subpath,
        })
    }

    /// `org/name`.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.org, self.name)
    }

    /// The revision asked for ([`DEFAULT_REVISION`] when none was given).
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or(DEFAULT_REVISION)
    }

    /// The revision, when it is a full commit hash (lowercased).
    pub fn commit(&self) -> Option<String> {
        self.revision
            .as_deref()
            .filter(|r| is_commit(r))
            .map(str::to_ascii_lowercase)
    }
}

impl fmt::Display for HfRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.org, self.name)?;
        if let Some(r) = &self.revision {
            write!(f, "@{}", r.replace('/', "%2F"))?;
        }
        if let Some(s) = &self.subpath {
            write!(f, "/{s}")?;
        }
        Ok(())
    }
}

/// Whether `text` is a full (40 hex digit) commit hash.
pub fn is_commit(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The hub's rule for an organisation or repository name.
fn check_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        return Err("an organisation or repository name is empty");
    }
    if name.len() > MAX_NAME {
        return Err("an organisation or repository name is longer than 96 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("names may hold only letters, digits, `.`, `_` and `-`");
    }
    if name.contains("--") || name.contains("..") {
        return Err("names may not contain `--` or `..`");
    }
    if name.starts_with(['-', '.']) || name.ends_with(['-', '.']) {
        return Err("names may not start or end with `-` or `.`");
    }
    Ok(())
}

fn check_revision(rev: &str) -> std::result::Result<(), &'static str> {
    if rev.is_empty() {
        return Err("the revision after `@` is empty");
    }
    if !rev
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
    {
        return Err("a revision may hold only letters, digits, `.`, `_`, `-` and `%2F`");
    }
    check_path(rev, "the revision")
}

/// `/`-separated components, each safe as a path component.
pub(crate) fn check_path(path: &str, _what: &str) -> std::result::Result<(), &'static str> {
    if path.len() > MAX_PATH {
        return Err("a revision or subpath is longer than 1024 characters");
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err("a path component is empty, `.` or `..`");
        }
        if part
            .chars()
            .any(|c| c.is_control() || c == '\\' || c == ':')
        {
            return Err("a path component holds a control character, `\\` or `:`");
        }
    }
    Ok(())
}

/// Percent-encodes one URL path segment (everything but RFC 3986 unreserved characters).
pub(crate) fn encode_segment(segment: &str, out: &mut String) {
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Percent-encodes a `/`-separated path, keeping the slashes.
pub(crate) fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, part) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        encode_segment(part, &mut out);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_part() {
        let r = HfRef::parse("hf://Qwen/Qwen2.5-VL-7B@v1.0/sub/model.safetensors").unwrap();
        assert_eq!(r.repo(), "Qwen/Qwen2.5-VL-7B");
        assert_eq!(r.revision(), "v1.0");
        assert_eq!(r.subpath.as_deref(), Some("sub/model.safetensors"));
        assert_eq!(
            r.to_string(),
            "hf://Qwen/Qwen2.5-VL-7B@v1.0/sub/model.safetensors"
        );

        let r = HfRef::parse("hf://org/name").unwrap();
        assert_eq!((r.revision(), r.subpath.as_deref()), ("main", None));
        let r = HfRef::parse("hf://org/name@refs%2Fpr%2F3/").unwrap();
        assert_eq!(r.revision(), "refs/pr/3");
        assert_eq!(r.to_string(), "hf://org/name@refs%2Fpr%2F3");
        let hash = "0123456789abcdef0123456789ABCDEF01234567";
        let r = HfRef::parse(&format!("hf://org/name@{hash}")).unwrap();
        assert_eq!(r.commit().unwrap(), hash.to_ascii_lowercase());
        assert!(HfRef::parse("hf://org/name@main")
            .unwrap()
            .commit()
            .is_none());
    }

    #[test]
    fn refuses_what_could_escape_or_is_not_a_hub_name() {
        for bad in [
            "org/name",
            "hf://name",
            "hf:///name",
            "hf://org/",
            "hf://../name",
            "hf://org/..",
            "hf://org/na--me",
            "hf://org/-name",
            "hf://org/name.",
            "hf://org/na me",
            "hf://org/name@",
            "hf://org/name@a%2F..%2Fb",
            "hf://org/name@a b",
            "hf://org/name/../x",
            "hf://org/name/a//b",
            "hf://org/name/a/./b",
            "hf://org/name/a\\b",
            "hf://org/name/c:x",
        ] {
            assert!(
                matches!(HfRef::parse(bad), Err(Error::BadReference { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn encodes_url_segments() {
        assert_eq!(
            encode_path("a b/c+d.safetensors"),
            "a%20b/c%2Bd.safetensors"
        );
        let mut s = String::new();
        encode_segment("refs/pr/1", &mut s);
        assert_eq!(s, "refs%2Fpr%2F1");
    }
}
