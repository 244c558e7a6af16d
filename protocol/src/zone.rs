//! The zone people read times in on the terminal tools (the device's
//! `gridwork` and `gridwork-server`): China's +08:00 unless told otherwise.
//! Times on the wire and in JSON are always UTC milliseconds.

/// Where grid workers are.
pub const CHINA_UTC_OFFSET_MINUTES: i32 = 8 * 60;

/// The environment variable that sets the zone ("+08:00", "-05:30", "UTC").
pub const ZONE_ENV: &str = "GRIDWORK_TIME_ZONE";

/// An offset as people write it: "+08:00", "-05:30", "+8", "UTC" or "Z";
/// minutes east of UTC, `None` for anything else.
pub fn parse_utc_offset(text: &str) -> Option<i32> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("utc") || text == "Z" {
        return Some(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':').unwrap_or((rest, "0"));
    let all_digits = |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(hours) || !all_digits(minutes) {
        return None;
    }
    let (hours, minutes): (i32, i32) = (hours.parse().ok()?, minutes.parse().ok()?);
    if hours > 14 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 60 + minutes))
}

/// The zone for `--utc` and the [`ZONE_ENV`] setting, in minutes east of
/// UTC; an error names the setting when it is not an offset.
pub fn display_offset_minutes(utc: bool, setting: Option<&str>) -> Result<i32, String> {
    match (utc, setting.map(str::trim)) {
        (true, _) => Ok(0),
        (false, None | Some("")) => Ok(CHINA_UTC_OFFSET_MINUTES),
        (false, Some(text)) => parse_utc_offset(text).ok_or_else(|| format!("{ZONE_ENV} must be an offset like +08:00 or -05:30, or UTC")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_as_people_write_them() {
        assert_eq!(parse_utc_offset("+08:00"), Some(480));
        assert_eq!(parse_utc_offset("-05:30"), Some(-330));
        assert_eq!(parse_utc_offset("+8"), Some(480));
        assert_eq!(parse_utc_offset(" utc "), Some(0));
        assert_eq!(parse_utc_offset("Z"), Some(0));
        for nonsense in ["", "08:00", "+15:00", "+08:60", "+08:0x", "+-8", "+008:00", "CST"] {
            assert_eq!(parse_utc_offset(nonsense), None, "{nonsense:?}");
        }
        assert_eq!(display_offset_minutes(false, None), Ok(480));
        assert_eq!(display_offset_minutes(true, Some("+09:00")), Ok(0), "--utc wins");
        assert_eq!(display_offset_minutes(false, Some("-03:00")), Ok(-180));
        assert!(display_offset_minutes(false, Some("Asia/Shanghai")).unwrap_err().contains(ZONE_ENV));
    }
}
