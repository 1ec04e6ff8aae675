//! Calendar dates and times from Unix time, for log output and file names
//! (no time-zone database: UTC, or the local offset from libc).

/// A broken-down time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Civil {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    pub(crate) nanos: u32,
    /// Offset from UTC in seconds.
    pub(crate) offset: i64,
}

impl Civil {
    /// UTC time of `unix_nanos` nanoseconds since the epoch.
    pub(crate) fn utc_from_nanos(unix_nanos: u64) -> Self {
        let secs = (unix_nanos / 1_000_000_000) as i64;
        let nanos = (unix_nanos % 1_000_000_000) as u32;
        Self::from_secs(secs, nanos, 0)
    }

    /// UTC or local time of a [`std::time::SystemTime`].
    pub(crate) fn from_system(time: std::time::SystemTime, local: bool) -> Self {
        let since = time
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX / 2);
        let offset = if local { local_offset(secs) } else { 0 };
        Self::from_secs(secs + offset, since.subsec_nanos(), offset)
    }

    fn from_secs(secs: i64, nanos: u32, offset: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let of_day = secs.rem_euclid(86_400);
        // Howard Hinnant's days-to-civil algorithm.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self {
            year,
            month,
            day,
            hour: (of_day / 3600) as u32,
            minute: (of_day % 3600 / 60) as u32,
            second: (of_day % 60) as u32,
            nanos,
            offset,
        }
    }

    /// RFC 3339 with nanoseconds, e.g. `2023-11-14T22:13:20.500000000Z`.
    pub(crate) fn rfc3339_nanos(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}{}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.nanos,
            self.zone()
        )
    }

    /// `2006-01-02T15-04-05.000`, the backup-file timestamp of lumberjack
    /// (otelcol's file rotation).
    pub(crate) fn backup_stamp(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}-{:02}-{:02}.{:03}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.nanos / 1_000_000
        )
    }

    fn zone(&self) -> String {
        if self.offset == 0 {
            return "Z".into();
        }
        let sign = if self.offset < 0 { '-' } else { '+' };
        let abs = self.offset.abs();
        format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60)
    }
}

/// The local time zone's offset from UTC at `unix_secs`, from libc.
fn local_offset(unix_secs: i64) -> i64 {
    // `time_t` (64 bits on the targets we build for) comes from
    // `localtime_r`'s signature: the alias is not named, since libc
    // deprecates it on musl (its future change on 32-bit targets).
    let t = unix_secs as _;
    // SAFETY: `localtime_r` writes into the `tm` we own and reads `t`; both
    // live across the call. A zeroed `tm` is a valid value of the C struct.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return 0;
        }
        tm.tm_gmtoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_unix_time() {
        let c = Civil::utc_from_nanos(1_700_000_000_500_000_000);
        assert_eq!(c.rfc3339_nanos(), "2023-11-14T22:13:20.500000000Z");
        assert_eq!(c.backup_stamp(), "2023-11-14T22-13-20.500");
        assert_eq!(
            Civil::utc_from_nanos(0).rfc3339_nanos(),
            "1970-01-01T00:00:00.000000000Z"
        );
        // A leap day.
        assert_eq!(
            Civil::utc_from_nanos(951_782_400 * 1_000_000_000).backup_stamp(),
            "2000-02-29T00-00-00.000"
        );
    }
}
