//! Validity of a task spec, as the reducer sees it (the Python domain checks first; this is the
//! line the log may never cross).

use crate::error::{CoreError, Result};
use crate::model::{Backoff, PolicyKind, TaskSpec, NIL_ID};

use super::types::fmt_id;

fn bad(spec: &TaskSpec, what: String) -> CoreError {
    CoreError::Rejected(format!("invalid task spec {}: {what}", fmt_id(&spec.id)))
}

/// Refuses a spec that could not have come from a valid `TaskSpec`.
pub fn validate(spec: &TaskSpec) -> Result<()> {
    if spec.id == NIL_ID {
        return Err(bad(spec, "the task id is nil".into()));
    }
    let c = &spec.shape.constraints;
    if c.max_attempts < 1 {
        return Err(bad(
            spec,
            format!("max_attempts must be >= 1, got {}", c.max_attempts),
        ));
    }
    if let Some(t) = c.timeout_ms {
        if t <= 0 {
            return Err(bad(spec, format!("timeout must be > 0 ms, got {t}")));
        }
    }
    if c.concurrency_key.as_deref() == Some("") {
        return Err(bad(spec, "concurrency_key must not be empty".into()));
    }
    match c.backoff {
        Backoff::None => {}
        Backoff::Fixed { delay_ms } => {
            if delay_ms < 0 {
                return Err(bad(
                    spec,
                    format!("fixed backoff delay must be >= 0, got {delay_ms}"),
                ));
            }
        }
        Backoff::Exponential {
            base_ms,
            cap_ms,
            jitter_ppm,
        } => {
            if base_ms <= 0 || cap_ms < base_ms || jitter_ppm > 1_000_000 {
                return Err(bad(
                    spec,
                    format!(
                        "exponential backoff needs base > 0, cap >= base and jitter <= 1e6 ppm; \
                         got base {base_ms}, cap {cap_ms}, jitter {jitter_ppm}"
                    ),
                ));
            }
        }
    }
    match &spec.shape.policy.kind {
        PolicyKind::Once => {}
        PolicyKind::Repeat { count, interval_ms } => {
            if *count < 1 || *interval_ms <= 0 {
                return Err(bad(
                    spec,
                    format!(
                        "repeat needs count >= 1 and interval > 0, got {count} and {interval_ms}"
                    ),
                ));
            }
        }
        PolicyKind::Cron {
            expression,
            window,
            max_occurrences,
            ..
        } => {
            if expression.trim().is_empty() {
                return Err(bad(spec, "cron expression is empty".into()));
            }
            if *window < 1 {
                return Err(bad(spec, format!("cron window must be >= 1, got {window}")));
            }
            if *max_occurrences == Some(0) {
                return Err(bad(spec, "cron max_occurrences must be >= 1".into()));
            }
        }
    }
    let m = &spec.shape.policy.misfire;
    if m.cap == Some(0) {
        return Err(bad(spec, "misfire cap must be >= 1".into()));
    }
    if let Some(g) = m.grace_ms {
        if g < 0 {
            return Err(bad(spec, format!("misfire grace must be >= 0, got {g}")));
        }
    }
    if spec.dedupe_key.as_deref() == Some("") {
        return Err(bad(spec, "dedupe_key must not be empty".into()));
    }
    Ok(())
}
