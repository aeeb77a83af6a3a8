"""``why``: explain, from durable state alone, why a run is not running right now.

The answer is derived the way the engine decides (docs/engine.md): terminal runs are done;
Scheduled and RetryWait runs wait for a time (and for promotion, which pause stops); Ready runs
wait for the pause to end, for their concurrency key (held, or due to another Ready run of the
key first), or for a worker; Leased/Running runs are held by a lease owner until it expires.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from actionqueue.cli.render import ago, fmt_ms
from actionqueue.cli.store import ReadView
from actionqueue.core.ids import RunId
from actionqueue.core.run.run_instance import RunInstance
from actionqueue.core.run.state import RunState
from actionqueue.core.task.constraints import HoldPolicy
from actionqueue.engine.ports import task_is_finished

__all__ = ["Explanation", "explain"]


@dataclass(frozen=True, slots=True)
class Explanation:
    """``reason`` is a stable code (for ``--json`` users); ``text`` is for people."""

    run_id: str
    state: str
    reason: str
    text: str
    until: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _last_reason(run: RunInstance) -> str | None:
    return run.history[-1].reason if run.history else None


def _last_error(run: RunInstance) -> str | None:
    for a in reversed(run.attempts):
        if a.error:
            return a.error.split("\n", 1)[0]
    return None


def _ready_position(
    view: ReadView, run: RunInstance, key: str | None
) -> tuple[int | None, bytes | None]:
    """1-based position among the Ready runs the engine would hand out now (held keys skipped),
    and — when ``run`` is not among them — the Ready run of the same ``key`` that is (the
    key's next run: one ahead in selection order, or a due retry that kept the key under
    ``hold_during_retry``)."""
    ahead: bytes | None = None
    for i, cand in enumerate(view.state.ready_candidates(10_000), 1):
        if cand[0] == run.run_id.bytes:
            return i, None
        if key is not None and cand[5] == key:
            ahead = cand[0]
    return None, ahead


def explain(view: ReadView, run: RunInstance, now: int) -> Explanation:
    """Why ``run`` is not running at ``now`` (ms)."""
    q = view.state
    rec = q.get_task(run.task_id)
    spec = rec.spec if rec is not None else None
    max_attempts = spec.constraints.max_attempts if spec else None
    paused = q.is_paused
    st = run.state
    rid = str(run.run_id)

    # A cron task read from a log written elsewhere may name a zone this machine lacks: its
    # runs run, but no new ones are derived here (CronPolicy.unresolved).
    stalled = (
        spec.run_policy.unresolved
        if spec is not None
        and rec is not None
        and rec.canceled_at is None
        and not task_is_finished(rec)
        else None
    )

    def out(reason: str, text: str, until: int | None = None, **details: Any) -> Explanation:
        if stalled is not None:
            text += (" " if text.endswith(".") else ". ") + (
                f"Its cron task derives no further runs on this machine: {stalled}"
            )
            details["unresolved"] = stalled
        return Explanation(rid, st.label, reason, text, until, details)

    if st is RunState.COMPLETED:
        return out(
            "completed",
            f"completed at {fmt_ms(run.last_state_change_at)} after {run.attempt_count} "
            f"attempt(s); it will never run again",
        )
    if st is RunState.FAILED:
        err = _last_error(run)
        why = _last_reason(run)
        text = (
            f"failed at {fmt_ms(run.last_state_change_at)} after {run.attempt_count} of "
            f"{max_attempts} attempt(s)"
        )
        if err:
            text += f"; last error: {err}"
        elif why:
            text += f"; {why}"
        return out("failed", text + ". Failed is final: submit a new task to try again", error=err)
    if st is RunState.CANCELED:
        why = _last_reason(run) or "canceled"
        return out("canceled", f"canceled at {fmt_ms(run.last_state_change_at)}: {why}", cause=why)
    pause_note = (
        " The engine is paused, so nothing is promoted or leased until `actionqueue resume`."
    )
    if st is RunState.SCHEDULED:
        if run.scheduled_at > now:
            text = f"scheduled for {ago(run.scheduled_at, now)}."
            return out("scheduled", text + (pause_note if paused else ""), run.scheduled_at)
        if paused:
            return out("paused", f"due since {ago(run.scheduled_at, now)}." + pause_note)
        return out(
            "due",
            f"due since {ago(run.scheduled_at, now)}; the next scheduler tick of the process "
            "running the queue makes it Ready (none may be running)",
        )
    if st is RunState.RETRY_WAIT:
        err = _last_error(run)
        tried = f"attempt {run.attempt_count} of {max_attempts} failed" + (
            f" ({err})" if err else ""
        )
        nb = run.not_before
        if nb is not None and nb > now:
            return out(
                "backoff",
                f"{tried}; waiting for backoff until {ago(nb, now)}."
                + (pause_note if paused else "")
                + " `actionqueue retry` skips the wait",
                nb,
                error=err,
            )
        if paused:
            return out("paused", f"{tried}; backoff over." + pause_note, error=err)
        return out(
            "due",
            f"{tried}; backoff over since {ago(nb, now)}: the next scheduler tick makes it Ready",
            error=err,
        )
    if st is RunState.SUSPENDED:
        return out(
            "suspended",
            f"suspended at {fmt_ms(run.last_state_change_at)}"
            + (f" ({_last_reason(run)})" if _last_reason(run) else "")
            + "; `actionqueue retry RUN_ID` makes it Ready again",
        )
    if st in (RunState.LEASED, RunState.RUNNING):
        lease = run.lease
        doing = "running" if st is RunState.RUNNING else "leased (about to start)"
        if lease is None:
            return out(
                "lease_missing",
                f"{doing} without a lease (a crash between records): the next open of the "
                "queue records the attempt as Lost and retries it",
            )
        if lease.expires_at <= now:
            return out(
                "lease_expired",
                f"{doing}, but the lease of {lease.owner} expired at "
                f"{ago(lease.expires_at, now)}: the owner is gone or stuck; the next expiry "
                "sweep records the attempt as Lost and retries it while attempts remain",
                lease.expires_at,
                owner=lease.owner,
            )
        open_att = run.open_attempt
        since = f" since {ago(open_att.started_at, now)}" if open_att is not None else ""
        return out(
            "leased",
            f"{doing}{since}: attempt {run.attempt_count} of {max_attempts}, leased by "
            f"{lease.owner} until {ago(lease.expires_at, now)} (renewed while the owner is alive)",
            lease.expires_at,
            owner=lease.owner,
        )
    # Ready
    if paused:
        return out(
            "paused",
            "ready, but the engine is paused: nothing is leased until `actionqueue resume`",
        )
    key = spec.constraints.concurrency_key if spec else None
    if key is not None:
        holder = q.key_holder(key)
        if holder is not None and holder != run.run_id.bytes:
            hrun = q.get_run(RunId.from_bytes(holder))
            hstate = hrun.state.label if hrun is not None else "?"
            hold = ""
            # A waiting run holds a key only under its own hold_during_retry (the asking
            # run's policy says nothing about it).
            if hrun is not None and hrun.state in (RunState.RETRY_WAIT, RunState.SUSPENDED):
                hold = " (it keeps the key while it waits: hold_during_retry)"
            return out(
                "key_held",
                f"ready, but concurrency key {key!r} is held by run "
                f"{RunId.from_bytes(holder)} ({hstate}){hold}",
                key=key,
                holder=str(RunId.from_bytes(holder)),
            )
    pos, ahead = _ready_position(view, run, key)
    if ahead is not None:
        arun = q.get_run(RunId.from_bytes(ahead))
        retry = ""
        arec = q.get_task(arun.task_id) if arun is not None else None
        if (
            arun is not None
            and arun.history
            and arun.history[-1].from_state in (RunState.RETRY_WAIT, RunState.SUSPENDED)
            and arec is not None
            and arec.spec.constraints.hold_policy is HoldPolicy.HOLD_DURING_RETRY
        ):
            retry = " (a retry that kept the key: hold_during_retry)"
        return out(
            "key_next",
            f"ready, but run {RunId.from_bytes(ahead)} goes first on concurrency key {key!r}"
            f"{retry}; this run is leased after it",
            key=key,
            ahead=str(RunId.from_bytes(ahead)),
        )
    where = f" (position {pos} in the ready queue)" if pos is not None else ""
    return out(
        "ready",
        f"ready — waiting for a worker{where}; runs go by priority "
        f"({run.effective_priority}), then due time, then creation order",
        position=pos,
    )
