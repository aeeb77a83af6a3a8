"""Payload and output codecs; nothing from the log is unpickled by default."""

from __future__ import annotations

import pytest
from rt_helpers import MakeQueue

from actionqueue.errors import PayloadError, ValidationError, WrongTypeError
from actionqueue.runtime.codecs import (
    JSON,
    CodecRegistry,
    TextCodec,
)


def test_bytes_pass_through_and_json_is_the_default() -> None:
    reg = CodecRegistry()
    assert reg.encode_payload(b"\x00\x01") == (b"\x00\x01", None)
    assert reg.encode_payload(bytearray(b"ab"), content_type="image/png") == (b"ab", "image/png")
    assert reg.encode_payload({"a": [1, 2]}) == (b'{"a":[1,2]}', "application/json")
    assert reg.encode_payload(None) == (b"null", "application/json")
    assert reg.decode_payload(b"\x00", None) == b"\x00"
    assert reg.decode_payload(b'{"a":1}', "Application/JSON") == {"a": 1}
    assert reg.encode_payload("héllo") == ('"héllo"'.encode(), "application/json")


def test_explicit_codec_by_object_or_content_type() -> None:
    reg = CodecRegistry()
    assert reg.encode_payload("hi", codec="text/plain; charset=utf-8") == (
        b"hi",
        "text/plain; charset=utf-8",
    )
    assert reg.encode_payload("hi", codec=TextCodec())[0] == b"hi"
    with pytest.raises(PayloadError, match="no codec registered for content type 'x/y'"):
        reg.encode_payload("hi", codec="x/y")


def test_unencodable_value_is_a_clear_error() -> None:
    with pytest.raises(PayloadError, match="cannot encode set"):
        CodecRegistry().encode_payload({1, 2})


def test_bad_json_and_unknown_content_type_on_decode() -> None:
    reg = CodecRegistry()
    with pytest.raises(PayloadError, match="not valid JSON"):
        reg.decode_payload(b"{", "application/json")
    with pytest.raises(PayloadError, match="application/x-python-pickle"):
        reg.decode_payload(b"\x80\x04K\x01.", "application/x-python-pickle")


def test_no_codec_that_runs_code_is_registered() -> None:
    assert CodecRegistry().content_types() == [
        "application/json",
        "application/octet-stream",
        "text/plain; charset=utf-8",
    ]


def test_register_refuses_silent_replacement_and_bad_codecs() -> None:
    reg = CodecRegistry()

    class Other:
        content_type = "application/json"

        def encode(self, value: object) -> bytes:
            return b""

        def decode(self, data: bytes) -> object:
            return None

    with pytest.raises(ValidationError, match="already registered"):
        reg.register(Other())
    reg.register(Other(), replace=True)
    with pytest.raises(WrongTypeError):
        reg.register(object())  # type: ignore[arg-type]


def test_outputs_are_framed_with_their_content_type() -> None:
    reg = CodecRegistry()
    assert reg.encode_output(None) is None
    assert reg.encode_output({"ok": True}) == b'application/json\n{"ok":true}'
    assert reg.encode_output(b"raw") == b"application/octet-stream\nraw"
    for value in ({"ok": True}, [1, "x"], 3, "s", b"\n\x00", None):
        assert reg.decode_output(reg.encode_output(value)) == value
    # Output not written by the runtime comes back as raw bytes.
    assert reg.decode_output(b"plain bytes") == b"plain bytes"
    assert reg.decode_output(b"\xff\xfe\nx") == b"\xff\xfe\nx"
    with pytest.raises(PayloadError, match="no codec is registered"):
        reg.decode_output(b"application/x-unknown\n...")
    assert JSON.decode(JSON.encode([1])) == [1]


@pytest.mark.parametrize(
    "value",
    [{1: "a"}, {"1": "b", 1: "a"}, {True: 1}, {None: 0}, {2.5: 1}, [{"ok": {3: "deep"}}]],
)
def test_json_refuses_dict_keys_that_are_not_str(value: object) -> None:
    """json.dumps would turn them into strings: {1: "a"} read back as {"1": "a"}, and colliding
    keys lost an entry."""
    with pytest.raises(PayloadError, match="JSON object keys are strings"):
        CodecRegistry().encode_payload(value)


def test_json_with_str_keys_and_nested_containers_round_trips() -> None:
    reg = CodecRegistry()
    value = {"a": [1, {"b": (2, 3)}], "c": {"d": None}, "e": [[]]}
    data, ct = reg.encode_payload(value)
    assert reg.decode_payload(data, ct) == {"a": [1, {"b": [2, 3]}], "c": {"d": None}, "e": [[]]}


def test_a_codecs_own_failure_is_a_payload_error_with_the_cause() -> None:
    class Broken:
        content_type = "application/x-broken"

        def encode(self, value: object) -> bytes:
            raise RuntimeError("boom")

        def decode(self, data: bytes) -> object:
            return data

    reg = CodecRegistry()
    reg.register(Broken())
    with pytest.raises(PayloadError, match=r"failed to encode.*RuntimeError: boom") as info:
        reg.encode_payload({"x": 1}, "application/x-broken")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_a_content_type_must_be_one_line_of_printable_ascii() -> None:
    class Odd:
        content_type = "x/y\nz"

        def encode(self, value: object) -> bytes:
            return b""

        def decode(self, data: bytes) -> object:
            return data

    with pytest.raises(ValidationError, match="printable ASCII"):
        CodecRegistry().register(Odd())


def test_a_handlers_codec_object_is_registered_so_its_tasks_can_run(
    make_queue: MakeQueue,
) -> None:
    """Encoding used the object but decoding at dispatch looks the content type up in
    ``q.codecs``: an unregistered codec object wrote tasks that could never run."""
    import json

    class Reversed:
        content_type = "application/x-reversed-json"

        def encode(self, value: object) -> bytes:
            return json.dumps(value).encode()[::-1]

        def decode(self, data: bytes) -> object:
            return json.loads(bytes(data)[::-1])

    q = make_queue()
    q.register("h", lambda ctx, p: p, codec=Reversed())
    tid = q.submit("h", {"a": 1})
    q.run_until_idle(timeout=20)
    assert q.result(tid) == {"a": 1}

    class Other(Reversed):
        pass

    with pytest.raises(ValidationError, match="already registered"):
        q.register("g", lambda ctx, p: p, codec=Other())


class _IsoJson:
    """JSON that also writes dates (as ISO text), and marks what it decoded."""

    content_type = "application/json"

    def encode(self, value: object) -> bytes:
        import json

        return json.dumps(value, default=lambda o: o.isoformat()).encode()

    def decode(self, data: bytes) -> object:
        import json

        return {"iso": json.loads(data)}


def test_a_replaced_json_codec_encodes_as_well_as_decodes() -> None:
    """BUG: encode_payload / encode_output used the module's JSON codec, so a codec registered
    with replace=True only decoded what the built-in one had encoded."""
    import datetime

    reg = CodecRegistry()
    reg.register(_IsoJson(), replace=True)
    day = datetime.date(2024, 1, 2)
    assert reg.encode_payload({"at": day}) == (b'{"at": "2024-01-02"}', "application/json")
    assert reg.decode_output(reg.encode_output(day)) == {"iso": "2024-01-02"}


def test_a_queues_submits_and_results_use_its_replaced_json_codec(
    make_queue: MakeQueue,
) -> None:
    """The same through a queue, after a submit already built (and cached) the handler's
    template: the codec is looked up per payload, not captured."""
    import datetime

    q = make_queue()
    q.register("echo", lambda ctx, p: p)
    q.register("day", lambda ctx, p: datetime.date(2024, 1, 2))
    first = q.submit("echo", {"n": 1})
    q.codecs.register(_IsoJson(), replace=True)
    second = q.submit("echo", {"at": datetime.date(2024, 1, 2)})
    day = q.submit("day")
    q.run_until_idle(timeout=20)
    # Each value crosses the codec twice (payload in, result out), so decoded twice.
    assert q.result(first) == {"iso": {"iso": {"n": 1}}}
    assert q.result(second) == {"iso": {"iso": {"at": "2024-01-02"}}}
    assert q.result(day) == {"iso": "2024-01-02"}


def _released() -> memoryview:
    view = memoryview(b"abc")
    view.release()
    return view


def test_a_released_memoryview_payload_is_a_payload_error(make_queue: MakeQueue) -> None:
    """BUG: bytes() of a released memoryview raised a bare ValueError out of submit and
    submit_many, not an ActionQueueError. Nothing is written."""
    q = make_queue()
    q.register("echo", lambda ctx, p: p)
    with pytest.raises(PayloadError, match=r"the payload cannot be read: .*released"):
        q.submit("echo", _released())
    with pytest.raises(PayloadError, match="released"):
        q.submit_many("echo", [b"ok", _released()])
    with pytest.raises(PayloadError, match="released"):
        q.submit("echo", _released(), content_type="application/octet-stream", dedupe_key="k")
    assert sum(q.stats()["runs"].values()) == 0


def test_a_released_memoryview_is_refused_by_the_bytes_codec_and_task_payload() -> None:
    """The other places that copy a buffer: an output framed by the bytes codec (a handler
    returning a released view) and the core's TaskPayload."""
    from actionqueue.core.task.task_spec import TaskPayload

    with pytest.raises(PayloadError, match="released"):
        CodecRegistry().encode_output(_released())
    with pytest.raises(ValidationError, match=r"payload data cannot be read: .*released"):
        TaskPayload(_released())


@pytest.mark.parametrize(
    "content_type",
    ["a\nb", "application/json\n", "text/plain\r", "x/\x1b[31my", "x/y\x00", "application/é"],
)
def test_a_bytes_payloads_content_type_must_be_one_line_of_printable_ascii(
    make_queue: MakeQueue, content_type: str
) -> None:
    """BUG: a bytes payload's content type was only checked to be a non-blank str, so one no
    codec can ever be registered under (several lines, control characters) was written and the
    run failed at dispatch. Refused at submit now, on every path, nothing written."""
    q = make_queue()
    q.register("echo", lambda ctx, p: p)
    calls = [
        lambda: q.submit("echo", b"x", content_type=content_type),
        lambda: q.submit("echo", bytearray(b"x"), content_type=content_type),
        lambda: q.submit("echo", b"x", content_type=content_type, dedupe_key="k"),
        lambda: q.submit_many("echo", [b"x", b"y"], content_type=content_type),
        lambda: q.submit("echo", {"a": 1}, content_type=content_type),
    ]
    for call in calls:
        with pytest.raises(ValidationError, match="content_type must be one line of printable"):
            call()
    assert sum(q.stats()["runs"].values()) == 0


def test_a_bytes_payload_may_name_a_content_type_registered_elsewhere(
    make_queue: MakeQueue,
) -> None:
    """The rule kept: a bytes payload's content type need not be registered where it is
    submitted (a producer submits for a consumer process that has the codec); where it is run
    without one, the run fails naming it."""
    q = make_queue()
    q.register("echo", lambda ctx, p: p)
    tid = q.submit("echo", b"x", content_type="application/x-elsewhere")
    q.run_until_idle(timeout=20)
    (run,) = q.runs(tid)
    assert "no codec registered for content type 'application/x-elsewhere'" in (
        run.attempts[0].error or ""
    )


def test_a_codecs_content_type_with_a_trailing_newline_is_refused() -> None:
    """It was checked after stripping, but results are framed with it unstripped: its newline
    ended the frame's first line early, and the result read back wrong."""

    class Trailing:
        content_type = "application/x-trailing\n"

        def encode(self, value: object) -> bytes:
            return b"body"

        def decode(self, data: bytes) -> object:
            return data

    with pytest.raises(ValidationError, match="printable ASCII"):
        CodecRegistry().register(Trailing())
