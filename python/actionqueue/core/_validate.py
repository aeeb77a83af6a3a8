"""Small validation helpers shared by the domain model (private).

Every helper takes the *field name* so that error messages say which argument was wrong, with
the offending value, in the form ``<field> must be ..., got <value>``.
"""

from __future__ import annotations

from typing import Any

from actionqueue.errors import ValidationError, WrongTypeError

__all__ = [
    "I32_MAX",
    "I32_MIN",
    "I64_MAX",
    "I64_MIN",
    "U32_MAX",
    "buffer_bytes",
    "check_bool",
    "check_int",
    "check_opt_str",
    "check_str",
    "check_text",
    "unpack",
    "wrong_type",
]

I32_MIN = -(2**31)
I32_MAX = 2**31 - 1
U32_MAX = 2**32 - 1
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1


def wrong_type(field: str, expected: str, value: object) -> WrongTypeError:
    """A :class:`WrongTypeError` (to ``raise``) naming the field, the expectation and the value."""
    return WrongTypeError(f"{field} must be {expected}, got {type(value).__name__} {value!r}")


def check_int(
    value: object,
    field: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    error: type[ValidationError] = ValidationError,
) -> int:
    """Return ``value`` if it is an ``int`` (not a ``bool``) within ``[minimum, maximum]``."""
    # bool is an int subclass; True as a count is always a bug on the caller's side.
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong_type(field, "an int", value)
        value = int(value)  # int subclasses (IntEnum, numpy-like) become plain ints
    if minimum is not None and value < minimum:
        raise error(f"{field} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise error(f"{field} must be <= {maximum}, got {value}")
    return value


def buffer_bytes(
    value: bytes | bytearray | memoryview,
    field: str,
    *,
    error: type[ValidationError] = ValidationError,
) -> bytes:
    """``bytes(value)`` for a bytes-like value, raising ``error`` naming the field where the
    buffer cannot be read: a released ``memoryview`` raises a bare ``ValueError``, which is
    not an ``ActionQueueError``."""
    try:
        return bytes(value)
    except ValueError as e:
        raise error(
            f"{field} cannot be read: {e} (pass bytes, or the memoryview before releasing it)"
        ) from None


def check_bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise wrong_type(field, "a bool", value)
    return value


def check_text(value: str, field: str, *, error: type[ValidationError] = ValidationError) -> str:
    """Return ``value`` if it can be encoded as UTF-8 (the log's text encoding), else raise
    ``error`` naming the field and the lone surrogate that cannot be (``"\\ud800"``)."""
    # Fast path: ASCII text (nearly every name and key) needs no encoding attempt.
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError as e:
            shown = repr(value) if len(value) <= 80 else f"{value[:77]!r}..."
            raise error(
                f"{field} must be valid Unicode text (encodable as UTF-8), got {shown}: "
                f"lone surrogate U+{ord(value[e.start]):04X} at index {e.start}"
            ) from None
    return value


def check_str(
    value: object,
    field: str,
    *,
    error: type[ValidationError] = ValidationError,
) -> str:
    """Return ``value`` if it is a non-empty ``str`` that is not only whitespace and can be
    encoded as UTF-8."""
    if not isinstance(value, str):
        raise wrong_type(field, "a str", value)
    if not value.strip():
        raise error(f"{field} must be a non-empty string, got {value!r}")
    return check_text(str(value), field, error=error)


def check_opt_str(
    value: object,
    field: str,
    *,
    error: type[ValidationError] = ValidationError,
) -> str | None:
    """Like :func:`check_str`, but ``None`` is allowed (and returned)."""
    if value is None:
        return None
    return check_str(value, field, error=error)


def unpack(t: object, n: int, what: str) -> tuple[Any, ...]:
    """Check that a wire value is a tuple/list of ``n`` items and return it as a tuple."""
    if not isinstance(t, (tuple, list)):
        raise wrong_type(f"{what} wire value", f"a tuple of {n} items", t)
    if len(t) != n:
        raise ValidationError(f"{what} wire value must have {n} items, got {len(t)}: {t!r}")
    return tuple(t)
