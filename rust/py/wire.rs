//! Wire tuples ⇄ [`Event`]: the one conversion between Python command objects and the core.
//!
//! The tuple shapes are fixed by `docs/DESIGN.md` (§ Wire tuples): the first item is the event
//! tag (the `Event` variant index), then the fields in `rust/event.rs` order. Ids are 16 raw
//! bytes (nil refused), times `int` milliseconds, states/outcomes their `int` wire values.
//!
//! Errors name the field and what was wrong: a value of the wrong Python type raises
//! `WrongTypeError` ("RunCreate.ordinal: expected int, got str"), a value of the right type but
//! out of range raises `ValidationError`. Reused by every binding that takes or returns events
//! (WAL, reducer, authority).

use pyo3::prelude::*;
use pyo3::type_object::{PyTypeCheck, PyTypeInfo};
use pyo3::types::{PyBool, PyBytes, PyInt, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;
use pyo3::{Borrowed, CastError};

use super::errors::to_py;
use crate::event::Event;
use crate::model::{
    AttemptOutcome, Backoff, Constraints, HoldPolicy, Id, Metadata, Misfire, MisfireKind,
    PolicyKind, RetryOn, RunPolicy, RunState, ShapeCache, TaskShape, TaskSpec, NIL_ID,
};
use crate::CoreError;
use std::sync::Arc;

const EVENT_NAMES: [&str; 13] = [
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
];

fn wrong_type(what: &str, expected: &str, got: &Bound<'_, PyAny>) -> PyErr {
    let ty = got
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    to_py(CoreError::WrongType(format!(
        "{what}: expected {expected}, got {ty}"
    )))
}

/// `cast` trying the exact type first: under the stable ABI a type check is a
/// `PyType_GetFlags` call, an exact match one pointer compare (subclasses still pass).
trait CastFast<'py> {
    fn cast_fast<T: PyTypeInfo + PyTypeCheck>(&self) -> Result<&Bound<'py, T>, CastError<'_, 'py>>;
}

impl<'py> CastFast<'py> for Bound<'py, PyAny> {
    #[inline]
    fn cast_fast<T: PyTypeInfo + PyTypeCheck>(&self) -> Result<&Bound<'py, T>, CastError<'_, 'py>> {
        match self.cast_exact::<T>() {
            Ok(t) => Ok(t),
            Err(_) => self.cast::<T>(),
        }
    }
}

fn invalid(msg: String) -> PyErr {
    to_py(CoreError::InvalidArgument(msg))
}

/// A tuple being read, with the name of what it represents for error messages.
struct Fields<'a, 'py> {
    t: &'a Bound<'py, PyTuple>,
    what: &'a str,
}

impl<'a, 'py> Fields<'a, 'py> {
    fn open(
        obj: &'a Bound<'py, PyAny>,
        what: &'a str,
        names: &[&str],
    ) -> PyResult<Fields<'a, 'py>> {
        let t = obj
            .cast_fast::<PyTuple>()
            .map_err(|_| wrong_type(what, "a tuple", obj))?;
        if t.len() != names.len() {
            return Err(invalid(format!(
                "{what}: expected a tuple of {} items ({}), got {} items",
                names.len(),
                names.join(", "),
                t.len()
            )));
        }
        Ok(Fields { t, what })
    }

    /// Item `i`, borrowed (no reference count traffic).
    fn item(&self, i: usize) -> PyResult<Borrowed<'a, 'py, PyAny>> {
        self.t.get_borrowed_item(i)
    }

    fn name(&self, field: &str) -> String {
        format!("{}.{field}", self.what)
    }

    fn i64(&self, i: usize, field: &str) -> PyResult<i64> {
        int(&*self.item(i)?, &|| self.name(field))
    }

    fn opt_i64(&self, i: usize, field: &str) -> PyResult<Option<i64>> {
        let o = self.item(i)?;
        if o.is_none() {
            return Ok(None);
        }
        int(&o, &|| self.name(field)).map(Some)
    }

    fn u32(&self, i: usize, field: &str) -> PyResult<u32> {
        let v = self.i64(i, field)?;
        u32::try_from(v).map_err(|_| {
            invalid(format!(
                "{}: must be between 0 and {}, got {v}",
                self.name(field),
                u32::MAX
            ))
        })
    }

    fn opt_u32(&self, i: usize, field: &str) -> PyResult<Option<u32>> {
        if self.item(i)?.is_none() {
            return Ok(None);
        }
        self.u32(i, field).map(Some)
    }

    fn i32(&self, i: usize, field: &str) -> PyResult<i32> {
        let v = self.i64(i, field)?;
        i32::try_from(v).map_err(|_| {
            invalid(format!(
                "{}: must fit in 32 bits signed, got {v}",
                self.name(field)
            ))
        })
    }

    fn boolean(&self, i: usize, field: &str) -> PyResult<bool> {
        let o = self.item(i)?;
        o.cast::<PyBool>()
            .map(|b| b.is_true())
            .map_err(|_| wrong_type(&self.name(field), "bool", &o))
    }

    fn string(&self, i: usize, field: &str) -> PyResult<String> {
        string(&*self.item(i)?, &|| self.name(field))
    }

    fn opt_string(&self, i: usize, field: &str) -> PyResult<Option<String>> {
        let o = self.item(i)?;
        if o.is_none() {
            return Ok(None);
        }
        string(&o, &|| self.name(field)).map(Some)
    }

    fn bytes(&self, i: usize, field: &str) -> PyResult<Vec<u8>> {
        let o = self.item(i)?;
        o.cast_fast::<PyBytes>()
            .map(|b| b.as_bytes().to_vec())
            .map_err(|_| wrong_type(&self.name(field), "bytes", &o))
    }

    fn opt_bytes(&self, i: usize, field: &str) -> PyResult<Option<Vec<u8>>> {
        if self.item(i)?.is_none() {
            return Ok(None);
        }
        self.bytes(i, field).map(Some)
    }

    fn id(&self, i: usize, field: &str) -> PyResult<Id> {
        let o = self.item(i)?;
        let b = o
            .cast_fast::<PyBytes>()
            .map_err(|_| wrong_type(&self.name(field), "16 bytes (uuid.UUID.bytes)", &o))?;
        let id: Id = b.as_bytes().try_into().map_err(|_| {
            invalid(format!(
                "{}: an id is 16 bytes, got {}",
                self.name(field),
                b.as_bytes().len()
            ))
        })?;
        if id == NIL_ID {
            return Err(invalid(format!(
                "{}: the nil UUID is not a valid id",
                self.name(field)
            )));
        }
        Ok(id)
    }

    fn state(&self, i: usize, field: &str) -> PyResult<RunState> {
        let v = self.i64(i, field)?;
        u8::try_from(v)
            .ok()
            .and_then(RunState::from_u8)
            .ok_or_else(|| {
                invalid(format!(
                    "{}: a run state is 0..8, got {v}",
                    self.name(field)
                ))
            })
    }

    fn strings(&self, i: usize, field: &str) -> PyResult<Vec<String>> {
        let o = self.item(i)?;
        let one = |(k, s): (usize, Bound<'py, PyAny>)| {
            string(&s, &|| format!("{}[{k}]", self.name(field)))
        };
        if let Ok(l) = o.cast_fast::<PyList>() {
            if l.is_empty() {
                return Ok(Vec::new());
            }
            l.iter().enumerate().map(one).collect()
        } else if let Ok(t) = o.cast_fast::<PyTuple>() {
            t.iter().enumerate().map(one).collect()
        } else {
            Err(wrong_type(&self.name(field), "a list of str", &o))
        }
    }
}

/// The field name for error messages, built only when an error is raised.
type Name<'a> = &'a dyn Fn() -> String;

fn int(o: &Bound<'_, PyAny>, name: Name<'_>) -> PyResult<i64> {
    // Plain ints first (one pointer compare); subclasses (IntEnum) take the full check.
    if o.is_exact_instance_of::<PyInt>() {
        return o
            .extract::<i64>()
            .map_err(|_| invalid(format!("{}: {o} does not fit in 64 bits", name())));
    }
    if !o.is_instance_of::<PyInt>() || o.is_instance_of::<PyBool>() {
        return Err(wrong_type(&name(), "int", o));
    }
    o.extract::<i64>()
        .map_err(|_| invalid(format!("{}: {o} does not fit in 64 bits", name())))
}

fn string(o: &Bound<'_, PyAny>, name: Name<'_>) -> PyResult<String> {
    let s = o
        .cast_fast::<PyString>()
        .map_err(|_| wrong_type(&name(), "str", o))?;
    match s.to_str() {
        Ok(v) => Ok(v.to_owned()),
        Err(e) => Err(not_text(o.py(), s, &e, name)),
    }
}

/// The `ValidationError` for a `str` that is not valid Unicode text (a lone surrogate, which
/// UTF-8 cannot encode), naming the field, the code point and where it is; `e` is the
/// `UnicodeEncodeError` the conversion raised.
#[cold]
fn not_text(py: Python<'_>, s: &Bound<'_, PyString>, e: &PyErr, name: Name<'_>) -> PyErr {
    let where_ = e
        .value(py)
        .getattr("start")
        .and_then(|i| i.extract::<usize>())
        .ok()
        .and_then(|i| {
            let c = s.get_item(i).ok()?;
            let cp = py
                .import("builtins")
                .and_then(|b| b.getattr("ord"))
                .and_then(|ord| ord.call1((c,)))
                .and_then(|v| v.extract::<u32>())
                .ok()?;
            Some(format!(" (lone surrogate U+{cp:04X} at index {i})"))
        })
        .unwrap_or_default();
    invalid(format!(
        "{}: not valid Unicode text{where_}; a str must be encodable as UTF-8",
        name()
    ))
}

/// A sequence-number argument (`expected_first`, `first_sequence`): `None` or an `int` in
/// `1..=u64::MAX`; anything else is a `WrongTypeError` / `ValidationError` naming `name`.
pub fn sequence_arg(o: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Option<u64>> {
    let Some(o) = o.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if !o.is_instance_of::<PyInt>() || o.is_instance_of::<PyBool>() {
        return Err(wrong_type(
            name,
            "an int (a WAL sequence number) or None",
            o,
        ));
    }
    match o.extract::<u64>() {
        Ok(v) if v >= 1 => Ok(Some(v)),
        _ => Err(invalid(format!(
            "{name}: must be a WAL sequence number in 1..{} or None, got {o}",
            u64::MAX
        ))),
    }
}

/// Converts one wire tuple into an [`Event`].
///
/// `shapes`: the record's TaskCreates share equal consecutive shapes (no `Arc` per task; the
/// projection then keeps the shared one as it is, and the batch encoder copies its bytes).
fn event_from_wire(obj: &Bound<'_, PyAny>, shapes: &mut ShapeCache) -> PyResult<Event> {
    let t = obj
        .cast_fast::<PyTuple>()
        .map_err(|_| wrong_type("event", "a wire tuple (tag, ...)", obj))?;
    let tag_obj = t
        .get_borrowed_item(0)
        .map_err(|_| invalid("event: an empty tuple has no tag".into()))?;
    let tag = int(&tag_obj, &|| "event tag".into())?;
    let Some(&name) = usize::try_from(tag).ok().and_then(|i| EVENT_NAMES.get(i)) else {
        return Err(invalid(format!(
            "event: unknown tag {tag} (known: 0..{})",
            EVENT_NAMES.len() - 1
        )));
    };
    let f = |names: &[&str]| Fields::open(obj, name, names);
    Ok(match tag {
        0 => {
            let f = f(&["tag", "spec", "origin", "at"])?;
            Event::TaskCreate {
                spec: Box::new(spec_from_wire(&*f.item(1)?, shapes)?),
                origin: f.i64(2, "origin")?,
                at: f.i64(3, "at")?,
            }
        }
        1 => {
            let f = f(&["tag", "run_id", "task_id", "ordinal", "scheduled_at", "at"])?;
            Event::RunCreate {
                run_id: f.id(1, "run_id")?,
                task_id: f.id(2, "task_id")?,
                ordinal: f.u32(3, "ordinal")?,
                scheduled_at: f.i64(4, "scheduled_at")?,
                at: f.i64(5, "at")?,
            }
        }
        2 => {
            let f = f(&["tag", "run_id", "from", "to", "not_before", "reason", "at"])?;
            Event::RunTransition {
                run_id: f.id(1, "run_id")?,
                from: f.state(2, "from")?,
                to: f.state(3, "to")?,
                not_before: f.opt_i64(4, "not_before")?,
                reason: f.opt_string(5, "reason")?,
                at: f.i64(6, "at")?,
            }
        }
        3 => {
            let f = f(&["tag", "run_id", "attempt_id", "at"])?;
            Event::AttemptStart {
                run_id: f.id(1, "run_id")?,
                attempt_id: f.id(2, "attempt_id")?,
                at: f.i64(3, "at")?,
            }
        }
        4 => {
            let f = f(&[
                "tag",
                "run_id",
                "attempt_id",
                "outcome",
                "error",
                "output",
                "at",
            ])?;
            let v = f.i64(3, "outcome")?;
            let outcome = u8::try_from(v)
                .ok()
                .and_then(AttemptOutcome::from_u8)
                .ok_or_else(|| {
                    invalid(format!(
                        "AttemptFinish.outcome: an outcome is 0..6, got {v}"
                    ))
                })?;
            Event::AttemptFinish {
                run_id: f.id(1, "run_id")?,
                attempt_id: f.id(2, "attempt_id")?,
                outcome,
                error: f.opt_string(4, "error")?,
                output: f.opt_bytes(5, "output")?,
                at: f.i64(6, "at")?,
            }
        }
        5 | 6 => {
            let f = f(&["tag", "run_id", "owner", "expires_at", "at"])?;
            let (run_id, owner, expires_at, at) = (
                f.id(1, "run_id")?,
                f.string(2, "owner")?,
                f.i64(3, "expires_at")?,
                f.i64(4, "at")?,
            );
            if tag == 5 {
                Event::LeaseAcquire {
                    run_id,
                    owner,
                    expires_at,
                    at,
                }
            } else {
                Event::LeaseHeartbeat {
                    run_id,
                    owner,
                    expires_at,
                    at,
                }
            }
        }
        7 | 8 => {
            let f = f(&["tag", "run_id", "owner", "at"])?;
            let (run_id, owner, at) = (f.id(1, "run_id")?, f.string(2, "owner")?, f.i64(3, "at")?);
            if tag == 7 {
                Event::LeaseExpire { run_id, owner, at }
            } else {
                Event::LeaseRelease { run_id, owner, at }
            }
        }
        9 => {
            let f = f(&["tag", "task_id", "reason", "at"])?;
            Event::TaskCancel {
                task_id: f.id(1, "task_id")?,
                reason: f.opt_string(2, "reason")?,
                at: f.i64(3, "at")?,
            }
        }
        10 => Event::EnginePause {
            at: f(&["tag", "at"])?.i64(1, "at")?,
        },
        11 => Event::EngineResume {
            at: f(&["tag", "at"])?.i64(1, "at")?,
        },
        _ => {
            let f = f(&["tag", "before", "at"])?;
            Event::Prune {
                before: f.i64(1, "before")?,
                at: f.i64(2, "at")?,
            }
        }
    })
}

/// Converts a sequence (list or tuple) of wire tuples.
pub fn events_from_wire(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Event>> {
    let mut shapes = ShapeCache::default();
    let mut convert = |i: usize, item: &Bound<'_, PyAny>| {
        event_from_wire(item, &mut shapes).map_err(|e| prefix(obj.py(), e, i))
    };
    if let Ok(l) = obj.cast_fast::<PyList>() {
        let mut out = Vec::with_capacity(l.len());
        for (i, item) in l.iter().enumerate() {
            out.push(convert(i, &item)?);
        }
        Ok(out)
    } else if let Ok(t) = obj.cast_fast::<PyTuple>() {
        let mut out = Vec::with_capacity(t.len());
        for (i, item) in t.iter_borrowed().enumerate() {
            out.push(convert(i, &item)?);
        }
        Ok(out)
    } else {
        Err(wrong_type("events", "a list of wire tuples", obj))
    }
}

/// The record of `Engine.submit_uniform`: for each `(data, content_type)` of `payloads`, a
/// TaskCreate of `template` (a TaskSpec wire tuple whose id and payload are placeholders) with
/// that payload and the next id of `ids` as its task id, followed by a RunCreate per
/// `(ordinal, scheduled_at)` of `runs` with the next ids as run ids. `template` is converted
/// once and cloned per task: no Python tuple per event is built or read.
pub fn uniform_events_from_wire(
    template: &Bound<'_, PyAny>,
    payloads: &Bound<'_, PyAny>,
    runs: &[(u32, i64)],
    ready: usize,
    origin: i64,
    at: i64,
    ids: &[u8],
) -> PyResult<Vec<Event>> {
    let spec = spec_from_wire(template, &mut ShapeCache::default())?;
    if ready > runs.len() {
        return Err(invalid(format!(
            "ready: {ready} runs per task cannot be promoted, each task has {} runs",
            runs.len()
        )));
    }
    if let Some(&(ordinal, scheduled_at)) = runs[..ready].iter().find(|r| r.1 > at) {
        return Err(invalid(format!(
            "ready: run {ordinal} is scheduled at {scheduled_at} ms, after the submit time {at} \
             ms: only due runs can be created Ready"
        )));
    }
    let list = payloads
        .cast_fast::<PyList>()
        .map_err(|_| wrong_type("payloads", "a list of (bytes, str | None) pairs", payloads))?;
    let per_task = 1 + runs.len();
    let n = list.len();
    if ids.len() != n.saturating_mul(per_task).saturating_mul(16) {
        return Err(invalid(format!(
            "ids: expected 16 bytes per task and per run ({n} tasks x {per_task} ids), got {} \
             bytes",
            ids.len()
        )));
    }
    let mut next_id = ids.chunks_exact(16).map(|c| {
        let id: Id = c.try_into().unwrap_or(NIL_ID);
        if id == NIL_ID {
            Err(invalid("ids: the nil UUID is not a valid id".into()))
        } else {
            Ok(id)
        }
    });
    let mut take = || {
        next_id
            .next()
            .unwrap_or_else(|| Err(invalid("ids: too few ids".into())))
    };
    let mut out = Vec::with_capacity(n * (per_task + ready));
    for (i, item) in list.iter().enumerate() {
        let f = Fields::open(&item, "payload", &["data", "content_type"])
            .map_err(|e| prefix_as(item.py(), e, "payloads", i))?;
        let task_id = take()?;
        // Built field by field, not cloned from the template: its placeholder payload and
        // content type would be copied only to be replaced; the shape is shared.
        let task = TaskSpec {
            id: task_id,
            payload: f
                .bytes(0, "data")
                .map_err(|e| prefix_as(item.py(), e, "payloads", i))?,
            content_type: f
                .opt_string(1, "content_type")
                .map_err(|e| prefix_as(item.py(), e, "payloads", i))?,
            dedupe_key: spec.dedupe_key.clone(),
            shape: Arc::clone(&spec.shape),
        };
        out.push(Event::TaskCreate {
            spec: Box::new(task),
            origin,
            at,
        });
        for (k, &(ordinal, scheduled_at)) in runs.iter().enumerate() {
            let run_id = take()?;
            out.push(Event::RunCreate {
                run_id,
                task_id,
                ordinal,
                scheduled_at,
                at,
            });
            if k < ready {
                out.push(Event::RunTransition {
                    run_id,
                    from: RunState::Scheduled,
                    to: RunState::Ready,
                    not_before: None,
                    reason: None,
                    at,
                });
            }
        }
    }
    Ok(out)
}

/// Adds "events[i]: " to an error raised for item `i` of a batch.
fn prefix(py: Python<'_>, e: PyErr, i: usize) -> PyErr {
    prefix_as(py, e, "events", i)
}

/// Adds "`what`[i]: " to an error raised for item `i` of a batch.
fn prefix_as(py: Python<'_>, e: PyErr, what: &str, i: usize) -> PyErr {
    let v = e.value(py);
    if let Ok(msg) = v.str() {
        let text = format!("{what}[{i}]: {msg}");
        if let Ok(new) = v.get_type().call1((text,)) {
            return PyErr::from_value(new);
        }
    }
    e
}

/// A TaskSpec wire tuple; its shape through `shapes` (shared when equal to the previous one).
fn spec_from_wire(obj: &Bound<'_, PyAny>, shapes: &mut ShapeCache) -> PyResult<TaskSpec> {
    let f = Fields::open(
        obj,
        "TaskSpec",
        &[
            "id",
            "handler",
            "payload",
            "content_type",
            "policy",
            "constraints",
            "metadata",
            "dedupe_key",
        ],
    )?;
    // Fields are read in wire order, so the first bad one is the one reported.
    let id = f.id(0, "id")?;
    let handler = f.opt_string(1, "handler")?;
    let payload = f.bytes(2, "payload")?;
    let content_type = f.opt_string(3, "content_type")?;
    let shape = TaskShape {
        handler,
        policy: policy_from_wire(&*f.item(4)?)?,
        constraints: constraints_from_wire(&*f.item(5)?)?,
        metadata: metadata_from_wire(&*f.item(6)?)?,
    };
    Ok(TaskSpec {
        id,
        payload,
        content_type,
        dedupe_key: f.opt_string(7, "dedupe_key")?,
        shape: shapes.intern(shape),
    })
}

fn policy_from_wire(obj: &Bound<'_, PyAny>) -> PyResult<RunPolicy> {
    let f = Fields::open(obj, "RunPolicy", &["kind", "misfire"])?;
    let kind_obj = f.item(0)?;
    let kt = kind_obj
        .cast_fast::<PyTuple>()
        .map_err(|_| wrong_type("RunPolicy.kind", "a tuple", &kind_obj))?;
    let k = int(&*kt.get_borrowed_item(0)?, &|| "RunPolicy.kind tag".into())?;
    let kind = match k {
        0 => {
            Fields::open(&kind_obj, "Once", &["tag"])?;
            PolicyKind::Once
        }
        1 => {
            let r = Fields::open(&kind_obj, "Repeat", &["tag", "count", "interval_ms"])?;
            PolicyKind::Repeat {
                count: r.u32(1, "count")?,
                interval_ms: r.i64(2, "interval_ms")?,
            }
        }
        2 => {
            let c = Fields::open(
                &kind_obj,
                "Cron",
                &["tag", "expression", "timezone", "max_occurrences", "window"],
            )?;
            PolicyKind::Cron {
                expression: c.string(1, "expression")?,
                timezone: c.string(2, "timezone")?,
                max_occurrences: c.opt_u32(3, "max_occurrences")?,
                window: c.u32(4, "window")?,
            }
        }
        other => {
            return Err(invalid(format!(
                "RunPolicy.kind: unknown tag {other} (0 Once, 1 Repeat, 2 Cron)"
            )))
        }
    };
    let misfire = f.item(1)?;
    let m = Fields::open(&misfire, "Misfire", &["kind", "cap", "grace_ms"])?;
    let mk = m.i64(0, "kind")?;
    let mkind = match mk {
        0 => MisfireKind::CatchUp,
        1 => MisfireKind::Coalesce,
        2 => MisfireKind::Skip,
        other => {
            return Err(invalid(format!(
                "Misfire.kind: unknown kind {other} (0 catch_up, 1 coalesce, 2 skip)"
            )))
        }
    };
    Ok(RunPolicy {
        kind,
        misfire: Misfire {
            kind: mkind,
            cap: m.opt_u32(1, "cap")?,
            grace_ms: m.opt_i64(2, "grace_ms")?,
        },
    })
}

fn constraints_from_wire(obj: &Bound<'_, PyAny>) -> PyResult<Constraints> {
    let f = Fields::open(
        obj,
        "TaskConstraints",
        &[
            "max_attempts",
            "timeout_ms",
            "concurrency_key",
            "hold",
            "backoff",
            "retry_on",
        ],
    )?;
    let hold = match f.i64(3, "hold")? {
        0 => HoldPolicy::HoldDuringRetry,
        1 => HoldPolicy::ReleaseOnRetry,
        other => {
            return Err(invalid(format!(
                "TaskConstraints.hold: unknown hold policy {other} (0 hold_during_retry, 1 release_on_retry)"
            )))
        }
    };
    let b_obj = f.item(4)?;
    let bt = b_obj
        .cast_fast::<PyTuple>()
        .map_err(|_| wrong_type("TaskConstraints.backoff", "a tuple", &b_obj))?;
    let backoff = match int(&*bt.get_borrowed_item(0)?, &|| "Backoff tag".into())? {
        0 => {
            Fields::open(&b_obj, "Backoff.None", &["tag"])?;
            Backoff::None
        }
        1 => {
            let b = Fields::open(&b_obj, "Backoff.Fixed", &["tag", "delay_ms"])?;
            Backoff::Fixed {
                delay_ms: b.i64(1, "delay_ms")?,
            }
        }
        2 => {
            let b = Fields::open(
                &b_obj,
                "Backoff.Exponential",
                &["tag", "base_ms", "cap_ms", "jitter_ppm"],
            )?;
            Backoff::Exponential {
                base_ms: b.i64(1, "base_ms")?,
                cap_ms: b.i64(2, "cap_ms")?,
                jitter_ppm: b.u32(3, "jitter_ppm")?,
            }
        }
        other => {
            return Err(invalid(format!(
                "TaskConstraints.backoff: unknown tag {other} (0 none, 1 fixed, 2 exponential)"
            )))
        }
    };
    let retry_on = f.item(5)?;
    let r = Fields::open(
        &retry_on,
        "RetryOn",
        &["timeout", "lost", "terminal_errors"],
    )?;
    Ok(Constraints {
        max_attempts: f.u32(0, "max_attempts")?,
        timeout_ms: f.opt_i64(1, "timeout_ms")?,
        concurrency_key: f.opt_string(2, "concurrency_key")?,
        hold,
        backoff,
        retry_on: RetryOn {
            timeout: r.boolean(0, "timeout")?,
            lost: r.boolean(1, "lost")?,
            terminal_errors: r.strings(2, "terminal_errors")?,
        },
    })
}

fn metadata_from_wire(obj: &Bound<'_, PyAny>) -> PyResult<Metadata> {
    let f = Fields::open(obj, "TaskMetadata", &["priority", "tags", "description"])?;
    Ok(Metadata {
        priority: f.i32(0, "priority")?,
        tags: f.strings(1, "tags")?,
        description: f.opt_string(2, "description")?,
    })
}

// ---- Rust -> Python -------------------------------------------------------------------------

macro_rules! tuple {
    ($py:expr; $($x:expr),* $(,)?) => {
        PyTuple::new($py, [$( $x.into_bound_py_any($py)? ),*])
    };
}

fn id<'py>(py: Python<'py>, id: &Id) -> Bound<'py, PyBytes> {
    PyBytes::new(py, id)
}

fn opt_bytes<'py>(py: Python<'py>, b: &Option<Vec<u8>>) -> PyResult<Bound<'py, PyAny>> {
    match b {
        Some(b) => Ok(PyBytes::new(py, b).into_any()),
        None => Ok(py.None().into_bound(py)),
    }
}

/// Converts an [`Event`] into its wire tuple.
pub fn event_to_wire<'py>(py: Python<'py>, e: &Event) -> PyResult<Bound<'py, PyTuple>> {
    match e {
        Event::TaskCreate { spec, origin, at } => {
            tuple!(py; 0u8, spec_to_wire(py, spec)?, *origin, *at)
        }
        Event::RunCreate {
            run_id,
            task_id,
            ordinal,
            scheduled_at,
            at,
        } => tuple!(py; 1u8, id(py, run_id), id(py, task_id), *ordinal, *scheduled_at, *at),
        Event::RunTransition {
            run_id,
            from,
            to,
            not_before,
            reason,
            at,
        } => {
            tuple!(py; 2u8, id(py, run_id), *from as u8, *to as u8, *not_before, reason.as_deref(), *at)
        }
        Event::AttemptStart {
            run_id,
            attempt_id,
            at,
        } => tuple!(py; 3u8, id(py, run_id), id(py, attempt_id), *at),
        Event::AttemptFinish {
            run_id,
            attempt_id,
            outcome,
            error,
            output,
            at,
        } => {
            tuple!(py; 4u8, id(py, run_id), id(py, attempt_id), *outcome as u8, error.as_deref(), opt_bytes(py, output)?, *at)
        }
        Event::LeaseAcquire {
            run_id,
            owner,
            expires_at,
            at,
        } => tuple!(py; 5u8, id(py, run_id), owner.as_str(), *expires_at, *at),
        Event::LeaseHeartbeat {
            run_id,
            owner,
            expires_at,
            at,
        } => tuple!(py; 6u8, id(py, run_id), owner.as_str(), *expires_at, *at),
        Event::LeaseExpire { run_id, owner, at } => {
            tuple!(py; 7u8, id(py, run_id), owner.as_str(), *at)
        }
        Event::LeaseRelease { run_id, owner, at } => {
            tuple!(py; 8u8, id(py, run_id), owner.as_str(), *at)
        }
        Event::TaskCancel {
            task_id,
            reason,
            at,
        } => tuple!(py; 9u8, id(py, task_id), reason.as_deref(), *at),
        Event::EnginePause { at } => tuple!(py; 10u8, *at),
        Event::EngineResume { at } => tuple!(py; 11u8, *at),
        Event::Prune { before, at } => tuple!(py; 12u8, *before, *at),
    }
}

pub(crate) fn spec_to_wire<'py>(py: Python<'py>, spec: &TaskSpec) -> PyResult<Bound<'py, PyTuple>> {
    let s = &*spec.shape;
    let kind = match &s.policy.kind {
        PolicyKind::Once => tuple!(py; 0u8)?,
        PolicyKind::Repeat { count, interval_ms } => tuple!(py; 1u8, *count, *interval_ms)?,
        PolicyKind::Cron {
            expression,
            timezone,
            max_occurrences,
            window,
        } => tuple!(py; 2u8, expression.as_str(), timezone.as_str(), *max_occurrences, *window)?,
    };
    let m = &s.policy.misfire;
    let policy = tuple!(py; kind, tuple!(py; m.kind as u8, m.cap, m.grace_ms)?)?;
    let c = &s.constraints;
    let backoff = match &c.backoff {
        Backoff::None => tuple!(py; 0u8)?,
        Backoff::Fixed { delay_ms } => tuple!(py; 1u8, *delay_ms)?,
        Backoff::Exponential {
            base_ms,
            cap_ms,
            jitter_ppm,
        } => tuple!(py; 2u8, *base_ms, *cap_ms, *jitter_ppm)?,
    };
    let retry_on = tuple!(py; c.retry_on.timeout, c.retry_on.lost, PyList::new(py, &c.retry_on.terminal_errors)?)?;
    let constraints = tuple!(py; c.max_attempts, c.timeout_ms, c.concurrency_key.as_deref(), c.hold as u8, backoff, retry_on)?;
    let md = &s.metadata;
    let metadata = tuple!(py; md.priority, PyList::new(py, &md.tags)?, md.description.as_deref())?;
    tuple!(py;
        id(py, &spec.id),
        s.handler.as_deref(),
        PyBytes::new(py, &spec.payload),
        spec.content_type.as_deref(),
        policy,
        constraints,
        metadata,
        spec.dedupe_key.as_deref(),
    )
}
