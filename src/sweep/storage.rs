//! Study storage behind a trait: every sweep, pruner and report path holds a
//! `&dyn Storage` opened from one [`Location`], so that another backend (PostgreSQL, for
//! workers on several machines) slots in beside SQLite. SQLite here: `study.db` in the study
//! directory, WAL mode and a busy timeout so parallel workers wait instead of failing, and
//! every claim made in one `BEGIN IMMEDIATE` transaction so no two workers get the same
//! trial number or grid point.

use super::pg_connect::Target;
use super::space::Params;
use crate::error::UserError;
use crate::spec::{Objective, StudyStorage};
use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TrialState {
    Running,
    Complete,
    Pruned,
    Failed,
    Interrupted,
}

impl TrialState {
    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Running => "running",
            TrialState::Complete => "complete",
            TrialState::Pruned => "pruned",
            TrialState::Failed => "failed",
            TrialState::Interrupted => "interrupted",
        }
    }

    /// A state as the study tables store it.
    pub(super) fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "running" => TrialState::Running,
            "complete" => TrialState::Complete,
            "pruned" => TrialState::Pruned,
            "failed" => TrialState::Failed,
            "interrupted" => TrialState::Interrupted,
            other => bail!("unknown trial state '{other}' in the study database"),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub number: u64,
    pub state: TrialState,
    pub params: Params,
    pub seed: u64,
    pub value: Option<f64>,
    pub best_step: Option<u64>,
    pub reason: Option<String>,
    pub wall_s: Option<f64>,
    pub grid_index: Option<u64>,
    /// How many times the trial was started (re-runs after a crash count).
    pub attempts: u32,
    /// The values it reported at each evaluation, as losses (lower is better), in order.
    pub intermediates: Vec<f64>,
    /// The host of the worker that ran it last, and its run directory there.
    pub host: Option<String>,
    pub dir: Option<String>,
}

impl Trial {
    /// This attempt at the trial, for the writes that belong to it.
    pub fn attempt(&self) -> Attempt {
        Attempt {
            number: self.number,
            attempt: self.attempts,
        }
    }
}

/// One attempt at a trial. A worker writes only to its own attempt: when a trial was taken
/// over (its worker silent past the grace period), the old worker's late writes are dropped
/// instead of mixing two runs or counting one twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub number: u64,
    pub attempt: u32,
}

/// What a study is, as stored when it was created.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyInfo {
    pub name: String,
    pub fingerprint: String,
    pub objective: Objective,
}

/// A new trial's parameters, from the sampler or the grid.
pub struct Proposal {
    pub params: Params,
    pub seed: u64,
    pub grid_index: Option<u64>,
}

/// The outcome written when a trial ends.
pub struct Outcome<'a> {
    pub state: TrialState,
    pub value: Option<f64>,
    pub best_step: Option<u64>,
    pub reason: Option<&'a str>,
    pub wall_s: f64,
    /// The trial's resolved spec, so that its best trial can be run from any host.
    pub spec: Option<&'a str>,
}

/// Who runs a trial, to tell a live worker from a dead one, and where its run directories
/// are on its host.
#[derive(Debug, Clone)]
pub struct Worker {
    pub host: String,
    pub pid: u32,
    /// The study's `trials/` directory on this host; a trial's directory is `<it>/<number>`.
    pub trials_dir: Option<PathBuf>,
}

impl Worker {
    pub fn this_process() -> Self {
        Self {
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: std::process::id(),
            trials_dir: None,
        }
    }

    /// The run directory of trial `number` as recorded in storage.
    pub(super) fn dir_of(&self, number: i64) -> Option<String> {
        self.trials_dir
            .as_ref()
            .map(|d| d.join(number.to_string()).display().to_string())
    }
}

/// What a study backend must do. `propose` is called inside the claim's transaction with
/// every trial so far, so the proposal and the insert are one atomic step.
pub trait Storage {
    /// Creates the study, or returns the fingerprint stored when it was created.
    fn open_study(&self, name: &str, fingerprint: &str, objective: Objective) -> Result<String>;
    /// The study as created: its name, space fingerprint and objective.
    fn study(&self) -> Result<StudyInfo>;
    /// The objective the study was created with.
    fn objective(&self) -> Result<Objective> {
        Ok(self.study()?.objective)
    }
    /// Takes over an interrupted trial or a running one silent for longer than
    /// `grace_period` (or whose worker died on this host), or inserts a new one while
    /// fewer than `total` exist; None when the study has all its trials.
    fn claim(
        &self,
        total: usize,
        worker: &Worker,
        grace_period: Duration,
        propose: &mut dyn FnMut(&[Trial]) -> Option<Proposal>,
    ) -> Result<Option<Trial>>;
    fn heartbeat(&self, attempt: Attempt) -> Result<()>;
    fn report(&self, attempt: Attempt, eval_index: usize, value: f64) -> Result<()>;
    /// Records the outcome; false when the trial was taken over meanwhile (nothing written).
    fn finish(&self, attempt: Attempt, outcome: &Outcome) -> Result<bool>;
    fn trials(&self) -> Result<Vec<Trial>>;
    /// Intermediate values of every trial, by trial number, in evaluation order.
    fn intermediates(&self) -> Result<HashMap<u64, Vec<f64>>>;
    /// The resolved spec a trial ran with, when its outcome recorded one.
    fn trial_spec(&self, number: u64) -> Result<Option<String>>;
    /// Writes a whole study (from another storage) into this empty one, in one
    /// transaction; refused when this one already holds the study.
    fn import(&self, study: &StudyInfo, trials: &[(Trial, Option<String>)]) -> Result<()>;
}

/// A connection URL with any password replaced by `***`, for messages and logs.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(parts) => parts,
        None => return url.to_string(),
    };
    let user = auth.split(':').next().unwrap_or("");
    if auth.contains(':') {
        format!("{scheme}://{user}:***@{host}")
    } else {
        url.to_string()
    }
}

/// The study database's file name in a study directory.
const DB_FILE: &str = "study.db";

/// Where a study's records live.
#[derive(Clone)]
pub enum Location {
    /// A SQLite file: `study.db` in the study directory unless told otherwise.
    Sqlite(PathBuf),
    /// The study called `study` in a PostgreSQL database.
    Postgres {
        url: String,
        target: Box<Target>,
        study: String,
    },
}

impl Location {
    /// The default: the SQLite file in the study directory.
    pub fn in_study_dir(dir: &Path) -> Self {
        Location::Sqlite(dir.join(DB_FILE))
    }

    /// The study called `study` in the PostgreSQL database at `url` (no password in it).
    pub fn postgres(url: &str, study: &str) -> Result<Self, String> {
        Ok(Location::Postgres {
            target: Box::new(Target::parse(url)?),
            url: url.to_string(),
            study: study.to_string(),
        })
    }

    /// Where the spec's `sweep.storage` puts the study of the directory `dir`: the study's
    /// name is the directory's (its `experiment.name`).
    pub fn for_study(storage: &StudyStorage, dir: &Path) -> Result<Self> {
        match storage {
            StudyStorage::Sqlite => Ok(Self::in_study_dir(dir)),
            StudyStorage::Postgres(url) => {
                let name = study_name(dir)?;
                Self::postgres(url.as_str(), &name)
                    .map_err(|e| UserError::input(without_password(url.as_str()), e).into())
            }
        }
    }

    /// For a sweep: opens the study's storage, creating it if it is new.
    pub fn open(&self) -> Result<Box<dyn Storage + Send>> {
        match self {
            Location::Sqlite(path) => Ok(Box::new(Sqlite::open(path)?)),
            Location::Postgres { target, study, .. } => Ok(Box::new(
                super::postgres::Postgres::open((**target).clone(), study)
                    .map_err(|e| self.unreachable(e))?,
            )),
        }
    }

    /// For the study views: an existing study, never written to.
    pub fn open_read_only(&self) -> Result<Box<dyn Storage + Send>> {
        match self {
            Location::Sqlite(path) => Ok(Box::new(Sqlite::open_read_only(path)?)),
            // Views only read; the tables are there or the study is not.
            Location::Postgres { .. } => self.open(),
        }
    }

    /// A connection that failed, as a user error naming the storage (never its password).
    fn unreachable(&self, e: anyhow::Error) -> anyhow::Error {
        UserError::input(self.to_string(), format!("{e:#}")).into()
    }

    /// Is there a study store here at all (for a view's "no study" message)?
    pub fn exists(&self) -> bool {
        match self {
            Location::Sqlite(path) => path.is_file(),
            Location::Postgres { .. } => true,
        }
    }
}

/// A study's name: its directory's last component (its `experiment.name`).
pub fn study_name(dir: &Path) -> Result<String> {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            UserError::input(
                dir.display().to_string(),
                "names no study: give the study directory, e.g. experiments/search_gru",
            )
            .into()
        })
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres { url, study, .. } => {
                write!(f, "study '{study}' in {}", without_password(url))
            }
        }
    }
}

pub struct Sqlite {
    conn: Connection,
}

impl Sqlite {
    /// For a sweep: opens the study database at `path`, creating it (and its tables) if the
    /// file is new or empty. A file that holds other tables is refused, never written.
    pub fn open(path: &Path) -> Result<Self> {
        let damaged = |e| damaged(path, e);
        let conn = Connection::open(path).map_err(damaged)?;
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(damaged)?;
        let tables = table_names(&conn).map_err(damaged)?;
        if !tables.is_empty() && !tables.iter().any(|t| t == "study") {
            return Err(not_a_study(path, &tables).into());
        }
        set_wal(&conn).map_err(damaged)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(damaged)?;
        conn.execute_batch(SCHEMA).map_err(damaged)?;
        add_columns(&conn).map_err(damaged)?;
        quick_check(&conn, path)?;
        Ok(Self { conn })
    }

    /// For `study show`, `report` and `best`: opens an existing study without writing to it.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        let damaged = |e| damaged(path, e);
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(damaged)?;
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(damaged)?;
        let tables = table_names(&conn).map_err(damaged)?;
        if !["study", "trials", "intermediate"]
            .iter()
            .all(|t| tables.iter().any(|have| have == t))
        {
            return Err(not_a_study(path, &tables).into());
        }
        quick_check(&conn, path)?;
        Ok(Self { conn })
    }
}

/// A study database SQLite cannot read: the user's file, named, with SQLite's reason.
fn damaged(path: &Path, e: rusqlite::Error) -> UserError {
    UserError::input(
        path.display().to_string(),
        format!("damaged or not a study database ({e})"),
    )
}

fn table_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
    let names = stmt.query_map([], |r| r.get(0))?;
    names.collect()
}

fn not_a_study(path: &Path, tables: &[String]) -> UserError {
    let found = if tables.is_empty() {
        "it is empty".to_string()
    } else {
        format!("it holds the tables {}", tables.join(", "))
    };
    UserError::input(
        path.display().to_string(),
        format!("not a study database ({found}); it was left as it is"),
    )
}

/// A truncated file can still open; a quick check reads every page once.
fn quick_check(conn: &Connection, path: &Path) -> Result<()> {
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| damaged(path, e))?;
    if check != "ok" {
        return Err(
            UserError::input(path.display().to_string(), format!("damaged: {check}")).into(),
        );
    }
    Ok(())
}

/// Switches to WAL. The switch needs the database to itself and does not always wait on the
/// busy handler, so two workers starting together retry it for up to 30 s.
fn set_wal(conn: &Connection) -> rusqlite::Result<()> {
    let mut attempts = 0;
    loop {
        let mode: rusqlite::Result<String> =
            conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0));
        match mode {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && attempts < 600 =>
            {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS study (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    objective TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    number INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    seed INTEGER NOT NULL,
    value REAL,
    best_step INTEGER,
    reason TEXT,
    wall_s REAL,
    grid_index INTEGER UNIQUE,
    attempts INTEGER NOT NULL DEFAULT 1,
    host TEXT,
    pid INTEGER,
    heartbeat REAL,
    started REAL,
    finished REAL,
    dir TEXT,
    spec TEXT
);
CREATE TABLE IF NOT EXISTS intermediate (
    number INTEGER NOT NULL,
    eval_index INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (number, eval_index)
);
";

/// Columns added since the first study files were written: a study made by an older
/// runner gains them when it is next swept.
fn add_columns(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('trials')")?;
    let have: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for column in ["dir", "spec"] {
        if !have.iter().any(|h| h == column) {
            conn.execute_batch(&format!("ALTER TABLE trials ADD COLUMN {column} TEXT"))?;
        }
    }
    Ok(())
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Is `pid` alive on this host? Where that cannot be told, assume it is and let the
/// heartbeat decide.
pub(super) fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// A trial from its row; the state and parameters are checked as they are read.
fn row_to_trial(row: &rusqlite::Row) -> Result<Trial> {
    let number = row.get::<_, i64>("number")? as u64;
    let state: String = row.get("state")?;
    let params: String = row.get("params")?;
    Ok(Trial {
        number,
        state: TrialState::parse(&state)?,
        params: serde_json::from_str(&params)
            .with_context(|| format!("trial {number}: unreadable parameters"))?,
        seed: row.get::<_, i64>("seed")? as u64,
        value: row.get("value")?,
        best_step: row.get::<_, Option<i64>>("best_step")?.map(|s| s as u64),
        reason: row.get("reason")?,
        wall_s: row.get("wall_s")?,
        grid_index: row.get::<_, Option<i64>>("grid_index")?.map(|g| g as u64),
        attempts: row.get::<_, i64>("attempts")? as u32,
        intermediates: Vec::new(),
        host: row.get("host")?,
        // A study file from before trial directories were recorded has no column.
        dir: row.get("dir").ok().flatten(),
    })
}

fn load_trials(conn: &Connection) -> Result<Vec<Trial>> {
    let mut stmt = conn.prepare("SELECT * FROM trials ORDER BY number")?;
    let mut rows = stmt.query([])?;
    let mut trials = Vec::new();
    while let Some(row) = rows.next()? {
        trials.push(row_to_trial(row)?);
    }
    let mut values = load_intermediates(conn)?;
    for t in &mut trials {
        t.intermediates = values.remove(&t.number).unwrap_or_default();
    }
    Ok(trials)
}

fn load_intermediates(conn: &Connection) -> Result<HashMap<u64, Vec<f64>>> {
    let mut stmt =
        conn.prepare("SELECT number, value FROM intermediate ORDER BY number, eval_index")?;
    let mut out: HashMap<u64, Vec<f64>> = HashMap::new();
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?)))?;
    for row in rows {
        let (n, v) = row?;
        out.entry(n as u64).or_default().push(v);
    }
    Ok(out)
}

/// An interrupted trial, or a running one whose worker is gone: dead on this host, or
/// silent past the grace period.
fn stale_trial(conn: &Connection, me: &Worker, grace_period: Duration) -> Result<Option<u64>> {
    let interrupted: Option<i64> = conn
        .query_row(
            "SELECT number FROM trials WHERE state = 'interrupted' ORDER BY number LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(n) = interrupted {
        return Ok(Some(n as u64));
    }
    let mut stmt = conn.prepare(
        "SELECT number, host, pid, heartbeat FROM trials WHERE state = 'running' ORDER BY number",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let number: i64 = row.get(0)?;
        let host: Option<String> = row.get(1)?;
        let pid: Option<i64> = row.get(2)?;
        let heartbeat: Option<f64> = row.get(3)?;
        let same_host = host.as_deref() == Some(me.host.as_str());
        let dead_here =
            same_host && pid.is_some_and(|p| p as u32 != me.pid && !process_alive(p as u32));
        let silent = heartbeat.is_none_or(|h| now() - h > grace_period.as_secs_f64());
        if dead_here || silent {
            return Ok(Some(number as u64));
        }
    }
    Ok(None)
}

impl Storage for Sqlite {
    fn open_study(&self, name: &str, fingerprint: &str, objective: Objective) -> Result<String> {
        self.conn.execute(
            "INSERT OR IGNORE INTO study (id, name, fingerprint, objective, created) VALUES (1, ?1, ?2, ?3, ?4)",
            params![name, fingerprint, objective.name(), now()],
        )?;
        Ok(self
            .conn
            .query_row("SELECT fingerprint FROM study WHERE id = 1", [], |r| {
                r.get(0)
            })?)
    }

    fn study(&self) -> Result<StudyInfo> {
        let (name, fingerprint, objective): (String, String, String) = self.conn.query_row(
            "SELECT name, fingerprint, objective FROM study WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(StudyInfo {
            name,
            fingerprint,
            objective: Objective::from_name(&objective)
                .map_err(|e| anyhow::anyhow!("the study database: {e}"))?,
        })
    }

    fn claim(
        &self,
        total: usize,
        worker: &Worker,
        grace_period: Duration,
        propose: &mut dyn FnMut(&[Trial]) -> Option<Proposal>,
    ) -> Result<Option<Trial>> {
        // IMMEDIATE takes the write lock up front: the read of existing trials and the
        // insert cannot interleave with another worker's.
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let conn_guard: &Connection = &tx;
        let claimed = if let Some(number) = stale_trial(conn_guard, worker, grace_period)? {
            let n = number as i64;
            conn_guard.execute(
                "UPDATE trials SET state = 'running', host = ?1, pid = ?2, heartbeat = ?3, started = ?3,
                 attempts = attempts + 1, value = NULL, reason = NULL, dir = ?4 WHERE number = ?5",
                params![worker.host, worker.pid, now(), worker.dir_of(n), n],
            )?;
            conn_guard.execute("DELETE FROM intermediate WHERE number = ?1", params![n])?;
            Some(number)
        } else {
            let trials = load_trials(conn_guard)?;
            if trials.len() >= total {
                None
            } else if let Some(p) = propose(&trials) {
                let number = trials.iter().map(|t| t.number + 1).max().unwrap_or(0);
                let n = number as i64;
                conn_guard.execute(
                    "INSERT INTO trials (number, state, params, seed, grid_index, host, pid, heartbeat, started, dir)
                     VALUES (?1, 'running', ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
                    params![
                        n,
                        serde_json::to_string(&p.params)?,
                        p.seed as i64,
                        p.grid_index.map(|g| g as i64),
                        worker.host,
                        worker.pid,
                        now(),
                        worker.dir_of(n),
                    ],
                )?;
                Some(number)
            } else {
                None
            }
        };
        let trial = match claimed {
            Some(n) => load_trials(conn_guard)?.into_iter().find(|t| t.number == n),
            None => None,
        };
        tx.commit()?;
        Ok(trial)
    }

    fn heartbeat(&self, a: Attempt) -> Result<()> {
        self.conn.execute(
            "UPDATE trials SET heartbeat = ?1 WHERE number = ?2 AND attempts = ?3",
            params![now(), a.number as i64, a.attempt],
        )?;
        Ok(())
    }

    fn report(&self, a: Attempt, eval_index: usize, value: f64) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO intermediate (number, eval_index, value)
             SELECT ?1, ?2, ?3 WHERE EXISTS
               (SELECT 1 FROM trials WHERE number = ?1 AND attempts = ?4)",
            params![a.number as i64, eval_index as i64, value, a.attempt],
        )?;
        self.heartbeat(a)
    }

    fn finish(&self, a: Attempt, o: &Outcome) -> Result<bool> {
        let changed = self.conn.execute(
            "UPDATE trials SET state = ?1, value = ?2, best_step = ?3, reason = ?4, wall_s = ?5,
             finished = ?6, spec = ?7 WHERE number = ?8 AND attempts = ?9",
            params![
                o.state.as_str(),
                o.value,
                o.best_step.map(|s| s as i64),
                o.reason,
                o.wall_s,
                now(),
                o.spec,
                a.number as i64,
                a.attempt
            ],
        )?;
        Ok(changed == 1)
    }

    fn trials(&self) -> Result<Vec<Trial>> {
        load_trials(&self.conn)
    }

    fn intermediates(&self) -> Result<HashMap<u64, Vec<f64>>> {
        load_intermediates(&self.conn)
    }

    fn trial_spec(&self, number: u64) -> Result<Option<String>> {
        // A study file from before specs were recorded has no column: no spec.
        Ok(self
            .conn
            .query_row(
                "SELECT spec FROM trials WHERE number = ?1",
                params![number as i64],
                |r| r.get(0),
            )
            .optional()
            .unwrap_or(None)
            .flatten())
    }

    fn import(&self, study: &StudyInfo, trials: &[(Trial, Option<String>)]) -> Result<()> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let exists: i64 = tx.query_row("SELECT count(*) FROM study", [], |r| r.get(0))?;
        if exists > 0 {
            bail!("it already holds a study; nothing was copied");
        }
        tx.execute(
            "INSERT INTO study (id, name, fingerprint, objective, created) VALUES (1, ?1, ?2, ?3, ?4)",
            params![study.name, study.fingerprint, study.objective.name(), now()],
        )?;
        for (t, spec) in trials {
            let n = t.number as i64;
            tx.execute(
                "INSERT INTO trials (number, state, params, seed, value, best_step, reason, wall_s,
                 grid_index, attempts, host, dir, spec)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    n,
                    t.state.as_str(),
                    serde_json::to_string(&t.params)?,
                    t.seed as i64,
                    t.value,
                    t.best_step.map(|s| s as i64),
                    t.reason,
                    t.wall_s,
                    t.grid_index.map(|g| g as i64),
                    t.attempts,
                    t.host,
                    t.dir,
                    spec
                ],
            )?;
            for (i, v) in t.intermediates.iter().enumerate() {
                tx.execute(
                    "INSERT INTO intermediate (number, eval_index, value) VALUES (?1, ?2, ?3)",
                    params![n, i as i64, v],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// The suite every backend must pass. `store` makes a fresh, empty store and returns a
/// function that opens a new connection to it (each thread, or "worker", its own).
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;
    use std::sync::Arc;

    pub type Connect = Arc<dyn Fn() -> Box<dyn Storage + Send> + Send + Sync>;

    pub fn run(store: &dyn Fn() -> Connect) {
        claims_number_trials_in_order_and_stop_at_the_total(store());
        an_interrupted_trial_is_rerun_with_the_same_parameters(store());
        outcomes_and_intermediate_values_read_back(store());
        workers_opening_a_new_study_at_once_all_succeed(store);
        connections_claiming_at_once_never_share_a_number(store());
        a_silent_trial_is_taken_over_and_its_old_worker_writes_nothing(store());
        a_study_copies_whole_into_an_empty_store(store(), store());
    }

    /// Long enough that no test's own trials go stale.
    pub const GRACE: Duration = Duration::from_secs(90);

    pub fn proposal(seed: u64) -> Option<Proposal> {
        let mut params = Params::new();
        params.insert("train.lr".into(), toml::Value::Float(seed as f64));
        Some(Proposal {
            params,
            seed,
            grid_index: None,
        })
    }

    fn outcome(state: TrialState, value: Option<f64>) -> Outcome<'static> {
        Outcome {
            state,
            value,
            best_step: Some(40),
            reason: None,
            wall_s: 1.5,
            spec: Some("[train]\nlr = 0.5\n"),
        }
    }

    fn claims_number_trials_in_order_and_stop_at_the_total(connect: Connect) {
        let db = connect();
        assert_eq!(
            db.open_study("s", "space-a", Objective::ValExact).unwrap(),
            "space-a"
        );
        assert_eq!(
            db.open_study("s", "space-b", Objective::ValExact).unwrap(),
            "space-a",
            "kept from creation"
        );
        assert_eq!(db.objective().unwrap(), Objective::ValExact);
        let me = Worker::this_process();
        let mut numbers = Vec::new();
        while let Some(t) = db
            .claim(3, &me, GRACE, &mut |ts| proposal(ts.len() as u64))
            .unwrap()
        {
            assert!(db
                .finish(t.attempt(), &outcome(TrialState::Complete, Some(1.0)))
                .unwrap());
            numbers.push(t.number);
        }
        assert_eq!(numbers, vec![0, 1, 2]);
    }

    fn an_interrupted_trial_is_rerun_with_the_same_parameters(connect: Connect) {
        let db = connect();
        db.open_study("s", "x", Objective::ValExact).unwrap();
        let me = Worker::this_process();
        let first = db
            .claim(5, &me, GRACE, &mut |_| proposal(7))
            .unwrap()
            .unwrap();
        db.report(first.attempt(), 0, -0.5).unwrap();
        db.finish(first.attempt(), &outcome(TrialState::Interrupted, None))
            .unwrap();
        let again = db
            .claim(5, &me, GRACE, &mut |_| proposal(8))
            .unwrap()
            .unwrap();
        assert_eq!(
            (again.number, again.seed, again.attempts),
            (first.number, 7, 2)
        );
        assert_eq!(again.params, first.params);
        assert!(again.intermediates.is_empty(), "a re-run reports afresh");
        // A running trial of a live worker is left alone: the next claim is a new number.
        let next = db
            .claim(5, &me, GRACE, &mut |_| proposal(9))
            .unwrap()
            .unwrap();
        assert_eq!(next.number, first.number + 1);
    }

    fn outcomes_and_intermediate_values_read_back(connect: Connect) {
        let db = connect();
        db.open_study("s", "x", Objective::ValLoss).unwrap();
        let me = Worker::this_process();
        let t = db
            .claim(2, &me, GRACE, &mut |_| proposal(3))
            .unwrap()
            .unwrap();
        assert_eq!(t.state, TrialState::Running);
        for (i, v) in [0.9, 0.7, 0.4].into_iter().enumerate() {
            db.report(t.attempt(), i, v).unwrap();
        }
        db.finish(
            t.attempt(),
            &Outcome {
                state: TrialState::Failed,
                value: None,
                best_step: None,
                reason: Some("diverged"),
                wall_s: 2.0,
                spec: None,
            },
        )
        .unwrap();
        let back = &db.trials().unwrap()[0];
        assert_eq!(back.state, TrialState::Failed);
        assert_eq!(back.reason.as_deref(), Some("diverged"));
        assert_eq!(back.intermediates, vec![0.9, 0.7, 0.4]);
        assert_eq!(back.wall_s, Some(2.0));
        assert_eq!(db.intermediates().unwrap()[&t.number], vec![0.9, 0.7, 0.4]);
        let u = db
            .claim(2, &me, GRACE, &mut |_| proposal(4))
            .unwrap()
            .unwrap();
        db.finish(u.attempt(), &outcome(TrialState::Complete, Some(0.25)))
            .unwrap();
        let back = &db.trials().unwrap()[1];
        assert_eq!(
            (back.state, back.value, back.best_step),
            (TrialState::Complete, Some(0.25), Some(40))
        );
        assert_eq!(back.host.as_deref(), Some(me.host.as_str()));
        assert_eq!(
            db.trial_spec(u.number).unwrap().as_deref(),
            Some("[train]\nlr = 0.5\n")
        );
        assert_eq!(db.trial_spec(t.number).unwrap(), None);
    }

    fn a_silent_trial_is_taken_over_and_its_old_worker_writes_nothing(connect: Connect) {
        let db = connect();
        db.open_study("s", "x", Objective::ValExact).unwrap();
        // A live worker on another host, as far as this one can tell.
        let away = Worker {
            host: "elsewhere".into(),
            pid: 1,
            trials_dir: Some(PathBuf::from("/srv/study/trials")),
        };
        let first = db
            .claim(5, &away, GRACE, &mut |_| proposal(7))
            .unwrap()
            .unwrap();
        assert_eq!(first.dir.as_deref(), Some("/srv/study/trials/0"));
        db.report(first.attempt(), 0, -0.25).unwrap();
        let me = Worker::this_process();
        let fresh = db
            .claim(5, &me, GRACE, &mut |_| proposal(8))
            .unwrap()
            .unwrap();
        assert_eq!(fresh.number, 1, "within the grace period it is left alone");
        std::thread::sleep(Duration::from_millis(1200));
        let taken = db
            .claim(5, &me, Duration::from_secs(1), &mut |_| proposal(9))
            .unwrap()
            .unwrap();
        assert_eq!(
            (taken.number, taken.seed, taken.attempts),
            (0, 7, 2),
            "silent past the grace period: re-run with the same seed"
        );
        assert_eq!(taken.host.as_deref(), Some(me.host.as_str()));
        // The old worker comes back: its late writes belong to an attempt that is over.
        db.report(first.attempt(), 1, -0.75).unwrap();
        let late = db
            .finish(first.attempt(), &outcome(TrialState::Complete, Some(0.75)))
            .unwrap();
        assert!(!late, "the superseded attempt's result is not recorded");
        let now = &db.trials().unwrap()[0];
        assert_eq!((now.state, now.value), (TrialState::Running, None));
        assert!(now.intermediates.is_empty(), "{:?}", now.intermediates);
        assert!(db
            .finish(taken.attempt(), &outcome(TrialState::Complete, Some(0.5)))
            .unwrap());
        assert_eq!(db.trials().unwrap()[0].value, Some(0.5));
    }

    fn a_study_copies_whole_into_an_empty_store(from: Connect, to: Connect) {
        let src = from();
        src.open_study("s", "space-x", Objective::ValLoss).unwrap();
        let me = Worker::this_process();
        let a = src
            .claim(3, &me, GRACE, &mut |_| proposal(1))
            .unwrap()
            .unwrap();
        src.report(a.attempt(), 0, 0.8).unwrap();
        src.report(a.attempt(), 1, 0.6).unwrap();
        src.finish(a.attempt(), &outcome(TrialState::Complete, Some(0.6)))
            .unwrap();
        src.claim(3, &me, GRACE, &mut |_| proposal(2)).unwrap();
        let info = src.study().unwrap();
        let trials: Vec<(Trial, Option<String>)> = src
            .trials()
            .unwrap()
            .into_iter()
            .map(|t| {
                let spec = src.trial_spec(t.number).unwrap();
                (t, spec)
            })
            .collect();
        let dst = to();
        dst.import(&info, &trials).unwrap();
        assert_eq!(dst.study().unwrap().fingerprint, "space-x");
        assert_eq!(dst.objective().unwrap(), Objective::ValLoss);
        let back = dst.trials().unwrap();
        assert_eq!(back, src.trials().unwrap());
        assert_eq!(
            dst.trial_spec(a.number).unwrap(),
            src.trial_spec(a.number).unwrap()
        );
        assert!(
            dst.import(&info, &trials).is_err(),
            "a second copy into the same study is refused"
        );
        assert_eq!(dst.trials().unwrap().len(), 2, "and changes nothing");
    }

    fn workers_opening_a_new_study_at_once_all_succeed(store: &dyn Fn() -> Connect) {
        for _ in 0..10 {
            let connect = store();
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let connect = connect.clone();
                    std::thread::spawn(move || {
                        connect()
                            .open_study("s", "x", Objective::ValExact)
                            .map(|_| ())
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        }
    }

    fn connections_claiming_at_once_never_share_a_number(connect: Connect) {
        connect().open_study("s", "x", Objective::ValExact).unwrap();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let connect = connect.clone();
                std::thread::spawn(move || {
                    let db = connect();
                    let me = Worker::this_process();
                    let mut got = Vec::new();
                    while let Some(t) = db
                        .claim(40, &me, GRACE, &mut |ts| proposal(ts.len() as u64))
                        .unwrap()
                    {
                        got.push(t.number);
                    }
                    got
                })
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..40).collect::<Vec<_>>());
    }
}

#[cfg(test)]
mod tests {
    use super::conformance::{proposal, Connect};
    use super::*;
    use std::sync::Arc;

    /// A fresh SQLite study file; the directory lives as long as the connector.
    fn sqlite_store() -> Connect {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let location = Location::in_study_dir(dir.path());
        Arc::new(move || {
            let _keep = &dir;
            location.open().unwrap()
        })
    }

    #[test]
    fn sqlite_passes_the_storage_conformance_suite() {
        conformance::run(&sqlite_store);
    }

    /// The server `scripts/postgres.sh start` announces. Without one the test is skipped
    /// and says why, unless RUNNER_REQUIRE_POSTGRES is set (CI sets it): then it fails.
    fn postgres_url() -> Option<String> {
        match std::env::var("RUNNER_TEST_POSTGRES") {
            Ok(url) => Some(url),
            Err(_) if std::env::var_os("RUNNER_REQUIRE_POSTGRES").is_some() => panic!(
                "RUNNER_REQUIRE_POSTGRES is set but RUNNER_TEST_POSTGRES is not: start a server \
                 with `eval \"$(scripts/postgres.sh start)\"`"
            ),
            Err(_) => {
                eprintln!(
                    "skipped: no PostgreSQL server (RUNNER_TEST_POSTGRES is not set; \
                     `eval \"$(scripts/postgres.sh start)\"` starts one)"
                );
                None
            }
        }
    }

    /// A fresh study (a new name) in the test database.
    fn postgres_store(url: &str) -> Connect {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let location = Location::postgres(
            url,
            &format!("conformance-{}-{stamp}-{n}", std::process::id()),
        )
        .unwrap();
        Arc::new(move || location.open().unwrap())
    }

    #[test]
    fn postgres_passes_the_storage_conformance_suite() {
        if let Some(url) = postgres_url() {
            conformance::run(&|| postgres_store(&url));
        }
    }

    fn env(name: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| panic!("scripts/postgres.sh start exports {name}"))
    }

    /// The error of opening `location`, as the user sees it.
    fn open_error(location: &Location) -> String {
        match location.open() {
            Ok(_) => panic!("{location} opened"),
            Err(e) => {
                assert!(
                    e.downcast_ref::<UserError>().is_some(),
                    "not a user error: {e:#}"
                );
                format!("{e:#}")
            }
        }
    }

    /// Passwords from PGPASSWORD and the password file, TLS as libpq's sslmodes mean it,
    /// and each failure named without the password. One test: it sets the environment.
    #[test]
    fn postgres_reads_passwords_and_tls_like_libpq() {
        let Some(_) = postgres_url() else { return };
        let url = env("RUNNER_TEST_POSTGRES_PASSWORD_URL");
        let secret = env("RUNNER_TEST_POSTGRES_PASSWORD");
        let location = Location::postgres(&url, "auth").unwrap();
        std::env::remove_var("PGPASSWORD");
        let dir = tempfile::tempdir().unwrap();
        let pgpass = dir.path().join("pgpass");
        std::env::set_var("PGPASSFILE", &pgpass);
        // No password anywhere, then a wrong one: refused, and the message names the storage.
        let none = open_error(&location);
        assert!(
            none.contains("study 'auth' in postgresql://runner_pw@127.0.0.1"),
            "{none}"
        );
        std::env::set_var("PGPASSWORD", "not-it");
        let wrong = open_error(&location);
        assert!(wrong.contains("password authentication failed"), "{wrong}");
        assert!(!wrong.contains("not-it"), "{wrong}");
        std::env::set_var("PGPASSWORD", &secret);
        location.open().expect("PGPASSWORD");
        std::env::remove_var("PGPASSWORD");
        std::fs::write(
            &pgpass,
            format!("*:*:other:*:nope\n127.0.0.1:*:runner_pw:runner_pw:{secret}\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            location.open().is_err(),
            "a password file others can read is ignored"
        );
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
        location.open().expect("the password file");
        std::env::remove_var("PGPASSFILE");

        // TLS: runner_tls may only connect encrypted.
        let tls = env("RUNNER_TEST_POSTGRES_TLS_URL");
        let ca = env("RUNNER_TEST_POSTGRES_CA");
        let plain =
            open_error(&Location::postgres(&format!("{tls}?sslmode=disable"), "t").unwrap());
        assert!(plain.contains("no encryption"), "{plain}");
        Location::postgres(&format!("{tls}?sslmode=require"), "t")
            .unwrap()
            .open()
            .expect("sslmode=require");
        Location::postgres(&format!("{tls}?sslmode=verify-full&sslrootcert={ca}"), "t")
            .unwrap()
            .open()
            .expect("verify-full against the server's own certificate");
        let other_ca = dir.path().join("other.crt");
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-new",
                "-x509",
                "-days",
                "1",
                "-nodes",
                "-subj",
                "/CN=other",
            ])
            .arg("-keyout")
            .arg(dir.path().join("other.key"))
            .arg("-out")
            .arg(&other_ca)
            .output()
            .unwrap();
        assert!(made.status.success());
        let untrusted = open_error(
            &Location::postgres(
                &format!(
                    "{tls}?sslmode=verify-full&sslrootcert={}",
                    other_ca.display()
                ),
                "t",
            )
            .unwrap(),
        );
        assert!(
            untrusted.to_lowercase().contains("certificate"),
            "{untrusted}"
        );
    }

    #[test]
    fn postgres_refuses_a_newer_schema_and_names_an_unreachable_server() {
        let Some(url) = postgres_url() else { return };
        let db = format!("runner_newer_{}", std::process::id());
        let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .unwrap();
        let (base, _) = url.rsplit_once('/').unwrap();
        let newer = format!("{base}/{db}");
        Location::postgres(&newer, "s").unwrap().open().unwrap();
        let mut c = postgres::Client::connect(&newer, postgres::NoTls).unwrap();
        c.execute("INSERT INTO runner_schema (version) VALUES (99)", &[])
            .unwrap();
        drop(c);
        let refused = open_error(&Location::postgres(&newer, "s").unwrap());
        assert!(refused.contains("schema version 99"), "{refused}");
        admin.batch_execute(&format!("DROP DATABASE {db}")).unwrap();

        // A port nobody listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let gone = format!("postgresql://ana@127.0.0.1:{port}/x");
        let e = open_error(&Location::postgres(&gone, "s").unwrap());
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    }

    /// Claims per second with 8 workers (threads, a connection each) and empty trials: a
    /// claim, then the outcome at once. Run by scripts/postgres_checks.sh, which writes the
    /// table to RUNNER_CLAIM_BENCH_OUT.
    #[test]
    #[ignore = "a measurement: scripts/postgres_checks.sh"]
    fn claim_throughput() {
        let mut stores: Vec<(&str, Connect)> = vec![("SQLite (WAL, one file)", sqlite_store())];
        if let Some(url) = postgres_url() {
            stores.push(("PostgreSQL (loopback)", postgres_store(&url)));
        }
        let (workers, total) = (8, 400);
        let mut table = String::from(
            "| storage | workers | trials | seconds | claims/s |\n|---|---|---|---|---|\n",
        );
        for (label, connect) in stores {
            connect().open_study("s", "x", Objective::ValExact).unwrap();
            let start = std::time::Instant::now();
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let connect = connect.clone();
                    std::thread::spawn(move || {
                        let db = connect();
                        let me = Worker::this_process();
                        let done = Outcome {
                            state: TrialState::Complete,
                            value: Some(1.0),
                            best_step: None,
                            reason: None,
                            wall_s: 0.0,
                            spec: None,
                        };
                        let mut claimed = 0;
                        while let Some(t) = db
                            .claim(total, &me, conformance::GRACE, &mut |ts| {
                                proposal(ts.len() as u64)
                            })
                            .unwrap()
                        {
                            assert!(db.finish(t.attempt(), &done).unwrap());
                            claimed += 1;
                        }
                        claimed
                    })
                })
                .collect();
            let claimed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
            let seconds = start.elapsed().as_secs_f64();
            assert_eq!(claimed, total);
            table.push_str(&format!(
                "| {label} | {workers} | {total} | {seconds:.2} | {:.0} |\n",
                total as f64 / seconds
            ));
        }
        eprintln!("{table}");
        if let Ok(out) = std::env::var("RUNNER_CLAIM_BENCH_OUT") {
            std::fs::write(out, table).unwrap();
        }
    }

    #[test]
    fn passwords_never_show_in_a_storage_name() {
        let l = Location::Postgres {
            url: "postgresql://ana:s3cret@db.lab:5432/runner_studies".into(),
            target: Box::new(Target::parse("postgresql://ana@db.lab:5432/runner_studies").unwrap()),
            study: "search_gru".into(),
        };
        let shown = l.to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("ana:***@db.lab:5432/runner_studies"),
            "{shown}"
        );
        assert_eq!(
            without_password("postgresql://ana@db.lab/x"),
            "postgresql://ana@db.lab/x"
        );
    }

    #[test]
    fn a_trial_of_a_dead_worker_on_this_host_is_rerun_at_once() {
        let db = sqlite_store()();
        db.open_study("s", "x", Objective::ValExact).unwrap();
        let dead = Worker {
            pid: u32::MAX - 1,
            ..Worker::this_process()
        };
        let first = db
            .claim(5, &dead, conformance::GRACE, &mut |_| proposal(7))
            .unwrap()
            .unwrap();
        let me = Worker::this_process();
        let again = db
            .claim(5, &me, conformance::GRACE, &mut |_| proposal(8))
            .unwrap()
            .unwrap();
        assert_eq!(
            (again.number, again.seed, again.attempts),
            (first.number, 7, 2)
        );
    }
}
