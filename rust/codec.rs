//! The event codec: [`Event`] ⇄ bytes, with postcard (see `docs/FORMAT.md` § Payload).
//!
//! A WAL record's payload is `event_count` postcard-encoded events back to back. Postcard is
//! deterministic (one encoding per value), compact (varints, no field names) and tags enum
//! variants by index, so new event kinds appended to [`Event`] never break old logs.
//!
//! Decoding takes untrusted bytes: it returns `Err`, never panics, and never allocates more
//! than the input could justify — every length prefix is checked against the bytes that remain
//! before anything is copied, and the caller bounds the input by the maximum record size before
//! reading it from disk.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use crate::event::Event;
use crate::model::{Millis, TaskShape, TaskSpec};
use crate::{CoreError, Result};

/// A postcard output flavor appending to a `Vec<u8>` with inlined pushes. Postcard writes an
/// id (`[u8; 16]`, a tuple to serde) one byte at a time: through `to_extend`'s flavor each
/// byte was a call into `Vec::extend` (~9% of a batch submit's CPU). Same bytes either way:
/// a flavor only decides where they go.
struct AppendTo<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends the encoding of `event` to `out` (no length prefix).
pub fn encode_event_into(event: &Event, out: &mut Vec<u8>) -> Result<()> {
    postcard::serialize_with_flavor(event, AppendTo(out))
        .map_err(|e| CoreError::Decode(format!("cannot encode {} event: {e}", event.kind())))
}

/// Encodes one event into a fresh buffer.
pub fn encode_event(event: &Event) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    encode_event_into(event, &mut out)?;
    Ok(out)
}

/// Appends the encoding of every event of a batch to `out` (a record payload).
///
/// The TaskCreates of a `submit_many` record share their spec's shape (one `Arc`): its
/// encoding (handler; policy, constraints, metadata) is made once per batch and copied into
/// each event, which halves the encoding of such a record. The bytes are exactly the generic
/// encoding's (test `shape_fragments_encode_like_the_generic_path`).
pub fn encode_batch_into(events: &[Event], out: &mut Vec<u8>) -> Result<()> {
    // The events are borrowed for the whole loop, so no shape can be freed and its address
    // reused while it is the cached one.
    let mut cached: Option<(*const TaskShape, Option<ShapeBytes>)> = None;
    for event in events {
        let Event::TaskCreate { spec, origin, at } = event else {
            encode_event_into(event, out)?;
            continue;
        };
        let ptr = Arc::as_ptr(&spec.shape);
        match &mut cached {
            Some((p, bytes)) if std::ptr::eq(*p, ptr) => {
                let bytes = match bytes {
                    Some(b) => b,
                    None => bytes.insert(ShapeBytes::of(&spec.shape)?),
                };
                encode_task_create(spec, *origin, *at, bytes, out)?;
            }
            // A shape seen once so far: the generic path (a lone task pays nothing more).
            _ => {
                cached = Some((ptr, None));
                encode_event_into(event, out)?;
            }
        }
    }
    Ok(())
}

/// The encoded parts of a [`TaskShape`], in the places the flat `TaskSpec` puts them.
struct ShapeBytes {
    handler: Vec<u8>,
    /// policy, constraints, metadata (consecutive in the flat struct).
    rules: Vec<u8>,
}

impl ShapeBytes {
    fn of(shape: &TaskShape) -> Result<Self> {
        let mut handler = Vec::new();
        put(&shape.handler, &mut handler)?;
        let mut rules = Vec::new();
        put(
            &(&shape.policy, &shape.constraints, &shape.metadata),
            &mut rules,
        )?;
        Ok(Self { handler, rules })
    }
}

/// `Event::TaskCreate`'s variant index: the first variant (test
/// `shape_fragments_encode_like_the_generic_path`).
const TASK_CREATE_TAG: u8 = 0;

/// A TaskCreate, assembled in the flat struct's field order with the shape's bytes copied.
fn encode_task_create(
    spec: &TaskSpec,
    origin: Millis,
    at: Millis,
    shape: &ShapeBytes,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.push(TASK_CREATE_TAG);
    out.extend_from_slice(&spec.id);
    out.extend_from_slice(&shape.handler);
    put(&Bytes(&spec.payload), out)?;
    put(&spec.content_type, out)?;
    out.extend_from_slice(&shape.rules);
    put(&(&spec.dedupe_key, origin, at), out)
}

/// A byte string (postcard: varint length, then the bytes).
struct Bytes<'a>(&'a [u8]);

impl serde::Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

fn put<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    postcard::serialize_with_flavor(value, AppendTo(out))
        .map_err(|e| CoreError::Decode(format!("cannot encode a TaskCreate event: {e}")))
}

/// Decodes one event from the front of `bytes`; returns it and the bytes after it.
pub fn decode_event(bytes: &[u8]) -> Result<(Event, &[u8])> {
    postcard::take_from_bytes::<Event>(bytes).map_err(|e| CoreError::Decode(describe(&e)))
}

/// Decodes exactly `count` events filling all of `payload` (a record payload), pushing them to
/// `out`. Trailing bytes or too few bytes are errors.
pub fn decode_batch_into(payload: &[u8], count: u32, out: &mut Vec<Event>) -> Result<()> {
    let mut rest = payload;
    for i in 0..count {
        let (event, tail) = decode_event(rest)
            .map_err(|e| CoreError::Decode(format!("event {i} of {count}: {}", strip(&e))))?;
        out.push(event);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(CoreError::Decode(format!(
            "{} trailing bytes after {count} events",
            rest.len()
        )));
    }
    Ok(())
}

/// Decodes a whole record payload into a new vector.
pub fn decode_batch(payload: &[u8], count: u32) -> Result<Vec<Event>> {
    // `count` comes from disk: never trust it for the allocation (each event is >= 2 bytes).
    let cap = usize::try_from(count)
        .unwrap_or(usize::MAX)
        .min(payload.len() / 2);
    let mut out = Vec::with_capacity(cap);
    decode_batch_into(payload, count, &mut out)?;
    Ok(out)
}

fn describe(e: &postcard::Error) -> String {
    use postcard::Error as E;
    match e {
        E::DeserializeUnexpectedEnd => "unexpected end of input".into(),
        E::DeserializeBadVarint => "bad varint".into(),
        E::DeserializeBadBool => "bad bool byte".into(),
        E::DeserializeBadUtf8 => "invalid UTF-8 in a string".into(),
        E::DeserializeBadOption => "bad option tag".into(),
        E::DeserializeBadEnum | E::SerdeDeCustom => {
            "unknown enum tag or invalid value (an event kind from a newer version?)".into()
        }
        other => other.to_string(),
    }
}

fn strip(e: &CoreError) -> String {
    match e {
        CoreError::Decode(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
pub(crate) mod tests {
    use super::*;
    use crate::model::*;
    use proptest::prelude::*;

    fn id(n: u8) -> Id {
        let mut b = [0u8; 16];
        b[15] = n;
        b[0] = 0xA5;
        b
    }

    pub fn sample_spec() -> TaskSpec {
        TaskSpec {
            id: id(1),
            payload: b"hello".to_vec(),
            content_type: Some("text/plain".into()),
            dedupe_key: Some("dk".into()),
            shape: std::sync::Arc::new(TaskShape {
                handler: Some("send_email".into()),
                policy: RunPolicy {
                    kind: PolicyKind::Cron {
                        expression: "*/5 * * * *".into(),
                        timezone: "Europe/Paris".into(),
                        max_occurrences: Some(10),
                        window: 5,
                    },
                    misfire: Misfire {
                        kind: MisfireKind::CatchUp,
                        cap: Some(3),
                        grace_ms: None,
                    },
                },
                constraints: Constraints {
                    max_attempts: 3,
                    timeout_ms: Some(30_000),
                    concurrency_key: Some("k".into()),
                    hold: HoldPolicy::ReleaseOnRetry,
                    backoff: Backoff::Exponential {
                        base_ms: 100,
                        cap_ms: 10_000,
                        jitter_ppm: 100_000,
                    },
                    retry_on: RetryOn {
                        timeout: true,
                        lost: false,
                        terminal_errors: vec!["ValueError".into()],
                    },
                },
                metadata: Metadata {
                    priority: -5,
                    tags: vec!["a".into(), "b".into()],
                    description: None,
                },
            }),
        }
    }

    /// One event of every kind.
    pub fn every_event() -> Vec<Event> {
        vec![
            Event::TaskCreate {
                spec: Box::new(sample_spec()),
                origin: 1_700_000_000_000,
                at: 1_700_000_000_001,
            },
            Event::RunCreate {
                run_id: id(2),
                task_id: id(1),
                ordinal: 0,
                scheduled_at: 5,
                at: 6,
            },
            Event::RunTransition {
                run_id: id(2),
                from: RunState::Running,
                to: RunState::RetryWait,
                not_before: Some(99),
                reason: Some("boom".into()),
                at: 7,
            },
            Event::AttemptStart {
                run_id: id(2),
                attempt_id: id(3),
                at: 8,
            },
            Event::AttemptFinish {
                run_id: id(2),
                attempt_id: id(3),
                outcome: AttemptOutcome::RetryableFailure,
                error: Some("oops".into()),
                output: Some(vec![0, 1, 2]),
                at: 9,
            },
            Event::LeaseAcquire {
                run_id: id(2),
                owner: "w1".into(),
                expires_at: 100,
                at: 10,
            },
            Event::LeaseHeartbeat {
                run_id: id(2),
                owner: "w1".into(),
                expires_at: 200,
                at: 11,
            },
            Event::LeaseExpire {
                run_id: id(2),
                owner: "w1".into(),
                at: 12,
            },
            Event::LeaseRelease {
                run_id: id(2),
                owner: "w1".into(),
                at: 13,
            },
            Event::TaskCancel {
                task_id: id(1),
                reason: None,
                at: -14,
            },
            Event::EnginePause { at: 15 },
            Event::EngineResume { at: 16 },
            Event::Prune { before: 1, at: 17 },
        ]
    }

    #[test]
    fn every_event_round_trips() {
        for e in every_event() {
            let bytes = encode_event(&e).unwrap();
            let (back, rest) = decode_event(&bytes).unwrap();
            assert_eq!(back, e);
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn a_batch_round_trips_and_rejects_trailing_or_missing_bytes() {
        let events = every_event();
        let mut payload = Vec::new();
        encode_batch_into(&events, &mut payload).unwrap();
        assert_eq!(decode_batch(&payload, 13).unwrap(), events);
        assert!(decode_batch(&payload, 12).is_err());
        assert!(decode_batch(&payload, 14).is_err());
        assert!(decode_batch(&payload[..payload.len() - 1], 13).is_err());
    }

    #[test]
    fn known_bytes_pin_the_encoding() {
        // EnginePause { at: 15 }: tag 10, zigzag(15) = 30.
        assert_eq!(
            encode_event(&Event::EnginePause { at: 15 }).unwrap(),
            [10, 30]
        );
        // Prune { before: -1, at: 300 }: tag 12, zigzag(-1) = 1, zigzag(300) = 600 = 0xD8 0x04.
        assert_eq!(
            encode_event(&Event::Prune {
                before: -1,
                at: 300
            })
            .unwrap(),
            [12, 1, 0xD8, 0x04]
        );
    }

    #[test]
    fn unknown_tag_is_a_clean_error() {
        let err = decode_event(&[200, 1]).unwrap_err();
        assert!(err.to_string().contains("unknown enum tag"), "{err}");
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // AttemptFinish with an output claiming 2^62 bytes.
        let mut bytes = vec![4u8];
        bytes.extend_from_slice(&id(1));
        bytes.extend_from_slice(&id(2));
        bytes.push(0); // outcome
        bytes.push(0); // error None
        bytes.push(1); // output Some
        bytes.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F]);
        assert!(decode_event(&bytes).is_err());
    }

    pub fn arb_id() -> impl Strategy<Value = Id> {
        any::<[u8; 16]>()
    }

    fn arb_opt_str() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(".{0,12}")
    }

    fn arb_state() -> impl Strategy<Value = RunState> {
        (0u8..9).prop_map(|v| RunState::from_u8(v).unwrap())
    }

    fn arb_spec() -> impl Strategy<Value = TaskSpec> {
        (
            arb_id(),
            arb_opt_str(),
            proptest::collection::vec(any::<u8>(), 0..40),
            any::<u32>(),
            any::<i64>(),
            any::<i32>(),
            proptest::collection::vec(".{0,6}", 0..3),
            0u8..3,
        )
            .prop_map(|(id, handler, payload, n, ms, prio, tags, kind)| {
                let mut spec = sample_spec();
                spec.id = id;
                spec.shape_mut().handler = handler;
                spec.payload = payload;
                spec.shape_mut().policy.kind = match kind {
                    0 => PolicyKind::Once,
                    1 => PolicyKind::Repeat {
                        count: n,
                        interval_ms: ms,
                    },
                    _ => spec.shape.policy.kind.clone(),
                };
                spec.shape_mut().constraints.backoff = Backoff::Fixed { delay_ms: ms };
                spec.shape_mut().metadata.priority = prio;
                spec.shape_mut().metadata.tags = tags;
                spec
            })
    }

    pub fn arb_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (arb_spec(), any::<i64>(), any::<i64>()).prop_map(|(s, origin, at)| {
                Event::TaskCreate {
                    spec: Box::new(s),
                    origin,
                    at,
                }
            }),
            (arb_id(), arb_id(), any::<u32>(), any::<i64>(), any::<i64>()).prop_map(
                |(run_id, task_id, ordinal, scheduled_at, at)| Event::RunCreate {
                    run_id,
                    task_id,
                    ordinal,
                    scheduled_at,
                    at
                }
            ),
            (
                arb_id(),
                arb_state(),
                arb_state(),
                proptest::option::of(any::<i64>()),
                arb_opt_str(),
                any::<i64>()
            )
                .prop_map(|(run_id, from, to, not_before, reason, at)| {
                    Event::RunTransition {
                        run_id,
                        from,
                        to,
                        not_before,
                        reason,
                        at,
                    }
                }),
            (
                arb_id(),
                arb_id(),
                0u8..7,
                arb_opt_str(),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
                any::<i64>()
            )
                .prop_map(|(run_id, attempt_id, o, error, output, at)| {
                    Event::AttemptFinish {
                        run_id,
                        attempt_id,
                        outcome: AttemptOutcome::from_u8(o).unwrap(),
                        error,
                        output,
                        at,
                    }
                }),
            (arb_id(), ".{0,10}", any::<i64>(), any::<i64>()).prop_map(
                |(run_id, owner, expires_at, at)| Event::LeaseHeartbeat {
                    run_id,
                    owner,
                    expires_at,
                    at
                }
            ),
            (arb_id(), arb_opt_str(), any::<i64>()).prop_map(|(task_id, reason, at)| {
                Event::TaskCancel {
                    task_id,
                    reason,
                    at,
                }
            }),
            any::<i64>().prop_map(|at| Event::EnginePause { at }),
            (any::<i64>(), any::<i64>()).prop_map(|(before, at)| Event::Prune { before, at }),
        ]
    }

    proptest! {
        #[test]
        fn random_batches_round_trip(events in proptest::collection::vec(arb_event(), 1..20)) {
            let mut payload = Vec::new();
            encode_batch_into(&events, &mut payload).unwrap();
            let n = u32::try_from(events.len()).unwrap();
            prop_assert_eq!(decode_batch(&payload, n).unwrap(), events);
        }

        /// Records whose TaskCreates share shapes (as `submit_uniform` builds them), mixed
        /// with every other kind of event: the batch encoder's copied shape bytes equal the
        /// generic encoding event by event.
        #[test]
        fn shape_fragments_encode_like_the_generic_path(
            events in proptest::collection::vec(arb_event(), 1..12),
            copies in proptest::collection::vec(0usize..4, 1..12),
        ) {
            let mut batch = Vec::new();
            for (e, k) in events.into_iter().zip(copies.into_iter().cycle()) {
                if let Event::TaskCreate { spec, origin, at } = &e {
                    for c in 0..k {
                        let mut twin = (**spec).clone(); // shares the shape's Arc
                        twin.id[0] ^= 1 + c as u8;
                        twin.payload.push(c as u8);
                        batch.push(Event::TaskCreate { spec: Box::new(twin), origin: *origin, at: *at });
                    }
                }
                batch.push(e);
            }
            let mut fast = Vec::new();
            encode_batch_into(&batch, &mut fast).unwrap();
            let generic: Vec<u8> = batch.iter().flat_map(|e| encode_event(e).unwrap()).collect();
            prop_assert_eq!(&fast, &generic);
            let n = u32::try_from(batch.len()).unwrap();
            prop_assert_eq!(decode_batch(&fast, n).unwrap(), batch);
        }

        #[test]
        fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), n in 0u32..50) {
            let _ = decode_batch(&bytes, n);
            let _ = decode_event(&bytes);
        }

        #[test]
        fn mutated_encodings_never_panic(e in arb_event(), pos in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = encode_event(&e).unwrap();
            let i = pos % bytes.len();
            bytes[i] = byte;
            let _ = decode_event(&bytes);
        }
    }
}
