//! Where the hub, its cache, the token and the fetched-bytes store are: read once from the
//! environment into a [`HubEnv`], so that tests build one from a map instead of mutating the
//! process environment.
//!
//! The variables and their precedence follow `huggingface_hub` (`constants.py`):
//! `HF_ENDPOINT` (default `https://huggingface.co`); the cache `HF_HUB_CACHE`, else
//! `HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`
//! (every one that is set is searched, in that order); the token `HF_TOKEN`, else the file
//! `HF_TOKEN_PATH`, else `HF_HOME/token`, else `~/.cache/huggingface/token`; offline when
//! `HF_HUB_OFFLINE` is `1`, `true`, `yes` or `on`.

use std::fmt;
use std::path::PathBuf;

/// The hub's public endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// Largest token file read (a token is ~40 bytes; anything larger is not a token file).
const MAX_TOKEN_FILE: u64 = 4096;

/// An access token. Its `Debug` and `Display` print `<redacted>`, so that it cannot reach a
/// log, an error or a report by accident; the crate-private `Token::header` is the one way to its text.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token from its text (trimmed); `None` when empty or not a valid header value.
    pub fn new(text: &str) -> Option<Token> {
        let t = text.trim();
        let printable = t.bytes().all(|b| b.is_ascii_graphic());
        (!t.is_empty() && printable).then(|| Token(t.to_owned()))
    }

    /// The `Authorization` header value.
    pub(crate) fn header(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The hub's settings, as the environment gives them.
#[derive(Debug, Clone)]
pub struct HubEnv {
    /// Base URL of the hub, without a trailing `/`.
    pub endpoint: String,
    /// Hugging Face cache directories to search, in order.
    pub hf_caches: Vec<PathBuf>,
    /// The access token, if any.
    pub token: Option<Token>,
    /// Whether the network is off (`HF_HUB_OFFLINE`).
    pub offline: bool,
    /// The fetched-bytes store (`$WEIGHTKIN_CACHE_DIR/hub`, else
    /// `$XDG_CACHE_HOME/weightkin/hub`, else `~/.cache/weightkin/hub`).
    pub store: Option<PathBuf>,
}

impl HubEnv {
    /// Settings from the process environment (reads the token file if there is one).
    pub fn from_env() -> HubEnv {
        HubEnv::from_vars(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Settings from `var` (a variable's value by name); reads the token file it points to.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> HubEnv {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        let home = set("HOME").map(PathBuf::from);
        let xdg = set("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        let default_cache = xdg
            .clone()
            .or_else(|| home.as_ref().map(|h| h.join(".cache")));
        let hf_home = set("HF_HOME")
            .map(PathBuf::from)
            .or_else(|| default_cache.as_ref().map(|c| c.join("huggingface")));
        let mut hf_caches = Vec::new();
        let mut push = |p: PathBuf| {
            if !hf_caches.contains(&p) {
                hf_caches.push(p);
            }
        };
        if let Some(c) = set("HF_HUB_CACHE").or_else(|| set("HUGGINGFACE_HUB_CACHE")) {
            push(PathBuf::from(c));
        }
        if let Some(h) = &hf_home {
            push(h.join("hub"));
        }
        if let Some(h) = &home {
            push(h.join(".cache").join("huggingface").join("hub"));
        }
        let token = set("HF_TOKEN")
            .or_else(|| set("HUGGING_FACE_HUB_TOKEN"))
            .and_then(|t| Token::new(&t))
            .or_else(|| {
                let file = set("HF_TOKEN_PATH")
                    .map(PathBuf::from)
                    .or_else(|| hf_home.as_ref().map(|h| h.join("token")))?;
                read_token(&file)
            });
        let offline = set("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
        });
        let endpoint = set("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let store = set("WEIGHTKIN_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| xdg.map(|x| x.join("weightkin")))
            .or_else(|| home.map(|h| h.join(".cache").join("weightkin")))
            .map(|d| d.join("hub"));
        HubEnv {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            hf_caches,
            token,
            offline,
            store,
        }
    }
}

fn read_token(path: &std::path::Path) -> Option<Token> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_TOKEN_FILE).read_to_string(&mut text).ok()?;
    Token::new(&text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(vars: &[(&str, &str)]) -> HubEnv {
        let map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        HubEnv::from_vars(|n| map.get(n).cloned())
    }

    #[test]
    fn precedence_follows_huggingface_hub() {
        let e = env(&[("HOME", "/h")]);
        assert_eq!(e.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(e.hf_caches, [PathBuf::from("/h/.cache/huggingface/hub")]);
        assert_eq!(e.store, Some(PathBuf::from("/h/.cache/weightkin/hub")));
        assert!(!e.offline && e.token.is_none());

        let e = env(&[
            ("HOME", "/h"),
            ("HF_HOME", "/hf"),
            ("HF_HUB_CACHE", "/c"),
            ("HF_ENDPOINT", "http://127.0.0.1:1/"),
            ("HF_HUB_OFFLINE", "True"),
            ("HF_TOKEN", " hf_abc \n"),
            ("WEIGHTKIN_CACHE_DIR", "/w"),
        ]);
        assert_eq!(e.endpoint, "http://127.0.0.1:1");
        assert_eq!(
            e.hf_caches,
            ["/c", "/hf/hub", "/h/.cache/huggingface/hub"].map(PathBuf::from)
        );
        assert!(e.offline);
        assert_eq!(e.token, Token::new("hf_abc"));
        assert_eq!(e.store, Some(PathBuf::from("/w/hub")));
    }

    #[test]
    fn token_from_the_cache_file_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hf_secret_file\n").unwrap();
        let e = env(&[("HF_HOME", dir.path().to_str().unwrap())]);
        let token = e.token.clone().unwrap();
        assert_eq!(token.header(), "Bearer hf_secret_file");
        let shown = format!("{e:?} {token} {token:?}");
        assert!(!shown.contains("hf_secret_file"), "{shown}");
    }
}
