//! Normalizers shared by Farol's spreadsheet importer and its CRM API.
//!
//! Every normalizer follows "parse, don't validate": a `parse` constructor
//! turns raw user input into a newtype with a private field, so holding a
//! value proves it was checked and normalized. Each newtype has `as_str()`,
//! `Display` and `FromStr`, and serializes (serde) as its plain normalized
//! string. Each error enum has a `code()` with a stable snake_case reason for
//! APIs and import reports, and an English `Display` message quoting the
//! offending input.
//!
//! | module       | type                | guarantees |
//! |--------------|---------------------|------------|
//! | [`phone`]    | [`Phone`]           | E.164 (`+5511987654321`), valid per libphonenumber's metadata; Brazilian default region; legacy 8-digit mobiles get their ninth digit ([`PhoneOutcome::ninth_digit_added`]). |
//! | [`email`]    | [`Email`]           | trimmed, `mailto:`/`<>` removed, lower-cased, syntactically valid (dot-atom local part, `a-z0-9-` domain labels, alphabetic TLD). |
//! | [`document`] | [`TaxId`], [`Cpf`], [`Cnpj`] | unmasked, correct mod-11 check digits, not a repeated-digit sequence; alphanumeric CNPJ (2026) supported; leading zeros lost in spreadsheets restored when the check digits prove it. |
//! | [`text`]     | [`fold`], [`search_tokens`] | lower-case without diacritics; search tokens are `[a-z0-9]+`, identical for stored text and queries. |
//!
//! ```
//! use farol_normalize::{Email, Phone, PhoneKind, TaxId, search_tokens};
//!
//! let outcome = Phone::parse("(11) 8765-4321").unwrap();
//! assert_eq!(outcome.phone.as_str(), "+5511987654321");
//! assert!(outcome.ninth_digit_added);
//! assert_eq!(outcome.kind, PhoneKind::Mobile);
//! assert_eq!(Phone::parse("(11) 1234").unwrap_err().code(), "too_short");
//!
//! assert_eq!(Email::parse(" mailto:Ana@Example.COM ").unwrap().as_str(), "ana@example.com");
//!
//! let cnpj = TaxId::parse("12.abc.345/01de-35").unwrap();
//! assert_eq!((cnpj.kind(), cnpj.as_str()), ("cnpj", "12ABC34501DE35"));
//! assert_eq!(TaxId::parse("123.456.789-00").unwrap_err().code(), "wrong_check_digit");
//!
//! assert_eq!(search_tokens("Pão-de-Açúcar"), ["pao", "de", "acucar"]);
//! ```
//!
//! All functions are pure and thread-safe; [`Phone::parse`] uses a
//! lazily-initialized, `Send + Sync` global for libphonenumber's metadata
//! (see [`phone::warm_up`]).

pub mod document;
pub mod email;
pub mod phone;
pub mod text;

pub use document::{Cnpj, Cpf, TaxId, TaxIdError};
pub use email::{Email, EmailError};
pub use phone::{Phone, PhoneError, PhoneKind, PhoneOutcome};
pub use text::{fold, search_text, search_tokens};
