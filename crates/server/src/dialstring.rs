//! Normalisation of the `DialString` a user typed into a plain number.
//!
//! Accepts what people and address books write: spaces, dashes, dots, brackets, a leading `+`,
//! and `tel:` URIs (RFC 3966, parameters after `;` dropped). The result is `+` and digits, or
//! digits only. Anything else is not a phone number (`ErrorInvalidPhoneNumber`). The dial plan
//! (which numbers may be dialled, and how they are rewritten) applies to this normalised form.

/// Longest number accepted after normalisation (E.164 allows 15 digits; extensions and
/// international prefixes need a few more).
pub const MAX_DIGITS: usize = 20;

/// Normalises `input`, or returns `None` if it is not a phone number.
pub fn normalize(input: &str) -> Option<String> {
    let mut s = input.trim();
    if s.len() > 64 {
        return None;
    }
    if s.len() >= 4 && s[..4].eq_ignore_ascii_case("tel:") {
        s = &s[4..];
        s = s.split(';').next().unwrap_or_default();
    }
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        match c {
            '0'..='9' => out.push(c),
            '+' if i == 0 => out.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    let digits = out.trim_start_matches('+').len();
    (1..=MAX_DIGITS).contains(&digits).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normalises_what_people_type() {
        for (input, expected) in [
            ("5555551212", Some("5555551212")),
            (" (555) 555-1212 ", Some("5555551212")),
            ("+1 425.555.0100", Some("+14255550100")),
            ("tel:+1-201-555-0123", Some("+12015550123")),
            ("TEL:4711;phone-context=example.com", Some("4711")),
            ("", None),
            ("   ", None),
            ("+", None),
            ("12+34", None),
            ("555-CALL-NOW", None),
            ("sip:alice@example.com", None),
            ("1234567890123456789012", None),
            ("١٢٣", None),
        ] {
            assert_eq!(normalize(input).as_deref(), expected, "{input:?}");
        }
    }
}
