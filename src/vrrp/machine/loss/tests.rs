//! The lossy-link meter, exactly.

use std::net::Ipv4Addr;

use super::*;

const I: Duration = Duration::from_millis(100);
const A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));

/// Feeds adverts from `src` at `t0 + I * k` for every `k` in `ks`; returns the
/// missed counts.
fn feed(m: &mut LossMeter, t0: Instant, src: IpAddr, ks: &[u32]) -> Vec<u64> {
    ks.iter()
        .map(|&k| m.on_advert(t0 + I * k, src, I))
        .collect()
}

#[test]
fn a_regular_stream_adds_nothing() {
    let mut m = LossMeter::default();
    let t0 = Instant::now();
    let ks: Vec<u32> = (0..500).collect();
    assert!(feed(&mut m, t0, A, &ks).iter().all(|&n| n == 0));
    assert_eq!(m.extra_intervals(), 0);
}

#[test]
fn jitter_below_half_an_interval_is_not_a_loss() {
    let mut m = LossMeter::default();
    let t0 = Instant::now();
    assert_eq!(m.on_advert(t0, A, I), 0);
    assert_eq!(m.on_advert(t0 + I * 3 / 2, A, I), 0);
    assert_eq!(m.on_advert(t0 + I * 3 / 2 + I / 10, A, I), 0);
    assert_eq!(m.extra_intervals(), 0);
}

#[test]
fn each_gap_adds_one_interval_up_to_the_cap_and_counts_the_missed_adverts() {
    let mut m = LossMeter::default();
    let t0 = Instant::now();
    // One lost (k=2), two lost (k=5..6), one lost (k=8), one lost (k=10).
    let missed = feed(&mut m, t0, A, &[0, 1, 3, 4, 7, 9, 11]);
    assert_eq!(missed, [0, 0, 1, 0, 2, 1, 1]);
    assert_eq!(m.extra_intervals(), MAX_EXTRA_INTERVALS);
}

#[test]
fn a_clean_run_takes_the_extension_away_one_interval_at_a_time() {
    let mut m = LossMeter::default();
    let t0 = Instant::now();
    feed(&mut m, t0, A, &[0, 2, 4]);
    assert_eq!(m.extra_intervals(), 2);
    let clean: Vec<u32> = (5..5 + DECAY_ADVERTS - 1).collect();
    feed(&mut m, t0, A, &clean);
    assert_eq!(m.extra_intervals(), 2, "one advert short of the decay");
    feed(&mut m, t0, A, &[4 + DECAY_ADVERTS]);
    assert_eq!(m.extra_intervals(), 1);
    let next: Vec<u32> = (5 + DECAY_ADVERTS..5 + 2 * DECAY_ADVERTS).collect();
    feed(&mut m, t0, A, &next);
    assert_eq!(m.extra_intervals(), 0);
    let more: Vec<u32> = (5 + 2 * DECAY_ADVERTS..5 + 3 * DECAY_ADVERTS).collect();
    feed(&mut m, t0, A, &more);
    assert_eq!(m.extra_intervals(), 0, "never below zero");
}

#[test]
fn another_router_or_a_forgotten_stream_starts_afresh() {
    let mut m = LossMeter::default();
    let t0 = Instant::now();
    feed(&mut m, t0, A, &[0]);
    // B takes over long after A's last advert: not a loss.
    assert_eq!(m.on_advert(t0 + I * 10, B, I), 0);
    assert_eq!(m.extra_intervals(), 0);
    feed(&mut m, t0, B, &[11, 13]);
    assert_eq!(m.extra_intervals(), 1);
    m.forget_stream();
    assert_eq!(m.on_advert(t0 + I * 50, B, I), 0);
    assert_eq!(m.extra_intervals(), 1, "the link's history stays");
}

#[test]
fn a_zero_interval_or_a_huge_gap_does_not_panic() {
    let mut m = LossMeter::default();
    let t0 = Instant::now();
    m.on_advert(t0, A, Duration::ZERO);
    assert_eq!(m.on_advert(t0 + I, A, Duration::ZERO), 0);
    let far = t0 + Duration::from_secs(86_400 * 365);
    assert_eq!(
        m.on_advert(far, A, Duration::from_nanos(1)),
        u64::try_from((far - (t0 + I)).as_nanos()).unwrap() - 1
    );
}
