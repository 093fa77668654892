//! The sample estate: every trust of the inventory seeded at a release (5.0 by default) through
//! the real migrations, with deterministic synthetic patients, staff, referrals, appointments,
//! clinical notes, care plans and audit rows. A database is only ever (re)seeded when it is
//! empty or carries the demo marker table: real data is never overwritten.

use std::collections::HashSet;
use std::fmt::Write as _;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{DatabaseTarget, Trust};
use crate::db::{DbError, TrustDb};
use crate::migrations::Catalog;

/// The marker table that says "this database was made by `flotilla demo`".
pub const MARKER_TABLE: &str = "_flotilla_demo";

/// Why a trust could not be seeded.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("trust '{trust}': {target} already holds tables ({tables}) and is not a demo database; flotilla demo never overwrites real data")]
    NotADemoDatabase {
        trust: String,
        target: String,
        tables: String,
    },
    #[error("trust '{trust}': cannot remove the old demo file {path}: {source}")]
    Remove {
        trust: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A fault `demo --inject-regression TRUST:KIND` plants in one trust, through the mechanism a
/// real faulty upgrade would use: a migration of the trust's own (a local customisation) that
/// runs inside the 5.1 upgrade. The gate is never told about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Drops the indexes that opening a patient record relies on.
    Slow,
    /// A trigger (SQLite) or rule (Postgres) that discards newly written clinical notes.
    LostWrites,
    /// A botched "archive old notes" step that moves half the clinical notes out of the table.
    DataLoss,
    /// Saving a note becomes many times slower while reads stay fast: an information-governance
    /// audit trigger that, for every new note, counts the recorded accesses to the records of
    /// the author's progress notes through an unindexed range join.
    SlowWrites,
    /// A fraction of new notes silently lost: a "duplicate note" clean-up trigger that, at
    /// random (not by id), deletes the note it was meant to check. The fraction is in basis
    /// points (2000 = 20%, one note in five).
    FlakyWrites { basis_points: u32 },
    /// Writers serialised: every new note updates one "notes written" counter row, and the
    /// trigger then does some audit work while it holds that row's lock, so concurrent saves
    /// queue behind each other. (On SQLite every writer already takes the database's single
    /// write lock: the fault lengthens the time each save holds it.)
    Contention,
}

/// The default share of notes `flaky-writes` loses: one in five.
pub const DEFAULT_FLAKY_BASIS_POINTS: u32 = 2000;

const KINDS: &str = "slow, lost-writes, data-loss, slow-writes, flaky-writes[=RATE%], contention";

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "slow" => Ok(Fault::Slow),
            "lost-writes" => Ok(Fault::LostWrites),
            "data-loss" => Ok(Fault::DataLoss),
            "slow-writes" => Ok(Fault::SlowWrites),
            "flaky-writes" => Ok(Fault::FlakyWrites {
                basis_points: DEFAULT_FLAKY_BASIS_POINTS,
            }),
            "contention" => Ok(Fault::Contention),
            other => match other.strip_prefix("flaky-writes=") {
                Some(rate) => {
                    let pct = rate
                        .strip_suffix('%')
                        .and_then(|p| p.trim().parse::<f64>().ok())
                        .filter(|p| *p > 0.0 && *p <= 100.0)
                        .ok_or_else(|| {
                            format!("flaky-writes={rate}: the rate must be a percentage between 0% and 100%, e.g. flaky-writes=5%")
                        })?;
                    Ok(Fault::FlakyWrites {
                        basis_points: (pct * 100.0).round().max(1.0) as u32,
                    })
                }
                None => Err(format!(
                    "unknown regression kind '{other}' (known: {KINDS})"
                )),
            },
        }
    }
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Slow => "slow",
            Fault::LostWrites => "lost-writes",
            Fault::DataLoss => "data-loss",
            Fault::SlowWrites => "slow-writes",
            Fault::FlakyWrites { .. } => "flaky-writes",
            Fault::Contention => "contention",
        }
    }

    /// The (up, down) SQL of the faulty local migration for a dialect.
    pub fn migration(self, dialect: crate::db::Dialect) -> (String, String) {
        use crate::db::Dialect;
        let header = match self {
            Fault::FlakyWrites { basis_points } => format!(
                "-- Injected by `flotilla demo --inject-regression`: {} ({}% of new notes lost).\n",
                self.name(),
                f64::from(basis_points) / 100.0
            ),
            _ => format!(
                "-- Injected by `flotilla demo --inject-regression`: {}.\n",
                self.name()
            ),
        };
        let (up, down): (String, String) = match (self, dialect) {
            (Fault::Slow, _) => (
                "DROP INDEX clinical_note_patient_idx;\nDROP INDEX appointment_patient_idx;\nDROP INDEX referral_patient_idx;\n".into(),
                "CREATE INDEX clinical_note_patient_idx ON clinical_note (patient_id, written_at);\n\
                 CREATE INDEX appointment_patient_idx ON appointment (patient_id, starts_at);\n\
                 CREATE INDEX referral_patient_idx ON referral (patient_id);\n".into(),
            ),
            (Fault::LostWrites, Dialect::Sqlite) => (
                "CREATE TRIGGER injected_discard_notes AFTER INSERT ON clinical_note\nBEGIN\n    DELETE FROM clinical_note WHERE id = NEW.id;\nEND;\n".into(),
                "DROP TRIGGER injected_discard_notes;\n".into(),
            ),
            (Fault::LostWrites, Dialect::Postgres) => (
                "CREATE RULE injected_discard_notes AS ON INSERT TO clinical_note DO INSTEAD NOTHING;\n".into(),
                "DROP RULE injected_discard_notes ON clinical_note;\n".into(),
            ),
            (Fault::DataLoss, _) => (
                "CREATE TABLE clinical_note_archive AS SELECT * FROM clinical_note WHERE id % 2 = 0;\n\
                 DELETE FROM clinical_note WHERE id % 2 = 0;\n".into(),
                "INSERT INTO clinical_note SELECT * FROM clinical_note_archive;\nDROP TABLE clinical_note_archive;\n".into(),
            ),
            (Fault::SlowWrites, dialect) => (
                format!(
                    "{AUDIT_TABLE}{}",
                    trigger(
                        dialect,
                        "injected_note_access_audit",
                        &format!("INSERT INTO note_access_audit (note_id, author_id, related_accesses, recorded_at)\n    {}", audit_count("progress")),
                    )
                ),
                format!(
                    "{}DROP TABLE note_access_audit;\n",
                    drop_trigger(dialect, "injected_note_access_audit")
                ),
            ),
            (Fault::FlakyWrites { basis_points }, dialect) => {
                let chance = match dialect {
                    Dialect::Sqlite => format!("abs(random()) % 10000 < {basis_points}"),
                    Dialect::Postgres => format!("random() < {}", f64::from(basis_points) / 10000.0),
                };
                let up = match dialect {
                    Dialect::Sqlite => format!(
                        "CREATE TRIGGER injected_duplicate_note_cleanup AFTER INSERT ON clinical_note\n\
                         WHEN {chance}\nBEGIN\n    DELETE FROM clinical_note WHERE id = NEW.id;\nEND;\n"
                    ),
                    Dialect::Postgres => format!(
                        "CREATE FUNCTION injected_duplicate_note_cleanup() RETURNS trigger LANGUAGE plpgsql AS $$\n\
                         BEGIN\n    IF {chance} THEN\n        DELETE FROM clinical_note WHERE id = NEW.id;\n    END IF;\n    RETURN NULL;\nEND\n$$;\n\
                         CREATE TRIGGER injected_duplicate_note_cleanup AFTER INSERT ON clinical_note\n\
                         FOR EACH ROW EXECUTE FUNCTION injected_duplicate_note_cleanup();\n"
                    ),
                };
                (up, drop_trigger(dialect, "injected_duplicate_note_cleanup"))
            }
            (Fault::Contention, dialect) => (
                format!(
                    "CREATE TABLE note_counter (id BIGINT PRIMARY KEY, notes BIGINT NOT NULL, audited_accesses BIGINT NOT NULL, updated_at TIMESTAMP);\n\
                     INSERT INTO note_counter (id, notes, audited_accesses) VALUES (1, 0, 0);\n{}",
                    trigger(
                        dialect,
                        "injected_note_counter",
                        &format!(
                            "UPDATE note_counter SET notes = notes + 1, updated_at = CURRENT_TIMESTAMP WHERE id = 1;\n    \
                             UPDATE note_counter SET audited_accesses = audited_accesses + ({}) WHERE id = 1",
                            audit_count("discharge").replacen("SELECT NEW.id, NEW.author_id, COUNT(*), CURRENT_TIMESTAMP", "SELECT COUNT(*)", 1)
                        ),
                    )
                ),
                format!(
                    "{}DROP TABLE note_counter;\n",
                    drop_trigger(dialect, "injected_note_counter")
                ),
            ),
        };
        (format!("{header}{up}"), format!("{header}{down}"))
    }
}

const AUDIT_TABLE: &str = "CREATE TABLE note_access_audit (note_id BIGINT NOT NULL, author_id BIGINT NOT NULL, related_accesses BIGINT NOT NULL, recorded_at TIMESTAMP NOT NULL);\n";

/// The audit query: every recorded access to the records that the new note's author wrote
/// `note_type` notes about, joined on a range the indexes cannot serve. `a.entity_id + 0` keeps
/// it that way whatever the planner's statistics say: on the bare column Postgres may scan
/// `audit_log_entity_idx` with `entity_id` as an index condition, and once in a CI run the
/// planted fault slowed writes by only 2 ms (×1.7, passed) instead of the usual 20+ ms.
fn audit_count(note_type: &str) -> String {
    format!(
        "SELECT NEW.id, NEW.author_id, COUNT(*), CURRENT_TIMESTAMP\n    \
         FROM clinical_note n JOIN audit_log a ON a.entity_id + 0 BETWEEN n.patient_id AND n.patient_id\n    \
         WHERE n.author_id = NEW.author_id AND n.note_type = '{note_type}'"
    )
}

/// An AFTER INSERT trigger on clinical_note running `body` (statements separated by `;`).
fn trigger(dialect: crate::db::Dialect, name: &str, body: &str) -> String {
    match dialect {
        crate::db::Dialect::Sqlite => format!(
            "CREATE TRIGGER {name} AFTER INSERT ON clinical_note\nBEGIN\n    {body};\nEND;\n"
        ),
        crate::db::Dialect::Postgres => format!(
            "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n    {body};\n    RETURN NULL;\nEND\n$$;\n\
             CREATE TRIGGER {name} AFTER INSERT ON clinical_note\nFOR EACH ROW EXECUTE FUNCTION {name}();\n"
        ),
    }
}

fn drop_trigger(dialect: crate::db::Dialect, name: &str) -> String {
    match dialect {
        crate::db::Dialect::Sqlite => format!("DROP TRIGGER {name};\n"),
        crate::db::Dialect::Postgres => {
            format!("DROP TRIGGER {name} ON clinical_note;\nDROP FUNCTION {name}();\n")
        }
    }
}

/// The version of an injected local migration: inside release 5.1 (between 0120 and 0130).
pub const FAULT_VERSION: i64 = 125;

/// Remove faults planted by earlier demo runs from every trust's local migrations.
pub fn clear_faults(trusts: &[Trust]) -> std::io::Result<()> {
    for t in trusts {
        let Some(dir) = t.local_migrations.as_ref().filter(|d| d.is_dir()) else {
            continue;
        };
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains("_injected_"))
            {
                std::fs::remove_file(&path)?;
            }
        }
    }
    Ok(())
}

/// Plant a fault as a local migration of `trust`. Returns the up file written.
pub fn plant_fault(trust: &Trust, fault: Fault) -> Result<std::path::PathBuf, String> {
    let dir = trust.local_migrations.as_ref().ok_or_else(|| {
        format!(
            "trust '{}' has no local_migrations directory in the inventory to plant the fault in",
            trust.id
        )
    })?;
    let (up, down) = fault.migration(crate::db::Dialect::of(&trust.database));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let stem = format!(
        "{FAULT_VERSION:04}_injected_{}",
        fault.name().replace('-', "_")
    );
    let up_path = dir.join(format!("{stem}.up.sql"));
    std::fs::write(&up_path, up).map_err(|e| format!("cannot write {}: {e}", up_path.display()))?;
    let down_path = dir.join(format!("{stem}.down.sql"));
    std::fs::write(&down_path, down)
        .map_err(|e| format!("cannot write {}: {e}", down_path.display()))?;
    Ok(up_path)
}

/// Figures for one seeded trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seeded {
    /// Patients inserted.
    pub patients: usize,
    /// Clinical notes inserted.
    pub notes: usize,
    /// Migrations applied to reach the seed release.
    pub migrations: usize,
}

/// Seed one trust: reset it if it is a demo database, migrate it to `version`, fill it.
pub async fn seed_trust(
    trust: &Trust,
    catalog: &Catalog,
    version: i64,
    patients: usize,
) -> Result<Seeded, DemoError> {
    let mut db = open_fresh(trust).await?;
    let result = fill(&mut db, trust, catalog, version, patients).await;
    db.close().await;
    result
}

async fn fill(
    db: &mut TrustDb,
    trust: &Trust,
    catalog: &Catalog,
    version: i64,
    patients: usize,
) -> Result<Seeded, DemoError> {
    db.ensure_tracking_table().await?;
    if db.dialect() == crate::db::Dialect::Postgres {
        enable_pg_stat_statements(db, trust).await;
    }
    let mut migrations = 0;
    for m in catalog.range(None, version) {
        db.apply(m, false).await?;
        migrations += 1;
    }
    db.execute_script(
        &format!(
            "CREATE TABLE {MARKER_TABLE} (seeded_at TEXT NOT NULL, patients BIGINT NOT NULL);
             INSERT INTO {MARKER_TABLE} VALUES (CAST(CURRENT_TIMESTAMP AS TEXT), {patients});"
        ),
        "marking the demo database",
    )
    .await?;
    let data = generate(&trust.id, patients);
    db.execute_script("BEGIN", "seeding").await?;
    for chunk in &data.statements {
        if let Err(e) = db.execute_script(chunk, "seeding synthetic records").await {
            let _ = db.execute_script("ROLLBACK", "seeding").await;
            return Err(e.into());
        }
    }
    db.execute_script("COMMIT", "seeding").await?;
    Ok(Seeded {
        patients,
        notes: data.notes,
        migrations,
    })
}

/// On a demo Postgres database (whose schema the demo creates anyway), create the
/// `pg_stat_statements` extension when the server has its library loaded, so that the gate
/// judges the real workload there too. Without the library, or without the right to create
/// extensions, the demo goes on without it (and the gate says so once per trust).
async fn enable_pg_stat_statements(db: &mut TrustDb, trust: &Trust) {
    let loaded = db
        .query_i64(
            "SELECT COUNT(*) FROM pg_catalog.pg_settings WHERE name = 'pg_stat_statements.max'",
            "looking for pg_stat_statements",
        )
        .await;
    if !matches!(loaded, Ok(n) if n > 0) {
        return;
    }
    if let Err(e) = db
        .execute_script(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
            "creating the pg_stat_statements extension",
        )
        .await
    {
        tracing::info!(trust = %trust.id, error = %e, "pg_stat_statements is loaded but could not be created in the demo database");
    }
}

async fn open_fresh(trust: &Trust) -> Result<TrustDb, DemoError> {
    match &trust.database {
        DatabaseTarget::Sqlite { path } => {
            if path.exists() {
                let mut db = TrustDb::create_sqlite(&trust.id, path).await?;
                let tables = db.table_names().await?;
                db.close().await;
                if !tables.is_empty() {
                    if !tables.iter().any(|t| t == MARKER_TABLE) {
                        return Err(DemoError::NotADemoDatabase {
                            trust: trust.id.clone(),
                            target: trust.database.redacted(),
                            tables: tables.join(", "),
                        });
                    }
                    for suffix in ["", "-journal", "-wal", "-shm"] {
                        let mut name = path.as_os_str().to_os_string();
                        name.push(suffix);
                        let p = std::path::PathBuf::from(name);
                        if p.exists() {
                            std::fs::remove_file(&p).map_err(|source| DemoError::Remove {
                                trust: trust.id.clone(),
                                path: p.clone(),
                                source,
                            })?;
                        }
                    }
                }
            }
            Ok(TrustDb::create_sqlite(&trust.id, path).await?)
        }
        DatabaseTarget::Postgres { .. } => {
            let mut db = TrustDb::connect(trust, crate::db::Access::ReadWrite).await?;
            let tables = db.table_names().await?;
            if !tables.is_empty() {
                if !tables.iter().any(|t| t == MARKER_TABLE) {
                    db.close().await;
                    return Err(DemoError::NotADemoDatabase {
                        trust: trust.id.clone(),
                        target: trust.database.redacted(),
                        tables: tables.join(", "),
                    });
                }
                let drops: String = tables
                    .iter()
                    .map(|t| format!("DROP TABLE IF EXISTS \"{t}\" CASCADE;\n"))
                    .collect();
                db.execute_script(&drops, "resetting the demo database")
                    .await?;
            }
            Ok(db)
        }
    }
}

/// Generated SQL for one trust.
pub struct Generated {
    /// INSERT statements, in dependency order.
    pub statements: Vec<String>,
    /// Number of clinical notes.
    pub notes: usize,
}

const FAMILY: &[&str] = &[
    "Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas",
    "Johnson", "Roberts", "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards", "Hughes",
    "Green", "Hall", "Lewis", "Harris", "Clarke", "Patel", "Khan", "Begum", "Ahmed", "Ali",
    "Okafor", "Mensah", "Nowak", "Kowalski", "Murphy", "O'Brien", "Kelly", "Chen", "Nguyen",
    "Silva", "Santos", "Adeyemi", "Hussain", "Shah", "Singh", "Kaur", "Campbell",
];
const GIVEN: &[&str] = &[
    "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Noah", "Mia", "Jack", "Ivy", "Leo",
    "Lily", "Arthur", "Grace", "Muhammad", "Sophia", "Oscar", "Freya", "Mohammed", "Aisha",
    "Yusuf", "Zara", "Kwame", "Chloe", "Tomasz", "Maria", "Sean", "Siobhan", "Priya", "Ravi",
    "Margaret", "Patricia", "John", "David", "Susan", "Michael",
];
const ROLES: &[&str] = &[
    "nurse",
    "nurse",
    "nurse",
    "psychiatrist",
    "psychologist",
    "social-worker",
    "therapist",
    "admin",
];
const TEAMS: &[&str] = &[
    "Community Mental Health Team",
    "Home Treatment Team",
    "Early Intervention in Psychosis",
    "District Nursing",
    "Children and Young People",
    "Memory Service",
    "Crisis Resolution",
    "Perinatal Mental Health",
];
const SOURCES: &[&str] = &["gp", "gp", "gp", "a-and-e", "self", "police", "school"];
const PRIORITIES: &[&str] = &["routine", "routine", "routine", "urgent", "emergency"];
const REFERRAL_STATUS: &[&str] = &["open", "accepted", "accepted", "discharged", "rejected"];
const LOCATIONS: &[&str] = &["clinic", "home-visit", "phone", "video"];
const APPOINTMENT_STATUS: &[&str] = &[
    "attended",
    "attended",
    "attended",
    "booked",
    "dna",
    "cancelled",
];
const NOTE_TYPES: &[&str] = &[
    "progress",
    "progress",
    "contact",
    "mental-state",
    "risk-assessment",
    "discharge",
];
const NOTE_OPENINGS: &[&str] = &[
    "Seen at home with partner present.",
    "Telephone contact with patient.",
    "Reviewed in clinic.",
    "Joint visit with care coordinator.",
    "Discussed at team meeting.",
    "Video consultation.",
];
const NOTE_FINDINGS: &[&str] = &[
    "Mood reported as low but stable; sleeping better since last review.",
    "Engaging well, attending appointments, taking medication as prescribed.",
    "No thoughts of self-harm expressed; protective factors discussed.",
    "Wound dressing changed; healing well, no signs of infection.",
    "Carer reports increased confusion in the evenings.",
    "Anxiety symptoms improving with CBT techniques practised at home.",
    "Blood pressure 132/84; diabetic foot check completed.",
];
const NOTE_PLANS: &[&str] = &[
    "Plan: review in two weeks.",
    "Plan: continue current care plan.",
    "Plan: refer to psychology for assessment.",
    "Plan: GP to review medication.",
    "Plan: safety plan updated and copy given.",
    "Plan: discharge to GP care.",
];
const POSTCODES: &[&str] = &[
    "NW1", "N1", "E8", "SE1", "W6", "E17", "DA6", "RM9", "EN5", "KT1", "BN1", "SO14", "PO1", "OX4",
    "RG1", "PL1", "BS1", "ME4",
];

fn pick<'a>(rng: &mut ChaCha8Rng, items: &'a [&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

use crate::db::sql::quote_literal as q;

/// A valid NHS number (modulus 11 check digit), unique within `seen`.
fn nhs_number(rng: &mut ChaCha8Rng, seen: &mut HashSet<u64>) -> String {
    loop {
        let digits: Vec<u32> = std::iter::once(rng.random_range(4..=7))
            .chain((0..8).map(|_| rng.random_range(0..=9)))
            .collect();
        let sum: u32 = digits
            .iter()
            .enumerate()
            .map(|(i, d)| d * (10 - i as u32))
            .sum();
        let check = match 11 - (sum % 11) {
            11 => 0,
            10 => continue,
            c => c,
        };
        let number: String = digits
            .iter()
            .chain(std::iter::once(&check))
            .map(|d| char::from(b'0' + *d as u8))
            .collect();
        let Ok(key) = number.parse::<u64>() else {
            continue;
        };
        if seen.insert(key) {
            return number;
        }
    }
}

/// Format an NHS number the way legacy capture left it: mostly bare, often spaced, sometimes dashed.
fn as_captured(rng: &mut ChaCha8Rng, n: &str) -> String {
    match rng.random_range(0..10) {
        0..=5 => n.to_string(),
        6..=8 => format!("{} {} {}", &n[0..3], &n[3..6], &n[6..]),
        _ => format!("{}-{}-{}", &n[0..3], &n[3..6], &n[6..]),
    }
}

fn date(rng: &mut ChaCha8Rng, from_year: i32, to_year: i32) -> String {
    format!(
        "{}-{:02}-{:02}",
        rng.random_range(from_year..=to_year),
        rng.random_range(1..=12),
        rng.random_range(1..=28)
    )
}

fn timestamp(rng: &mut ChaCha8Rng, year: i32) -> String {
    format!(
        "{} {:02}:{:02}:00",
        date(rng, year, year),
        rng.random_range(8..=19),
        rng.random_range(0..4) * 15
    )
}

struct Batcher {
    statements: Vec<String>,
    head: String,
    rows: Vec<String>,
}

impl Batcher {
    const ROWS: usize = 500;

    fn new(head: &str) -> Batcher {
        Batcher {
            statements: Vec::new(),
            head: head.to_string(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, values: String) {
        self.rows.push(values);
        if self.rows.len() == Self::ROWS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.rows.is_empty() {
            return;
        }
        let mut sql = String::with_capacity(self.rows.len() * 120);
        let _ = write!(sql, "{} VALUES ", self.head);
        for (i, r) in self.rows.drain(..).enumerate() {
            if i > 0 {
                sql.push_str(",\n");
            }
            let _ = write!(sql, "({r})");
        }
        sql.push(';');
        self.statements.push(sql);
    }

    fn finish(mut self) -> Vec<String> {
        self.flush();
        self.statements
    }
}

/// Deterministic synthetic records for a trust: the same id and count give the same rows.
pub fn generate(trust_id: &str, patients: usize) -> Generated {
    let seed = trust_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let staff_count = (patients / 40).max(20);
    let mut statements = Vec::new();

    let mut staff = Batcher::new(
        "INSERT INTO staff (id, staff_number, family_name, given_name, role, team, active)",
    );
    for id in 1..=staff_count {
        let values = format!(
            "{id}, {}, {}, {}, {}, {}, {}",
            q(&format!("{}-{id:05}", trust_id.to_ascii_uppercase())),
            q(pick(&mut rng, FAMILY)),
            q(pick(&mut rng, GIVEN)),
            q(pick(&mut rng, ROLES)),
            q(pick(&mut rng, TEAMS)),
            if rng.random_range(0..20) == 0 {
                "FALSE"
            } else {
                "TRUE"
            }
        );
        staff.row(values);
    }
    statements.extend(staff.finish());

    let mut seen = HashSet::new();
    let mut patient = Batcher::new(
        "INSERT INTO patient (id, nhs_number, family_name, given_name, date_of_birth, sex, postcode, gp_practice_code)",
    );
    for id in 1..=patients {
        let n = nhs_number(&mut rng, &mut seen);
        let values = format!(
            "{id}, {}, {}, {}, {}, {}, {}, {}",
            q(&as_captured(&mut rng, &n)),
            q(pick(&mut rng, FAMILY)),
            q(pick(&mut rng, GIVEN)),
            q(&date(&mut rng, 1930, 2010)),
            q(["F", "M", "F", "M", "U"][rng.random_range(0..5)]),
            q(&format!(
                "{} {}{}{}",
                pick(&mut rng, POSTCODES),
                rng.random_range(1..=9),
                char::from(b'A' + rng.random_range(0..26u8)),
                char::from(b'A' + rng.random_range(0..26u8))
            )),
            q(&format!("F{:05}", rng.random_range(80000..90000))),
        );
        patient.row(values);
    }
    statements.extend(patient.finish());

    let staff_id = |rng: &mut ChaCha8Rng| rng.random_range(1..=staff_count);
    let mut referral = Batcher::new(
        "INSERT INTO referral (id, patient_id, team, source, priority, received_on, status)",
    );
    let mut appointment =
        Batcher::new("INSERT INTO appointment (id, patient_id, staff_id, starts_at, duration_minutes, location, status)");
    let mut note = Batcher::new(
        "INSERT INTO clinical_note (id, patient_id, author_id, written_at, note_type, body)",
    );
    let mut care_plan =
        Batcher::new("INSERT INTO care_plan (id, patient_id, care_coordinator_id, starts_on, review_on, cpa_level, summary)");
    let mut audit =
        Batcher::new("INSERT INTO audit_log (id, at, staff_id, action, entity, entity_id)");
    let (mut appointments, mut notes, mut plans, mut audits) = (0, 0, 0, 0);
    for pid in 1..=patients {
        referral.row(format!(
            "{pid}, {pid}, {}, {}, {}, {}, {}",
            q(pick(&mut rng, TEAMS)),
            q(pick(&mut rng, SOURCES)),
            q(pick(&mut rng, PRIORITIES)),
            q(&date(&mut rng, 2022, 2024)),
            q(pick(&mut rng, REFERRAL_STATUS))
        ));
        for _ in 0..3 {
            appointments += 1;
            let values = format!(
                "{appointments}, {pid}, {}, {}, {}, {}, {}",
                staff_id(&mut rng),
                q(&timestamp(&mut rng, 2024)),
                [30, 45, 60][rng.random_range(0..3)],
                q(pick(&mut rng, LOCATIONS)),
                q(pick(&mut rng, APPOINTMENT_STATUS))
            );
            appointment.row(values);
        }
        for _ in 0..3 {
            notes += 1;
            let body = format!(
                "{} {} {}",
                pick(&mut rng, NOTE_OPENINGS),
                pick(&mut rng, NOTE_FINDINGS),
                pick(&mut rng, NOTE_PLANS)
            );
            let values = format!(
                "{notes}, {pid}, {}, {}, {}, {}",
                staff_id(&mut rng),
                q(&timestamp(&mut rng, 2024)),
                q(pick(&mut rng, NOTE_TYPES)),
                q(&body)
            );
            note.row(values);
        }
        if pid % 2 == 0 {
            plans += 1;
            let values = format!(
                "{plans}, {pid}, {}, {}, {}, {}, {}",
                staff_id(&mut rng),
                q(&date(&mut rng, 2023, 2023)),
                q(&date(&mut rng, 2025, 2025)),
                q(["standard", "standard", "enhanced"][rng.random_range(0..3)]),
                q("Care Programme Approach plan: goals, crisis contacts and relapse indicators agreed with the patient.")
            );
            care_plan.row(values);
        }
        for _ in 0..2 {
            audits += 1;
            let values = format!(
                "{audits}, {}, {}, {}, 'patient', {pid}",
                q(&timestamp(&mut rng, 2024)),
                staff_id(&mut rng),
                q(["view", "view", "view", "update", "create", "print"][rng.random_range(0..6)])
            );
            audit.row(values);
        }
    }
    for b in [referral, appointment, note, care_plan, audit] {
        statements.extend(b.finish());
    }
    Generated { statements, notes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_per_trust() {
        let a = generate("camden", 50);
        let b = generate("camden", 50);
        let c = generate("islington", 50);
        assert_eq!(a.statements, b.statements);
        assert_ne!(a.statements, c.statements);
        assert_eq!(a.notes, 150);
    }

    #[test]
    fn nhs_numbers_carry_a_valid_modulus_11_check_digit_and_are_unique() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut seen = HashSet::new();
        for _ in 0..2000 {
            let n = nhs_number(&mut rng, &mut seen);
            assert_eq!(n.len(), 10);
            let d: Vec<u32> = n.chars().map(|c| c.to_digit(10).unwrap()).collect();
            let sum: u32 = d[..9]
                .iter()
                .enumerate()
                .map(|(i, x)| x * (10 - i as u32))
                .sum();
            let check = (11 - sum % 11) % 11;
            assert_eq!(check, d[9], "{n}");
        }
        assert_eq!(seen.len(), 2000);
    }

    #[test]
    fn some_nhs_numbers_are_captured_with_spaces_or_dashes() {
        let g = generate("barnet", 200);
        let patients: String = g
            .statements
            .iter()
            .filter(|s| s.starts_with("INSERT INTO patient"))
            .cloned()
            .collect();
        assert!(has_grouped(&patients, b' '), "no spaced NHS numbers");
        assert!(has_grouped(&patients, b'-'), "no dashed NHS numbers");
    }

    /// Three digits, the separator, three digits: "943 476" or "943-476".
    fn has_grouped(s: &str, sep: u8) -> bool {
        s.as_bytes().windows(7).any(|w| {
            w[..3].iter().all(u8::is_ascii_digit)
                && w[3] == sep
                && w[4..].iter().all(u8::is_ascii_digit)
        })
    }
}
