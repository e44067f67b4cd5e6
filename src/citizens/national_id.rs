//! PRC resident identity numbers (GB 11643-1999): 6-digit region, 8-digit birth date,
//! 3-digit sequence, and an ISO 7064 MOD 11-2 check character (`0`–`9` or `X`).

use std::fmt;

use crate::error::{Error, invalid};

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: &[u8; 11] = b"10X98765432";

/// A valid national ID number, normalised (upper-case `X`). Never logged: `Debug` masks it.
#[derive(Clone, PartialEq, Eq)]
pub struct NationalId(String);

impl NationalId {
    /// Parses and validates a typed number (surrounding spaces ignored, `x` accepted).
    pub fn parse(input: &str) -> Result<Self, Error> {
        let text = input.trim().to_ascii_uppercase();
        let bytes = text.as_bytes();
        if bytes.len() != 18 {
            return Err(invalid("national_id", "must be 18 characters"));
        }
        let (body, check) = bytes.split_at(17);
        if !body.iter().all(u8::is_ascii_digit) {
            return Err(invalid(
                "national_id",
                "the first 17 characters must be digits",
            ));
        }
        let sum: u32 = body
            .iter()
            .zip(WEIGHTS)
            .map(|(d, w)| u32::from(d - b'0') * w)
            .sum();
        if CHECK.get((sum % 11) as usize) != check.first() {
            return Err(invalid(
                "national_id",
                "the check character does not match; please re-check the number",
            ));
        }
        let year: u32 = text[6..10].parse().unwrap_or(0);
        let month: u8 = text[10..12].parse().unwrap_or(0);
        let day: u8 = text[12..14].parse().unwrap_or(0);
        let valid_date = (1900..=2100).contains(&year)
            && time::Month::try_from(month)
                .ok()
                .and_then(|m| time::Date::from_calendar_date(year as i32, m, day).ok())
                .is_some();
        if !valid_date {
            return Err(invalid(
                "national_id",
                "the birth date inside the number is not a real date",
            ));
        }
        Ok(Self(text))
    }

    /// The birth date inside the number (validated by [`NationalId::parse`]).
    pub fn birth_date(&self) -> Option<time::Date> {
        let year: i32 = self.0.get(6..10)?.parse().ok()?;
        let month: u8 = self.0.get(10..12)?.parse().ok()?;
        let day: u8 = self.0.get(12..14)?.parse().ok()?;
        time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()
    }

    /// The start (00:00 UTC) of the day its holder turns 18; a 29 February birthday comes
    /// of age on 1 March.
    pub fn majority(&self) -> Option<time::OffsetDateTime> {
        let born = self.birth_date()?;
        let year = born.year() + 18;
        let day = time::Date::from_calendar_date(year, born.month(), born.day())
            .or_else(|_| time::Date::from_calendar_date(year, time::Month::March, 1))
            .ok()?;
        Some(day.midnight().assume_utc())
    }

    /// The normalised number, for the blind index only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NationalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NationalId(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_is_the_eighteenth_birthday() {
        let id = NationalId::parse("11010519491231002X").ok();
        assert_eq!(
            id.and_then(|id| id.majority())
                .map(|t| t.date().to_string()),
            Some("1967-12-31".to_owned())
        );
    }

    #[test]
    fn valid_numbers_parse_and_normalise() {
        for ok in [
            "11010519491231002X",
            "11010519491231002x",
            " 440524198001010013 ",
        ] {
            assert!(NationalId::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            NationalId::parse("11010519491231002x")
                .map(|n| n.0)
                .ok()
                .as_deref(),
            Some("11010519491231002X")
        );
    }

    #[test]
    fn wrong_checksum_length_characters_or_date_are_refused() {
        for bad in [
            "110105194912310021",
            "11010519491231002",
            "1101051949123100A2",
            "110105194913310021",
            "",
        ] {
            assert!(NationalId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_masks_the_number() {
        let id = NationalId::parse("11010519491231002X").ok();
        assert!(!format!("{id:?}").contains("1101"));
    }
}

/// Property tests: the parser of an outside input never panics, accepts exactly the
/// numbers whose check character holds, and normalises them.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn check_char(body: &str) -> char {
        let sum: u32 = body
            .bytes()
            .zip(WEIGHTS)
            .map(|(d, w)| u32::from(d - b'0') * w)
            .sum();
        char::from(CHECK[(sum % 11) as usize])
    }

    proptest! {
        #[test]
        fn any_text_is_answered_without_panic(text in "\\PC{0,40}") {
            let _ = NationalId::parse(&text);
        }

        #[test]
        fn a_number_with_a_real_date_parses_exactly_when_its_check_holds(
            region in "[1-8][0-9]{5}",
            year in 1900u32..=2100,
            month in 1u32..=12,
            day in 1u32..=28,
            seq in "[0-9]{3}",
            last in "[0-9Xx]",
        ) {
            let body = format!("{region}{year:04}{month:02}{day:02}{seq}");
            let right = check_char(&body);
            let parsed = NationalId::parse(&format!(" {body}{last} "));
            let holds = last.to_ascii_uppercase() == right.to_string();
            prop_assert_eq!(parsed.is_ok(), holds);
            if let Ok(id) = parsed {
                prop_assert_eq!(id.expose(), format!("{body}{right}"));
            }
        }

        #[test]
        fn nothing_parses_unless_its_check_holds(body in "[0-9]{17}", last in "[0-9X]") {
            if NationalId::parse(&format!("{body}{last}")).is_ok() {
                prop_assert_eq!(last, check_char(&body).to_string());
            }
        }
    }
}
