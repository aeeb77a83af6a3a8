"""Task specs: durable intent — a payload, a run policy, constraints and metadata.

>>> from actionqueue.core.ids import TaskId
>>> spec = TaskSpec(
...     TaskId.new(),
...     TaskPayload.with_content_type(b"\\x01\\x02\\x03", "application/octet-stream"),
...     RunPolicy.Once,
...     TaskConstraints(),
...     TaskMetadata(),
... )
>>> spec.run_policy.total_runs()
1
>>> TaskSpec.from_wire(spec.to_wire()) == spec
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actionqueue.core._validate import buffer_bytes, check_opt_str, unpack, wrong_type
from actionqueue.core.ids import TaskId
from actionqueue.core.task.constraints import ConstraintsWire, TaskConstraints
from actionqueue.core.task.metadata import MetadataWire, TaskMetadata
from actionqueue.core.task.run_policy import PolicyWire, RunPolicy
from actionqueue.errors import WrongTypeError

__all__ = ["TaskPayload", "TaskSpec"]

#: ``(id, handler, payload, content_type, policy, constraints, metadata, dedupe_key)``
SpecWire = tuple[
    bytes,
    str | None,
    bytes,
    str | None,
    PolicyWire,
    ConstraintsWire,
    MetadataWire,
    str | None,
]

_BYTES_LIKE = (bytes, bytearray, memoryview)


@dataclass(frozen=True, slots=True, init=False)
class TaskPayload:
    """Opaque bytes handed to the handler, with an optional MIME-style content type.

    ``data`` may be ``bytes``, ``bytearray`` or ``memoryview``; it is stored as ``bytes``.
    Size is not limited here; the WAL refuses records above its maximum record size.

    >>> TaskPayload(b"hi").content_type is None
    True
    >>> TaskPayload.with_content_type(b"{}", "application/json").content_type
    'application/json'
    """

    data: bytes
    content_type: str | None

    def __init__(self, data: bytes | bytearray | memoryview, content_type: str | None = None):
        if type(data) is not bytes:
            if not isinstance(data, _BYTES_LIKE):
                hint = " (encode text first, e.g. s.encode())" if isinstance(data, str) else ""
                raise WrongTypeError(
                    f"payload data must be bytes, bytearray or memoryview{hint}, "
                    f"got {type(data).__name__} {data!r:.80}"
                )
            data = buffer_bytes(data, "payload data")
        if content_type is not None:
            content_type = check_opt_str(content_type, "content_type")
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "content_type", content_type)

    @classmethod
    def with_content_type(
        cls, data: bytes | bytearray | memoryview, content_type: str
    ) -> TaskPayload:
        """A payload with a content type (the seed's spelling)."""
        return cls(data, content_type)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        # Payloads can be large; show a prefix and the size.
        shown = self.data[:32]
        more = "..." if len(self.data) > 32 else ""
        return (
            f"TaskPayload({shown!r}{more} ({len(self.data)} bytes), "
            f"content_type={self.content_type!r})"
        )

    def __reduce__(self) -> tuple[Any, tuple[bytes, str | None]]:
        return (TaskPayload, (self.data, self.content_type))

    @classmethod
    def _trusted(cls, data: bytes, content_type: str | None) -> TaskPayload:
        """A payload from parts the caller has validated already (``bytes`` and a checked
        content type): the batch submit path, which must not pay the checks per task."""
        p = _new(cls)
        _set_data(p, data)
        _set_ct(p, content_type)
        return p


@dataclass(frozen=True, slots=True, init=False)
class TaskSpec:
    """A task: id, payload, run policy, constraints, metadata, routing name, dedupe key.

    Construction validates every part, so an invalid spec cannot exist. ``task_id`` may be a
    :class:`TaskId` or anything :class:`TaskId` accepts (UUID, str, 16 bytes); ``payload`` a
    :class:`TaskPayload` or raw bytes. ``handler`` names the registered handler that runs the
    task (``None``: the runtime's default); ``dedupe_key``: a second *live* task with the same
    key is not created (the existing one is returned by the queue).
    """

    task_id: TaskId
    payload: TaskPayload
    run_policy: RunPolicy
    constraints: TaskConstraints
    metadata: TaskMetadata
    handler: str | None
    dedupe_key: str | None

    def __init__(
        self,
        task_id: TaskId,
        payload: TaskPayload | bytes | bytearray | memoryview,
        run_policy: RunPolicy,
        constraints: TaskConstraints | None = None,
        metadata: TaskMetadata | None = None,
        *,
        handler: str | None = None,
        dedupe_key: str | None = None,
    ) -> None:
        if type(task_id) is not TaskId:
            task_id = TaskId(task_id)
        if type(payload) is not TaskPayload:
            if isinstance(payload, _BYTES_LIKE):
                payload = TaskPayload(payload)
            else:
                raise wrong_type("payload", "a TaskPayload or bytes", payload)
        if not isinstance(run_policy, RunPolicy):
            raise wrong_type("run_policy", "a RunPolicy (e.g. RunPolicy.once())", run_policy)
        if constraints is None:
            constraints = TaskConstraints.default()
        elif not isinstance(constraints, TaskConstraints):
            raise wrong_type("constraints", "a TaskConstraints", constraints)
        if metadata is None:
            metadata = TaskMetadata.default()
        elif not isinstance(metadata, TaskMetadata):
            raise wrong_type("metadata", "a TaskMetadata", metadata)
        if handler is not None:
            handler = check_opt_str(handler, "handler")
        if dedupe_key is not None:
            dedupe_key = check_opt_str(dedupe_key, "dedupe_key")
        s = object.__setattr__
        s(self, "task_id", task_id)
        s(self, "payload", payload)
        s(self, "run_policy", run_policy)
        s(self, "constraints", constraints)
        s(self, "metadata", metadata)
        s(self, "handler", handler)
        s(self, "dedupe_key", dedupe_key)

    @classmethod
    def new(
        cls,
        task_id: TaskId,
        payload: TaskPayload | bytes | bytearray | memoryview,
        run_policy: RunPolicy,
        constraints: TaskConstraints | None = None,
        metadata: TaskMetadata | None = None,
        *,
        handler: str | None = None,
        dedupe_key: str | None = None,
    ) -> TaskSpec:
        """The seed's spelling ``TaskSpec::new(...)``; same as calling the class."""
        return cls(
            task_id,
            payload,
            run_policy,
            constraints,
            metadata,
            handler=handler,
            dedupe_key=dedupe_key,
        )

    @property
    def id(self) -> TaskId:
        """Alias of :attr:`task_id`."""
        return self.task_id

    def to_wire(self) -> SpecWire:
        """The tuple of docs/DESIGN.md:
        ``(id, handler, payload, content_type, policy, constraints, metadata, dedupe_key)``."""
        p = self.payload
        return (
            self.task_id.bytes,
            self.handler,
            p.data,
            p.content_type,
            self.run_policy.to_wire(),
            self.constraints.to_wire(),
            self.metadata.to_wire(),
            self.dedupe_key,
        )

    @classmethod
    def from_wire(cls, t: Any) -> TaskSpec:
        """Rebuild (and re-validate) a spec from :meth:`to_wire`'s tuple."""
        tid, handler, data, ct, policy, constraints, metadata, dedupe = unpack(t, 8, "task spec")
        if not isinstance(tid, _BYTES_LIKE):
            raise wrong_type("task spec id wire value", "16 bytes", tid)
        if not isinstance(data, _BYTES_LIKE):
            raise wrong_type("task spec payload wire value", "bytes", data)
        return cls(
            TaskId.from_bytes(bytes(tid)),
            TaskPayload(data, ct),
            RunPolicy.from_wire(policy),
            TaskConstraints.from_wire(constraints),
            TaskMetadata.from_wire(metadata),
            handler=handler,
            dedupe_key=dedupe,
        )

    def __reduce__(self) -> tuple[Any, tuple[SpecWire]]:
        return (TaskSpec.from_wire, (self.to_wire(),))

    @classmethod
    def _trusted(
        cls,
        task_id: TaskId,
        payload: TaskPayload,
        run_policy: RunPolicy,
        constraints: TaskConstraints,
        metadata: TaskMetadata,
        handler: str | None,
        dedupe_key: str | None,
    ) -> TaskSpec:
        """A spec from parts of the right types, each validated already (the runtime's
        ``submit_many`` checks what its tasks share once per call): no checks here."""
        s = _new(cls)
        _SPEC_SETTERS[0](s, task_id)
        _SPEC_SETTERS[1](s, payload)
        _SPEC_SETTERS[2](s, run_policy)
        _SPEC_SETTERS[3](s, constraints)
        _SPEC_SETTERS[4](s, metadata)
        _SPEC_SETTERS[5](s, handler)
        _SPEC_SETTERS[6](s, dedupe_key)
        return s


# Slot setters of the frozen classes, for the ``_trusted`` constructors (what
# ``object.__setattr__`` does in ``__init__``, without the attribute lookup).
_new = object.__new__
_set_data = TaskPayload.__dict__["data"].__set__
_set_ct = TaskPayload.__dict__["content_type"].__set__
_SPEC_SETTERS = tuple(
    TaskSpec.__dict__[name].__set__
    for name in (
        "task_id",
        "payload",
        "run_policy",
        "constraints",
        "metadata",
        "handler",
        "dedupe_key",
    )
)
