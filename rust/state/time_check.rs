//! Times in events are milliseconds since the Unix epoch, never negative: the rule the Python
//! commands enforce (`0..i64::MAX`), so every event the reducer accepts can be rebuilt with
//! `MutationCommand.from_wire`.
//!
//! Checked for new records (dry run, apply, tentative apply) before any handler runs; not on
//! recovery's replay, so a log written before this rule still opens (`docs/DESIGN.md`,
//! reducer rules).

use crate::error::{CoreError, Result};
use crate::event::Event;
use crate::model::Millis;

fn field(kind: &str, name: &str, v: Millis) -> Result<()> {
    if v < 0 {
        return Err(CoreError::InvalidArgument(format!(
            "{kind}.{name} must be milliseconds since the Unix epoch in 0..{}, got {v} \
             (negative times are refused)",
            i64::MAX
        )));
    }
    Ok(())
}

/// Refuses an event holding a negative time, naming the event kind and the field.
pub(crate) fn check(ev: &Event) -> Result<()> {
    let k = ev.kind();
    match ev {
        Event::TaskCreate { origin, .. } => field(k, "origin", *origin)?,
        Event::RunCreate { scheduled_at, .. } => field(k, "scheduled_at", *scheduled_at)?,
        Event::RunTransition {
            not_before: Some(nb),
            ..
        } => field(k, "not_before", *nb)?,
        Event::LeaseAcquire { expires_at, .. } | Event::LeaseHeartbeat { expires_at, .. } => {
            field(k, "expires_at", *expires_at)?;
        }
        Event::Prune { before, .. } => field(k, "before", *before)?,
        Event::RunTransition { .. }
        | Event::AttemptStart { .. }
        | Event::AttemptFinish { .. }
        | Event::LeaseExpire { .. }
        | Event::LeaseRelease { .. }
        | Event::TaskCancel { .. }
        | Event::EnginePause { .. }
        | Event::EngineResume { .. } => {}
    }
    field(k, "at", ev.at())
}

/// [`check`] for every event of a record; the error says which event.
pub(crate) fn check_all(events: &[Event]) -> Result<()> {
    let n = events.len();
    for (i, ev) in events.iter().enumerate() {
        check(ev).map_err(|e| match e {
            CoreError::InvalidArgument(m) if n > 1 => {
                CoreError::InvalidArgument(format!("event {i} of {n}: {m}"))
            }
            e => e,
        })?;
    }
    Ok(())
}
