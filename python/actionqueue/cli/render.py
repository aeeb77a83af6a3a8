"""Turning tasks, runs and events into plain dicts (for ``--json``) and short text (for tables).

JSON conventions: ids are hyphenated UUID strings, times are integer milliseconds since the
Unix epoch (UTC, as stored) with an ``*_iso`` twin where a human reads them, bytes are base64
(``{"base64": ...}``) unless ``--bytes hex`` was asked for.

Text for people: anything that comes from the data or the user (handler names, errors, reasons,
keys, tags, paths) goes to rich as :func:`plain` text — never parsed as markup — with its
control characters escaped by :func:`printable`.
"""

from __future__ import annotations

import base64
import json
import unicodedata
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import click
from rich.text import Text

from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.core.run.run_instance import RunInstance
from actionqueue.core.run.state import RunState
from actionqueue.core.task.constraints import ExponentialBackoff, FixedBackoff
from actionqueue.core.task.run_policy import CronPolicy, RepeatPolicy, RunPolicy
from actionqueue.core.task.task_spec import TaskSpec
from actionqueue.storage._queries import TaskRecord

__all__ = [
    "ago",
    "bytes_value",
    "echo_json",
    "event_to_dict",
    "fmt_ms",
    "fmt_short",
    "plain",
    "policy_text",
    "printable",
    "run_to_dict",
    "short",
    "spec_to_dict",
    "task_to_dict",
]

_EVENT_KINDS = (
    "TaskCreate",
    "RunCreate",
    "RunTransition",
    "AttemptStart",
    "AttemptFinish",
    "LeaseAcquire",
    "LeaseHeartbeat",
    "LeaseExpire",
    "LeaseRelease",
    "TaskCancel",
    "EnginePause",
    "EngineResume",
    "Prune",
)

# Field names per event tag, in wire order after the tag (docs/DESIGN.md, "Wire tuples").
_EVENT_FIELDS: dict[int, tuple[str, ...]] = {
    0: ("spec", "origin", "at"),
    1: ("run_id", "task_id", "ordinal", "scheduled_at", "at"),
    2: ("run_id", "from_state", "to_state", "not_before", "reason", "at"),
    3: ("run_id", "attempt_id", "at"),
    4: ("run_id", "attempt_id", "outcome", "error", "output", "at"),
    5: ("run_id", "owner", "expires_at", "at"),
    6: ("run_id", "owner", "expires_at", "at"),
    7: ("run_id", "owner", "at"),
    8: ("run_id", "owner", "at"),
    9: ("task_id", "reason", "at"),
    10: ("at",),
    11: ("at",),
    12: ("before", "at"),
}
_ID_FIELDS = {"run_id", "task_id", "attempt_id"}


#: Characters shown escaped: controls (an ANSI escape sequence, a carriage return, a
#: backspace: they act on the terminal), format characters (a bidi override reorders the rest
#: of the line; zero-width ones hide text), line and paragraph separators, lone surrogates.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def printable(text: str) -> str:
    """``text`` with every character of :data:`_ESCAPED_CATEGORIES` written as its Python
    escape (``\x1b``, ``\n``, ``\u202e``): what the data holds is shown, and cannot move the
    cursor, recolour the terminal or forge a line. ``--json`` output keeps the exact text."""
    if text.isprintable():  # nearly always: one C pass, no copy
        return text
    return "".join(_escaped(ch) for ch in text)


def _escaped(ch: str) -> str:
    if unicodedata.category(ch) in _ESCAPED_CATEGORIES:
        return ch.encode("unicode_escape", "backslashreplace").decode("ascii")
    return ch  # printable, or a space other than " " (a no-break space): shown as it is


def plain(text: str, style: str = "") -> Text:
    """User or data text for rich: a ``Text`` is shown as it is, never parsed as markup
    (``[red]`` would style, ``[/]`` raises ``MarkupError``) or emoji codes (``:x:``), and
    :func:`printable` escapes its control characters."""
    return Text(printable(text), style=style)


def short(ident: object) -> str:
    """The first 8 hex digits of an id: enough for tables (the CLI accepts unique prefixes)."""
    return str(ident)[:8]


def _utc(ms: int) -> datetime | None:
    """The UTC ``datetime`` of ``ms``, or ``None`` past what a ``datetime`` holds (year 9999):
    a log may hold such times (``submit(at=...)`` in epoch seconds, a retry backoff of
    centuries, which the core saturates at 2**63 - 1 ms), and showing them must not fail."""
    try:
        return datetime.fromtimestamp(ms / 1000, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _beyond(ms: int) -> str:
    return f"{ms} ms (after year 9999)" if ms > 0 else f"{ms} ms (before year 1)"


def fmt_ms(ms: int | None) -> str:
    """``2026-11-22 10:04:23.123Z`` (UTC), or ``-``."""
    if ms is None:
        return "-"
    dt = _utc(ms)
    if dt is None:
        return _beyond(ms)
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{ms % 1000:03d}Z"


def fmt_short(ms: int | None) -> str:
    """``11-22 10:04:23`` (UTC) for tables, or ``-``."""
    if ms is None:
        return "-"
    dt = _utc(ms)
    return _beyond(ms) if dt is None else dt.strftime("%m-%d %H:%M:%S")


def iso(ms: int | None) -> str | None:
    """ISO 8601 (UTC), or ``None`` when there is no time or it is past what ISO dates with
    four-digit years hold (the integer milliseconds beside it still say when)."""
    if ms is None:
        return None
    dt = _utc(ms)
    return None if dt is None else dt.isoformat(timespec="milliseconds")


def duration(ms: int) -> str:
    """``850ms``, ``3.2s``, ``4m 10s``, ``2h 5m``, ``3d 4h``."""
    ms = abs(ms)
    if ms < 1000:
        return f"{ms}ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m {sec}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h {m}m"
    d, h = divmod(h, 24)
    return f"{d}d {h}h"


def ago(ms: int | None, now: int) -> str:
    """``fmt_ms`` plus ``(in 3.0s)`` / ``(5m 2s ago)``."""
    if ms is None:
        return "-"
    delta = ms - now
    rel = (
        "now"
        if delta == 0
        else (f"in {duration(delta)}" if delta > 0 else f"{duration(delta)} ago")
    )
    return f"{fmt_ms(ms)} ({rel})"


def bytes_value(data: bytes | None, encoding: str = "base64") -> dict[str, Any] | None:
    if data is None:
        return None
    if encoding == "hex":
        return {"hex": data.hex(), "len": len(data)}
    return {"base64": base64.b64encode(data).decode("ascii"), "len": len(data)}


def policy_text(policy: RunPolicy) -> str:
    """``once``, ``repeat 3 x every 500ms``, ``cron '*/5 * * * *' UTC (max 10)``."""
    if isinstance(policy, RepeatPolicy):
        return f"repeat {policy.count} x every {duration(policy.interval_ms)}"
    if isinstance(policy, CronPolicy):
        cap = "" if policy.max_occurrences is None else f" (max {policy.max_occurrences})"
        return f"cron '{policy.expression}' {policy.timezone}{cap}"
    return "once"


def _policy_dict(policy: RunPolicy) -> dict[str, Any]:
    m = policy.misfire
    misfire = {"kind": m.kind.name.lower(), "cap": m.cap, "grace_ms": m.grace_ms}
    if isinstance(policy, RepeatPolicy):
        return {
            "kind": "repeat",
            "count": policy.count,
            "interval_ms": policy.interval_ms,
            "misfire": misfire,
        }
    if isinstance(policy, CronPolicy):
        return {
            "kind": "cron",
            "expression": policy.expression,
            "timezone": policy.timezone,
            "max_occurrences": policy.max_occurrences,
            "window": policy.window,
            "misfire": misfire,
            # Why this machine cannot compute its occurrences (a zone its tzdata lacks), or None.
            "unresolved": policy.unresolved,
        }
    return {"kind": "once", "misfire": misfire}


def backoff_text(spec: TaskSpec) -> str:
    b = spec.constraints.retry
    if isinstance(b, FixedBackoff):
        return f"fixed {duration(b.delay_ms)}"
    if isinstance(b, ExponentialBackoff):
        j = f", jitter {b.jitter:g}" if b.jitter_ppm else ""
        return f"exponential {duration(b.base_ms)}..{duration(b.cap_ms)}{j}"
    return "none"


def _backoff_dict(spec: TaskSpec) -> dict[str, Any]:
    b = spec.constraints.retry
    if isinstance(b, FixedBackoff):
        return {"kind": "fixed", "delay_ms": b.delay_ms}
    if isinstance(b, ExponentialBackoff):
        return {
            "kind": "exponential",
            "base_ms": b.base_ms,
            "cap_ms": b.cap_ms,
            "jitter": b.jitter,
        }
    return {"kind": "none"}


def spec_to_dict(spec: TaskSpec, encoding: str = "base64") -> dict[str, Any]:
    c = spec.constraints
    return {
        "task_id": str(spec.task_id),
        "handler": spec.handler,
        "payload": bytes_value(spec.payload.data, encoding),
        "content_type": spec.payload.content_type,
        "policy": _policy_dict(spec.run_policy),
        "constraints": {
            "max_attempts": c.max_attempts,
            "timeout_ms": c.timeout_ms,
            "concurrency_key": c.concurrency_key,
            "hold_policy": c.hold_policy.name.lower(),
            "backoff": _backoff_dict(spec),
            "retry_on": {
                "timeout": c.retry_on.timeout,
                "lost": c.retry_on.lost,
                "terminal_errors": list(c.retry_on.terminal_errors),
            },
        },
        "metadata": {
            "priority": spec.metadata.priority,
            "tags": list(spec.metadata.tags),
            "description": spec.metadata.description,
        },
        "dedupe_key": spec.dedupe_key,
    }


def task_to_dict(
    rec: TaskRecord, runs: list[RunInstance] | None = None, encoding: str = "base64"
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "task_id": str(rec.task_id),
        "handler": rec.spec.handler,
        "policy": policy_text(rec.spec.run_policy),
        "created_at": rec.created_at,
        "created_at_iso": iso(rec.created_at),
        "origin": rec.origin,
        "canceled_at": rec.canceled_at,
        "runs_derived": rec.derived,
        "runs_unfinished": rec.non_terminal,
        "spec": spec_to_dict(rec.spec, encoding),
    }
    if runs is not None:
        by_state: dict[str, int] = {}
        for r in runs:
            by_state[r.state.label] = by_state.get(r.state.label, 0) + 1
        out["runs_by_state"] = by_state
        out["attempts"] = sum(len(r.attempts) for r in runs)
    return out


def run_to_dict(run: RunInstance, encoding: str = "base64") -> dict[str, Any]:
    return {
        "run_id": str(run.run_id),
        "task_id": str(run.task_id),
        "state": run.state.label,
        "ordinal": run.ordinal,
        "scheduled_at": run.scheduled_at,
        "scheduled_at_iso": iso(run.scheduled_at),
        "created_at": run.created_at,
        "last_state_change_at": run.last_state_change_at,
        "attempt_count": run.attempt_count,
        "current_attempt": None if run.current_attempt is None else str(run.current_attempt),
        "effective_priority": run.effective_priority,
        "not_before": run.not_before,
        "lease": None
        if run.lease is None
        else {"owner": run.lease.owner, "expires_at": run.lease.expires_at},
        "history": [
            {
                "from": None if h.from_state is None else h.from_state.label,
                "to": h.to_state.label,
                "at": h.at,
                "reason": h.reason,
            }
            for h in run.history
        ],
        "attempts": [
            {
                "attempt_id": str(a.attempt_id),
                "started_at": a.started_at,
                "finished_at": a.finished_at,
                "outcome": None if a.outcome is None else a.outcome.label,
                "error": a.error,
                "output": bytes_value(a.output, encoding),
            }
            for a in run.attempts
        ],
    }


def _plain(value: Any, key: str, encoding: str) -> Any:
    """A wire value made JSON-friendly: ids to UUID text, bytes to base64/hex."""
    if isinstance(value, (bytes, bytearray)):
        if key in _ID_FIELDS and len(value) == 16:
            return str(uuid.UUID(bytes=bytes(value)))
        return bytes_value(bytes(value), encoding)
    return value


def event_to_dict(
    sequence: int, segment: str, offset: int, event: tuple[Any, ...], encoding: str = "base64"
) -> dict[str, Any]:
    """One WAL event as a JSON-ready dict (``wal dump``)."""
    tag = event[0]
    kind = _EVENT_KINDS[tag] if 0 <= tag < len(_EVENT_KINDS) else f"Unknown{tag}"
    out: dict[str, Any] = {"sequence": sequence, "segment": segment, "offset": offset, "kind": kind}
    names = _EVENT_FIELDS.get(tag, tuple(f"field{i}" for i in range(1, len(event))))
    for name, value in zip(names, event[1:], strict=False):
        if name == "spec":
            out[name] = spec_to_dict(TaskSpec.from_wire(value), encoding)
        elif name in ("from_state", "to_state"):
            out[name] = RunState.from_wire(value).label
        elif name == "outcome":
            out[name] = AttemptOutcome(value).label
        else:
            out[name] = _plain(value, name, encoding)
    return out


def echo_json(value: Any) -> None:
    """Pretty JSON for a listing (stdout)."""
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))


def counts_dict(counts: Mapping[RunState, int]) -> dict[str, int]:
    return {s.label: n for s, n in counts.items()}
