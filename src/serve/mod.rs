//! `runner serve`: a local dashboard over an experiments directory. One page per view:
//! runs (newest first, filter by name), a run (curves that follow it while it trains, its
//! spec, summary, eval suite and explain figures), compare (the `runner compare` table and
//! overlaid curves), a study (its `study show` text and best-so-far curve, refreshed while
//! workers run; SQLite or the `--storage` PostgreSQL URL). Reads files and study storage
//! only and never writes; every asset comes from the binary; a path that leaves `--dir` is
//! refused.

mod pages;

use crate::error::UserError;
use crate::spec::StudyStorage;
use anyhow::{Context, Result};
use axum::extract::{Path as UrlPath, Query, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// What the handlers read from.
pub struct Served {
    /// The experiments directory, canonical.
    pub dir: PathBuf,
    pub storage: StudyStorage,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The experiments directory to show.
    #[arg(long, default_value = "experiments")]
    pub dir: PathBuf,
    /// Address to listen on; anything but loopback shows your runs to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port (0: any free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Open the dashboard in the default browser.
    #[arg(long)]
    pub open: bool,
    /// Where studies live: "sqlite" (each study directory's study.db) or a PostgreSQL URL.
    #[arg(long, env = "RUNNER_SWEEP__STORAGE", value_parser = StudyStorage::parse, default_value = "sqlite")]
    pub storage: StudyStorage,
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let dir = args.dir.canonicalize().map_err(|e| {
        UserError::input(
            "--dir",
            format!("'{}' cannot be read: {e}", args.dir.display()),
        )
    })?;
    if !dir.is_dir() {
        return Err(
            UserError::input("--dir", format!("'{}' is not a directory", dir.display())).into(),
        );
    }
    if !args.host.is_loopback() {
        eprintln!(
            "warning: listening on {}: anyone who can reach this machine can read these runs",
            args.host
        );
    }
    let state = Arc::new(Served {
        dir,
        storage: args.storage,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("starting the server's runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host, args.port))
            .await
            .map_err(|e| {
                UserError::input(
                    "--port",
                    format!("cannot listen on {}:{}: {e}", args.host, args.port),
                )
            })?;
        let address = listener.local_addr()?;
        let url = format!("http://{address}/");
        println!("serving {} at {url} (Ctrl-C to stop)", state.dir.display());
        if args.open {
            // Best effort: a machine without a browser still serves.
            let _ = std::process::Command::new("xdg-open").arg(&url).spawn();
        }
        axum::serve(listener, router(state))
            .with_graceful_shutdown(stopped())
            .await
            .context("serving")
    })
}

/// Resolves when Ctrl-C or SIGTERM was received (the runner's own signal handling).
async fn stopped() {
    while !crate::signals::stop_requested() {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

pub fn router(state: Arc<Served>) -> Router {
    Router::new()
        .route("/", get(runs_page))
        .route("/run/{name}/{id}", get(run_page))
        .route("/compare", get(compare_page))
        .route("/study/{name}", get(study_page))
        .route("/api/run/{name}/{id}/metrics", get(run_metrics))
        .route("/api/study/{name}", get(study_api))
        .route("/files/{*path}", get(file))
        .route("/assets/{file}", get(asset))
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such page") })
        .with_state(state)
}

type Shared = State<Arc<Served>>;

/// An error page with its status: 404 for what is not there, 403 for a path that leaves
/// the directory.
#[derive(Debug)]
pub enum Refused {
    NotFound(String),
    Forbidden,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::NotFound(what) => (StatusCode::NOT_FOUND, format!("not found: {what}")),
            Refused::Forbidden => (StatusCode::FORBIDDEN, "outside the served directory".into()),
        }
        .into_response()
    }
}

/// `root` joined with `relative`, which must stay inside it: only plain names, no `..`, no
/// absolute path, and (after links are followed) still below `root`.
pub fn inside(root: &Path, relative: &str) -> Result<PathBuf, Refused> {
    let rel = Path::new(relative);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) || relative.contains('\\') {
        return Err(Refused::Forbidden);
    }
    let joined = root.join(rel);
    let real = joined
        .canonicalize()
        .map_err(|_| Refused::NotFound(relative.to_string()))?;
    if !real.starts_with(root) {
        return Err(Refused::Forbidden);
    }
    Ok(real)
}

fn run_dir(state: &Served, name: &str, id: &str) -> Result<PathBuf, Refused> {
    let dir = inside(&state.dir, &format!("{name}/{id}"))?;
    if !crate::artifacts::RunPaths::new(&dir).is_run() {
        return Err(Refused::NotFound(format!("run {name}/{id}")));
    }
    Ok(dir)
}

#[derive(serde::Deserialize)]
struct RunsQuery {
    #[serde(default)]
    q: String,
}

async fn runs_page(State(state): Shared, Query(query): Query<RunsQuery>) -> Html<String> {
    let runs = crate::runs::list(&state.dir).unwrap_or_default();
    let studies = studies(&state.dir);
    Html(pages::runs(&runs, &studies, &query.q))
}

/// Study directories: those holding a study.db (SQLite) or a trials.csv (any storage).
fn studies(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("study.db").is_file() || e.path().join("trials.csv").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn run_page(
    State(state): Shared,
    UrlPath((name, id)): UrlPath<(String, String)>,
) -> Result<Html<String>, Refused> {
    let dir = run_dir(&state, &name, &id)?;
    Ok(Html(pages::run(&name, &id, &dir)))
}

async fn run_metrics(
    State(state): Shared,
    UrlPath((name, id)): UrlPath<(String, String)>,
) -> Result<Response, Refused> {
    let dir = run_dir(&state, &name, &id)?;
    // A run that has not evaluated yet has no metrics.csv: no rows, not an error. A damaged
    // tail (never written by the runner, whose writes are atomic) keeps the rows before it.
    let rows = match crate::runs::read_metrics(&crate::artifacts::RunPaths::new(&dir).metrics()) {
        Ok(rows) | Err((rows, _)) => rows,
    };
    let done = crate::artifacts::RunPaths::new(&dir).summary().is_file();
    Ok(json(&serde_json::json!({ "rows": rows, "done": done })))
}

async fn compare_page(
    State(state): Shared,
    RawQuery(query): RawQuery,
) -> Result<Html<String>, Refused> {
    // `run=name/id` as often as there are runs (serde's query form cannot repeat a key).
    let picked: Vec<String> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.strip_prefix("run="))
        .map(percent_decode)
        .collect();
    let mut dirs = Vec::new();
    for run in &picked {
        let (name, id) = run
            .split_once('/')
            .ok_or_else(|| Refused::NotFound(run.clone()))?;
        dirs.push(run_dir(&state, name, id)?);
    }
    let (runs, problems) = crate::compare::collect(&dirs);
    Ok(Html(pages::compare(&picked, &runs, &problems)))
}

async fn study_page(
    State(state): Shared,
    UrlPath(name): UrlPath<String>,
) -> Result<Html<String>, Refused> {
    let dir = inside(&state.dir, &name)?;
    let text = crate::sweep::show(&dir, &state.storage)
        .map_err(|e| Refused::NotFound(format!("{e:#}")))?;
    Ok(Html(pages::study(&name, &text, &dir)))
}

async fn study_api(
    State(state): Shared,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, Refused> {
    let dir = inside(&state.dir, &name)?;
    let text = crate::sweep::show(&dir, &state.storage)
        .map_err(|e| Refused::NotFound(format!("{e:#}")))?;
    let (objective, points) = crate::sweep::trial_values(&dir, &state.storage)
        .map_err(|e| Refused::NotFound(format!("{e:#}")))?;
    Ok(json(&serde_json::json!({
        "show": text,
        "objective": objective.name(),
        "maximise": objective.maximise(),
        "points": points,
    })))
}

/// Figures and text files of runs and studies, by their path below `--dir`.
async fn file(State(state): Shared, UrlPath(path): UrlPath<String>) -> Result<Response, Refused> {
    let real = inside(&state.dir, &path)?;
    let kind = match real.extension().and_then(|e| e.to_str()) {
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("md" | "csv" | "toml" | "txt" | "log") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        _ => return Err(Refused::NotFound(path)),
    };
    let bytes = std::fs::read(&real).map_err(|_| Refused::NotFound(path))?;
    Ok(([(header::CONTENT_TYPE, kind)], bytes).into_response())
}

/// The page's script, its charting library (uPlot, MIT) and the style sheet.
async fn asset(UrlPath(file): UrlPath<String>) -> Result<Response, Refused> {
    let (kind, body): (&str, &'static str) = match file.as_str() {
        "app.js" => ("text/javascript", include_str!("../../assets/serve/app.js")),
        "uPlot.iife.min.js" => (
            "text/javascript",
            include_str!("../../assets/serve/uPlot.iife.min.js"),
        ),
        "uPlot.min.css" => ("text/css", include_str!("../../assets/serve/uPlot.min.css")),
        "style.css" => ("text/css", include_str!("../../assets/serve/style.css")),
        _ => return Err(Refused::NotFound(file)),
    };
    Ok(([(header::CONTENT_TYPE, kind)], body).into_response())
}

fn json(value: &serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// `%2F` and friends, and `+` for a space, as a browser's form sends them.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/x.png"), b"png").unwrap();
        assert!(inside(&root, "a/b/x.png").is_ok());
        // A `.` inside a path is dropped by the path parser: it stays inside.
        assert!(inside(&root, "a/./b/x.png").is_ok());
        for bad in [
            "../etc/passwd",
            "a/../../x",
            "/etc/passwd",
            "./a/../..",
            "a\\..\\x",
        ] {
            assert!(
                matches!(inside(&root, bad), Err(Refused::Forbidden)),
                "{bad}"
            );
        }
        assert!(matches!(
            inside(&root, "a/none.png"),
            Err(Refused::NotFound(_))
        ));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc", root.join("a/out")).unwrap();
            assert!(matches!(
                inside(&root, "a/out/passwd"),
                Err(Refused::Forbidden)
            ));
        }
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(
            percent_decode("gru_1min%2F20261201-1"),
            "gru_1min/20261201-1"
        );
        assert_eq!(percent_decode("a+b%"), "a b%");
    }
}
