//! The dashboard's HTML, one function per view. Text from files is escaped; the curves are
//! drawn in the page by assets/serve/app.js from the JSON endpoints.

use crate::compare::RunData;
use crate::runs::Listed;
use std::fmt::Write as _;
use std::path::Path;

/// Text as HTML: `&`, `<`, `>` and quotes escaped.
pub fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · runner</title>\
         <link rel=\"stylesheet\" href=\"/assets/uPlot.min.css\">\
         <link rel=\"stylesheet\" href=\"/assets/style.css\">\
         <script src=\"/assets/uPlot.iife.min.js\"></script>\
         <script src=\"/assets/app.js\"></script></head><body>\
         <nav><a href=\"/\">runs</a> <span>runner serve</span></nav><main>\
         <h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    )
}

fn number(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into())
}

pub fn runs(runs: &[Listed], studies: &[String], filter: &str) -> String {
    let mut body = format!(
        "<form method=\"get\" action=\"/\"><input name=\"q\" value=\"{}\" placeholder=\"filter by name\">\
         <button>filter</button></form>\
         <form method=\"get\" action=\"/compare\"><table id=\"runs\"><thead><tr><th></th><th>run</th>\
         <th>arch</th><th>status</th><th>best val exact</th><th>best val loss</th>\
         <th>test exact</th><th>steps</th><th>wall s</th></tr></thead><tbody>",
        esc(filter)
    );
    for r in runs.iter().filter(|r| r.name.contains(filter)) {
        let key = format!("{}/{}", r.name, r.run_id);
        let cells = match &r.summary {
            Some(s) => format!(
                "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td>",
                esc(&s.arch),
                s.status.as_str(),
                number(s.best_val_exact),
                number(s.best_val_loss),
                number(s.test_exact),
                s.steps,
                s.wall_s
            ),
            None => "<td>?</td><td>running or unfinished</td><td colspan=\"5\"></td>".into(),
        };
        let _ = write!(
            body,
            "<tr><td><input type=\"checkbox\" name=\"run\" value=\"{k}\"></td>\
             <td><a href=\"/run/{k}\">{k}</a></td>{cells}</tr>",
            k = esc(&key)
        );
    }
    body.push_str("</tbody></table><button>compare the ticked runs</button></form>");
    if !studies.is_empty() {
        body.push_str("<h2>Studies</h2><ul>");
        for s in studies {
            let _ = write!(body, "<li><a href=\"/study/{0}\">{0}</a></li>", esc(s));
        }
        body.push_str("</ul>");
    }
    page("Runs", &body)
}

/// Files of a run shown as text, if present.
fn text_file(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name)).ok()
}

/// PNG figures directly in `dir`, sorted.
fn figures(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".png") && !n.starts_with(crate::artifacts::TMP_PREFIX))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

pub fn run(name: &str, id: &str, dir: &Path) -> String {
    let key = format!("{name}/{id}");
    let mut body = format!(
        "<p><a href=\"/compare?run={k}\">compare with others</a></p>\
         <div class=\"chart\" data-runs=\"{k}\"></div>",
        k = esc(&key)
    );
    for (title, file) in [
        ("Summary", "summary.json"),
        ("Spec (resolved.toml)", "resolved.toml"),
        ("Evaluation suite", "eval_suite.md"),
    ] {
        if let Some(text) = text_file(dir, file) {
            let _ = write!(body, "<h2>{title}</h2><pre>{}</pre>", esc(&text));
        }
    }
    let own = figures(dir);
    let explain = figures(&dir.join("explain"));
    if !own.is_empty() || !explain.is_empty() {
        body.push_str("<h2>Figures</h2><div class=\"figures\">");
        let all = own
            .iter()
            .cloned()
            .chain(explain.iter().map(|f| format!("explain/{f}")));
        for f in all {
            let _ = write!(
                body,
                "<figure><img src=\"/files/{k}/{f}\" alt=\"{f}\" loading=\"lazy\"><figcaption>{f}</figcaption></figure>",
                k = esc(&key),
                f = esc(&f)
            );
        }
        body.push_str("</div>");
    }
    page(&format!("Run {key}"), &body)
}

pub fn compare(picked: &[String], runs: &[RunData], problems: &[String]) -> String {
    let keys: Vec<String> = picked.iter().map(|p| esc(p)).collect();
    let mut body = format!(
        "<div class=\"chart\" data-runs=\"{}\"></div>",
        keys.join(" ")
    );
    if runs.is_empty() {
        body.push_str("<p>Tick runs on the <a href=\"/\">runs page</a> to compare them.</p>");
    } else {
        let _ = write!(
            body,
            "<pre>{}</pre>",
            esc(&crate::compare::render(runs, false, false))
        );
    }
    for p in problems {
        let _ = write!(body, "<p class=\"warning\">{}</p>", esc(p));
    }
    page("Compare", &body)
}

pub fn study(name: &str, show: &str, dir: &Path) -> String {
    let mut body = format!(
        "<div class=\"chart\" data-study=\"{n}\"></div><pre id=\"show\" data-study=\"{n}\">{}</pre>",
        esc(show),
        n = esc(name)
    );
    // `runner study report` leaves parallel coordinates and importance figures here.
    let drawn = figures(dir);
    if drawn.is_empty() {
        body.push_str("<p>Parallel coordinates and parameter importance: run <code>runner study report</code> on this study.</p>");
    } else {
        body.push_str("<h2>Figures (runner study report)</h2><div class=\"figures\">");
        for f in drawn {
            let _ = write!(
                body,
                "<figure><img src=\"/files/{n}/{f}\" alt=\"{f}\"><figcaption>{f}</figcaption></figure>",
                n = esc(name),
                f = esc(&f)
            );
        }
        body.push_str("</div>");
    }
    page(&format!("Study {name}"), &body)
}
