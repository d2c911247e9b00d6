//! Brazilian tax ids: CPF (people) and CNPJ (companies), including the
//! alphanumeric CNPJ introduced by the Receita Federal in July 2026.
//!
//! # Rules
//!
//! * Mask characters (`.`, `-`, `/` and whitespace) are ignored wherever they
//!   appear; any other character that is not a digit (or, for a CNPJ, an ASCII
//!   letter) is rejected. The value is stored unmasked: digits, plus upper-case
//!   letters for alphanumeric CNPJs. [`Cpf::formatted`] / [`Cnpj::formatted`]
//!   give the masked form.
//! * [`TaxId::parse`] decides by the number of characters left: 11 is a CPF,
//!   14 a CNPJ.
//! * **Lost leading zeros.** Spreadsheets store CPFs/CNPJs as numbers and drop
//!   leading zeros (`012.345.678-90` becomes `1234567890`). A CPF of 9 or 10
//!   digits is left-padded with zeros to 11, and an all-digit CNPJ of 12 or 13
//!   digits to 14, but **only** if the padded value has valid check digits;
//!   otherwise the input is rejected as [`TaxIdError::WrongLength`].
//! * Both check digits are verified (mod 11).
//! * Values made of a single repeated digit (`000.000.000-00`,
//!   `11.111.111/1111-11`, …) pass the check-digit test but are not real
//!   documents: they are rejected as [`TaxIdError::RepeatedDigits`].
//!
//! # Alphanumeric CNPJ
//!
//! From July 2026 the first 12 characters of a CNPJ (root and branch) may be
//! `A`–`Z` or `0`–`9`; the 2 check digits remain digits. Each character is
//! worth its ASCII code minus 48 (`'0'..='9'` → 0–9, `'A'` → 17, …, `'Z'` →
//! 42) and the classic CNPJ weights apply, so all-digit CNPJs are validated
//! exactly as before. Letters are accepted in either case and stored upper-case.
//! The Receita Federal's example `12.ABC.345/01DE-35` is valid.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a CPF or CNPJ was rejected.
///
/// [`TaxIdError::code`] gives a stable machine-readable reason; the `Display`
/// message is English and quotes the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaxIdError {
    /// The input is empty or only mask characters.
    #[error("CPF/CNPJ is empty")]
    Empty,
    /// A character that is neither a mask character nor allowed in that
    /// position (letters are only allowed in the first 12 characters of a CNPJ).
    #[error("{input:?} contains the invalid character {ch:?}")]
    InvalidCharacter {
        /// The rejected input.
        input: String,
        /// The first offending character.
        ch: char,
    },
    /// Not 11 characters (CPF) or 14 (CNPJ), even after restoring lost
    /// leading zeros.
    #[error("{input:?} has {len} digits; a CPF has 11 and a CNPJ 14")]
    WrongLength {
        /// The rejected input.
        input: String,
        /// Number of characters once the mask is removed.
        len: usize,
    },
    /// The check digits do not match the rest of the number.
    #[error("{input:?} has wrong check digits")]
    WrongCheckDigit {
        /// The rejected input.
        input: String,
    },
    /// All digits are the same (`000.000.000-00`, `11111111111111`, …).
    #[error("{input:?} is a repeated-digit sequence, not a real document")]
    RepeatedDigits {
        /// The rejected input.
        input: String,
    },
}

impl TaxIdError {
    /// A stable snake_case identifier of the reason, for APIs and import reports.
    pub fn code(&self) -> &'static str {
        match self {
            TaxIdError::Empty => "empty",
            TaxIdError::InvalidCharacter { .. } => "invalid_character",
            TaxIdError::WrongLength { .. } => "wrong_length",
            TaxIdError::WrongCheckDigit { .. } => "wrong_check_digit",
            TaxIdError::RepeatedDigits { .. } => "repeated_digits",
        }
    }
}

/// A valid CPF, stored as its 11 digits (`12345678909`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cpf(String);

/// A valid CNPJ, stored as its 14 characters: digits and, for alphanumeric
/// CNPJs, upper-case letters (`12345678000195`, `12ABC34501DE35`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cnpj(String);

/// A Brazilian tax id: a CPF or a CNPJ.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaxId {
    /// A person's CPF.
    Cpf(Cpf),
    /// A company's CNPJ.
    Cnpj(Cnpj),
}

const CPF_LEN: usize = 11;
const CNPJ_LEN: usize = 14;
/// Weights of the classic CNPJ check digits; the first check digit uses the
/// last 12, the second all 13.
const CNPJ_WEIGHTS: [u32; 13] = [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2];

/// Is `c` one of the characters ignored as a mask?
fn is_mask(c: char) -> bool {
    matches!(c, '.' | '-' | '/') || c.is_whitespace()
}

/// The input without mask characters, letters upper-cased; rejects anything
/// that is not an ASCII letter or digit.
fn strip_mask(input: &str) -> Result<String, TaxIdError> {
    let mut out = String::with_capacity(CNPJ_LEN);
    for c in input.chars() {
        if is_mask(c) {
            continue;
        }
        if !c.is_ascii_alphanumeric() {
            return Err(TaxIdError::InvalidCharacter {
                input: input.to_owned(),
                ch: c,
            });
        }
        out.push(c.to_ascii_uppercase());
    }
    if out.is_empty() {
        return Err(TaxIdError::Empty);
    }
    Ok(out)
}

/// Mod-11 check digit over `values` with `weights` (same length).
fn mod11_check_digit(values: impl Iterator<Item = u32>, weights: &[u32]) -> u8 {
    let sum: u32 = values.zip(weights).map(|(v, w)| v * w).sum();
    match sum % 11 {
        0 | 1 => 0,
        r => (11 - r) as u8,
    }
}

/// Value of a CNPJ character: its ASCII code minus 48.
fn cnpj_char_value(b: u8) -> u32 {
    u32::from(b) - u32::from(b'0')
}

fn all_same(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.iter().all(|&b| b == bytes[0])
}

fn first_letter(s: &str) -> Option<char> {
    s.chars().find(char::is_ascii_alphabetic)
}

fn left_pad(s: &str, len: usize) -> String {
    format!("{s:0>len$}")
}

impl Cpf {
    /// Computes the two check digits of a CPF from its first 9 digits.
    ///
    /// # Panics
    ///
    /// If `base` contains a value above 9.
    pub fn check_digits(base: &[u8; 9]) -> [u8; 2] {
        assert!(base.iter().all(|&d| d <= 9), "CPF digits must be 0-9");
        let first = mod11_check_digit(
            base.iter().map(|&d| u32::from(d)),
            &[10, 9, 8, 7, 6, 5, 4, 3, 2],
        );
        let second = mod11_check_digit(
            base.iter().chain([&first]).map(|&d| u32::from(d)),
            &[11, 10, 9, 8, 7, 6, 5, 4, 3, 2],
        );
        [first, second]
    }

    /// Parses a CPF, masked (`123.456.789-09`) or not (`12345678909`).
    ///
    /// A CPF of 9 or 10 digits (leading zeros lost in a spreadsheet) is
    /// left-padded with zeros when that gives valid check digits.
    pub fn parse(input: &str) -> Result<Cpf, TaxIdError> {
        let stripped = strip_mask(input)?;
        Self::from_stripped(input, &stripped)
    }

    fn from_stripped(input: &str, stripped: &str) -> Result<Cpf, TaxIdError> {
        if let Some(ch) = first_letter(stripped) {
            return Err(TaxIdError::InvalidCharacter {
                input: input.to_owned(),
                ch,
            });
        }
        match stripped.len() {
            CPF_LEN => Self::check(input, stripped.to_owned()),
            9 | 10 => {
                let padded = left_pad(stripped, CPF_LEN);
                Self::check(input, padded).map_err(|_| TaxIdError::WrongLength {
                    input: input.to_owned(),
                    len: stripped.len(),
                })
            }
            len => Err(TaxIdError::WrongLength {
                input: input.to_owned(),
                len,
            }),
        }
    }

    /// Validates 11 ASCII digits.
    fn check(input: &str, digits: String) -> Result<Cpf, TaxIdError> {
        if all_same(&digits) {
            return Err(TaxIdError::RepeatedDigits {
                input: input.to_owned(),
            });
        }
        let d = digits.as_bytes();
        let mut base = [0u8; 9];
        for (slot, &b) in base.iter_mut().zip(d) {
            *slot = b - b'0';
        }
        if Self::check_digits(&base) != [d[9] - b'0', d[10] - b'0'] {
            return Err(TaxIdError::WrongCheckDigit {
                input: input.to_owned(),
            });
        }
        Ok(Cpf(digits))
    }

    /// The 11 digits, unmasked: `12345678909`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The masked form: `123.456.789-09`.
    pub fn formatted(&self) -> String {
        let s = &self.0;
        format!("{}.{}.{}-{}", &s[..3], &s[3..6], &s[6..9], &s[9..])
    }
}

impl Cnpj {
    /// Computes the two check digits of a CNPJ from its first 12 characters
    /// (digits or upper-case letters, as ASCII bytes). Returns `None` if a byte
    /// is not `0`–`9` or `A`–`Z`.
    pub fn check_digits(base: &[u8; 12]) -> Option<[u8; 2]> {
        if !base
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        {
            return None;
        }
        let first = mod11_check_digit(base.iter().map(|&b| cnpj_char_value(b)), &CNPJ_WEIGHTS[1..]);
        let second = mod11_check_digit(
            base.iter()
                .map(|&b| cnpj_char_value(b))
                .chain([u32::from(first)]),
            &CNPJ_WEIGHTS,
        );
        Some([first, second])
    }

    /// Parses a CNPJ, masked (`12.345.678/0001-95`, `12.ABC.345/01DE-35`) or
    /// not. Letters are accepted in the first 12 positions, in either case.
    ///
    /// An all-digit CNPJ of 12 or 13 digits (leading zeros lost in a
    /// spreadsheet) is left-padded with zeros when that gives valid check digits.
    pub fn parse(input: &str) -> Result<Cnpj, TaxIdError> {
        let stripped = strip_mask(input)?;
        Self::from_stripped(input, &stripped)
    }

    fn from_stripped(input: &str, stripped: &str) -> Result<Cnpj, TaxIdError> {
        match stripped.len() {
            CNPJ_LEN => Self::check(input, stripped.to_owned()),
            12 | 13 if first_letter(stripped).is_none() => {
                let padded = left_pad(stripped, CNPJ_LEN);
                Self::check(input, padded).map_err(|_| TaxIdError::WrongLength {
                    input: input.to_owned(),
                    len: stripped.len(),
                })
            }
            len => Err(TaxIdError::WrongLength {
                input: input.to_owned(),
                len,
            }),
        }
    }

    /// Validates 14 ASCII digits / upper-case letters.
    fn check(input: &str, chars: String) -> Result<Cnpj, TaxIdError> {
        let b = chars.as_bytes();
        if let Some(&letter) = b[12..].iter().find(|c| !c.is_ascii_digit()) {
            return Err(TaxIdError::InvalidCharacter {
                input: input.to_owned(),
                ch: char::from(letter),
            });
        }
        if all_same(&chars) {
            return Err(TaxIdError::RepeatedDigits {
                input: input.to_owned(),
            });
        }
        let mut base = [0u8; 12];
        base.copy_from_slice(&b[..12]);
        if Self::check_digits(&base) != Some([b[12] - b'0', b[13] - b'0']) {
            return Err(TaxIdError::WrongCheckDigit {
                input: input.to_owned(),
            });
        }
        Ok(Cnpj(chars))
    }

    /// The 14 characters, unmasked: `12345678000195`, `12ABC34501DE35`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The masked form: `12.345.678/0001-95`, `12.ABC.345/01DE-35`.
    pub fn formatted(&self) -> String {
        let s = &self.0;
        format!(
            "{}.{}.{}/{}-{}",
            &s[..2],
            &s[2..5],
            &s[5..8],
            &s[8..12],
            &s[12..]
        )
    }

    /// `true` if the CNPJ contains letters (the format introduced in 2026).
    pub fn is_alphanumeric(&self) -> bool {
        first_letter(&self.0).is_some()
    }
}

impl TaxId {
    /// Parses a CPF or a CNPJ, masked or not, deciding by the number of
    /// characters once the mask is removed: 11 (or 9–10, see the
    /// [module documentation](self)) is a CPF, 14 (or 12–13) a CNPJ.
    pub fn parse(input: &str) -> Result<TaxId, TaxIdError> {
        let stripped = strip_mask(input)?;
        match stripped.len() {
            9..=11 => Cpf::from_stripped(input, &stripped).map(TaxId::Cpf),
            12..=14 => Cnpj::from_stripped(input, &stripped).map(TaxId::Cnpj),
            len => Err(TaxIdError::WrongLength {
                input: input.to_owned(),
                len,
            }),
        }
    }

    /// The unmasked value.
    pub fn as_str(&self) -> &str {
        match self {
            TaxId::Cpf(cpf) => cpf.as_str(),
            TaxId::Cnpj(cnpj) => cnpj.as_str(),
        }
    }

    /// The masked form (`123.456.789-09` or `12.345.678/0001-95`).
    pub fn formatted(&self) -> String {
        match self {
            TaxId::Cpf(cpf) => cpf.formatted(),
            TaxId::Cnpj(cnpj) => cnpj.formatted(),
        }
    }

    /// `"cpf"` or `"cnpj"`.
    pub fn kind(&self) -> &'static str {
        match self {
            TaxId::Cpf(_) => "cpf",
            TaxId::Cnpj(_) => "cnpj",
        }
    }
}

macro_rules! string_newtype_impls {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            /// Writes the unmasked value.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl FromStr for $ty {
            type Err = TaxIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::parse(s)
            }
        }

        /// Serializes as the plain unmasked string.
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        /// Deserializes a string (masked or not) through `parse`.
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                $ty::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl From<$ty> for String {
            fn from(value: $ty) -> Self {
                value.as_str().to_owned()
            }
        }
    };
}

string_newtype_impls!(Cpf);
string_newtype_impls!(Cnpj);
string_newtype_impls!(TaxId);

impl From<Cpf> for TaxId {
    fn from(cpf: Cpf) -> Self {
        TaxId::Cpf(cpf)
    }
}

impl From<Cnpj> for TaxId {
    fn from(cnpj: Cnpj) -> Self {
        TaxId::Cnpj(cnpj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn code(result: Result<impl fmt::Debug, TaxIdError>) -> &'static str {
        result.unwrap_err().code()
    }

    #[test]
    fn valid_cpf_masked_and_unmasked() {
        for input in [
            "123.456.789-09",
            "12345678909",
            " 123 456 789 09 ",
            "123456789-09",
        ] {
            let cpf = Cpf::parse(input).unwrap();
            assert_eq!(cpf.as_str(), "12345678909");
            assert_eq!(cpf.formatted(), "123.456.789-09");
            let id = TaxId::parse(input).unwrap();
            assert_eq!(id, TaxId::Cpf(cpf));
            assert_eq!(id.kind(), "cpf");
            assert_eq!(id.to_string(), "12345678909");
        }
        // Check digits 0 (remainder < 2 rule).
        assert_eq!(
            Cpf::parse("529.982.247-25").unwrap().as_str(),
            "52998224725"
        );
        assert_eq!(
            Cpf::parse("111.444.777-35").unwrap().as_str(),
            "11144477735"
        );
    }

    #[test]
    fn cpf_rejections() {
        assert_eq!(code(Cpf::parse("123.456.789-00")), "wrong_check_digit");
        assert_eq!(code(Cpf::parse("123.456.789-19")), "wrong_check_digit");
        assert_eq!(code(Cpf::parse("000.000.000-00")), "repeated_digits");
        assert_eq!(code(Cpf::parse("11111111111")), "repeated_digits");
        assert_eq!(code(Cpf::parse("999.999.999-99")), "repeated_digits");
        assert_eq!(code(Cpf::parse("123.456.789")), "wrong_length");
        assert_eq!(code(Cpf::parse("123456789091")), "wrong_length");
        assert_eq!(code(Cpf::parse("12345678000195")), "wrong_length");
        assert_eq!(code(Cpf::parse("123.456.78A-09")), "invalid_character");
        assert_eq!(code(Cpf::parse("123,456,789-09")), "invalid_character");
        assert_eq!(code(Cpf::parse("")), "empty");
        assert_eq!(code(Cpf::parse(" .-/ ")), "empty");
    }

    #[test]
    fn cpf_with_lost_leading_zeros() {
        // 012.345.678-90 is valid; a spreadsheet turns it into 1234567890.
        assert_eq!(
            Cpf::parse("012.345.678-90").unwrap().as_str(),
            "01234567890"
        );
        assert_eq!(Cpf::parse("1234567890").unwrap().as_str(), "01234567890");
        assert_eq!(TaxId::parse("1234567890").unwrap().as_str(), "01234567890");
        // 9 digits: two zeros lost (001.234.567-97).
        let base = [0, 0, 1, 2, 3, 4, 5, 6, 7];
        let [d1, d2] = Cpf::check_digits(&base);
        let full = format!("001234567{d1}{d2}");
        let short = full.trim_start_matches('0');
        assert_eq!(short.len(), 9);
        assert_eq!(Cpf::parse(short).unwrap().as_str(), full);
        // Padding that does not give valid check digits is a length error.
        assert_eq!(code(Cpf::parse("1234567891")), "wrong_length");
        assert_eq!(code(Cpf::parse("12345678")), "wrong_length");
    }

    #[test]
    fn valid_cnpj_masked_and_unmasked() {
        for input in ["12.345.678/0001-95", "12345678000195", "12 345 678 0001 95"] {
            let cnpj = Cnpj::parse(input).unwrap();
            assert_eq!(cnpj.as_str(), "12345678000195");
            assert_eq!(cnpj.formatted(), "12.345.678/0001-95");
            assert!(!cnpj.is_alphanumeric());
            let id = TaxId::parse(input).unwrap();
            assert_eq!(id.kind(), "cnpj");
            assert_eq!(id.formatted(), "12.345.678/0001-95");
        }
        // Banco do Brasil and Petrobras.
        assert!(Cnpj::parse("00.000.000/0001-91").is_ok());
        assert!(Cnpj::parse("33.000.167/0001-01").is_ok());
    }

    #[test]
    fn cnpj_rejections() {
        assert_eq!(code(Cnpj::parse("12.345.678/0001-96")), "wrong_check_digit");
        assert_eq!(code(Cnpj::parse("12.345.678/0001-05")), "wrong_check_digit");
        assert_eq!(code(Cnpj::parse("00.000.000/0000-00")), "repeated_digits");
        assert_eq!(code(Cnpj::parse("11.111.111/1111-11")), "repeated_digits");
        assert_eq!(code(Cnpj::parse("12.345.678/0001")), "wrong_length");
        assert_eq!(code(Cnpj::parse("123.456.789-09")), "wrong_length");
        assert_eq!(code(Cnpj::parse("12.345.678/0001-9A")), "invalid_character");
        assert_eq!(
            code(Cnpj::parse("12.345.678/0001-95!")),
            "invalid_character"
        );
        assert_eq!(code(Cnpj::parse("12.ÁBC.345/01DE-35")), "invalid_character");
        assert_eq!(code(TaxId::parse("12345678")), "wrong_length");
        assert_eq!(code(TaxId::parse("123456780001951")), "wrong_length");
        assert_eq!(code(TaxId::parse("")), "empty");
    }

    #[test]
    fn cnpj_with_lost_leading_zeros() {
        // Banco do Brasil: 00.000.000/0001-91 → 191 in a spreadsheet is too
        // short, but 13- and 12-digit losses are restored.
        assert_eq!(
            Cnpj::parse("0191").map_err(|e| e.code()),
            Err("wrong_length")
        );
        let cnpj = Cnpj::parse("6990590000123").unwrap(); // 06.990.590/0001-23
        assert_eq!(cnpj.as_str(), "06990590000123");
        assert_eq!(TaxId::parse("6990590000123").unwrap().kind(), "cnpj");
        let base = *b"004567890001";
        let [d1, d2] = Cnpj::check_digits(&base).unwrap();
        let full = format!("004567890001{d1}{d2}");
        assert_eq!(Cnpj::parse(&full[2..]).unwrap().as_str(), full);
        assert_eq!(TaxId::parse(&full[2..]).unwrap().as_str(), full);
        // Wrong check digits after padding: a length error.
        assert_eq!(code(Cnpj::parse("6990590000124")), "wrong_length");
        // Letters: no padding (spreadsheets only drop zeros from numbers).
        assert_eq!(code(Cnpj::parse("2ABC34501DE35")), "wrong_length");
    }

    #[test]
    fn alphanumeric_cnpj_official_example() {
        let cnpj = Cnpj::parse("12.ABC.345/01DE-35").unwrap();
        assert_eq!(cnpj.as_str(), "12ABC34501DE35");
        assert_eq!(cnpj.formatted(), "12.ABC.345/01DE-35");
        assert!(cnpj.is_alphanumeric());
        assert_eq!(Cnpj::check_digits(b"12ABC34501DE"), Some([3, 5]));
        // Case-insensitive, stored upper-case.
        assert_eq!(Cnpj::parse("12.abc.345/01de-35").unwrap(), cnpj);
        assert_eq!(Cnpj::parse("12abc34501de35").unwrap(), cnpj);
        assert_eq!(
            TaxId::parse("12.AbC.345/01dE-35").unwrap(),
            TaxId::Cnpj(cnpj)
        );
        assert_eq!(code(Cnpj::parse("12.ABC.345/01DE-36")), "wrong_check_digit");
        assert_eq!(code(Cnpj::parse("12.ABD.345/01DE-35")), "wrong_check_digit");
    }

    #[test]
    fn alphanumeric_cnpj_computed_examples() {
        // Check digits computed by hand with the Receita Federal algorithm
        // (value = ASCII − 48, classic weights).
        // "A1B2C3D4E5F6": values 17,1,18,2,19,3,20,4,21,5,22,6
        //   first:  17*5+1*4+18*3+2*2+19*9+3*8+20*7+4*6+21*5+5*4+22*3+6*2 = 709;
        //           709 % 11 = 5 → 11 − 5 = 6
        //   second: 17*6+1*5+18*4+2*3+19*2+3*9+20*8+4*7+21*6+5*5+22*4+6*3+6*2
        //           = 707; 707 % 11 = 3 → 11 − 3 = 8
        assert_eq!(Cnpj::check_digits(b"A1B2C3D4E5F6"), Some([6, 8]));
        assert_eq!(
            Cnpj::parse("A1.B2C.3D4/E5F6-68").unwrap().as_str(),
            "A1B2C3D4E5F668"
        );
        // "ZZZZZZZZ0001": values 42×8, 0,0,0,1
        //   first:  42*(5+4+3+2+9+8+7+6) + 1*2 = 42*44 + 2 = 1850;
        //           1850 % 11 = 2 → 9
        //   second: 42*(6+5+4+3+2+9+8+7) + 1*3 + 9*2 = 42*44 + 21 = 1869;
        //           1869 % 11 = 10 → 1
        assert_eq!(Cnpj::check_digits(b"ZZZZZZZZ0001"), Some([9, 1]));
        assert!(Cnpj::parse("ZZ.ZZZ.ZZZ/0001-91").is_ok());
        assert_eq!(Cnpj::check_digits(b"12abc34501de"), None);
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            Cpf::parse("123.456.789-00").unwrap_err().to_string(),
            "\"123.456.789-00\" has wrong check digits"
        );
        assert_eq!(
            TaxId::parse("1234").unwrap_err().to_string(),
            "\"1234\" has 4 digits; a CPF has 11 and a CNPJ 14"
        );
        assert_eq!(
            Cpf::parse("123.456.789_09").unwrap_err().to_string(),
            "\"123.456.789_09\" contains the invalid character '_'"
        );
    }

    #[test]
    fn serde_is_the_unmasked_string() {
        let id = TaxId::parse("12.ABC.345/01DE-35").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"12ABC34501DE35\"");
        let back: TaxId = serde_json::from_str("\"12.abc.345/01de-35\"").unwrap();
        assert_eq!(back, id);
        let cpf: Cpf = serde_json::from_str("\"123.456.789-09\"").unwrap();
        assert_eq!(serde_json::to_string(&cpf).unwrap(), "\"12345678909\"");
        assert!(serde_json::from_str::<Cpf>("\"123.456.789-00\"").is_err());
    }

    fn cpf_from_base(base: [u8; 9]) -> String {
        let [d1, d2] = Cpf::check_digits(&base);
        base.iter()
            .chain(&[d1, d2])
            .map(|d| char::from(b'0' + d))
            .collect()
    }

    fn mask_cpf(digits: &str) -> String {
        format!(
            "{}.{}.{}-{}",
            &digits[..3],
            &digits[3..6],
            &digits[6..9],
            &digits[9..]
        )
    }

    proptest! {
        #[test]
        fn generated_cpfs_parse_and_round_trip(base in proptest::array::uniform9(0u8..10)) {
            let digits = cpf_from_base(base);
            prop_assume!(!all_same(&digits));
            let cpf = Cpf::parse(&digits).unwrap();
            prop_assert_eq!(cpf.as_str(), digits.as_str());
            let masked = cpf.formatted();
            prop_assert_eq!(&masked, &mask_cpf(&digits));
            prop_assert_eq!(Cpf::parse(&masked).unwrap(), cpf.clone());
            prop_assert_eq!(TaxId::parse(&masked).unwrap(), TaxId::Cpf(cpf));
        }

        #[test]
        fn changing_a_cpf_check_digit_fails(base in proptest::array::uniform9(0u8..10), pos in 9usize..11, delta in 1u8..10) {
            let mut digits = cpf_from_base(base).into_bytes();
            digits[pos] = b'0' + (digits[pos] - b'0' + delta) % 10;
            let digits = String::from_utf8(digits).unwrap();
            let err = Cpf::parse(&digits).unwrap_err();
            prop_assert!(matches!(err.code(), "wrong_check_digit" | "repeated_digits"));
        }

        #[test]
        fn generated_cnpjs_parse_and_round_trip(base in "[0-9A-Za-z]{12}") {
            let upper = base.to_ascii_uppercase();
            let bytes: [u8; 12] = upper.as_bytes().try_into().unwrap();
            let [d1, d2] = Cnpj::check_digits(&bytes).unwrap();
            let raw = format!("{base}{d1}{d2}");
            prop_assume!(!all_same(&raw));
            let cnpj = Cnpj::parse(&raw).unwrap();
            prop_assert_eq!(cnpj.as_str(), format!("{upper}{d1}{d2}"));
            let masked = cnpj.formatted();
            prop_assert_eq!(Cnpj::parse(&masked).unwrap(), cnpj.clone());
            prop_assert_eq!(TaxId::parse(&masked).unwrap(), TaxId::Cnpj(cnpj));
            // Changing a check digit fails.
            let wrong = format!("{base}{d1}{}", (d2 + 1) % 10);
            prop_assert_eq!(Cnpj::parse(&wrong).unwrap_err().code(), "wrong_check_digit");
        }

        #[test]
        fn tax_id_never_panics(input in any::<String>()) {
            if let Ok(id) = TaxId::parse(&input) {
                prop_assert!(id.as_str().bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
                prop_assert_eq!(TaxId::parse(id.as_str()).unwrap(), id.clone());
                prop_assert_eq!(TaxId::parse(&id.formatted()).unwrap(), id);
            }
        }
    }
}
