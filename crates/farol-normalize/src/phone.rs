//! Phone numbers, normalized to E.164 (`+5511987654321`).
//!
//! # Rules
//!
//! Validation follows Google's libphonenumber metadata through the
//! [`rlibphonenumber`] crate (a Rust port that agrees with the reference
//! implementation); there is no hand-written regex here. Input is parsed with a
//! default region (Brazil unless [`Phone::parse_with_region`] is used), so every
//! shape Brazilians write works:
//!
//! | input                  | result           |
//! |------------------------|------------------|
//! | `(11) 98765-4321`      | `+5511987654321` |
//! | `011 98765 4321`       | `+5511987654321` |
//! | `0xx11 98765-4321`     | `+5511987654321` |
//! | `0 21 11 98765-4321`   | `+5511987654321` (carrier selection code) |
//! | `015 11 98765-4321`    | `+5511987654321` (carrier selection code) |
//! | `55 11 98765-4321`     | `+5511987654321` |
//! | `5511987654321`        | `+5511987654321` |
//! | `+55(11)98765.4321`    | `+5511987654321` |
//! | `(11) 3456-7890`       | `+551134567890` (landline, unchanged) |
//! | `(11) 8765-4321`       | `+5511987654321` (legacy mobile, ninth digit added) |
//! | `+351 912 345 678`     | `+351912345678` (foreign numbers need the `+`) |
//!
//! A number is accepted only if libphonenumber says it is *valid* (not merely
//! "possible"): the area code (DDD) exists and the subscriber number belongs to
//! an allocated range. On top of libphonenumber, three fallbacks are tried, in
//! this order, and only when the number is invalid as libphonenumber first
//! read it:
//!
//! 1. **Country code 55 without `+`.** A digit string that starts with `55`
//!    (for example `55 11 98765-4321` typed without the plus) is re-read as
//!    `+55…`. libphonenumber already does this when the digits are too long to
//!    be a national number, but for shorter strings it keeps the national
//!    reading (DDD 55, Rio Grande do Sul). We keep that national reading when it
//!    is valid, and switch to the country-code reading when only that one is
//!    valid.
//! 2. **Legacy 8-digit mobiles (ninth digit).** Brazilian mobiles gained a
//!    leading 9 between 2012 and 2016, and spreadsheets still hold the old
//!    8-digit form. When a `+55` number is invalid as given and its national
//!    number is a DDD plus 8 digits starting with 6, 7, 8 or 9, a 9 is inserted
//!    after the DDD; if libphonenumber accepts the result it is used and
//!    [`PhoneOutcome::ninth_digit_added`] is set. Landlines (8 digits starting
//!    with 2–5) are valid as given and never touched. Some 8-digit numbers
//!    starting with 7, 8 or 9 are themselves valid in some DDDs (old trunked
//!    radio and fixed-line ranges, for example `(19) 7765-4321`): those are
//!    valid as given and therefore kept unchanged; the 9 is only ever added to a
//!    number that is invalid without it.
//! 3. **`00` international prefix.** Brazil's international prefix is `00`
//!    followed by a carrier code (`0021 1 650…`), which libphonenumber handles.
//!    Numbers written with a bare European-style `00` (`0055 11 98765-4321`)
//!    are re-read as `+…` when that is the only valid reading.
//!
//! Extensions (`ramal 12`, `ext. 12`) are not part of E.164; they are dropped
//! from the [`Phone`] and reported in [`PhoneOutcome::extension`].
//!
//! # Performance and threads
//!
//! A single parse is cheap (about 1–1.5 µs with optimizations on, measured on
//! a mix of valid, legacy and invalid Brazilian numbers; 500k rows take well
//! under a second on one core), so there is deliberately no memoizing cache: hashing and
//! copying the key would cost about as much as parsing again. The first parse
//! in a process loads libphonenumber's metadata (a few milliseconds); call
//! [`warm_up`] at start-up to pay that cost early. All state is in
//! `Send + Sync` statics, so [`Phone::parse`] may be called from many threads.

use std::fmt;
use std::str::FromStr;

use rlibphonenumber::{
    PHONE_NUMBER_UTIL, ParseError, PhoneNumber, PhoneNumberFormat, PhoneNumberType,
    ValidationError, enums::Region, get_national_significant_number_owned,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Inputs longer than this (in bytes, after trimming) are rejected as
/// [`PhoneError::TooLong`] without being parsed.
pub const MAX_INPUT_LEN: usize = 250;

/// Brazil's country calling code.
const BR_COUNTRY_CODE: i32 = 55;

/// The Brazilian area codes (DDD) in use, per Anatel's numbering plan. Only
/// used to explain *why* a number was rejected, never to accept one.
const BR_AREA_CODES: [u8; 67] = [
    11, 12, 13, 14, 15, 16, 17, 18, 19, // São Paulo
    21, 22, 24, 27, 28, // Rio de Janeiro, Espírito Santo
    31, 32, 33, 34, 35, 37, 38, // Minas Gerais
    41, 42, 43, 44, 45, 46, 47, 48, 49, // Paraná, Santa Catarina
    51, 53, 54, 55, // Rio Grande do Sul
    61, 62, 63, 64, 65, 66, 67, 68, 69, // Centre-West, Tocantins, Acre, Rondônia
    71, 73, 74, 75, 77, 79, // Bahia, Sergipe
    81, 82, 83, 84, 85, 86, 87, 88, 89, // North-East
    91, 92, 93, 94, 95, 96, 97, 98, 99, // North, Maranhão
];

/// Loads libphonenumber's metadata now instead of on the first parse.
///
/// Optional: parsing works without it. Useful at server start-up so that the
/// first request or import row does not pay the few milliseconds of loading.
pub fn warm_up() {
    // Parsing one number forces the lazily initialized global utility and the
    // Brazilian regular expressions.
    let _ = Phone::parse("+5511987654321");
}

/// A phone number in E.164 form: `+`, the country code, the national number;
/// digits only, at most 15 of them.
///
/// Only constructed by [`Phone::parse`] / [`Phone::parse_with_region`], so it is
/// always a number libphonenumber considers valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Phone {
    /// The E.164 string, e.g. `+5511987654321`.
    e164: String,
    /// Number of digits of the country code (1 to 3).
    country_code_len: u8,
}

/// What kind of line a [`Phone`] is, according to libphonenumber's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhoneKind {
    /// A mobile number (in Brazil: DDD + 9 digits starting with 9).
    Mobile,
    /// A landline.
    FixedLine,
    /// Either; the numbering plan does not distinguish them (e.g. USA, Canada).
    FixedLineOrMobile,
    /// A toll-free number (in Brazil: `0800 …`).
    TollFree,
    /// Anything else: shared cost (`4004-…`, `0300 …`), premium rate, VoIP,
    /// personal numbers, pagers, …
    Other,
}

impl PhoneKind {
    /// The stable snake_case name of the kind (`"mobile"`, `"fixed_line"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            PhoneKind::Mobile => "mobile",
            PhoneKind::FixedLine => "fixed_line",
            PhoneKind::FixedLineOrMobile => "fixed_line_or_mobile",
            PhoneKind::TollFree => "toll_free",
            PhoneKind::Other => "other",
        }
    }

    fn from_lib(kind: PhoneNumberType) -> Self {
        match kind {
            PhoneNumberType::Mobile => PhoneKind::Mobile,
            PhoneNumberType::FixedLine => PhoneKind::FixedLine,
            PhoneNumberType::FixedLineOrMobile => PhoneKind::FixedLineOrMobile,
            PhoneNumberType::TollFree => PhoneKind::TollFree,
            _ => PhoneKind::Other,
        }
    }
}

impl fmt::Display for PhoneKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of successfully parsing a phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneOutcome {
    /// The normalized number.
    pub phone: Phone,
    /// The kind of line, per libphonenumber.
    pub kind: PhoneKind,
    /// `true` if the input was a legacy 8-digit Brazilian mobile and a 9 was
    /// inserted after the DDD to make it valid.
    pub ninth_digit_added: bool,
    /// The extension written after the number (`ramal 12`, `ext. 12`), if any.
    /// E.164 has no room for it, so it is not part of [`PhoneOutcome::phone`].
    pub extension: Option<String>,
}

/// Why a phone number was rejected.
///
/// [`PhoneError::code`] gives a stable machine-readable reason; the `Display`
/// message is English and quotes the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PhoneError {
    /// The input is empty or only whitespace.
    #[error("phone number is empty")]
    Empty,
    /// The input has no digits at all (e.g. `abc`).
    #[error("{input:?} is not a phone number: it contains no digits")]
    NoDigits {
        /// The rejected input.
        input: String,
    },
    /// The input has digits but cannot be read as a phone number.
    #[error("{input:?} is not a phone number")]
    NotANumber {
        /// The rejected input.
        input: String,
    },
    /// Fewer digits than any number of its country (e.g. `123`).
    #[error("{input:?} is too short to be a phone number")]
    TooShort {
        /// The rejected input.
        input: String,
    },
    /// More digits than any number of its country.
    #[error("{input:?} is too long to be a phone number")]
    TooLong {
        /// The rejected input.
        input: String,
    },
    /// A digit count between the shortest and longest numbers of its country
    /// that no number of that country has.
    #[error("{input:?} has a number of digits that no phone number of its country has")]
    InvalidLength {
        /// The rejected input.
        input: String,
    },
    /// The number starts with `+` (or an international prefix) followed by a
    /// country calling code that does not exist.
    #[error("{input:?} has an unknown country calling code")]
    InvalidCountryCode {
        /// The rejected input.
        input: String,
    },
    /// A Brazilian number whose first two digits are not an area code (DDD)
    /// in use (e.g. `(20) 98765-4321`).
    #[error("{input:?} has an invalid Brazilian area code (DDD) {area_code}")]
    InvalidAreaCode {
        /// The rejected input.
        input: String,
        /// The two digits read as the area code.
        area_code: String,
    },
    /// The length is plausible but the number is not in any range allocated in
    /// its country (e.g. a Brazilian mobile not starting with 9).
    #[error("{input:?} is not a valid phone number for its country")]
    InvalidNumber {
        /// The rejected input.
        input: String,
    },
    /// The default region given to [`Phone::parse_with_region`] is not a
    /// supported ISO 3166-1 alpha-2 code.
    #[error("{region:?} is not a supported region code")]
    InvalidRegion {
        /// The rejected region code.
        region: String,
    },
}

impl PhoneError {
    /// A stable snake_case identifier of the reason, for APIs and import reports.
    pub fn code(&self) -> &'static str {
        match self {
            PhoneError::Empty => "empty",
            PhoneError::NoDigits { .. } => "no_digits",
            PhoneError::NotANumber { .. } => "not_a_number",
            PhoneError::TooShort { .. } => "too_short",
            PhoneError::TooLong { .. } => "too_long",
            PhoneError::InvalidLength { .. } => "invalid_length",
            PhoneError::InvalidCountryCode { .. } => "invalid_country_code",
            PhoneError::InvalidAreaCode { .. } => "invalid_area_code",
            PhoneError::InvalidNumber { .. } => "invalid_number",
            PhoneError::InvalidRegion { .. } => "invalid_region",
        }
    }
}

impl Phone {
    /// Parses and normalizes a phone number, reading numbers without a country
    /// code as Brazilian.
    ///
    /// See the [module documentation](self) for the accepted shapes and the
    /// fallbacks applied to invalid numbers.
    pub fn parse(input: &str) -> Result<PhoneOutcome, PhoneError> {
        parse_in(input, Region::BR)
    }

    /// Like [`Phone::parse`], but numbers without a country code are read as
    /// belonging to `region` (an ISO 3166-1 alpha-2 code such as `"PT"`,
    /// case-insensitive).
    pub fn parse_with_region(input: &str, region: &str) -> Result<PhoneOutcome, PhoneError> {
        let invalid_region = || PhoneError::InvalidRegion {
            region: region.to_owned(),
        };
        let region = Region::from_code(region).map_err(|_| invalid_region())?;
        if PHONE_NUMBER_UTIL
            .get_country_code_for_region(region)
            .is_none()
        {
            return Err(invalid_region());
        }
        parse_in(input, region)
    }

    /// The E.164 form, e.g. `+5511987654321`.
    pub fn as_str(&self) -> &str {
        &self.e164
    }

    /// The country calling code, e.g. `55`.
    pub fn country_code(&self) -> u32 {
        let digits = &self.e164[1..=usize::from(self.country_code_len)];
        digits
            .bytes()
            .fold(0, |acc, b| acc * 10 + u32::from(b - b'0'))
    }

    /// The national significant number: the digits after the country code,
    /// e.g. `11987654321` (for Brazil: DDD followed by the subscriber number).
    pub fn national_number(&self) -> &str {
        &self.e164[1 + usize::from(self.country_code_len)..]
    }

    /// Consumes the phone, returning the E.164 string.
    pub fn into_string(self) -> String {
        self.e164
    }

    fn from_lib(number: &PhoneNumber) -> Self {
        let e164 = number.format_as(PhoneNumberFormat::E164).into_owned();
        let country_code_len = match number.country_code {
            0..=9 => 1,
            10..=99 => 2,
            _ => 3,
        };
        Phone {
            e164,
            country_code_len,
        }
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.e164)
    }
}

impl AsRef<str> for Phone {
    fn as_ref(&self) -> &str {
        &self.e164
    }
}

impl From<Phone> for String {
    fn from(phone: Phone) -> Self {
        phone.e164
    }
}

/// Parses with [`Phone::parse`] (default region Brazil), keeping only the number.
impl FromStr for Phone {
    type Err = PhoneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phone::parse(s).map(|outcome| outcome.phone)
    }
}

/// Serializes as the plain E.164 string.
impl Serialize for Phone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.e164)
    }
}

/// Deserializes a string through [`Phone::parse`], so any accepted shape
/// (not only E.164) is normalized on the way in.
impl<'de> Deserialize<'de> for Phone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Is `c` a plus sign (ASCII or full-width), as libphonenumber accepts?
fn is_plus(c: char) -> bool {
    c == '+' || c == '\u{FF0B}'
}

fn parse_in(input: &str, region: Region) -> Result<PhoneOutcome, PhoneError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(PhoneError::Empty);
    }
    let owned_input = || input.to_owned();
    if trimmed.len() > MAX_INPUT_LEN {
        return Err(PhoneError::TooLong {
            input: owned_input(),
        });
    }
    if !trimmed.chars().any(char::is_numeric) {
        return Err(PhoneError::NoDigits {
            input: owned_input(),
        });
    }

    // libphonenumber knows `ext`, `x`, `#`, … but not the Portuguese `ramal`.
    let with_ext_keyword;
    let trimmed = match find_ascii_case_insensitive(trimmed, "ramal") {
        Some(at) => {
            // Also drop the `:` or `.` of `Ramal: 12` / `ramal. 12`.
            let rest = trimmed[at + "ramal".len()..].trim_start_matches([' ', ':', '.']);
            with_ext_keyword = format!("{} ext {rest}", &trimmed[..at]);
            with_ext_keyword.as_str()
        }
        None => trimmed,
    };

    let first = PHONE_NUMBER_UTIL.parse(trimmed, Some(region));
    if let Ok(number) = &first
        && number.is_valid()
    {
        return Ok(outcome(number, false));
    }

    // Fallbacks for numbers written without a `+`. The digit string would also
    // hold the digits of an extension, so it is only used without one.
    let has_plus = trimmed.starts_with(is_plus);
    let has_extension = first.as_ref().is_ok_and(|n| n.extension.is_some());
    let digits = if has_plus || has_extension {
        String::new()
    } else {
        PHONE_NUMBER_UTIL.normalize_digits_only(trimmed)
    };

    // 1. `55…` without a plus, read as country code 55.
    let br_country_code_reading = if region == Region::BR && digits.starts_with("55") {
        reparse_international(&digits, 0)
    } else {
        None
    };
    if let Some(number) = &br_country_code_reading
        && number.is_valid()
    {
        return Ok(outcome(number, false));
    }

    // 2. Legacy 8-digit mobile: add the ninth digit.
    for number in [first.as_ref().ok(), br_country_code_reading.as_ref()]
        .into_iter()
        .flatten()
    {
        if let Some(with_nine) = add_ninth_digit(number) {
            return Ok(outcome(&with_nine, true));
        }
    }

    // 3. Bare `00` international prefix.
    if digits.starts_with("00")
        && let Some(number) = reparse_international(&digits, 2)
    {
        if number.is_valid() {
            return Ok(outcome(&number, false));
        }
        if let Some(with_nine) = add_ninth_digit(&number) {
            return Ok(outcome(&with_nine, true));
        }
    }

    Err(match first {
        Ok(number) => classify_invalid(&number, owned_input()),
        Err(err) => map_parse_error(err, owned_input()),
    })
}

/// Byte offset of the first ASCII-case-insensitive occurrence of `needle`
/// (which must be ASCII) in `haystack`.
fn find_ascii_case_insensitive(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Re-parses `digits[skip..]` as an international number (`+…`).
fn reparse_international(digits: &str, skip: usize) -> Option<PhoneNumber> {
    let rest = digits.get(skip..)?;
    if rest.is_empty() {
        return None;
    }
    let mut international = String::with_capacity(rest.len() + 1);
    international.push('+');
    international.push_str(rest);
    PHONE_NUMBER_UTIL.parse(&international, None).ok()
}

/// If `number` is a Brazilian DDD + 8 digits starting with 6–9, returns it with
/// a 9 inserted after the DDD, provided libphonenumber finds that valid.
fn add_ninth_digit(number: &PhoneNumber) -> Option<PhoneNumber> {
    if number.country_code != BR_COUNTRY_CODE {
        return None;
    }
    // DDD (2 digits, first is 1–9) + 8 digits: 1_000_000_000..=9_999_999_999.
    let national = number.national_number;
    if !(1_000_000_000..=9_999_999_999).contains(&national) {
        return None;
    }
    let ddd = national / 100_000_000;
    let subscriber = national % 100_000_000;
    if subscriber / 10_000_000 < 6 {
        return None;
    }
    let candidate = PhoneNumber {
        country_code: BR_COUNTRY_CODE,
        national_number: ddd * 1_000_000_000 + 900_000_000 + subscriber,
        extension: number.extension.clone(),
        ..PhoneNumber::default()
    };
    candidate.is_valid().then_some(candidate)
}

fn outcome(number: &PhoneNumber, ninth_digit_added: bool) -> PhoneOutcome {
    PhoneOutcome {
        phone: Phone::from_lib(number),
        kind: PhoneKind::from_lib(number.get_type()),
        ninth_digit_added,
        extension: number.extension.clone().filter(|ext| !ext.is_empty()),
    }
}

/// Explains why a number that parsed is not valid.
fn classify_invalid(number: &PhoneNumber, input: String) -> PhoneError {
    match PHONE_NUMBER_UTIL.is_possible_number_with_reason(number) {
        Err(ValidationError::TooShort) => PhoneError::TooShort { input },
        Err(ValidationError::TooLong) => PhoneError::TooLong { input },
        Err(ValidationError::InvalidLength) => PhoneError::InvalidLength { input },
        Err(ValidationError::InvalidCountryCode) => PhoneError::InvalidCountryCode { input },
        Ok(_) => match invalid_br_area_code(number) {
            Some(area_code) => PhoneError::InvalidAreaCode { input, area_code },
            None => PhoneError::InvalidNumber { input },
        },
    }
}

/// For a Brazilian number with the length of DDD + subscriber (10 or 11
/// digits), returns the DDD if it is not in use. Non-geographic service numbers
/// (`0300`, `0500`, `0800`, `0900`, `0303`) are never reported as bad DDDs.
fn invalid_br_area_code(number: &PhoneNumber) -> Option<String> {
    if number.country_code != BR_COUNTRY_CODE {
        return None;
    }
    let national = get_national_significant_number_owned(number);
    if !(10..=11).contains(&national.len()) || national.starts_with('0') {
        return None;
    }
    let is_service = ["300", "303", "500", "800", "900"]
        .iter()
        .any(|prefix| national.starts_with(prefix));
    let area_code = national.get(..2)?;
    let ddd: u8 = area_code.parse().ok()?;
    (!is_service && !BR_AREA_CODES.contains(&ddd)).then(|| area_code.to_owned())
}

fn map_parse_error(err: ParseError, input: String) -> PhoneError {
    match err {
        ParseError::InvalidCountryCode => PhoneError::InvalidCountryCode { input },
        ParseError::NotANumber(_) => PhoneError::NotANumber { input },
        ParseError::TooShortAfterIdd | ParseError::TooShortNsn => PhoneError::TooShort { input },
        ParseError::TooLongNsn => PhoneError::TooLong { input },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e164(input: &str) -> String {
        match Phone::parse(input) {
            Ok(outcome) => outcome.phone.into_string(),
            Err(err) => panic!("{input:?} rejected: {err}"),
        }
    }

    fn reason(input: &str) -> &'static str {
        match Phone::parse(input) {
            Ok(outcome) => panic!("{input:?} accepted as {}", outcome.phone),
            Err(err) => err.code(),
        }
    }

    #[test]
    fn brazilian_mobile_shapes() {
        for input in [
            "(11) 98765-4321",
            "011 98765 4321",
            "(011) 98765-4321",
            "11987654321",
            "11 98765 4321",
            "5511987654321",
            "+55(11)98765.4321",
            "55 11 98765-4321",
            "0xx11 98765-4321",
            "0xx(11)98765-4321",
            "+55 11 98765 4321",
            "+55 (11) 9 8765-4321",
            "+5511987654321",
            "  +55 11 98765-4321\t",
            "tel:+55-11-98765-4321",
            "+55 0 11 98765 4321",
            "0055 11 98765 4321",
            "00 55 11 98765 4321",
            "Celular: (11) 98765-4321",
        ] {
            assert_eq!(e164(input), "+5511987654321", "input {input:?}");
            let outcome = Phone::parse(input).unwrap();
            assert_eq!(outcome.kind, PhoneKind::Mobile, "input {input:?}");
            assert!(!outcome.ninth_digit_added, "input {input:?}");
        }
    }

    #[test]
    fn carrier_selection_codes() {
        for input in [
            "0 XX 11 98765-4321",
            "0xx 21 11 98765 4321",
            "0 21 11 98765-4321",
            "0 41 11 98765 4321",
            "015 11 98765-4321",
            "0 15 11 98765 4321",
            "01511987654321",
            "0 31 (21) 3456-7890",
        ] {
            let expected = if input.ends_with("7890") {
                "+552134567890"
            } else {
                "+5511987654321"
            };
            assert_eq!(e164(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn landlines_stay_unchanged() {
        for (input, expected) in [
            ("(11) 3456-7890", "+551134567890"),
            ("1134567890", "+551134567890"),
            ("551134567890", "+551134567890"),
            ("(21) 2345-6789", "+552123456789"),
            ("(51) 3333-4444", "+555133334444"),
            ("(11) 5765-4321", "+551157654321"),
        ] {
            let outcome = Phone::parse(input).unwrap();
            assert_eq!(outcome.phone.as_str(), expected, "input {input:?}");
            assert_eq!(outcome.kind, PhoneKind::FixedLine, "input {input:?}");
            assert!(!outcome.ninth_digit_added, "input {input:?}");
        }
    }

    #[test]
    fn legacy_eight_digit_mobiles_get_the_ninth_digit() {
        for (input, expected) in [
            ("(11) 8765-4321", "+5511987654321"),
            ("11 8765-4321", "+5511987654321"),
            ("1187654321", "+5511987654321"),
            ("+55 11 8765-4321", "+5511987654321"),
            ("55 11 8765 4321", "+5511987654321"),
            ("551187654321", "+5511987654321"),
            ("(21) 9876-5432", "+5521998765432"),
            ("(61) 9876-5432", "+5561998765432"),
            ("(19) 8765-4321", "+5519987654321"),
            ("(55) 8765-4321", "+5555987654321"),
        ] {
            let outcome = Phone::parse(input).unwrap();
            assert_eq!(outcome.phone.as_str(), expected, "input {input:?}");
            assert!(outcome.ninth_digit_added, "input {input:?}");
            assert_eq!(outcome.kind, PhoneKind::Mobile, "input {input:?}");
        }
    }

    #[test]
    fn eight_digit_numbers_valid_as_given_are_kept() {
        // libphonenumber lists some 8-digit 7xxx numbers as valid in DDD 19
        // (legacy trunked radio): valid as given means no ninth digit.
        let outcome = Phone::parse("(19) 7765-4321").unwrap();
        assert_eq!(outcome.phone.as_str(), "+551977654321");
        assert!(!outcome.ninth_digit_added);
    }

    #[test]
    fn the_55_prefix_trap() {
        // 13 digits starting with 55: country code 55.
        assert_eq!(e164("5511987654321"), "+5511987654321");
        assert_eq!(e164("5521987654321"), "+5521987654321");
        // DDD 55 (Rio Grande do Sul) mobile written nationally: stays national.
        assert_eq!(e164("(55) 98765-4321"), "+5555987654321");
        assert_eq!(e164("55987654321"), "+5555987654321");
        // Country code 55 + DDD 55.
        assert_eq!(e164("5555987654321"), "+5555987654321");
        // Country code 55 + a nationwide number: the national reading
        // ("(55) 0800…") is invalid, so the country-code reading wins.
        assert_eq!(e164("55 800 123 4567"), "+558001234567");
        assert_eq!(e164("558001234567"), "+558001234567");
        // National reading valid (DDD 55 landline) wins over the country-code
        // reading of the same digits.
        assert_eq!(e164("5532221234"), "+555532221234");
    }

    #[test]
    fn the_55_prefix_trap_needs_explicit_handling() {
        // libphonenumber alone keeps the national reading (DDD 55 +
        // 800123456), which is invalid...
        let national = PHONE_NUMBER_UTIL
            .parse("55800123456", Some(Region::BR))
            .unwrap();
        assert_eq!(national.country_code, 55);
        assert_eq!(national.national_number, 55_800_123_456);
        assert!(!national.is_valid());
        // ...while +55 0800 123 456 is a valid toll-free number.
        for input in ["55800123456", "55 0800 123 456", "55 800 123 456"] {
            let outcome = Phone::parse(input).unwrap();
            assert_eq!(outcome.phone.as_str(), "+55800123456", "input {input:?}");
            assert_eq!(outcome.kind, PhoneKind::TollFree, "input {input:?}");
        }
        // Same with a 0300 number written after the country code.
        assert_eq!(e164("55030005091"), "+5530005091");
    }

    #[test]
    fn nationwide_number_with_country_code() {
        // `5540040000` is DDD 55 + landline 4004-0000 (valid), so the national
        // reading is kept; with a plus it is the nationwide 4004-0000.
        assert_eq!(e164("5540040000"), "+555540040000");
        assert_eq!(e164("+55 4004-0000"), "+5540040000");
        assert_eq!(
            Phone::parse("+55 4004-0000").unwrap().kind,
            PhoneKind::Other
        );
    }

    #[test]
    fn service_numbers() {
        let outcome = Phone::parse("0800 123 4567").unwrap();
        assert_eq!(outcome.phone.as_str(), "+558001234567");
        assert_eq!(outcome.kind, PhoneKind::TollFree);
        assert_eq!(e164("4004-0000"), "+5540040000");
    }

    #[test]
    fn foreign_numbers_with_plus() {
        for (input, expected, cc, national) in [
            ("+1 650 253 0000", "+16502530000", 1, "6502530000"),
            ("+351 912 345 678", "+351912345678", 351, "912345678"),
            ("+44 20 7946 0958", "+442079460958", 44, "2079460958"),
            ("+39 06 6982 1234", "+390669821234", 39, "0669821234"),
            ("0021 1 650 253 0000", "+16502530000", 1, "6502530000"),
        ] {
            let phone = Phone::parse(input).unwrap().phone;
            assert_eq!(phone.as_str(), expected, "input {input:?}");
            assert_eq!(phone.country_code(), cc, "input {input:?}");
            assert_eq!(phone.national_number(), national, "input {input:?}");
        }
        assert_eq!(
            Phone::parse("+1 650 253 0000").unwrap().kind,
            PhoneKind::FixedLineOrMobile
        );
        assert_eq!(
            Phone::parse("+351 912 345 678").unwrap().kind,
            PhoneKind::Mobile
        );
    }

    #[test]
    fn other_default_region() {
        let outcome = Phone::parse_with_region("912 345 678", "PT").unwrap();
        assert_eq!(outcome.phone.as_str(), "+351912345678");
        let outcome = Phone::parse_with_region("(650) 253-0000", "us").unwrap();
        assert_eq!(outcome.phone.as_str(), "+16502530000");
        // Brazilian numbers with + still get the ninth digit.
        let outcome = Phone::parse_with_region("+55 11 8765-4321", "PT").unwrap();
        assert_eq!(outcome.phone.as_str(), "+5511987654321");
        assert!(outcome.ninth_digit_added);
        for region in ["", "B", "BRA", "1A", "ZZ", "XX"] {
            let err = Phone::parse_with_region("(11) 98765-4321", region).unwrap_err();
            assert_eq!(err.code(), "invalid_region", "region {region:?}");
        }
    }

    #[test]
    fn country_code_and_national_number() {
        let phone = Phone::parse("(11) 98765-4321").unwrap().phone;
        assert_eq!(phone.country_code(), 55);
        assert_eq!(phone.national_number(), "11987654321");
        assert_eq!(phone.to_string(), "+5511987654321");
        assert_eq!(phone.as_ref(), "+5511987654321");
    }

    #[test]
    fn extensions_are_reported_not_kept() {
        let outcome = Phone::parse("+55 11 3456-7890 ramal 12").unwrap();
        assert_eq!(outcome.phone.as_str(), "+551134567890");
        assert_eq!(outcome.extension.as_deref(), Some("12"));
        let outcome = Phone::parse("(11) 3456-7890 Ramal: 4").unwrap();
        assert_eq!(outcome.phone.as_str(), "+551134567890");
        assert_eq!(outcome.extension.as_deref(), Some("4"));
        let outcome = Phone::parse("(11) 3456-7890 RAMAL 4").unwrap();
        assert_eq!(outcome.phone.as_str(), "+551134567890");
        assert_eq!(outcome.extension.as_deref(), Some("4"));
        let outcome = Phone::parse("(11) 3456-7890 ext. 345").unwrap();
        assert_eq!(outcome.phone.as_str(), "+551134567890");
        assert_eq!(outcome.extension.as_deref(), Some("345"));
        assert_eq!(Phone::parse("(11) 3456-7890").unwrap().extension, None);
    }

    #[test]
    fn rejections_have_reasons() {
        assert_eq!(reason(""), "empty");
        assert_eq!(reason("   "), "empty");
        assert_eq!(reason("abc"), "no_digits");
        assert_eq!(reason("-"), "no_digits");
        assert_eq!(reason("123"), "too_short");
        assert_eq!(reason("(11) 1234"), "too_short");
        assert_eq!(reason("+"), "no_digits");
        assert_eq!(reason("1198765432100000000"), "too_long");
        assert_eq!(reason(&"9".repeat(300)), "too_long");
        assert_eq!(reason("+999 1234 5678"), "invalid_country_code");
        assert_eq!(reason("(20) 98765-4321"), "invalid_area_code");
        assert_eq!(reason("(10) 98765-4321"), "invalid_area_code");
        assert_eq!(reason("(20) 8765-4321"), "invalid_area_code");
        // A real DDD, but a 9-digit number that is not a mobile.
        assert_eq!(reason("(11) 12345-6789"), "invalid_number");
        // 8 digits starting with 1 are neither landline nor legacy mobile.
        assert_eq!(reason("(11) 1765-4321"), "invalid_number");
        assert_eq!(reason("(00) 98765-4321"), "invalid_number");
    }

    #[test]
    fn error_messages_quote_the_input() {
        let err = Phone::parse("(20) 98765-4321").unwrap_err();
        assert_eq!(
            err,
            PhoneError::InvalidAreaCode {
                input: "(20) 98765-4321".into(),
                area_code: "20".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "\"(20) 98765-4321\" has an invalid Brazilian area code (DDD) 20"
        );
        assert_eq!(
            Phone::parse("123").unwrap_err().to_string(),
            "\"123\" is too short to be a phone number"
        );
        assert_eq!(
            Phone::parse("").unwrap_err().to_string(),
            "phone number is empty"
        );
    }

    #[test]
    fn serde_is_the_plain_string() {
        let phone = Phone::parse("(11) 98765-4321").unwrap().phone;
        let json = serde_json::to_string(&phone).unwrap();
        assert_eq!(json, "\"+5511987654321\"");
        let back: Phone = serde_json::from_str(&json).unwrap();
        assert_eq!(back, phone);
        let masked: Phone = serde_json::from_str("\"(11) 98765-4321\"").unwrap();
        assert_eq!(masked, phone);
        assert!(serde_json::from_str::<Phone>("\"123\"").is_err());
        assert_eq!(
            serde_json::to_string(&PhoneKind::FixedLineOrMobile).unwrap(),
            "\"fixed_line_or_mobile\""
        );
    }

    #[test]
    fn usable_from_many_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Phone>();
        assert_send_sync::<PhoneOutcome>();
        assert_send_sync::<PhoneError>();
        warm_up();
        let handles: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    let input = format!("(11) 9876{i}-4321");
                    Phone::parse(&input).unwrap().phone
                })
            })
            .collect();
        for (i, handle) in handles.into_iter().enumerate() {
            assert_eq!(handle.join().unwrap().as_str(), format!("+55119876{i}4321"));
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_outputs_e164(input in any::<String>()) {
            if let Ok(outcome) = Phone::parse(&input) {
                let s = outcome.phone.as_str();
                prop_assert!(s.starts_with('+'));
                prop_assert!(s.len() >= 2 && s.len() <= 16);
                prop_assert!(s[1..].bytes().all(|b| b.is_ascii_digit()));
            }
        }

        #[test]
        fn phone_like_inputs_never_panic(input in "[-+0-9 ().xX/]{0,24}") {
            if let Ok(outcome) = Phone::parse(&input) {
                let s = outcome.phone.as_str();
                prop_assert!(s.starts_with('+'));
                prop_assert!(s[1..].bytes().all(|b| b.is_ascii_digit()));
                // Idempotent: the output parses to itself.
                let again = Phone::parse(s).unwrap();
                prop_assert_eq!(&again.phone, &outcome.phone);
                prop_assert!(!again.ninth_digit_added);
                prop_assert_eq!(again.kind, outcome.kind);
            }
        }

        #[test]
        fn brazilian_mobiles_round_trip(ddd in proptest::sample::select(&BR_AREA_CODES[..]), rest in 0u32..100_000_000) {
            let input = format!("({ddd}) 9{:04}-{:04}", rest / 10_000, rest % 10_000);
            if let Ok(outcome) = Phone::parse(&input) {
                let expected = format!("+55{ddd}9{rest:08}");
                prop_assert_eq!(outcome.phone.as_str(), expected.as_str());
                prop_assert_eq!(outcome.phone.country_code(), 55);
                let again = Phone::parse(outcome.phone.as_str()).unwrap();
                prop_assert_eq!(again.phone, outcome.phone);
            }
        }
    }
}
