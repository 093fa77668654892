//! The traffic's report, kept in the state database under the run's id (table
//! `flotilla_traffic`), so that `flotilla report RUN` shows the clinicians' experience of a
//! past run beside the gate's verdicts.

use super::experience::TrafficReport;
use crate::journal::store::on_pool;
use crate::journal::{now, StateDb, StateError};

/// Keep `report` as the traffic of `run_id` (replacing any earlier one).
pub async fn save(state: &StateDb, run_id: &str, report: &TrafficReport) -> Result<(), StateError> {
    let body = serde_json::to_string(report).map_err(|e| state.invalid(e.to_string()))?;
    on_pool!(&state.pool, p =>
        sqlx::query("INSERT INTO flotilla_traffic (run_id, recorded_at, body) VALUES ($1, $2, $3) ON CONFLICT (run_id) DO UPDATE SET recorded_at = excluded.recorded_at, body = excluded.body")
            .bind(run_id).bind(now()).bind(body).execute(p).await.map(|_| ()))
    .map_err(|e| state.err(e))
}

/// The traffic of `run_id`, if it had any.
pub async fn load(state: &StateDb, run_id: &str) -> Result<Option<TrafficReport>, StateError> {
    let body: Option<String> = on_pool!(&state.pool, p =>
        sqlx::query_scalar("SELECT body FROM flotilla_traffic WHERE run_id = $1")
            .bind(run_id).fetch_optional(p).await)
    .map_err(|e| state.err(e))?;
    body.map(|b| {
        serde_json::from_str(&b)
            .map_err(|e| state.invalid(format!("run {run_id}: its traffic record: {e}")))
    })
    .transpose()
}
