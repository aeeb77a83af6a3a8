"""Run derivation: the Scheduled runs a task's run policy implies (SPEC §8, contract 1).

:func:`derive_runs` is pure: it reads the injected clock once (for ``created_at``), draws new
:class:`~actionqueue.core.ids.RunId` s, and returns a :class:`DerivationResult`. It never
derives more runs than the policy implies, and it either returns the whole batch or raises
(:class:`~actionqueue.errors.DerivationError`): there are no partial batches. Turning a result
into commands (:func:`run_create_commands`, :func:`plan_task_create`) gives one atomic batch —
a task and its first runs are one WAL record (SPEC §11.7).

The seed's example, in Python:

>>> from actionqueue.core import RunPolicy, TaskConstraints, TaskId, TaskMetadata
>>> from actionqueue.core import TaskPayload, TaskSpec
>>> from actionqueue.engine.time import ManualClock
>>> clock = ManualClock(1_700_000_000_000)
>>> task_id = TaskId.new()
>>> task_spec = TaskSpec(
...     task_id,
...     TaskPayload.with_content_type(b"\\x01\\x02\\x03", "application/octet-stream"),
...     RunPolicy.Once,
...     TaskConstraints.default(),
...     TaskMetadata.default(),
... )
>>> result = derive_runs(clock, task_id, task_spec.run_policy, 0, clock.now())
>>> derived_runs = result.into_derived()
>>> len(derived_runs), derived_runs[0].state.label, result.derived_total
(1, 'Scheduled', 1)

Per policy
----------

* **Once** — one run at ``schedule_origin``.
* **Repeat(count, interval)** — runs ``k = already_derived .. count-1`` at
  ``schedule_origin + k * interval``, all in one batch.
* **Cron** — a *rolling window*: occurrences strictly after ``after`` (the ``scheduled_at`` of
  the task's last derived run) are derived until the task has ``window`` non-terminal runs
  (``non_terminal`` is what the task has now), never more than ``max_occurrences`` runs in
  total. For the first batch ``after`` is ``None`` and derivation starts at
  ``schedule_origin - 1 ms``, so **the origin itself is an occurrence when the expression
  matches it** (a task created at exactly 09:00:00.000 with ``0 9 * * *`` runs today, not
  tomorrow — the same "due at the origin" rule as Once and Repeat).

Cron after downtime (``now`` given)
-----------------------------------

When a cron window is refilled with ``now`` and occurrences in ``(after, now - grace)`` were
never derived (the process was down), they are *missed*. Materializing thousands of them only
to cancel them would flood the log, so for coalesce, skip and capped catch-up each missed stretch
is folded:

* **coalesce** — only the most recent missed occurrence becomes a run; it stands for the whole
  stretch (it will be promoted with ``"misfire: coalesced N missed occurrences"``).
* **skip** — one run, at the most recent missed occurrence, stands for the stretch; the
  scheduler cancels it at once with ``"misfire: skipped (N occurrences)"``, so the skip is
  visible in history. Derivation then continues with the next occurrence.
* **catch_up with cap** — the most recent ``cap`` missed occurrences become runs (all of them,
  even past ``window``: the cap bounds them), and one canceled run stands for the older ones
  (``"misfire: catch-up cap N exceeded (M occurrences)"``).
* **catch_up without cap** — every missed occurrence is a run, derived window by window.

The folded runs are listed in :attr:`DerivationResult.folded`, which the scheduler's
:func:`~actionqueue.engine.scheduler.plan_misfire` reads. Runs that stand for dropped
occurrences (skip, capped catch-up) do not count toward ``window``. ``max_occurrences`` counts
*runs* (what the log holds and the reducer checks), so a folded stretch counts once. Counting
the occurrences of a stretch iterates the expression, so counts above
:data:`FOLD_COUNT_LIMIT` are reported as a lower bound (``"1000+"``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from actionqueue.core._validate import I64_MAX, check_int, wrong_type
from actionqueue.core.ids import RunId, TaskId
from actionqueue.core.mutation import MutationCommand, RunCreateCommand, TaskCreateCommand
from actionqueue.core.run.run_instance import RunInstance, StateChange
from actionqueue.core.run.state import RunState
from actionqueue.core.task.run_policy import (
    CRON_END_MS,
    CronPolicy,
    MisfireKind,
    OncePolicy,
    RepeatPolicy,
    RunPolicy,
)
from actionqueue.core.task.task_spec import TaskSpec
from actionqueue.core.time import from_millis
from actionqueue.engine.time.clock import Clock
from actionqueue.errors import DerivationError, InvalidPolicyError, ValidationError

__all__ = [
    "DEFAULT_GRACE_MS",
    "FOLD_COUNT_LIMIT",
    "DerivationResult",
    "FoldedOccurrences",
    "derive_runs",
    "effective_grace_ms",
    "plan_task_create",
    "run_create_commands",
]

#: Grace used when a misfire policy has none (``grace_ms=None``): an occurrence promoted at
#: most this late is on time. A scheduler is never woken at the exact millisecond, and without
#: a grace ``skip`` would drop runs that were merely a few ms late. (APScheduler uses 1 s too.)
#: Pass ``grace=0`` explicitly for a strict policy.
DEFAULT_GRACE_MS = 1_000

#: Missed occurrences counted one by one at most; beyond this a count is a lower bound.
FOLD_COUNT_LIMIT = 1_000

_SCHEDULED = RunState.SCHEDULED


def effective_grace_ms(grace_ms: int | None) -> int:
    """The grace in force: ``grace_ms``, or :data:`DEFAULT_GRACE_MS` when it is ``None``.

    >>> effective_grace_ms(None), effective_grace_ms(0), effective_grace_ms(250)
    (1000, 0, 250)
    """
    return DEFAULT_GRACE_MS if grace_ms is None else grace_ms


@dataclass(frozen=True, slots=True)
class FoldedOccurrences:
    """A derived cron run that stands for a stretch of missed occurrences.

    Attributes:
        run_id: the run.
        count: occurrences it stands for, itself included (>= 1); a lower bound when not
            ``exact``.
        exact: whether ``count`` is exact (see :data:`FOLD_COUNT_LIMIT`).
        first_at: the earliest occurrence of the stretch (ms).
        last_at: the latest one — the run's ``scheduled_at``.
        dropped: ``True`` when the stretch is dropped (skip, or catch-up beyond the cap): the
            scheduler cancels the run. ``False`` for coalesce: the run executes once for all.
    """

    run_id: RunId
    count: int
    exact: bool
    first_at: int
    last_at: int
    dropped: bool

    @property
    def count_text(self) -> str:
        """``"42"``, or ``"1000+"`` for a lower bound."""
        return f"{self.count}" if self.exact else f"{self.count}+"

    @property
    def occurrences_text(self) -> str:
        """``"42 occurrences"``, ``"1000+ occurrences"``, ``"1 occurrence"``."""
        one = self.count == 1 and self.exact
        return f"{self.count_text} occurrence{'' if one else 's'}"


_EMPTY_FOLDED: Mapping[RunId, FoldedOccurrences] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class DerivationResult:
    """What :func:`derive_runs` derived.

    Attributes:
        derived: the new runs, all Scheduled, in ordinal (and ``scheduled_at``) order.
        derived_total: runs derived for the task in total, these included
            (``already_derived + len(derived)``) — the next call's ``already_derived``.
        exhausted: whether the policy implies no further runs (all derived, or the cron
            expression has no later occurrence).
        folded: the derived cron runs that stand for missed stretches, by run id (see the
            module docs); empty unless ``now`` was given.
    """

    derived: tuple[RunInstance, ...]
    derived_total: int
    exhausted: bool = False
    folded: Mapping[RunId, FoldedOccurrences] = field(default_factory=lambda: _EMPTY_FOLDED)

    def into_derived(self) -> list[RunInstance]:
        """The new runs as a list (the seed's ``into_derived()``)."""
        return list(self.derived)

    @property
    def last_scheduled_at(self) -> int | None:
        """``scheduled_at`` of the last derived run: the next cron call's ``after``."""
        return self.derived[-1].scheduled_at if self.derived else None

    def __len__(self) -> int:
        return len(self.derived)


def _new_run(task_id: TaskId, ordinal: int, scheduled_at: int, created_at: int) -> RunInstance:
    return RunInstance(
        run_id=RunId.new(),
        task_id=task_id,
        state=_SCHEDULED,
        ordinal=ordinal,
        scheduled_at=scheduled_at,
        created_at=created_at,
        # Mirrors the run tuple the Rust core reports: creation is the first history entry.
        history=(StateChange(None, _SCHEDULED, created_at, None),),
    )


def _check_time(value: object, name: str) -> int:
    return check_int(value, name, minimum=0, maximum=I64_MAX)


def derive_runs(
    clock: Clock,
    task_id: TaskId,
    run_policy: RunPolicy,
    already_derived: int,
    schedule_origin: int,
    *,
    after: int | None = None,
    non_terminal: int = 0,
    now: int | None = None,
) -> DerivationResult:
    """Derive the next Scheduled runs of a task.

    Args:
        clock: read once, for the runs' ``created_at``.
        task_id: the task.
        run_policy: its policy.
        already_derived: runs derived for the task so far (the next run's ordinal).
        schedule_origin: the task's schedule origin (ms).
        after: cron only — ``scheduled_at`` of the last derived run; required once
            ``already_derived > 0``.
        non_terminal: cron only — the task's runs that are not terminal yet (window fill).
        now: cron only — enables folding of missed stretches (see the module docs).

    Raises:
        DerivationError: ``already_derived`` exceeds what the policy implies, or a run time
            would overflow int64 ms. Nothing is derived.
        ValidationError / WrongTypeError: a malformed argument.

    >>> from actionqueue.core import RunPolicy, TaskId
    >>> from actionqueue.engine.time import ManualClock
    >>> r = derive_runs(ManualClock(0), TaskId.new(), RunPolicy.repeat(3, 500), 1, 10_000)
    >>> [(run.ordinal, run.scheduled_at) for run in r.derived], r.derived_total, r.exhausted
    ([(1, 10500), (2, 11000)], 3, True)
    """
    if type(task_id) is not TaskId:
        raise wrong_type("task_id", "a TaskId", task_id)
    already = check_int(already_derived, "already_derived", minimum=0)
    origin = _check_time(schedule_origin, "schedule_origin")
    created_at = clock.now()
    if type(run_policy) is OncePolicy:
        return _derive_fixed(task_id, 1, origin, 0, already, created_at, "RunPolicy.once")
    if type(run_policy) is RepeatPolicy:
        return _derive_fixed(
            task_id,
            run_policy.count,
            origin,
            run_policy.interval_ms,
            already,
            created_at,
            f"RunPolicy.repeat({run_policy.count}, {run_policy.interval_ms} ms)",
        )
    if type(run_policy) is CronPolicy:
        return _derive_cron(
            task_id, run_policy, already, origin, after, non_terminal, now, created_at
        )
    raise wrong_type("run_policy", "a RunPolicy (once, repeat or cron)", run_policy)


def _overflow(already: int, total: int, what: str) -> DerivationError:
    return DerivationError(
        f"already_derived={already} exceeds the {total} run(s) {what} implies; nothing derived "
        "(the task's run count is inconsistent with its policy)"
    )


def _derive_fixed(
    task_id: TaskId,
    total: int,
    origin: int,
    interval: int,
    already: int,
    created_at: int,
    what: str,
) -> DerivationResult:
    if already > total:
        raise _overflow(already, total, what)
    if total > already and origin + (total - 1) * interval > I64_MAX:
        raise DerivationError(
            f"the last run of {what} from schedule_origin={origin} would be at "
            f"{origin + (total - 1) * interval} ms, past int64; nothing derived"
        )
    runs = tuple(
        _new_run(task_id, k, origin + k * interval, created_at) for k in range(already, total)
    )
    return DerivationResult(runs, total, exhausted=True)


def _derive_cron(
    task_id: TaskId,
    policy: CronPolicy,
    already: int,
    origin: int,
    after: int | None,
    non_terminal: int,
    now: int | None,
    created_at: int,
) -> DerivationResult:
    cap = policy.max_occurrences
    if cap is not None and already > cap:
        raise _overflow(already, cap, f"cron max_occurrences={cap}")
    nt = check_int(non_terminal, "non_terminal", minimum=0)
    if after is None:
        if already:
            raise ValidationError(
                f"after is required for a cron policy once runs exist (already_derived="
                f"{already}); pass the scheduled_at of the task's last derived run"
            )
        # The origin itself counts as an occurrence (see the module docs).
        start = origin - 1
    else:
        start = _check_time(after, "after")
    if now is not None:
        _check_time(now, "now")
    remaining = None if cap is None else cap - already
    room = policy.window - nt
    if room <= 0 or remaining == 0:
        return DerivationResult((), already, exhausted=remaining == 0)

    times: list[int] = []  # scheduled_at of the runs to create, ascending
    folds: list[tuple[int, int, bool, int, bool]] = []  # (index, count, exact, first, dropped)
    counted = 0  # runs that count toward the window
    it: Iterator[int]
    kind = policy.misfire.kind
    fold = now is not None and (kind is not MisfireKind.CATCH_UP or policy.misfire.cap is not None)
    if fold:
        assert now is not None
        limit = now - effective_grace_ms(policy.misfire.grace_ms) - 1  # last missed instant
        folded_times, folds, counted, it = _fold_missed(policy, start, limit, remaining)
        times.extend(folded_times)
    else:
        it = policy.iter_after(start)
    exhausted = False
    most = I64_MAX if remaining is None else remaining
    while counted < room and len(times) < most:
        ms = next(it, None)
        if ms is None:
            exhausted = True
            break
        times.append(ms)
        counted += 1
    if remaining is not None and len(times) >= remaining:
        exhausted = True
    runs = tuple(_new_run(task_id, already + i, t, created_at) for i, t in enumerate(times))
    folded: Mapping[RunId, FoldedOccurrences] = _EMPTY_FOLDED
    if folds:
        folded = MappingProxyType(
            {
                runs[i].run_id: FoldedOccurrences(
                    runs[i].run_id, count, exact, first, runs[i].scheduled_at, dropped
                )
                for i, count, exact, first, dropped in folds
            }
        )
    return DerivationResult(runs, already + len(runs), exhausted, folded)


def _fold_missed(
    policy: CronPolicy, start: int, limit: int, remaining: int | None
) -> tuple[list[int], list[tuple[int, int, bool, int, bool]], int, Iterator[int]]:
    """Fold the missed occurrences in ``(start, limit]`` per the misfire policy.

    Returns the run times to create for the stretch (ascending), the fold descriptions
    ``(index into times, count, exact, first_at, dropped)``, how many of those runs count
    toward the window, and an iterator over the occurrences after the stretch.
    """
    it = policy.iter_after(start)
    first = next(it, None)
    if first is None or first > limit:
        # Nothing missed: continue from the first occurrence.
        return [], [], 0, _chain_one(first, it)
    # Count the stretch one by one, up to FOLD_COUNT_LIMIT; keep enough tail for the cap.
    misfire = policy.misfire
    keep = (misfire.cap or 0) + 1
    tail: deque[int] = deque([first], maxlen=keep)
    count = 1
    exact = True
    nxt = next(it, None)
    while nxt is not None and nxt <= limit:
        if count >= FOLD_COUNT_LIMIT:
            exact = False
            break
        tail.append(nxt)
        count += 1
        nxt = next(it, None)
    if exact:
        after_stretch = _chain_one(nxt, it)
        missed_tail = list(tail)
    else:
        # Too many to walk: find the most recent ones by searching back from the limit.
        found = _last_occurrences(policy, tail[-1], limit, keep)
        missed_tail = [*tail, *found][-keep:]
        after_stretch = policy.iter_after(limit)
    kind = misfire.kind
    if kind is MisfireKind.COALESCE:
        times = [missed_tail[-1]]
        folds = [(0, count, exact, first, False)]
        counted = 1
    elif kind is MisfireKind.SKIP:
        times = [missed_tail[-1]]
        folds = [(0, count, exact, first, True)]
        counted = 0
    else:  # catch-up with a cap
        cap = misfire.cap
        assert cap is not None
        if len(missed_tail) <= cap:
            times, folds, counted = missed_tail, [], len(missed_tail)
        else:
            survivors = missed_tail[-cap:]
            dropped_last = missed_tail[-cap - 1]
            times = [dropped_last, *survivors]
            folds = [(0, count - cap, exact, first, True)]
            counted = len(survivors)
    if remaining is not None and len(times) > remaining:
        # max_occurrences leaves no room for the whole stretch: keep the most recent runs.
        cut = len(times) - remaining
        times = times[cut:]
        folds = [(i - cut, c, e, f, d) for i, c, e, f, d in folds if i >= cut]
        counted = min(counted, len(times))
    return times, folds, counted, after_stretch


def _chain_one(head: int | None, rest: Iterator[int]) -> Iterator[int]:
    if head is None:
        return
    yield head
    yield from rest


def _last_occurrences(policy: CronPolicy, lo: int, limit: int, k: int) -> list[int]:
    """Up to the last ``k`` occurrences in ``(lo, limit]`` (ascending), without walking from
    ``lo``.

    Gallops back from ``limit``, doubling the span, until the span holds ``k`` occurrences or
    reaches ``lo``; a month of per-second occurrences costs a few dozen cron evaluations
    instead of millions.
    """
    span = 1_000
    while True:
        probe = max(lo, limit - span)
        tail: deque[int] = deque(maxlen=k)
        for ms in policy.iter_after(probe):
            if ms > limit:
                break
            tail.append(ms)
        if len(tail) >= k or probe == lo:
            return list(tail)
        span *= 2


def check_first_runs(
    task_id: TaskId, run_policy: RunPolicy, schedule_origin: int, result: DerivationResult
) -> None:
    """Refuse a new task whose first derivation (``result``) found no run: a cron expression
    with no occurrence at or after ``schedule_origin`` (occurrences end with year 9999) would
    make a task that never runs. Raises :class:`~actionqueue.errors.InvalidPolicyError`
    naming why; :func:`plan_task_create` and the engine's submit call it before anything is
    written.

    >>> from actionqueue.core import RunPolicy, TaskId
    >>> from actionqueue.engine.time import ManualClock
    >>> late = 253_402_300_770_000  # 9999-12-31 23:59:30 UTC
    >>> policy, task = RunPolicy.cron("* * * * *"), TaskId.new()
    >>> check_first_runs(task, policy, late, derive_runs(ManualClock(0), task, policy, 0, late))
    Traceback (most recent call last):
    ...
    actionqueue.errors.InvalidPolicyError: cron '* * * * *' (UTC) has no occurrence at or after ...
    """
    if result.derived or type(run_policy) is not CronPolicy:
        return
    if schedule_origin < CRON_END_MS:
        start = from_millis(schedule_origin).isoformat(timespec="milliseconds")
    else:
        start = f"{schedule_origin} ms (after year 9999)"
    raise InvalidPolicyError(
        f"cron {run_policy.expression!r} ({run_policy.timezone}) has no occurrence at or after "
        f"the schedule origin of task {task_id}, {start}: cron occurrences are computed up to "
        "the end of year 9999 only, so the task would never run; nothing was submitted (start "
        "it earlier)"
    )


def run_create_commands(
    result: DerivationResult, *, timestamp: int | None = None
) -> list[RunCreateCommand]:
    """One ``RunCreateCommand`` per derived run (``sequence=None``), in ordinal order.

    ``timestamp`` defaults to each run's ``created_at``.
    """
    return [
        RunCreateCommand(
            None,
            r.run_id,
            r.task_id,
            r.ordinal,
            r.scheduled_at,
            r.created_at if timestamp is None else timestamp,
        )
        for r in result.derived
    ]


def plan_task_create(
    clock: Clock, task_spec: TaskSpec, *, schedule_origin: int | None = None
) -> tuple[list[MutationCommand], DerivationResult]:
    """The atomic batch that creates a task with its first runs (SPEC §11.7).

    Returns ``([TaskCreateCommand, RunCreateCommand...], result)``; submit the list as **one**
    batch so a crash can never leave a task without its runs. ``schedule_origin`` defaults to
    ``clock.now()``. Misfires of an origin in the past are handled by the scheduler's first
    tick, not here.

    >>> from actionqueue.core import RunPolicy, TaskId, TaskSpec
    >>> from actionqueue.engine.time import ManualClock
    >>> spec = TaskSpec(TaskId.new(), b"x", RunPolicy.repeat(2, 1000))
    >>> cmds, result = plan_task_create(ManualClock(5_000), spec)
    >>> [c.KIND for c in cmds], [r.scheduled_at for r in result.derived]
    (['TaskCreate', 'RunCreate', 'RunCreate'], [5000, 6000])
    """
    if not isinstance(task_spec, TaskSpec):
        raise wrong_type("task_spec", "a TaskSpec", task_spec)
    now = clock.now()
    origin = now if schedule_origin is None else _check_time(schedule_origin, "schedule_origin")
    result = derive_runs(clock, task_spec.task_id, task_spec.run_policy, 0, origin)
    check_first_runs(task_spec.task_id, task_spec.run_policy, origin, result)
    batch: list[MutationCommand] = [TaskCreateCommand(None, task_spec, now, schedule_origin=origin)]
    batch.extend(run_create_commands(result, timestamp=now))
    return batch, result
