//! The session state machine driven by a simulated clock and an in-memory wire: handshakes,
//! authorisation, tampering, replay, bounds, timers and rekeying under traffic, without sockets or
//! sleeping.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

use super::frame::FrameReader;
use super::*;

fn identity(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn config(seed: u8, authorize: Authorize, timers: Timers) -> Arc<Config> {
    Arc::new(raw_config(seed, authorize, timers))
}

fn raw_config(seed: u8, authorize: Authorize, timers: Timers) -> Config {
    Config::new(
        Zeroizing::new([seed.wrapping_add(100); 32]),
        &identity(seed),
        "test.ledgergate/log",
        authorize,
    )
    .unwrap()
    .with_timers(timers)
    .with_max_message(1 << 20)
}

fn only(seed: u8) -> Authorize {
    let id = Identity::of(&identity(seed));
    Arc::new(move |p: &Identity| *p == id)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Frames out of a call's outputs, and what it delivered.
#[derive(Default)]
struct Outcome {
    frames: Vec<(u8, Vec<u8>)>,
    delivered: Vec<Vec<u8>>,
    established: Option<Identity>,
    rekeys: usize,
}

fn split(outputs: Vec<Output>) -> Outcome {
    let mut o = Outcome::default();
    let mut reader = FrameReader::default();
    for out in outputs {
        match out {
            Output::Transmit(bytes) => reader.push(&bytes),
            Output::Deliver(m) => o.delivered.push(m),
            Output::Established(p) => o.established = Some(p),
            Output::Rekeyed(_) => o.rekeys += 1,
        }
    }
    while let Some(f) = reader.next_frame().unwrap() {
        o.frames.push(f);
    }
    o
}

/// Two sessions and the frames in flight between them.
struct Pair {
    a: Session,
    b: Session,
    to_b: VecDeque<(u8, Vec<u8>)>,
    to_a: VecDeque<(u8, Vec<u8>)>,
    got_a: Vec<Vec<u8>>,
    got_b: Vec<Vec<u8>>,
}

impl Pair {
    fn new(a: Arc<Config>, b: Arc<Config>) -> Pair {
        let (a, first) = Session::initiator(a, secs(0)).unwrap();
        let b = Session::responder(b, secs(0)).unwrap();
        Pair {
            a,
            b,
            to_b: split(first).frames.into(),
            to_a: VecDeque::new(),
            got_a: Vec::new(),
            got_b: Vec::new(),
        }
    }

    /// Delivers every frame in flight (both ways) until none is left.
    fn pump(&mut self, now: Duration) -> Result<(), ChannelError> {
        while !self.to_a.is_empty() || !self.to_b.is_empty() {
            if let Some((e, mut m)) = self.to_b.pop_front() {
                let o = split(self.b.receive(now, e, &mut m)?);
                self.to_a.extend(o.frames);
                self.got_b.extend(o.delivered);
            }
            if let Some((e, mut m)) = self.to_a.pop_front() {
                let o = split(self.a.receive(now, e, &mut m)?);
                self.to_b.extend(o.frames);
                self.got_a.extend(o.delivered);
            }
        }
        Ok(())
    }

    fn a_sends(&mut self, now: Duration, m: &[u8]) {
        let o = split(self.a.send(now, m).unwrap());
        self.to_b.extend(o.frames);
    }

    fn b_sends(&mut self, now: Duration, m: &[u8]) {
        let o = split(self.b.send(now, m).unwrap());
        self.to_a.extend(o.frames);
    }

    fn tick(&mut self, now: Duration) -> Result<(), ChannelError> {
        let o = split(self.a.tick(now)?);
        self.to_b.extend(o.frames);
        let o = split(self.b.tick(now)?);
        self.to_a.extend(o.frames);
        Ok(())
    }
}

fn open_pair() -> Pair {
    let mut p = Pair::new(
        config(1, only(2), Timers::default()),
        config(2, only(1), Timers::default()),
    );
    p.pump(secs(0)).unwrap();
    p
}

#[test]
fn the_handshake_authenticates_both_identities_and_messages_flow_both_ways() {
    let mut p = open_pair();
    assert_eq!(p.a.peer(), Some(Identity::of(&identity(2))));
    assert_eq!(p.b.peer(), Some(Identity::of(&identity(1))));
    assert_eq!((p.a.epoch(), p.b.epoch()), (Some(0), Some(0)));
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    p.a_sends(secs(1), b"hello");
    p.a_sends(secs(1), &big);
    p.a_sends(secs(1), b"");
    p.b_sends(secs(1), b"back");
    p.pump(secs(1)).unwrap();
    assert_eq!(p.got_b, vec![b"hello".to_vec(), big, Vec::new()]);
    assert_eq!(p.got_a, vec![b"back".to_vec()]);
}

#[test]
fn an_unknown_identity_is_refused_at_the_handshake_by_either_side() {
    // The responder knows only identity 3: the initiator (1) is refused at message 3.
    let mut p = Pair::new(
        config(1, only(2), Timers::default()),
        config(2, only(3), Timers::default()),
    );
    let err = p.pump(secs(0)).unwrap_err();
    assert_eq!(err, ChannelError::Unauthorized(Identity::of(&identity(1))));
    assert!(!p.b.is_open());
    // The initiator knows only 3: the responder (2) is refused at message 2, before message 3.
    let mut p = Pair::new(
        config(1, only(3), Timers::default()),
        config(2, only(1), Timers::default()),
    );
    assert_eq!(
        p.pump(secs(0)).unwrap_err(),
        ChannelError::Unauthorized(Identity::of(&identity(2)))
    );
    assert!(p.to_b.is_empty(), "no message 3 was sent");
}

#[test]
fn the_initiator_is_established_only_once_the_responder_confirms_message_3() {
    let handshake_to_3 = |responder_allows: Authorize| {
        let (mut a, first) =
            Session::initiator(config(1, only(2), Timers::default()), secs(0)).unwrap();
        let mut b =
            Session::responder(config(2, responder_allows, Timers::default()), secs(0)).unwrap();
        let (e, mut m1) = split(first).frames.remove(0);
        let (e2, mut m2) = split(b.receive(secs(0), e, &mut m1).unwrap())
            .frames
            .remove(0);
        let third = split(a.receive(secs(0), e2, &mut m2).unwrap());
        // Message 3 is sent, but nothing says the responder took it.
        assert_eq!(third.frames.len(), 1);
        assert_eq!(third.established, None);
        (a, b, third.frames[0].clone())
    };

    // Accepted: the responder is established on message 3 and confirms it with a keepalive; the
    // initiator is established when that keepalive opens.
    let (mut a, mut b, (e3, mut m3)) = handshake_to_3(only(1));
    let accepted = split(b.receive(secs(0), e3, &mut m3).unwrap());
    assert_eq!(accepted.established, Some(Identity::of(&identity(1))));
    assert_eq!(accepted.frames.len(), 1, "the confirming keepalive");
    let (e, mut keepalive) = accepted.frames[0].clone();
    let confirmed = split(a.receive(secs(0), e, &mut keepalive).unwrap());
    assert_eq!(confirmed.established, Some(Identity::of(&identity(2))));
    assert!(confirmed.delivered.is_empty());

    // Refused at message 3: the initiator never reports a session, and gives up after the
    // handshake timeout.
    let (mut a, mut b, (e3, mut m3)) = handshake_to_3(only(3));
    assert_eq!(
        b.receive(secs(0), e3, &mut m3),
        Err(ChannelError::Unauthorized(Identity::of(&identity(1))))
    );
    assert!(a.tick(secs(4)).is_ok());
    assert_eq!(
        a.tick(secs(5)),
        Err(ChannelError::Timeout(
            "the handshake was not confirmed in time"
        ))
    );
}

#[test]
fn a_first_message_of_the_wrong_size_is_refused_before_any_work() {
    let mut b = Session::responder(config(2, only(1), Timers::default()), secs(0)).unwrap();
    assert_eq!(
        b.receive(secs(0), 0, &mut [0u8; 33]),
        Err(ChannelError::Protocol(
            "a first handshake message of the wrong size"
        ))
    );
    assert_eq!(
        b.receive(secs(0), 0, &mut [0u8; 32]),
        Err(ChannelError::Closed)
    );
}

/// One transport frame from a to b, not yet delivered.
fn one_frame(p: &mut Pair, m: &[u8]) -> (u8, Vec<u8>) {
    let o = split(p.a.send(secs(1), m).unwrap());
    assert_eq!(o.frames.len(), 1);
    o.frames.into_iter().next().unwrap()
}

#[test]
fn a_message_over_one_frame_is_split_into_equal_fragments_and_arrives_whole() {
    let mut p = open_pair();
    let message: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
    let o = split(p.a.send(secs(1), &message).unwrap());
    // Two fragments of 32 KiB (each with its kind byte and tag), not 65,517 bytes and 19.
    let sizes: Vec<usize> = o.frames.iter().map(|(_, m)| m.len()).collect();
    assert_eq!(sizes, [32_768 + 1 + 16, 32_768 + 1 + 16]);
    let mut delivered = Vec::new();
    for (epoch, mut frame) in o.frames {
        delivered.extend(split(p.b.receive(secs(1), epoch, &mut frame).unwrap()).delivered);
    }
    assert_eq!(delivered, [message]);
}

#[test]
fn a_flipped_replayed_reordered_or_truncated_frame_closes_the_session() {
    // flipped
    let mut p = open_pair();
    let (e, mut m) = one_frame(&mut p, b"payload");
    m[3] ^= 1;
    assert!(matches!(
        p.b.receive(secs(1), e, &mut m),
        Err(ChannelError::Noise(_))
    ));
    assert!(!p.b.is_open());
    assert_eq!(p.b.receive(secs(1), e, &mut m), Err(ChannelError::Closed));
    // replayed
    let mut p = open_pair();
    let (e, mut m) = one_frame(&mut p, b"once");
    assert_eq!(
        split(p.b.receive(secs(1), e, &mut m).unwrap()).delivered,
        vec![b"once".to_vec()]
    );
    assert!(matches!(
        p.b.receive(secs(1), e, &mut m),
        Err(ChannelError::Noise(_))
    ));
    // reordered
    let mut p = open_pair();
    let first = one_frame(&mut p, b"1");
    let mut second = one_frame(&mut p, b"2");
    assert!(p.b.receive(secs(1), second.0, &mut second.1).is_err());
    let _ = first;
    // truncated
    let mut p = open_pair();
    let (e, mut m) = one_frame(&mut p, b"whole");
    assert!(
        p.b.receive(secs(1), e, {
            let n = m.len() - 1;
            &mut m[..n]
        })
        .is_err()
    );
    // an epoch nobody has
    let mut p = open_pair();
    let (_, mut m) = one_frame(&mut p, b"x");
    assert_eq!(
        p.b.receive(secs(1), 9, &mut m),
        Err(ChannelError::Protocol("a frame of an unknown epoch"))
    );
}

#[test]
fn messages_over_the_bound_are_refused_on_either_side() {
    let big = raw_config(1, only(2), Timers::default()).with_max_message(1 << 22);
    let mut p = Pair::new(Arc::new(big), config(2, only(1), Timers::default()));
    p.pump(secs(0)).unwrap();
    let over = vec![7u8; (1 << 20) + 1];
    // The receiver's bound: reassembly stops at its limit.
    p.a_sends(secs(1), &over);
    assert_eq!(p.pump(secs(1)), Err(ChannelError::TooLarge(1 << 20)));
    // The sender's own bound.
    let mut q = open_pair();
    assert_eq!(
        q.a.send(secs(1), &over),
        Err(ChannelError::TooLarge(1 << 20))
    );
}

#[test]
fn rekeys_under_continuous_traffic_lose_and_duplicate_nothing() {
    let timers = Timers {
        rekey_after: secs(2),
        reject_after: secs(4),
        rekey_timeout: secs(1),
        keepalive: secs(1),
    };
    let mut p = Pair::new(config(1, only(2), timers), config(2, only(1), timers));
    p.pump(secs(0)).unwrap();
    let (mut sent_a, mut sent_b) = (Vec::new(), Vec::new());
    let mut epochs = std::collections::BTreeSet::new();
    let mut rekeys = 0;
    // 20 simulated seconds in 50 ms steps. Frames are delivered one step late, so that each rekey
    // crosses messages in flight both ways.
    for step in 0..400u64 {
        let now = Duration::from_millis(step * 50);
        let (a_msg, b_msg) = (
            format!("a{step}").into_bytes(),
            format!("b{step}").into_bytes(),
        );
        p.a_sends(now, &a_msg);
        p.b_sends(now, &b_msg);
        sent_a.push(a_msg);
        sent_b.push(b_msg);
        p.tick(now).unwrap();
        // deliver what was in flight before this step's sends, one frame each way
        for _ in 0..2 {
            if let Some((e, mut m)) = p.to_b.pop_front() {
                let o = split(p.b.receive(now, e, &mut m).unwrap());
                rekeys += o.rekeys;
                p.to_a.extend(o.frames);
                p.got_b.extend(o.delivered);
            }
            if let Some((e, mut m)) = p.to_a.pop_front() {
                let o = split(p.a.receive(now, e, &mut m).unwrap());
                rekeys += o.rekeys;
                p.to_b.extend(o.frames);
                p.got_a.extend(o.delivered);
            }
        }
        epochs.insert(p.a.epoch().unwrap());
    }
    p.pump(secs(20)).unwrap();
    assert_eq!(p.got_b, sent_a, "every message from a, once, in order");
    assert_eq!(p.got_a, sent_b, "every message from b, once, in order");
    assert!(epochs.len() >= 8, "rekeyed every ~2 s: epochs {epochs:?}");
    // Each rekey is reported once by each side.
    assert!(
        rekeys >= 2 * (epochs.len() - 1),
        "{rekeys} rekeys reported for {epochs:?}"
    );
}

#[test]
fn timers_close_a_stuck_handshake_a_silent_peer_and_old_keys() {
    let t = Timers::default();
    // A handshake that never finishes.
    let (mut a, _) = Session::initiator(config(1, only(2), t), secs(0)).unwrap();
    assert!(a.tick(secs(4)).unwrap().is_empty());
    assert_eq!(
        a.tick(secs(5)),
        Err(ChannelError::Timeout(
            "the handshake did not finish in time"
        ))
    );
    // Keepalives while idle, then silence closes.
    let mut p = open_pair();
    assert!(split(p.a.tick(secs(9)).unwrap()).frames.is_empty());
    let o = split(p.a.tick(secs(10)).unwrap());
    assert_eq!(o.frames.len(), 1, "a keepalive after 10 s without sending");
    p.to_b.extend(o.frames);
    p.pump(secs(10)).unwrap();
    assert!(p.got_b.is_empty(), "a keepalive delivers nothing");
    // b heard from a at 10 s; a heard nothing from b since 0 s: silent for 25 s closes a.
    assert_eq!(
        p.a.tick(secs(25)),
        Err(ChannelError::Timeout("the peer went silent"))
    );
    // The responder never rekeys: its keys expire at reject_after if the initiator does not.
    let mut p = open_pair();
    for s in (10..180).step_by(10) {
        // traffic keeps both alive, but a (the initiator) never gets to tick
        p.a_sends(secs(s), b"x");
        p.b_sends(secs(s), b"y");
        p.pump(secs(s)).unwrap();
        p.b.tick(secs(s)).unwrap();
    }
    assert_eq!(p.b.tick(secs(180)), Err(ChannelError::Expired));
}

#[test]
fn a_revoked_peer_is_no_longer_authorised() {
    let revoked = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&revoked);
    let id1 = Identity::of(&identity(1));
    let authorize: Authorize =
        Arc::new(move |p: &Identity| *p == id1 && !flag.load(Ordering::SeqCst));
    let mut p = Pair::new(
        config(1, only(2), Timers::default()),
        config(2, authorize, Timers::default()),
    );
    p.pump(secs(0)).unwrap();
    assert!(p.b.still_authorized());
    revoked.store(true, Ordering::SeqCst);
    assert!(!p.b.still_authorized());
}

mod schedules {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the interleaving of sends, deliveries and ticks (frames held back up to 20 steps,
        /// rekeys every simulated second), every message of either side arrives once, in order.
        #[test]
        fn any_schedule_delivers_every_message_once_in_order(
            ops in proptest::collection::vec((0u8..4, 0usize..140_000), 1..240),
        ) {
            let timers = Timers {
                rekey_after: secs(1),
                reject_after: secs(60),
                rekey_timeout: secs(5),
                keepalive: secs(10),
            };
            let mut p = Pair::new(config(1, only(2), timers), config(2, only(1), timers));
            p.pump(secs(0)).unwrap();
            let (mut sent_a, mut sent_b) = (Vec::new(), Vec::new());
            for (step, (op, size)) in ops.iter().enumerate() {
                let now = Duration::from_millis(37 * (step as u64 + 1));
                let message: Vec<u8> = (0..*size).map(|i| u8::try_from((i + step) % 256).unwrap_or(0)).collect();
                match op {
                    0 => {
                        p.a_sends(now, &message);
                        sent_a.push(message);
                    }
                    1 => {
                        p.b_sends(now, &message);
                        sent_b.push(message);
                    }
                    2 => {
                        if let Some((e, mut m)) = p.to_b.pop_front() {
                            let o = split(p.b.receive(now, e, &mut m).unwrap());
                            p.to_a.extend(o.frames);
                            p.got_b.extend(o.delivered);
                        }
                    }
                    _ => {
                        if let Some((e, mut m)) = p.to_a.pop_front() {
                            let o = split(p.a.receive(now, e, &mut m).unwrap());
                            p.to_b.extend(o.frames);
                            p.got_a.extend(o.delivered);
                        }
                    }
                }
                p.tick(now).unwrap();
                if step % 20 == 19 {
                    p.pump(now).unwrap();
                }
            }
            let end = Duration::from_millis(37 * (ops.len() as u64 + 1));
            p.pump(end).unwrap();
            prop_assert_eq!(&p.got_b, &sent_a);
            prop_assert_eq!(&p.got_a, &sent_b);
        }
    }
}
