"""Payload and output codecs: how Python values become the bytes kept in the log.

* ``bytes`` / ``bytearray`` / ``memoryview`` payloads pass through untouched (content type
  ``None`` — opaque bytes — unless one is given);
* anything else is JSON (content type ``application/json``) by default — the registry's codec
  for that type, so one registered with ``replace=True`` encodes as well as decodes;
* other formats plug in through a :class:`CodecRegistry` keyed by content type.

**Nothing read from the log is ever unpickled or executed.** The library ships no codec that
could run code while decoding; if a trusted, single-user setup wants one, it must register
its own (and owns that risk).

Handler return values are stored as attempt *output*. The attempt record has no content-type
field, so the runtime frames an output as ``content-type`` + ``b"\\n"`` + body (e.g.
``b'application/json\\n{"ok": true}'``): readable in a dump, and decodable without guessing.

>>> reg = CodecRegistry()
>>> data, ct = reg.encode_payload({"to": "a@example.com"})
>>> data, ct
(b'{"to":"a@example.com"}', 'application/json')
>>> reg.decode_payload(data, ct)
{'to': 'a@example.com'}
>>> reg.decode_output(reg.encode_output([1, 2]))
[1, 2]
>>> reg.decode_output(reg.encode_output(b"\\x00raw"))
b'\\x00raw'
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol, runtime_checkable

from actionqueue.core._validate import buffer_bytes
from actionqueue.errors import ActionQueueError, PayloadError, ValidationError, WrongTypeError

__all__ = [
    "BYTES",
    "JSON",
    "OCTET_STREAM",
    "TEXT",
    "BytesCodec",
    "Codec",
    "CodecRegistry",
    "JsonCodec",
    "TextCodec",
    "check_content_type",
    "is_content_type",
]

OCTET_STREAM = "application/octet-stream"
JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"

_BYTES_LIKE = (bytes, bytearray, memoryview)


@runtime_checkable
class Codec(Protocol):
    """Turns values into bytes and back, for one content type."""

    content_type: str

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


class BytesCodec:
    """Bytes in, bytes out (``application/octet-stream``)."""

    content_type = OCTET_STREAM

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, _BYTES_LIKE):
            raise WrongTypeError(
                f"the bytes codec encodes bytes only, got {type(value).__name__} "
                f"{short_repr(value)}"
            )
        return buffer_bytes(value, "the value", error=PayloadError)

    def decode(self, data: bytes) -> bytes:
        return bytes(data)


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters; never raises (a huge int's repr does)."""
    try:
        text = repr(value)
    except Exception as e:
        return f"<{type(value).__name__}: repr failed: {type(e).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


_CONTAINERS = (dict, list, tuple)


def _check_keys(value: Any) -> None:
    """Raises ``TypeError`` at a dict key that is not a str. ``json.dumps`` would turn an
    int, float, bool or None key into a string: ``{1: "a"}`` reads back as ``{"1": "a"}``, and
    ``{1: "a", "1": "b"}`` loses an entry. The type checks run in C (``map``/``set``), so a
    large flat list costs one pass, not a Python loop per element."""
    stack = [value]
    seen: set[int] = set()  # a circular value is json.dumps's to report, not a loop here
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if isinstance(v, dict):
            key_types = set(map(type, v))
            if not all(issubclass(t, str) for t in key_types):
                bad = next(k for k in v if not isinstance(k, str))
                raise TypeError(
                    f"dict key {bad!r} is a {type(bad).__name__}: JSON object keys are "
                    "strings, and it would read back as another key"
                )
            items: Any = v.values()
        else:
            items = v
        if any(issubclass(t, _CONTAINERS) for t in set(map(type, items))):
            stack.extend(x for x in items if isinstance(x, _CONTAINERS))


class JsonCodec:
    """Compact UTF-8 JSON (``application/json``), strict: values JSON cannot represent (sets,
    arbitrary objects, NaN and infinities, lone surrogates, ints too long for ``str``) raise
    :class:`PayloadError` naming the type, instead of writing something other readers refuse.
    """

    content_type = JSON_TYPE

    def encode(self, value: Any) -> bytes:
        try:
            if isinstance(value, _CONTAINERS):
                _check_keys(value)
            return json.dumps(
                value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode()
        except (TypeError, ValueError, RecursionError) as e:
            raise PayloadError(
                f"cannot encode {type(value).__name__} {short_repr(value)} as JSON ({e}); "
                "pass bytes, a JSON-compatible value, or register a codec for this type"
            ) from None

    def decode(self, data: bytes) -> Any:
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise PayloadError(f"payload is not valid JSON ({e}): {bytes(data)[:60]!r}") from None


class TextCodec:
    """``str`` as UTF-8 (``text/plain; charset=utf-8``)."""

    content_type = TEXT_TYPE

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise WrongTypeError(f"the text codec encodes str only, got {type(value).__name__}")
        return value.encode()

    def decode(self, data: bytes) -> str:
        try:
            return bytes(data).decode()
        except UnicodeDecodeError as e:
            raise PayloadError(f"payload is not valid UTF-8 ({e})") from None


BYTES = BytesCodec()
JSON = JsonCodec()
TEXT = TextCodec()


def _norm(content_type: str) -> str:
    return content_type.strip().lower()


def is_content_type(value: object) -> bool:
    """Whether ``value`` is a str a codec could be registered under: one line of printable
    ASCII, not blank. Only such a type can be read back: a result is framed as
    ``content type, newline, body``, and a payload's type names its codec at dispatch."""
    return (
        isinstance(value, str) and value.isascii() and value.isprintable() and bool(value.strip())
    )


def check_content_type(value: object, field: str = "content_type") -> str:
    """``value`` if :func:`is_content_type`; else :class:`WrongTypeError` (not a str) or
    :class:`ValidationError` naming ``field`` and the value."""
    if not isinstance(value, str):
        raise WrongTypeError(
            f"{field} must be a str, got {type(value).__name__} {short_repr(value)}"
        )
    if not is_content_type(value):
        raise ValidationError(
            f"{field} must be one line of printable ASCII, not blank (a content type such as "
            f"'application/json'), got {short_repr(value)}"
        )
    return value


class CodecRegistry:
    """Codecs by content type (case-insensitive). Thread-safe.

    The defaults: ``application/octet-stream`` (bytes), ``application/json``,
    ``text/plain; charset=utf-8``. A payload without a content type is opaque bytes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._codecs: dict[str, Codec] = {}
        for c in (BYTES, JSON, TEXT):
            self._codecs[_norm(c.content_type)] = c

    def register(self, codec: Codec, *, replace: bool = False) -> Codec:
        """Add a codec; refuses to replace an existing content type unless ``replace=True``."""
        if not isinstance(codec, Codec) or not isinstance(codec.content_type, str):
            raise WrongTypeError(
                f"a codec needs a str content_type and encode/decode methods, got {codec!r}"
            )
        key = _norm(check_content_type(codec.content_type, "a codec's content_type"))
        with self._lock:
            if key in self._codecs and not replace and self._codecs[key] is not codec:
                raise ValidationError(
                    f"a codec for content type {codec.content_type!r} is already registered; "
                    "pass replace=True to replace it"
                )
            self._codecs[key] = codec
        return codec

    def get(self, content_type: str) -> Codec:
        """The codec for ``content_type``; :class:`PayloadError` naming it if there is none."""
        c = self._codecs.get(_norm(content_type))
        if c is None:
            known = ", ".join(sorted(self._codecs))
            raise PayloadError(
                f"no codec registered for content type {content_type!r} (registered: {known})"
            )
        return c

    def _default(self, content_type: str) -> Codec:
        """The codec registered now for one of the default content types (given normalised):
        always present, as a codec can be replaced but not removed. A plain lookup, as it is
        on every default submit."""
        return self._codecs[content_type]

    def resolve(self, codec: Codec | str | None) -> Codec | None:
        """A codec given as an object, a content type, or ``None`` (the default rules)."""
        if codec is None or isinstance(codec, Codec):
            return codec
        if isinstance(codec, str):
            return self.get(codec)
        raise WrongTypeError(f"codec must be a Codec or a content type str, got {codec!r}")

    def content_types(self) -> list[str]:
        return sorted(self._codecs)

    # --- payloads ------------------------------------------------------------------------

    def encode_payload(
        self, value: Any, codec: Codec | str | None = None, content_type: str | None = None
    ) -> tuple[bytes, str | None]:
        """``(bytes, content_type)`` for a payload.

        With no codec: bytes-like pass through (content type ``content_type``, default
        ``None``), anything else is JSON. With a codec (object or content type): that codec.
        A ``content_type`` must pass :func:`check_content_type`; it need not be registered for
        bytes (the process that runs the task decodes them, and may have its codec).
        """
        if content_type is not None:
            # Bytes keep it unchecked otherwise: a type no codec can be registered under
            # would be accepted here and fail only when the task is dispatched.
            check_content_type(content_type)
        c = self.resolve(codec)
        if c is None:
            if isinstance(value, _BYTES_LIKE):
                return buffer_bytes(value, "the payload", error=PayloadError), content_type
            # The registry's JSON codec, not the module's JSON: a codec registered with
            # replace=True must encode what it will be asked to decode.
            c = self._default(JSON_TYPE) if content_type is None else self.get(content_type)
        try:
            return c.encode(value), c.content_type
        except ActionQueueError:
            raise
        except Exception as e:
            # A user codec's own failure, named as the payload error it is (every refusal of
            # a submit is an ActionQueueError); the original stays the cause.
            raise PayloadError(
                f"the codec for {c.content_type!r} failed to encode {type(value).__name__} "
                f"{short_repr(value)}: {type(e).__name__}: {e}"
            ) from e

    def decode_payload(self, data: bytes, content_type: str | None) -> Any:
        """The value of a payload: raw bytes when there is no content type, else its codec's
        decoding (:class:`PayloadError` when no codec is registered for it)."""
        if content_type is None:
            return bytes(data)
        return self.get(content_type).decode(data)

    # --- outputs -------------------------------------------------------------------------

    def encode_output(self, value: Any, codec: Codec | str | None = None) -> bytes | None:
        """Frame a handler's return value: ``None`` stays ``None`` (no output); bytes-like are
        kept as ``application/octet-stream``; others use ``codec`` (default JSON). The default
        codecs are this registry's (a replaced ``application/json`` codec encodes too)."""
        if value is None:
            return None
        c = self.resolve(codec)
        if c is None:
            # Looked up, not the module constants: the output is decoded by content type from
            # this registry, so the same codec must write it.
            c = self._default(OCTET_STREAM if isinstance(value, _BYTES_LIKE) else JSON_TYPE)
        return c.content_type.encode() + b"\n" + c.encode(value)

    def decode_output(self, data: bytes | None) -> Any:
        """Inverse of :meth:`encode_output`. Output not framed by the runtime (no known
        content-type line) is returned as raw bytes."""
        if data is None:
            return None
        head, sep, body = bytes(data).partition(b"\n")
        if sep:
            try:
                ct = head.decode("ascii")
            except UnicodeDecodeError:
                return bytes(data)
            c = self._codecs.get(_norm(ct))
            if c is not None:
                return c.decode(body)
            if "/" in ct and " " not in ct.split(";")[0]:
                raise PayloadError(
                    f"output has content type {ct!r} but no codec is registered for it"
                )
        return bytes(data)
