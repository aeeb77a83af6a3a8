"""What the wire refuses before anything is written: negative times (every time field of every
event, so every accepted event rebuilds with ``MutationCommand.from_wire``), strings UTF-8
cannot encode (lone surrogates), and a malformed ``expected_first`` — each as a typed error
naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from authority_helpers import T0, S, create, dispatch, spec, tr, wal_files

from actionqueue.core.ids import TaskId
from actionqueue.core.mutation import DurabilityPolicy, MutationCommand
from actionqueue.core.run.state import RunState
from actionqueue.errors import SequenceError, ValidationError, WrongTypeError
from actionqueue.storage.mutation import StorageMutationAuthority
from actionqueue.storage.recovery import bootstrap
from actionqueue.storage.wal.fs_reader import WalFsReader

IMM = DurabilityPolicy.IMMEDIATE
NEG = -(2**63)


@pytest.fixture
def auth(data_dir: Path) -> Iterator[StorageMutationAuthority]:
    a, _ = bootstrap(data_dir, snapshot_every=0)
    yield a
    a.close()


def _running(a: StorageMutationAuthority) -> tuple[bytes, bytes, bytes]:
    """A task with one run Running (lease "w1", an open attempt): (task, run, attempt) ids."""
    s = spec()
    cmds, (rid,) = create(s)
    d, att = dispatch(rid, T0)
    a.submit_batch([*cmds, tr(rid, S.SCHEDULED, S.READY, T0), *d], IMM)
    return s.task_id.bytes, rid.bytes, att.bytes


def test_negative_times_are_refused_naming_the_field(
    auth: StorageMutationAuthority, data_dir: Path
) -> None:
    tid, rid, att = _running(auth)
    spec_wire = spec().to_wire()
    cases: list[tuple[tuple[object, ...], str]] = [
        ((0, spec_wire, -1, T0), "TaskCreate.origin"),
        ((0, spec_wire, T0, -1), "TaskCreate.at"),
        ((1, TaskId.new().bytes, tid, 1, -1, T0), "RunCreate.scheduled_at"),
        ((2, rid, 3, 8, None, "neg", -5), "RunTransition.at"),
        ((2, rid, 3, 4, -5, None, T0), "RunTransition.not_before"),
        ((3, rid, TaskId.new().bytes, -1), "AttemptStart.at"),
        ((4, rid, att, 0, None, None, -1), "AttemptFinish.at"),
        ((5, rid, "w1", -1, T0), "LeaseAcquire.expires_at"),
        ((6, rid, "w1", -1, T0), "LeaseHeartbeat.expires_at"),
        ((6, rid, "w1", T0 + 1, -1), "LeaseHeartbeat.at"),
        ((7, rid, "w1", -1), "LeaseExpire.at"),
        ((8, rid, "w1", -1), "LeaseRelease.at"),
        ((9, tid, None, -1), "TaskCancel.at"),
        ((10, -1), "EnginePause.at"),
        ((11, NEG), "EngineResume.at"),
        ((12, NEG, NEG), "Prune.before"),
        ((12, T0, -1), "Prune.at"),
    ]
    auth.flush()
    log, digest, seq = wal_files(data_dir), auth.state_digest(), auth.latest_sequence
    for event, field in cases:
        with pytest.raises(
            ValidationError, match=rf"^{field} must be .*\(negative times are refused\)"
        ):
            auth.submit_wire([event], IMM)
    # In a batch, the message says which event.
    with pytest.raises(ValidationError, match=r"^event 1 of 2: EnginePause\.at .*got -3 "):
        auth.submit_wire([(10, T0), (10, -3)], IMM)
    auth.flush()
    assert (wal_files(data_dir), auth.state_digest(), auth.latest_sequence) == (log, digest, seq)
    # 0 is a time like any other.
    auth.submit_wire([(12, 0, 0)], IMM)


def test_every_logged_event_rebuilds_with_from_wire(
    auth: StorageMutationAuthority, data_dir: Path
) -> None:
    _, rid, _ = _running(auth)
    for bad in ([(2, rid, 3, 8, None, "neg", -5)], [(12, NEG, NEG)]):
        with pytest.raises(ValidationError):
            auth.submit_wire(bad, IMM)
    auth.submit_wire([(2, rid, 3, 8, None, "ok", T0 + 5)], IMM)
    auth.flush()
    entries = list(WalFsReader(data_dir / "wal"))
    assert len(entries) == 8
    for e in entries:
        cmd = MutationCommand.from_wire(e.event, e.sequence)
        assert cmd.to_wire() == tuple(e.event)


def _spec_with(index: int, value: object, sub: int | None = None) -> tuple[object, ...]:
    w = list(spec().to_wire())
    if sub is None:
        w[index] = value
    else:
        inner = list(w[index])  # type: ignore[call-overload]
        inner[sub] = value
        w[index] = tuple(inner)
    return tuple(w)


def test_lone_surrogates_on_the_wire_are_a_validation_error_naming_the_field(
    auth: StorageMutationAuthority, data_dir: Path
) -> None:
    tid, rid, att = _running(auth)
    cases: list[tuple[tuple[object, ...], str]] = [
        ((0, _spec_with(7, "\ud800"), T0, T0), r"TaskSpec\.dedupe_key"),
        ((0, _spec_with(1, "h\udc00"), T0, T0), r"TaskSpec\.handler"),
        ((0, _spec_with(3, "\udc00"), T0, T0), r"TaskSpec\.content_type"),
        ((0, _spec_with(5, "\udc00", 2), T0, T0), r"concurrency_key"),
        ((0, _spec_with(6, ["a", "\udc00"], 1), T0, T0), r"tags\[1\]"),
        ((0, _spec_with(6, "\udc00", 2), T0, T0), r"description"),
        ((2, rid, 3, 8, None, "\udc80", T0), r"RunTransition\.reason"),
        ((4, rid, att, 0, "\ud800", None, T0), r"AttemptFinish\.error"),
        ((6, rid, "w\ud800", T0 + 1, T0), r"LeaseHeartbeat\.owner"),
        ((9, tid, "\ud800", T0), r"TaskCancel\.reason"),
    ]
    auth.flush()
    log, digest = wal_files(data_dir), auth.state_digest()
    for event, field in cases:
        with pytest.raises(ValidationError, match=rf"{field}: not valid Unicode text") as e:
            auth.submit_wire([event], IMM)
        assert "lone surrogate U+D" in str(e.value)
    auth.flush()
    assert (wal_files(data_dir), auth.state_digest()) == (log, digest)


def test_expected_first_is_checked_naming_the_argument(auth: StorageMutationAuthority) -> None:
    ev = [(10, T0)]
    for bad in (-1, 0, 2**64):
        with pytest.raises(ValidationError, match=r"^expected_first: must be a WAL sequence"):
            auth.submit_wire(ev, IMM, expected_first=bad)
    for wrong in ("3", 1.0, True):
        with pytest.raises(WrongTypeError, match=r"^expected_first: expected an int"):
            auth.submit_wire(ev, IMM, expected_first=wrong)  # type: ignore[arg-type]
    with pytest.raises(SequenceError):
        auth.submit_wire(ev, IMM, expected_first=5)
    assert auth.latest_sequence == 0
    assert auth.submit_wire(ev, IMM, expected_first=1) == (1, 1)


def test_query_and_prune_arguments_get_typed_errors(tmp_path: Path) -> None:
    """They went straight to the core: a raw OverflowError / TypeError / ValueError."""
    a = StorageMutationAuthority.open(tmp_path / "q")
    try:
        digest = a.state_digest()
        calls = {
            WrongTypeError: [
                lambda: a.prune("x"),  # type: ignore[arg-type]
                lambda: a.prune(0, timestamp="x"),  # type: ignore[arg-type]
                lambda: a.due_scheduled("x", 5),  # type: ignore[arg-type]
                lambda: a.runs_in_state("Ready", 5),  # type: ignore[arg-type]
                lambda: a.key_holder(5),  # type: ignore[arg-type]
                lambda: a.task_by_dedupe_key(5),  # type: ignore[arg-type]
            ],
            ValidationError: [
                lambda: a.due_scheduled(0, -1),
                lambda: a.ready_candidates(-1),
                lambda: a.expired_leases(0, 2**64),
                lambda: a.due_retries(2**63, 1),
            ],
        }
        for error, fns in calls.items():
            for fn in fns:
                with pytest.raises(error):
                    fn()
        assert a.state_digest() == digest
        assert a.runs_in_state(RunState.READY, 5) == []
    finally:
        a.close()
