//! The `down-does-not-undo-up` check, by rehearsal: on an empty scratch database, for each
//! migration in version order, snapshot the schema, apply its up, apply its down, and compare
//! the schema with the snapshot; then apply the up again and go on to the next migration.
//! The database must be a scratch one: the rehearsal creates and drops whatever the
//! migrations do.

use crate::db::sql::tracking_table;
use std::collections::BTreeSet;

use super::lint::{apply_allows, rules, Finding, Severity};
use super::{Migration, Reversibility};
use crate::db::{DbError, Dialect, TrustDb};

/// How many differences a finding lists before it says "and N more".
const SHOWN: usize = 6;

/// Rehearse every migration's up and down on `db` (an empty scratch database, SQLite or
/// PostgreSQL) and report each down that does not bring the schema back to what it was before
/// its up, and each script that fails. Stops at the first such problem: the migrations after
/// it would be rehearsed on a schema none of them expects. Findings a migration allows are
/// left out. `Err` only when the schema cannot be read.
pub async fn round_trip(
    db: &mut TrustDb,
    migrations: &[Migration],
) -> Result<Vec<Finding>, DbError> {
    round_trip_since(db, migrations, None).await
}

/// [`round_trip`] for the migrations newer than `accepted`: accepted history (at or below it)
/// is only applied, to build the schema the newer migrations start from; its downs are not
/// rehearsed (no one will roll back to it).
pub async fn round_trip_since(
    db: &mut TrustDb,
    migrations: &[Migration],
    accepted: Option<i64>,
) -> Result<Vec<Finding>, DbError> {
    let mut found = Vec::new();
    db.ensure_tracking_table().await?;
    let on = match db.dialect() {
        Dialect::Sqlite => "a scratch SQLite database",
        Dialect::Postgres => "a scratch PostgreSQL database",
    };
    for m in migrations {
        if accepted.is_some_and(|a| m.version <= a) {
            if let Err(e) = db.apply(m, false).await {
                found.push(problem(
                    m,
                    false,
                    rules::REHEARSAL_FAILED,
                    format!(
                        "the up of migration {m} (accepted history) failed on {on}, so the migrations after it cannot be rehearsed: {}",
                        cause(&e)
                    ),
                ));
                break;
            }
            continue;
        }
        let before = snapshot(db).await?;
        if let Err(e) = db.apply(m, false).await {
            found.push(problem(
                m,
                false,
                rules::REHEARSAL_FAILED,
                format!("the up of migration {m} failed on {on}: {}", cause(&e)),
            ));
            break;
        }
        if m.reversibility == Reversibility::Irreversible {
            continue;
        }
        if let Err(e) = db.revert(m).await {
            found.push(problem(
                m,
                true,
                rules::REHEARSAL_FAILED,
                format!(
                    "the down of migration {m} failed on {on} right after its up: {}",
                    cause(&e)
                ),
            ));
            break;
        }
        let after = snapshot(db).await?;
        if after != before {
            found.push(problem(
                m,
                true,
                rules::DOWN_DOES_NOT_UNDO_UP,
                format!(
                    "after the up then the down of migration {m} on {on}, the schema differs from before the up: {}",
                    describe_difference(&before, &after)
                ),
            ));
            break;
        }
        if let Err(e) = db.apply(m, false).await {
            found.push(problem(
                m,
                false,
                rules::REHEARSAL_FAILED,
                format!(
                    "the up of migration {m} failed on {on} when applied again after its down: {}",
                    cause(&e)
                ),
            ));
            break;
        }
    }
    Ok(apply_allows(found, migrations))
}

fn problem(m: &Migration, down: bool, rule: &'static str, message: String) -> Finding {
    let file = if down { &m.down.path } else { &m.up.path };
    Finding {
        file: file.clone(),
        line: 1,
        column: None,
        rule,
        severity: super::lint::find_rule(rule).map_or(Severity::Error, |r| r.severity),
        message,
        table: None,
    }
}

/// The database's own words, without the trust and migration wrapping.
fn cause(e: &DbError) -> String {
    match e {
        DbError::MigrationFailed { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

fn describe_difference(before: &BTreeSet<String>, after: &BTreeSet<String>) -> String {
    let mut items: Vec<String> = after
        .difference(before)
        .map(|s| format!("left behind: {s}"))
        .chain(before.difference(after).map(|s| format!("missing: {s}")))
        .collect();
    let more = items.len().saturating_sub(SHOWN);
    items.truncate(SHOWN);
    let mut text = items.join("; ");
    if more > 0 {
        text.push_str(&format!("; and {more} more"));
    }
    text
}

/// One line per table, column, index, constraint, view, trigger... of the schema, outside
/// flotilla's tracking table. Index and view definitions are compared with their whitespace
/// collapsed and in lower case, so a down that recreates one with other spacing still matches.
pub async fn snapshot(db: &mut TrustDb) -> Result<BTreeSet<String>, DbError> {
    let queries: &[&str] = match db.dialect() {
        Dialect::Sqlite => SQLITE_SNAPSHOT,
        Dialect::Postgres => POSTGRES_SNAPSHOT,
    };
    let mut out = BTreeSet::new();
    for q in queries {
        for row in db.text_rows(q, 1, "reading the schema").await? {
            if let Some(Some(line)) = row.into_iter().next() {
                out.insert(normalise(&line));
            }
        }
    }
    Ok(out)
}

fn normalise(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

const SQLITE_SNAPSHOT: &[&str] = &[
    concat!(
        "SELECT m.type || ' ' || m.name FROM sqlite_master m \
     WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%' \
     AND m.name <> '",
        tracking_table!(),
        "'"
    ),
    concat!(
        "SELECT 'column ' || m.name || '.' || p.name || ' ' || lower(p.type) \
     || CASE WHEN p.\"notnull\" THEN ' not null' ELSE '' END \
     || COALESCE(' default ' || p.dflt_value, '') \
     || CASE WHEN p.pk > 0 THEN ' primary key ' || p.pk ELSE '' END \
     FROM sqlite_master m, pragma_table_info(m.name) p \
     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '",
        tracking_table!(),
        "'"
    ),
    concat!(
        "SELECT 'foreign key ' || m.name || ' (' || f.\"from\" || ') references ' || f.\"table\" \
     || ' (' || COALESCE(f.\"to\", '') || ') on update ' || f.on_update \
     || ' on delete ' || f.on_delete \
     FROM sqlite_master m, pragma_foreign_key_list(m.name) f \
     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '",
        tracking_table!(),
        "'"
    ),
    concat!(
        "SELECT m.type || ' ' || m.name || ' on ' || m.tbl_name || ': ' \
     || COALESCE(m.sql, '(automatic)') FROM sqlite_master m \
     WHERE m.type IN ('index', 'trigger') AND m.tbl_name <> '",
        tracking_table!(),
        "'"
    ),
    "SELECT 'view ' || m.name || ': ' || m.sql FROM sqlite_master m WHERE m.type = 'view'",
];

const POSTGRES_SNAPSHOT: &[&str] = &[
    concat!(
        "SELECT (CASE table_type WHEN 'VIEW' THEN 'view ' ELSE 'table ' END || table_name)::text \
     FROM information_schema.tables \
     WHERE table_schema = current_schema() AND table_name <> '",
        tracking_table!(),
        "'"
    ),
    concat!(
        "SELECT ('column ' || table_name || '.' || column_name || ' ' || data_type \
     || COALESCE('(' || character_maximum_length::text || ')', '') \
     || COALESCE(' precision ' || numeric_precision::text || ',' || numeric_scale::text, '') \
     || CASE WHEN is_nullable = 'NO' THEN ' not null' ELSE '' END \
     || COALESCE(' default ' || column_default, ''))::text \
     FROM information_schema.columns \
     WHERE table_schema = current_schema() AND table_name <> '",
        tracking_table!(),
        "'"
    ),
    concat!(
        "SELECT ('constraint ' || c.conrelid::regclass::text || ' ' || c.conname || ': ' \
     || pg_get_constraintdef(c.oid))::text \
     FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace \
     WHERE n.nspname = current_schema() AND c.conrelid <> 0 \
     AND c.conrelid::regclass::text <> '",
        tracking_table!(),
        "'"
    ),
    concat!(
        "SELECT ('index ' || indexname || ': ' || indexdef)::text FROM pg_indexes \
     WHERE schemaname = current_schema() AND tablename <> '",
        tracking_table!(),
        "'"
    ),
    "SELECT ('view ' || table_name || ': ' || view_definition)::text \
     FROM information_schema.views WHERE table_schema = current_schema()",
    "SELECT ('sequence ' || sequence_name)::text FROM information_schema.sequences \
     WHERE sequence_schema = current_schema()",
    "SELECT ('type ' || t.typname || ': ' \
     || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder))::text \
     FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid \
     JOIN pg_namespace n ON n.oid = t.typnamespace \
     WHERE n.nspname = current_schema() GROUP BY t.typname",
    "SELECT ('function ' || p.oid::regprocedure::text)::text \
     FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
     WHERE n.nspname = current_schema()",
    "SELECT ('trigger ' || t.tgname || ' on ' || t.tgrelid::regclass::text)::text \
     FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE NOT t.tgisinternal AND n.nspname = current_schema()",
];
