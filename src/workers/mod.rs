//! Workers: running a rollout's work on trust databases from other processes and machines,
//! coordinated through the shared PostgreSQL state database (issue 15).
//!
//! `flotilla worker --state postgres://...` registers itself (`flotilla_workers`: name, labels,
//! heartbeat), claims jobs from `flotilla_jobs` with `FOR UPDATE SKIP LOCKED` (only jobs whose
//! trust's `runner` labels its own labels contain), runs each with an engine built for the
//! job's run from its own checkout (after checking the run's plan and migrations checksums
//! against it), writes the job's events into the run's journal itself (each naming the
//! worker; sequence numbers shared across processes), and records the job's result.
//!
//! `rollout PLAN --state postgres://... --workers` is the coordinator: the same engine and
//! session as any rollout (lease, plan, approvals, policy, soak timing), with a
//! [`coordinator::Coordinator`] as the engine's `remote`: every piece of work on a trust
//! database becomes a job (`crate::engine::jobs`), and the coordinator waits for its result
//! (polling every [`coordinator::POLL`]). Before preflight and before each wave it checks that
//! a live worker can reach every trust it is about to touch.
//!
//! Faults: a worker heartbeats every second (`--ttl`, 10 s by default, is how long its claims
//! last without one); when it dies its claims expire and its jobs go back to the queue
//! (`tries + 1`), where another worker picks them up and continues each trust from its real
//! state (its tracking table, under the trust's advisory lock). A coordinator that dies is
//! resumed with `flotilla resume`: the new attempt cancels the old one's queued jobs, waits
//! for the claimed ones to end (or to be reclaimed and cancelled), and goes on with the
//! workers still attached.
//!
//! A worker that takes over a job whose worker died first settles what that worker left open
//! on the trust, exactly as `resume` does (`crate::unfinished::reconcile_trust`: its intent
//! from the tracking table, a write probe's records removed), so the journal records every
//! migration once.
//!
//! What stays on the coordinator: an interrupt (Ctrl-C) cancels the jobs not yet claimed; the
//! claimed ones run to their end on their workers (a trust's migrations are not stopped
//! between two of them as they are without workers). `resume` settles a crashed attempt's
//! open steps by reading the trusts from the coordinator's own machine, as without workers.
//!
//! queue.rs (the SQL of both tables), coordinator.rs (the engine's `Dispatch`), worker.rs
//! (the worker process's loop).

pub mod coordinator;
pub mod queue;
pub mod worker;
