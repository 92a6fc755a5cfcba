//! Lossy-link hysteresis: a Backup that has seen the Active Router's adverts go
//! missing waits a few intervals longer before it declares the master down.
//!
//! RFC 9568 takes over after three adverts in a row are lost (Master_Down_Interval =
//! 3 x Master_Adver_Interval + Skew_Time), whatever the link did before. On a link that
//! loses a share `p` of the packets, that happens by chance with probability about
//! `p³` per advert although the master is alive: at 5 % loss and 100 ms adverts one
//! run of three every 8,000 adverts, so a needless VIP move (and back, with
//! preemption) in about 7 % of minutes. keepalived has the same exposure.
//!
//! Here a Backup counts the gaps between the adverts it accepts from the Active
//! Router: an advert that arrives more than 1.5 x Master_Adver_Interval after the
//! previous one from the same router means at least one was lost
//! ([`Stats::adverts_missed`](super::Stats::adverts_missed) counts how many). Each gap
//! adds one interval to the wait, up to [`MAX_EXTRA_INTERVALS`]; every
//! [`DECAY_ADVERTS`] adverts in a row without a gap take one away again. At the full
//! extension a chance takeover needs six adverts lost in a row: at 5 % loss once in
//! 64 million adverts instead of 8,000. A link that loses nothing keeps the RFC's
//! timing exactly; the price of the extension is a takeover after a real crash later
//! by at most 3 intervals, only after the link was seen losing adverts.
//!
//! The whole wait never exceeds the bound a forged interval already has
//! (3 x [`MAX_LEARNED_FACTOR`](super::MAX_LEARNED_FACTOR) configured intervals, plus
//! Skew_Time), so the extension does not lengthen what one forged advert can do.
//!
//! Sans-IO and exact: [`LossMeter::on_advert`] is fed the accepted adverts with their
//! arrival time; nothing here reads a clock.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The most intervals the hysteresis adds to Master_Down_Interval.
pub const MAX_EXTRA_INTERVALS: u32 = 3;

/// Adverts in a row without a gap that take one extra interval away again: at 100 ms
/// adverts 10 s, at 1 s 100 s.
pub const DECAY_ADVERTS: u32 = 100;

/// What a Backup has seen of the Active Router's advert stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct LossMeter {
    /// When the last accepted advert arrived, and from which router.
    last: Option<(Instant, IpAddr)>,
    /// Intervals added to Master_Down_Interval now.
    extra: u32,
    /// Adverts in a row without a gap since `extra` last changed (or since the last gap).
    clean: u32,
}

impl LossMeter {
    /// An advert from `src` was accepted at `now`; `interval` is the
    /// Master_Adver_Interval it carries (as learned). Returns how many adverts of
    /// `src` were missed since its previous one (0 if none, or if `src` is not the
    /// router heard last: a new Active Router starts a new stream).
    pub(super) fn on_advert(&mut self, now: Instant, src: IpAddr, interval: Duration) -> u64 {
        let previous = self.last.replace((now, src));
        let Some((then, from)) = previous else {
            return 0;
        };
        if from != src || interval.is_zero() {
            return 0;
        }
        let gap = now.saturating_duration_since(then);
        // Arrivals spaced about `interval` apart: one lost advert makes a gap of about
        // two intervals. Half an interval of jitter either way is not a loss.
        if gap * 2 <= interval * 3 {
            self.clean += 1;
            if self.clean >= DECAY_ADVERTS {
                self.clean = 0;
                self.extra = self.extra.saturating_sub(1);
            }
            return 0;
        }
        let missed = ((gap + interval / 2).as_nanos() / interval.as_nanos()).saturating_sub(1);
        self.clean = 0;
        self.extra = (self.extra + 1).min(MAX_EXTRA_INTERVALS);
        u64::try_from(missed).unwrap_or(u64::MAX).max(1)
    }

    /// The node stopped listening as Backup (it became Master, faulted, stopped): the
    /// next advert starts a new stream. What was learned about the link stays.
    pub(super) fn forget_stream(&mut self) {
        self.last = None;
    }

    /// The intervals added to Master_Down_Interval now (0 to [`MAX_EXTRA_INTERVALS`]).
    pub(super) fn extra_intervals(&self) -> u32 {
        self.extra
    }
}

#[cfg(test)]
mod tests;
