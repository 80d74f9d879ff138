//! nginx's time notation, the one parser of every time a directive takes.

/// A value that is not a time in nginx's notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidTime;

/// Parses nginx's time notation in seconds, as `ngx_parse_time` does for directives in
/// seconds: numbers with units `y` (365 days), `M` (30 days), `w`, `d`, `h`, `m`, `s`, each unit
/// once and in decreasing order (`1h30m`); a last number without a unit counts seconds
/// (`1m30`), a bare number is seconds (`300`).
pub fn parse(word: &str) -> Result<i64, InvalidTime> {
    let mut total: i64 = 0;
    let mut number: Option<i64> = None;
    let mut last_unit = i64::MAX;
    for c in word.chars() {
        if let Some(digit) = c.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(i64::from(digit)))
                    .ok_or(InvalidTime)?,
            );
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 60 * 60,
            'd' => 24 * 60 * 60,
            'w' => 7 * 24 * 60 * 60,
            'M' => 30 * 24 * 60 * 60,
            'y' => 365 * 24 * 60 * 60,
            _ => return Err(InvalidTime),
        };
        // Units in decreasing order, each once, each after a number (as nginx requires).
        if unit >= last_unit {
            return Err(InvalidTime);
        }
        last_unit = unit;
        let n = number.take().ok_or(InvalidTime)?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or(InvalidTime)?;
    }
    match number {
        Some(_) if last_unit <= 1 => Err(InvalidTime),
        Some(seconds) => total.checked_add(seconds).ok_or(InvalidTime),
        None if word.is_empty() => Err(InvalidTime),
        None => Ok(total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_time_notation() {
        for (word, seconds) in [
            ("0", 0),
            ("30", 30),
            ("30s", 30),
            ("15m", 900),
            ("1h", 3600),
            ("1h30m", 5400),
            ("1h30m10", 5410),
            ("1d", 86400),
            ("1w", 604_800),
            ("1w1d", 8 * 86_400),
            ("1m30", 90),
            ("1M", 30 * 86_400),
            ("1y", 365 * 86_400),
        ] {
            assert_eq!(parse(word), Ok(seconds), "{word:?}");
        }
    }

    #[test]
    fn bad_times() {
        for word in [
            "",
            "-1",
            "m",
            "h",
            "15x",
            "1.5h",
            "1m1h",
            "1s1s",
            "1s30",
            "1 m",
            "9999999999999999999",
            "999999999999y",
            "On",
        ] {
            assert_eq!(parse(word), Err(InvalidTime), "{word:?}");
        }
    }
}
