//! The policy (pure): a wave's verdicts → the next step. Continue, roll failed trusts (or the
//! whole wave) back and halt, or pause for an operator.

use crate::config::health::OnRegression;
use crate::health::gate::Verdict;

/// The gate's verdict on one trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustVerdict {
    /// The trust.
    pub trust: String,
    /// Its verdict.
    pub verdict: Verdict,
}

impl TrustVerdict {
    /// `trust` judged `verdict`.
    pub fn new(trust: impl Into<String>, verdict: Verdict) -> Self {
        TrustVerdict {
            trust: trust.into(),
            verdict,
        }
    }

    /// Each reason, prefixed with the trust (`t01: reason`).
    pub fn reasons(&self) -> impl Iterator<Item = String> + '_ {
        self.verdict
            .reasons()
            .iter()
            .map(move |r| format!("{}: {r}", self.trust))
    }
}

/// What the engine does after a wave's verdicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Trusts to roll back to their pre-upgrade version, in this order.
    pub rollback: Vec<String>,
    /// What happens after the rollbacks.
    pub then: Next,
}

/// The step after rollbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Carry on with the run.
    Continue,
    /// Stop the run: a regression was found.
    Halt,
    /// Stop and wait for an operator: the gate could not decide (inconclusive or errors).
    Pause,
}

/// Decide from the verdicts of the trusts a wave upgraded.
/// `failed_before` counts failures tolerated earlier in the run against `max_failed_trusts`.
pub fn decide(
    verdicts: &[TrustVerdict],
    policy: OnRegression,
    max_failed_trusts: usize,
    failed_before: usize,
) -> Decision {
    let failed: Vec<String> = verdicts
        .iter()
        .filter(|v| matches!(v.verdict, Verdict::Fail(_)))
        .map(|v| v.trust.clone())
        .collect();
    let undecided = verdicts
        .iter()
        .any(|v| matches!(v.verdict, Verdict::Inconclusive(_) | Verdict::Error(_)));
    let over_limit = failed_before + failed.len() > max_failed_trusts;
    let rollback = match policy {
        OnRegression::Halt => Vec::new(),
        OnRegression::RollbackTrustAndHalt => failed.clone(),
        OnRegression::RollbackWaveAndHalt if over_limit => {
            verdicts.iter().map(|v| v.trust.clone()).collect()
        }
        OnRegression::RollbackWaveAndHalt => failed.clone(),
    };
    // `halt` rolls nothing back, so it tolerates no failure: a failed trust left on the new
    // version must stop the run whatever `max_failed_trusts` says.
    let halts = over_limit || policy == OnRegression::Halt;
    let then = if !failed.is_empty() && halts {
        Next::Halt
    } else if undecided {
        Next::Pause
    } else {
        Next::Continue
    };
    Decision { rollback, then }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(kind: &str) -> Verdict {
        let r = vec!["why".to_string()];
        match kind {
            "pass" => Verdict::Pass,
            "fail" => Verdict::Fail(r),
            "inconclusive" => Verdict::Inconclusive(r),
            _ => Verdict::Error(r),
        }
    }

    fn wave(kinds: &[&str]) -> Vec<TrustVerdict> {
        kinds
            .iter()
            .enumerate()
            .map(|(i, k)| TrustVerdict::new(format!("t{i}"), v(k)))
            .collect()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Every verdict × policy combination, with no tolerated failures.
    #[test]
    fn every_verdict_and_policy_combination() {
        use Next::{Continue, Pause};
        use OnRegression::{RollbackTrustAndHalt, RollbackWaveAndHalt};
        // (verdicts of t0 (and t1 passing), policy, expected rollback, expected next)
        let table: Vec<(&str, OnRegression, Vec<&str>, Next)> = vec![
            ("pass", OnRegression::Halt, vec![], Continue),
            ("pass", RollbackTrustAndHalt, vec![], Continue),
            ("pass", RollbackWaveAndHalt, vec![], Continue),
            ("fail", OnRegression::Halt, vec![], Next::Halt),
            ("fail", RollbackTrustAndHalt, vec!["t0"], Next::Halt),
            ("fail", RollbackWaveAndHalt, vec!["t0", "t1"], Next::Halt),
            ("inconclusive", OnRegression::Halt, vec![], Pause),
            ("inconclusive", RollbackTrustAndHalt, vec![], Pause),
            ("inconclusive", RollbackWaveAndHalt, vec![], Pause),
            ("error", OnRegression::Halt, vec![], Pause),
            ("error", RollbackTrustAndHalt, vec![], Pause),
            ("error", RollbackWaveAndHalt, vec![], Pause),
        ];
        for (kind, policy, rollback, next) in table {
            let d = decide(&wave(&[kind, "pass"]), policy, 0, 0);
            assert_eq!(
                d,
                Decision {
                    rollback: names(&rollback),
                    then: next
                },
                "{kind} under {policy:?}"
            );
        }
    }

    #[test]
    fn tolerated_failures_are_rolled_back_and_the_run_continues() {
        let d = decide(
            &wave(&["fail", "pass", "pass"]),
            OnRegression::RollbackTrustAndHalt,
            1,
            0,
        );
        assert_eq!(
            d,
            Decision {
                rollback: names(&["t0"]),
                then: Next::Continue
            }
        );
        let d = decide(
            &wave(&["fail", "pass"]),
            OnRegression::RollbackWaveAndHalt,
            1,
            0,
        );
        assert_eq!(
            d,
            Decision {
                rollback: names(&["t0"]),
                then: Next::Continue
            }
        );
    }

    #[test]
    fn halt_policy_tolerates_no_failure_because_it_rolls_nothing_back() {
        let d = decide(&wave(&["fail", "pass"]), OnRegression::Halt, 3, 0);
        assert_eq!(
            d,
            Decision {
                rollback: vec![],
                then: Next::Halt
            }
        );
    }

    #[test]
    fn failures_count_across_waves_against_the_limit() {
        let d = decide(
            &wave(&["fail", "pass"]),
            OnRegression::RollbackTrustAndHalt,
            1,
            1,
        );
        assert_eq!(d.then, Next::Halt);
    }

    #[test]
    fn a_failure_outranks_an_inconclusive_trust() {
        let d = decide(
            &wave(&["inconclusive", "fail"]),
            OnRegression::RollbackTrustAndHalt,
            0,
            0,
        );
        assert_eq!(
            d,
            Decision {
                rollback: names(&["t1"]),
                then: Next::Halt
            }
        );
    }

    #[test]
    fn an_empty_wave_continues() {
        assert_eq!(
            decide(&[], OnRegression::Halt, 0, 0),
            Decision {
                rollback: vec![],
                then: Next::Continue
            }
        );
    }
}
