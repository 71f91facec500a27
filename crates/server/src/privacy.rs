//! What call records keep of the numbers dialled (`[privacy] store_dialled_numbers`).
//!
//! The number is masked when the record is written to the store; the call itself dials the
//! full number, which stays only in this node's memory while the call is cached there.
//! `GetPhoneCallInformation` never shows the number either way (its `PhoneCallInformation`
//! has no such element); it appears only in `openum calls list/export`.

use serde::Deserialize;

/// `store_dialled_numbers`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum DialledNumbers {
    /// The normalised number as dialled (default).
    #[default]
    Full,
    /// Every digit but the last four becomes `*`; a number of six digits or fewer (an
    /// extension) is masked entirely. Other characters (a leading `+`) and the length are kept:
    /// `+14255551234` → `+*******1234`, `4711` → `****`.
    Masked,
}

/// Digits kept at the end of a masked number.
const KEPT_DIGITS: usize = 4;
/// Numbers with at most this many digits are masked entirely.
const SHORT_NUMBER_DIGITS: usize = 6;

impl DialledNumbers {
    /// The form of `number` the store keeps.
    pub fn apply(self, number: &str) -> String {
        match self {
            Self::Full => number.to_owned(),
            Self::Masked => mask(number),
        }
    }
}

fn mask(number: &str) -> String {
    let digits = number.chars().filter(char::is_ascii_digit).count();
    let keep = if digits > SHORT_NUMBER_DIGITS {
        KEPT_DIGITS
    } else {
        0
    };
    let mut seen = 0;
    number
        .chars()
        .map(|c| {
            if !c.is_ascii_digit() {
                return c;
            }
            seen += 1;
            if seen > digits - keep {
                c
            } else {
                '*'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_numbers_keep_only_their_last_four_digits() {
        let m = DialledNumbers::Masked;
        assert_eq!(m.apply("+14255551234"), "+*******1234");
        assert_eq!(m.apply("4255551234"), "******1234");
        assert_eq!(m.apply("5551234"), "***1234");
        assert_eq!(m.apply("123456"), "******");
        assert_eq!(m.apply("4711"), "****");
        assert_eq!(m.apply(""), "");
    }

    #[test]
    fn full_numbers_are_stored_as_dialled() {
        assert_eq!(DialledNumbers::Full.apply("+14255551234"), "+14255551234");
    }
}
