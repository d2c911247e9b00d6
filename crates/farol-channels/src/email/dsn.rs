//! Delivery status notifications (RFC 3464): the bounces MTAs send back to a message's envelope
//! sender, `multipart/report; report-type=delivery-status`. A small parser of exactly what is
//! needed: the RFC 5322 headers (unfolded), MIME multipart bodies (nested ones too), the
//! `message/delivery-status` part's per-recipient fields (`Final-Recipient`, `Action`,
//! `Status`, `Diagnostic-Code`) and the returned original's `Message-ID` (`message/rfc822` or
//! `text/rfc822-headers`).
//!
//! Not a general MIME library: other parts are skipped, and only the transfer encodings DSN
//! parts use in practice (7bit/8bit, base64 and quoted-printable) are decoded.

use base64::Engine;

use crate::events::DeliveryStatus;

/// Largest DSN accepted, in bytes (bounces carry at most the original's headers or a truncated
/// copy; MTAs cap them well below this).
pub const MAX_BYTES: usize = 10 * 1024 * 1024;

/// What an MTA did for one recipient (`Action:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Delivery failed for good.
    Failed,
    /// Still trying.
    Delayed,
    /// Delivered (a positive DSN).
    Delivered,
    /// Relayed to a system that sends no DSNs.
    Relayed,
    /// Delivered to a list or alias that expanded it.
    Expanded,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        match s.to_ascii_lowercase().as_str() {
            "failed" => Some(Action::Failed),
            "delayed" => Some(Action::Delayed),
            "delivered" => Some(Action::Delivered),
            "relayed" => Some(Action::Relayed),
            "expanded" => Some(Action::Expanded),
            _ => None,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Expanded => "expanded",
        }
    }
}

/// The report on one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientReport {
    /// `Final-Recipient` address (the address type, `rfc822;`, removed).
    pub final_recipient: Option<String>,
    /// `Original-Recipient` address, when given.
    pub original_recipient: Option<String>,
    /// What happened.
    pub action: Action,
    /// `Status`, e.g. `5.1.1` (class.subject.detail).
    pub status: Option<String>,
    /// `Diagnostic-Code`, e.g. `smtp; 550 5.1.1 <x@y>: Recipient address rejected`.
    pub diagnostic: Option<String>,
}

impl RecipientReport {
    /// What this report means for the message: a failure with a 5.x.x status is a hard bounce
    /// (the address does not work); a failure with a 4.x.x (or no) status means the MTA gave up
    /// on a temporary condition: a soft bounce (the message did not arrive, the address may
    /// well work); `delayed` is news only (still trying); `delivered` is a delivery; `relayed`
    /// and `expanded` say nothing more (`None`).
    pub fn delivery_status(&self) -> Option<DeliveryStatus> {
        let class = self.status.as_deref().and_then(|s| s.chars().next());
        match self.action {
            Action::Failed => Some(DeliveryStatus::Bounced {
                permanent: class == Some('5'),
            }),
            Action::Delayed => Some(DeliveryStatus::Deferred),
            Action::Delivered => Some(DeliveryStatus::Delivered),
            Action::Relayed | Action::Expanded => None,
        }
    }
}

/// A parsed delivery status notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// `Reporting-MTA`, e.g. `dns; mx.example.com`.
    pub reporting_mta: Option<String>,
    /// One report per recipient.
    pub recipients: Vec<RecipientReport>,
    /// The returned original message's `Message-ID`, without `<>`, when included.
    pub original_message_id: Option<String>,
    /// Addresses the bounce was delivered to, from the outer headers an MTA adds or keeps
    /// (`Delivered-To`, `X-Original-To`, `Envelope-To`, `X-Envelope-To`, `To`), in that order:
    /// where a VERP token is found.
    pub delivered_to: Vec<String>,
}

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    /// Empty, or larger than [`MAX_BYTES`].
    #[error("the message is empty or larger than {MAX_BYTES} bytes")]
    Size,
    /// No header section.
    #[error("not an RFC 5322 message: {0}")]
    NotAMessage(String),
    /// A multipart body without its boundary parameter.
    #[error("multipart body without a boundary parameter")]
    NoBoundary,
}

/// One MIME entity: its headers (names lower-cased, values unfolded) and raw body.
struct Entity<'a> {
    headers: Vec<(String, String)>,
    body: &'a str,
}

impl Entity<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Media type (lower-case) and parameters of `Content-Type` (default `text/plain`).
    fn content_type(&self) -> (String, Vec<(String, String)>) {
        match self.header("content-type") {
            Some(v) => parse_content_type(v),
            None => ("text/plain".into(), Vec::new()),
        }
    }

    /// The body with its transfer encoding undone.
    fn decoded_body(&self) -> String {
        match self
            .header("content-transfer-encoding")
            .map(|e| e.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("base64") => {
                let compact: String = self
                    .body
                    .chars()
                    .filter(|c| !c.is_ascii_whitespace())
                    .collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            }
            Some("quoted-printable") => decode_quoted_printable(self.body),
            _ => self.body.to_owned(),
        }
    }
}

/// Splits `text` (LF line ends) into its header fields and body. A message that starts with a
/// blank line has no headers.
fn split_entity(text: &str) -> Entity<'_> {
    let (head, body) = if let Some(rest) = text.strip_prefix('\n') {
        ("", rest)
    } else {
        match text.find("\n\n") {
            Some(i) => (&text[..i], &text[i + 2..]),
            None => (text, ""),
        }
    };
    Entity {
        headers: parse_fields(head),
        body,
    }
}

/// Header-like fields (`Name: value`, continuation lines start with a space or tab), unfolded.
/// Lines that are not fields are skipped.
fn parse_fields(block: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && !name.contains(' ') {
                fields.push((name.to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
    }
    fields
}

/// `multipart/report; report-type=delivery-status; boundary="abc"` → type and parameters
/// (names lower-cased, quotes removed).
fn parse_content_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut parts = split_params(value).into_iter();
    let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let params = parts
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .map(|v| v.replace("\\\"", "\"").replace("\\\\", "\\"))
                .unwrap_or_else(|| v.to_owned());
            Some((k.trim().to_ascii_lowercase(), v))
        })
        .collect();
    (media, params)
}

/// Splits on `;` outside double quotes.
fn split_params(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        let current = out.last_mut().expect("never empty");
        match c {
            _ if escaped => {
                escaped = false;
                current.push(c);
            }
            '\\' if quoted => {
                escaped = true;
                current.push(c);
            }
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ';' if !quoted => out.push(String::new()),
            _ => current.push(c),
        }
    }
    out
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The parts of a multipart body (RFC 2046: delimiter lines `--boundary`, closed by
/// `--boundary--`; the preamble and epilogue are dropped).
fn split_multipart<'a>(body: &'a str, boundary: &str) -> Vec<&'a str> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut offset = 0usize;
    for line in body.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if let Some(rest) = trimmed.strip_prefix(&delimiter)
            && (rest.is_empty() || rest == "--")
        {
            if let Some(s) = start {
                // The line break before a delimiter belongs to the delimiter.
                let end = offset.saturating_sub(1).max(s);
                parts.push(&body[s..end]);
            }
            if rest == "--" {
                return parts;
            }
            start = Some(offset + line.len());
        }
        offset += line.len();
    }
    // A missing closing delimiter (a truncated bounce): keep what came.
    if let Some(s) = start
        && s <= body.len()
    {
        parts.push(&body[s..]);
    }
    parts
}

fn decode_quoted_printable(body: &str) -> String {
    let mut out = Vec::with_capacity(body.len());
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' if i + 2 < bytes.len() => {
                let hex = |b: u8| char::from(b).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `rfc822; user@example.com` → `user@example.com` (also without the type, and without `<>`).
fn address_field(value: &str) -> String {
    let v = value.split_once(';').map_or(value, |(_, a)| a).trim();
    v.trim_matches(['<', '>']).trim().to_owned()
}

/// Reads a `message/delivery-status` body: the per-message group, then one group per
/// recipient (groups are separated by blank lines).
fn parse_status_body(body: &str, dsn: &mut Dsn) {
    let groups = body
        .split("\n\n")
        .map(parse_fields)
        .filter(|g| !g.is_empty());
    let get =
        |g: &[(String, String)], k: &str| g.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    for (i, group) in groups.enumerate() {
        if i == 0 && get(&group, "action").is_none() {
            dsn.reporting_mta = get(&group, "reporting-mta");
            continue;
        }
        let Some(action) = get(&group, "action").and_then(|a| {
            // `Action: failed (bad destination mailbox address)`: the word before any comment.
            a.split(|c: char| c.is_whitespace() || c == '(')
                .next()
                .and_then(Action::parse)
        }) else {
            continue;
        };
        let status = get(&group, "status").and_then(|s| {
            let code = s
                .split(|c: char| c.is_whitespace() || c == '(')
                .next()
                .unwrap_or_default()
                .to_owned();
            let shape_ok = code.split('.').count() == 3
                && code
                    .split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                && matches!(code.chars().next(), Some('2' | '4' | '5'));
            shape_ok.then_some(code)
        });
        dsn.recipients.push(RecipientReport {
            final_recipient: get(&group, "final-recipient").map(|v| address_field(&v)),
            original_recipient: get(&group, "original-recipient").map(|v| address_field(&v)),
            action,
            status,
            diagnostic: get(&group, "diagnostic-code"),
        });
    }
}

/// Walks the MIME tree, filling `dsn` from the delivery-status and returned-message parts.
/// True when a delivery-status part was found.
fn walk(entity: &Entity<'_>, dsn: &mut Dsn, depth: usize) -> Result<bool, DsnError> {
    if depth > 8 {
        return Ok(false);
    }
    let (media, params) = entity.content_type();
    match media.as_str() {
        "message/delivery-status" | "message/global-delivery-status" => {
            let body = entity.decoded_body().replace("\r\n", "\n");
            parse_status_body(&body, dsn);
            Ok(true)
        }
        "message/rfc822" | "text/rfc822-headers" | "message/global" | "message/global-headers" => {
            let inner = entity.decoded_body().replace("\r\n", "\n");
            let original = split_entity(&inner);
            if dsn.original_message_id.is_none() {
                dsn.original_message_id = original
                    .header("message-id")
                    .map(|v| v.trim().trim_matches(['<', '>']).to_owned());
            }
            Ok(false)
        }
        m if m.starts_with("multipart/") => {
            let boundary = param(&params, "boundary").ok_or(DsnError::NoBoundary)?;
            let mut found = false;
            for part in split_multipart(entity.body, boundary) {
                found |= walk(&split_entity(part), dsn, depth + 1)?;
            }
            Ok(found)
        }
        _ => Ok(false),
    }
}

/// Parses a raw RFC 5322 message. `Ok(None)` when it is a readable message but not a delivery
/// status notification (an auto-reply, spam sent to the bounce address...).
pub fn parse(raw: &[u8]) -> Result<Option<Dsn>, DsnError> {
    if raw.is_empty() || raw.len() > MAX_BYTES {
        return Err(DsnError::Size);
    }
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    // An MTA pipe may hand over the mbox `From ` line first.
    let text = if text.starts_with("From ") {
        text.split_once('\n')
            .map_or_else(String::new, |(_, rest)| rest.to_owned())
    } else {
        text
    };
    let top = split_entity(&text);
    if top.headers.is_empty() {
        return Err(DsnError::NotAMessage(
            "no header fields before the first blank line".into(),
        ));
    }
    let mut dsn = Dsn {
        reporting_mta: None,
        recipients: Vec::new(),
        original_message_id: None,
        delivered_to: Vec::new(),
    };
    for name in [
        "delivered-to",
        "x-original-to",
        "envelope-to",
        "x-envelope-to",
        "to",
    ] {
        for (n, v) in &top.headers {
            if n == name {
                dsn.delivered_to.push(v.clone());
            }
        }
    }
    if !walk(&top, &mut dsn, 0)? {
        return Ok(None);
    }
    Ok(Some(dsn))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Postfix bounce (shape of Postfix 3.x `bounce(8)` output).
    const POSTFIX: &str = "Return-Path: <>\r
Delivered-To: bounces+0123456789abcdef0123456789abcdef-00112233aabbccdd@mail.farol.test\r
Received: by mx.farol.test (Postfix)\r
\tid 4Xk2; Mon, 23 Nov 2026 06:00:00 +0000 (UTC)\r
Date: Mon, 23 Nov 2026 06:00:00 +0000 (UTC)\r
From: MAILER-DAEMON@mx.farol.test (Mail Delivery System)\r
Subject: Undelivered Mail Returned to Sender\r
To: bounces+0123456789abcdef0123456789abcdef-00112233aabbccdd@mail.farol.test\r
Auto-Submitted: auto-replied\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=delivery-status;\r
\tboundary=\"4Xk2.1763877600/mx.farol.test\"\r
Content-Transfer-Encoding: 8bit\r
Message-Id: <20261123060000.4Xk2@mx.farol.test>\r
\r
This is a MIME-encapsulated message.\r
\r
--4Xk2.1763877600/mx.farol.test\r
Content-Description: Notification\r
Content-Type: text/plain; charset=utf-8\r
Content-Transfer-Encoding: 8bit\r
\r
This is the mail system at host mx.farol.test.\r
\r
I'm sorry to have to inform you that your message could not\r
be delivered to one or more recipients.\r
\r
<gone@cliente.test>: host mx.cliente.test[192.0.2.10] said: 550 5.1.1\r
    <gone@cliente.test>: Recipient address rejected: User unknown (in reply to\r
    RCPT TO command)\r
\r
--4Xk2.1763877600/mx.farol.test\r
Content-Description: Delivery report\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; mx.farol.test\r
X-Postfix-Queue-ID: 4Xk2\r
X-Postfix-Sender: rfc822; bounces+0123456789abcdef0123456789abcdef-00112233aabbccdd@mail.farol.test\r
Arrival-Date: Mon, 23 Nov 2026 05:59:58 +0000 (UTC)\r
\r
Final-Recipient: rfc822; gone@cliente.test\r
Original-Recipient: rfc822;gone@cliente.test\r
Action: failed\r
Status: 5.1.1\r
Remote-MTA: dns; mx.cliente.test\r
Diagnostic-Code: smtp; 550 5.1.1 <gone@cliente.test>: Recipient address\r
    rejected: User unknown\r
\r
--4Xk2.1763877600/mx.farol.test\r
Content-Description: Undelivered Message Headers\r
Content-Type: text/rfc822-headers\r
Content-Transfer-Encoding: 8bit\r
\r
Return-Path: <bounces+0123456789abcdef0123456789abcdef-00112233aabbccdd@mail.farol.test>\r
From: Farol <vendas@farol.test>\r
To: gone@cliente.test\r
Subject: Oferta\r
Message-ID: <0123456789abcdef0123456789abcdef@farol.test>\r
\r
--4Xk2.1763877600/mx.farol.test--\r
";

    #[test]
    fn a_postfix_hard_bounce_is_read() {
        let dsn = parse(POSTFIX.as_bytes()).unwrap().unwrap();
        assert_eq!(dsn.reporting_mta.as_deref(), Some("dns; mx.farol.test"));
        assert_eq!(dsn.recipients.len(), 1);
        let r = &dsn.recipients[0];
        assert_eq!(r.final_recipient.as_deref(), Some("gone@cliente.test"));
        assert_eq!(r.original_recipient.as_deref(), Some("gone@cliente.test"));
        assert_eq!(r.action, Action::Failed);
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some("smtp; 550 5.1.1 <gone@cliente.test>: Recipient address rejected: User unknown")
        );
        assert_eq!(
            r.delivery_status(),
            Some(DeliveryStatus::Bounced { permanent: true })
        );
        assert_eq!(
            dsn.original_message_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef@farol.test")
        );
        assert!(dsn.delivered_to[0].starts_with("bounces+0123456789abcdef"));
    }

    /// An Exchange Online NDR: the human part is a nested multipart/alternative in
    /// quoted-printable, the report writes `rfc822;` without a space and adds `X-Display-Name`,
    /// and the whole original comes back as `message/rfc822`.
    const EXCHANGE: &str =
        "From: <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@cliente.test>\r
To: <bounces+0123456789abcdef0123456789abcdef-00112233aabbccdd@mail.farol.test>\r
Date: Mon, 23 Nov 2026 06:00:03 +0000\r
Content-Type: multipart/report; report-type=delivery-status;\r
\tboundary=\"b5c3e6f1-0a2b-4c3d-9e8f-7a6b5c4d3e2f\"\r
X-MS-Exchange-Message-Is-Ndr:\r
Subject: Undeliverable: Oferta\r
Auto-Submitted: auto-replied\r
MIME-Version: 1.0\r
\r
--b5c3e6f1-0a2b-4c3d-9e8f-7a6b5c4d3e2f\r
Content-Type: multipart/alternative; differences=Content-Type;\r
\tboundary=\"a1b2c3d4-aaaa-bbbb-cccc-1234567890ab\"\r
\r
--a1b2c3d4-aaaa-bbbb-cccc-1234567890ab\r
Content-Type: text/plain; charset=\"us-ascii\"\r
Content-Transfer-Encoding: quoted-printable\r
\r
Your message to gone@cliente.test couldn't be delivered.=0D=0AThe email =\r
address wasn't found at the destination domain.\r
\r
--a1b2c3d4-aaaa-bbbb-cccc-1234567890ab\r
Content-Type: text/html; charset=\"us-ascii\"\r
Content-Transfer-Encoding: quoted-printable\r
\r
<html><body>Your message to gone@cliente.test couldn=27t be delivered.</body></html>\r
--a1b2c3d4-aaaa-bbbb-cccc-1234567890ab--\r
\r
--b5c3e6f1-0a2b-4c3d-9e8f-7a6b5c4d3e2f\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns;BN8PR11MB3700.namprd11.prod.outlook.com\r
Received-From-MTA: dns;mx.farol.test\r
Arrival-Date: Mon, 23 Nov 2026 06:00:01 +0000\r
\r
Final-Recipient: rfc822;gone@cliente.test\r
Action: failed\r
Status: 5.1.10\r
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not\r
 found by SMTP address lookup\r
X-Display-Name: Gone\r
\r
\r
--b5c3e6f1-0a2b-4c3d-9e8f-7a6b5c4d3e2f\r
Content-Type: message/rfc822\r
\r
Return-Path: bounces+0123456789abcdef0123456789abcdef-00112233aabbccdd@mail.farol.test\r
From: Farol <vendas@farol.test>\r
To: <gone@cliente.test>\r
Subject: Oferta\r
Message-ID: <0123456789abcdef0123456789abcdef@farol.test>\r
Content-Type: text/plain; charset=utf-8\r
\r
Ola Ana\r
\r
--b5c3e6f1-0a2b-4c3d-9e8f-7a6b5c4d3e2f--\r
";

    #[test]
    fn an_exchange_ndr_is_read() {
        let dsn = parse(EXCHANGE.as_bytes()).unwrap().unwrap();
        assert_eq!(
            dsn.reporting_mta.as_deref(),
            Some("dns;BN8PR11MB3700.namprd11.prod.outlook.com")
        );
        assert_eq!(dsn.recipients.len(), 1);
        let r = &dsn.recipients[0];
        assert_eq!(r.final_recipient.as_deref(), Some("gone@cliente.test"));
        assert_eq!(r.status.as_deref(), Some("5.1.10"));
        assert_eq!(
            r.delivery_status(),
            Some(DeliveryStatus::Bounced { permanent: true })
        );
        assert!(
            r.diagnostic
                .as_deref()
                .unwrap()
                .ends_with("Recipient not found by SMTP address lookup")
        );
        assert_eq!(
            dsn.original_message_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef@farol.test")
        );
        assert_eq!(
            dsn.delivered_to,
            ["<bounces+0123456789abcdef0123456789abcdef-00112233aabbccdd@mail.farol.test>"]
        );
    }

    #[test]
    fn delays_and_temporary_failures_are_not_hard_bounces() {
        let delayed = POSTFIX
            .replace("Action: failed", "Action: delayed")
            .replace("Status: 5.1.1", "Status: 4.4.1");
        let r = &parse(delayed.as_bytes()).unwrap().unwrap().recipients[0];
        assert_eq!(r.delivery_status(), Some(DeliveryStatus::Deferred));
        let gave_up = POSTFIX.replace("Status: 5.1.1", "Status: 4.4.7 (expired)");
        let r = &parse(gave_up.as_bytes()).unwrap().unwrap().recipients[0];
        assert_eq!(r.status.as_deref(), Some("4.4.7"));
        assert_eq!(
            r.delivery_status(),
            Some(DeliveryStatus::Bounced { permanent: false })
        );
        let relayed = POSTFIX.replace("Action: failed", "Action: relayed");
        let r = &parse(relayed.as_bytes()).unwrap().unwrap().recipients[0];
        assert_eq!(r.delivery_status(), None);
    }

    #[test]
    fn messages_that_are_not_reports_are_told_apart_from_garbage() {
        let reply = "From: ana@cliente.test\nTo: bounces@mail.farol.test\nSubject: Re: Oferta\n\nObrigada!\n";
        assert_eq!(parse(reply.as_bytes()).unwrap(), None);
        assert_eq!(parse(b""), Err(DsnError::Size));
        assert!(matches!(
            parse(b"\nno headers at all"),
            Err(DsnError::NotAMessage(_))
        ));
        assert_eq!(
            parse(b"Content-Type: multipart/report\n\n--x\n\n--x--\n"),
            Err(DsnError::NoBoundary)
        );
    }

    #[test]
    fn quoted_printable_and_base64_parts_are_decoded() {
        assert_eq!(
            decode_quoted_printable("Diagnostic-Code: smtp; 550=20user=\nunknown =3D gone"),
            "Diagnostic-Code: smtp; 550 userunknown = gone"
        );
        let status = "Reporting-MTA: dns; x\n\nFinal-Recipient: rfc822; a@b.test\nAction: failed\nStatus: 5.2.2\n";
        let encoded = base64::engine::general_purpose::STANDARD.encode(status);
        let msg = format!(
            "To: x@y.test\nContent-Type: multipart/report; boundary=b1; report-type=delivery-status\n\n--b1\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n{encoded}\n--b1--\n"
        );
        let dsn = parse(msg.as_bytes()).unwrap().unwrap();
        assert_eq!(dsn.recipients[0].status.as_deref(), Some("5.2.2"));
        assert_eq!(
            dsn.recipients[0].final_recipient.as_deref(),
            Some("a@b.test")
        );
    }
}
