//! Tests of the priority floor (the clock is read once for an arbitrary origin).
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::super::{Action, Instance, InstanceConfig, Received, State, VersionConfig};
use crate::vrrp::packet::{AddrList, AdvertV3, Repr, VirtualAddrs};
use crate::vrrp::units::{Centisecs, Priority, Vrid};

const VRID: Vrid = Vrid::new_unchecked(51);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(priority: u8) -> InstanceConfig {
    let mut config = InstanceConfig::new(
        VRID,
        VersionConfig::V3 {
            interval: Centisecs::new_unchecked(10),
        },
        ip(10),
        vec![IpAddr::V4(VIP)],
    );
    config.base_priority = Priority::new(priority);
    config.announce_count = 1;
    config
}

fn advert(src: u8, priority: u8) -> Received {
    Received {
        src: ip(src),
        ttl_or_hop_limit: 255,
        result: Ok(Repr::V3(AdvertV3 {
            vrid: VRID,
            priority: Priority::new(priority),
            max_advert_int: Centisecs::new_unchecked(10),
            addrs: VirtualAddrs::V4(AddrList::try_new(vec![VIP]).unwrap()),
        })),
    }
}

fn drain(instance: &mut Instance) -> Vec<Action> {
    std::iter::from_fn(|| instance.poll_action()).collect()
}

fn backup(config: InstanceConfig) -> (Instance, Instant) {
    let t0 = Instant::now();
    let mut instance = Instance::try_new(config).unwrap();
    instance.handle_health(t0, true);
    instance.handle_startup(t0);
    drain(&mut instance);
    assert_eq!(instance.state(), State::Backup);
    (instance, t0)
}

/// Everything of the machine a discarded advert may not change (the counters and
/// the peer table aside).
fn decisions(i: &Instance, now: Instant) -> impl PartialEq + std::fmt::Debug {
    (
        (i.state, i.phase, i.timers, i.down_cause, i.down_armed),
        (i.master_ip, i.master_adver_interval, i.preempt_hold_until),
        (i.reassert_after, i.announce_left, i.extended_for_drops),
        (
            i.previous_vips.clone(),
            i.last_change,
            i.priority_floor(now),
            i.gate,
        ),
    )
}

#[test]
fn a_preempting_backup_has_its_priority_as_floor_once_it_discarded_one_advert() {
    let mut weighted = config(100);
    weighted.health_weight = 10;
    let (mut b, t0) = backup(weighted);
    assert_eq!(b.priority_floor(t0), None, "nothing discarded yet");
    b.handle_advert(t0 + ms(1), advert(20, 150)).unwrap();
    assert_eq!(b.priority_floor(t0 + ms(1)), None, "an accepted advert");
    b.handle_advert(t0 + ms(2), advert(30, 50)).unwrap();
    assert_eq!(b.priority_floor(t0 + ms(2)), Some(Priority::new(100)));
    // The Active Router's next advert ends it; the next flood packet restores it.
    b.handle_advert(t0 + ms(3), advert(20, 150)).unwrap();
    assert_eq!(b.priority_floor(t0 + ms(3)), None);
    b.handle_advert(t0 + ms(4), advert(30, 50)).unwrap();
    assert_eq!(b.priority_floor(t0 + ms(4)), Some(Priority::new(100)));
    // Priority 0 from anyone ends it (Skew_Time, MasterResigned).
    b.handle_advert(t0 + ms(5), advert(20, 0)).unwrap();
    assert_eq!(b.priority_floor(t0 + ms(5)), None);
    // Health lowers the floor with the priority.
    b.handle_advert(t0 + ms(6), advert(30, 50)).unwrap();
    b.handle_health(t0 + ms(6), false);
    assert_eq!(b.effective_priority(), Priority::new(100 - 10));
    assert_eq!(b.priority_floor(t0 + ms(6)), Some(Priority::new(90)));
    // As Master: none (the Master re-asserts itself on lower priorities).
    let at = b.poll_timeout().unwrap();
    b.handle_timeout(at);
    assert_eq!(b.state(), State::Master);
    assert_eq!(b.priority_floor(at), None);
}

#[test]
fn no_floor_without_preemption_within_the_preempt_delay_or_after_a_vip_change() {
    let mut nopreempt = config(100);
    nopreempt.preempt = false;
    let (mut b, t0) = backup(nopreempt);
    b.handle_advert(t0 + ms(1), advert(30, 50)).unwrap();
    assert_eq!(b.priority_floor(t0 + ms(1)), None, "accepted as master");

    let mut delayed = config(100);
    delayed.preempt_delay = ms(200);
    let (mut b, t0) = backup(delayed);
    b.handle_advert(t0 + ms(1), advert(30, 50)).unwrap();
    assert_eq!(b.priority_floor(t0 + ms(1)), None, "within the delay");
    b.handle_advert(t0 + ms(250), advert(30, 50)).unwrap();
    assert_eq!(b.priority_floor(t0 + ms(250)), Some(Priority::new(100)));

    let (mut b, t0) = backup(config(100));
    let mut edited = b.config().clone();
    edited.vips.push(IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2)));
    b.handle_reconfigure(t0, edited).unwrap();
    drain(&mut b);
    b.handle_advert(t0 + ms(1), advert(30, 50)).unwrap();
    assert!(b.accepts_previous_vips());
    assert_eq!(
        b.priority_floor(t0 + ms(1)),
        None,
        "the VIP transition runs"
    );
}

/// A priority of 1 leaves nothing to drop (0 must pass).
#[test]
fn no_floor_at_priority_1() {
    let (mut b, t0) = backup(config(100));
    b.handle_maintenance(t0).unwrap();
    drain(&mut b);
    b.handle_advert(t0 + ms(1), advert(20, 150)).unwrap();
    assert_eq!(b.priority_floor(t0 + ms(1)), None);
}

proptest::proptest! {
    /// What the shell drops in the kernel under the floor would have changed
    /// nothing: any sequence of adverts (accepted, discarded, resigning, from three
    /// senders), health flips and timer expiries; whenever the floor is set, an
    /// advert with a priority below it emits no action and leaves every decision
    /// (state, timers, reasons, the floor itself) as it was.
    #[test]
    fn adverts_below_the_floor_change_nothing(
        priority in 2u8..=254,
        preempt in proptest::bool::ANY,
        delay_ms in proptest::prop_oneof![proptest::strategy::Just(0u64), 1u64..300],
        steps in proptest::collection::vec((0u64..200, 0u8..3, 0u8..=255, 0u8..8), 1..80),
    ) {
        let mut config = config(priority);
        config.preempt = preempt;
        config.preempt_delay = ms(delay_ms);
        config.health_weight = (priority - 1).min(20);
        let (mut b, t0) = backup(config);
        let mut t = t0;
        for (after, src, prio, health) in steps {
            t += ms(after);
            while let Some(due) = b.poll_timeout().filter(|&d| d <= t) {
                b.handle_timeout(due);
            }
            drain(&mut b);
            if health == 0 {
                b.handle_health(t, !b.can_serve());
                drain(&mut b);
            }
            let prio = if prio == 255 { 254 } else { prio };
            if let Some(floor) = b.priority_floor(t) {
                let below = 1 + prio % (floor.get() - 1);
                let before = decisions(&b, t);
                b.handle_advert(t, advert(20 + 10 * src, below)).unwrap();
                proptest::prop_assert_eq!(drain(&mut b), vec![]);
                proptest::prop_assert_eq!(decisions(&b, t), before);
            }
            let _ = b.handle_advert(t, advert(20 + 10 * src, prio));
            drain(&mut b);
        }
    }
}
