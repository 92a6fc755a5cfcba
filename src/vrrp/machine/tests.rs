//! Every transition of RFC 9568 §6.4 (and the RFC 3768 differences) with exact times.
//!
//! This file is test code, not part of the sans-IO core: it reads the clock once for
//! an arbitrary origin (`t0`) and only ever adds exact durations to it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::*;
use crate::vrrp::packet::{AddrList, AdvertV2, AdvertV3, Auth, DecodeError, Repr, VirtualAddrs};
use crate::vrrp::units::{Centisecs, Password, Priority, Secs, Vrid};

const VRID: Vrid = Vrid::new_unchecked(51);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
}

/// This node's address: peers below it lose ties, peers above it win them.
fn me() -> IpAddr {
    ip(10)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

fn v3_config(priority: u8, cs: u16) -> InstanceConfig {
    let mut config = InstanceConfig::new(
        VRID,
        VersionConfig::V3 {
            interval: Centisecs::new_unchecked(cs),
        },
        me(),
        vec![IpAddr::V4(VIP)],
    );
    config.base_priority = Priority::new(priority);
    // One announcement: the timers under test are the election's; the repetitions
    // have tests of their own.
    config.announce_count = 1;
    config
}

fn v2_config(priority: u8, secs: u8, auth: Option<&[u8]>) -> InstanceConfig {
    let mut config = InstanceConfig::new(
        VRID,
        VersionConfig::V2 {
            interval: Secs::new_unchecked(secs),
            auth: auth.map(|p| Password::try_new(p).unwrap()),
        },
        me(),
        vec![IpAddr::V4(VIP)],
    );
    config.base_priority = Priority::new(priority);
    // One announcement: the timers under test are the election's; the repetitions
    // have tests of their own.
    config.announce_count = 1;
    config
}

fn drain(instance: &mut Instance) -> Vec<Action> {
    std::iter::from_fn(|| instance.poll_action()).collect()
}

/// An instance started at `t0` (now Backup, or Master for the owner), actions drained.
fn started(config: InstanceConfig) -> (Instance, Instant) {
    let t0 = Instant::now();
    let mut instance = Instance::try_new(config).unwrap();
    instance.handle_startup(t0);
    drain(&mut instance);
    (instance, t0)
}

/// An instance that became Master at the returned instant, actions drained.
fn master(config: InstanceConfig) -> (Instance, Instant) {
    let (mut instance, t0) = started(config);
    if instance.state() == State::Master {
        return (instance, t0);
    }
    let at = instance.poll_timeout().unwrap();
    instance.handle_timeout(at);
    drain(&mut instance);
    assert_eq!(instance.state(), State::Master);
    (instance, at)
}

/// A valid VRRPv3 advert for our VIPs from `src`.
fn v3_advert(src: IpAddr, priority: u8, cs: u16) -> Received {
    Received {
        src,
        ttl_or_hop_limit: 255,
        result: Ok(Repr::V3(AdvertV3 {
            vrid: VRID,
            priority: Priority::new(priority),
            max_advert_int: Centisecs::new_unchecked(cs),
            addrs: VirtualAddrs::V4(AddrList::try_new(vec![VIP]).unwrap()),
        })),
    }
}

fn v2_advert(src: IpAddr, priority: u8, secs: u8, auth: Auth) -> Received {
    Received {
        src,
        ttl_or_hop_limit: 255,
        result: Ok(Repr::V2(AdvertV2 {
            vrid: VRID,
            priority: Priority::new(priority),
            advert_int: Secs::new_unchecked(secs),
            auth,
            addrs: AddrList::try_new(vec![VIP]).unwrap(),
        })),
    }
}

fn changed(from: State, to: State, reason: Reason) -> Action {
    Action::StateChanged { from, to, reason }
}

fn send(priority: u8) -> Action {
    Action::SendAdvert {
        priority: Priority::new(priority),
    }
}

/// What becoming Master emits, in order.
fn becoming_master(from: State, reason: Reason, priority: u8) -> Vec<Action> {
    vec![
        changed(from, State::Master, reason),
        Action::AddVips,
        Action::Announce,
        send(priority),
    ]
}

// === timers ===

/// RFC 9568 §6.1: priority 100, 1s: Skew_Time = 156 x 1s / 256 = 609.375ms, and
/// Master_Down_Interval = 3.609375s, armed by startup (§6.4.1).
#[test]
fn v3_startup_arms_master_down_interval_exactly() {
    let t0 = Instant::now();
    let mut instance = Instance::try_new(v3_config(100, 100)).unwrap();
    assert_eq!(instance.state(), State::Initialize);
    assert_eq!(instance.poll_timeout(), None);
    instance.handle_startup(t0);
    assert_eq!(
        drain(&mut instance),
        [changed(State::Initialize, State::Backup, Reason::Startup)]
    );
    assert_eq!(instance.skew_time(), us(609_375));
    assert_eq!(instance.master_down_interval(), us(3_609_375));
    assert_eq!(instance.poll_timeout(), Some(t0 + us(3_609_375)));
    // Startup twice changes nothing.
    instance.handle_startup(t0 + ms(1));
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.poll_timeout(), Some(t0 + us(3_609_375)));
}

/// 100ms interval (the measured keepalived setup): skew 60.9375ms, down 360.9375ms.
#[test]
fn v3_skew_scales_with_the_interval() {
    let (instance, t0) = started(v3_config(100, 10));
    assert_eq!(instance.skew_time(), Duration::from_nanos(60_937_500));
    assert_eq!(
        instance.poll_timeout(),
        Some(t0 + Duration::from_nanos(360_937_500))
    );
    let (instance, _) = started(v3_config(200, 300));
    assert_eq!(instance.skew_time(), us(656_250)); // 56 x 3s / 256
}

/// RFC 3768 §6.1: VRRPv2 Skew_Time = (256 - priority) / 256 seconds, whatever the
/// interval: priority 200, 3s: skew 218.75ms, down 9.21875s.
#[test]
fn v2_skew_is_in_seconds() {
    let (instance, t0) = started(v2_config(200, 3, None));
    assert_eq!(instance.skew_time(), us(218_750));
    assert_eq!(instance.master_down_interval(), us(9_218_750));
    assert_eq!(instance.poll_timeout(), Some(t0 + us(9_218_750)));
}

/// §6.4.2 "If the Master_Down_Timer fires": advertise, announce, Adver_Timer, Master.
/// An early `handle_timeout` does nothing.
#[test]
fn backup_becomes_master_when_master_down_timer_fires() {
    let (mut instance, t0) = started(v3_config(100, 100));
    let deadline = t0 + us(3_609_375);
    instance.handle_timeout(deadline - Duration::from_nanos(1));
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.state(), State::Backup);
    assert_eq!(instance.poll_timeout(), Some(deadline));

    instance.handle_timeout(deadline);
    assert_eq!(
        drain(&mut instance),
        becoming_master(State::Backup, Reason::MasterDown, 100)
    );
    assert_eq!(instance.poll_timeout(), Some(deadline + ms(1000)));
    assert_eq!(instance.stats().master_transitions, 1);
    assert_eq!(instance.stats().adverts_sent, 1);
    assert_eq!(instance.master_ip(), Some(me()));
    let change = instance.last_change().unwrap();
    assert_eq!(
        (change.at, change.from, change.to, change.reason),
        (deadline, State::Backup, State::Master, Reason::MasterDown)
    );
    // A second call at the same instant does nothing.
    instance.handle_timeout(deadline);
    assert_eq!(drain(&mut instance), []);
}

/// §6.4.3 "If the Adver_Timer fires": send, reset to Advertisement_Interval.
#[test]
fn master_advertises_every_interval() {
    let (mut instance, at) = master(v3_config(100, 100));
    for n in 1..=3 {
        let due = at + ms(1000) * n;
        assert_eq!(instance.poll_timeout(), Some(due));
        instance.handle_timeout(due);
        assert_eq!(drain(&mut instance), [send(100)]);
    }
    assert_eq!(instance.stats().adverts_sent, 4);
}

// === Backup receiving (§6.4.2) ===

/// A higher priority resets the Master_Down_Timer with the learned interval (VRRPv3):
/// 50cs from the master: 3 x 0.5s + 156 x 0.5s / 256 = 1.8046875s.
#[test]
fn backup_accepts_higher_priority_and_learns_the_interval() {
    let (mut instance, t0) = started(v3_config(100, 100));
    let t1 = t0 + ms(1000);
    instance
        .handle_advert(t1, v3_advert(ip(20), 150, 50))
        .unwrap();
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.master_adver_interval(), ms(500));
    assert_eq!(
        instance.poll_timeout(),
        Some(t1 + us(1_804_687) + Duration::from_nanos(500))
    );
    assert_eq!(instance.master_ip(), Some(ip(20)));
    assert_eq!(instance.stats().adverts_received, 1);
}

/// "greater than or equal to the local Priority": an equal priority is accepted,
/// whatever the addresses.
#[test]
fn backup_accepts_equal_priority() {
    let (mut instance, t0) = started(v3_config(100, 100));
    let t1 = t0 + ms(3000);
    instance
        .handle_advert(t1, v3_advert(ip(5), 100, 100))
        .unwrap();
    assert_eq!(instance.poll_timeout(), Some(t1 + us(3_609_375)));
}

/// Preemption on: a lower priority is discarded (the timer runs on) and the Backup
/// takes over when the timer fires, with reason `Preempt`.
#[test]
fn backup_preempts_lower_priority() {
    let (mut instance, t0) = started(v3_config(100, 100));
    instance
        .handle_advert(t0 + ms(500), v3_advert(ip(20), 150, 100))
        .unwrap();
    let deadline = t0 + ms(500) + us(3_609_375);
    for n in 1..=3 {
        instance
            .handle_advert(t0 + ms(500) + ms(1000) * n, v3_advert(ip(20), 50, 100))
            .unwrap();
        assert_eq!(instance.poll_timeout(), Some(deadline));
    }
    instance.handle_timeout(deadline);
    assert_eq!(
        drain(&mut instance),
        becoming_master(State::Backup, Reason::Preempt, 100)
    );
}

/// Preempt_Mode False: a lower priority is accepted like a higher one.
#[test]
fn nopreempt_backup_accepts_lower_priority() {
    let mut config = v3_config(100, 100);
    config.preempt = false;
    let (mut instance, t0) = started(config);
    let t1 = t0 + ms(2000);
    instance
        .handle_advert(t1, v3_advert(ip(20), 50, 100))
        .unwrap();
    assert_eq!(instance.poll_timeout(), Some(t1 + us(3_609_375)));
    assert_eq!(instance.master_ip(), Some(ip(20)));
}

/// The owner (255) is Master from startup whatever Preempt_Mode says, and a second
/// node claiming 255 (misconfigured, or forged) cannot send it to Backup: its adverts
/// are dropped (only a configured `owner` may send 255, and the owner has none).
#[test]
fn owner_stays_master_against_a_second_owner() {
    let mut config = v3_config(255, 100);
    config.preempt = false;
    let (mut instance, t0) = started(config);
    assert_eq!(instance.state(), State::Master);
    assert_eq!(
        instance.handle_advert(t0, v3_advert(ip(20), 255, 100)),
        Err(DropReason::NotTheOwner { src: ip(20) })
    );
    assert_eq!(instance.state(), State::Master);
    // A lower priority is answered as any Master answers it.
    instance
        .handle_advert(t0 + ms(1000), v3_advert(ip(20), 100, 100))
        .unwrap();
    assert_eq!(drain(&mut instance), [Action::Announce, send(255)]);
}

/// Preempt delay: a lower-priority master is accepted for 5s after it is first
/// heard, then discarded; the takeover comes Master_Down_Interval after the last
/// accepted advert.
#[test]
fn preempt_delay_holds_off_preemption() {
    let mut config = v3_config(100, 100);
    config.preempt_delay = ms(5000);
    let (mut instance, t0) = started(config);
    for n in 1..=5 {
        let t = t0 + ms(1000) * n;
        instance
            .handle_advert(t, v3_advert(ip(20), 50, 100))
            .unwrap();
        assert_eq!(
            instance.poll_timeout(),
            Some(t + us(3_609_375)),
            "advert {n}"
        );
    }
    let last_accepted = t0 + ms(5000);
    for n in 6..=8 {
        instance
            .handle_advert(t0 + ms(1000) * n, v3_advert(ip(20), 50, 100))
            .unwrap();
    }
    assert_eq!(instance.poll_timeout(), Some(last_accepted + us(3_609_375)));
    instance.handle_timeout(last_accepted + us(3_609_375));
    assert_eq!(
        drain(&mut instance),
        becoming_master(State::Backup, Reason::Preempt, 100)
    );
}

/// The delay never slows crash detection: the lower master dies during the hold and
/// the Backup takes over Master_Down_Interval after its last advert. A higher
/// priority heard in between restarts the delay.
#[test]
fn preempt_delay_does_not_delay_crash_takeover() {
    let mut config = v3_config(100, 100);
    config.preempt_delay = ms(5000);
    let (mut instance, t0) = started(config);
    instance
        .handle_advert(t0 + ms(1000), v3_advert(ip(20), 50, 100))
        .unwrap();
    instance
        .handle_advert(t0 + ms(2000), v3_advert(ip(20), 150, 100))
        .unwrap();
    // The hold restarts at 3s and lasts until 8s.
    for n in 3..=7 {
        let t = t0 + ms(1000) * n;
        instance
            .handle_advert(t, v3_advert(ip(20), 50, 100))
            .unwrap();
        assert_eq!(instance.poll_timeout(), Some(t + us(3_609_375)));
    }
    // Silence: master down, not preemption.
    instance.handle_timeout(t0 + ms(7000) + us(3_609_375));
    assert_eq!(
        drain(&mut instance),
        becoming_master(State::Backup, Reason::MasterDown, 100)
    );
}

/// §6.4.2: priority 0 sets the Master_Down_Timer to Skew_Time.
#[test]
fn backup_takes_over_after_skew_when_master_resigns() {
    let (mut instance, t0) = started(v3_config(100, 100));
    instance
        .handle_advert(t0 + ms(500), v3_advert(ip(20), 150, 100))
        .unwrap();
    let t1 = t0 + ms(1200);
    instance
        .handle_advert(t1, v3_advert(ip(20), 0, 100))
        .unwrap();
    assert_eq!(instance.poll_timeout(), Some(t1 + us(609_375)));
    assert_eq!(instance.stats().priority_zero_received, 1);
    instance.handle_timeout(t1 + us(609_375));
    assert_eq!(
        drain(&mut instance),
        becoming_master(State::Backup, Reason::MasterResigned, 100)
    );
}

// === Master receiving (§6.4.3) ===

/// Priority 0 while Master: advertise at once and reset the Adver_Timer.
#[test]
fn master_answers_priority_zero_at_once() {
    let (mut instance, at) = master(v3_config(100, 100));
    let t = at + ms(300);
    instance
        .handle_advert(t, v3_advert(ip(20), 0, 100))
        .unwrap();
    assert_eq!(drain(&mut instance), [send(100)]);
    assert_eq!(instance.poll_timeout(), Some(t + ms(1000)));
    assert_eq!(instance.state(), State::Master);
}

/// A higher priority: release the VIPs, learn the interval, Backup with
/// Master_Down_Timer = Master_Down_Interval.
#[test]
fn master_yields_to_higher_priority() {
    let (mut instance, at) = master(v3_config(100, 100));
    let t = at + ms(300);
    instance
        .handle_advert(t, v3_advert(ip(20), 101, 200))
        .unwrap();
    assert_eq!(
        drain(&mut instance),
        [
            Action::RemoveVips,
            changed(State::Master, State::Backup, Reason::HigherPriority)
        ]
    );
    // 3 x 2s + 156 x 2s / 256 = 7.21875s
    assert_eq!(instance.poll_timeout(), Some(t + us(7_218_750)));
    assert_eq!(instance.master_ip(), Some(ip(20)));
}

/// Lost soon after announcing (less than half the learned interval, at most 100 ms):
/// Backup at once, but
/// the VIPs stay until the new Master's next advert, which comes after the
/// announcement of its re-assertion; another sender does not end it. Lost long after
/// the last announcement: released at once, as the RFC says.
#[test]
fn lost_soon_after_announcing_keeps_the_vips_until_the_next_advert() {
    let (mut instance, at) = master(v3_config(100, 100));
    let t = at + ms(50);
    instance
        .handle_advert(t, v3_advert(ip(20), 120, 100))
        .unwrap();
    assert_eq!(
        drain(&mut instance),
        [changed(
            State::Master,
            State::Backup,
            Reason::HigherPriority
        )]
    );
    assert!(instance.holds_vips());
    assert_eq!(instance.stats().lingers, 1);
    assert_eq!(
        instance.priority_floor(t),
        None,
        "the kernel must pass its adverts"
    );
    instance
        .handle_advert(t + ms(5), v3_advert(ip(21), 110, 100))
        .unwrap();
    assert_eq!(drain(&mut instance), []);
    assert!(instance.holds_vips());
    instance
        .handle_advert(t + ms(10), v3_advert(ip(20), 120, 100))
        .unwrap();
    assert_eq!(drain(&mut instance), [Action::RemoveVips]);
    assert!(!instance.holds_vips());

    // One announcement, no refresh: 150 ms later (more than half the 1 s interval,
    // capped at 100 ms) it releases at once.
    let (mut instance, at) = master(v3_config(100, 100));
    let t = at + ms(150);
    instance
        .handle_advert(t, v3_advert(ip(20), 120, 100))
        .unwrap();
    assert_eq!(
        drain(&mut instance),
        [
            Action::RemoveVips,
            changed(State::Master, State::Backup, Reason::HigherPriority)
        ]
    );
    assert_eq!(instance.stats().lingers, 0);
}

/// A lingering Backup that becomes Master again (here: a third router resigns and the
/// skew, 22 ms at priority 200 and 100 ms adverts, runs out before the 50 ms bound)
/// keeps its VIPs (no second AddVips); one that shuts down or reloads releases them
/// first.
#[test]
fn a_lingering_backup_keeps_or_releases_its_vips_by_what_comes_next() {
    let lost = || {
        let (mut instance, at) = master(v3_config(200, 10));
        let t = at + ms(20);
        instance
            .handle_advert(t, v3_advert(ip(20), 220, 10))
            .unwrap();
        drain(&mut instance);
        assert!(instance.holds_vips());
        assert_eq!(
            instance.poll_timeout(),
            Some(t + ms(50)),
            "bound: half an interval"
        );
        (instance, t)
    };
    let (mut instance, t) = lost();
    instance
        .handle_advert(t + ms(1), v3_advert(ip(21), 0, 10))
        .unwrap();
    let skew = instance.poll_timeout().unwrap();
    assert!(skew < t + ms(50));
    instance.handle_timeout(skew);
    assert_eq!(
        drain(&mut instance),
        [
            changed(State::Backup, State::Master, Reason::MasterResigned),
            Action::Announce,
            send(200)
        ]
    );

    let (mut instance, t) = lost();
    instance.handle_shutdown(t + ms(1));
    assert_eq!(
        drain(&mut instance),
        [
            Action::RemoveVips,
            changed(State::Backup, State::Initialize, Reason::Shutdown),
            Action::Exit
        ]
    );

    let (mut instance, t) = lost();
    reconfigure(&mut instance, t + ms(1), |c| {
        c.vips = vec![IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2))]
    });
    assert_eq!(
        drain(&mut instance),
        [Action::RemoveVip {
            addr: IpAddr::V4(VIP)
        }]
    );
    assert!(!instance.holds_vips());
}

/// Equal priority: the higher primary address wins; the lower one is discarded (and
/// this Master re-asserts itself, see `master_reasserts_on_a_lower_priority`).
#[test]
fn master_tie_break_on_primary_address() {
    let (mut instance, at) = master(v3_config(100, 100));
    let t = at + ms(300);
    instance
        .handle_advert(t, v3_advert(ip(9), 100, 100))
        .unwrap();
    assert_eq!(drain(&mut instance), [Action::Announce, send(100)]);
    assert_eq!(instance.state(), State::Master);
    assert_eq!(instance.poll_timeout(), Some(t + ms(1000)));

    instance
        .handle_advert(t, v3_advert(ip(11), 100, 100))
        .unwrap();
    assert_eq!(
        drain(&mut instance),
        [changed(
            State::Master,
            State::Backup,
            Reason::HigherPriority
        )]
    );
}

/// A lower priority does not move a Master; it re-asserts itself (announce, advert,
/// Adver_Timer restarted) at most once per Master_Down_Interval. (While handing over
/// it advertises 1, so no non-zero priority is lower.)
#[test]
fn master_reasserts_on_a_lower_priority() {
    let (mut instance, at) = master(v3_config(100, 100));
    let t = at + ms(10);
    instance
        .handle_advert(t, v3_advert(ip(20), 99, 100))
        .unwrap();
    assert_eq!(drain(&mut instance), [Action::Announce, send(100)]);
    assert_eq!(instance.state(), State::Master);
    assert_eq!(instance.poll_timeout(), Some(t + ms(1000)));
    // Master_Down_Interval at 1 s adverts and priority 100: 3 s + 609.375 ms.
    let mdi = instance.master_down_interval();
    assert_eq!(mdi, us(3_609_375));
    instance
        .handle_advert(t + mdi - us(1), v3_advert(ip(20), 99, 100))
        .unwrap();
    assert_eq!(drain(&mut instance), []);
    instance
        .handle_advert(t + mdi, v3_advert(ip(20), 99, 100))
        .unwrap();
    assert_eq!(drain(&mut instance), [Action::Announce, send(100)]);
}

/// One announcement with `announce_interval` 0 (a valid config): lower-priority claims
/// heard as Master re-assert once, and never start a burst of repetitions at one
/// instant (the fuzzer found 1,001 of them).
#[test]
fn claims_with_a_zero_announce_interval_repeat_nothing() {
    let mut config = v3_config(100, 100);
    config.announce_interval = Duration::ZERO;
    let (mut instance, at) = master(config);
    let t = at + ms(10);
    for k in 0..3 {
        instance
            .handle_advert(t + ms(k), v3_advert(ip(20), 99, 100))
            .unwrap();
    }
    assert_eq!(drain(&mut instance), [Action::Announce, send(100)]);
    // Only the Adver_Timer runs.
    assert_eq!(instance.poll_timeout(), Some(t + ms(1000)));
    instance.handle_timeout(t + ms(2));
    assert_eq!(drain(&mut instance), []);
}

/// A new Master announces `announce_count` times: at once, after EARLY_REPEAT, then
/// every `announce_interval`; leaving Master stops the repetitions.
#[test]
fn announcements_repeat_on_their_own_timer_until_master_is_left() {
    let mut config = v3_config(100, 100);
    config.announce_count = 4;
    config.announce_interval = ms(200);
    let (mut instance, at) = master(config);
    // Taking over announced once (drained by `master`); repeats follow.
    assert_eq!(instance.poll_timeout(), Some(at + EARLY_REPEAT));
    instance.handle_timeout(at + EARLY_REPEAT);
    assert_eq!(drain(&mut instance), [Action::Announce]);
    assert_eq!(instance.poll_timeout(), Some(at + EARLY_REPEAT + ms(200)));
    instance.handle_timeout(at + EARLY_REPEAT + ms(200));
    assert_eq!(drain(&mut instance), [Action::Announce]);
    instance.handle_timeout(at + EARLY_REPEAT + ms(400));
    assert_eq!(drain(&mut instance), [Action::Announce]);
    // Four in all: only the advert timer is left.
    assert_eq!(instance.poll_timeout(), Some(at + ms(1000)));

    // A re-assertion restarts the series; a higher priority heard ends it.
    let t = at + ms(1000);
    instance.handle_timeout(t);
    drain(&mut instance);
    instance
        .handle_advert(t + ms(1), v3_advert(ip(20), 99, 100))
        .unwrap();
    assert_eq!(drain(&mut instance), [Action::Announce, send(100)]);
    assert_eq!(instance.poll_timeout(), Some(t + ms(1) + EARLY_REPEAT));
    instance
        .handle_advert(t + ms(2), v3_advert(ip(20), 200, 100))
        .unwrap();
    assert_eq!(
        drain(&mut instance),
        [changed(
            State::Master,
            State::Backup,
            Reason::HigherPriority
        )]
    );
    // The VIPs linger until the new Master's next advert; no announcement meanwhile.
    instance
        .handle_advert(t + ms(100), v3_advert(ip(20), 200, 100))
        .unwrap();
    assert_eq!(drain(&mut instance), [Action::RemoveVips]);
    let down = instance.poll_timeout().unwrap();
    assert!(down > t + ms(100) + ms(3000), "only Master_Down_Timer runs");
}

/// announce_count 0 or 1: one announcement, no timer; an interval shorter than
/// EARLY_REPEAT is kept.
#[test]
fn one_announcement_and_short_intervals() {
    let mut config = v3_config(100, 100);
    config.announce_count = 0;
    let (mut instance, _) = started(config);
    let down = instance.poll_timeout().unwrap();
    instance.handle_timeout(down);
    assert_eq!(
        drain(&mut instance),
        becoming_master(State::Backup, Reason::MasterDown, 100)
    );
    assert_eq!(instance.poll_timeout(), Some(down + ms(1000)));
    let mut config = v3_config(100, 100);
    config.announce_count = 2;
    config.announce_interval = ms(5);
    let (instance, at) = master(config);
    assert_eq!(instance.poll_timeout(), Some(at + ms(5)));
}

/// §6.4.1: the owner (255) becomes Master at startup without waiting.
#[test]
fn owner_becomes_master_at_startup() {
    let t0 = Instant::now();
    let mut config = v3_config(255, 100);
    config.vips.push(me());
    let mut instance = Instance::try_new(config).unwrap();
    instance.handle_startup(t0);
    assert_eq!(
        drain(&mut instance),
        becoming_master(State::Initialize, Reason::OwnerStartup, 255)
    );
    assert_eq!(instance.poll_timeout(), Some(t0 + ms(1000)));
}

/// Initialize ignores adverts; they are still checked and counted.
#[test]
fn initialize_ignores_adverts() {
    let t0 = Instant::now();
    let mut instance = Instance::try_new(v3_config(100, 100)).unwrap();
    instance
        .handle_advert(t0, v3_advert(ip(20), 0, 100))
        .unwrap();
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.poll_timeout(), None);
    assert_eq!(instance.stats().adverts_received, 1);
}

// === rejected adverts change nothing ===

/// Every drop reason, in Backup and in Master: the advert returns its reason, bumps
/// one counter, emits nothing and leaves every timer as it was (the keepalived
/// pitfall: bad packets must not restart the advert timer).
#[test]
fn rejected_adverts_touch_no_timer_and_no_state() {
    let v4_other_vips = Ok(Repr::V3(AdvertV3 {
        vrid: VRID,
        priority: Priority::new(200),
        max_advert_int: Centisecs::DEFAULT,
        addrs: VirtualAddrs::V4(AddrList::try_new(vec![Ipv4Addr::new(198, 18, 1, 2)]).unwrap()),
    }));
    let v6_advert = Ok(Repr::V3(AdvertV3 {
        vrid: VRID,
        priority: Priority::new(200),
        max_advert_int: Centisecs::DEFAULT,
        addrs: VirtualAddrs::V6(
            AddrList::try_new(vec![Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)]).unwrap(),
        ),
    }));
    let mut other_vrid = v3_advert(ip(20), 200, 100);
    if let Ok(Repr::V3(a)) = &mut other_vrid.result {
        a.vrid = Vrid::new_unchecked(52);
    }
    let mut ttl64 = v3_advert(ip(20), 200, 100);
    ttl64.ttl_or_hop_limit = 64;
    let bad_checksum = DecodeError::BadChecksum { got: 1, want: 2 };

    let v3_cases: Vec<RejectCase> = vec![
        (
            Received {
                src: ip(20),
                ttl_or_hop_limit: 255,
                result: Err(bad_checksum),
            },
            DropReason::Decode(bad_checksum),
            |s| s.checksum_errors,
        ),
        (
            Received {
                src: ip(20),
                ttl_or_hop_limit: 255,
                result: Err(DecodeError::Truncated { need: 8, have: 3 }),
            },
            DropReason::Decode(DecodeError::Truncated { need: 8, have: 3 }),
            |s| s.length_errors,
        ),
        (ttl64, DropReason::Ttl { got: 64 }, |s| s.ttl_errors),
        (
            v2_advert(ip(20), 200, 1, Auth::None),
            DropReason::VersionMismatch {
                got: crate::vrrp::packet::Version::V2,
            },
            |s| s.version_errors,
        ),
        (
            Received {
                src: ip(20),
                ttl_or_hop_limit: 255,
                result: v6_advert,
            },
            DropReason::FamilyMismatch {
                got: crate::vrrp::packet::Family::Ipv6,
            },
            |s| s.family_errors,
        ),
        (
            other_vrid,
            DropReason::OtherVrid {
                got: Vrid::new_unchecked(52),
            },
            |s| s.vrid_errors,
        ),
        (v3_advert(me(), 200, 100), DropReason::OwnAdvert, |s| {
            s.own_adverts
        }),
        (
            Received {
                src: ip(20),
                ttl_or_hop_limit: 255,
                result: v4_other_vips,
            },
            DropReason::AddressList,
            |s| s.address_list_errors,
        ),
    ];
    for in_master in [false, true] {
        for (received, want, counter) in v3_cases.clone() {
            let (mut instance, _) = if in_master {
                master(v3_config(100, 100))
            } else {
                started(v3_config(100, 100))
            };
            check_rejected(&mut instance, received, want, counter);
        }
    }

    // Unicast: a source that is not a peer.
    let mut config = v3_config(100, 100);
    config.peers = Some(vec![ip(20)]);
    let (mut instance, _) = started(config);
    check_rejected(
        &mut instance,
        v3_advert(ip(21), 200, 100),
        DropReason::NotAPeer { src: ip(21) },
        |s| s.non_peer,
    );
    instance
        .handle_advert(
            instance.poll_timeout().unwrap(),
            v3_advert(ip(20), 200, 100),
        )
        .unwrap();

    // VRRPv2: password, auth type and interval must match.
    let pass = |p: &[u8]| Auth::Password(Password::try_new(p).unwrap());
    let v2_cases: Vec<RejectCase> = vec![
        (
            v2_advert(ip(20), 200, 1, pass(b"wrong")),
            DropReason::AuthMismatch,
            |s| s.auth_errors,
        ),
        (
            v2_advert(ip(20), 200, 1, Auth::None),
            DropReason::AuthMismatch,
            |s| s.auth_errors,
        ),
        (
            v2_advert(ip(20), 200, 2, pass(b"s3cret")),
            DropReason::IntervalMismatch {
                got: Secs::new_unchecked(2),
                want: Secs::new_unchecked(1),
            },
            |s| s.interval_errors,
        ),
    ];
    for in_master in [false, true] {
        for (received, want, counter) in v2_cases.clone() {
            let config = v2_config(100, 1, Some(b"s3cret"));
            let (mut instance, _) = if in_master {
                master(config)
            } else {
                started(config)
            };
            check_rejected(&mut instance, received, want, counter);
        }
    }
    // Without a password configured, a password in the advert is a mismatch too.
    let (mut instance, _) = started(v2_config(100, 1, None));
    check_rejected(
        &mut instance,
        v2_advert(ip(20), 200, 1, pass(b"s3cret")),
        DropReason::AuthMismatch,
        |s| s.auth_errors,
    );
}

/// An advert to reject, the reason expected and the counter it must bump.
type RejectCase = (Received, DropReason, fn(&Stats) -> u64);

fn check_rejected(
    instance: &mut Instance,
    received: Received,
    want: DropReason,
    counter: fn(&Stats) -> u64,
) {
    let before = instance.poll_timeout();
    let state = instance.state();
    let stats = *instance.stats();
    let t = before.unwrap() - ms(1);
    assert_eq!(instance.handle_advert(t, received), Err(want));
    assert_eq!(drain(instance), [], "{want:?}");
    assert_eq!(instance.poll_timeout(), before, "{want:?}");
    assert_eq!(instance.state(), state, "{want:?}");
    assert_eq!(counter(instance.stats()), counter(&stats) + 1, "{want:?}");
    assert_eq!(instance.stats().dropped(), stats.dropped() + 1, "{want:?}");
    assert_eq!(instance.stats().adverts_received, stats.adverts_received);
}

/// The address list is only enforced for non-owners (RFC 9568 §7.1).
#[test]
fn owner_advert_with_other_addresses_is_processed() {
    let mut config = v3_config(100, 100);
    config.owner = Some(ip(20));
    let (mut instance, t0) = started(config);
    let received = Received {
        src: ip(20),
        ttl_or_hop_limit: 255,
        result: Ok(Repr::V3(AdvertV3 {
            vrid: VRID,
            priority: Priority::OWNER,
            max_advert_int: Centisecs::DEFAULT,
            addrs: VirtualAddrs::V4(AddrList::empty()),
        })),
    };
    instance.handle_advert(t0 + ms(100), received).unwrap();
    assert_eq!(instance.poll_timeout(), Some(t0 + ms(100) + us(3_609_375)));
}

/// VRRPv2 with the right password and interval is processed; no interval learning.
#[test]
fn v2_backup_accepts_matching_advert() {
    let (mut instance, t0) = started(v2_config(100, 1, Some(b"s3cret")));
    let t = t0 + ms(700);
    let auth = Auth::Password(Password::try_new(b"s3cret").unwrap());
    instance
        .handle_advert(t, v2_advert(ip(20), 150, 1, auth))
        .unwrap();
    assert_eq!(instance.poll_timeout(), Some(t + us(3_609_375)));
    assert_eq!(instance.master_adver_interval(), ms(1000));
    assert!(matches!(
        instance.advert(Priority::new(100)),
        Repr::V2(AdvertV2 {
            auth: Auth::Password(_),
            ..
        })
    ));
}

// === health ===

/// Unhealthy lowers the priority by the weight: as Master the lowered priority is
/// advertised at once (Adver_Timer reset); as Backup it changes the skew and what is
/// preempted, without touching the timer.
#[test]
fn health_changes_the_priority() {
    let mut config = v3_config(100, 100);
    config.health_weight = 60;
    let t0 = Instant::now();
    let mut instance = Instance::try_new(config).unwrap();
    // Unknown health counts as unable to serve.
    assert_eq!(instance.effective_priority(), Priority::new(40));
    instance.handle_health(t0, true);
    assert_eq!(instance.effective_priority(), Priority::new(100));
    instance.handle_startup(t0);
    drain(&mut instance);
    assert_eq!(instance.poll_timeout(), Some(t0 + us(3_609_375)));

    // Backup: no action, timer unchanged, skew follows the priority.
    instance.handle_health(t0 + ms(10), false);
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.poll_timeout(), Some(t0 + us(3_609_375)));
    assert_eq!(instance.skew_time(), us(843_750)); // 216 x 1s / 256
                                                   // A master at 50 is now higher: accepted.
    let t1 = t0 + ms(100);
    instance
        .handle_advert(t1, v3_advert(ip(20), 50, 100))
        .unwrap();
    assert_eq!(instance.poll_timeout(), Some(t1 + us(3_843_750)));
    // Healthy again: 50 is lower and is discarded.
    instance.handle_health(t0 + ms(200), true);
    instance
        .handle_advert(t0 + ms(1100), v3_advert(ip(20), 50, 100))
        .unwrap();
    assert_eq!(instance.poll_timeout(), Some(t1 + us(3_843_750)));
    instance.handle_timeout(t1 + us(3_843_750));
    let at = t1 + us(3_843_750);
    assert_eq!(
        drain(&mut instance),
        becoming_master(State::Backup, Reason::Preempt, 100)
    );

    // Master: the change is advertised at once.
    instance.handle_health(at + ms(300), false);
    assert_eq!(drain(&mut instance), [send(40)]);
    assert_eq!(instance.poll_timeout(), Some(at + ms(1300)));
    instance.handle_health(at + ms(400), false);
    assert_eq!(drain(&mut instance), []);
    // It keeps the VIPs until someone higher is heard.
    instance
        .handle_advert(at + ms(500), v3_advert(ip(20), 41, 100))
        .unwrap();
    assert_eq!(
        drain(&mut instance),
        [
            Action::RemoveVips,
            changed(State::Master, State::Backup, Reason::HigherPriority)
        ]
    );
}

/// The effective priority never drops below 1.
#[test]
fn unhealthy_priority_stays_in_the_election() {
    let mut config = v3_config(100, 100);
    config.health_weight = 99;
    let instance = Instance::try_new(config).unwrap();
    assert_eq!(instance.effective_priority(), Priority::new(1));
}

// === shutdown and planned handover ===

/// Success: advertise priority 1 (keeping the VIPs) until the new holder is heard,
/// then release and exit.
#[test]
fn planned_handover_releases_when_new_holder_is_heard() {
    let (mut instance, at) = master(v3_config(100, 100));
    let t = at + ms(250);
    instance.handle_shutdown(t);
    assert!(instance.is_handing_over());
    assert_eq!(drain(&mut instance), [send(1)]);
    assert_eq!(instance.advertised_priority(), Priority::new(1));
    assert_eq!(instance.poll_timeout(), Some(t + ms(1000)));
    // The next adverts carry priority 1 as well; health does not change that.
    instance.handle_health(t + ms(10), true);
    assert_eq!(drain(&mut instance), []);
    instance.handle_timeout(t + ms(1000));
    assert_eq!(drain(&mut instance), [send(1)]);
    // A lower priority than ours (1) cannot be: 0 is answered as usual.
    instance
        .handle_advert(t + ms(1500), v3_advert(ip(20), 0, 100))
        .unwrap();
    assert_eq!(drain(&mut instance), [send(1)]);
    // The backup (priority 90) took over and advertises.
    let heard = t + ms(3700);
    instance
        .handle_advert(heard, v3_advert(ip(20), 90, 100))
        .unwrap();
    assert_eq!(
        drain(&mut instance),
        [
            Action::RemoveVips,
            changed(State::Master, State::Initialize, Reason::HandoverDone),
            Action::Exit,
        ]
    );
    assert!(instance.has_exited());
    assert_eq!(instance.poll_timeout(), None);
    assert_eq!(instance.stats().priority_zero_sent, 0);
    // Everything afterwards is ignored.
    instance
        .handle_advert(heard, v3_advert(ip(20), 0, 100))
        .unwrap();
    instance.handle_timeout(heard + ms(100_000));
    instance.handle_health(heard, false);
    instance.handle_shutdown(heard);
    instance.handle_startup(heard);
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.state(), State::Initialize);
}

/// Nobody takes over within handover_timeout: resign with priority 0 (RFC 9568
/// §6.4.3 Shutdown), release, exit.
#[test]
fn planned_handover_falls_back_to_priority_zero() {
    let mut config = v3_config(100, 100);
    config.handover_timeout = ms(4500);
    let (mut instance, at) = master(config);
    instance.handle_shutdown(at);
    assert_eq!(drain(&mut instance), [send(1)]);
    instance.handle_shutdown(at + ms(1));
    assert_eq!(drain(&mut instance), []);
    for n in 1..=4 {
        assert_eq!(instance.poll_timeout(), Some(at + ms(1000) * n));
        instance.handle_timeout(at + ms(1000) * n);
        assert_eq!(drain(&mut instance), [send(1)]);
    }
    assert_eq!(instance.poll_timeout(), Some(at + ms(4500)));
    instance.handle_timeout(at + ms(4500));
    assert_eq!(
        drain(&mut instance),
        [
            send(0),
            Action::RemoveVips,
            changed(State::Master, State::Initialize, Reason::HandoverTimedOut),
            Action::Exit,
        ]
    );
    assert_eq!(instance.stats().priority_zero_sent, 1);
    assert_eq!(instance.poll_timeout(), None);
}

/// handover_timeout 0: resign at once, as keepalived does.
#[test]
fn zero_handover_timeout_resigns_at_once() {
    let mut config = v3_config(100, 100);
    config.handover_timeout = Duration::ZERO;
    let (mut instance, at) = master(config);
    instance.handle_shutdown(at + ms(5));
    assert_eq!(
        drain(&mut instance),
        [
            send(0),
            Action::RemoveVips,
            changed(State::Master, State::Initialize, Reason::Shutdown),
            Action::Exit,
        ]
    );
}

/// Backup and Initialize hold no VIPs: exit at once (§6.4.2 Shutdown).
#[test]
fn shutdown_without_vips_exits_at_once() {
    let (mut instance, t0) = started(v3_config(100, 100));
    instance.handle_shutdown(t0 + ms(1));
    assert_eq!(
        drain(&mut instance),
        [
            changed(State::Backup, State::Initialize, Reason::Shutdown),
            Action::Exit
        ]
    );
    assert_eq!(instance.poll_timeout(), None);

    let mut instance = Instance::try_new(v3_config(100, 100)).unwrap();
    instance.handle_shutdown(t0);
    assert_eq!(drain(&mut instance), [Action::Exit]);
}

// === maintenance (operator handover / resume) ===

/// Master_Down_Interval at priority 1 and a 1s interval: 3s + 255 x 1s / 256.
const MAINTENANCE_DOWN: Duration = Duration::from_nanos(3_996_093_750);

/// A control refused: the error, no action, and nothing inspectable changed.
fn check_refused(
    instance: &mut Instance,
    now: Instant,
    control: fn(&mut Instance, Instant) -> Result<(), ControlRefused>,
    want: ControlRefused,
) {
    let snapshot = |i: &Instance| {
        (
            i.state(),
            i.poll_timeout(),
            i.in_maintenance(),
            i.maintenance_timed_out(),
            i.is_handing_over(),
            i.has_exited(),
            i.advertised_priority(),
            i.effective_priority(),
            *i.stats(),
            i.last_change().copied(),
        )
    };
    let before = snapshot(instance);
    assert_eq!(control(instance, now), Err(want));
    assert_eq!(drain(instance), [], "{want:?}");
    assert_eq!(snapshot(instance), before, "{want:?}");
    let message = want.to_string();
    assert!(
        !message.is_empty() && !message.contains('\n'),
        "{message:?}"
    );
}

/// As Master: keep the VIPs and advertise priority 1 at once; the taker's advert
/// releases them and the node becomes Backup (reason `maintenance`), still in the
/// election at priority 1, with the handover timer stopped.
#[test]
fn maintenance_as_master_hands_over_and_stays_backup() {
    let (mut instance, at) = master(v3_config(100, 100));
    assert!(!instance.in_maintenance());
    let t = at + ms(250);
    assert_eq!(instance.handle_maintenance(t), Ok(()));
    assert_eq!(drain(&mut instance), [send(1)]);
    assert!(instance.in_maintenance());
    assert!(instance.is_handing_over());
    assert!(!instance.maintenance_timed_out());
    assert_eq!(instance.state(), State::Master);
    assert_eq!(instance.effective_priority(), Priority::new(1));
    assert_eq!(instance.advertised_priority(), Priority::new(1));
    assert_eq!(instance.poll_timeout(), Some(t + ms(1000)));
    instance.handle_timeout(t + ms(1000));
    assert_eq!(drain(&mut instance), [send(1)]);
    // A lower priority than ours cannot be: 0 is answered as usual, with priority 1.
    instance
        .handle_advert(t + ms(1500), v3_advert(ip(20), 0, 100))
        .unwrap();
    assert_eq!(drain(&mut instance), [send(1)]);
    // The taker (priority 90) preempted and is heard: release, Backup.
    let heard = t + ms(3700);
    instance
        .handle_advert(heard, v3_advert(ip(20), 90, 100))
        .unwrap();
    assert_eq!(
        drain(&mut instance),
        [
            Action::RemoveVips,
            changed(State::Master, State::Backup, Reason::Maintenance),
        ]
    );
    assert_eq!(Reason::Maintenance.as_str(), "maintenance");
    assert_eq!(instance.state(), State::Backup);
    assert!(instance.in_maintenance());
    assert!(!instance.is_handing_over());
    assert!(!instance.maintenance_timed_out());
    assert!(!instance.has_exited());
    assert_eq!(instance.master_ip(), Some(ip(20)));
    assert_eq!(instance.poll_timeout(), Some(heard + MAINTENANCE_DOWN));
    let change = instance.last_change().unwrap();
    assert_eq!((change.at, change.reason), (heard, Reason::Maintenance));
    assert_eq!(instance.stats().priority_zero_sent, 0);
    assert_eq!(instance.stats().adverts_sent, 4);
    assert_eq!(instance.stats().master_conflicts, 1);
    // The taker is followed as Master at priority 1 (90 > 1), past the handover
    // deadline (t + 10s): that timer is gone.
    for n in 1..=8 {
        let t = heard + ms(1000) * n;
        instance
            .handle_advert(t, v3_advert(ip(20), 90, 100))
            .unwrap();
        assert_eq!(drain(&mut instance), []);
        assert_eq!(instance.poll_timeout(), Some(t + MAINTENANCE_DOWN));
    }
}

/// Nobody takes over within handover_timeout: stay Master at priority 1 (never
/// release the VIPs to nobody), still in maintenance, timeout noted; resume then
/// advertises the base priority at once.
#[test]
fn maintenance_timeout_stays_master() {
    let mut config = v3_config(100, 100);
    config.handover_timeout = ms(4500);
    let (mut instance, at) = master(config);
    assert_eq!(instance.handle_maintenance(at), Ok(()));
    assert_eq!(drain(&mut instance), [send(1)]);
    for n in 1..=4 {
        assert_eq!(instance.poll_timeout(), Some(at + ms(1000) * n));
        instance.handle_timeout(at + ms(1000) * n);
        assert_eq!(drain(&mut instance), [send(1)]);
    }
    assert_eq!(instance.poll_timeout(), Some(at + ms(4500)));
    instance.handle_timeout(at + ms(4500));
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.state(), State::Master);
    assert!(instance.in_maintenance());
    assert!(instance.maintenance_timed_out());
    assert!(!instance.is_handing_over());
    assert_eq!(instance.advertised_priority(), Priority::new(1));
    assert_eq!(instance.stats().priority_zero_sent, 0);
    // It keeps advertising priority 1.
    assert_eq!(instance.poll_timeout(), Some(at + ms(5000)));
    instance.handle_timeout(at + ms(5000));
    assert_eq!(drain(&mut instance), [send(1)]);
    check_refused(
        &mut instance,
        at + ms(5100),
        Instance::handle_maintenance,
        ControlRefused::AlreadyInMaintenance,
    );
    // Resume: priority 100 advertised at once, Adver_Timer reset.
    let resumed = at + ms(5200);
    assert_eq!(instance.handle_resume(resumed), Ok(()));
    assert_eq!(drain(&mut instance), [send(100)]);
    assert!(!instance.in_maintenance());
    assert!(!instance.maintenance_timed_out());
    assert_eq!(instance.effective_priority(), Priority::new(100));
    assert_eq!(instance.poll_timeout(), Some(resumed + ms(1000)));
}

/// handover_timeout 0: no wait and no resignation: Master at priority 1 at once; a
/// node that preempts later takes the VIPs by the ordinary rule.
#[test]
fn maintenance_with_zero_timeout_stays_master() {
    let mut config = v3_config(100, 100);
    config.handover_timeout = Duration::ZERO;
    let (mut instance, at) = master(config);
    let t = at + ms(5);
    assert_eq!(instance.handle_maintenance(t), Ok(()));
    assert_eq!(drain(&mut instance), [send(1)]);
    assert_eq!(instance.state(), State::Master);
    assert!(!instance.is_handing_over());
    assert!(instance.maintenance_timed_out());
    assert_eq!(instance.poll_timeout(), Some(t + ms(1000)));
    instance.handle_timeout(t + ms(1000));
    assert_eq!(drain(&mut instance), [send(1)]);
    let heard = t + ms(3800);
    instance
        .handle_advert(heard, v3_advert(ip(20), 90, 100))
        .unwrap();
    assert_eq!(
        drain(&mut instance),
        [
            Action::RemoveVips,
            changed(State::Master, State::Backup, Reason::HigherPriority),
        ]
    );
    assert!(instance.in_maintenance());
    assert!(!instance.maintenance_timed_out());
    assert_eq!(instance.poll_timeout(), Some(heard + MAINTENANCE_DOWN));
}

/// As Backup (or before startup) only the priority drops: no action, the running
/// timer is kept, and the skew, the Master_Down_Interval and what is preempted
/// follow priority 1.
#[test]
fn maintenance_as_backup_lowers_priority_only() {
    let (mut instance, t0) = started(v3_config(100, 100));
    assert_eq!(instance.handle_maintenance(t0 + ms(10)), Ok(()));
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.state(), State::Backup);
    assert!(!instance.is_handing_over());
    assert!(!instance.maintenance_timed_out());
    assert_eq!(instance.poll_timeout(), Some(t0 + us(3_609_375)));
    assert_eq!(instance.effective_priority(), Priority::new(1));
    assert_eq!(instance.advertised_priority(), Priority::new(1));
    assert_eq!(instance.skew_time(), Duration::from_nanos(996_093_750));
    assert_eq!(instance.master_down_interval(), MAINTENANCE_DOWN);
    // A master at 50 is now higher: accepted, not preempted.
    let t1 = t0 + ms(100);
    instance
        .handle_advert(t1, v3_advert(ip(20), 50, 100))
        .unwrap();
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.master_ip(), Some(ip(20)));
    assert_eq!(instance.poll_timeout(), Some(t1 + MAINTENANCE_DOWN));
    // Another node in maintenance (priority 1) with a lower address is accepted too.
    instance
        .handle_advert(t1 + ms(100), v3_advert(ip(5), 1, 100))
        .unwrap();
    assert_eq!(
        instance.poll_timeout(),
        Some(t1 + ms(100) + MAINTENANCE_DOWN)
    );

    // Before startup: even the owner starts as a Backup at priority 1.
    let mut instance = Instance::try_new(v3_config(255, 100)).unwrap();
    assert_eq!(instance.handle_maintenance(t0), Ok(()));
    assert_eq!(drain(&mut instance), []);
    instance.handle_startup(t0);
    assert_eq!(
        drain(&mut instance),
        [changed(State::Initialize, State::Backup, Reason::Startup)]
    );
    assert_eq!(instance.poll_timeout(), Some(t0 + MAINTENANCE_DOWN));
}

/// Resume as Backup: the priority comes back, the timer is kept, the lower-priority
/// master's adverts are discarded from then on and the Master_Down_Timer (armed by
/// the last advert accepted in maintenance, with the priority-1 skew) preempts it.
#[test]
fn resume_as_backup_preempts_back_by_the_normal_timer() {
    let (mut instance, t0) = started(v3_config(100, 100));
    assert_eq!(instance.handle_maintenance(t0), Ok(()));
    for n in 1..=3 {
        let t = t0 + ms(1000) * n;
        instance
            .handle_advert(t, v3_advert(ip(20), 50, 100))
            .unwrap();
        assert_eq!(instance.poll_timeout(), Some(t + MAINTENANCE_DOWN));
    }
    let deadline = t0 + ms(3000) + MAINTENANCE_DOWN;
    assert_eq!(instance.handle_resume(t0 + ms(3500)), Ok(()));
    assert_eq!(drain(&mut instance), []);
    assert!(!instance.in_maintenance());
    assert_eq!(instance.effective_priority(), Priority::new(100));
    assert_eq!(instance.skew_time(), us(609_375));
    assert_eq!(instance.poll_timeout(), Some(deadline));
    for n in 4..=6 {
        instance
            .handle_advert(t0 + ms(1000) * n, v3_advert(ip(20), 50, 100))
            .unwrap();
        assert_eq!(drain(&mut instance), []);
        assert_eq!(instance.poll_timeout(), Some(deadline));
    }
    instance.handle_timeout(deadline);
    assert_eq!(
        drain(&mut instance),
        becoming_master(State::Backup, Reason::Preempt, 100)
    );
    check_refused(
        &mut instance,
        deadline,
        Instance::handle_resume,
        ControlRefused::NotInMaintenance,
    );
}

/// Health in maintenance is recorded, and only resume brings it into the priority:
/// base - health_weight while unable to serve, base otherwise.
#[test]
fn health_during_maintenance_waits_for_resume() {
    let mut config = v3_config(100, 100);
    config.health_weight = 60;
    config.handover_timeout = Duration::ZERO;
    let t0 = Instant::now();
    let mut instance = Instance::try_new(config.clone()).unwrap();
    instance.handle_health(t0, true);
    instance.handle_startup(t0);
    let at = t0 + us(3_609_375);
    instance.handle_timeout(at);
    drain(&mut instance);
    assert_eq!(instance.state(), State::Master);

    assert_eq!(instance.handle_maintenance(at + ms(10)), Ok(()));
    assert_eq!(drain(&mut instance), [send(1)]);
    instance.handle_health(at + ms(20), false);
    assert_eq!(drain(&mut instance), []);
    assert!(!instance.can_serve());
    assert_eq!(instance.advertised_priority(), Priority::new(1));
    assert_eq!(instance.handle_resume(at + ms(30)), Ok(()));
    assert_eq!(drain(&mut instance), [send(40)]);
    assert_eq!(instance.poll_timeout(), Some(at + ms(1030)));

    assert_eq!(instance.handle_maintenance(at + ms(40)), Ok(()));
    assert_eq!(drain(&mut instance), [send(1)]);
    instance.handle_health(at + ms(50), true);
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.handle_resume(at + ms(60)), Ok(()));
    assert_eq!(drain(&mut instance), [send(100)]);

    // Base 100, weight 99, unable to serve: priority 1 with or without maintenance,
    // so neither control advertises anything.
    config.health_weight = 99;
    let mut instance = Instance::try_new(config).unwrap();
    instance.handle_startup(t0);
    drain(&mut instance);
    let at = instance.poll_timeout().unwrap();
    instance.handle_timeout(at);
    assert_eq!(
        drain(&mut instance),
        becoming_master(State::Backup, Reason::MasterDown, 1)
    );
    assert_eq!(instance.handle_maintenance(at), Ok(()));
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.handle_resume(at), Ok(()));
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.poll_timeout(), Some(at + ms(1000)));
}

/// Every refusal, and that a refused control changes nothing.
#[test]
fn refused_controls_change_nothing() {
    // Not in maintenance: resume is refused, in Initialize, Backup and Master.
    let t0 = Instant::now();
    let mut instance = Instance::try_new(v3_config(100, 100)).unwrap();
    check_refused(
        &mut instance,
        t0,
        Instance::handle_resume,
        ControlRefused::NotInMaintenance,
    );
    let (mut instance, t0) = started(v3_config(100, 100));
    check_refused(
        &mut instance,
        t0,
        Instance::handle_resume,
        ControlRefused::NotInMaintenance,
    );
    // Twice in maintenance, as Backup.
    assert_eq!(instance.handle_maintenance(t0), Ok(()));
    check_refused(
        &mut instance,
        t0 + ms(1),
        Instance::handle_maintenance,
        ControlRefused::AlreadyInMaintenance,
    );
    let (mut instance, at) = master(v3_config(100, 100));
    check_refused(
        &mut instance,
        at,
        Instance::handle_resume,
        ControlRefused::NotInMaintenance,
    );

    // A maintenance handover under way: both controls.
    assert_eq!(instance.handle_maintenance(at + ms(1)), Ok(()));
    drain(&mut instance);
    for control in [Instance::handle_maintenance, Instance::handle_resume] {
        check_refused(
            &mut instance,
            at + ms(2),
            control,
            ControlRefused::HandoverRunning,
        );
    }

    // A shutdown handover under way: both controls.
    let (mut instance, at) = master(v3_config(100, 100));
    instance.handle_shutdown(at);
    assert_eq!(drain(&mut instance), [send(1)]);
    for control in [Instance::handle_maintenance, Instance::handle_resume] {
        check_refused(
            &mut instance,
            at + ms(1),
            control,
            ControlRefused::HandoverRunning,
        );
    }

    // After Exit: both controls.
    let (mut instance, t0) = started(v3_config(100, 100));
    instance.handle_shutdown(t0);
    drain(&mut instance);
    assert!(instance.has_exited());
    for control in [Instance::handle_maintenance, Instance::handle_resume] {
        check_refused(&mut instance, t0, control, ControlRefused::Exited);
    }
}

/// Shutdown still works in maintenance: a Backup exits at once; a Master that stayed
/// (timed out) runs the shutdown handover; a maintenance handover under way becomes
/// the shutdown's, with its deadline, and resigns with priority 0 if nobody comes.
#[test]
fn shutdown_during_maintenance() {
    let (mut instance, t0) = started(v3_config(100, 100));
    assert_eq!(instance.handle_maintenance(t0), Ok(()));
    instance.handle_shutdown(t0 + ms(1));
    assert_eq!(
        drain(&mut instance),
        [
            changed(State::Backup, State::Initialize, Reason::Shutdown),
            Action::Exit
        ]
    );

    // Master at priority 1 after the maintenance handover timed out.
    let mut config = v3_config(100, 100);
    config.handover_timeout = ms(4000);
    let (mut instance, at) = master(config.clone());
    assert_eq!(instance.handle_maintenance(at), Ok(()));
    instance.handle_timeout(at + ms(4000));
    drain(&mut instance);
    assert!(instance.maintenance_timed_out());
    let t = at + ms(4200);
    instance.handle_shutdown(t);
    assert_eq!(drain(&mut instance), [send(1)]);
    assert!(instance.is_handing_over());
    assert_eq!(instance.poll_timeout(), Some(t + ms(1000)));
    instance
        .handle_advert(t + ms(2000), v3_advert(ip(20), 90, 100))
        .unwrap();
    assert_eq!(
        drain(&mut instance),
        [
            Action::RemoveVips,
            changed(State::Master, State::Initialize, Reason::HandoverDone),
            Action::Exit,
        ]
    );

    // During the maintenance handover: nothing new is sent, the deadline stays.
    let (mut instance, at) = master(config);
    assert_eq!(instance.handle_maintenance(at), Ok(()));
    assert_eq!(drain(&mut instance), [send(1)]);
    instance.handle_shutdown(at + ms(1500));
    assert_eq!(drain(&mut instance), []);
    assert!(instance.is_handing_over());
    for n in 1..=3 {
        instance.handle_timeout(at + ms(1000) * n);
        assert_eq!(drain(&mut instance), [send(1)]);
    }
    assert_eq!(instance.poll_timeout(), Some(at + ms(4000)));
    instance.handle_timeout(at + ms(4000));
    assert_eq!(
        drain(&mut instance),
        [
            send(0),
            Action::RemoveVips,
            changed(State::Master, State::Initialize, Reason::HandoverTimedOut),
            Action::Exit,
        ]
    );
    assert!(instance.has_exited());
}

// === reload (handle_reconfigure) ===

/// `instance`'s configuration with `change` applied.
fn edited(instance: &Instance, change: impl FnOnce(&mut InstanceConfig)) -> InstanceConfig {
    let mut config = instance.config().clone();
    change(&mut config);
    config
}

/// Applies `change` to the running section at `now`; the machine must accept it.
fn reconfigure(instance: &mut Instance, now: Instant, change: impl FnOnce(&mut InstanceConfig)) {
    let config = edited(instance, change);
    instance.handle_reconfigure(now, config).unwrap();
}

fn v3_advert_with(src: IpAddr, priority: u8, cs: u16, vips: &[Ipv4Addr]) -> Received {
    Received {
        src,
        ttl_or_hop_limit: 255,
        result: Ok(Repr::V3(AdvertV3 {
            vrid: VRID,
            priority: Priority::new(priority),
            max_advert_int: Centisecs::new_unchecked(cs),
            addrs: VirtualAddrs::V4(AddrList::try_new(vips.to_vec()).unwrap()),
        })),
    }
}

/// Master, a lower priority that still wins: the new priority goes out at once, the
/// Adver_Timer restarts from now, the VIPs stay (no AddVips/RemoveVips).
#[test]
fn reload_as_master_advertises_a_lower_priority_at_once() {
    let (mut instance, at) = master(v3_config(150, 100));
    let t = at + ms(400);
    reconfigure(&mut instance, t, |c| c.base_priority = Priority::new(120));
    assert_eq!(drain(&mut instance), [send(120)]);
    assert_eq!(instance.state(), State::Master);
    assert_eq!(instance.poll_timeout(), Some(t + ms(1000)));
    assert_eq!(instance.advertised_priority(), Priority::new(120));
    assert_eq!(instance.config().base_priority, Priority::new(120));
    // The same section again: nothing.
    instance
        .handle_reconfigure(t + ms(1), instance.config().clone())
        .unwrap();
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.poll_timeout(), Some(t + ms(1000)));
}

/// Master, a priority that loses to a peer heard earlier: no immediate move (RFC 9568
/// changes state on adverts and timers only); the peer's next advert with the higher
/// priority makes it Backup by the ordinary rule, releasing the VIPs.
#[test]
fn reload_as_master_below_a_heard_peer_yields_on_its_next_advert() {
    let (mut instance, at) = master(v3_config(150, 100));
    // A lower-priority node still claiming master (e.g. just before it heard us).
    instance
        .handle_advert(at + ms(100), v3_advert(ip(20), 120, 100))
        .unwrap();
    drain(&mut instance);
    let t = at + ms(200);
    reconfigure(&mut instance, t, |c| c.base_priority = Priority::new(100));
    assert_eq!(drain(&mut instance), [send(100)]);
    assert_eq!(instance.state(), State::Master);
    assert_eq!(instance.stats().priority_zero_sent, 0);
    instance
        .handle_advert(t + ms(300), v3_advert(ip(20), 120, 100))
        .unwrap();
    assert_eq!(
        drain(&mut instance),
        [
            Action::RemoveVips,
            changed(State::Master, State::Backup, Reason::HigherPriority),
        ]
    );
    assert_eq!(instance.master_ip(), Some(ip(20)));
}

/// Master, the VIP list changes: new VIPs added and announced, dropped ones removed,
/// the advert with the new list at once.
#[test]
fn reload_as_master_adds_announces_and_removes_vips() {
    let (mut instance, at) = master(v3_config(100, 100));
    let new = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
    let t = at + ms(10);
    instance
        .handle_reconfigure(t, edited(&instance, |c| c.vips = vec![new]))
        .unwrap();
    assert_eq!(
        drain(&mut instance),
        [
            Action::AddVip { addr: new },
            Action::RemoveVip {
                addr: IpAddr::V4(VIP)
            },
            Action::Announce,
            send(100),
        ]
    );
    let Repr::V3(advert) = instance.advert(Priority::new(100)) else {
        panic!("v3");
    };
    assert_eq!(
        advert.addrs,
        VirtualAddrs::V4(AddrList::try_new(vec![Ipv4Addr::new(198, 18, 1, 2)]).unwrap())
    );
    // Only removing: no announcement.
    let t = t + ms(10);
    let both = vec![new, IpAddr::V4(VIP)];
    instance
        .handle_reconfigure(t, edited(&instance, |c| c.vips = both))
        .unwrap();
    assert_eq!(
        drain(&mut instance),
        [
            Action::AddVip {
                addr: IpAddr::V4(VIP)
            },
            Action::Announce,
            send(100)
        ]
    );
    instance
        .handle_reconfigure(t, edited(&instance, |c| c.vips = vec![IpAddr::V4(VIP)]))
        .unwrap();
    assert_eq!(
        drain(&mut instance),
        [Action::RemoveVip { addr: new }, send(100)]
    );
}

/// Backup, the VIP list changes: nothing on the interface. Adverts with the previous
/// list stay accepted until one with the new list is; after that the previous list
/// is dropped as any other.
#[test]
fn reload_as_backup_accepts_the_previous_vips_until_the_new_ones_are_heard() {
    let (mut instance, t0) = started(v3_config(100, 100));
    let old = [VIP];
    let new = [VIP, Ipv4Addr::new(198, 18, 1, 2)];
    reconfigure(&mut instance, t0 + ms(100), |c| {
        c.vips.push(IpAddr::V4(new[1]))
    });
    assert_eq!(drain(&mut instance), []);
    assert!(instance.accepts_previous_vips());
    let t1 = t0 + ms(500);
    instance
        .handle_advert(t1, v3_advert_with(ip(20), 150, 100, &old))
        .unwrap();
    assert_eq!(instance.poll_timeout(), Some(t1 + us(3_609_375)));
    assert!(instance.accepts_previous_vips());
    let t2 = t0 + ms(1500);
    instance
        .handle_advert(t2, v3_advert_with(ip(20), 150, 100, &new))
        .unwrap();
    assert!(!instance.accepts_previous_vips());
    assert_eq!(
        instance.handle_advert(t0 + ms(2500), v3_advert_with(ip(20), 150, 100, &old)),
        Err(DropReason::AddressList)
    );
    assert_eq!(instance.poll_timeout(), Some(t2 + us(3_609_375)));
    assert_eq!(drain(&mut instance), []);
}

/// Backup, a raised priority with preemption: the Master_Down_Timer is recomputed
/// from the last accepted advert with the new skew (priority 200, 1s: 3.21875s), the
/// next lower advert is discarded and the timer preempts.
#[test]
fn reload_as_backup_recomputes_the_master_down_timer() {
    let (mut instance, t0) = started(v3_config(100, 100));
    let t1 = t0 + ms(1000);
    instance
        .handle_advert(t1, v3_advert(ip(20), 150, 100))
        .unwrap();
    assert_eq!(instance.poll_timeout(), Some(t1 + us(3_609_375)));
    reconfigure(&mut instance, t1 + ms(500), |c| {
        c.base_priority = Priority::new(200)
    });
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.poll_timeout(), Some(t1 + us(3_218_750)));
    instance
        .handle_advert(t1 + ms(1000), v3_advert(ip(20), 150, 100))
        .unwrap();
    assert_eq!(instance.poll_timeout(), Some(t1 + us(3_218_750)));
    instance.handle_timeout(t1 + us(3_218_750));
    assert_eq!(
        drain(&mut instance),
        becoming_master(State::Backup, Reason::Preempt, 200)
    );
    // Lowered instead: the timer moves later (priority 50: skew 804.6875ms).
    let (mut instance, t0) = started(v3_config(100, 100));
    reconfigure(&mut instance, t0 + ms(10), |c| {
        c.base_priority = Priority::new(50)
    });
    assert_eq!(
        instance.poll_timeout(),
        Some(t0 + us(3_804_687) + Duration::from_nanos(500))
    );
}

/// Backup that has heard no Active Router, interval cut from 1s to 100ms: the
/// recomputed Master_Down_Interval (360.9375ms from startup) is already past, so the
/// timer fires at the reload's instant, not before it.
#[test]
fn reload_as_backup_fires_a_timer_already_past_at_once() {
    let (mut instance, t0) = started(v3_config(100, 100));
    let t = t0 + ms(2000);
    reconfigure(&mut instance, t, |c| {
        c.version = VersionConfig::V3 {
            interval: Centisecs::new_unchecked(10),
        };
        c.handover_timeout = ms(1000);
    });
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.master_adver_interval(), ms(100));
    assert_eq!(instance.poll_timeout(), Some(t));
    instance.handle_timeout(t);
    assert_eq!(
        drain(&mut instance),
        becoming_master(State::Backup, Reason::MasterDown, 100)
    );
}

/// A VRRPv3 Backup that heard the Active Router keeps the interval learned from it
/// when its own configured interval changes (RFC 9568 §6.4.2: Master_Adver_Interval
/// comes from the adverts).
#[test]
fn reload_as_backup_keeps_the_learned_interval() {
    let (mut instance, t0) = started(v3_config(100, 100));
    let t1 = t0 + ms(1000);
    instance
        .handle_advert(t1, v3_advert(ip(20), 150, 50))
        .unwrap();
    reconfigure(&mut instance, t1 + ms(100), |c| {
        c.version = VersionConfig::V3 {
            interval: Centisecs::new_unchecked(200),
        };
        c.handover_timeout = ms(8000);
    });
    assert_eq!(instance.master_adver_interval(), ms(500));
    assert_eq!(
        instance.poll_timeout(),
        Some(t1 + us(1_804_687) + Duration::from_nanos(500))
    );
}

/// Master, a longer interval: the advert with it goes out at once and the
/// Adver_Timer runs with it (Backups learn it from that advert).
#[test]
fn reload_as_master_changes_the_interval_at_once() {
    let (mut instance, at) = master(v3_config(100, 100));
    let t = at + ms(300);
    reconfigure(&mut instance, t, |c| {
        c.version = VersionConfig::V3 {
            interval: Centisecs::new_unchecked(300),
        };
        c.handover_timeout = ms(30_000);
    });
    assert_eq!(drain(&mut instance), [send(100)]);
    assert_eq!(instance.poll_timeout(), Some(t + ms(3000)));
    assert_eq!(instance.master_adver_interval(), ms(3000));
    let Repr::V3(advert) = instance.advert(Priority::new(100)) else {
        panic!("v3");
    };
    assert_eq!(advert.max_advert_int, Centisecs::new_unchecked(300));
}

/// VRRPv2 password: the Master's advert carries the new one at once; a Backup
/// accepts the new password only.
#[test]
fn reload_changes_the_v2_password() {
    let (mut instance, at) = master(v2_config(100, 1, Some(b"old")));
    reconfigure(&mut instance, at, |c| {
        c.version = VersionConfig::V2 {
            interval: Secs::new_unchecked(1),
            auth: Some(Password::try_new(b"new").unwrap()),
        }
    });
    assert_eq!(drain(&mut instance), [send(100)]);
    let Repr::V2(advert) = instance.advert(Priority::new(100)) else {
        panic!("v2");
    };
    assert_eq!(
        advert.auth,
        Auth::Password(Password::try_new(b"new").unwrap())
    );

    let (mut instance, t0) = started(v2_config(100, 1, Some(b"old")));
    reconfigure(&mut instance, t0, |c| {
        c.version = VersionConfig::V2 {
            interval: Secs::new_unchecked(1),
            auth: Some(Password::try_new(b"new").unwrap()),
        }
    });
    let old = Auth::Password(Password::try_new(b"old").unwrap());
    let new = Auth::Password(Password::try_new(b"new").unwrap());
    assert_eq!(
        instance.handle_advert(t0 + ms(10), v2_advert(ip(20), 150, 1, old)),
        Err(DropReason::AuthMismatch)
    );
    assert_eq!(
        instance.handle_advert(t0 + ms(20), v2_advert(ip(20), 150, 1, new)),
        Ok(())
    );
}

/// Master: new unicast peers or a new source address get an advert at once (the
/// shell sends it to the new destinations); preemption alone changes nothing on the
/// wire.
#[test]
fn reload_as_master_advertises_to_new_peers_and_stays_silent_otherwise() {
    let (mut instance, at) = master(v3_config(100, 100));
    instance
        .handle_reconfigure(at, edited(&instance, |c| c.peers = Some(vec![ip(20)])))
        .unwrap();
    assert_eq!(drain(&mut instance), [send(100)]);
    instance
        .handle_reconfigure(at, edited(&instance, |c| c.primary_ip = ip(11)))
        .unwrap();
    assert_eq!(drain(&mut instance), [send(100)]);
    assert_eq!(instance.master_ip(), Some(ip(11)));
    reconfigure(&mut instance, at + ms(10), |c| {
        c.preempt = false;
        c.preempt_delay = ms(5000);
        c.handover_timeout = Duration::ZERO;
    });
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.poll_timeout(), Some(at + ms(1000)));
}

/// In maintenance a new priority waits for resume; before startup the section is
/// only replaced (startup then uses it).
#[test]
fn reload_in_maintenance_and_before_startup() {
    let (mut instance, at) = master(v3_config(100, 100));
    reconfigure(&mut instance, at, |c| c.handover_timeout = Duration::ZERO);
    instance.handle_maintenance(at).unwrap();
    assert_eq!(drain(&mut instance), [send(1)]);
    reconfigure(&mut instance, at + ms(10), |c| {
        c.base_priority = Priority::new(140)
    });
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.advertised_priority(), Priority::new(1));
    instance.handle_resume(at + ms(20)).unwrap();
    assert_eq!(drain(&mut instance), [send(140)]);

    let t0 = Instant::now();
    let mut instance = Instance::try_new(v3_config(100, 100)).unwrap();
    reconfigure(&mut instance, t0, |c| {
        c.version = VersionConfig::V3 {
            interval: Centisecs::new_unchecked(10),
        };
        c.handover_timeout = ms(1000);
    });
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.poll_timeout(), None);
    instance.handle_startup(t0);
    assert_eq!(
        instance.poll_timeout(),
        Some(t0 + Duration::from_nanos(360_937_500))
    );
}

/// Refusals change nothing: another VRID or family (replace the instance), an
/// invalid section (priority 0), a handover under way, an exited instance.
#[test]
fn refused_reloads_change_nothing() {
    let snapshot = |i: &Instance| {
        (
            i.config().clone(),
            i.state(),
            i.poll_timeout(),
            i.advertised_priority(),
            *i.stats(),
        )
    };
    let (mut instance, at) = master(v3_config(100, 100));
    let before = snapshot(&instance);
    let cases: Vec<(InstanceConfig, ReconfigureRefused)> = vec![
        (
            edited(&instance, |c| c.vrid = Vrid::new_unchecked(52)),
            ReconfigureRefused::VridChanged {
                from: VRID,
                to: Vrid::new_unchecked(52),
            },
        ),
        (
            edited(&instance, |c| {
                c.primary_ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11));
                c.vips = vec![IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5))];
            }),
            ReconfigureRefused::FamilyChanged {
                from: me(),
                to: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11)),
            },
        ),
        (
            edited(&instance, |c| c.base_priority = Priority::RESIGN),
            ReconfigureRefused::Invalid(ConfigError::ZeroPriority),
        ),
        (
            edited(&instance, |c| c.vips.clear()),
            ReconfigureRefused::Invalid(ConfigError::NoVips),
        ),
    ];
    for (config, want) in cases {
        assert_eq!(instance.handle_reconfigure(at, config), Err(want.clone()));
        assert_eq!(drain(&mut instance), [], "{want:?}");
        assert_eq!(snapshot(&instance), before, "{want:?}");
        assert!(!want.to_string().contains('\n'));
    }
    let priority_90 = edited(&instance, |c| c.base_priority = Priority::new(90));
    instance.handle_shutdown(at);
    drain(&mut instance);
    assert_eq!(
        instance.handle_reconfigure(at, priority_90.clone()),
        Err(ReconfigureRefused::Control(ControlRefused::HandoverRunning))
    );
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.config().base_priority, Priority::new(100));
    let (mut instance, t0) = started(v3_config(100, 100));
    instance.handle_shutdown(t0);
    drain(&mut instance);
    assert_eq!(
        instance.handle_reconfigure(t0, priority_90),
        Err(ReconfigureRefused::Control(ControlRefused::Exited))
    );
}

// === peers heard and split brain ===

/// Every advert that passes the checks updates its sender (any state, priority 0
/// too); dropped ones are not recorded.
#[test]
fn peers_table_records_accepted_adverts() {
    let t0 = Instant::now();
    let mut instance = Instance::try_new(v3_config(100, 100)).unwrap();
    assert_eq!(instance.peers(), []);
    // Initialize: recorded though nothing listens.
    instance
        .handle_advert(t0, v3_advert(ip(20), 150, 100))
        .unwrap();
    instance.handle_startup(t0);
    instance
        .handle_advert(t0 + ms(1000), v3_advert(ip(21), 0, 100))
        .unwrap();
    instance
        .handle_advert(t0 + ms(2000), v3_advert(ip(20), 160, 100))
        .unwrap();
    let mut ttl64 = v3_advert(ip(22), 200, 100);
    ttl64.ttl_or_hop_limit = 64;
    assert!(instance.handle_advert(t0 + ms(2100), ttl64).is_err());
    assert!(instance
        .handle_advert(t0 + ms(2200), v3_advert(me(), 200, 100))
        .is_err());
    let peer = |addr, priority, last_heard, adverts| Peer {
        addr,
        priority: Priority::new(priority),
        last_heard,
        adverts,
    };
    assert_eq!(
        instance.peers(),
        [
            peer(ip(20), 160, t0 + ms(2000), 2),
            peer(ip(21), 0, t0 + ms(1000), 1),
        ]
    );
    // Master: still recorded.
    let at = instance.poll_timeout().unwrap();
    instance.handle_timeout(at);
    drain(&mut instance);
    assert_eq!(instance.state(), State::Master);
    instance
        .handle_advert(at + ms(10), v3_advert(ip(20), 90, 100))
        .unwrap();
    assert_eq!(instance.peers()[0], peer(ip(20), 90, at + ms(10), 3));
}

/// At most 16 peers; a new one replaces the one heard longest ago, and the table
/// never reallocates after its first insert.
#[test]
fn peers_table_is_bounded_and_evicts_the_oldest() {
    let (mut instance, t0) = started(v3_config(100, 100));
    instance
        .handle_advert(t0, v3_advert(ip(30), 50, 100))
        .unwrap();
    let storage = instance.peers().as_ptr();
    for i in 1..16u8 {
        instance
            .handle_advert(t0 + ms(u64::from(i)), v3_advert(ip(30 + i), 50, 100))
            .unwrap();
    }
    assert_eq!(instance.peers().len(), 16);
    // ip(30) heard again: ip(31) is now the oldest.
    instance
        .handle_advert(t0 + ms(100), v3_advert(ip(30), 50, 100))
        .unwrap();
    instance
        .handle_advert(t0 + ms(200), v3_advert(ip(60), 50, 100))
        .unwrap();
    instance
        .handle_advert(t0 + ms(300), v3_advert(ip(61), 70, 100))
        .unwrap();
    let addrs: Vec<IpAddr> = instance.peers().iter().map(|p| p.addr).collect();
    let want: Vec<IpAddr> = [30, 60, 61].into_iter().chain(33..=45).map(ip).collect();
    assert_eq!(addrs, want);
    assert_eq!(instance.peers()[0].adverts, 2);
    assert_eq!(
        instance.peers()[2],
        Peer {
            addr: ip(61),
            priority: Priority::new(70),
            last_heard: t0 + ms(300),
            adverts: 1,
        }
    );
    assert_eq!(instance.peers().as_ptr(), storage);
}

/// masters_heard: peers whose last advert had priority > 0 within 3 x
/// Master_Adver_Interval (inclusive, learned interval), plus this node as Master.
#[test]
fn masters_heard_counts_recent_claims() {
    let (mut instance, t0) = started(v3_config(100, 100));
    assert_eq!(instance.masters_heard(t0), 0);
    let t1 = t0 + ms(1000);
    instance
        .handle_advert(t1, v3_advert(ip(20), 150, 100))
        .unwrap();
    instance
        .handle_advert(t1, v3_advert(ip(21), 0, 100))
        .unwrap();
    assert_eq!(instance.masters_heard(t1), 1);
    assert_eq!(instance.masters_heard(t1 + ms(3000)), 1);
    assert_eq!(
        instance.masters_heard(t1 + ms(3000) + Duration::from_nanos(1)),
        0
    );
    // A 0.5s interval learned from ip(22): the window is 1.5s for everyone.
    let t2 = t1 + ms(500);
    instance
        .handle_advert(t2, v3_advert(ip(22), 120, 50))
        .unwrap();
    assert_eq!(instance.masters_heard(t2), 2);
    assert_eq!(instance.masters_heard(t1 + ms(1500)), 2);
    assert_eq!(instance.masters_heard(t2 + ms(1500)), 1);
    assert_eq!(
        instance.masters_heard(t2 + ms(1500) + Duration::from_nanos(1)),
        0
    );
    // A master that resigned no longer counts.
    instance
        .handle_advert(t2 + ms(100), v3_advert(ip(22), 0, 50))
        .unwrap();
    assert_eq!(instance.masters_heard(t2 + ms(100)), 1);

    // As Master: itself, plus a split-brain peer while it is heard.
    let (mut instance, at) = master(v3_config(100, 100));
    assert_eq!(instance.masters_heard(at), 1);
    let t = at + ms(100);
    instance
        .handle_advert(t, v3_advert(ip(20), 90, 100))
        .unwrap();
    assert_eq!(instance.masters_heard(t), 2);
    assert_eq!(instance.masters_heard(t + ms(3000)), 2);
    assert_eq!(
        instance.masters_heard(t + ms(3000) + Duration::from_nanos(1)),
        1
    );
}

/// master_conflicts: accepted adverts with priority > 0 heard while Master; not in
/// Backup, not priority 0, not dropped ones, and not part of `dropped()`.
#[test]
fn master_conflicts_counts_claims_heard_as_master() {
    let (mut instance, t0) = started(v3_config(100, 100));
    instance
        .handle_advert(t0 + ms(100), v3_advert(ip(20), 150, 100))
        .unwrap();
    assert_eq!(instance.stats().master_conflicts, 0);

    let (mut instance, at) = master(v3_config(100, 100));
    for n in 1..=2u64 {
        instance
            .handle_advert(at + ms(100 * n), v3_advert(ip(20), 90, 100))
            .unwrap();
        assert_eq!(instance.stats().master_conflicts, n);
    }
    instance
        .handle_advert(at + ms(300), v3_advert(ip(20), 0, 100))
        .unwrap();
    // The first lower claim made it re-assert itself; the priority-0 advert is
    // answered with an advert.
    assert_eq!(
        drain(&mut instance),
        [Action::Announce, send(100), send(100)]
    );
    let mut ttl64 = v3_advert(ip(21), 200, 100);
    ttl64.ttl_or_hop_limit = 64;
    assert!(instance.handle_advert(at + ms(400), ttl64).is_err());
    assert_eq!(instance.stats().master_conflicts, 2);
    assert_eq!(instance.stats().dropped(), 1);
    // The one that sends it to Backup counts; later ones do not.
    instance
        .handle_advert(at + ms(500), v3_advert(ip(21), 101, 100))
        .unwrap();
    assert_eq!(instance.state(), State::Backup);
    instance
        .handle_advert(at + ms(600), v3_advert(ip(21), 101, 100))
        .unwrap();
    assert_eq!(instance.stats().master_conflicts, 3);
    assert_eq!(instance.stats().dropped(), 1);
}

// === configuration ===

#[test]
fn config_validation() {
    type Edit = fn(&mut InstanceConfig);
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    let cases: Vec<(Edit, ConfigError)> = vec![
        (
            |c| c.base_priority = Priority::new(0),
            ConfigError::ZeroPriority,
        ),
        (|c| c.vips.clear(), ConfigError::NoVips),
        (
            |c| c.vips.push(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ConfigError::MixedFamily {
                addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
            },
        ),
        (
            |c| c.vips.push(IpAddr::V4(VIP)),
            ConfigError::DuplicateVip {
                addr: IpAddr::V4(VIP),
            },
        ),
        (
            |c| c.vips.push(c.primary_ip),
            ConfigError::PrimaryIsVip { addr: me() },
        ),
        (|c| c.peers = Some(vec![]), ConfigError::NoPeers),
        (
            |c| c.peers = Some(vec![c.primary_ip]),
            ConfigError::PeerIsSelf { addr: me() },
        ),
        (
            |c| c.health_weight = 100,
            ConfigError::WeightNotBelowPriority {
                weight: 100,
                priority: Priority::new(100),
            },
        ),
        (
            |c| c.handover_timeout = ms(3999),
            ConfigError::HandoverTooShort {
                got: ms(3999),
                min: ms(4000),
            },
        ),
        (
            |c| {
                c.vips = (0..=255)
                    .map(|i| IpAddr::V4(Ipv4Addr::new(198, 19, 0, i)))
                    .collect()
            },
            ConfigError::TooManyVips { count: 256 },
        ),
    ];
    for (edit, want) in cases {
        let mut config = v3_config(100, 100);
        edit(&mut config);
        assert_eq!(
            Instance::try_new(config).err(),
            Some(want.clone()),
            "{want}"
        );
    }
    // VRRPv2 is IPv4 only.
    let mut config = v2_config(100, 1, None);
    config.primary_ip = v6;
    config.vips = vec![IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1))];
    assert_eq!(
        Instance::try_new(config).err(),
        Some(ConfigError::V2OverIpv6)
    );
    // Valid: the defaults, zero handover, a 255 owner of its own address, IPv6 v3.
    assert!(Instance::try_new(v3_config(100, 100)).is_ok());
    let mut config = v3_config(100, 100);
    config.handover_timeout = Duration::ZERO;
    assert!(Instance::try_new(config).is_ok());
    let mut config = v3_config(255, 100);
    config.vips.push(me());
    assert!(Instance::try_new(config).is_ok());
    let mut config = v3_config(100, 100);
    config.primary_ip = v6;
    config.vips = vec![IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1))];
    let instance = Instance::try_new(config).unwrap();
    assert!(matches!(
        instance.advert(Priority::new(100)),
        Repr::V3(AdvertV3 {
            addrs: VirtualAddrs::V6(_),
            ..
        })
    ));
}

/// The address list is compared as a set: any order is ours, a repeat or a missing or
/// extra address is not (the comparison runs without allocating, per advert).
#[test]
fn address_list_is_compared_as_a_set() {
    let (a, b) = (Ipv4Addr::new(198, 18, 1, 1), Ipv4Addr::new(198, 18, 1, 2));
    let mut config = v3_config(100, 100);
    config.vips = vec![IpAddr::V4(a), IpAddr::V4(b)];
    let with = |addrs: Vec<Ipv4Addr>| Received {
        src: ip(20),
        ttl_or_hop_limit: 255,
        result: Ok(Repr::V3(AdvertV3 {
            vrid: VRID,
            priority: Priority::new(200),
            max_advert_int: Centisecs::new_unchecked(100),
            addrs: VirtualAddrs::V4(AddrList::try_new(addrs).unwrap()),
        })),
    };
    for (addrs, ok) in [
        (vec![a, b], true),
        (vec![b, a], true),
        (vec![a, a], false),
        (vec![b, b], false),
        (vec![a], false),
        (vec![a, b, b], false),
        (vec![a, Ipv4Addr::new(198, 18, 1, 3)], false),
        (vec![], false),
    ] {
        let (mut instance, t0) = started(config.clone());
        let got = instance.handle_advert(t0 + ms(1), with(addrs.clone()));
        if ok {
            assert_eq!(got, Ok(()), "{addrs:?}");
        } else {
            assert_eq!(got, Err(DropReason::AddressList), "{addrs:?}");
        }
    }
}

// === what lets a Backup read adverts late (the shell's doorbell) ===

/// One step of [`backup_adverts_act_on_nothing_but_the_deadline`].
#[derive(Debug, Clone)]
enum Step {
    /// An advert `after` the previous step: (sender, priority, interval cs, TTL).
    Advert {
        after: u64,
        src: u8,
        priority: u8,
        cs: u16,
        ttl: u8,
    },
    /// The last advert again, byte for byte, from any sender with any TTL.
    Repeat { after: u64, src: u8, ttl: u8 },
    /// Health flips.
    Health { after: u64, can_serve: bool },
    /// Maintenance on (`handle_maintenance`) or off (`handle_resume`).
    Maintenance { after: u64, on: bool },
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    let after = 0u64..40_000;
    let src = prop_oneof![Just(5u8), Just(10), Just(20)];
    let ttl = prop_oneof![4 => Just(255u8), 1 => Just(64)];
    prop_oneof![
        3 => (after.clone(), src.clone(), prop_oneof![Just(0u8), 1u8..=255], prop_oneof![Just(1u16), Just(3), Just(100)], ttl.clone())
            .prop_map(|(after, src, priority, cs, ttl)| Step::Advert { after, src, priority, cs, ttl }),
        6 => (after.clone(), src, ttl).prop_map(|(after, src, ttl)| Step::Repeat { after, src, ttl }),
        1 => (after.clone(), proptest::bool::ANY).prop_map(|(after, can_serve)| Step::Health { after, can_serve }),
        1 => (after, proptest::bool::ANY).prop_map(|(after, on)| Step::Maintenance { after, on }),
    ]
}

proptest::proptest! {
    /// The shell's doorbell lets a Backup read adverts up to a Master_Down_Interval late,
    /// each replayed at its receive time, waking early only for a datagram that is not a
    /// repeat of the last one processed (if that one was accepted with priority > 0).
    /// That is exact because, in Backup: (1) no advert emits an action or leaves Backup,
    /// so nothing is owed before the deadline; (2) such a repeat never moves the
    /// Master_Down deadline earlier, whatever its sender or TTL, as long as the local
    /// priority has not changed since (it sets the skew: this test found that a health
    /// change must clear the template; so must maintenance and resume).
    #[test]
    fn backup_adverts_act_on_nothing_but_the_deadline(
        priority in 1u8..=254,
        preempt in proptest::bool::ANY,
        delay_ms in proptest::prop_oneof![proptest::strategy::Just(0u64), 1u64..100],
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let mut config = v3_config(priority, 1);
        config.preempt = preempt;
        config.preempt_delay = ms(delay_ms);
        config.health_weight = priority.min(50) - 1;
        let (mut instance, t0) = started(config);
        instance.handle_health(t0, true);
        drain(&mut instance);
        let mut t = t0;
        let mut last: Option<(u8, u8, u16)> = None;
        // The last datagram processed, if the doorbell would skip its repeats.
        let mut template: Option<(u8, u16)> = None;
        for s in steps {
            let after = match s {
                Step::Advert { after, .. }
                | Step::Repeat { after, .. }
                | Step::Health { after, .. }
                | Step::Maintenance { after, .. } => after,
            };
            t += us(after);
            // Timers that ran out first, as the shell replays them.
            while let Some(due) = instance.poll_timeout().filter(|&d| d <= t) {
                instance.handle_timeout(due);
            }
            drain(&mut instance);
            let (src, priority, cs, ttl, repeat) = match s {
                Step::Health { can_serve, .. } => {
                    instance.handle_health(t, can_serve);
                    drain(&mut instance);
                    // A new local priority changes the skew: the shell forgets the
                    // template (the next advert rings).
                    template = None;
                    continue;
                }
                Step::Maintenance { on, .. } => {
                    // Refusals (a handover under way, already on, not on) are fine here.
                    let _ = if on {
                        instance.handle_maintenance(t)
                    } else {
                        instance.handle_resume(t)
                    };
                    drain(&mut instance);
                    // The same as health: the local priority, so the skew, may change.
                    template = None;
                    continue;
                }
                Step::Advert { src, priority, cs, ttl, .. } => {
                    last = Some((priority, src, cs));
                    (src, priority, cs, ttl, false)
                }
                Step::Repeat { src, ttl, .. } => match last {
                    Some((priority, _, cs)) => (src, priority, cs, ttl, true),
                    None => continue,
                },
            };
            // A Backup that still holds the VIPs it just lost releases them on the new
            // Master's next advert (see `lost_soon_after_announcing_...`).
            let in_backup = instance.state() == State::Backup && !instance.holds_vips();
            let before = instance.poll_timeout();
            let mut rx = v3_advert(ip(src), priority, cs);
            rx.ttl_or_hop_limit = ttl;
            let accepted = instance.handle_advert(t, rx).is_ok();
            if !in_backup {
                drain(&mut instance);
                template = None;
                continue;
            }
            proptest::prop_assert_eq!(drain(&mut instance), vec![], "an advert in Backup acted");
            proptest::prop_assert_eq!(instance.state(), State::Backup);
            if repeat && template == Some((priority, cs)) {
                let after = instance.poll_timeout();
                proptest::prop_assert!(after >= before, "a repeat moved the deadline from {:?} to {:?}", before, after);
            }
            template = (accepted && priority != 0).then_some((priority, cs));
        }
    }
}

// === hostile adverts ===

/// Priority 255 wins at once and skips the address-list check: only the configured
/// owner may send it.
#[test]
fn priority_255_is_accepted_only_from_the_configured_owner() {
    let (mut instance, at) = master(v3_config(100, 100));
    let forged = v3_advert(ip(20), 255, 100);
    assert_eq!(
        instance.handle_advert(at + ms(1), forged),
        Err(DropReason::NotTheOwner { src: ip(20) })
    );
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.state(), State::Master);
    assert_eq!(instance.stats().not_owner, 1);

    let mut config = v3_config(100, 100);
    config.owner = Some(ip(20));
    let (mut instance, at) = master(config);
    instance
        .handle_advert(at + ms(1), v3_advert(ip(20), 255, 100))
        .unwrap();
    assert_eq!(
        drain(&mut instance),
        [changed(
            State::Master,
            State::Backup,
            Reason::HigherPriority
        )]
    );
    // Another address with 255 is still refused.
    assert!(instance
        .handle_advert(at + ms(2), v3_advert(ip(21), 255, 100))
        .is_err());
}

/// A forged advert with the longest interval on the wire (40.95 s) is learned as at
/// most 4 x the configured one: the VIPs come back within 3 x 4 intervals + skew.
#[test]
fn the_learned_interval_is_bounded() {
    let (mut instance, t0) = started(v3_config(100, 10));
    instance
        .handle_advert(t0 + ms(1), v3_advert(ip(20), 200, 4095))
        .unwrap();
    assert_eq!(instance.master_adver_interval(), ms(400));
    assert_eq!(instance.master_down_interval(), ms(1200) + us(243_750));
    assert_eq!(
        instance.poll_timeout(),
        Some(t0 + ms(1) + ms(1200) + us(243_750))
    );
    // Within the bound, learned as sent.
    instance
        .handle_advert(t0 + ms(2), v3_advert(ip(20), 200, 30))
        .unwrap();
    assert_eq!(instance.master_adver_interval(), ms(300));
    assert_eq!(MAX_LEARNED_FACTOR, 4);
}

// === lossy-link hysteresis ===

/// Feeds a Backup (priority 100, 100 ms) adverts of priority 200 from `ip(20)` at
/// `t0 + 1 ms + 100 ms * k` for each `k`; returns the instant of the last one.
fn adverts_at(instance: &mut Instance, t0: Instant, ks: impl IntoIterator<Item = u32>) -> Instant {
    let mut last = t0;
    for k in ks {
        last = t0 + ms(1) + ms(100) * k;
        instance
            .handle_advert(last, v3_advert(ip(20), 200, 10))
            .unwrap();
    }
    assert!(drain(instance).is_empty());
    last
}

/// Skew_Time at priority 100 and a 100 ms interval.
const SKEW_100: Duration = Duration::from_nanos(60_937_500);

/// A Backup that saw one advert go missing waits one interval longer before it takes
/// over; a stream without gaps keeps the RFC's Master_Down_Interval exactly.
#[test]
fn a_missed_advert_lengthens_master_down_by_one_interval() {
    let (mut instance, t0) = started(v3_config(100, 10));
    let last = adverts_at(&mut instance, t0, 0..20);
    assert_eq!(instance.stats().adverts_missed, 0);
    assert_eq!(instance.loss_extra_intervals(), 0);
    assert_eq!(
        instance.backup_down_interval(),
        instance.master_down_interval()
    );
    assert_eq!(instance.poll_timeout(), Some(last + ms(300) + SKEW_100));
    // Advert 20 is lost.
    let last = adverts_at(&mut instance, t0, 21..22);
    assert_eq!(instance.stats().adverts_missed, 1);
    assert_eq!(instance.loss_extra_intervals(), 1);
    assert_eq!(instance.backup_down_interval(), ms(400) + SKEW_100);
    // The master dies after advert 21: the takeover comes 4 intervals + skew later.
    let down = last + ms(400) + SKEW_100;
    assert_eq!(instance.poll_timeout(), Some(down));
    instance.handle_timeout(down - Duration::from_nanos(1));
    assert_eq!(instance.state(), State::Backup);
    instance.handle_timeout(down);
    assert_eq!(
        drain(&mut instance),
        becoming_master(State::Backup, Reason::MasterDown, 100)
    );
}

/// Three lost adverts in a row (the RFC's takeover) no longer move the VIP after the
/// link was seen losing some: the extension is at most three intervals, each gap
/// adds one, and the missed adverts are counted.
#[test]
fn gaps_extend_master_down_by_at_most_three_intervals() {
    let (mut instance, t0) = started(v3_config(100, 10));
    // Lost: 1, 3 and 4, 6, 8.
    let last = adverts_at(&mut instance, t0, [0, 2, 5, 7, 9]);
    assert_eq!(instance.stats().adverts_missed, 5);
    assert_eq!(instance.loss_extra_intervals(), MAX_EXTRA_INTERVALS);
    assert_eq!(MAX_EXTRA_INTERVALS, 3);
    assert_eq!(instance.poll_timeout(), Some(last + ms(600) + SKEW_100));
    // Three more lost in a row (10, 11, 12): still Backup when 13 arrives.
    instance.handle_timeout(last + ms(350) + SKEW_100);
    assert_eq!(instance.state(), State::Backup);
    adverts_at(&mut instance, t0, [13]);
    assert_eq!(instance.state(), State::Backup);
    assert_eq!(instance.stats().adverts_missed, 8);
}

/// After DECAY_ADVERTS adverts in a row without a gap, one interval of the extension
/// goes away again; a Backup that became Master and Backup again starts a new stream
/// (the time it was Master is not a gap), and keeps what it learned about the link.
#[test]
fn the_extension_decays_and_survives_a_term_as_master() {
    let (mut instance, t0) = started(v3_config(100, 10));
    adverts_at(&mut instance, t0, [0, 2, 4]);
    assert_eq!(instance.loss_extra_intervals(), 2);
    let last = adverts_at(&mut instance, t0, 5..5 + DECAY_ADVERTS);
    assert_eq!(instance.loss_extra_intervals(), 1);
    assert_eq!(instance.stats().adverts_missed, 2);
    // The master dies; this node takes over after 4 intervals + skew.
    let down = last + ms(400) + SKEW_100;
    instance.handle_timeout(down);
    assert_eq!(instance.state(), State::Master);
    drain(&mut instance);
    // The other node comes back with a higher priority long after its last advert.
    let back = down + ms(5_000);
    instance
        .handle_advert(back, v3_advert(ip(20), 200, 10))
        .unwrap();
    assert_eq!(instance.state(), State::Backup);
    drain(&mut instance);
    instance
        .handle_advert(back + ms(10), v3_advert(ip(20), 200, 10))
        .unwrap();
    assert_eq!(
        instance.stats().adverts_missed,
        2,
        "the term as Master is no gap"
    );
    assert_eq!(instance.loss_extra_intervals(), 1);
}

/// The extension never lengthens what a forged interval can do: the wait stays within
/// 3 x the longest learned interval plus skew.
#[test]
fn the_extension_stays_within_the_learned_interval_bound() {
    let (mut instance, t0) = started(v3_config(100, 10));
    let last = adverts_at(&mut instance, t0, [0, 2, 4, 6]);
    assert_eq!(instance.loss_extra_intervals(), 3);
    // 40.95 s from the Active Router's address, learned as 400 ms.
    let forged = last + ms(100);
    instance
        .handle_advert(forged, v3_advert(ip(20), 200, 4095))
        .unwrap();
    assert_eq!(instance.master_adver_interval(), ms(400));
    assert_eq!(instance.backup_down_interval(), ms(1200) + us(243_750));
    assert_eq!(
        instance.poll_timeout(),
        Some(forged + ms(1200) + us(243_750))
    );
}

// === faults ===

fn link(exists: bool, up: bool, carrier: bool, source_present: bool) -> LinkState {
    LinkState {
        exists,
        up,
        carrier,
        source_present,
    }
}

/// A Master whose link fails hands off with priority 0, removes the VIPs and stays out
/// of the election; when the link returns it starts again as Backup.
#[test]
fn a_master_with_a_failed_link_hands_off_and_returns_as_backup() {
    let (mut instance, at) = master(v3_config(100, 100));
    instance.handle_link(at + ms(5), link(true, true, false, true));
    assert_eq!(
        drain(&mut instance),
        [
            send(0),
            Action::RemoveVips,
            changed(State::Master, State::Fault, Reason::Fault)
        ]
    );
    assert_eq!(instance.faults().to_string(), "no_carrier");
    assert_eq!(instance.poll_timeout(), None, "no timer runs in Fault");
    assert_eq!(instance.stats().faults, 1);
    // Adverts are ignored; a shutdown exits at once.
    instance
        .handle_advert(at + ms(6), v3_advert(ip(20), 50, 100))
        .unwrap();
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.state(), State::Fault);
    // Another fault meanwhile, then both clear.
    instance.handle_link(at + ms(7), link(true, false, false, true));
    assert_eq!(drain(&mut instance), []);
    instance.handle_link(at + ms(8), LinkState::HEALTHY);
    assert_eq!(
        drain(&mut instance),
        [changed(State::Fault, State::Backup, Reason::FaultCleared)]
    );
    assert_eq!(
        instance.poll_timeout(),
        Some(at + ms(8) + instance.master_down_interval())
    );
    instance.handle_shutdown(at + ms(9));
    assert_eq!(
        drain(&mut instance),
        [
            changed(State::Backup, State::Initialize, Reason::Shutdown),
            Action::Exit
        ]
    );
}

/// Faults before startup delay it; the owner comes back as Master; a Backup only
/// leaves the election; shutdown in Fault exits.
#[test]
fn faults_before_startup_for_backups_and_for_the_owner() {
    let t0 = Instant::now();
    let mut instance = Instance::try_new(v3_config(255, 100)).unwrap();
    instance.handle_link(t0, link(false, false, false, false));
    assert_eq!(drain(&mut instance), []);
    instance.handle_startup(t0);
    assert_eq!(
        drain(&mut instance),
        [changed(State::Initialize, State::Fault, Reason::Fault)]
    );
    assert_eq!(instance.faults().to_string(), "interface_gone");
    instance.handle_link(t0 + ms(1), LinkState::HEALTHY);
    assert_eq!(
        drain(&mut instance),
        becoming_master(State::Fault, Reason::FaultCleared, 255)
    );

    let (mut instance, t0) = started(v3_config(100, 100));
    instance.handle_link(t0 + ms(1), link(true, true, true, false));
    assert_eq!(
        drain(&mut instance),
        [changed(State::Backup, State::Fault, Reason::Fault)]
    );
    instance.handle_shutdown(t0 + ms(2));
    assert_eq!(
        drain(&mut instance),
        [
            changed(State::Fault, State::Initialize, Reason::Shutdown),
            Action::Exit
        ]
    );
}

/// A failed VIP addition is a fault the machine clears itself after three intervals
/// (at least 1 s); a link fault in between keeps it out until both clear.
#[test]
fn a_failed_vip_addition_retries_after_three_intervals() {
    let (mut instance, at) = master(v3_config(100, 100));
    instance.handle_vip_add_failed(at);
    assert_eq!(
        drain(&mut instance),
        [
            send(0),
            Action::RemoveVips,
            changed(State::Master, State::Fault, Reason::Fault)
        ]
    );
    assert_eq!(instance.poll_timeout(), Some(at + ms(3000)));
    instance.handle_link(at + ms(10), link(true, false, false, true));
    instance.handle_timeout(at + ms(3000));
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.faults().to_string(), "link_down");
    instance.handle_link(at + ms(3010), LinkState::HEALTHY);
    assert_eq!(
        drain(&mut instance),
        [changed(State::Fault, State::Backup, Reason::FaultCleared)]
    );
    // At 10 ms adverts the retry is the 1 s floor.
    let (mut instance, at) = master(v3_config(100, 1));
    instance.handle_vip_add_failed(at);
    drain(&mut instance);
    assert_eq!(instance.poll_timeout(), Some(at + ms(1000)));
}

/// A fault during a shutdown handover resigns and exits; during a maintenance
/// handover it ends the handover.
#[test]
fn a_fault_during_a_handover() {
    let (mut instance, at) = master(v3_config(100, 100));
    instance.handle_shutdown(at);
    drain(&mut instance);
    instance.handle_link(at + ms(1), link(true, false, false, true));
    assert_eq!(
        drain(&mut instance),
        [
            send(0),
            Action::RemoveVips,
            changed(State::Master, State::Initialize, Reason::Fault),
            Action::Exit
        ]
    );
    let (mut instance, at) = master(v3_config(100, 100));
    instance.handle_maintenance(at).unwrap();
    drain(&mut instance);
    assert!(instance.is_handing_over());
    instance.handle_link(at + ms(1), link(true, false, false, true));
    assert_eq!(
        drain(&mut instance),
        [
            send(0),
            Action::RemoveVips,
            changed(State::Master, State::Fault, Reason::Fault)
        ]
    );
    assert!(!instance.is_handing_over() && instance.in_maintenance());
    assert_eq!(instance.poll_timeout(), None);
}

/// A VIP removed from under a Master is added back and announced again; a Backup
/// ignores the report.
#[test]
fn a_missing_vip_is_restored_by_the_master_only() {
    let mut config = v3_config(100, 100);
    config.announce_count = 2;
    let (mut instance, at) = master(config);
    instance.handle_timeout(at + EARLY_REPEAT);
    drain(&mut instance);
    instance.handle_vips_missing(at + ms(50));
    assert_eq!(drain(&mut instance), [Action::AddVips, Action::Announce]);
    assert_eq!(instance.stats().vips_restored, 1);
    assert_eq!(instance.poll_timeout(), Some(at + ms(50) + EARLY_REPEAT));
    let (mut instance, t0) = started(v3_config(100, 100));
    instance.handle_vips_missing(t0 + ms(1));
    assert_eq!(drain(&mut instance), []);
    assert_eq!(instance.stats().vips_restored, 0);
}

/// Re-asserting after a split is counted.
#[test]
fn split_brains_are_counted_once_per_reassertion() {
    let (mut instance, at) = master(v3_config(100, 100));
    for n in 0..5 {
        instance
            .handle_advert(at + ms(1 + n), v3_advert(ip(20), 90, 100))
            .unwrap();
    }
    assert_eq!(instance.stats().split_brains, 1);
    assert_eq!(instance.stats().master_conflicts, 5);
}

/// Kernel drops during a flood: a Backup restarts its Master_Down_Timer once per
/// accepted advert (the lost datagram may have been the master's), so a real crash is
/// detected at most one Master_Down_Interval later; a Master ignores them.
#[test]
fn kernel_drops_extend_a_backups_timer_once_per_accepted_advert() {
    let (mut instance, t0) = started(v3_config(100, 100));
    // Before any advert the timer runs on startup: drops do not extend it.
    instance.handle_rx_dropped(t0 + ms(10), 5);
    assert_eq!(instance.poll_timeout(), Some(t0 + us(3_609_375)));
    let t = t0 + ms(100);
    instance
        .handle_advert(t, v3_advert(ip(20), 150, 100))
        .unwrap();
    let mdi = instance.master_down_interval();
    assert_eq!(instance.poll_timeout(), Some(t + mdi));
    instance.handle_rx_dropped(t + ms(3000), 40);
    assert_eq!(instance.poll_timeout(), Some(t + ms(3000) + mdi));
    // Once only: more drops do not postpone the takeover again.
    instance.handle_rx_dropped(t + ms(6000), 40);
    assert_eq!(instance.poll_timeout(), Some(t + ms(3000) + mdi));
    assert_eq!(instance.stats().rx_dropped, 85);
    instance.handle_timeout(t + ms(3000) + mdi);
    assert_eq!(instance.state(), State::Master);
    // A new accepted advert allows one more extension.
    let (mut instance, t0) = started(v3_config(100, 100));
    for k in 1..=3u64 {
        let at = t0 + ms(1000 * k);
        instance
            .handle_advert(at, v3_advert(ip(20), 150, 100))
            .unwrap();
        instance.handle_rx_dropped(at + ms(500), 1);
        assert_eq!(instance.poll_timeout(), Some(at + ms(500) + mdi));
    }
    let (mut master, at) = master(v3_config(100, 100));
    let before = master.poll_timeout();
    master.handle_rx_dropped(at + ms(1), 10);
    assert_eq!(master.poll_timeout(), before);
    assert_eq!(drain(&mut master), []);
}

/// While the other node keeps claiming master inside the re-assertion's rate limit, the
/// announcements go on until `announce_count` repetitions after the last claim heard.
#[test]
fn announcements_continue_while_a_lower_priority_keeps_claiming_master() {
    let mut config = v3_config(100, 100);
    config.announce_count = 3;
    config.announce_interval = ms(200);
    let (mut instance, at) = master(config);
    for k in 1..=2 {
        instance.handle_timeout(at + EARLY_REPEAT + ms(200) * (k - 1));
    }
    drain(&mut instance);
    // The series is over: only the advert timer runs.
    assert_eq!(instance.poll_timeout(), Some(at + ms(1000)));
    let t = at + ms(500);
    instance
        .handle_advert(t, v3_advert(ip(20), 90, 100))
        .unwrap();
    assert_eq!(drain(&mut instance), [Action::Announce, send(100)]);
    // Inside the rate limit: no advert, but the series is kept going.
    let mut now = t + EARLY_REPEAT;
    instance.handle_timeout(now);
    assert_eq!(drain(&mut instance), [Action::Announce]);
    instance
        .handle_advert(now + ms(100), v3_advert(ip(20), 90, 100))
        .unwrap();
    assert_eq!(drain(&mut instance), []);
    // After that claim they go on past Linux's 1 s neighbour locktime: six more, 200 ms
    // apart (announce_count alone would give two).
    let claim = now + ms(100);
    let mut announced = Vec::new();
    while let Some(next) = instance.poll_timeout().filter(|&d| d < claim + ms(3000)) {
        now = next;
        instance.handle_timeout(now);
        if drain(&mut instance).contains(&Action::Announce) {
            announced.push(now - claim);
        }
    }
    assert_eq!(announced.len(), 6, "{announced:?}");
    assert!(*announced.last().unwrap() > NEIGH_LOCKTIME, "{announced:?}");
    assert_eq!(instance.stats().split_brains, 1);
}

// === announcement refresh (issue 11: a split the Master never heard) ===

/// With `announce_refresh`, a Master announces again that long after its last
/// announcement for as long as it holds the VIPs; a lower-priority claim still gets
/// its repetitions at `announce_interval` (the refresh does not delay them), and
/// leaving Master stops everything. Without it (zero) the series ends.
#[test]
fn a_master_refreshes_its_announcement_while_it_holds_the_vips() {
    let mut config = v3_config(100, 10);
    config.announce_count = 2;
    config.announce_interval = ms(200);
    config.announce_refresh = ms(1000);
    let (mut instance, at) = master(config);
    instance.handle_timeout(at + EARLY_REPEAT);
    let announces = |actions: Vec<Action>| {
        actions
            .into_iter()
            .filter(|a| *a == Action::Announce)
            .count()
    };
    assert_eq!(announces(drain(&mut instance)), 1);
    // Then once a second, whatever else happens (adverts every 100 ms).
    let mut t = at + EARLY_REPEAT;
    let mut seen = Vec::new();
    while t < at + ms(3100) {
        t = instance.poll_timeout().unwrap();
        instance.handle_timeout(t);
        if announces(drain(&mut instance)) > 0 {
            seen.push(t - at);
        }
    }
    assert_eq!(
        seen,
        [ms(1010), ms(2010), ms(3010)],
        "refreshed every second after the series"
    );
    // A claim heard: announce at once, then every 200 ms (not after the refresh).
    let c = at + ms(3050);
    instance
        .handle_advert(c, v3_advert(ip(20), 99, 10))
        .unwrap();
    assert_eq!(announces(drain(&mut instance)), 1);
    assert_eq!(instance.timers.get(Timer::Announce), Some(c + EARLY_REPEAT));
    instance.handle_timeout(c + EARLY_REPEAT);
    drain(&mut instance);
    let rate_limited = c + ms(100);
    instance
        .handle_advert(rate_limited, v3_advert(ip(20), 99, 10))
        .unwrap();
    assert_eq!(announces(drain(&mut instance)), 0, "rate-limited");
    assert!(instance.timers.get(Timer::Announce).unwrap() <= rate_limited + ms(200));
    // Leaving Master stops the refresh.
    instance
        .handle_advert(c + ms(150), v3_advert(ip(20), 200, 10))
        .unwrap();
    drain(&mut instance);
    assert_eq!(instance.state(), State::Backup);
    assert_eq!(instance.timers.get(Timer::Announce), None);

    // Not while handing over: the new holder's announcements come last.
    let mut config = v3_config(100, 10);
    config.announce_refresh = ms(1000);
    let (mut instance, at) = master(config);
    instance.handle_shutdown(at + ms(500));
    drain(&mut instance);
    instance.handle_timeout(at + ms(1000));
    assert!(!drain(&mut instance).contains(&Action::Announce));
    assert!(instance.is_handing_over());

    // Not while the priority is lowered (unable to serve): a preempting Backup is about
    // to take over; back to refreshing when it can serve again.
    let mut config = v3_config(100, 10);
    config.announce_refresh = ms(1000);
    config.health_weight = 50;
    let (mut instance, at) = master(config);
    instance.handle_health(at + ms(500), false);
    drain(&mut instance);
    instance.handle_timeout(at + ms(1000));
    assert!(!drain(&mut instance).contains(&Action::Announce));
    instance.handle_health(at + ms(1500), true);
    drain(&mut instance);
    instance.handle_timeout(at + ms(2000));
    assert!(drain(&mut instance).contains(&Action::Announce));

    // Zero: the series ends and only the advert timer runs.
    let mut config = v3_config(100, 10);
    config.announce_count = 2;
    let (mut instance, at) = master(config);
    instance.handle_timeout(at + EARLY_REPEAT);
    drain(&mut instance);
    assert_eq!(instance.timers.get(Timer::Announce), None);
}

// === sync groups ===

const GO: SyncInput = SyncInput {
    may_master: true,
    sibling_fault: false,
};

/// A sync-group member told to wait, started at `t0`, actions drained.
fn member(config: InstanceConfig) -> (Instance, Instant) {
    let t0 = Instant::now();
    let mut instance = Instance::try_new(config).unwrap();
    instance.handle_sync(t0, SyncInput::WAIT);
    instance.handle_startup(t0);
    drain(&mut instance);
    (instance, t0)
}

#[test]
fn a_held_member_waits_ready_when_its_timer_runs_out_and_takes_over_when_let() {
    let (mut i, t0) = member(v3_config(100, 100));
    assert_eq!(i.posture(), Posture::Backup);
    let down = i.poll_timeout().unwrap();
    assert_eq!(down, t0 + i.master_down_interval());
    i.handle_timeout(down);
    assert_eq!(drain(&mut i), []);
    assert_eq!((i.state(), i.posture()), (State::Backup, Posture::Ready));
    assert_eq!(i.poll_timeout(), None, "a ready member runs no timer");
    // Told again to wait: nothing. Let go: Master for the reason its timer had.
    i.handle_sync(down + ms(5), SyncInput::WAIT);
    assert_eq!(drain(&mut i), []);
    i.handle_sync(down + ms(10), GO);
    assert_eq!(
        drain(&mut i),
        becoming_master(State::Backup, Reason::MasterDown, 100)
    );
    assert_eq!(i.posture(), Posture::Master);
}

#[test]
fn an_accepted_advert_ends_the_wait() {
    let (mut i, _) = member(v3_config(100, 100));
    let down = i.poll_timeout().unwrap();
    i.handle_timeout(down);
    assert_eq!(i.posture(), Posture::Ready);
    // A higher priority is heard: content to be Backup again, timer running.
    i.handle_advert(down + ms(1), v3_advert(ip(20), 200, 100))
        .unwrap();
    assert_eq!(i.posture(), Posture::Backup);
    assert_eq!(
        i.poll_timeout(),
        Some(down + ms(1) + i.master_down_interval())
    );
    i.handle_sync(down + ms(2), GO);
    assert_eq!(drain(&mut i), [], "let go, but an Active Router is heard");
    assert_eq!(i.state(), State::Backup);
    // A lower priority (preempting) does not end the wait.
    let (mut j, _) = member(v3_config(100, 100));
    let down = j.poll_timeout().unwrap();
    j.handle_timeout(down);
    j.handle_advert(down + ms(1), v3_advert(ip(20), 50, 100))
        .unwrap();
    assert_eq!(j.posture(), Posture::Ready);
}

#[test]
fn a_master_told_to_wait_resigns_and_becomes_backup() {
    let (mut i, t0) = member(v3_config(100, 100));
    i.handle_sync(t0, GO);
    let down = i.poll_timeout().unwrap();
    i.handle_timeout(down);
    drain(&mut i);
    assert_eq!(i.state(), State::Master);
    let at = down + ms(30);
    i.handle_sync(at, SyncInput::WAIT);
    assert_eq!(
        drain(&mut i),
        [
            send(0),
            Action::RemoveVips,
            changed(State::Master, State::Backup, Reason::SyncGroup),
        ]
    );
    // Back in the election with the configured interval: ready again after
    // Master_Down_Interval if nobody takes over.
    assert_eq!(i.poll_timeout(), Some(at + i.master_down_interval()));
    assert_eq!(i.posture(), Posture::Backup);
    assert_eq!(i.stats().priority_zero_sent, 1);
}

#[test]
fn a_sibling_fault_takes_the_member_out_without_being_its_own() {
    let (mut i, t0) = member(v3_config(100, 100));
    i.handle_sync(t0, GO);
    let down = i.poll_timeout().unwrap();
    i.handle_timeout(down);
    drain(&mut i);
    let at = down + ms(1);
    i.handle_sync(
        at,
        SyncInput {
            may_master: false,
            sibling_fault: true,
        },
    );
    assert_eq!(
        drain(&mut i),
        [
            send(0),
            Action::RemoveVips,
            changed(State::Master, State::Fault, Reason::Fault),
        ]
    );
    assert_eq!(i.faults().iter().collect::<Vec<_>>(), [Fault::SyncGroup]);
    assert_eq!(i.posture(), Posture::Backup, "not a fault of its own");
    // A healthy link read meanwhile (the sibling's fault was on another address of
    // the same interface) does not end the group's fault.
    i.handle_link(at, LinkState::HEALTHY);
    assert_eq!(drain(&mut i), []);
    assert_eq!(i.state(), State::Fault);
    // Its own fault on top: now it is one.
    i.handle_link(
        at,
        LinkState {
            up: false,
            carrier: false,
            ..LinkState::HEALTHY
        },
    );
    assert_eq!(i.posture(), Posture::Fault);
    i.handle_link(at, LinkState::HEALTHY);
    i.handle_sync(at + ms(1), SyncInput::WAIT);
    assert_eq!(
        drain(&mut i),
        [changed(State::Fault, State::Backup, Reason::FaultCleared)]
    );
    let fault_index = Fault::ALL
        .iter()
        .position(|&f| f == Fault::SyncGroup)
        .unwrap();
    assert_eq!(i.stats().fault_causes[fault_index], 1);
}

#[test]
fn a_held_owner_waits_at_startup_and_alone_nothing_changes() {
    let mut config = v3_config(255, 100);
    config.owner = None;
    let (mut i, t0) = member(config.clone());
    assert_eq!((i.state(), i.posture()), (State::Backup, Posture::Ready));
    i.handle_sync(t0 + ms(1), GO);
    assert_eq!(
        drain(&mut i),
        becoming_master(State::Backup, Reason::OwnerStartup, 255)
    );
    // Without a group the owner is Master at once, as before.
    let (alone, _) = started(config);
    assert_eq!(
        (alone.state(), alone.posture()),
        (State::Master, Posture::Master)
    );
}
