//! A hub-shaped HTTP server on the loopback interface, for tests (feature `testing`).
//!
//! It serves what `weightkin-hub` asks of the hub — `GET /api/models/{org}/{name}/revision/
//! {rev}` and `GET /{org}/{name}/resolve/{rev}/{path}` with `Range` — from repositories held
//! in memory, and can misbehave the ways real servers do: redirect file requests to a second
//! server on another port (as the hub redirects to its CDN), refuse a gated repository
//! without the right token, drop connections in the middle of a body, or ignore `Range` and
//! send the whole file. It counts the body bytes it sends and records every request, so tests
//! assert how much was fetched and which headers went where.
//!
//! One thread per connection, `Connection: close` on every response; it listens on
//! `127.0.0.1` only and stops when dropped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::Digest;

/// One repository.
#[derive(Debug, Clone, Default)]
pub struct Repo {
    /// Branch or tag → commit.
    pub refs: BTreeMap<String, String>,
    /// Commit → path → bytes.
    pub commits: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Access needs `Authorization: Bearer {token}`.
    pub gated_token: Option<String>,
}

impl Repo {
    /// A repository whose `main` (and commit `commit`) holds `files`.
    pub fn new(commit: &str, files: &[(&str, Vec<u8>)]) -> Repo {
        let mut repo = Repo::default();
        repo.add_commit(commit, files);
        repo.refs.insert("main".to_owned(), commit.to_owned());
        repo
    }

    /// Adds commit `commit` holding `files`.
    pub fn add_commit(&mut self, commit: &str, files: &[(&str, Vec<u8>)]) {
        self.commits.insert(
            commit.to_owned(),
            files
                .iter()
                .map(|(p, b)| ((*p).to_owned(), b.clone()))
                .collect(),
        );
    }
}

/// A request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The request target (path and query).
    pub target: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// How the server misbehaves.
#[derive(Debug, Default)]
pub struct Faults {
    /// Send the whole file with `200` whatever `Range` says.
    pub ignore_range: AtomicBool,
    /// Drop this many more file responses after [`Faults::drop_after`] body bytes.
    pub drops: AtomicU32,
    /// Body bytes sent before a drop.
    pub drop_after: AtomicU64,
    /// List a wrong SHA-256 for every file (as if the bytes had been tampered with).
    pub wrong_sha: AtomicBool,
}

struct Shared {
    repos: BTreeMap<String, Repo>,
    /// (repo, commit, path) → SHA-256, computed once at start (the hub lists them stored).
    shas: BTreeMap<(String, String, String), String>,
    seen: Mutex<Vec<Seen>>,
    body_bytes: AtomicU64,
    faults: Faults,
    /// Where `resolve` redirects to (the "CDN"), if anywhere.
    redirect: Mutex<Option<SocketAddr>>,
    stop: AtomicBool,
}

/// A running server. See the module documentation.
pub struct HubServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HubServer {
    /// Starts a server on `127.0.0.1` (a free port) serving `repos` (`org/name` → repo).
    pub fn start(repos: BTreeMap<String, Repo>) -> std::io::Result<HubServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shas = repos
            .iter()
            .flat_map(|(name, repo)| {
                repo.commits.iter().flat_map(move |(commit, files)| {
                    files.iter().map(move |(path, bytes)| {
                        (
                            (name.clone(), commit.clone(), path.clone()),
                            sha256_hex(bytes),
                        )
                    })
                })
            })
            .collect();
        let shared = Arc::new(Shared {
            shas,
            repos,
            seen: Mutex::new(Vec::new()),
            body_bytes: AtomicU64::new(0),
            faults: Faults::default(),
            redirect: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let for_thread = shared.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if for_thread.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = for_thread.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &shared);
                });
            }
        });
        Ok(HubServer {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Redirects every `resolve` request to `cdn` (a server holding the same repositories),
    /// at `/cdn/{org}/{name}/{commit}/{path}`.
    pub fn redirect_to(&self, cdn: &HubServer) {
        *lock(&self.shared.redirect) = Some(cdn.addr);
    }

    /// The faults to inject.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Body bytes of files sent so far (API documents not counted).
    pub fn body_bytes(&self) -> u64 {
        self.shared.body_bytes.load(Ordering::Relaxed)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.shared.seen).clone()
    }

    /// Forgets the requests and byte count so far.
    pub fn reset_counts(&self) {
        lock(&self.shared.seen).clear();
        self.shared.body_bytes.store(0, Ordering::Relaxed);
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The hex SHA-256 of `bytes` (what the hub lists as an LFS file's `sha256`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let seen = Seen {
        target: target.clone(),
        range: headers.get("range").cloned(),
        authorization: headers.get("authorization").cloned(),
    };
    lock(&shared.seen).push(seen.clone());
    let mut out = stream;
    let path = target.split('?').next().unwrap_or("");
    let parts: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let repos = &shared.repos;
    let authorized = |repo: &Repo| match &repo.gated_token {
        None => true,
        Some(t) => seen.authorization.as_deref() == Some(&format!("Bearer {t}")),
    };
    match parts
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["api", "models", org, name, "revision", rev] => {
            let Some(repo) = repos.get(&format!("{org}/{name}")) else {
                return status(&mut out, 404);
            };
            if !authorized(repo) {
                return status(&mut out, 401);
            }
            let Some((commit, files)) = commit_of(repo, rev) else {
                return status(&mut out, 404);
            };
            let wrong = shared.faults.wrong_sha.load(Ordering::Relaxed);
            let key = |p: &str| (format!("{org}/{name}"), commit.clone(), p.to_owned());
            let siblings: Vec<serde_json::Value> = files
                .iter()
                .map(|(p, b)| {
                    let sha = match shared.shas.get(&key(p)) {
                        Some(s) if !wrong => s.clone(),
                        _ => sha256_hex(p.as_bytes()),
                    };
                    serde_json::json!({
                        "rfilename": p,
                        "size": b.len(),
                        "lfs": {"sha256": sha, "size": b.len()},
                    })
                })
                .collect();
            let body = serde_json::json!({"sha": commit, "siblings": siblings}).to_string();
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )
        }
        [org, name, "resolve", rev, file @ ..] => {
            let Some(repo) = repos.get(&format!("{org}/{name}")) else {
                return status(&mut out, 404);
            };
            if !authorized(repo) {
                return status(&mut out, 401);
            }
            let Some((commit, files)) = commit_of(repo, rev) else {
                return status(&mut out, 404);
            };
            let file = file.join("/");
            let Some(bytes) = files.get(&file) else {
                return status(&mut out, 404);
            };
            if let Some(cdn) = *lock(&shared.redirect) {
                return write!(
                    out,
                    "HTTP/1.1 302 Found\r\nLocation: http://{cdn}/cdn/{org}/{name}/{commit}/{file}\
                     \r\nX-Repo-Commit: {commit}\r\nX-Linked-Etag: \"{}\"\r\nContent-Length: 0\
                     \r\nConnection: close\r\n\r\n",
                    shared
                        .shas
                        .get(&(format!("{org}/{name}"), commit.clone(), file.clone()))
                        .cloned()
                        .unwrap_or_default()
                );
            }
            send_file(&mut out, shared, bytes, seen.range.as_deref())
        }
        ["cdn", org, name, commit, file @ ..] => {
            let file = file.join("/");
            let bytes = repos
                .get(&format!("{org}/{name}"))
                .and_then(|r| r.commits.get(*commit))
                .and_then(|f| f.get(&file));
            match bytes {
                Some(b) => send_file(&mut out, shared, b, seen.range.as_deref()),
                None => status(&mut out, 404),
            }
        }
        _ => status(&mut out, 404),
    }
}

fn commit_of<'a>(repo: &'a Repo, rev: &str) -> Option<(String, &'a BTreeMap<String, Vec<u8>>)> {
    let commit = repo
        .refs
        .get(rev)
        .cloned()
        .unwrap_or_else(|| rev.to_owned());
    repo.commits.get(&commit).map(|f| (commit, f))
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status(out: &mut TcpStream, code: u16) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

fn send_file(
    out: &mut TcpStream,
    shared: &Shared,
    bytes: &[u8],
    range: Option<&str>,
) -> std::io::Result<()> {
    let len = bytes.len() as u64;
    let asked = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    let ignore = shared.faults.ignore_range.load(Ordering::Relaxed);
    let (start, end) = match asked {
        Some((a, b)) if !ignore => {
            if a >= len || b < a {
                return write!(
                    out,
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
            let end = b.min(len - 1) + 1;
            write!(
                out,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{}/{len}\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                end - 1,
                end - a
            )?;
            (a, end)
        }
        _ => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
            )?;
            (0, len)
        }
    };
    let drop = shared
        .faults
        .drops
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1))
        .is_ok();
    let body = &bytes[start as usize..end as usize];
    let body = if drop {
        let keep = shared.faults.drop_after.load(Ordering::Relaxed) as usize;
        &body[..keep.min(body.len())]
    } else {
        body
    };
    // Counted as sent once written: a client that hangs up early is charged what was written.
    for chunk in body.chunks(64 << 10) {
        out.write_all(chunk)?;
        shared
            .body_bytes
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    out.flush()?;
    if drop {
        out.shutdown(std::net::Shutdown::Both)?;
    }
    Ok(())
}
