"""The exception hierarchy and its Rust -> Python mapping."""

from __future__ import annotations

import pytest

import actionqueue
from actionqueue import _core, errors


def test_every_error_is_an_actionqueue_error() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, actionqueue.ActionQueueError), name


def test_builtin_bases_help_callers() -> None:
    assert issubclass(errors.ValidationError, ValueError)
    assert issubclass(errors.WrongTypeError, TypeError)
    assert issubclass(errors.StorageError, OSError)
    assert issubclass(errors.NotFoundError, LookupError)


def test_rust_error_is_raised_as_the_mapped_python_class() -> None:
    with pytest.raises(errors.RecordTooLargeError, match="record of 10 bytes exceeds") as info:
        _core.check_record_size(10, 5)
    assert info.value.size == 10
    assert info.value.max_size == 5
    assert isinstance(info.value, ValueError)
    _core.check_record_size(5, 5)  # at the limit is fine


def test_crc32c_matches_the_standard_check_value() -> None:
    assert _core.crc32c(b"123456789") == 0xE3069283
    assert _core.crc32c(b"56789", _core.crc32c(b"1234")) == 0xE3069283


def test_forked_process_error_is_a_storage_error() -> None:
    # Raised by an inherited queue, writer or authority in a forked child (tests/storage/
    # test_fork.py forks for real); catchable as a storage error and an OSError.
    assert issubclass(errors.ForkedProcessError, errors.StorageError)
    assert issubclass(errors.ForkedProcessError, OSError)
    assert "ForkedProcessError" in errors.__all__
