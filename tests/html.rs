//! The HTML report: loads in headless Chromium without console errors (so nothing external
//! is referenced and nothing fails), and its structure is snapshotted.

use std::process::Command;

use weightkin_runner::{audit_file, registry, ReportFormat, RunOptions};

fn demo_html() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let recipe = weightkin_runner::demo::generate(dir.path()).unwrap();
    let reg = registry::builtin().unwrap();
    let (_, report) = audit_file(&recipe, &reg, &RunOptions::default()).unwrap();
    (dir, ReportFormat::Html.render(&report))
}

/// Headings, figures and tables in document order: the page's structure without its numbers.
fn outline(html: &str) -> String {
    let tag = regex::Regex::new(
        r#"<(h[1-3])>(.*?)</h[1-3]>|<svg [^>]*aria-label="([^"]*)"|<(table|details|figure)[ >]"#,
    )
    .unwrap();
    let strip = regex::Regex::new("<[^>]+>").unwrap();
    tag.captures_iter(html)
        .map(|c| match (c.get(1), c.get(2), c.get(3), c.get(4)) {
            (Some(h), Some(text), _, _) => {
                format!("{}: {}", h.as_str(), strip.replace_all(text.as_str(), ""))
            }
            (_, _, Some(label), _) => format!("  svg: {}", label.as_str()),
            (_, _, _, Some(t)) => format!("  {}", t.as_str()),
            _ => String::new(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn html_structure() {
    let (_dir, html) = demo_html();
    assert!(html.starts_with("<!DOCTYPE html>"));
    // Self-contained: no scripts, no external resources.
    for needle in ["<script", "http://", "https://", "<link", "@import", "url("] {
        let allowed = needle == "http://"
            && html.matches("http://").count()
                == html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count();
        assert!(allowed || !html.contains(needle), "HTML contains {needle}");
    }
    insta::assert_snapshot!(outline(&html));
}

#[test]
fn html_loads_in_headless_chromium_without_console_errors() {
    let (dir, html) = demo_html();
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium is installed (scripts/test.sh installs Debian's `chromium` package)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("<svg"), "the page did not render");
    assert!(dom.contains("Layer alignment"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let console: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught") || l.contains("Failed to load"))
        .collect();
    assert!(console.is_empty(), "console output: {console:#?}");
}
