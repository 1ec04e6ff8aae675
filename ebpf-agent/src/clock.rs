//! Probe timestamps are CLOCK_BOOTTIME nanoseconds; spans need Unix time.
//! The offset between the two clocks is measured, and re-measured
//! periodically so NTP steps of the realtime clock are followed.

fn read(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Converts boot-time nanoseconds to Unix nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BootClock {
    /// realtime - boottime, in nanoseconds.
    offset_ns: i128,
}

impl BootClock {
    /// Measures the offset now: the realtime reading bracketed by two
    /// boot-time readings, keeping the tightest of a few tries.
    pub(crate) fn measure() -> Self {
        let mut best: Option<(i128, i128)> = None;
        for _ in 0..5 {
            let before = read(libc::CLOCK_BOOTTIME);
            let real = read(libc::CLOCK_REALTIME);
            let after = read(libc::CLOCK_BOOTTIME);
            let width = after - before;
            let offset = real - (before + after) / 2;
            if best.is_none_or(|(w, _)| width < w) {
                best = Some((width, offset));
            }
        }
        BootClock {
            offset_ns: best.map_or(0, |(_, offset)| offset),
        }
    }

    /// A clock with a known offset (tests).
    #[cfg(test)]
    pub(crate) fn with_offset(offset_ns: i128) -> Self {
        BootClock { offset_ns }
    }

    /// Unix nanoseconds of a boot-time instant.
    pub(crate) fn unix_nanos(&self, boot_ns: u64) -> u64 {
        u64::try_from(i128::from(boot_ns) + self.offset_ns).unwrap_or(0)
    }

    /// The current boot-time reading.
    pub(crate) fn boot_now() -> u64 {
        u64::try_from(read(libc::CLOCK_BOOTTIME)).unwrap_or(0)
    }

    /// Clock ticks since boot (a process's start time in /proc/<pid>/stat,
    /// counted on the boot-time clock) as boot-time nanoseconds, rounded
    /// down.
    pub(crate) fn ticks_to_ns(ticks: u64) -> u64 {
        // SAFETY: sysconf has no preconditions.
        let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
            .ok()
            .filter(|t| *t > 0)
            .unwrap_or(100);
        ticks.saturating_mul(1_000_000_000 / per_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_boot_time_to_the_realtime_clock() {
        let clock = BootClock::measure();
        let boot = BootClock::boot_now();
        let unix = clock.unix_nanos(boot);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos() as i128;
        // The conversion of "now" lands within a millisecond of the
        // realtime clock read right after.
        let delta = now - unix as i128;
        assert!((0..1_000_000).contains(&delta), "delta {delta} ns");
        assert_eq!(BootClock::with_offset(5).unix_nanos(10), 15);
    }
}
