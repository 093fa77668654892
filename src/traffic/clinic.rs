//! Simulated clinicians (I/O): per trust, a few staff sessions on their own connections open
//! patient records, look at caseloads and save clinical notes on the demo schema, and a
//! verifier reads every saved note back. Everything they experience goes to the [`Record`].
//!
//! They behave like an application, not like flotilla: a session waits for a lock at most
//! [`LOCK_WAIT`] (SQLite `busy_timeout`, Postgres `lock_timeout`) and then its action fails;
//! a failed action is recorded, never fatal, and a dropped connection is opened again before
//! the next action. A trust being migrated or rolled back under them is exactly what they are
//! there to feel.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::sync::watch;

use super::record::{now_ms, write_line, ActionKind, Loss, Record};
use crate::config::{DatabaseTarget, Trust};

/// How long a clinician's action waits for a lock before it fails.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);
/// A Postgres statement that runs longer than this fails (an application's request timeout).
const STATEMENT_TIMEOUT: &str = "30s";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opening a record: the same shape as the plan's `open-record` probe.
const OPEN_RECORD: &str = "SELECT p.id, p.family_name, p.given_name, p.date_of_birth, \
     (SELECT COUNT(*) FROM referral r WHERE r.patient_id = p.id) AS referrals, \
     (SELECT COUNT(*) FROM appointment a WHERE a.patient_id = p.id) AS appointments, \
     n.written_at, n.note_type, n.body \
     FROM patient p LEFT JOIN clinical_note n ON n.patient_id = p.id \
     WHERE p.id = $1 ORDER BY n.written_at DESC LIMIT 20";
/// A clinician's caseload.
const CASELOAD: &str = "SELECT a.starts_at, a.location, p.family_name, p.given_name \
     FROM appointment a JOIN patient p ON p.id = a.patient_id \
     WHERE a.staff_id = $1 AND a.starts_at >= '2024-06-01' ORDER BY a.starts_at LIMIT 50";
/// Saving a note: the id is the application's (see [`TrustNotes::next_id`]).
const SAVE_NOTE: &str =
    "INSERT INTO clinical_note (id, patient_id, author_id, written_at, note_type, body) \
     VALUES ($1, $2, $3, CURRENT_TIMESTAMP, $4, $5)";
const NOTES_IN: &str = "SELECT id, body FROM clinical_note WHERE id >= $1 AND id <= $2 ORDER BY id";
const COUNT_IN: &str = "SELECT COUNT(*) FROM clinical_note WHERE id >= $1 AND id <= $2";

/// The mix of actions: (kind, weight out of 100).
const MIX: [(ActionKind, u32); 3] = [
    (ActionKind::OpenRecord, 45),
    (ActionKind::Caseload, 30),
    (ActionKind::SaveNote, 25),
];

const NOTE_TYPES: [&str; 3] = ["progress", "contact", "mental-state"];
const NOTE_TEXT: [&str; 6] = [
    "Telephone contact with patient. Mood stable, sleeping better. Plan: review in two weeks.",
    "Seen at home with carer present. Medication taken as prescribed. Plan: continue current care plan.",
    "Reviewed in clinic. No thoughts of self-harm expressed; safety plan discussed. Plan: GP to review medication.",
    "Video consultation. Anxiety improving with CBT techniques. Plan: next session booked.",
    "Wound dressing changed, healing well. Plan: district nurse visit Thursday.",
    "Discussed at team meeting. Plan: refer to psychology for assessment.",
];

/// How the traffic runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Actions per second per trust, over all its sessions.
    pub rate: f64,
    /// Concurrent staff sessions (connections) per trust.
    pub sessions: usize,
    /// How long every trust's sessions run before the traffic reports itself ready.
    pub warm_up: Duration,
    /// How often new notes are read back (and the older ones counted).
    pub verify_every: Duration,
    /// Seed of the random choices (patients, staff, think times, the mix).
    pub seed: u64,
}

/// Why the traffic could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error("cannot write the traffic record: {0}")]
    Record(#[from] std::io::Error),
}

impl TrafficError {
    /// The documented exit code (1, as for any failure of flotilla's own files).
    pub fn exit_code(&self) -> crate::exit_codes::ExitCode {
        crate::exit_codes::ExitCode::Internal
    }
}

/// Where records go: one writer shared by every task (a line is written whole under the lock).
#[derive(Clone)]
pub struct Sink(Arc<Mutex<Box<dyn Write + Send>>>);

impl Sink {
    /// A sink writing JSON lines to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Sink {
        Sink(Arc::new(Mutex::new(out)))
    }

    fn put(&self, record: &Record) {
        let mut out = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = write_line(&mut *out, record) {
            tracing::error!(error = %e, "cannot write the traffic record");
        }
    }

    fn flush(&self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

/// An application connection to a trust.
enum AppConn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

macro_rules! on {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            AppConn::Sqlite($c) => $body,
            AppConn::Postgres($c) => $body,
        }
    };
}

/// The first line of an error, without the noise, at most 200 characters.
fn short(e: &impl std::fmt::Display) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    let line = line
        .strip_prefix("error returned from database: ")
        .unwrap_or(line);
    line.chars().take(200).collect()
}

/// Whether the connection is gone (open a new one before the next action).
fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

async fn connect(trust: &Trust) -> Result<AppConn, String> {
    let connecting = async {
        match &trust.database {
            DatabaseTarget::Sqlite { path } => {
                if !path.is_file() {
                    return Err(format!("database file {} does not exist", path.display()));
                }
                SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(false)
                    .foreign_keys(true)
                    .busy_timeout(LOCK_WAIT)
                    // Commits do not wait for the disk (see the module documentation).
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Off)
                    .disable_statement_logging()
                    .connect()
                    .await
                    .map(AppConn::Sqlite)
                    .map_err(|e| short(&e))
            }
            DatabaseTarget::Postgres { .. } => {
                let options = crate::db::port::pg_options(trust, crate::db::Access::ReadWrite)
                    .map_err(|e| e.to_string())?
                    .application_name("flotilla-traffic")
                    .options([
                        ("lock_timeout", format!("{}ms", LOCK_WAIT.as_millis())),
                        ("statement_timeout", STATEMENT_TIMEOUT.to_string()),
                    ]);
                options
                    .connect()
                    .await
                    .map(AppConn::Postgres)
                    .map_err(|e| short(&e))
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))
}

async fn close(conn: AppConn) {
    let _ = on!(conn, c => c.close().await);
}

/// What a trust's clinicians work with, read once at the start.
struct Setting {
    patients: Vec<i64>,
    staff: Vec<i64>,
    first_note: i64,
}

async fn ids(conn: &mut AppConn, sql: &str) -> Result<Vec<i64>, sqlx::Error> {
    on!(conn, c => sqlx::query_scalar::<_, i64>(sql).fetch_all(&mut *c).await)
}

async fn read_setting(conn: &mut AppConn) -> Result<Setting, String> {
    let patients = ids(conn, "SELECT id FROM patient ORDER BY id")
        .await
        .map_err(|e| short(&e))?;
    let staff = ids(conn, "SELECT id FROM staff ORDER BY id")
        .await
        .map_err(|e| short(&e))?;
    let max: Option<i64> = on!(conn, c => sqlx::query_scalar("SELECT MAX(id) FROM clinical_note").fetch_one(&mut *c).await)
        .map_err(|e| short(&e))?;
    if patients.is_empty() || staff.is_empty() {
        return Err("the trust has no patients or no staff to simulate".into());
    }
    Ok(Setting {
        patients,
        staff,
        // Above every note there is; positive, so never one of the write probe's negative ids.
        first_note: max.unwrap_or(0).max(0) + 1,
    })
}

/// Whether a saved note has been read back, and how it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Committed, not read back yet.
    Unchecked,
    /// Read back intact (last time it was looked at).
    Present,
    /// Found missing or changed (and not seen intact since).
    Gone,
}

#[derive(Debug)]
struct Note {
    body: String,
    saved_at_ms: f64,
    seen: Seen,
}

/// The notes a trust's clinicians saved, and the next id to give one.
struct TrustNotes {
    trust: String,
    /// The application's id counter: every id above every note that existed at the start.
    next_id: AtomicI64,
    first_id: i64,
    notes: Mutex<BTreeMap<i64, Note>>,
}

impl TrustNotes {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, Note>> {
        self.notes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The notes saved (committed) with ids in `range` so far: the ones a read that starts now
    /// must find.
    fn known_in(&self, (lo, hi): (i64, i64)) -> Vec<i64> {
        self.lock().range(lo..=hi).map(|(id, _)| *id).collect()
    }

    /// Compare what a read found with the notes `known` to have been saved before it started
    /// (a note saved while it ran may be missing from it and is judged next time), and record
    /// every note that went missing or changed, or came back.
    fn reconcile(&self, found: &BTreeMap<i64, String>, known: &[i64], sink: &Sink) {
        let at_ms = now_ms();
        let mut notes = self.lock();
        for id in known {
            let Some(note) = notes.get_mut(id) else {
                continue;
            };
            let how = match found.get(id) {
                Some(body) if *body == note.body => None,
                Some(_) => Some(Loss::Changed),
                None => Some(Loss::Missing),
            };
            match (how, note.seen) {
                (None, Seen::Gone) => {
                    note.seen = Seen::Present;
                    sink.put(&Record::Restored {
                        trust: self.trust.clone(),
                        note: *id,
                        at_ms,
                    });
                }
                (None, _) => note.seen = Seen::Present,
                (Some(how), Seen::Unchecked | Seen::Present) => {
                    note.seen = Seen::Gone;
                    sink.put(&Record::Vanished {
                        trust: self.trust.clone(),
                        note: *id,
                        how,
                        saved_at_ms: note.saved_at_ms,
                        at_ms,
                    });
                }
                (Some(_), Seen::Gone) => {}
            }
        }
    }
}

async fn notes_in(
    conn: &mut AppConn,
    (lo, hi): (i64, i64),
) -> Result<BTreeMap<i64, String>, sqlx::Error> {
    on!(conn, c => {
        let rows = sqlx::query(NOTES_IN).bind(lo).bind(hi).fetch_all(&mut *c).await?;
        let mut out = BTreeMap::new();
        for row in rows {
            let id: i64 = row.try_get(0)?;
            let body: String = row.try_get(1)?;
            out.insert(id, body);
        }
        Ok(out)
    })
}

/// One verification pass: read the new notes back; count the older ones and, when the count is
/// not what it should be, read them back too (which ones vanished, which came back).
async fn verify_pass(
    conn: &mut AppConn,
    notes: &TrustNotes,
    sink: &Sink,
) -> Result<(), sqlx::Error> {
    let fresh: Vec<i64> = notes
        .lock()
        .iter()
        .filter(|(_, n)| n.seen == Seen::Unchecked)
        .map(|(id, _)| *id)
        .collect();
    if let (Some(lo), Some(hi)) = (fresh.first(), fresh.last()) {
        let found = notes_in(conn, (*lo, *hi)).await?;
        // Only the unchecked notes are judged on this read; older ones in the range are left
        // to the count below.
        let at_ms = now_ms();
        let mut book = notes.lock();
        for id in &fresh {
            let Some(note) = book.get_mut(id).filter(|n| n.seen == Seen::Unchecked) else {
                continue;
            };
            match found.get(id) {
                Some(body) if *body == note.body => note.seen = Seen::Present,
                other => {
                    note.seen = Seen::Gone;
                    sink.put(&Record::Vanished {
                        trust: notes.trust.clone(),
                        note: *id,
                        how: if other.is_some() {
                            Loss::Changed
                        } else {
                            Loss::Missing
                        },
                        saved_at_ms: note.saved_at_ms,
                        at_ms,
                    });
                }
            }
        }
    }
    let (expected, hi) = {
        let book = notes.lock();
        let checked: Vec<(&i64, &Note)> = book
            .iter()
            .filter(|(_, n)| n.seen != Seen::Unchecked)
            .collect();
        let Some((hi, _)) = checked.last() else {
            return Ok(());
        };
        (
            checked
                .iter()
                .filter(|(_, n)| n.seen == Seen::Present)
                .count(),
            **hi,
        )
    };
    let range = (notes.first_id, hi);
    let count: i64 = on!(conn, c => sqlx::query_scalar(COUNT_IN).bind(range.0).bind(range.1).fetch_one(&mut *c).await)?;
    if usize::try_from(count).ok() != Some(expected) {
        let known = notes.known_in(range);
        let found = notes_in(conn, range).await?;
        notes.reconcile(&found, &known, sink);
    }
    Ok(())
}

/// A trust's traffic: its sessions and its verifier, until `stop`; then the final read-back.
async fn trust_traffic(
    trust: Trust,
    settings: Settings,
    index: u64,
    sink: Sink,
    mut stop: watch::Receiver<bool>,
    started: Arc<tokio::sync::Barrier>,
) {
    // Set up: who the patients and staff are, where the notes' ids start.
    let mut first = None;
    let mut waited = false;
    while first.is_none() {
        match connect(&trust).await {
            Ok(mut conn) => match read_setting(&mut conn).await {
                Ok(s) => first = Some((s, conn)),
                Err(error) => {
                    sink.put(&Record::Problem {
                        trust: trust.id.clone(),
                        error,
                        at_ms: now_ms(),
                    });
                    close(conn).await;
                }
            },
            Err(error) => sink.put(&Record::Problem {
                trust: trust.id.clone(),
                error,
                at_ms: now_ms(),
            }),
        }
        if first.is_none() {
            if !waited {
                // Do not hold the others' start back for a trust that cannot be reached.
                started.wait().await;
                waited = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
        }
    }
    let Some((setting, verifier_conn)) = first else {
        return;
    };
    if !waited {
        started.wait().await;
    }
    let setting = Arc::new(setting);
    let notes = Arc::new(TrustNotes {
        trust: trust.id.clone(),
        next_id: AtomicI64::new(setting.first_note),
        first_id: setting.first_note,
        notes: Mutex::new(BTreeMap::new()),
    });
    let trust = Arc::new(trust);
    let mut tasks = Vec::new();
    for s in 0..settings.sessions.max(1) {
        let seed = settings
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(index << 16 | s as u64);
        tasks.push(tokio::spawn(session(
            trust.clone(),
            setting.clone(),
            notes.clone(),
            settings.clone(),
            ChaCha8Rng::seed_from_u64(seed),
            sink.clone(),
            stop.clone(),
        )));
    }
    let mut verifier = Some(verifier_conn);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(settings.verify_every) => {}
            _ = stop.changed() => break,
        }
        let mut conn = match verifier.take() {
            Some(c) => c,
            None => match connect(&trust).await {
                Ok(c) => c,
                Err(_) => continue,
            },
        };
        match verify_pass(&mut conn, &notes, &sink).await {
            Ok(()) => verifier = Some(conn),
            Err(e) if connection_lost(&e) => close(conn).await,
            Err(e) => {
                tracing::debug!(trust = %trust.id, error = %e, "verification pass failed; trying again next time");
                verifier = Some(conn);
            }
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    // The final read-back of every note saved.
    let saved = notes.lock().len() as u64;
    let last = notes.next_id.load(Ordering::SeqCst) - 1;
    let mut error = None;
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut conn = match verifier.take() {
            Some(c) => c,
            None => match connect(&trust).await {
                Ok(c) => c,
                Err(e) => {
                    error = Some(e);
                    continue;
                }
            },
        };
        // Every session has stopped: every note saved is known.
        let known = notes.known_in((notes.first_id, last));
        match notes_in(&mut conn, (notes.first_id, last)).await {
            Ok(found) => {
                notes.reconcile(&found, &known, &sink);
                error = None;
                close(conn).await;
                break;
            }
            Err(e) => {
                error = Some(short(&e));
                close(conn).await;
            }
        }
    }
    if let Some(c) = verifier {
        close(c).await;
    }
    let missing = notes
        .lock()
        .values()
        .filter(|n| n.seen != Seen::Present)
        .count() as u64;
    sink.put(&Record::Verified {
        trust: trust.id.clone(),
        saved,
        missing: if error.is_some() { 0 } else { missing },
        error,
        at_ms: now_ms(),
    });
}

/// The gate's control query, timed: it reads no table, so its time is the machine's.
async fn control(conn: &mut AppConn) -> Option<f64> {
    let started = Instant::now();
    let r = on!(conn, c => sqlx::query(crate::health::probes::CONTROL_SQL).fetch_all(&mut *c).await.map(|_| ()));
    r.ok().map(|()| started.elapsed().as_secs_f64() * 1000.0)
}

/// One staff member's session: think, act, record; until `stop`.
async fn session(
    trust: Arc<Trust>,
    setting: Arc<Setting>,
    notes: Arc<TrustNotes>,
    settings: Settings,
    mut rng: ChaCha8Rng,
    sink: Sink,
    mut stop: watch::Receiver<bool>,
) {
    let mean_gap = settings.sessions.max(1) as f64 / settings.rate.max(0.001);
    let mut conn: Option<AppConn> = None;
    let mut seq = 0u64;
    let mut next = tokio::time::Instant::now();
    loop {
        // Exponential gaps between the starts of actions: each session's actions arrive as a
        // Poisson process, together the target rate. A slow action delays the next one (one
        // action at a time per session) but the schedule keeps its pace, so the rate holds
        // as long as actions take less than the mean gap; a session more than a second behind
        // starts afresh rather than bursting to catch up.
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        next += Duration::from_secs_f64((-u.ln() * mean_gap).min(60.0));
        let now = tokio::time::Instant::now();
        if now > next + Duration::from_secs(1) {
            next = now;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        let roll = rng.random_range(0..100u32);
        let mut acc = 0;
        let kind = MIX
            .iter()
            .find(|(_, w)| {
                acc += w;
                roll < acc
            })
            .map_or(ActionKind::OpenRecord, |(k, _)| *k);
        let at_ms = now_ms();
        let started = Instant::now();
        let mut c = match conn.take() {
            Some(c) => c,
            None => match connect(&trust).await {
                Ok(c) => c,
                Err(error) => {
                    sink.put(&Record::Action {
                        trust: trust.id.clone(),
                        kind,
                        at_ms,
                        ms: started.elapsed().as_secs_f64() * 1000.0,
                        error: Some(format!("cannot connect: {error}")),
                        note: None,
                        control_ms: None,
                    });
                    continue;
                }
            },
        };
        let patient = setting.patients[rng.random_range(0..setting.patients.len())];
        let staff = setting.staff[rng.random_range(0..setting.staff.len())];
        let mut note = None;
        let result = match kind {
            ActionKind::OpenRecord => {
                on!(&mut c, x => sqlx::query(OPEN_RECORD).bind(patient).fetch_all(&mut *x).await.map(|_| ()))
            }
            ActionKind::Caseload => {
                on!(&mut c, x => sqlx::query(CASELOAD).bind(staff).fetch_all(&mut *x).await.map(|_| ()))
            }
            ActionKind::SaveNote => {
                seq += 1;
                let id = notes.next_id.fetch_add(1, Ordering::SeqCst);
                note = Some(id);
                let body = format!(
                    "[{} {} #{id}] {}",
                    super::MARKER,
                    trust.id,
                    NOTE_TEXT[rng.random_range(0..NOTE_TEXT.len())]
                );
                let note_type = NOTE_TYPES[(seq as usize) % NOTE_TYPES.len()];
                let r = on!(&mut c, x => sqlx::query(SAVE_NOTE)
                    .bind(id)
                    .bind(patient)
                    .bind(staff)
                    .bind(note_type)
                    .bind(&body)
                    .execute(&mut *x)
                    .await
                    .map(|_| ()));
                if r.is_ok() {
                    notes.lock().insert(
                        id,
                        Note {
                            body,
                            saved_at_ms: at_ms,
                            seen: Seen::Unchecked,
                        },
                    );
                }
                r
            }
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let error = match result {
            Ok(()) => {
                conn = Some(c);
                None
            }
            Err(e) => {
                if connection_lost(&e) {
                    close(c).await;
                } else {
                    conn = Some(c);
                }
                Some(short(&e))
            }
        };
        let control_ms = match conn.as_mut() {
            Some(c) => control(c).await,
            None => None,
        };
        sink.put(&Record::Action {
            trust: trust.id.clone(),
            kind,
            at_ms,
            ms,
            error,
            note,
            control_ms,
        });
    }
    if let Some(c) = conn {
        close(c).await;
    }
}

/// Run the traffic against `trusts` until `stop` turns true. `ready` is called once every
/// trust's sessions have run for the warm-up time.
pub async fn run(
    trusts: Vec<Trust>,
    settings: Settings,
    sink: Sink,
    stop: watch::Receiver<bool>,
    ready: impl FnOnce(),
) -> Result<(), TrafficError> {
    sink.put(&Record::Started {
        rate: settings.rate,
        sessions: settings.sessions,
        trusts: trusts.iter().map(|t| t.id.clone()).collect(),
        marker: super::MARKER.to_string(),
        seed: settings.seed,
        at_ms: now_ms(),
    });
    let started = Arc::new(tokio::sync::Barrier::new(trusts.len() + 1));
    let mut tasks = Vec::new();
    for (i, t) in trusts.into_iter().enumerate() {
        tasks.push(tokio::spawn(trust_traffic(
            t,
            settings.clone(),
            i as u64,
            sink.clone(),
            stop.clone(),
            started.clone(),
        )));
    }
    let mut waiting = stop.clone();
    tokio::select! {
        _ = started.wait() => {
            tokio::select! {
                _ = tokio::time::sleep(settings.warm_up) => {
                    sink.put(&Record::Ready { at_ms: now_ms() });
                    sink.flush()?;
                    ready();
                }
                _ = waiting.changed() => {}
            }
        }
        _ = waiting.changed() => {}
    }
    for t in tasks {
        let _ = t.await;
    }
    sink.put(&Record::Finished { at_ms: now_ms() });
    sink.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notes(ids: &[i64]) -> TrustNotes {
        let book = ids
            .iter()
            .map(|id| {
                (
                    *id,
                    Note {
                        body: format!("note {id}"),
                        saved_at_ms: 0.0,
                        seen: Seen::Present,
                    },
                )
            })
            .collect();
        TrustNotes {
            trust: "camden".into(),
            next_id: AtomicI64::new(100),
            first_id: 1,
            notes: Mutex::new(book),
        }
    }

    fn records(buf: &Arc<Mutex<Vec<u8>>>) -> Vec<Record> {
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// A writer into a shared buffer, for the sink.
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_note_saved_while_a_read_ran_is_not_taken_for_a_vanished_one() {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink::new(Box::new(Shared(buf.clone())));
        let book = notes(&[1, 2, 3]);
        let known = book.known_in((1, 10));
        // The read finds 1 and 3 (2 is gone); meanwhile 4 is saved and committed after the
        // read's snapshot, so the read could not see it.
        let found: BTreeMap<i64, String> =
            [(1, "note 1".to_string()), (3, "note 3".to_string())].into();
        book.lock().insert(
            4,
            Note {
                body: "note 4".into(),
                saved_at_ms: 0.0,
                seen: Seen::Unchecked,
            },
        );
        book.reconcile(&found, &known, &sink);
        let r = records(&buf);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(matches!(
            r[0],
            Record::Vanished {
                note: 2,
                how: Loss::Missing,
                ..
            }
        ));
        assert_eq!(book.lock()[&4].seen, Seen::Unchecked, "judged next time");
        // 2 comes back, 3 changes.
        let found: BTreeMap<i64, String> = [
            (1, "note 1".to_string()),
            (2, "note 2".to_string()),
            (3, "edited".to_string()),
            (4, "note 4".to_string()),
        ]
        .into();
        let known = book.known_in((1, 10));
        book.reconcile(&found, &known, &sink);
        let r = records(&buf);
        assert!(matches!(r[1], Record::Restored { note: 2, .. }), "{r:?}");
        assert!(
            matches!(
                r[2],
                Record::Vanished {
                    note: 3,
                    how: Loss::Changed,
                    ..
                }
            ),
            "{r:?}"
        );
        assert_eq!(r.len(), 3);
    }
}
