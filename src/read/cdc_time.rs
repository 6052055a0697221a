//! `_ab_cdc_updated_at`, computed exactly as the Python connector did, so destinations see the
//! same strings after the image swap: `datetime.utcfromtimestamp(_ts / 1e9).isoformat()`.
//!
//! That is a float division (so it is not the exact instant: ~18% of real timestamps differ from
//! an integer conversion in the last microsecond), CPython's round-half-even of the fraction to
//! microseconds, and `isoformat`'s habit of omitting the fraction when it is zero.
//!
//! Typed columns declare the field a `date-time`, which needs an offset: there it is the exact
//! instant in RFC 3339, `2023-11-14T22:13:20.123456Z` (microseconds, as destinations store
//! them, truncated; `_ab_cdc_lsn` keeps the nanoseconds).

/// Writes the timestamp into `buf` and returns the written part (19 or 26 bytes).
#[cfg(test)]
pub fn updated_at(ts_ns: i64, buf: &mut [u8; 27]) -> &[u8] {
    UpdatedAt::default().format(ts_ns, buf)
}

/// [`updated_at`] that keeps the date and time of day of the last second it wrote: the
/// records of a page are often from the same second, and only the microseconds change.
#[derive(Debug, Default)]
pub struct UpdatedAt {
    /// The second of `date_time`, when it holds one.
    second: Option<i64>,
    date_time: [u8; 19],
}

impl UpdatedAt {
    /// Writes the timestamp into `buf` and returns the written part (19 or 26 bytes).
    pub fn format<'a>(&mut self, ts_ns: i64, buf: &'a mut [u8; 27]) -> &'a [u8] {
        let (secs, micros) = python_timeval(ts_ns as f64 / 1e9);
        if self.second != Some(secs) {
            write_date_time(secs, &mut self.date_time);
            self.second = Some(secs);
        }
        buf[..19].copy_from_slice(&self.date_time);
        if micros == 0 {
            return &buf[..19];
        }
        buf[19] = b'.';
        write_digits(&mut buf[20..26], micros);
        &buf[..26]
    }

    /// The exact UTC instant in RFC 3339 with microseconds (27 bytes).
    pub fn format_rfc3339<'a>(&mut self, ts_ns: i64, buf: &'a mut [u8; 27]) -> &'a [u8] {
        let secs = ts_ns.div_euclid(1_000_000_000);
        let micros = ts_ns.rem_euclid(1_000_000_000) / 1000;
        if self.second != Some(secs) {
            write_date_time(secs, &mut self.date_time);
            self.second = Some(secs);
        }
        buf[..19].copy_from_slice(&self.date_time);
        buf[19] = b'.';
        write_digits(&mut buf[20..26], micros);
        buf[26] = b'Z';
        &buf[..27]
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of a second since the epoch.
fn write_date_time(secs: i64, buf: &mut [u8; 19]) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (sod / 3600, sod / 60 % 60, sod % 60);
    write_digits(&mut buf[0..4], y);
    buf[4] = b'-';
    write_digits(&mut buf[5..7], m);
    buf[7] = b'-';
    write_digits(&mut buf[8..10], d);
    buf[10] = b'T';
    write_digits(&mut buf[11..13], hh);
    buf[13] = b':';
    write_digits(&mut buf[14..16], mm);
    buf[16] = b':';
    write_digits(&mut buf[17..19], ss);
}

/// CPython's `_PyTime_ObjectToTimeval(…, _PyTime_ROUND_HALF_EVEN)` for a float timestamp:
/// split into integer and fractional parts, scale the fraction to microseconds, round half to
/// even, and carry.
fn python_timeval(t: f64) -> (i64, i64) {
    let int_part = t.trunc();
    let mut frac = round_half_even((t - int_part) * 1e6);
    let mut secs = int_part;
    if frac >= 1e6 {
        frac -= 1e6;
        secs += 1.0;
    } else if frac < 0.0 {
        frac += 1e6;
        secs -= 1.0;
    }
    (secs as i64, frac as i64)
}

fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - r).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

/// Days since 1970-01-01 → proleptic Gregorian (year, month, day).
/// The era-based method: shift to a March-based year so leap days fall at the end.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn write_digits(out: &mut [u8], mut v: i64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(ts: i64) -> String {
        let mut buf = [0u8; 27];
        String::from_utf8(updated_at(ts, &mut buf).to_vec()).unwrap()
    }

    #[test]
    fn typed_columns_get_the_exact_instant() {
        let mut f = UpdatedAt::default();
        let mut buf = [0u8; 27];
        let mut at = |ts| String::from_utf8(f.format_rfc3339(ts, &mut buf).to_vec()).unwrap();
        assert_eq!(at(1_700_000_000_000_000_000), "2023-11-14T22:13:20.000000Z");
        // Truncated, never rounded up into the next microsecond (or second).
        assert_eq!(at(1_700_000_000_999_999_999), "2023-11-14T22:13:20.999999Z");
        assert_eq!(at(1_770_335_566_197_682_922), "2026-02-05T23:52:46.197682Z");
        assert_eq!(at(0), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn examples_from_the_python_connector() {
        assert_eq!(fmt(0), "1970-01-01T00:00:00");
        assert_eq!(fmt(1_700_000_000_000_000_123), "2023-11-14T22:13:20");
        assert_eq!(fmt(1_500), "1970-01-01T00:00:00.000002");
        assert_eq!(fmt(2_500), "1970-01-01T00:00:00.000002");
    }

    /// All 4,017 reference vectors (src/read/testdata/README.md says where they come from).
    #[test]
    fn every_reference_vector_matches() {
        let text = include_str!("testdata/cdc-updated-at-vectors.json");
        let vectors: Vec<(i64, String)> = serde_json::from_str(text).unwrap();
        assert_eq!(vectors.len(), 4017);
        let wrong: Vec<_> = vectors
            .iter()
            .filter(|(ts, want)| fmt(*ts) != *want)
            .map(|(ts, want)| format!("{ts}: want {want}, got {}", fmt(*ts)))
            .collect();
        assert!(
            wrong.is_empty(),
            "{} mismatches, e.g. {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
    }

    /// One formatter for all vectors, in their order and sorted by time (so that the kept
    /// second is reused, and also left): the same strings as a fresh one gives.
    #[test]
    fn a_kept_second_gives_the_same_strings() {
        let text = include_str!("testdata/cdc-updated-at-vectors.json");
        let mut vectors: Vec<(i64, String)> = serde_json::from_str(text).unwrap();
        for sorted in [false, true] {
            if sorted {
                vectors.sort();
            }
            let mut kept = UpdatedAt::default();
            for (ts, want) in &vectors {
                let mut buf = [0u8; 27];
                assert_eq!(kept.format(*ts, &mut buf), want.as_bytes(), "{ts}");
                assert_eq!(
                    kept.format(*ts + 1_000, &mut buf),
                    fmt(*ts + 1_000).as_bytes()
                );
            }
        }
    }

    #[test]
    fn calendar_edges() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(fmt(i64::MAX), "2262-04-11T23:47:16.854776");
    }
}
