//! Durations on the command line and in messages: `250ms`, `30s`, `1m30s`, `1h 30m`, `250us`, or
//! a bare number of seconds (`30`, `0.5`, as `flock -w` takes them). What redlease prints parses
//! back to the same value.

use std::time::Duration;

/// Parses a duration (for clap and for tests): `humantime`'s units, or bare seconds.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bare_seconds = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_digit() || c == '.')
        && text.starts_with(|c: char| c.is_ascii_digit());
    let parsed = if bare_seconds {
        humantime::parse_duration(&format!("{text}s"))
    } else {
        humantime::parse_duration(text)
    };
    parsed.map_err(|e| {
        format!(
            "invalid duration {text:?} ({e}): use a number of seconds or units like 250ms, 30s, 1m30s, 1h 30m"
        )
    })
}

/// Formats a duration for people, rounded to what matters at its size: microseconds below a
/// millisecond, milliseconds below a minute, seconds above. `parse` reads it back exactly.
pub(crate) fn human(duration: Duration) -> String {
    humantime::format_duration(rounded(duration)).to_string()
}

/// `duration` at the precision [`human`] prints.
fn rounded(duration: Duration) -> Duration {
    let step = if duration < Duration::from_millis(1) {
        Duration::from_micros(1)
    } else if duration < Duration::from_mins(1) {
        Duration::from_millis(1)
    } else {
        Duration::from_secs(1)
    };
    let step_nanos = step.as_nanos();
    let steps = (duration.as_nanos() + step_nanos / 2) / step_nanos;
    u32::try_from(steps)
        .ok()
        .and_then(|steps| step.checked_mul(steps))
        .unwrap_or_else(|| Duration::from_secs(duration.as_secs()))
}

/// The value at `share` (0.0–1.0) of an ascending list; zero for an empty one.
pub(crate) fn percentile(sorted: &[Duration], share: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a list, rounded"
    )]
    let index = ((sorted.len() - 1) as f64 * share.clamp(0.0, 1.0)).round() as usize;
    sorted[index]
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn units_and_combinations_parse() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("30", Duration::from_secs(30)),
            ("0.5", Duration::from_millis(500)),
            ("1.5s", Duration::from_millis(1500)),
            ("2m", Duration::from_mins(2)),
            ("1h", Duration::from_hours(1)),
            ("1m30s", Duration::from_secs(90)),
            ("1h 30m", Duration::from_mins(90)),
            ("250us", Duration::from_micros(250)),
            (" 0s ", Duration::ZERO),
            ("0", Duration::ZERO),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            "",
            "s",
            "abc",
            "10x",
            "-5s",
            "1e999s",
            "1..2s",
            ".5",
            "99999999999999999999h",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_print_for_humans() {
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(Duration::from_millis(12_340)), "12s 340ms");
        assert_eq!(human(Duration::from_secs(245)), "4m 5s");
        assert_eq!(human(Duration::from_mins(90)), "1h 30m");
        assert_eq!(human(Duration::from_micros(250)), "250us");
        assert_eq!(human(Duration::from_micros(1_499)), "1ms");
        assert_eq!(human(Duration::ZERO), "0s");
    }

    #[test]
    fn percentiles_pick_from_the_sorted_list() {
        let list: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&list, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&list, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    proptest! {
        #[test]
        fn what_is_printed_parses_back_to_the_printed_value(nanos in 0u64..=400_000_000_000_000) {
            let duration = Duration::from_nanos(nanos);
            let printed = human(duration);
            let back = parse(&printed).expect("printed durations parse");
            prop_assert_eq!(back, rounded(duration), "{}", printed);
            prop_assert_eq!(human(back), printed);
        }
    }
}
