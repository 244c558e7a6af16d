//! Time. Device clocks are often wrong, so every record stores the device's
//! own reading and the reading corrected by the last known offset to server
//! time (set by sync; zero until then).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use gridwork_protocol::CapturedAt as Timestamp;

/// Source of device time in Unix milliseconds. Tests inject a fixed clock.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now_ms(&self) -> i64 {
        (**self).now_ms()
    }
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            // A clock set before 1970 is wrong; 0 is as honest as anything.
            .unwrap_or(0)
    }
}

/// A clock tests set by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(ms: i64) -> Self {
        ManualClock(AtomicI64::new(ms))
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst)
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Device time plus the offset to server time.
pub struct CorrectedClock {
    clock: Box<dyn Clock>,
    offset_ms: AtomicI64,
}

impl CorrectedClock {
    pub fn new(clock: Box<dyn Clock>, offset_ms: i64) -> Self {
        CorrectedClock { clock, offset_ms: AtomicI64::new(offset_ms) }
    }

    pub fn now(&self) -> Timestamp {
        let device_ms = self.clock.now_ms();
        Timestamp { device_ms, corrected_ms: device_ms + self.offset_ms() }
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }

    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrected_time_applies_the_offset() {
        let clock = CorrectedClock::new(Box::new(ManualClock::new(1_000)), 0);
        assert_eq!(clock.now(), Timestamp { device_ms: 1_000, corrected_ms: 1_000 });
        clock.set_offset_ms(-250);
        assert_eq!(clock.now(), Timestamp { device_ms: 1_000, corrected_ms: 750 });
    }
}
