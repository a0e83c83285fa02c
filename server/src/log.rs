//! Logs a person can read: one line each on standard error, `<UTC time> <level> <message>`.
//!
//! The server logs its startup (addresses, data directory, limits), each compaction, each defrag
//! with its writers' pause, alarms, and its shutdown. Requests are not logged.

use std::time::{SystemTime, UNIX_EPOCH};

/// Writes one line at `level` ("INFO", "WARN", "ERROR").
pub fn line(level: &str, message: std::fmt::Arguments<'_>) {
    eprintln!("{} {level:<5} {message}", now_utc());
}

/// Logs at INFO, with `format!` arguments.
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::line("INFO", format_args!($($t)*)) };
}

/// Logs at WARN, with `format!` arguments.
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log::line("WARN", format_args!($($t)*)) };
}

/// Logs at ERROR, with `format!` arguments.
#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::log::line("ERROR", format_args!($($t)*)) };
}

/// The time now as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn now_utc() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The calendar date of a day counted from 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    /// Dates either side of leap days and of the epoch come out as the calendar has them.
    #[test]
    fn days_since_the_epoch_become_calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(19_783), (2024, 3, 1));
    }
}
