//! E-mail addresses: trimmed, lower-cased, syntactically checked.
//!
//! # Rules
//!
//! [`Email::parse`] removes surrounding whitespace, a `mailto:` prefix (any
//! case) and surrounding angle brackets (`<ana@example.com>`), then lower-cases
//! the **whole** address, local part included. RFC 5321 allows a mailbox to
//! distinguish `Ana@` from `ana@`, but no real provider does, and the CRM
//! deduplicates contacts by e-mail: lower-casing everything makes the stored
//! value a usable unique key.
//!
//! The syntax accepted is a pragmatic subset of RFC 5321/5322, enough to reject
//! garbage from spreadsheets without rejecting real addresses:
//!
//! * at most 254 characters in total, no whitespace;
//! * exactly one `@`;
//! * local part: 1 to 64 characters of the RFC 5322 dot-atom set
//!   (`a-z 0-9 ! # $ % & ' * + - / = ? ^ _ ` { | } ~` and `.`), not starting
//!   or ending with a dot, no consecutive dots (no quoted local parts);
//! * domain: at least two dot-separated labels of `a-z 0-9 -`, each 1 to 63
//!   characters, not starting or ending with `-`; the last label (TLD) is at
//!   least 2 letters. Internationalized domains must be given in punycode, and
//!   IP-literal domains (`user@[1.2.3.4]`) are rejected.
//!
//! Nothing checks whether the domain exists or fixes typos (`gmial.com`): this
//! is syntax only.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Maximum length of a whole address (RFC 5321 path limit minus the brackets).
pub const MAX_EMAIL_LEN: usize = 254;
/// Maximum length of the local part (RFC 5321).
pub const MAX_LOCAL_PART_LEN: usize = 64;
/// Maximum length of one domain label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// A syntactically valid, lower-cased e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

/// Why an e-mail address was rejected.
///
/// [`EmailError::code`] gives a stable machine-readable reason; the `Display`
/// message is English and quotes the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmailError {
    /// The input is empty or only whitespace.
    #[error("e-mail address is empty")]
    Empty,
    /// Longer than 254 characters.
    #[error("{input:?} is longer than {MAX_EMAIL_LEN} characters")]
    TooLong {
        /// The rejected input.
        input: String,
    },
    /// Contains whitespace inside the address.
    #[error("{input:?} contains whitespace")]
    ContainsWhitespace {
        /// The rejected input.
        input: String,
    },
    /// No `@`.
    #[error("{input:?} has no @")]
    MissingAt {
        /// The rejected input.
        input: String,
    },
    /// More than one `@`.
    #[error("{input:?} has more than one @")]
    MultipleAt {
        /// The rejected input.
        input: String,
    },
    /// Nothing before the `@`.
    #[error("{input:?} has nothing before the @")]
    EmptyLocalPart {
        /// The rejected input.
        input: String,
    },
    /// More than 64 characters before the `@`.
    #[error("{input:?} has more than {MAX_LOCAL_PART_LEN} characters before the @")]
    LocalPartTooLong {
        /// The rejected input.
        input: String,
    },
    /// A character not allowed in the part before the `@`.
    #[error("{input:?} has the invalid character {ch:?} before the @")]
    InvalidLocalPartCharacter {
        /// The rejected input.
        input: String,
        /// The first offending character.
        ch: char,
    },
    /// The part before the `@` starts or ends with a dot.
    #[error("{input:?} starts or ends the part before the @ with a dot")]
    LocalPartDotAtEdge {
        /// The rejected input.
        input: String,
    },
    /// Two dots in a row, before or after the `@`.
    #[error("{input:?} has two consecutive dots")]
    ConsecutiveDots {
        /// The rejected input.
        input: String,
    },
    /// Nothing after the `@`.
    #[error("{input:?} has nothing after the @")]
    EmptyDomain {
        /// The rejected input.
        input: String,
    },
    /// The domain has no dot (`ana@localhost`).
    #[error("{input:?} has a domain without a dot")]
    DomainWithoutDot {
        /// The rejected input.
        input: String,
    },
    /// A domain label is empty, too long, has a character outside `a-z 0-9 -`
    /// or starts/ends with `-`.
    #[error("{input:?} has an invalid domain")]
    InvalidDomain {
        /// The rejected input.
        input: String,
    },
    /// The last domain label is not at least 2 letters.
    #[error("{input:?} has an invalid top-level domain")]
    InvalidTld {
        /// The rejected input.
        input: String,
    },
}

impl EmailError {
    /// A stable snake_case identifier of the reason, for APIs and import reports.
    pub fn code(&self) -> &'static str {
        match self {
            EmailError::Empty => "empty",
            EmailError::TooLong { .. } => "too_long",
            EmailError::ContainsWhitespace { .. } => "contains_whitespace",
            EmailError::MissingAt { .. } => "missing_at",
            EmailError::MultipleAt { .. } => "multiple_at",
            EmailError::EmptyLocalPart { .. } => "empty_local_part",
            EmailError::LocalPartTooLong { .. } => "local_part_too_long",
            EmailError::InvalidLocalPartCharacter { .. } => "invalid_local_part_character",
            EmailError::LocalPartDotAtEdge { .. } => "local_part_dot_at_edge",
            EmailError::ConsecutiveDots { .. } => "consecutive_dots",
            EmailError::EmptyDomain { .. } => "empty_domain",
            EmailError::DomainWithoutDot { .. } => "domain_without_dot",
            EmailError::InvalidDomain { .. } => "invalid_domain",
            EmailError::InvalidTld { .. } => "invalid_tld",
        }
    }
}

/// Is `c` allowed in an RFC 5322 dot-atom (besides the dot)? `c` is already
/// lower-cased.
fn is_atext(c: char) -> bool {
    c.is_ascii_lowercase()
        || c.is_ascii_digit()
        || matches!(
            c,
            '!' | '#'
                | '$'
                | '%'
                | '&'
                | '\''
                | '*'
                | '+'
                | '-'
                | '/'
                | '='
                | '?'
                | '^'
                | '_'
                | '`'
                | '{'
                | '|'
                | '}'
                | '~'
        )
}

/// Removes whitespace, `<…>` and a `mailto:` prefix, in any nesting order.
fn unwrap_address(input: &str) -> &str {
    let mut s = input.trim();
    loop {
        let before = s;
        if let Some(inner) = s.strip_prefix('<').and_then(|r| r.strip_suffix('>')) {
            s = inner.trim();
        }
        if s.len() >= 7 && s.is_char_boundary(7) && s[..7].eq_ignore_ascii_case("mailto:") {
            s = s[7..].trim();
        }
        if s.len() == before.len() {
            return s;
        }
    }
}

impl Email {
    /// Parses and normalizes an e-mail address; see the
    /// [module documentation](self) for the rules.
    pub fn parse(input: &str) -> Result<Email, EmailError> {
        let address = unwrap_address(input);
        let err_input = || input.to_owned();
        if address.is_empty() {
            return Err(EmailError::Empty);
        }
        if address.chars().count() > MAX_EMAIL_LEN {
            return Err(EmailError::TooLong { input: err_input() });
        }
        if address.chars().any(char::is_whitespace) {
            return Err(EmailError::ContainsWhitespace { input: err_input() });
        }
        // ASCII-only lower-casing: non-ASCII characters are rejected below, and
        // Unicode lower-casing could turn some of them into ASCII (KELVIN SIGN → `k`).
        let address = address.to_ascii_lowercase();

        let Some((local, domain)) = address.split_once('@') else {
            return Err(EmailError::MissingAt { input: err_input() });
        };
        if domain.contains('@') {
            return Err(EmailError::MultipleAt { input: err_input() });
        }

        // Local part.
        if local.is_empty() {
            return Err(EmailError::EmptyLocalPart { input: err_input() });
        }
        if let Some(ch) = local.chars().find(|&c| c != '.' && !is_atext(c)) {
            return Err(EmailError::InvalidLocalPartCharacter {
                input: err_input(),
                ch,
            });
        }
        if local.len() > MAX_LOCAL_PART_LEN {
            return Err(EmailError::LocalPartTooLong { input: err_input() });
        }
        if local.starts_with('.') || local.ends_with('.') {
            return Err(EmailError::LocalPartDotAtEdge { input: err_input() });
        }
        if local.contains("..") || domain.contains("..") {
            return Err(EmailError::ConsecutiveDots { input: err_input() });
        }

        // Domain.
        if domain.is_empty() {
            return Err(EmailError::EmptyDomain { input: err_input() });
        }
        if !domain.contains('.') {
            return Err(EmailError::DomainWithoutDot { input: err_input() });
        }
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !domain.split('.').all(label_ok) {
            return Err(EmailError::InvalidDomain { input: err_input() });
        }
        let tld = domain.rsplit('.').next().unwrap_or_default();
        if tld.len() < 2 || !tld.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(EmailError::InvalidTld { input: err_input() });
        }

        Ok(Email(address))
    }

    /// The normalized address, e.g. `ana.souza@example.com.br`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the `@`.
    pub fn local_part(&self) -> &str {
        self.0.split_once('@').map_or("", |(local, _)| local)
    }

    /// The part after the `@`, e.g. `example.com.br`.
    pub fn domain(&self) -> &str {
        self.0.split_once('@').map_or("", |(_, domain)| domain)
    }

    /// Consumes the e-mail, returning the normalized string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Email> for String {
    fn from(email: Email) -> Self {
        email.0
    }
}

impl FromStr for Email {
    type Err = EmailError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Email::parse(s)
    }
}

/// Serializes as the plain normalized string.
impl Serialize for Email {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Deserializes a string through [`Email::parse`].
impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Email::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(input: &str) -> String {
        match Email::parse(input) {
            Ok(email) => email.into_string(),
            Err(err) => panic!("{input:?} rejected: {err}"),
        }
    }

    fn reason(input: &str) -> &'static str {
        match Email::parse(input) {
            Ok(email) => panic!("{input:?} accepted as {email}"),
            Err(err) => err.code(),
        }
    }

    #[test]
    fn good_shapes() {
        for (input, expected) in [
            ("ana@example.com", "ana@example.com"),
            ("  Ana.Souza@Example.COM.br ", "ana.souza@example.com.br"),
            ("mailto:ana@example.com", "ana@example.com"),
            ("MAILTO:Ana@Example.com", "ana@example.com"),
            ("<ana@example.com>", "ana@example.com"),
            ("< mailto:ana@example.com >", "ana@example.com"),
            ("mailto:<ana@example.com>", "ana@example.com"),
            ("ana+crm@example.com", "ana+crm@example.com"),
            ("o'neil@example.ie", "o'neil@example.ie"),
            (
                "a.b-c_d@sub-domain.example.co",
                "a.b-c_d@sub-domain.example.co",
            ),
            (
                "x!#$%&'*+-/=?^_`{|}~@example.org",
                "x!#$%&'*+-/=?^_`{|}~@example.org",
            ),
            ("user@123.example.com", "user@123.example.com"),
            ("user@xn--fiqs8s.example.com", "user@xn--fiqs8s.example.com"),
        ] {
            assert_eq!(ok(input), expected, "input {input:?}");
        }
        let email = Email::parse("Ana@Example.com").unwrap();
        assert_eq!(email.local_part(), "ana");
        assert_eq!(email.domain(), "example.com");
        assert_eq!(email.to_string(), "ana@example.com");
    }

    #[test]
    fn length_limits() {
        let local = "a".repeat(64);
        assert!(Email::parse(&format!("{local}@example.com")).is_ok());
        assert_eq!(
            reason(&format!("a{local}@example.com")),
            "local_part_too_long"
        );
        let label = "b".repeat(63);
        assert!(Email::parse(&format!("a@{label}.com")).is_ok());
        assert_eq!(reason(&format!("a@b{label}.com")), "invalid_domain");
        // 254 characters in total is fine, 255 is not.
        let domain = format!(
            "{}.{}.{}.com",
            "c".repeat(63),
            "d".repeat(63),
            "e".repeat(57)
        );
        let address = format!("{}@{domain}", "f".repeat(64));
        assert_eq!(address.len(), 254);
        assert!(Email::parse(&address).is_ok());
        assert_eq!(reason(&format!("g{address}")), "too_long");
    }

    #[test]
    fn bad_shapes() {
        for (input, code) in [
            ("", "empty"),
            ("   ", "empty"),
            ("<>", "empty"),
            ("mailto:", "empty"),
            ("ana", "missing_at"),
            ("ana.example.com", "missing_at"),
            ("ana@@example.com", "multiple_at"),
            ("ana@b@example.com", "multiple_at"),
            ("@example.com", "empty_local_part"),
            ("ana @example.com", "contains_whitespace"),
            ("ana@example .com", "contains_whitespace"),
            ("Ana Souza <ana@example.com>", "contains_whitespace"),
            (".ana@example.com", "local_part_dot_at_edge"),
            ("ana.@example.com", "local_part_dot_at_edge"),
            ("ana..souza@example.com", "consecutive_dots"),
            ("ana@example..com", "consecutive_dots"),
            ("ana(x)@example.com", "invalid_local_part_character"),
            ("ana,b@example.com", "invalid_local_part_character"),
            ("joão@example.com", "invalid_local_part_character"),
            ("\"ana\"@example.com", "invalid_local_part_character"),
            ("ana@", "empty_domain"),
            ("ana@localhost", "domain_without_dot"),
            ("ana@.example.com", "invalid_domain"),
            ("ana@example.com.", "invalid_domain"),
            ("ana@-example.com", "invalid_domain"),
            ("ana@example-.com", "invalid_domain"),
            ("ana@exa_mple.com", "invalid_domain"),
            ("ana@exémple.com", "invalid_domain"),
            ("ana@[127.0.0.1]", "invalid_domain"),
            ("ana@example.c", "invalid_tld"),
            ("ana@example.c0m", "invalid_tld"),
            ("ana@127.0.0.1", "invalid_tld"),
        ] {
            assert_eq!(reason(input), code, "input {input:?}");
        }
    }

    #[test]
    fn error_messages_quote_the_input() {
        assert_eq!(
            Email::parse("ana.example.com").unwrap_err().to_string(),
            "\"ana.example.com\" has no @"
        );
        assert_eq!(
            Email::parse("ana(x)@example.com").unwrap_err().to_string(),
            "\"ana(x)@example.com\" has the invalid character '(' before the @"
        );
    }

    #[test]
    fn serde_is_the_plain_string() {
        let email = Email::parse("Ana@Example.com").unwrap();
        assert_eq!(
            serde_json::to_string(&email).unwrap(),
            "\"ana@example.com\""
        );
        let back: Email = serde_json::from_str("\"ANA@example.com\"").unwrap();
        assert_eq!(back, email);
        assert!(serde_json::from_str::<Email>("\"nope\"").is_err());
    }

    proptest! {
        #[test]
        fn parse_is_idempotent(input in any::<String>()) {
            if let Ok(email) = Email::parse(&input) {
                prop_assert_eq!(Email::parse(email.as_str()).unwrap(), email);
            }
        }

        #[test]
        fn plausible_addresses_are_idempotent_and_lower_case(
            input in "[ <]{0,2}(mailto:)?[A-Za-z0-9._%+-]{1,20}@([A-Za-z0-9-]{1,10}\\.){1,3}[A-Za-z]{2,6}[ >]{0,2}"
        ) {
            if let Ok(email) = Email::parse(&input) {
                let s = email.as_str();
                prop_assert_eq!(s, s.to_lowercase());
                prop_assert_eq!(s.matches('@').count(), 1);
                prop_assert!(!s.contains(".."));
                prop_assert_eq!(Email::parse(s).unwrap(), email.clone());
                prop_assert_eq!(Email::parse(&s.to_uppercase()).unwrap(), email);
            }
        }
    }
}
