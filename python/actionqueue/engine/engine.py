"""The engine: the pure decision layer wired to the storage authority.

:class:`Engine` is what a runtime drives. It decides with the pure functions of this package
(derivation, misfire planning, selection, lease and retry decisions) and writes every decision
through the authority as **one atomic batch** per operation, so a crash can never leave half a
decision in the log. The authority dry-runs the replay reducer on each batch, so a decision made
on stale information is refused whole (nothing changes) instead of corrupting state.

Hot path
--------

``dispatch_next`` and ``finish_attempt`` are the runtime's hot loop. They build the event
tuples of ``docs/DESIGN.md`` directly (no command objects) and avoid reading whole runs back:

* the engine caches each task's spec (specs are immutable);
* it remembers, for every run it dispatched, the open attempt and its counted attempts, and for
  runs waiting to retry their counted attempts. Runs created before the engine started (a
  restart) are looked up once. These are hints only: the authority re-checks every rule, and
  the engine must be the only writer of run state for its authority (it is the one write path).

Pause
-----

A paused engine (durable ``EnginePause``) leases nothing — the reducer refuses Ready → Leased.
The engine also stops *promoting*: Scheduled and RetryWait runs stay where they are, so time
spent paused counts as downtime for misfire policies (a per-minute ``coalesce`` cron paused for
an hour runs once at resume, not 60 times). What continues: submissions, cancellations,
``finish_attempt`` / ``heartbeat`` / ``release`` of work already handed out, ``retry_now`` and
the **expiry sweep** (an expired lease is still recovered, so nothing is stuck at resume).
:meth:`Engine.next_wakeup` reports only lease expiries while paused.

Cron tasks this machine cannot evaluate
---------------------------------------

A cron task read from a log written elsewhere may name a time zone this machine's zone
database lacks (or an expression its croniter refuses): its policy is kept as written
(:attr:`~actionqueue.core.task.run_policy.CronPolicy.unresolved` says why). The engine promotes
and dispatches the runs such a task already has, under its misfire policy, and derives no new
ones; it logs one warning per task on the ``actionqueue.engine`` logger. Every other task goes
on as usual. The first tick of an engine refills every cron window left short, so the task
picks up where it stopped once it is opened where it resolves (see docs/policies.md).
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import random
import socket
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from actionqueue.core._validate import I64_MAX, check_text
from actionqueue.core.ids import AttemptId, RunId, TaskId, random_id_bytes, random_ids
from actionqueue.core.mutation import AttemptFinishCommand, DurabilityPolicy
from actionqueue.core.run.attempt import AttemptOutcome, decide
from actionqueue.core.run.run_instance import RunInstance
from actionqueue.core.run.state import TERMINAL_STATES, RunState
from actionqueue.core.task.constraints import TaskConstraints
from actionqueue.core.task.run_policy import (
    CronPolicy,
    MisfireKind,
    OncePolicy,
    RepeatPolicy,
    RunPolicy,
)
from actionqueue.core.task.task_spec import TaskPayload, TaskSpec
from actionqueue.core.time import DurationLike, TimeLike, to_duration_ms, to_millis
from actionqueue.engine.derive import (
    check_first_runs,
    derive_runs,
    effective_grace_ms,
    run_create_commands,
)
from actionqueue.engine.index import RunIndex
from actionqueue.engine.lease import DEFAULT_LEASE_MS, lease_duration_ms, plan_expiry
from actionqueue.engine.ports import (
    AuthorityPort,
    EventTuple,
    RunTuple,
    TaskRecordLike,
    task_is_finished,
)
from actionqueue.engine.scheduler import caught_up_reason, plan_misfire, plan_task_promotion
from actionqueue.engine.selection import Candidate, DefaultSelector, Selector
from actionqueue.engine.time.clock import Clock
from actionqueue.errors import (
    ActionQueueError,
    CommandRejectedError,
    DerivationError,
    InvalidTransitionError,
    LeaseError,
    NotFoundError,
    RecordTooLargeError,
    ValidationError,
    WrongTypeError,
)

__all__ = ["Dispatch", "Engine", "Finish", "TickReport"]

# Wire values, as module constants: enum attribute reads cost on the hot path.
_SCHEDULED = int(RunState.SCHEDULED)
_READY = int(RunState.READY)
_LEASED = int(RunState.LEASED)
_RUNNING = int(RunState.RUNNING)
_RETRY_WAIT = int(RunState.RETRY_WAIT)
_SUSPENDED = int(RunState.SUSPENDED)
_CANCELED = int(RunState.CANCELED)
_COMPLETED_WIRE = int(RunState.COMPLETED)
_SUCCESS_WIRE = int(AttemptOutcome.SUCCESS)
_RS_COMPLETED = RunState.COMPLETED
_RS_READY = RunState.READY
_RS_RETRY_WAIT = RunState.RETRY_WAIT
_RS_SUSPENDED = RunState.SUSPENDED
_RS_FAILED = RunState.FAILED
_RS_CANCELED = RunState.CANCELED
_OUT_SUSPENDED = AttemptOutcome.SUSPENDED
_OUT_SUCCESS = AttemptOutcome.SUCCESS
_DEFERRED = DurabilityPolicy.DEFERRED
_IMMEDIATE = DurabilityPolicy.IMMEDIATE
_OUT_TERMINAL = AttemptOutcome.TERMINAL_FAILURE
_TERMINAL = TERMINAL_STATES

_new_attempt = AttemptId.new
_run_id_of = RunId.from_bytes
_attempt_id_of = AttemptId.from_bytes
_random_ids = random_id_bytes
#: Largest ``limit`` served by the one-call dispatch (it asks for 16 random bytes per run).
_FAST_LIMIT = 4096

#: Runs handled per authority batch by the sweep and the promotions (bounds record size).
PAGE = 4_096
#: Candidates shown to a custom selector per round.
SELECTOR_SCAN = 1_024

_LOG = logging.getLogger("actionqueue.engine")


class _Rng(Protocol):
    def random(self) -> float: ...


class _At:
    """A clock stopped at ``now``: derivation stamps runs with the operation's time."""

    __slots__ = ("_now",)

    def __init__(self, now: int) -> None:
        self._now = now

    def now(self) -> int:
        return self._now


class _TaskInfo:
    """What the hot path needs about a task, computed once per task."""

    __slots__ = (
        "catch_up_all",
        "constraints",
        "grace_ms",
        "is_cron",
        "lease_ms",
        "max_attempts",
        "policy",
        "retry",
        "retry_on",
        "single_run",
        "spec",
        "task_id",
        "timeout_ms",
    )

    def __init__(self, spec: TaskSpec, default_lease_ms: int) -> None:
        c = spec.constraints
        self.spec = spec
        self.task_id = spec.task_id
        self.policy: RunPolicy = spec.run_policy
        self.is_cron = type(spec.run_policy) is CronPolicy
        #: the policy derives exactly one run: the task is finished when that run is terminal
        self.single_run = type(spec.run_policy) is OncePolicy
        #: promotion within this lateness is a plain Scheduled -> Ready (non-cron tasks)
        self.grace_ms: int | None = (
            None if self.is_cron else effective_grace_ms(spec.run_policy.misfire.grace_ms)
        )
        #: late runs are promoted all the same (catch-up with no cap, not cron): only their
        #: history reason differs, so promotion needs no planning
        misfire = spec.run_policy.misfire
        self.catch_up_all = (
            not self.is_cron and misfire.kind is MisfireKind.CATCH_UP and misfire.cap is None
        )
        self.constraints = c
        self.max_attempts = c.max_attempts
        self.retry_on = c.retry_on
        self.retry = c.retry
        self.timeout_ms = c.timeout_ms
        self.lease_ms = lease_duration_ms(c, default_lease_ms)

    def spec_for(self, tid: bytes, row: _TaskRow) -> TaskSpec:
        """The spec of the task ``tid`` whose compact row (see ``Engine._tasks``) names this
        shape, rebuilt from the row and this shape's shared parts."""
        return _trusted_spec(
            _task_id_of(tid),
            _trusted_payload(row[1], row[2]),
            self.policy,
            self.constraints,
            self.spec.metadata,
            row[3],
            row[4],
        )

    def for_row(self, tid: bytes, row: _TaskRow) -> _TaskInfo:
        """The info of the task ``tid`` whose compact row names this shape: its spec
        (:meth:`spec_for`), the derived fields copied, not computed again."""
        spec = self.spec_for(tid, row)
        info = _new_info(_TaskInfo)
        info.spec = spec
        info.task_id = spec.task_id
        info.policy = self.policy
        info.is_cron = self.is_cron
        info.single_run = self.single_run
        info.grace_ms = self.grace_ms
        info.catch_up_all = self.catch_up_all
        info.constraints = self.constraints
        info.max_attempts = self.max_attempts
        info.retry_on = self.retry_on
        info.retry = self.retry
        info.timeout_ms = self.timeout_ms
        info.lease_ms = self.lease_ms
        return info


_new_info = object.__new__
#: templates remembered by submit_uniform (then forgotten all at once: a bound, not an LRU)
_MAX_TEMPLATES = 1024
#: the id of the template spec handed to the core's submit_uniform (replaced per task)
_TEMPLATE_ID = b"\x00" * 15 + b"\x01"
#: builds a NamedTuple (``Dispatch``) without its Python-level ``__new__`` frame
_new_tuple = tuple.__new__
_trusted_spec = TaskSpec._trusted
_trusted_payload = TaskPayload._trusted
_task_id_of = TaskId.from_bytes
#: What the engine keeps per task: ``(shape number, payload data, content type, handler,
#: dedupe key)``. Only atomic values, so CPython's cyclic GC untracks the tuple and never walks
#: it again; the objects tasks share (policy, constraints, metadata) live in one shape.
_TaskRow = tuple[int, bytes, "str | None", "str | None", "str | None"]


def _checked_payloads(
    payloads: Iterable[tuple[bytes, str | None]],
) -> list[tuple[bytes, str | None]]:
    """``(data, content_type)`` pairs as :class:`TaskPayload` would store them: validated (and
    converted) by it, except plain ``bytes`` with no content type or one checked already."""
    out = []
    checked: set[str] = set()
    for item in payloads:
        if type(item) is not tuple or len(item) != 2:
            raise WrongTypeError(
                f"payloads must be (data, content_type) pairs, got {type(item).__name__} "
                f"{item!r:.80}"
            )
        data, ct = item
        if type(data) is not bytes or (
            ct is not None and (type(ct) is not str or ct not in checked)
        ):
            p = TaskPayload(data, ct)
            item = (p.data, p.content_type)
            if p.content_type is not None:
                checked.add(p.content_type)
        out.append(item)
    return out


class Dispatch(NamedTuple):
    """One run handed to a worker by :meth:`Engine.dispatch_next` (Leased → Running, attempt
    open). The worker reports back with ``finish_attempt(run_id, attempt_id, outcome)``.

    Attributes:
        run_id / attempt_id: what the handler gets to be idempotent (SPEC contract 6).
        attempt: the attempt number, counted toward ``max_attempts`` (1 for the first try).
        task_id / spec: the task (``handler``, ``payload`` and ``constraints`` are shortcuts).
        scheduled_at: when the run was scheduled (due for its first attempt).
        lease_expires_at: the lease's expiry; heartbeat before it (``Engine.heartbeat``).
        deadline: ``now + timeout`` when the task has a timeout, else ``None``.
        owner: the lease owner.
        due_at: when the run became due for this attempt: ``scheduled_at``, or the end of the
            backoff for a retry, or when ``retry_now``, a release or the expiry sweep made it
            Ready again (``scheduled_at`` if that happened before this engine started).
    """

    run_id: RunId
    attempt_id: AttemptId
    attempt: int
    task_id: TaskId
    spec: TaskSpec
    scheduled_at: int
    lease_expires_at: int
    deadline: int | None
    owner: str
    due_at: int

    @property
    def handler(self) -> str | None:
        return self.spec.handler

    @property
    def payload(self) -> TaskPayload:
        return self.spec.payload

    @property
    def constraints(self) -> TaskConstraints:
        return self.spec.constraints


@dataclass(frozen=True, slots=True)
class TickReport:
    """What one :meth:`Engine.tick` wrote.

    Attributes:
        promoted: Scheduled → Ready (misfire catch-ups and coalesce survivors included).
        misfired: Scheduled → Canceled by a misfire policy (skip, cap, coalesce).
        retried: RetryWait → Ready.
        expired: runs recovered by the expiry sweep (Leased → Ready, Running → retry decision).
        created: runs derived (cron window refills).
        batches: authority batches written.
    """

    promoted: int = 0
    misfired: int = 0
    retried: int = 0
    expired: int = 0
    created: int = 0
    batches: int = 0

    @property
    def changed(self) -> bool:
        return self.batches > 0


def _on_time_prefix(runs: list[tuple[int, int]], now: int, grace_ms: int | None) -> int:
    """How many leading ``(index, scheduled_at)`` of ``runs`` are due at ``now`` and late
    by no more than the misfire grace: promoted by a tick at ``now`` with no reason."""
    grace = effective_grace_ms(grace_ms)
    ready = 0
    for _k, at in runs:
        if at > now or now - at > grace:
            break
        ready += 1
    return ready


def _dispatch_of(
    rid: bytes,
    attempt_id: AttemptId,
    attempt: int,
    spec: TaskSpec,
    tmo: int | None,
    scheduled_at: int,
    lease_expires_at: int,
    now: int,
    owner: str,
    due_at: int,
) -> Dispatch:
    """The :class:`Dispatch` of run ``rid`` of the task ``spec`` leased and started at
    ``now`` (its deadline is ``now`` plus the task's timeout ``tmo``, if any)."""
    return _new_tuple(
        Dispatch,
        (
            _run_id_of(rid),
            attempt_id,
            attempt,
            spec.task_id,
            spec,
            scheduled_at,
            lease_expires_at,
            None if tmo is None else now + tmo,
            owner,
            due_at,
        ),
    )


class Finish(NamedTuple):
    """One attempt's result for :meth:`Engine.finish_attempts` (the arguments of
    :meth:`Engine.finish_attempt`)."""

    run_id: RunId
    attempt_id: AttemptId
    outcome: AttemptOutcome
    error: str | None = None
    output: bytes | None = None
    retry_delay: DurationLike | None = None


def _check_finish(
    outcome: object, error: object, output: object
) -> tuple[AttemptOutcome, bytes | None]:
    out = (
        outcome if type(outcome) is AttemptOutcome else AttemptOutcome.from_wire(outcome, "outcome")
    )
    if error is not None:
        if not isinstance(error, str):
            raise WrongTypeError(f"error must be a str or None, got {type(error).__name__}")
        check_text(error, "error")  # the log stores UTF-8: refused before any record is built
    if output is None or type(output) is bytes:
        return out, output
    if not isinstance(output, (bytearray, memoryview)):
        raise WrongTypeError(
            f"output must be bytes or None, got {type(output).__name__} {output!r:.80}"
        )
    return out, bytes(output)


def _default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def _check_owner(owner: object) -> str:
    if type(owner) is not str or not owner:
        raise ValidationError(f"owner must be a non-empty str, got {owner!r}")
    return check_text(owner, "owner")


def _check_keys(keys: object) -> frozenset[str]:
    """``busy_keys`` of :meth:`Engine.dispatch_next`: a collection of key strings (a lone
    str is refused: it would read as a set of one-letter keys)."""
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Collection):
        raise WrongTypeError(
            f"busy_keys must be a collection of str, got {type(keys).__name__} {keys!r}"
        )
    out = frozenset(keys)
    for k in out:
        if type(k) is not str:
            raise WrongTypeError(f"busy_keys must hold str keys, got {type(k).__name__} {k!r}")
    return out


def _check_limit(limit: object) -> int:
    if type(limit) is not int or limit < 0:
        raise ValidationError(f"limit must be an int >= 0, got {limit!r}")
    return limit


def _check_run_id(run_id: object) -> RunId:
    if type(run_id) is RunId:
        return run_id
    if isinstance(run_id, (bytes, str)):
        return RunId(run_id)
    raise WrongTypeError(f"run_id must be a RunId, got {type(run_id).__name__} {run_id!r}")


def _check_task_id(task_id: object) -> TaskId:
    if type(task_id) is TaskId:
        return task_id
    if isinstance(task_id, (bytes, str)):
        return TaskId(task_id)
    raise WrongTypeError(f"task_id must be a TaskId, got {type(task_id).__name__} {task_id!r}")


class Engine:
    """Derivation, promotion, selection, leases and retries over one storage authority.

    Args:
        authority: the mutation authority (:class:`~actionqueue.engine.ports.AuthorityPort`).
        clock: where ``now`` comes from when a method is called without one.
        owner: default lease owner for :meth:`dispatch_next` (default: host:pid:random).
        selector: a custom :class:`~actionqueue.engine.selection.Selector`; ``None`` uses the
            index's own order (priority desc, scheduled_at asc, creation order), the fast path.
        rng: randomness for backoff jitter (pass ``random.Random(seed)`` for determinism).
        default_lease_ms: lease for tasks without a timeout (a task with one gets at least
            ``timeout + 5 s``, see :func:`~actionqueue.engine.lease.lease_duration_ms`).
        durability: default durability of every batch the engine writes.
        on_lost: called as ``on_lost({handler: n, ...})`` after the expiry sweep wrote
            attempts finished as **Lost** (their handlers had no result in time: a crash, a
            stall or a clock jump past the lease), once per batch, each attempt once. Called
            with the engine's lock held: it must be quick, must not call back into the engine
            and must not raise. The runtime counts them in its metrics.

    Every method takes ``now=None`` meaning ``clock.now()``.
    """

    def __init__(
        self,
        authority: AuthorityPort,
        clock: Clock,
        *,
        owner: str | None = None,
        selector: Selector | None = None,
        rng: _Rng | None = None,
        default_lease_ms: int = DEFAULT_LEASE_MS,
        durability: DurabilityPolicy = DurabilityPolicy.IMMEDIATE,
        on_lost: Callable[[Mapping[str | None, int]], None] | None = None,
    ) -> None:
        if not callable(getattr(clock, "now", None)):
            raise WrongTypeError(f"clock must have a now() method, got {clock!r}")
        if type(default_lease_ms) is not int or default_lease_ms <= 0:
            raise ValidationError(f"default_lease_ms must be an int > 0, got {default_lease_ms!r}")
        self._auth = authority
        self._clock = clock
        self.owner = _default_owner() if owner is None else _check_owner(owner)
        if type(selector) is DefaultSelector and selector.presorted and selector.max_scan is None:
            selector = None  # the index already yields the default order: stream it
        self._selector = selector
        self._rng: _Rng = rng if rng is not None else random.Random()
        self.default_lease_ms = default_lease_ms
        self.durability = DurabilityPolicy.parse(durability)
        self._on_lost = on_lost
        self.index = RunIndex(authority)
        # Serializes the writers that read-then-decide (dispatch, tick, cancel, cron refill);
        # finish_attempt of a non-cron run takes no lock, so workers never queue behind a
        # dispatcher waiting for its fsync.
        self._lock = threading.RLock()
        # task id -> compact row (see _TaskRow); the shapes it names are interned by value, so
        # a long-lived heap of submitted tasks costs the cyclic GC nothing to walk.
        self._tasks: dict[bytes, _TaskRow] = {}
        self._shapes: dict[int, _TaskInfo] = {}
        self._shape_of: dict[tuple[Any, Any, Any], int] = {}
        self._shape_no = itertools.count()
        self._shape_lock = threading.Lock()
        # template object -> (template, shape number, its parts' wire tuples): a template
        # submitted before (the runtime keeps one per handler) is neither hashed nor converted
        # again. Keyed by identity; the entry keeps its template alive, so the key stays its.
        self._templates: dict[int, tuple[TaskSpec, int, tuple[Any, Any, Any]]] = {}
        # run id -> (attempt id bytes, counted attempts incl. the open one, task info, owner,
        # lease expiry, task id bytes) for every run this engine has Running. Only the info's
        # shape fields (limits, retry, is_cron, single_run) are read: it may be the shared
        # info of the task's shape.
        self._inflight: dict[bytes, tuple[bytes, int, _TaskInfo, str, int, bytes]] = {}
        # run id -> counted attempts, for non-terminal runs not in flight with a count > 0.
        self._counts: dict[bytes, int] = {}
        # run id -> when the run became due again, for Ready runs this engine made Ready after
        # their scheduled time (a retry: its backoff's end; retry_now, a release, the sweep:
        # that moment), so a dispatch reports how late the attempt starts (Dispatch.due_at).
        self._due_at: dict[bytes, int] = {}
        # Runs created after this sequence were created by this engine: unknown means 0 attempts.
        self._boot_seq = authority.latest_sequence
        # task id -> why its cron occurrences cannot be computed here (warned once; see the
        # module docs), and whether the first tick still has to refill short cron windows.
        self._stalled: dict[bytes, str] = {}
        self._windows_checked = False
        #: runs the ticks made terminal so far (misfire cancels, expiry-sweep failures): a
        #: runtime waking the threads that wait for runs to finish watches it, since these
        #: runs end without a result of its own being recorded
        self.tick_finished = 0
        # Optional one-call ``(work_due, paused)`` peek (the storage authority has it).
        self._dispatch_state: Callable[[int], tuple[bool, bool]] | None = getattr(
            authority, "dispatch_state", None
        )
        # The storage authority's hot path: a Deferred submit and a whole dispatch step, each
        # one call into the core with no Python frame in between (see ``hot_path``).
        self._due_ids: Callable[[int, int], list[Any]] | None = getattr(
            authority, "due_scheduled_ids", None
        )
        #: ``(run_id, not_before)`` rows of due retries (the storage authority has it): a
        #: whole run tuple holds every attempt, so a run retried n times cost O(n) per retry
        self._due_retry_ids: Callable[[int, int], list[Any]] | None = getattr(
            authority, "due_retry_ids", None
        )
        #: a task's non-terminal run ids (the storage authority has it), for cancel_task
        self._live_run_ids: Callable[[bytes], list[bytes]] | None = getattr(
            authority, "live_run_ids", None
        )
        #: the storage authority's one-call uniform batch (see submit_uniform), and its
        #: variant that never waits (see try_submit_uniform)
        self._submit_uniform: Callable[..., object] | None = getattr(
            authority, "submit_uniform_wire", None
        )
        self._try_uniform: Callable[..., object] | None = getattr(
            authority, "try_submit_uniform_wire", None
        )
        hot = getattr(authority, "hot_path", None)
        self._dispatch_ready: Callable[..., list[Any] | None] | None = None
        self._submit_deferred: Callable[[Sequence[EventTuple]], object]
        if hot is not None:
            self._submit_deferred, self._dispatch_ready = hot()
        else:
            self._submit_deferred = functools.partial(authority.submit_wire, durability=_DEFERRED)

    # --- helpers -----------------------------------------------------------------------------

    def _now(self, now: int | None) -> int:
        if now is None:
            return self._clock.now()
        if type(now) is not int or not 0 <= now <= I64_MAX:
            raise ValidationError(f"now must be int milliseconds in 0..{I64_MAX}, got {now!r}")
        return now

    def _dur(self, durability: DurabilityPolicy | str | None) -> DurabilityPolicy:
        return self.durability if durability is None else DurabilityPolicy.parse(durability)

    def _info(self, tid: bytes) -> _TaskInfo:
        row = self._tasks.get(tid)
        if row is not None:
            shape = self._shapes.get(row[0])
            if shape is not None:
                return shape.for_row(tid, row)
        rec = self._auth.get_task(TaskId.from_bytes(tid))
        if rec is None:
            raise NotFoundError(f"task {TaskId.from_bytes(tid)} is not known to the authority")
        self._remember(rec.spec, self._shape(rec.spec))
        return _TaskInfo(rec.spec, self.default_lease_ms)

    def _spec_and_info(self, tid: bytes) -> tuple[TaskSpec, _TaskInfo]:
        """``tid``'s spec and an info with its shape's fields (policy, constraints, derived
        limits; its ``spec`` / ``task_id`` may be another task's of the same shape): what a
        dispatch needs, without an info object per run."""
        row = self._tasks.get(tid)
        if row is not None:
            shape = self._shapes.get(row[0])
            if shape is not None:
                return shape.spec_for(tid, row), shape
        info = self._info(tid)
        return info.spec, info

    def _shape_info(self, tid: bytes) -> _TaskInfo:
        """What ``tid`` shares with its shape (policy, constraints, derived fields; not its
        id or spec): no objects built when the task is known."""
        row = self._tasks.get(tid)
        if row is not None:
            shape = self._shapes.get(row[0])
            if shape is not None:
                return shape
        return self._info(tid)

    def _handler_of(self, tid: bytes) -> str | None:
        """The handler of task ``tid`` (its own: tasks of one shape may have different ones)."""
        row = self._tasks.get(tid)
        return row[3] if row is not None else self._info(tid).spec.handler

    def _shape(self, spec: TaskSpec) -> int:
        """The number of the shape of ``spec`` (its policy, constraints and metadata), interned
        by value. Numbers are never reused, so a row naming a shape forgotten by ``prune`` is
        looked up again instead of meeting another shape."""
        key: tuple[Any, Any, Any] = (spec.run_policy, spec.constraints, spec.metadata)
        with self._shape_lock:
            try:
                no = self._shape_of.get(key)
            except TypeError:  # a part that cannot be hashed: interned by identity instead
                # (the shape's spec keeps the objects alive: their ids stay theirs until prune)
                key = (id(spec.run_policy), id(spec.constraints), id(spec.metadata))
                no = self._shape_of.get(key)
            if no is None:
                no = self._shape_of[key] = next(self._shape_no)
                self._shapes[no] = _TaskInfo(spec, self.default_lease_ms)
        return no

    def _remember(self, spec: TaskSpec, shape: int) -> None:
        p = spec.payload
        self._tasks[spec.task_id.bytes] = (
            shape,
            p.data,
            p.content_type,
            spec.handler,
            spec.dedupe_key,
        )

    def _record(self, task_id: TaskId) -> TaskRecordLike:
        rec = self._auth.get_task(task_id)
        if rec is None:
            raise NotFoundError(f"task {task_id} is not known to the authority")
        return rec

    def _submit(self, events: Sequence[EventTuple], durability: DurabilityPolicy) -> None:
        if events:
            self._auth.submit_wire(events, durability)

    # --- submission --------------------------------------------------------------------------

    def _create_events(
        self,
        spec: TaskSpec,
        origin: int,
        now: int,
        wires: dict[tuple[int, int, int], tuple[Any, Any, Any]] | None = None,
    ) -> list[EventTuple]:
        tid = spec.task_id.bytes
        policy = spec.run_policy
        if wires is None:
            spec_wire = spec.to_wire()
        else:
            # Specs of one submit_many usually share their policy, constraints and metadata
            # objects (immutable): convert each once (the caller keeps them alive).
            c, m = spec.constraints, spec.metadata
            key = (id(policy), id(c), id(m))
            shared = wires.get(key)
            if shared is None:
                shared = wires[key] = (policy.to_wire(), c.to_wire(), m.to_wire())
            p = spec.payload
            spec_wire = (
                tid,
                spec.handler,
                p.data,
                p.content_type,
                shared[0],
                shared[1],
                shared[2],
                spec.dedupe_key,
            )
        events: list[EventTuple] = [(0, spec_wire, origin, now)]
        # Once/Repeat imply every run up front: build the RunCreates directly (no RunInstance
        # objects); cron derives its first window.
        if type(policy) is OncePolicy:
            events.append((1, RunId.new().bytes, tid, 0, origin, now))
        elif type(policy) is RepeatPolicy:
            n, step = policy.count, policy.interval_ms
            if origin + (n - 1) * step > I64_MAX:
                raise DerivationError(
                    f"the last run of task {spec.task_id} (repeat {n} every {step} ms from "
                    f"{origin}) would be past int64 ms; nothing was submitted"
                )
            new = RunId.new
            events.extend((1, new().bytes, tid, k, origin + k * step, now) for k in range(n))
        else:
            result = derive_runs(_At(now), spec.task_id, policy, 0, origin)
            check_first_runs(spec.task_id, policy, origin, result)  # a task that never runs
            events.extend(c.to_wire() for c in run_create_commands(result, timestamp=now))
        return events

    def submit(
        self,
        spec: TaskSpec,
        *,
        origin: TimeLike | None = None,
        durability: DurabilityPolicy | str | None = None,
        now: int | None = None,
    ) -> TaskId:
        """Create a task and all its first runs as **one** record; returns the task id.

        ``origin`` (default ``now``) is when the schedule starts: a Once run is due at it. An
        origin in the past is fine: the next tick promotes the runs under the misfire policy.
        When ``spec.dedupe_key`` names a *live* task (one with runs still to do), that task's id
        is returned and nothing is written.
        """
        return self.submit_many([spec], origin=origin, durability=durability, now=now)[0]

    def submit_many(
        self,
        specs: Iterable[TaskSpec],
        *,
        origin: TimeLike | None = None,
        durability: DurabilityPolicy | str | None = None,
        now: int | None = None,
    ) -> list[TaskId]:
        """:meth:`submit` for many tasks in **one** record (all or nothing), for throughput.

        Returns one id per spec, in order; specs whose dedupe key is taken (by a live task or
        by an earlier spec of the same call) get that task's id and write nothing.
        """
        specs = list(specs)
        for s in specs:
            if type(s) is not TaskSpec and not isinstance(s, TaskSpec):
                raise WrongTypeError(f"submit takes TaskSpec objects, got {type(s).__name__} {s!r}")
        t = self._now(now)
        o = t if origin is None else to_millis(origin, "origin")
        if o < 0:
            raise ValidationError(f"origin must be >= 0 ms, got {origin!r}")
        dur = self._dur(durability)
        wires: dict[tuple[int, int, int], tuple[Any, Any, Any]] = {}
        lookup = self._auth.task_by_dedupe_key
        refused: str | None = None  # the last refusal retried with every key free
        while True:
            ids: list[TaskId] = []
            events: list[EventTuple] = []
            taken: dict[str, TaskId] = {}
            new_specs: list[TaskSpec] = []
            for s in specs:
                key = s.dedupe_key
                if key is not None:
                    existing = taken.get(key)
                    if existing is None:
                        b = lookup(key)
                        existing = None if b is None else TaskId.from_bytes(b)
                    if existing is not None:
                        ids.append(existing)
                        continue
                    taken[key] = s.task_id
                ids.append(s.task_id)
                new_specs.append(s)
                events.extend(self._create_events(s, o, t, wires))
            if not events:
                # Every spec named a live task's dedupe key: nothing to write. That task's
                # record is visible before it is durable (another thread's Immediate submit
                # still waiting for its group sync, or a Deferred one): an Immediate caller is
                # told "done" only once it is. A record of our own would come after it in the
                # log, so its sync covers the existing task as well.
                if ids and dur is _IMMEDIATE:
                    self._auth.flush()
                return ids
            # Known before the write: a dispatch on another thread may lease these runs as soon
            # as the record is applied. Only ids without a row get one: a row that exists is a
            # known task's, and a spec reusing its id is refused by the write below — which
            # must leave that task's row as it was (dispatch builds the task's spec from it).
            tasks = self._tasks
            shapes: dict[tuple[int, int, int], int] = {}
            added: list[bytes] = []
            for s in new_specs:
                b = s.task_id.bytes
                if b in tasks:
                    continue
                # `specs` keeps these objects alive for the call: their ids are stable keys.
                k = (id(s.run_policy), id(s.constraints), id(s.metadata))
                no = shapes.get(k)
                if no is None:
                    no = shapes[k] = self._shape(s)
                p = s.payload
                tasks[b] = (no, p.data, p.content_type, s.handler, s.dedupe_key)
                added.append(b)
            try:
                self._submit(events, dur)
            except BaseException as e:
                for b in added:  # nothing was written: these tasks do not exist
                    tasks.pop(b, None)
                if not isinstance(e, CommandRejectedError):
                    raise
                keys = [s.dedupe_key for s in new_specs if s.dedupe_key is not None]
                if not keys:
                    raise
                # A dedupe key may have been taken by another thread between the lookup and the
                # write: its task is live now, and looking again answers that spec with it.
                # Each such retry follows another writer's success (a bounded count of 3 let
                # a batch that lost three races raise the refusal, although every key it
                # lost named a live task).
                if any(lookup(k) is not None for k in keys):
                    continue
                # Every key is free again: the task that took one may have finished since it
                # refused this write (fast handlers), and the write goes through now — raising
                # failed a submit over a key that no live task holds. A refusal such a race
                # does not explain (a task id already taken) repeats itself word for word and
                # is raised the second time; a lost race names its holder, a new task each
                # time (a finished task never holds a key again).
                text = str(e)
                if text == refused:
                    raise
                refused = text
                continue
            return ids

    def submit_uniform(
        self,
        template: TaskSpec,
        payloads: Iterable[tuple[bytes, str | None]],
        *,
        origin: TimeLike | None = None,
        durability: DurabilityPolicy | str | None = None,
        now: int | None = None,
    ) -> list[TaskId]:
        """:meth:`submit_many` for tasks that differ only in their payload — what a bulk
        enqueue usually is: one record (all or nothing), one task per ``(data, content_type)``
        of ``payloads``, each with a fresh id; returns the ids in order.

        ``template`` gives everything else (policy, constraints, metadata, handler); its own
        task id and payload are not used. What the tasks share is converted once and no
        :class:`TaskSpec` is built per task, so a task costs a few tuples here instead of a
        spec, its ids and its events' objects. A template with a dedupe key is refused (one
        key names one live task); a cron template goes through :meth:`submit_many` (each task
        derives its first window).
        """
        ids = self._uniform(template, payloads, origin, durability, now, nonblocking=False)
        assert ids is not None
        return ids

    def try_submit_uniform(
        self,
        template: TaskSpec,
        payloads: Iterable[tuple[bytes, str | None]],
        *,
        origin: TimeLike | None = None,
        now: int | None = None,
    ) -> list[TaskId] | None:
        """:meth:`submit_uniform` with Deferred durability that never waits: ``None`` (and
        nothing written) when it would — the authority's lock is held by another writer, an
        automatic snapshot is due, the template is cron, or the authority has no such path.
        For an event-loop thread, which then hands the submit to a worker thread (the
        runtime's ``asubmit``). Refusals (bad payloads, a dedupe key) raise as usual."""
        return self._uniform(template, payloads, origin, _DEFERRED, now, nonblocking=True)

    def _uniform(
        self,
        template: TaskSpec,
        payloads: Iterable[tuple[bytes, str | None]],
        origin: TimeLike | None,
        durability: DurabilityPolicy | str | None,
        now: int | None,
        *,
        nonblocking: bool,
    ) -> list[TaskId] | None:
        if type(template) is not TaskSpec and not isinstance(template, TaskSpec):
            raise WrongTypeError(
                f"submit_uniform takes a TaskSpec template, got {type(template).__name__} "
                f"{template!r:.80}"
            )
        if template.dedupe_key is not None:
            raise ValidationError(
                f"a dedupe key names one task, so it cannot be shared by a batch (template "
                f"key {template.dedupe_key!r}); use submit_many with one spec per task"
            )
        items = _checked_payloads(payloads)
        policy, c, m, handler = (
            template.run_policy,
            template.constraints,
            template.metadata,
            template.handler,
        )
        if type(policy) is not OncePolicy and type(policy) is not RepeatPolicy:
            if nonblocking:
                return None  # cron derivation reads the task's record: the blocking path
            specs = [
                TaskSpec._trusted(
                    TaskId.new(), TaskPayload._trusted(d, ct), policy, c, m, handler, None
                )
                for d, ct in items
            ]
            return self.submit_many(specs, origin=origin, durability=durability, now=now)
        t = self._now(now)
        o = t if origin is None else to_millis(origin, "origin")
        if o < 0:
            raise ValidationError(f"origin must be >= 0 ms, got {origin!r}")
        dur = self._dur(durability)
        if not items:
            return []
        # The runs every task gets, derived once: (index, scheduled_at).
        if isinstance(policy, RepeatPolicy):
            n, step = policy.count, policy.interval_ms
            if o + (n - 1) * step > I64_MAX:
                raise DerivationError(
                    f"the last run (repeat {n} every {step} ms from {o}) would be past int64 "
                    "ms; nothing was submitted"
                )
            runs = [(k, o + k * step) for k in range(n)]
        else:
            runs = [(0, o)]
        shape, (pw, cw, mw) = self._template_parts(template)
        # (A nonblocking submit leaves promotion to the tick: reading the pause flag may wait.)
        ready = 0 if nonblocking else self._due_on_time(policy, runs, t)
        tasks = self._tasks
        uniform = self._submit_uniform
        try_uniform = self._try_uniform
        if nonblocking and (uniform is None or try_uniform is None):
            return None
        if uniform is not None:
            # The core builds the events: ids are drawn here, task by task (task, its runs).
            step = 16 * (1 + len(runs))
            ids = random_id_bytes(len(items) * (1 + len(runs)))
            tids = [ids[i : i + 16] for i in range(0, len(ids), step)]
            for tid, (data, ct) in zip(tids, items, strict=True):
                # Known before the write (see submit_many).
                tasks[tid] = (shape, data, ct, handler, None)
            spec_wire = (_TEMPLATE_ID, handler, b"", None, pw, cw, mw, None)
            if not nonblocking:
                uniform(spec_wire, items, runs, o, t, ids, dur, ready=ready)
            else:
                assert try_uniform is not None
                done = None
                try:
                    done = try_uniform(spec_wire, items, runs, o, t, ids, ready=ready)
                finally:
                    if done is None:  # nothing written (would wait, or refused): no rows
                        for tid in tids:
                            tasks.pop(tid, None)
                if done is None:
                    return None
        else:
            tids = random_ids(len(items))
            rids = iter(random_ids(len(items) * len(runs)))
            events: list[EventTuple] = []
            add = events.append
            for tid, (data, ct) in zip(tids, items, strict=True):
                add((0, (tid, handler, data, ct, pw, cw, mw, None), o, t))
                for k, at in runs:
                    rid = next(rids)
                    add((1, rid, tid, k, at, t))
                    if k < ready:
                        add((2, rid, _SCHEDULED, _READY, None, None, t))
                tasks[tid] = (shape, data, ct, handler, None)
            self._submit(events, dur)
        from_bytes = TaskId.from_bytes
        return [from_bytes(b) for b in tids]

    def _due_on_time(
        self, policy: OncePolicy | RepeatPolicy, runs: list[tuple[int, int]], now: int
    ) -> int:
        """How many of ``runs`` (ascending ``(index, scheduled_at)``) of a Once/Repeat task
        the submit's own record may create Ready: those due at ``now`` and on time (within
        the misfire grace), unless the engine is paused — the promotion the next tick would
        make at ``now`` with no reason, without a record and a tick of its own. Late runs are
        left to the tick's misfire planning."""
        if self._auth.is_paused:
            return 0
        return _on_time_prefix(runs, now, policy.misfire.grace_ms)

    def _template_parts(self, template: TaskSpec) -> tuple[int, tuple[Any, Any, Any]]:
        """The shape number of ``template`` and the wire tuples of its policy, constraints
        and metadata, cached by identity."""
        hit = self._templates.get(id(template))
        if hit is not None and hit[0] is template:
            return hit[1], hit[2]
        shape = self._shape(template)
        parts = (
            template.run_policy.to_wire(),
            template.constraints.to_wire(),
            template.metadata.to_wire(),
        )
        with self._shape_lock:
            if shape in self._shapes:  # not forgotten by a prune meanwhile
                if len(self._templates) >= _MAX_TEMPLATES:
                    self._templates.clear()
                self._templates[id(template)] = (template, shape, parts)
        return shape, parts

    # --- scheduler tick ----------------------------------------------------------------------

    def tick(self, now: int | None = None) -> TickReport:
        """Do everything that is due at ``now``, in as few batches as possible.

        1. The **expiry sweep** (even when paused): expired Leased → Ready; expired Running →
           attempt finished as Lost → retry decision (RetryWait with backoff, or Failed).
           Leased/Running runs without a lease count as expired (a crash between records).
        2. Unless paused: RetryWait → Ready when ``not_before <= now``, and Scheduled → Ready
           under each task's misfire policy, with cron window refills — one batch per page.
        """
        t = self._now(now)
        with self._lock:
            return self._tick(t)

    def _tick(self, now: int) -> TickReport:
        expired = created = promoted = misfired = retried = batches = 0
        if not self._windows_checked:
            self._windows_checked = True
            created, batches = self._refill_short_windows(now)
        while True:
            swept, made, n_batches = self._sweep(now)
            expired += swept
            created += made
            batches += n_batches
            if swept < PAGE:
                break
        if not self._auth.is_paused:
            while True:
                events: list[EventTuple] = []
                lean = self._due_retry_ids
                if lean is not None:
                    retries = lean(now, PAGE)
                    due_at = {rid: now if nb is None else nb for rid, nb in retries}
                else:
                    retries = self._auth.due_retries(now, PAGE)
                    due_at = {w[0]: now if w[10] is None else w[10] for w in retries}
                events.extend((2, rid, _RETRY_WAIT, _READY, None, None, now) for rid in due_at)
                retried += len(retries)
                due, reasons = self._due_page(now)
                if reasons is not None:  # plain promotions, no planning
                    events.extend(
                        (2, w[0], _SCHEDULED, _READY, None, r, now)
                        for w, r in zip(due, reasons, strict=True)
                    )
                    p, m, c = len(due), 0, 0
                else:
                    p, m, c = self._plan_promotions(due, now, events, len(due) >= PAGE)
                promoted += p
                misfired += m
                created += c
                if not events:
                    break
                self._submit(events, self.durability)
                self._due_at.update(due_at)  # due at the end of their backoff, not when promoted
                batches += 1
                if len(retries) < PAGE and len(due) < PAGE:
                    break
        self.tick_finished += misfired
        return TickReport(promoted, misfired, retried, expired, created, batches)

    def _due_page(self, now: int) -> tuple[Sequence[Any], list[str | None] | None]:
        """A page of due Scheduled runs: ``(rows, reasons)`` with ``(run_id, task_id,
        scheduled_at)`` rows when every one is a plain promotion — on time, or late under a
        catch-up-all misfire policy, whose history reason is in ``reasons`` (the common cases,
        read without whole run tuples) — else ``(run tuples, None)`` for
        :meth:`_plan_promotions` to plan misfires / cron refills."""
        lean = self._due_ids
        if lean is not None:
            rows = lean(now, PAGE)
            shape_of = self._shape_info
            reasons: list[str | None] = []
            for _rid, tid, sched in rows:
                info = shape_of(tid)
                grace = info.grace_ms
                if grace is None:
                    break  # cron: plan this page the full way
                late = now - sched
                if late <= grace:
                    reasons.append(None)
                elif info.catch_up_all:
                    reasons.append(caught_up_reason(late))
                else:
                    break  # skip / coalesce / a cap: plan this page the full way
            else:
                return rows, reasons
        return self._auth.due_scheduled(now, PAGE), None

    def _plan_promotions(
        self, due: Sequence[RunTuple], now: int, events: list[EventTuple], full_page: bool
    ) -> tuple[int, int, int]:
        """Append the promotion events of ``due`` Scheduled runs; returns the counts.

        A misfire plan (coalesce, a catch-up cap, a cron window) is about **all** of a task's
        missed runs at once. ``due`` is one page of the due runs of every task, in time order,
        so with a ``full_page`` a task's missed runs may go on in the next page: each task
        that needs a plan is then planned over all of its due Scheduled runs (planned once:
        the next page no longer holds them). Planning page by page ran coalesce once per page.
        """
        by_task: dict[bytes, list[RunTuple]] = {}
        for w in due:
            by_task.setdefault(w[1], []).append(w)
        promoted = misfired = created = 0
        for tid, runs in by_task.items():
            info = self._info(tid)
            if not info.is_cron:
                grace = effective_grace_ms(info.policy.misfire.grace_ms)
                if all(now - w[4] <= grace for w in runs):
                    # All on time (the common case): plain promotions, no planning. (The runs
                    # a later page holds are later still: on time too.)
                    events.extend((2, w[0], _SCHEDULED, _READY, None, None, now) for w in runs)
                    promoted += len(runs)
                    continue
                plan = plan_misfire(
                    self._due_runs(info, runs, now, full_page), info.policy.misfire, now
                )
                transitions = plan.transitions
            elif not self._derivable(tid, info.policy, self._record(info.task_id)):
                # Its runs already derived still run (under its misfire policy); no new ones.
                plan = plan_misfire(
                    self._due_runs(info, runs, now, full_page), info.policy.misfire, now
                )
                transitions = plan.transitions
            else:
                rec = self._record(info.task_id)
                tplan = plan_task_promotion(
                    _At(now),
                    info.task_id,
                    info.policy,
                    self._due_runs(info, runs, now, full_page),
                    now=now,
                    already_derived=rec.derived,
                    schedule_origin=rec.origin,
                    after=rec.last_scheduled_at,
                    non_terminal=rec.non_terminal,
                )
                events.extend(c.to_wire() for c in tplan.creates)
                created += len(tplan.creates)
                transitions = tplan.transitions
            for tr in transitions:
                events.append(
                    (2, tr.run_id.bytes, _SCHEDULED, int(tr.to_state), None, tr.reason, now)
                )
                if tr.to_state is _RS_CANCELED:
                    misfired += 1
                else:
                    promoted += 1
        return promoted, misfired, created

    def _due_runs(
        self, info: _TaskInfo, page: list[RunTuple], now: int, full_page: bool
    ) -> list[RunInstance]:
        """The task's due Scheduled runs: those of ``page``, or with a ``full_page`` all of
        them (some may be in the pages after it), in schedule order."""
        if not full_page:
            return [RunInstance.from_wire(w) for w in page]
        runs = [
            r
            for r in self._auth.runs_for_task(info.task_id)
            if r.state is RunState.SCHEDULED and r.scheduled_at <= now
        ]
        runs.sort(key=lambda r: (r.scheduled_at, r.ordinal))
        return runs

    def _sweep(self, now: int) -> tuple[int, int, int]:
        """One page of the expiry sweep as one batch; returns (runs, runs created, batches)."""
        expired = self._auth.expired_leases(now, PAGE)
        if not expired:
            return 0, 0, 0
        # (a page that yields nothing to do ends the loop in _tick: swept < PAGE)
        events: list[EventTuple] = []
        swept = 0
        leaving: dict[bytes, int] = {}
        outcome: list[tuple[bytes, RunState, int]] = []
        #: attempts finished as Lost, by handler (a Leased run had none open)
        lost: dict[str | None, int] = {}
        for w in expired:
            run = RunInstance.from_wire(w)
            info = self._shape_info(w[1])
            cmds = plan_expiry(run, info.constraints, now, self._rng)
            if not cmds:
                continue
            swept += 1
            events.extend(c.to_wire() for c in cmds)
            if any(type(c) is AttemptFinishCommand for c in cmds):
                h = self._handler_of(w[1])
                lost[h] = lost.get(h, 0) + 1
            target = cmds[-1].new_state  # type: ignore[attr-defined]
            outcome.append((w[0], target, run.attempt_count))
            if target in _TERMINAL and info.is_cron:
                leaving[w[1]] = leaving.get(w[1], 0) + 1
        created = 0
        for tid, n in leaving.items():
            refill = self._refill_events(_task_id_of(tid), self._shape_info(tid).policy, now, n)
            created += sum(1 for e in refill if e[0] == 1)
            events.extend(refill)
        self._submit(events, self.durability)
        for rid, target, counted in outcome:
            self._inflight.pop(rid, None)
            if target in _TERMINAL or counted == 0:
                self._counts.pop(rid, None)
            else:
                self._counts[rid] = counted
            if target is _RS_READY:  # a Leased run never started: due again from now
                self._due_at[rid] = now
        self.tick_finished += sum(1 for _, target, _ in outcome if target in _TERMINAL)
        if lost and self._on_lost is not None:
            self._on_lost(lost)  # written: the log holds these attempts as Lost now
        return swept, created, 1 if events else 0

    def _refill_events(
        self, task_id: TaskId, policy: RunPolicy, now: int, leaving: int
    ) -> list[EventTuple]:
        """Cron window refill for ``leaving`` runs of task ``task_id`` (its ``policy``) turning
        terminal in this batch. The id is passed on its own: the info a dispatch keeps may be
        the one its shape shares with other tasks, and its ``task_id`` another task's (whose
        window the refill would then fill instead).

        Written in the same batch as the terminal transition, so the window can never be left
        empty by a crash (a cron task with no Scheduled run would never wake up again).

        The refill only derives the next occurrences; it never folds a missed stretch nor
        promotes. Runs it derives that are already missed fall due at once, and the next tick
        plans them together with the task's other due Scheduled runs as **one** missed window
        (a finish, cancel or expiry that folded here would see only the stretch after the last
        derived run, and the older missed runs would be planned by the tick as a second
        window: coalesce would run twice, a catch-up cap would be exceeded). While paused,
        resume applies the misfire policy the same way.
        """
        rec = self._auth.get_task(task_id)
        if rec is None or rec.canceled_at is not None:
            return []
        if not self._derivable(task_id.bytes, policy, rec):
            return []
        d = derive_runs(
            _At(now),
            task_id,
            policy,
            rec.derived,
            rec.origin,
            after=rec.last_scheduled_at,
            non_terminal=max(0, rec.non_terminal - leaving),
        )
        return [c.to_wire() for c in run_create_commands(d, timestamp=now)]

    def _derivable(self, tid: bytes, policy: RunPolicy, rec: TaskRecordLike) -> bool:
        """Whether the run times of task ``tid``'s ``policy`` can be computed here. When they
        cannot (a cron policy read from a log: :attr:`CronPolicy.unresolved`) and the task
        (``rec``) still has runs to derive, logs a warning the first time per task."""
        why = policy.unresolved  # looked up each time: a zone that appears is picked up
        if why is None:
            self._stalled.pop(tid, None)
            return True
        total = policy.total_runs()
        if total is not None and rec.derived >= total:
            return False  # every run it may have exists: nothing is held back
        if tid not in self._stalled:
            self._stalled[tid] = why
            _LOG.warning(
                "cron task %s: its next occurrences cannot be derived on this machine (%s); "
                "the runs it already has still run, the task is kept unchanged in the log, "
                "and derivation resumes once the queue is opened where this resolves",
                _task_id_of(tid),
                why,
            )
        return False

    def _refill_short_windows(self, now: int) -> tuple[int, int]:
        """Refill the windows of cron tasks holding fewer non-terminal runs than their window
        while runs remain to derive — a task whose occurrences could not be computed where the
        queue last ran (:meth:`_derivable`), now perhaps opened where they can. Returns (runs
        created, batches). One query of the live tasks, once per engine (the first tick)."""
        find = getattr(self._auth, "short_cron_windows", None)
        if find is None:
            return 0, 0
        created = batches = 0
        ids: list[bytes] = find()
        for i in range(0, len(ids), PAGE):
            events: list[EventTuple] = []
            for tid in ids[i : i + PAGE]:
                try:
                    refill = self._refill_events(
                        _task_id_of(tid), self._shape_info(tid).policy, now, 0
                    )
                except ValidationError as e:
                    # Best effort: the task stays as it was (as it would without this step),
                    # and opening the queue never fails for it.
                    _LOG.warning(
                        "cron task %s: its window was not refilled: %s", _task_id_of(tid), e
                    )
                    continue
                events.extend(refill)
            if events:
                self._submit(events, self.durability)
                created += len(events)
                batches += 1
        return created, batches

    # --- dispatch (hot path) -----------------------------------------------------------------

    def dispatch_next(
        self,
        owner: str | None = None,
        now: int | None = None,
        limit: int = 1,
        *,
        durability: DurabilityPolicy | str | None = None,
        busy_keys: Collection[str] = (),
    ) -> list[Dispatch]:
        """Promote what is due, select up to ``limit`` Ready runs and lease + start them.

        Per run, one batch holds Ready → Leased, ``LeaseAcquire``, Leased → Running and
        ``AttemptStart``; all runs of the call share that batch. Runs whose concurrency key is
        held (or taken by an earlier pick) are skipped, not dropped. ``busy_keys``: keys to
        treat as held besides those the log holds — the runtime passes the keys of handlers
        still running after their outcome was recorded (a timed-out thread it cannot stop).
        Returns ``[]`` when paused or nothing is Ready.
        """
        t = self._now(now)
        who = self.owner if owner is None else _check_owner(owner)
        if type(limit) is not int or limit < 0:
            raise ValidationError(f"limit must be an int >= 0, got {limit!r}")
        dur = self.durability if durability is None else DurabilityPolicy.parse(durability)
        if busy_keys:
            busy_keys = _check_keys(busy_keys)
        if self._dispatch_ready is not None and self._selector is None and limit <= _FAST_LIMIT:
            fast = self._dispatch_fast(t, who, limit, busy_keys)
            if dur is _IMMEDIATE and fast:
                self._auth.flush()
            return fast
        auth = self._auth
        with self._lock:
            # Promote only when something is due: index peeks instead of scans, in one call
            # into the core when the authority offers it.
            peek = self._dispatch_state
            if peek is not None:
                due, paused = peek(t)
            else:
                nd = auth.next_due()
                nl = auth.next_lease_expiry()
                due = (nd is not None and nd <= t) or (nl is not None and nl <= t)
                paused = auth.is_paused
            if due:
                self._tick(t)
            if limit == 0 or paused:
                return []
            # One candidate per key at most: a busy key costs one more candidate.
            if self._selector is None:
                cands = auth.ready_candidates(limit + len(busy_keys))
                if busy_keys:
                    cands = [c for c in cands if c[5] not in busy_keys][:limit]
            else:
                raw = auth.ready_candidates(max(limit, SELECTOR_SCAN) + len(busy_keys))
                cands = self._select(raw, limit, busy_keys)
            if not cands:
                return []
            info_of = self._info
            counts = self._counts
            due_at = self._due_at
            boot = self._boot_seq
            events: list[EventTuple] = []
            add = events.extend
            out: list[Dispatch] = []
            infos: list[_TaskInfo] = []
            for rid, tid, _prio, sched, cseq, _key in cands:
                info = info_of(tid)
                counted = counts.get(rid)
                if counted is None:
                    if cseq > boot:
                        counted = 0
                    else:
                        run = auth.get_run(_run_id_of(rid))
                        counted = 0 if run is None else run.attempt_count
                aid = _new_attempt()
                exp = t + info.lease_ms
                if exp > I64_MAX:
                    exp = I64_MAX
                add(
                    (
                        (2, rid, _READY, _LEASED, None, None, t),
                        (5, rid, who, exp, t),
                        (2, rid, _LEASED, _RUNNING, None, None, t),
                        (3, rid, aid.bytes, t),
                    )
                )
                infos.append(info)
                out.append(
                    _dispatch_of(
                        rid,
                        aid,
                        counted + 1,
                        info.spec,
                        info.timeout_ms,
                        sched,
                        exp,
                        t,
                        who,
                        due_at.pop(rid, sched),
                    )
                )
            # Apply (Deferred) and update the hints under the lock, so no other writer ever sees
            # the batch applied with the hints not yet updated; wait for durability outside it.
            auth.submit_wire(events, _DEFERRED)
            inflight = self._inflight
            for d, info in zip(out, infos, strict=True):
                rid = d.run_id.bytes
                counts.pop(rid, None)
                inflight[rid] = (
                    d.attempt_id.bytes,
                    d.attempt,
                    info,
                    who,
                    d.lease_expires_at,
                    d.spec.task_id.bytes,
                )
        if dur is _IMMEDIATE:
            auth.flush()  # group commit: one fdatasync covers every record appended so far
        return out

    def _dispatch_fast(
        self, t: int, who: str, limit: int, busy_keys: Collection[str] = ()
    ) -> list[Dispatch]:
        """:meth:`dispatch_next` with the default order over the storage authority: the
        due check, the pick and the lease + start record are one call into the core (a
        second one after promoting when something was due)."""
        ready = self._dispatch_ready
        assert ready is not None
        rnd = _random_ids(limit) if limit else b""
        with self._lock:
            if busy_keys:
                got = ready(t, who, limit, self.default_lease_ms, rnd, True, list(busy_keys))
            else:
                got = ready(t, who, limit, self.default_lease_ms, rnd)
            if got is None:
                self._tick(t)
                got = ready(t, who, limit, self.default_lease_ms, rnd, False, list(busy_keys))
            if not got:
                return []
            spec_of = self._spec_and_info
            counts = self._counts
            due_at = self._due_at
            inflight = self._inflight
            out: list[Dispatch] = []
            for rid, tid, sched, attempt, aid, exp in got:
                spec, info = spec_of(tid)
                out.append(
                    _dispatch_of(
                        rid,
                        _attempt_id_of(aid),
                        attempt,
                        spec,
                        info.timeout_ms,
                        sched,
                        exp,
                        t,
                        who,
                        due_at.pop(rid, sched),
                    )
                )
                counts.pop(rid, None)
                inflight[rid] = (aid, attempt, info, who, exp, tid)
        return out

    def _select(self, raw: list[Any], limit: int, busy_keys: Collection[str] = ()) -> list[Any]:
        assert self._selector is not None
        by_id = {}
        cands = []
        for w in raw:
            c = Candidate(_run_id_of(w[0]), TaskId.from_bytes(w[1]), w[2], w[3], w[4], w[5])
            by_id[c.run_id] = w
            cands.append(c)
        picked = self._selector.select(cands, limit, frozenset(busy_keys))
        # The selector contract says: each candidate once, one per key. Re-check it, since a
        # violating batch would be refused whole by the authority.
        out = []
        seen: set[RunId] = set()
        keys: set[str] = set()
        for c in picked[:limit]:
            w = by_id.get(c.run_id)
            if w is None or c.run_id in seen:
                continue
            if c.concurrency_key is not None:
                if c.concurrency_key in keys or c.concurrency_key in busy_keys:
                    continue
                keys.add(c.concurrency_key)
            seen.add(c.run_id)
            out.append(w)
        return out

    # --- finishing (hot path) ----------------------------------------------------------------

    def finish_attempt(
        self,
        run_id: RunId,
        attempt_id: AttemptId,
        outcome: AttemptOutcome,
        *,
        error: str | None = None,
        output: bytes | None = None,
        retry_delay: DurationLike | None = None,
        now: int | None = None,
        durability: DurabilityPolicy | str | None = None,
    ) -> RunState:
        """Record an attempt's outcome and the retry decision in **one** batch; returns the
        run's new state.

        Success → Completed; TerminalFailure → Failed; RetryableFailure / Timeout / Lost →
        RetryWait (``not_before = now + backoff``, or ``now + retry_delay`` if given) while
        attempts remain, else Failed; Suspended → Suspended (the attempt is given back).

        If the run was canceled while the attempt ran, nothing is written and ``Canceled`` is
        returned. If the sweep already finished the attempt as Lost (the lease expired), a
        :class:`~actionqueue.errors.LeaseError` is raised: the result arrived too late.
        """
        t = self._clock.now() if now is None else self._now(now)
        outcome, output = _check_finish(outcome, error, output)
        rid = run_id.bytes
        aid = attempt_id.bytes
        entry = self._inflight.get(rid)
        if entry is None or entry[0] != aid:
            return self._finish_slow(
                run_id, attempt_id, outcome, error, output, retry_delay, t, durability
            )
        counted = entry[1]
        info = entry[2]
        events, target = self._finish_events(
            rid, aid, counted, info, outcome, error, output, retry_delay, t
        )
        dur = self.durability if durability is None else DurabilityPolicy.parse(durability)
        # The batch is applied and the hints updated under the engine lock, as one step: a
        # dispatch (which holds the lock) can never see the run RetryWait/Ready in the authority
        # while the hints still describe the finished attempt (a retry with no backoff is due at
        # once, and a stale count would start it with a wrong attempt number and have its finish
        # refused). Only the apply is under the lock; the fsync wait (Immediate) happens after
        # it, so finishing workers still share one group commit and never wait on a dispatch's
        # fsync.
        with self._lock:
            if self._inflight.get(rid) is not entry:
                # Canceled, swept or released since the hint was read (those drop it under
                # this lock): decide from the run itself.
                stale = True
            else:
                stale = False
                if info.is_cron and target in _TERMINAL:
                    events.extend(self._refill_events(_task_id_of(entry[5]), info.policy, t, 1))
                self._apply_finish(rid, events, counted, target)
        if stale:
            return self._finish_slow(
                run_id, attempt_id, outcome, error, output, retry_delay, t, durability
            )
        if dur is _IMMEDIATE:
            self._auth.flush()
        return target

    def _finish_events(
        self,
        rid: bytes,
        aid: bytes,
        counted: int,
        info: _TaskInfo,
        outcome: AttemptOutcome,
        error: str | None,
        output: bytes | None,
        retry_delay: DurationLike | None,
        t: int,
    ) -> tuple[list[EventTuple], RunState]:
        """The AttemptFinish + decided transition of one finish, and the run's new state."""
        target = decide(outcome, counted, info.max_attempts, info.retry_on)
        not_before = None
        reason = None
        if target is _RS_RETRY_WAIT:
            if retry_delay is None:
                delay = info.retry.delay_for(counted, self._rng)
            else:
                delay = to_duration_ms(retry_delay, "retry_delay")
                if delay < 0:
                    raise ValidationError(f"retry_delay must be >= 0, got {retry_delay!r}")
            not_before = t + delay
            if not_before > I64_MAX:
                not_before = I64_MAX
            reason = f"{outcome}: attempt {counted} of {info.max_attempts}"
        elif target is _RS_FAILED and outcome is not _OUT_TERMINAL:
            reason = f"{outcome}: attempt {counted} of {info.max_attempts}, no retry"
        return [
            (4, rid, aid, int(outcome), error, output, t),
            (2, rid, _RUNNING, int(target), not_before, reason, t),
        ], target

    def finish_attempts(
        self,
        finishes: Sequence[Finish],
        *,
        now: int | None = None,
        durability: DurabilityPolicy | str | None = None,
    ) -> list[RunState | ActionQueueError]:
        """:meth:`finish_attempt` for many attempts: **one** authority record (and, Immediate,
        one fsync) for all of them, which is what a runtime finishing many small attempts needs.

        Returns one item per finish, in order: the run's new state, or the
        :class:`~actionqueue.errors.ActionQueueError` that :meth:`finish_attempt` would have
        raised for it (a late result, an unknown run...). Nothing is raised for a single item.
        If the authority refuses the combined record (one of the runs was canceled or swept
        meanwhile), each finish is retried on its own, so one stale result never blocks the
        others. Finishes of attempts this engine did not dispatch, and of cron runs (their window
        refill reads the task), take the one-by-one path inside the same call.
        """
        t = self._clock.now() if now is None else self._now(now)
        dur = self.durability if durability is None else DurabilityPolicy.parse(durability)
        results: list[RunState | ActionQueueError | None] = [None] * len(finishes)
        inflight = self._inflight
        fast: list[tuple[int, bytes, int, RunState, Any, list[EventTuple]]] = []
        slow: list[int] = []
        seen: set[bytes] = set()
        for i, f in enumerate(finishes):
            try:
                rid = f.run_id.bytes
                aid = f.attempt_id.bytes
                entry = inflight.get(rid)
                if entry is None or entry[0] != aid or entry[2].is_cron or rid in seen:
                    slow.append(i)
                    continue
                seen.add(rid)
                if f.outcome is _OUT_SUCCESS and f.error is None and f.output is None:
                    # The common case, spelled out: a success always completes the run.
                    fast.append(
                        (
                            i,
                            rid,
                            entry[1],
                            _RS_COMPLETED,
                            entry,
                            [
                                (4, rid, aid, _SUCCESS_WIRE, None, None, t),
                                (2, rid, _RUNNING, _COMPLETED_WIRE, None, None, t),
                            ],
                        )
                    )
                    continue
                outcome, output = _check_finish(f.outcome, f.error, f.output)
                ev, target = self._finish_events(
                    rid, aid, entry[1], entry[2], outcome, f.error, output, f.retry_delay, t
                )
            except ActionQueueError as e:
                results[i] = e
                continue
            except AttributeError:  # not a Finish of ids: this item's error, not the call's
                results[i] = WrongTypeError(
                    f"finishes[{i}]: expected a Finish(run_id: RunId, attempt_id: AttemptId, "
                    f"...), got {f!r:.80}"
                )
                continue
            fast.append((i, rid, entry[1], target, entry, ev))
        wrote = False
        if fast:
            with self._lock:
                # Hints dropped since they were read (cancel, sweep, release: all under this
                # lock) go the one-by-one way, which decides from the run itself.
                live = []
                for item in fast:
                    if inflight.get(item[1]) is item[4]:
                        live.append(item)
                    else:
                        slow.append(item[0])
                events: list[EventTuple] = []
                for item in live:
                    events += item[5]
                try:
                    if events:
                        self._submit_deferred(events)
                except (CommandRejectedError, RecordTooLargeError):
                    # One refused finish, or a record over the size limit only because the
                    # batch is large: each finish in a record of its own, so that only a
                    # finish that is refused (or too large by itself) gets the error.
                    slow.extend(item[0] for item in live)
                else:
                    wrote = bool(events)
                    for i, rid, counted, target, _, _ in live:
                        self._note_finished(rid, counted, target)
                        results[i] = target
            slow.sort()
        for i in slow:
            f = finishes[i]
            try:
                results[i] = self.finish_attempt(
                    f.run_id,
                    f.attempt_id,
                    f.outcome,
                    error=f.error,
                    output=f.output,
                    retry_delay=f.retry_delay,
                    now=t,
                    durability=_DEFERRED,
                )
                wrote = True
            except ActionQueueError as e:
                results[i] = e
        if wrote and dur is _IMMEDIATE:
            self._auth.flush()
        return [r if r is not None else _RS_CANCELED for r in results]

    def _apply_finish(
        self, rid: bytes, events: list[EventTuple], counted: int, target: RunState
    ) -> None:
        """Apply a finish batch (Deferred) and update the hints; call with the lock held."""
        try:
            self._submit_deferred(events)
        except CommandRejectedError:
            # The hint was stale (swept, canceled): forget it; the caller sees the refusal.
            self._inflight.pop(rid, None)
            raise
        self._note_finished(rid, counted, target)

    def _note_finished(self, rid: bytes, counted: int, target: RunState) -> None:
        entry = self._inflight.pop(rid, None)
        if entry is not None and entry[2].single_run and target in _TERMINAL:
            # The task's only run is finished: its row (the payload included) would only be
            # read again by a lookup, which then asks the authority. Without this a long-lived
            # queue kept every finished task's payload in Python until prune.
            self._tasks.pop(entry[5], None)
        if target is _RS_RETRY_WAIT:
            self._counts[rid] = counted
        elif target is _RS_SUSPENDED and counted > 1:
            self._counts[rid] = counted - 1
        else:
            self._counts.pop(rid, None)

    def _finish_slow(
        self,
        run_id: RunId,
        attempt_id: AttemptId,
        outcome: AttemptOutcome,
        error: str | None,
        output: bytes | None,
        retry_delay: DurationLike | None,
        now: int,
        durability: DurabilityPolicy | str | None,
    ) -> RunState:
        """``finish_attempt`` for a run this engine did not dispatch (e.g. after a restart)."""
        run = self._auth.get_run(run_id)
        if run is None:
            raise NotFoundError(f"run {run_id} is not known to the authority")
        attempt = next((a for a in run.attempts if a.attempt_id == attempt_id), None)
        if attempt is None:
            raise CommandRejectedError(f"run {run_id} has no attempt {attempt_id}")
        if run.current_attempt != attempt_id:
            if attempt.outcome is AttemptOutcome.CANCELED:
                return _RS_CANCELED
            raise LeaseError(
                f"attempt {attempt_id} of run {run_id} was already finished as "
                f"{attempt.outcome} at {attempt.finished_at}; the run is {run.state}"
            )
        self._inflight[run_id.bytes] = (
            attempt_id.bytes,
            run.attempt_count,
            self._info(run.task_id.bytes),
            "" if run.lease is None else run.lease.owner,
            0 if run.lease is None else run.lease.expires_at,
            run.task_id.bytes,
        )
        return self.finish_attempt(
            run_id,
            attempt_id,
            outcome,
            error=error,
            output=output,
            retry_delay=retry_delay,
            now=now,
            durability=durability,
        )

    # --- leases ------------------------------------------------------------------------------

    def heartbeat(
        self,
        run_id: RunId,
        owner: str | None = None,
        now: int | None = None,
        *,
        durability: DurabilityPolicy | str | None = None,
    ) -> int:
        """Extend ``owner``'s lease on a Leased/Running run to ``now + lease``; returns the
        lease's expiry after the heartbeat (a heartbeat never shortens a lease).

        Raises :class:`~actionqueue.errors.LeaseError` when ``owner`` does not hold a live lease
        (expired leases are never revived: the sweep may already have recovered the run).
        """
        t = self._now(now)
        who = self.owner if owner is None else _check_owner(owner)
        rid = _check_run_id(run_id).bytes
        entry = self._inflight.get(rid)
        if entry is not None:
            lease_ms, old = entry[2].lease_ms, entry[4]
        else:
            run = self._auth.get_run(_run_id_of(rid))
            if run is None:
                raise NotFoundError(f"run {_run_id_of(rid)} is not known to the authority")
            lease_ms = self._shape_info(run.task_id.bytes).lease_ms
            old = 0 if run.lease is None else run.lease.expires_at
        exp = min(I64_MAX, t + lease_ms)
        self._submit([(6, rid, who, exp, t)], self._dur(durability))
        exp = max(exp, old)
        with self._lock:
            now_entry = self._inflight.get(rid)
            # Only the attempt that was beaten (not a retry dispatched meanwhile).
            if now_entry is not None and entry is not None and now_entry[0] == entry[0]:
                self._inflight[rid] = (entry[0], entry[1], entry[2], entry[3], exp, entry[5])
        return exp

    def release(
        self,
        run_id: RunId,
        owner: str | None = None,
        now: int | None = None,
        *,
        durability: DurabilityPolicy | str | None = None,
    ) -> None:
        """``owner`` gives a run back without using up an attempt; it becomes Ready again.

        A Leased run: ``LeaseRelease`` + Leased → Ready. A Running run (a dispatched attempt
        that will not be executed, e.g. at shutdown): ``LeaseRelease``, its open attempt finished
        as Suspended (which gives the attempt back), Running → Suspended → Ready — one batch,
        every step in the run's history.
        """
        t = self._now(now)
        who = self.owner if owner is None else _check_owner(owner)
        rid_obj = _check_run_id(run_id)
        rid = rid_obj.bytes
        with self._lock:
            run = self._auth.get_run(rid_obj)
            if run is None:
                raise NotFoundError(f"run {rid_obj} is not known to the authority")
            lease = run.lease
            if run.state not in (RunState.LEASED, RunState.RUNNING):
                raise LeaseError(
                    f"run {rid_obj} is {run.state}; only a Leased or Running run can be released"
                )
            if lease is None or lease.owner != who:
                holder = "nobody" if lease is None else repr(lease.owner)
                raise LeaseError(f"run {rid_obj} is not leased by {who!r} (held by {holder})")
            events: list[EventTuple] = [(8, rid, who, t)]
            if run.state is RunState.LEASED:
                events.append((2, rid, _LEASED, _READY, None, "lease released", t))
            else:
                if run.current_attempt is not None:
                    events.append(
                        (
                            4,
                            rid,
                            run.current_attempt.bytes,
                            int(_OUT_SUSPENDED),
                            "released by owner",
                            None,
                            t,
                        )
                    )
                events.append((2, rid, _RUNNING, _SUSPENDED, None, "released by owner", t))
                events.append((2, rid, _SUSPENDED, _READY, None, "released by owner", t))
            self._submit(events, self._dur(durability))
            self._inflight.pop(rid, None)
            self._due_at[rid] = t
            counted = run.attempt_count - (1 if run.current_attempt is not None else 0)
            if counted > 0:
                self._counts[rid] = counted
            else:
                self._counts.pop(rid, None)

    def flush(self) -> None:
        """Make every record written so far durable (one group-commit fsync at most): what a
        caller that wrote with ``durability=DEFERRED`` does before reporting "done"."""
        self._auth.flush()

    # --- wake-ups ----------------------------------------------------------------------------

    def next_wakeup(self, now: int | None = None) -> int | None:
        """When something next needs :meth:`tick` / :meth:`dispatch_next`: the earliest of the
        next Scheduled run, the next retry and the next lease expiry, clamped to ``now`` (so a
        value ``== now`` means "now"); ``None`` when nothing is pending. While paused only lease
        expiries count. Ready runs are not wake-ups: dispatch while it returns full batches.
        """
        t = self._now(now)
        nl = self._auth.next_lease_expiry()
        best = nl
        if not self._auth.is_paused:
            nd = self._auth.next_due()
            if nd is not None and (best is None or nd < best):
                best = nd
        if best is None:
            return None
        return max(best, t)

    def has_ready(self) -> bool:
        """Whether a Ready run is a dispatch candidate now: the log does not hold its key and
        the queue is not paused. The runtime asks before it calls the queue idle while its
        workers are all held by handlers still running after their outcome was recorded."""
        auth = self._auth
        return not auth.is_paused and bool(auth.ready_candidates(1))

    def ready_on_keys(self, keys: Collection[str]) -> bool:
        """Whether a Ready run of one of ``keys`` (concurrency keys) is a dispatch candidate
        now: the log does not hold its key and the queue is not paused. The runtime asks it
        about keys it keeps busy itself (``busy_keys`` of :meth:`dispatch_next`) before it
        calls the queue idle. Reads the candidates in selection order, so it costs
        O(candidates ahead of the first match) — few when nothing else is dispatchable."""
        wanted = _check_keys(keys)
        auth = self._auth
        if not wanted or auth.is_paused:
            return False
        limit = len(wanted) + 64
        while True:
            cands = auth.ready_candidates(limit)
            if any(c[5] in wanted for c in cands):
                return True
            if len(cands) < limit:
                return False
            limit *= 4

    # --- control -----------------------------------------------------------------------------

    def cancel_task(
        self,
        task_id: TaskId,
        reason: str | None = None,
        *,
        now: int | None = None,
        durability: DurabilityPolicy | str | None = None,
    ) -> None:
        """Cancel a task and every non-terminal run of it (one ``TaskCancel``; each run gets a
        history entry, open attempts are closed as Canceled). Its dedupe key is freed.

        Raises :class:`~actionqueue.errors.NotFoundError` for an unknown task and
        :class:`~actionqueue.errors.InvalidTransitionError` if it is already canceled or
        finished (every run its policy implies exists and is terminal: nothing is left to
        cancel, and a finished task is not turned into a canceled one), as cancelling a
        terminal run does.
        """
        t = self._now(now)
        tid = _check_task_id(task_id)
        if reason is not None and not isinstance(reason, str):
            raise WrongTypeError(f"reason must be a str or None, got {type(reason).__name__}")
        with self._lock:
            rec = self._auth.get_task(tid)
            if rec is None:
                raise NotFoundError(f"task {tid} is not known to the authority")
            if rec.canceled_at is not None:
                raise InvalidTransitionError(
                    f"task {tid} was already canceled at {rec.canceled_at}"
                )
            if task_is_finished(rec):
                raise InvalidTransitionError(
                    f"task {tid} is finished (all {rec.derived} of its runs are terminal): "
                    "there is nothing left to cancel"
                )
            # The hints are about non-terminal runs: read their ids before the cancel ends
            # them. Whole run tuples of every run the task ever had (a long-lived cron or
            # repeat task: 100k runs, 2.6 s, most of it holding the GIL) are not needed.
            lean = self._live_run_ids
            live = None if lean is None else lean(tid.bytes)
            self._submit([(9, tid.bytes, reason, t)], self._dur(durability))
            self._stalled.pop(tid.bytes, None)  # nothing left to derive: no longer stalled
            if live is None:
                live = [r.run_id.bytes for r in self._auth.runs_for_task(tid)]
            for rid in live:
                self._inflight.pop(rid, None)
                self._counts.pop(rid, None)
                self._due_at.pop(rid, None)

    def cancel_run(
        self,
        run_id: RunId,
        reason: str | None = None,
        *,
        now: int | None = None,
        durability: DurabilityPolicy | str | None = None,
    ) -> None:
        """Move one non-terminal run to Canceled (its lease is dropped, an open attempt closed
        as Canceled, its concurrency key freed). A terminal run raises
        :class:`~actionqueue.errors.InvalidTransitionError`: canceled runs cannot be revived and
        finished ones cannot be canceled.
        """
        t = self._now(now)
        rid_obj = _check_run_id(run_id)
        if reason is not None and not isinstance(reason, str):
            raise WrongTypeError(f"reason must be a str or None, got {type(reason).__name__}")
        with self._lock:
            run = self._auth.get_run(rid_obj)
            if run is None:
                raise NotFoundError(f"run {rid_obj} is not known to the authority")
            if run.state in _TERMINAL:
                raise InvalidTransitionError(
                    f"run {rid_obj} is {run.state} (terminal) and cannot be canceled"
                )
            rid = rid_obj.bytes
            events: list[EventTuple] = [
                (2, rid, int(run.state), _CANCELED, None, reason or "run canceled", t)
            ]
            info = self._shape_info(run.task_id.bytes)
            if info.is_cron:
                events.extend(self._refill_events(run.task_id, info.policy, t, 1))
            self._submit(events, self._dur(durability))
            self._inflight.pop(rid, None)
            self._counts.pop(rid, None)
            self._due_at.pop(rid, None)

    def retry_now(
        self,
        run_id: RunId,
        *,
        now: int | None = None,
        durability: DurabilityPolicy | str | None = None,
    ) -> None:
        """Make a waiting run Ready immediately: RetryWait (skipping the rest of its backoff)
        or Suspended → Ready. Works while paused (the run then waits in Ready).

        A terminal run (Completed, Failed, Canceled) raises
        :class:`~actionqueue.errors.InvalidTransitionError`: terminal is final — submit a new
        task to try again. Other states raise :class:`~actionqueue.errors.CommandRejectedError`
        (there is nothing to retry).
        """
        t = self._now(now)
        rid_obj = _check_run_id(run_id)
        with self._lock:
            run = self._auth.get_run(rid_obj)
            if run is None:
                raise NotFoundError(f"run {rid_obj} is not known to the authority")
            if run.state in _TERMINAL:
                raise InvalidTransitionError(
                    f"run {rid_obj} is {run.state} (terminal); it cannot be retried — "
                    "submit a new task instead"
                )
            if run.state not in (_RS_RETRY_WAIT, _RS_SUSPENDED):
                raise CommandRejectedError(
                    f"run {rid_obj} is {run.state}; retry_now applies to RetryWait or "
                    "Suspended runs"
                )
            self._submit(
                [(2, rid_obj.bytes, int(run.state), _READY, None, "retry now", t)],
                self._dur(durability),
            )
            # A RetryWait run whose backoff ended before the tick promoted it was due then.
            nb = run.not_before
            self._due_at[rid_obj.bytes] = t if nb is None else min(t, nb)

    def pause(self, *, now: int | None = None) -> bool:
        """Pause (durable: a restarted engine stays paused). Returns ``False`` if already paused.

        See the module docs for what pause stops.
        """
        t = self._now(now)
        with self._lock:
            if self._auth.is_paused:
                return False
            self._submit([(10, t)], self.durability)
            return True

    def resume(self, *, now: int | None = None) -> bool:
        """Resume after :meth:`pause`. Returns ``False`` if not paused."""
        t = self._now(now)
        with self._lock:
            if not self._auth.is_paused:
                return False
            self._submit([(11, t)], self.durability)
            return True

    @property
    def is_paused(self) -> bool:
        return bool(self._auth.is_paused)

    def prune(
        self,
        before: TimeLike,
        *,
        now: int | None = None,
        durability: DurabilityPolicy | str | None = None,
    ) -> None:
        """Retention: forget terminal runs whose last change is before ``before``, and finished
        tasks left with no runs (``before``: int ms, float seconds or an aware datetime)."""
        t = self._now(now)
        b = to_millis(before, "before")
        with self._lock:
            self._submit([(12, b, t)], self._dur(durability))
            self._forget_specs()  # pruned tasks must not linger in the spec cache

    def _forget_specs(self) -> None:
        """Drop the task rows and shapes (a task met again is looked up in the authority)."""
        self._tasks.clear()
        with self._shape_lock:
            self._shapes.clear()
            self._shape_of.clear()
            self._templates.clear()

    def forget(self) -> None:
        """Drop everything the engine keeps about its authority's tasks and runs (task rows
        with their payloads, shapes, templates, the hints of runs in flight or waiting): what
        a runtime calls once it has closed the authority, which refuses every call from then
        on. Without it a closed queue still referenced kept the payload of every live task
        (and of every task canceled since the last prune) until the queue object was freed."""
        with self._lock:
            self._forget_specs()
            self._inflight.clear()
            self._counts.clear()
            self._due_at.clear()
            self._stalled.clear()

    # --- inspection --------------------------------------------------------------------------

    def get_task(self, task_id: TaskId) -> TaskRecordLike | None:
        return self._auth.get_task(_check_task_id(task_id))

    def get_run(self, run_id: RunId) -> RunInstance | None:
        return self._auth.get_run(_check_run_id(run_id))

    def runs_for_task(self, task_id: TaskId) -> list[RunInstance]:
        return self._auth.runs_for_task(_check_task_id(task_id))

    def counts(self) -> dict[RunState, int]:
        """Runs per state (all nine states present)."""
        return self.index.counts()

    def stats(self) -> dict[str, Any]:
        """Counts by state label plus engine facts, for dashboards and logs.

        ``stalled_tasks`` maps the id (text) of each cron task met so far whose next
        occurrences cannot be derived on this machine to the reason (see the module docs).
        """
        counts = self.counts()
        return {
            "runs": {s.label: n for s, n in counts.items()},
            "total_runs": sum(counts.values()),
            "paused": self.is_paused,
            "in_flight": self._inflight.__len__(),
            "next_due": self._auth.next_due(),
            "next_lease_expiry": self._auth.next_lease_expiry(),
            "latest_sequence": self._auth.latest_sequence,
            # A copy first: a tick (or forget at close) may change it meanwhile on another
            # thread, and iterating a dict that changes size raises.
            "stalled_tasks": {str(_task_id_of(t)): w for t, w in list(self._stalled.items())},
        }

    def __repr__(self) -> str:
        return f"Engine(owner={self.owner!r}, paused={self.is_paused})"
