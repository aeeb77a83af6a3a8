//! Tasks of one template share their shape (handler, policy, constraints, metadata) in
//! memory, while every TaskCreate still carries it in full on disk.

use std::sync::Arc;

use super::*;

fn shape_of(p: &P, task: Id) -> Arc<TaskShape> {
    Arc::clone(&p.0.tasks.get(&task).expect("live task").spec.shape)
}

/// Applies a record the way the authority and replay do: events moved in, not cloned.
fn apply_owned(p: &mut P, events: Vec<Event>) {
    let seq = p.0.next_sequence();
    p.0.apply_owned(seq, events).unwrap();
    p.0.debug_check_indexes().unwrap();
}

#[test]
fn equal_shapes_are_kept_once_whatever_their_origin() {
    let mut p = P::new();
    // Specs converted or decoded one by one (each with its own copy of an equal shape),
    // then another shape, then the first one again.
    apply_owned(&mut p, vec![tc(spec(id(1)), 0), tc(spec(id(2)), 0)]);
    apply_owned(&mut p, vec![tc(spec(id(3)), 0)]);
    let mut other = spec(id(4));
    other.shape_mut().metadata.priority = 9;
    apply_owned(&mut p, vec![tc(other, 0)]);
    apply_owned(&mut p, vec![tc(spec(id(5)), 0)]);

    let first = shape_of(&p, id(1));
    assert!(Arc::ptr_eq(&first, &shape_of(&p, id(2))));
    assert!(Arc::ptr_eq(&first, &shape_of(&p, id(3))));
    assert_eq!(shape_of(&p, id(4)).metadata.priority, 9);
    assert!(!Arc::ptr_eq(&first, &shape_of(&p, id(4))));
    // Only the previous task's shape is remembered: sharing is per run of equal shapes.
    assert_eq!(*shape_of(&p, id(5)), *first);
    // What each task answers is its own spec, shared or not.
    for n in [1, 2, 3, 5] {
        assert_eq!(*p.0.task(&id(n)).unwrap().spec, spec(id(n)));
    }
}

#[test]
fn a_template_shared_by_a_batch_is_adopted_as_it_is() {
    let mut p = P::new();
    apply_owned(&mut p, vec![tc(spec(id(1)), 0)]);
    // What submit_uniform builds: every spec of the record holds the template's shape.
    let template = spec(id(100));
    let batch: Vec<Event> = (2..6)
        .map(|n| {
            let mut s = template.clone();
            s.id = id(n);
            tc(s, 0)
        })
        .collect();
    drop(template);
    apply_owned(&mut p, batch);
    let batch_shape = shape_of(&p, id(2));
    for n in 3..6 {
        assert!(Arc::ptr_eq(&batch_shape, &shape_of(&p, id(n))));
    }
    assert_eq!(*batch_shape, *shape_of(&p, id(1)));
    // A plain submit after the batch shares the batch's shape.
    apply_owned(&mut p, vec![tc(spec(id(7)), 0)]);
    assert!(Arc::ptr_eq(&batch_shape, &shape_of(&p, id(7))));
}

#[test]
fn changing_a_shared_shape_copies_it_first() {
    let a = spec(id(1));
    let mut b = a.clone();
    assert!(Arc::ptr_eq(&a.shape, &b.shape));
    b.shape_mut().constraints.max_attempts = 7;
    assert_eq!(a.shape.constraints.max_attempts, 1);
    assert_eq!(b.shape.constraints.max_attempts, 7);
}

/// The layout of a TaskSpec before the shape was split off: one struct, fields in this order.
#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct FlatSpec {
    id: Id,
    handler: Option<String>,
    payload: Vec<u8>,
    content_type: Option<String>,
    policy: RunPolicy,
    constraints: Constraints,
    metadata: Metadata,
    dedupe_key: Option<String>,
}

#[test]
fn the_encoding_is_the_flat_struct_of_format_md() {
    let mut s = crate::codec::tests::sample_spec();
    s.payload = (0..=255).collect();
    let sh = &*s.shape;
    let flat = FlatSpec {
        id: s.id,
        handler: sh.handler.clone(),
        payload: s.payload.clone(),
        content_type: s.content_type.clone(),
        policy: sh.policy.clone(),
        constraints: sh.constraints.clone(),
        metadata: sh.metadata.clone(),
        dedupe_key: s.dedupe_key.clone(),
    };
    let bytes = postcard::to_allocvec(&s).unwrap();
    assert_eq!(bytes, postcard::to_allocvec(&flat).unwrap());
    assert_eq!(postcard::from_bytes::<TaskSpec>(&bytes).unwrap(), s);
    assert_eq!(postcard::from_bytes::<FlatSpec>(&bytes).unwrap(), flat);
}
