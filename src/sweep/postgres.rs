//! A study in PostgreSQL, so that workers on several machines share it: every machine runs
//! `runner sweep` against the same database, and the database decides who runs which
//! trial. Many studies live in one database, by name (`runner_studies`); the schema is
//! created and versioned by the runner (`runner_schema`) and is plain tables, readable
//! with `psql`.
//!
//! Claims are serialised per study by a row lock on the study (`SELECT ... FOR UPDATE`)
//! inside one transaction, so a trial number or grid point is handed out exactly once;
//! serialisation failures and deadlocks are retried. Heartbeats are stamped with the
//! server's clock (`now()`), so the hosts' clocks do not matter.

use super::space::Params;
use super::storage::{Outcome, Proposal, Storage, Trial, TrialState, Worker, STALE_AFTER};
use crate::spec::Objective;
use anyhow::{bail, Context, Result};
use postgres::error::SqlState;
use postgres::{Client, GenericClient, NoTls};
use std::cell::RefCell;
use std::collections::HashMap;

/// The schema version this runner writes; a database with a newer one is refused.
const SCHEMA_VERSION: i32 = 1;

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
    PRIMARY KEY (study_id, number)
);
CREATE TABLE IF NOT EXISTS runner_intermediate (
    study_id integer NOT NULL,
    number bigint NOT NULL,
    eval_index integer NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (study_id, number, eval_index)
);
";

/// Any key for the advisory lock that serialises schema creation across workers.
const SCHEMA_LOCK: i64 = 0x7275_6e6e_6572;

/// One connection to a study in a PostgreSQL database.
pub struct Postgres {
    client: RefCell<Client>,
    study: String,
}

impl Postgres {
    /// Connects, creates or checks the schema, and addresses the study called `study`.
    pub fn open(url: &str, study: &str) -> Result<Self> {
        let mut client = Client::connect(url, NoTls)?;
        migrate(&mut client)?;
        Ok(Self {
            client: RefCell::new(client),
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

    /// Runs `body` in a transaction, again when the server gives up on it (serialisation
    /// failure, deadlock): another worker's transaction won, and this one may simply retry.
    fn transaction<T>(
        &self,
        mut body: impl FnMut(&mut postgres::Transaction) -> Result<T>,
    ) -> Result<T> {
        let mut client = self.client.borrow_mut();
        for attempt in 0.. {
            let mut tx = client.transaction()?;
            match body(&mut tx).and_then(|v| tx.commit().map(|()| v).map_err(Into::into)) {
                Ok(v) => return Ok(v),
                Err(e) if retryable(&e) && attempt < 20 => {
                    std::thread::sleep(std::time::Duration::from_millis(10 << attempt.min(6)));
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns")
    }
}

fn retryable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<postgres::Error>()
        .and_then(|e| e.code())
        .is_some_and(|c| {
            *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
        })
}

/// Creates the tables (once, whichever worker comes first) and refuses a database written
/// by a newer runner.
fn migrate(client: &mut Client) -> Result<()> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
    tx.batch_execute(SCHEMA)?;
    let version: Option<i32> = tx
        .query_opt("SELECT max(version) FROM runner_schema", &[])?
        .and_then(|r| r.get(0));
    match version {
        None => {
            tx.execute(
                "INSERT INTO runner_schema (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )?;
        }
        Some(v) if v > SCHEMA_VERSION => bail!(
            "its study tables are schema version {v}, written by a newer runner (this one \
             reads version {SCHEMA_VERSION}); use that runner"
        ),
        Some(_) => {}
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
        "SELECT number, state, params, seed, value, best_step, reason, wall_s, grid_index, attempts
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
        })
    })
    .collect()
}

/// An interrupted trial, or a running one whose worker is gone: dead on this host, or
/// silent past [`STALE_AFTER`] by the server's clock.
fn stale_trial(c: &mut impl GenericClient, id: i32, me: &Worker) -> Result<Option<i64>> {
    let stale_s = STALE_AFTER.as_secs_f64();
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
        let mut c = self.client.borrow_mut();
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
    }

    fn objective(&self) -> Result<Objective> {
        let mut c = self.client.borrow_mut();
        let row = c.query_opt(
            "SELECT objective FROM runner_studies WHERE name = $1",
            &[&self.study],
        )?;
        let Some(row) = row else {
            bail!("the database holds no study called '{}'", self.study)
        };
        let name: String = row.get(0);
        Objective::from_name(&name).map_err(|e| anyhow::anyhow!("the study database: {e}"))
    }

    fn claim(
        &self,
        total: usize,
        worker: &Worker,
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
            let claimed = if let Some(number) = stale_trial(tx, id, worker)? {
                tx.execute(
                    "UPDATE runner_trials SET state = 'running', host = $3, pid = $4,
                     heartbeat = now(), started = now(), attempts = attempts + 1, value = NULL,
                     reason = NULL WHERE study_id = $1 AND number = $2",
                    &[&id, &number, &worker.host, &pid],
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
                             grid_index, host, pid, heartbeat, started)
                             VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, now(), now())",
                            &[
                                &id,
                                &number,
                                &serde_json::to_string(&p.params)?,
                                &(p.seed as i64),
                                &p.grid_index.map(|g| g as i64),
                                &worker.host,
                                &pid,
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

    fn heartbeat(&self, number: u64) -> Result<()> {
        let mut c = self.client.borrow_mut();
        let id = self.id(&mut *c)?;
        c.execute(
            "UPDATE runner_trials SET heartbeat = now() WHERE study_id = $1 AND number = $2",
            &[&id, &(number as i64)],
        )?;
        Ok(())
    }

    fn report(&self, number: u64, eval_index: usize, value: f64) -> Result<()> {
        {
            let mut c = self.client.borrow_mut();
            let id = self.id(&mut *c)?;
            c.execute(
                "INSERT INTO runner_intermediate (study_id, number, eval_index, value)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (study_id, number, eval_index) DO UPDATE SET value = EXCLUDED.value",
                &[&id, &(number as i64), &(eval_index as i32), &value],
            )?;
        }
        self.heartbeat(number)
    }

    fn finish(&self, number: u64, o: &Outcome) -> Result<()> {
        let mut c = self.client.borrow_mut();
        let id = self.id(&mut *c)?;
        c.execute(
            "UPDATE runner_trials SET state = $3, value = $4, best_step = $5, reason = $6,
             wall_s = $7, finished = now() WHERE study_id = $1 AND number = $2",
            &[
                &id,
                &(number as i64),
                &o.state.as_str(),
                &o.value,
                &o.best_step.map(|s| s as i64),
                &o.reason,
                &o.wall_s,
            ],
        )?;
        Ok(())
    }

    fn trials(&self) -> Result<Vec<Trial>> {
        let mut c = self.client.borrow_mut();
        let id = self.id(&mut *c)?;
        load_trials(&mut *c, id)
    }

    fn intermediates(&self) -> Result<HashMap<u64, Vec<f64>>> {
        let mut c = self.client.borrow_mut();
        let id = self.id(&mut *c)?;
        load_intermediates(&mut *c, id)
    }
}
