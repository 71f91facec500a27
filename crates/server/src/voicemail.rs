//! Voice-mail item identifiers.
//!
//! An openum ItemId is standard base64 (with padding) of a version byte `0x01` followed by the
//! item's 16-byte UUID: 24 characters, XML-safe, opaque to clients. Decoding accepts non-zero
//! trailing bits (clients may hand back ids in a non-canonical spelling) and anything that is not
//! this shape is *malformed* rather than *not found* (decisions §5).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

const VERSION: u8 = 1;

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why an ItemId was refused before any lookup.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ItemIdError {
    /// `Id=""` → `ErrorInvalidIdEmpty`.
    Empty,
    /// Not an openum ItemId → `ErrorInvalidIdMalformed`.
    Malformed,
}

/// Mints a new ItemId.
pub fn mint_item_id() -> String {
    let mut raw = Vec::with_capacity(17);
    raw.push(VERSION);
    raw.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Checks that `id` is an openum ItemId; returns the item's UUID.
pub fn parse_item_id(id: &str) -> Result<uuid::Uuid, ItemIdError> {
    if id.trim().is_empty() {
        return Err(ItemIdError::Empty);
    }
    let raw = LENIENT.decode(id).map_err(|_| ItemIdError::Malformed)?;
    match raw.split_first() {
        Some((&VERSION, rest)) if rest.len() == 16 => {
            uuid::Uuid::from_slice(rest).map_err(|_| ItemIdError::Malformed)
        }
        _ => Err(ItemIdError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_parse_and_foreign_ids_are_malformed() {
        let id = mint_item_id();
        assert_eq!(id.len(), 24);
        assert!(parse_item_id(&id).is_ok());
        assert_eq!(parse_item_id(""), Err(ItemIdError::Empty));
        assert_eq!(parse_item_id("   "), Err(ItemIdError::Empty));
        // The Microsoft doc example: valid-looking base64 with trailing bits, not ours.
        assert_eq!(parse_item_id("AkAjzQTbY/i="), Err(ItemIdError::Malformed));
        assert_eq!(parse_item_id("not base64!"), Err(ItemIdError::Malformed));
        // An Exchange EwsId prefix.
        assert_eq!(
            parse_item_id("AAMkADk0ZTFmNzUzLWI5NTQtNGYyMy1hNDQxLWQ0NmEzZjFkYmM4OABGAAAAAAA="),
            Err(ItemIdError::Malformed)
        );
    }

    #[test]
    fn non_canonical_trailing_bits_are_accepted() {
        let id = mint_item_id();
        // Flip the unused low bits of the last significant character.
        let mut chars: Vec<char> = id.chars().collect();
        let last = chars.len() - 2; // one '=' of padding for 17 bytes
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let pos = alphabet.find(chars[last]).unwrap();
        chars[last] = alphabet.as_bytes()[(pos & !0b11) | 0b01] as char;
        let tweaked: String = chars.into_iter().collect();
        assert_eq!(parse_item_id(&tweaked), parse_item_id(&id));
    }
}
