//! PhoneCallIds: URL-safe unpadded base64 of `<uuid-v4>@<node>` (decisions §7) — 122 random
//! bits, XML- and URL-safe, and naming the node that owns the call.

use base64::Engine as _;

/// Mints a PhoneCallId for a call owned by `node`.
pub fn mint_phone_call_id(node: &str) -> String {
    let raw = format!("{}@{node}", uuid::Uuid::new_v4());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// The parts of a PhoneCallId minted by [`mint_phone_call_id`].
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PhoneCallIdParts {
    /// The random part (a UUID in its hyphenated spelling).
    pub uuid: String,
    /// The owning node.
    pub node: String,
}

/// Splits a PhoneCallId minted by [`mint_phone_call_id`]; `None` for anything else (ids are
/// opaque to clients, so a foreign id is simply one openum never issued).
pub fn parse_phone_call_id(id: &str) -> Option<PhoneCallIdParts> {
    // Every failure below means "not an id openum minted", which is what `None` says.
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id)
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (uuid, node) = raw.split_once('@')?;
    uuid::Uuid::parse_str(uuid).ok()?;
    Some(PhoneCallIdParts {
        uuid: uuid.to_owned(),
        node: node.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_call_ids_are_unique_url_safe_and_name_their_node() {
        let a = mint_phone_call_id("node-1");
        let b = mint_phone_call_id("node-1");
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        let parts = parse_phone_call_id(&a).unwrap();
        assert_eq!(parts.node, "node-1");
        assert_eq!(parts.uuid.len(), 36);
        assert_eq!(parse_phone_call_id("OWVl4NWb3N29t"), None);
    }
}
