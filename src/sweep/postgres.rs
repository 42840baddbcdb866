//! A study in PostgreSQL, so that workers on several machines share it: every machine runs
//! `runner sweep` against the same database, and the database decides who runs which
//! trial. Many studies live in one database, by name (`runner_studies`); the schema is
//! created and versioned by the runner (`runner_schema`) and is plain tables, readable
//! with `psql`.
//!
//! Claims are serialised per study by a row lock on the study (`SELECT ... FOR UPDATE`)
//! inside one transaction, so a trial number or grid point is handed out exactly once;
//! serialisation failures and deadlocks are retried. Heartbeats are stamped with the
//! server's clock (`now()`), so the hosts' clocks do not matter. A connection lost mid-study
//! (a server restart, a network cut) is re-made with backoff for up to [`RECONNECT_FOR`],
//! and the write that failed is repeated; every write is idempotent for that reason.

use super::pg_connect::Target;
use super::space::Params;
use super::storage::{Attempt, Outcome, Proposal, Storage, StudyInfo, Trial, TrialState, Worker};
use crate::spec::Objective;
use anyhow::{bail, Context, Result};
use postgres::error::SqlState;
use postgres::{Client, GenericClient};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a worker keeps trying to reach a server it lost before it gives up.
pub const RECONNECT_FOR: Duration = Duration::from_secs(30 * 60);

/// The schema version this runner writes; a database with a newer one is refused.
/// 2: trials record their run directory and resolved spec.
const SCHEMA_VERSION: i32 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runner_schema (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS runner_studies (
    id serial PRIMARY KEY,
    name text UNIQUE NOT NULL,
    fingerprint text NOT NULL,
    objective text NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS runner_trials (
    study_id integer NOT NULL REFERENCES runner_studies (id),
    number bigint NOT NULL,
    state text NOT NULL,
    params text NOT NULL,
    seed bigint NOT NULL,
    grid_index bigint,
    host text,
    pid bigint,
    heartbeat timestamptz,
    started timestamptz,
    finished timestamptz,
    attempts integer NOT NULL DEFAULT 1,
    value double precision,
    best_step bigint,
    reason text,
    wall_s double precision,
    dir text,
    spec text,
    PRIMARY KEY (study_id, number)
);
CREATE TABLE IF NOT EXISTS runner_intermediate (
    study_id integer NOT NULL,
    number bigint NOT NULL,
    eval_index integer NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (study_id, number, eval_index)
);
ALTER TABLE runner_trials ADD COLUMN IF NOT EXISTS dir text;
ALTER TABLE runner_trials ADD COLUMN IF NOT EXISTS spec text;
";

/// Any key for the advisory lock that serialises schema creation across workers.
const SCHEMA_LOCK: i64 = 0x7275_6e6e_6572;

/// One connection to a study in a PostgreSQL database.
pub struct Postgres {
    client: RefCell<Client>,
    target: Target,
    study: String,
}

impl Postgres {
    /// Connects, creates or checks the schema, and addresses the study called `study`.
    pub fn open(target: Target, study: &str) -> Result<Self> {
        let mut client = target.connect()?;
        migrate(&mut client)?;
        Ok(Self {
            client: RefCell::new(client),
            target,
            study: study.to_string(),
        })
    }

    /// The study's id; an error if it was never created (`runner sweep` creates it).
    fn id(&self, c: &mut impl GenericClient) -> Result<i32> {
        let row = c.query_opt(
            "SELECT id FROM runner_studies WHERE name = $1",
            &[&self.study],
        )?;
        match row {
            Some(r) => Ok(r.get(0)),
            None => bail!("the database holds no study called '{}'", self.study),
        }
    }

    /// Runs `op`, again after re-making a lost connection (with backoff, for up to
    /// [`RECONNECT_FOR`]) or when the server gave up on a transaction (serialisation
    /// failure, deadlock: another worker's won, and this one may simply retry).
    fn with_client<T>(&self, mut op: impl FnMut(&mut Client) -> Result<T>) -> Result<T> {
        let mut conflicts = 0;
        loop {
            let result = op(&mut self.client.borrow_mut());
            match result {
                Err(e) if self.lost(&e) => self.reconnect(&e)?,
                Err(e) if retryable(&e) && conflicts < 20 => {
                    std::thread::sleep(Duration::from_millis(10 << conflicts.min(6)));
                    conflicts += 1;
                }
                other => return other,
            }
        }
    }

    /// Runs `body` in one transaction, as [`Self::with_client`] does.
    fn transaction<T>(
        &self,
        mut body: impl FnMut(&mut postgres::Transaction) -> Result<T>,
    ) -> Result<T> {
        self.with_client(|client| {
            let mut tx = client.transaction()?;
            let value = body(&mut tx)?;
            tx.commit()?;
            Ok(value)
        })
    }

    /// Was the connection lost (rather than the statement refused)?
    fn lost(&self, e: &anyhow::Error) -> bool {
        let code = e
            .downcast_ref::<postgres::Error>()
            .and_then(|e| e.code())
            .cloned();
        self.client.borrow().is_closed()
            || code.is_some_and(|c| {
                c == SqlState::ADMIN_SHUTDOWN
                    || c == SqlState::CRASH_SHUTDOWN
                    || c == SqlState::CANNOT_CONNECT_NOW
            })
    }

    /// Re-makes the connection, waiting 0.5 s, 1 s, 2 s ... (at most 10 s) between tries.
    fn reconnect(&self, cause: &anyhow::Error) -> Result<()> {
        let since = Instant::now();
        let mut wait = Duration::from_millis(500);
        tracing::warn!(study = %self.study, "lost the study database ({cause:#}); reconnecting");
        loop {
            std::thread::sleep(wait);
            match self.target.connect() {
                Ok(client) => {
                    *self.client.borrow_mut() = client;
                    tracing::info!(
                        study = %self.study,
                        after_s = since.elapsed().as_secs(),
                        "reconnected to the study database"
                    );
                    return Ok(());
                }
                Err(e) if since.elapsed() < RECONNECT_FOR => {
                    tracing::debug!("still no study database: {e:#}");
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
                Err(e) => {
                    return Err(e.context(format!(
                        "the study database did not come back within {}",
                        humantime::format_duration(RECONNECT_FOR)
                    )))
                }
            }
        }
    }
}

fn retryable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<postgres::Error>()
        .and_then(|e| e.code())
        .is_some_and(|c| {
            *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
        })
}

/// The schema version of the database, if it has the runner's tables.
fn schema_version(c: &mut impl GenericClient) -> Result<Option<i32>> {
    let exists: bool = c
        .query_one("SELECT to_regclass('runner_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(c.query_one("SELECT max(version) FROM runner_schema", &[])?
        .get(0))
}

fn newer(v: i32) -> anyhow::Error {
    anyhow::anyhow!(
        "its study tables are schema version {v}, written by a newer runner (this one \
         reads version {SCHEMA_VERSION}); use that runner"
    )
}

/// Creates or upgrades the tables (once, whichever worker comes first) and refuses a
/// database written by a newer runner. A database already at this version is only read:
/// the DDL takes table locks every claim would queue behind.
fn migrate(client: &mut Client) -> Result<()> {
    match schema_version(client)? {
        Some(v) if v == SCHEMA_VERSION => return Ok(()),
        Some(v) if v > SCHEMA_VERSION => return Err(newer(v)),
        _ => {}
    }
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
    tx.batch_execute(SCHEMA)?;
    match schema_version(&mut tx)? {
        Some(v) if v > SCHEMA_VERSION => return Err(newer(v)),
        Some(v) if v == SCHEMA_VERSION => {}
        _ => {
            tx.execute(
                "INSERT INTO runner_schema (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn load_intermediates(c: &mut impl GenericClient, id: i32) -> Result<HashMap<u64, Vec<f64>>> {
    let mut out: HashMap<u64, Vec<f64>> = HashMap::new();
    for row in c.query(
        "SELECT number, value FROM runner_intermediate WHERE study_id = $1
         ORDER BY number, eval_index",
        &[&id],
    )? {
        let number: i64 = row.get(0);
        out.entry(number as u64).or_default().push(row.get(1));
    }
    Ok(out)
}

fn load_trials(c: &mut impl GenericClient, id: i32) -> Result<Vec<Trial>> {
    let mut intermediates = load_intermediates(c, id)?;
    c.query(
        "SELECT number, state, params, seed, value, best_step, reason, wall_s, grid_index, attempts,
                host, dir
         FROM runner_trials WHERE study_id = $1 ORDER BY number",
        &[&id],
    )?
    .iter()
    .map(|row| {
        let number = row.get::<_, i64>(0) as u64;
        let params: Params = serde_json::from_str(row.get(2))
            .with_context(|| format!("trial {number}: parameters in the study database"))?;
        Ok(Trial {
            number,
            state: TrialState::parse(row.get(1))?,
            params,
            seed: row.get::<_, i64>(3) as u64,
            value: row.get(4),
            best_step: row.get::<_, Option<i64>>(5).map(|s| s as u64),
            reason: row.get(6),
            wall_s: row.get(7),
            grid_index: row.get::<_, Option<i64>>(8).map(|g| g as u64),
            attempts: row.get::<_, i32>(9) as u32,
            intermediates: intermediates.remove(&number).unwrap_or_default(),
            host: row.get(10),
            dir: row.get(11),
        })
    })
    .collect()
}

/// An interrupted trial, or a running one whose worker is gone: dead on this host, or
/// silent past the grace period by the server's clock.
fn stale_trial(
    c: &mut impl GenericClient,
    id: i32,
    me: &Worker,
    grace_period: Duration,
) -> Result<Option<i64>> {
    let stale_s = grace_period.as_secs_f64();
    let rows = c.query(
        "SELECT number, host, pid,
                heartbeat IS NULL OR heartbeat < now() - make_interval(secs => $2),
                state = 'interrupted'
         FROM runner_trials WHERE study_id = $1 AND state IN ('interrupted', 'running')
         ORDER BY state = 'running', number",
        &[&id, &stale_s],
    )?;
    for row in rows {
        let number: i64 = row.get(0);
        let host: Option<String> = row.get(1);
        let pid: Option<i64> = row.get(2);
        let silent: bool = row.get(3);
        let interrupted: bool = row.get(4);
        let dead_here = host.as_deref() == Some(me.host.as_str())
            && pid.is_some_and(|p| p as u32 != me.pid && !super::storage::process_alive(p as u32));
        if interrupted || silent || dead_here {
            return Ok(Some(number));
        }
    }
    Ok(None)
}

impl Storage for Postgres {
    /// The study is the one this connection was opened for (its `Location`); `_name`, the
    /// label a SQLite file stores, is that same name when a sweep opens it.
    fn open_study(&self, _name: &str, fingerprint: &str, objective: Objective) -> Result<String> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO runner_studies (name, fingerprint, objective) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING",
                &[&self.study, &fingerprint, &objective.name()],
            )?;
            let row = c.query_one(
                "SELECT fingerprint FROM runner_studies WHERE name = $1",
                &[&self.study],
            )?;
            Ok(row.get(0))
        })
    }

    fn study(&self) -> Result<StudyInfo> {
        let row = self.with_client(|c| {
            Ok(c.query_opt(
                "SELECT fingerprint, objective FROM runner_studies WHERE name = $1",
                &[&self.study],
            )?)
        })?;
        let Some(row) = row else {
            bail!("the database holds no study called '{}'", self.study)
        };
        let objective: String = row.get(1);
        Ok(StudyInfo {
            name: self.study.clone(),
            fingerprint: row.get(0),
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
        self.transaction(|tx| {
            let id = self.id(tx)?;
            // The study's row lock: one claim of this study at a time, on any host.
            tx.execute(
                "SELECT 1 FROM runner_studies WHERE id = $1 FOR UPDATE",
                &[&id],
            )?;
            let pid = worker.pid as i64;
            let claimed = if let Some(number) = stale_trial(tx, id, worker, grace_period)? {
                tx.execute(
                    "UPDATE runner_trials SET state = 'running', host = $3, pid = $4,
                     heartbeat = now(), started = now(), attempts = attempts + 1, value = NULL,
                     reason = NULL, dir = $5 WHERE study_id = $1 AND number = $2",
                    &[&id, &number, &worker.host, &pid, &worker.dir_of(number)],
                )?;
                tx.execute(
                    "DELETE FROM runner_intermediate WHERE study_id = $1 AND number = $2",
                    &[&id, &number],
                )?;
                Some(number)
            } else {
                let trials = load_trials(tx, id)?;
                match (trials.len() < total).then(|| propose(&trials)).flatten() {
                    Some(p) => {
                        let number = trials.iter().map(|t| t.number + 1).max().unwrap_or(0) as i64;
                        tx.execute(
                            "INSERT INTO runner_trials (study_id, number, state, params, seed,
                             grid_index, host, pid, heartbeat, started, dir)
                             VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, now(), now(), $8)",
                            &[
                                &id,
                                &number,
                                &serde_json::to_string(&p.params)?,
                                &(p.seed as i64),
                                &p.grid_index.map(|g| g as i64),
                                &worker.host,
                                &pid,
                                &worker.dir_of(number),
                            ],
                        )?;
                        Some(number)
                    }
                    None => None,
                }
            };
            Ok(match claimed {
                Some(n) => load_trials(tx, id)?
                    .into_iter()
                    .find(|t| t.number == n as u64),
                None => None,
            })
        })
    }

    fn heartbeat(&self, a: Attempt) -> Result<()> {
        self.with_client(|c| {
            let id = self.id(c)?;
            c.execute(
                "UPDATE runner_trials SET heartbeat = now()
                 WHERE study_id = $1 AND number = $2 AND attempts = $3",
                &[&id, &(a.number as i64), &(a.attempt as i32)],
            )?;
            Ok(())
        })
    }

    fn report(&self, a: Attempt, eval_index: usize, value: f64) -> Result<()> {
        self.with_client(|c| {
            let id = self.id(c)?;
            c.execute(
                "INSERT INTO runner_intermediate (study_id, number, eval_index, value)
                 SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM runner_trials
                   WHERE study_id = $1 AND number = $2 AND attempts = $5)
                 ON CONFLICT (study_id, number, eval_index) DO UPDATE SET value = EXCLUDED.value",
                &[
                    &id,
                    &(a.number as i64),
                    &(eval_index as i32),
                    &value,
                    &(a.attempt as i32),
                ],
            )?;
            Ok(())
        })?;
        self.heartbeat(a)
    }

    fn finish(&self, a: Attempt, o: &Outcome) -> Result<bool> {
        self.with_client(|c| {
            let id = self.id(c)?;
            let changed = c.execute(
                "UPDATE runner_trials SET state = $3, value = $4, best_step = $5, reason = $6,
                 wall_s = $7, spec = $8, finished = now()
                 WHERE study_id = $1 AND number = $2 AND attempts = $9",
                &[
                    &id,
                    &(a.number as i64),
                    &o.state.as_str(),
                    &o.value,
                    &o.best_step.map(|s| s as i64),
                    &o.reason,
                    &o.wall_s,
                    &o.spec,
                    &(a.attempt as i32),
                ],
            )?;
            Ok(changed == 1)
        })
    }

    fn trials(&self) -> Result<Vec<Trial>> {
        self.with_client(|c| {
            let id = self.id(c)?;
            load_trials(c, id)
        })
    }

    fn intermediates(&self) -> Result<HashMap<u64, Vec<f64>>> {
        self.with_client(|c| {
            let id = self.id(c)?;
            load_intermediates(c, id)
        })
    }

    fn trial_spec(&self, number: u64) -> Result<Option<String>> {
        self.with_client(|c| {
            let id = self.id(c)?;
            let row = c.query_opt(
                "SELECT spec FROM runner_trials WHERE study_id = $1 AND number = $2",
                &[&id, &(number as i64)],
            )?;
            Ok(row.and_then(|r| r.get(0)))
        })
    }

    fn import(&self, study: &StudyInfo, trials: &[(Trial, Option<String>)]) -> Result<()> {
        self.transaction(|tx| {
            let created = tx.execute(
                "INSERT INTO runner_studies (name, fingerprint, objective) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING",
                &[&self.study, &study.fingerprint, &study.objective.name()],
            )?;
            if created == 0 {
                bail!(
                    "the database already holds a study called '{}'; nothing was copied",
                    self.study
                );
            }
            let id = self.id(tx)?;
            for (t, spec) in trials {
                let n = t.number as i64;
                tx.execute(
                    "INSERT INTO runner_trials (study_id, number, state, params, seed, value,
                     best_step, reason, wall_s, grid_index, attempts, host, dir, spec)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                    &[
                        &id,
                        &n,
                        &t.state.as_str(),
                        &serde_json::to_string(&t.params)?,
                        &(t.seed as i64),
                        &t.value,
                        &t.best_step.map(|s| s as i64),
                        &t.reason,
                        &t.wall_s,
                        &t.grid_index.map(|g| g as i64),
                        &(t.attempts as i32),
                        &t.host,
                        &t.dir,
                        spec,
                    ],
                )?;
                for (i, v) in t.intermediates.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO runner_intermediate (study_id, number, eval_index, value)
                         VALUES ($1, $2, $3, $4)",
                        &[&id, &n, &(i as i32), v],
                    )?;
                }
            }
            Ok(())
        })
    }
}
