//! EXIF: capture time, GPS position and orientation. Missing or broken EXIF
//! is normal (screenshots, edited files) and never fails an ingest.

use chrono::{NaiveDate, NaiveTime};
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

/// "YYYY:MM:DD HH:MM:SS" as seconds since the Unix epoch, as if UTC. The
/// fields are read by kamadak-exif and the date is checked by chrono, so an
/// impossible date (31 February) is no capture time at all.
fn parse_exif_datetime(text: &str) -> Option<i64> {
    let fields = exif::DateTime::from_ascii(text.as_bytes()).ok()?;
    let date = NaiveDate::from_ymd_opt(fields.year.into(), fields.month.into(), fields.day.into())?;
    let (hour, minute, second) = (i64::from(fields.hour), i64::from(fields.minute), i64::from(fields.second));
    // Second 60 is a leap second, counted as the next minute's first (chrono
    // only represents leap seconds as a fraction of second 59).
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(date.and_time(NaiveTime::MIN).and_utc().timestamp() + hour * 3600 + minute * 60 + second)
}

/// An EXIF OffsetTime ("+08:00") in minutes east of UTC.
fn parse_offset(text: &str) -> Option<i32> {
    // Any valid date will do: only the offset is wanted.
    let mut fields = exif::DateTime::from_ascii(b"1970:01:01 00:00:00").ok()?;
    fields.parse_offset(text.as_bytes()).ok()?;
    fields.offset.map(i32::from)
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
    fn impossible_dates_are_no_capture_time() {
        assert_eq!(parse_exif_datetime("2024:02:31 10:00:00"), None);
        assert_eq!(parse_exif_datetime("2023:02:29 10:00:00"), None);
        assert_eq!(parse_exif_datetime("2024:04:31 10:00:00"), None);
        assert_eq!(parse_exif_datetime("2024:02:29 10:00:00"), Some(1_709_200_800));
        assert_eq!(parse_exif_datetime("2024:02:28 24:00:00"), None);
        assert_eq!(parse_offset("08:00"), None);
    }

    #[test]
    fn no_exif_is_not_an_error() {
        let facts = read(b"not an image", 480);
        assert_eq!(facts.orientation, 1);
        assert_eq!(facts.taken_at_ms, None);
    }
}
