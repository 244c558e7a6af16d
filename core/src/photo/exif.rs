//! EXIF: capture time, GPS position and orientation. Missing or broken EXIF
//! is normal (screenshots, edited files) and never fails an ingest.

use exif::{In, Reader, Tag, Value};

use crate::geo::{GeoPoint, validate_point};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExifFacts {
    /// 1–8; 1 when absent or out of range.
    pub orientation: u8,
    pub taken_at_ms: Option<i64>,
    pub location: Option<GeoPoint>,
}

/// Read EXIF from a JPEG, PNG or WebP held in memory. `default_utc_offset_minutes`
/// interprets a capture time that carries no offset of its own (most phones
/// write local time without one).
pub fn read(bytes: &[u8], default_utc_offset_minutes: i32) -> ExifFacts {
    let mut facts = ExifFacts { orientation: 1, ..ExifFacts::default() };
    let Ok(exif) = Reader::new().read_from_container(&mut std::io::Cursor::new(bytes)) else {
        return facts;
    };
    if let Some(value) = exif.get_field(Tag::Orientation, In::PRIMARY).and_then(|f| f.value.get_uint(0))
        && (1..=8).contains(&value)
    {
        facts.orientation = value as u8;
    }
    let ascii = |tag: Tag| -> Option<String> {
        match &exif.get_field(tag, In::PRIMARY)?.value {
            Value::Ascii(parts) => parts.first().map(|p| String::from_utf8_lossy(p).trim().to_owned()),
            _ => None,
        }
    };
    let original = ascii(Tag::DateTimeOriginal).or_else(|| ascii(Tag::DateTime));
    if let Some(local) = original.as_deref().and_then(parse_exif_datetime) {
        let offset_minutes = ascii(Tag::OffsetTimeOriginal)
            .as_deref()
            .and_then(parse_offset)
            .unwrap_or(default_utc_offset_minutes);
        facts.taken_at_ms = Some((local - offset_minutes as i64 * 60) * 1000);
    }
    let coordinate = |value_tag: Tag, ref_tag: Tag, negative: &str| -> Option<f64> {
        let Value::Rational(parts) = &exif.get_field(value_tag, In::PRIMARY)?.value else { return None };
        if parts.len() < 3 || parts.iter().any(|r| r.denom == 0) {
            return None;
        }
        let degrees = parts[0].to_f64() + parts[1].to_f64() / 60.0 + parts[2].to_f64() / 3600.0;
        let sign = if ascii(ref_tag).as_deref() == Some(negative) { -1.0 } else { 1.0 };
        Some(sign * degrees)
    };
    let lat = coordinate(Tag::GPSLatitude, Tag::GPSLatitudeRef, "S");
    let lon = coordinate(Tag::GPSLongitude, Tag::GPSLongitudeRef, "W");
    if let (Some(lat), Some(lon)) = (lat, lon) {
        facts.location = validate_point(GeoPoint { lat, lon, accuracy_m: None }).ok();
    }
    facts
}

/// "YYYY:MM:DD HH:MM:SS" as seconds since the Unix epoch, as if UTC.
fn parse_exif_datetime(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> { text.get(range)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// "+08:00" → 480.
fn parse_offset(text: &str) -> Option<i32> {
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hours: i32 = text.get(1..3)?.parse().ok()?;
    let minutes: i32 = text.get(4..6)?.parse().ok()?;
    Some(sign * (hours * 60 + minutes))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exif_times() {
        assert_eq!(parse_exif_datetime("1970:01:01 00:00:00"), Some(0));
        assert_eq!(parse_exif_datetime("2026:11:22 08:30:00"), Some(1_795_336_200));
        assert_eq!(parse_exif_datetime("0000:00:00 00:00:00"), None);
        assert_eq!(parse_exif_datetime("garbage"), None);
        assert_eq!(parse_offset("+08:00"), Some(480));
        assert_eq!(parse_offset("-05:30"), Some(-330));
    }

    #[test]
    fn no_exif_is_not_an_error() {
        let facts = read(b"not an image", 480);
        assert_eq!(facts.orientation, 1);
        assert_eq!(facts.taken_at_ms, None);
    }
}
