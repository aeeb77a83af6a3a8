//! Property tests over random histories.

use proptest::prelude::*;

use super::gen::{replay, Driver};

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Replaying the accepted records gives the same state (digest) and consistent indexes;
    /// replaying twice gives the same digest again.
    #[test]
    fn apply_equals_replay(choices in prop::collection::vec(any::<(u8, u16, u16)>(), 1..200)) {
        let mut d = Driver::new();
        for c in choices {
            d.step(c);
        }
        let a = replay(&d.records);
        prop_assert_eq!(a.state_digest(), d.p.state_digest());
        prop_assert!(a.debug_check_indexes().is_ok());
        prop_assert_eq!(replay(&d.records).state_digest(), a.state_digest());
        prop_assert_eq!(a.counts(), d.p.counts());
    }

    /// Snapshot at any record boundary, decode, apply the tail: same as the full replay.
    #[test]
    fn snapshot_then_tail_equals_full_replay(
        choices in prop::collection::vec(any::<(u8, u16, u16)>(), 1..150),
        split in any::<prop::sample::Index>(),
    ) {
        let mut d = Driver::new();
        for c in choices {
            d.step(c);
        }
        let k = split.index(d.records.len() + 1);
        let mut head = replay(&d.records[..k]);
        let bytes = crate::snapshot::encode(&mut head).unwrap();
        let mut restored = crate::snapshot::decode(&bytes, u64::MAX).unwrap();
        prop_assert_eq!(restored.state_digest(), head.state_digest());
        prop_assert!(restored.debug_check_indexes().is_ok());
        for (seq, events) in &d.records[k..] {
            restored.apply(*seq, events).unwrap();
        }
        prop_assert_eq!(restored.state_digest(), d.p.state_digest());
        prop_assert!(restored.debug_check_indexes().is_ok());
    }
}

#[test]
fn the_generator_exercises_most_paths() {
    let mut d = Driver::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..3000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        d.step(((x & 0xff) as u8, (x >> 8) as u16, (x >> 24) as u16));
    }
    let c = d.p.counts();
    let accepted = d.records.len();
    let mut entered = [0usize; 9];
    for (_, evs) in &d.records {
        for e in evs {
            if let crate::event::Event::RunTransition { to, .. } = e {
                entered[*to as usize] += 1;
            }
        }
    }
    println!(
        "accepted {accepted}, rejected {}, counts {c:?}, entered {entered:?}",
        d.rejected
    );
    assert!(
        entered[1..].iter().all(|n| *n > 0),
        "a state was never entered: {entered:?}"
    );
    assert!(
        accepted > 1000 && d.rejected > 100,
        "{accepted} / {}",
        d.rejected
    );
    assert!(
        c.iter().filter(|n| **n > 0).count() >= 5,
        "too few states reached: {c:?}"
    );
    assert_eq!(replay(&d.records).state_digest(), d.p.state_digest());
}
