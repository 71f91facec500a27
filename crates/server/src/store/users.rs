//! The account records behind authentication and `openum user|token`.
//!
//! A user's *credential generation* is a counter in the users table, bumped in the same
//! statement as every change to what the user may log in with: a new password, disabling or
//! enabling, a token revoked. A process that verified a credential remembers the generation it
//! saw and trusts the verification only while the store still holds that generation, so a
//! change takes effect at once in every process sharing the store.
//!
//! A token's *id* is the first [`TOKEN_ID_LEN`] hex digits of its stored SHA-256 hash: stable on
//! both backends, derived from nothing secret (the token itself has 256 random bits; its hash
//! reveals nothing about it), and what `openum token list` shows and `token revoke` takes.

use calls::UnixSeconds;

use super::VoicemailItem;

/// Hex digits of a token's hash that make its id (64 bits).
pub const TOKEN_ID_LEN: usize = 16;

/// The id of the token with this stored hash.
pub fn token_id(token_hash: &str) -> String {
    token_hash.chars().take(TOKEN_ID_LEN).collect()
}

/// What a password check needs, read in one statement (so the generation belongs to the hash).
#[derive(Clone, Eq, PartialEq)]
pub struct Credential {
    /// The user's name as stored.
    pub name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// The credential generation.
    pub generation: i64,
    /// Whether the user is disabled (refused whatever the credential).
    pub disabled: bool,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .field("generation", &self.generation)
            .field("disabled", &self.disabled)
            .finish()
    }
}

/// A user's generation and disabled flag.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct CredentialState {
    /// The credential generation.
    pub generation: i64,
    /// Whether the user is disabled.
    pub disabled: bool,
}

/// A token's owner, with the owner's generation and disabled flag.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct TokenCredential {
    /// The user the token acts as.
    pub user: String,
    /// The user's credential generation.
    pub generation: i64,
    /// Whether the user is disabled.
    pub disabled: bool,
}

/// A user as `openum user list` shows it.
#[derive(Clone, Debug, Eq, PartialEq, serde::Serialize)]
pub struct UserSummary {
    /// Login name.
    pub name: String,
    /// Whether Play on Phone is enabled.
    pub play_on_phone: bool,
    /// Whether the user is disabled (every login refused).
    pub disabled: bool,
    /// How many API tokens act as the user.
    pub tokens: i64,
    /// How many imported voice-mail items the user owns.
    pub voicemail_items: i64,
}

/// An API token as `openum token list` shows it: never the secret, nor its hash.
#[derive(Clone, Debug, Eq, PartialEq, serde::Serialize)]
pub struct TokenInfo {
    /// The token's id ([`token_id`]).
    pub id: String,
    /// The user it acts as.
    pub user: String,
    /// Its label.
    pub label: String,
    /// When it was created (Unix seconds).
    pub created_at: UnixSeconds,
}

/// What deleting a user removed from the store.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct DeletedUser {
    /// API tokens removed.
    pub tokens: u64,
    /// Voice-mail item records removed (their audio files are the caller's to remove).
    pub voicemail_items: Vec<VoicemailItem>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_id_is_the_start_of_its_hash_and_a_credential_hides_its_hash() {
        let hash = crate::auth::token_hash("oum_x");
        assert_eq!(token_id(&hash), hash[..TOKEN_ID_LEN]);
        let shown = format!(
            "{:?}",
            Credential {
                name: "a".into(),
                password_hash: "$argon2id$secret".into(),
                generation: 1,
                disabled: false,
            }
        );
        assert!(!shown.contains("secret"), "{shown}");
    }
}
