//! Exchange-style identifiers: folder, item and attachment ids and change keys.
//!
//! Exchange documents its ids as opaque strings (`ews-identifiers-in-exchange`), but what it sends
//! has a stable layout, reverse-engineered publicly and partly described in [MS-OXCEXT] and
//! [MS-OXCDATA]. The double mints ids of that layout so that they look, measure and decode like
//! Exchange's (a client that only stores them sees no difference):
//!
//! ```text
//! base64( 0x00                      no compression
//!         0x03                      MailboxItemMailboxGuidBased
//!         u16le 36, 36 ASCII bytes  the mailbox GUID in "D" format
//!         0x00                      id processing instruction: normal
//!         u16le n, n bytes          the MAPI entry id (46 bytes for a folder, 70 for a message)
//!         [attachments only: 0x01, u16le 18, u16le 16, 16-byte attachment key] )
//! ```
//!
//! A message id is 113 bytes (152 base64 characters, starting `AAMkA`); an attachment id 134 bytes
//! (180 characters). The entry ids are long-term ones: flags, the store's provider UID, the type
//! (`0x0001` folder, `0x0007` message), then database GUID + 6-byte global counter for the folder
//! (and again for the message), each counter followed by two zero bytes. Change keys are
//! `u32le kind (1 folder, 9 message), u32le 22, database GUID, 6-byte change number`, which base64
//! renders as `AQAAABYAAAA…` and `CQAAABYAAAA…`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

const ENTRY_FOLDER: u16 = 0x0001;
const ENTRY_MESSAGE: u16 = 0x0007;
const CHANGE_KEY_FOLDER: u32 = 1;
const CHANGE_KEY_MESSAGE: u32 = 9;

/// What a well-formed id names, and in which mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct IdShape {
    /// The mailbox GUID embedded in the id, as 36 lowercase characters.
    pub(super) mailbox_guid: String,
    pub(super) kind: IdKind,
}

/// The kind of object a well-formed id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IdKind {
    Folder,
    Item,
    Attachment,
}

/// The id material of one mailbox, derived from its primary SMTP address so that the same
/// mailbox always gets the same ids and two mailboxes never share one.
#[derive(Clone, Debug)]
pub(super) struct MailboxIds {
    guid: String,
    provider_uid: [u8; 16],
    database: [u8; 16],
}

impl MailboxIds {
    pub(super) fn for_address(primary_smtp: &str) -> Self {
        let hash = |label: &str| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(b"openum-testkit mailbox double\0");
            h.update(label.as_bytes());
            h.update(b"\0");
            h.update(primary_smtp.to_ascii_lowercase().as_bytes());
            h.finalize().into()
        };
        let g = hash("mailbox-guid");
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&g[..16]);
        guid[6] = (guid[6] & 0x0f) | 0x40; // version 4
        guid[8] = (guid[8] & 0x3f) | 0x80; // RFC 4122 variant
        let mut provider_uid = [0u8; 16];
        provider_uid.copy_from_slice(&g[16..]);
        let mut database = [0u8; 16];
        database.copy_from_slice(&hash("database-guid")[..16]);
        database[0] &= 0x3f; // change keys then read `CQAAABYAAAA…`, like the documented ones
        Self {
            guid: guid_text(&guid),
            provider_uid,
            database,
        }
    }

    /// The mailbox GUID ("D" format, lowercase), as embedded in every id of this mailbox.
    pub(super) fn guid(&self) -> &str {
        &self.guid
    }

    /// The id of the folder with global counter `folder_gcn`.
    pub(super) fn folder_id(&self, folder_gcn: u64) -> String {
        let mut entry = self.entry_head(ENTRY_FOLDER);
        self.push_object(&mut entry, folder_gcn);
        STANDARD.encode(self.store_id(&entry))
    }

    /// The id of the message with global counter `item_gcn` in folder `folder_gcn`.
    pub(super) fn item_id(&self, folder_gcn: u64, item_gcn: u64) -> String {
        STANDARD.encode(self.store_id(&self.message_entry(folder_gcn, item_gcn)))
    }

    /// The id of attachment number `index` (0-based) of that message.
    pub(super) fn attachment_id(&self, folder_gcn: u64, item_gcn: u64, index: u32) -> String {
        let mut bytes = self.store_id(&self.message_entry(folder_gcn, item_gcn));
        let mut h = Sha256::new();
        h.update(self.guid.as_bytes());
        h.update(item_gcn.to_be_bytes());
        h.update(index.to_be_bytes());
        let key: [u8; 32] = h.finalize().into();
        bytes.push(0x01); // one attachment level
        bytes.extend_from_slice(&18u16.to_le_bytes());
        bytes.extend_from_slice(&16u16.to_le_bytes());
        bytes.extend_from_slice(&key[..16]);
        STANDARD.encode(bytes)
    }

    /// A folder change key for change number `change`.
    pub(super) fn folder_change_key(&self, change: u64) -> String {
        self.change_key(CHANGE_KEY_FOLDER, change)
    }

    /// A message change key for change number `change`.
    pub(super) fn item_change_key(&self, change: u64) -> String {
        self.change_key(CHANGE_KEY_MESSAGE, change)
    }

    fn change_key(&self, kind: u32, change: u64) -> String {
        let mut bytes = Vec::with_capacity(30);
        bytes.extend_from_slice(&kind.to_le_bytes());
        bytes.extend_from_slice(&22u32.to_le_bytes());
        bytes.extend_from_slice(&self.database);
        bytes.extend_from_slice(&counter(change));
        STANDARD.encode(bytes)
    }

    fn message_entry(&self, folder_gcn: u64, item_gcn: u64) -> Vec<u8> {
        let mut entry = self.entry_head(ENTRY_MESSAGE);
        self.push_object(&mut entry, folder_gcn);
        self.push_object(&mut entry, item_gcn);
        entry
    }

    fn entry_head(&self, kind: u16) -> Vec<u8> {
        let mut entry = Vec::with_capacity(70);
        entry.extend_from_slice(&[0, 0, 0, 0]); // flags
        entry.extend_from_slice(&self.provider_uid);
        entry.extend_from_slice(&kind.to_le_bytes());
        entry
    }

    fn push_object(&self, entry: &mut Vec<u8>, gcn: u64) {
        entry.extend_from_slice(&self.database);
        entry.extend_from_slice(&counter(gcn));
        entry.extend_from_slice(&[0, 0]);
    }

    fn store_id(&self, entry: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(43 + entry.len() + 21);
        bytes.push(0x00); // no compression
        bytes.push(0x03); // MailboxItemMailboxGuidBased
        bytes.extend_from_slice(&36u16.to_le_bytes());
        bytes.extend_from_slice(self.guid.as_bytes());
        bytes.push(0x00); // processing instruction: normal
        bytes.extend_from_slice(&u16::try_from(entry.len()).unwrap_or(u16::MAX).to_le_bytes());
        bytes.extend_from_slice(entry);
        bytes
    }
}

/// Reads an id of the layout above. `None` means "not an id" (not base64, another layout, or
/// truncated): Exchange's `ErrorInvalidIdMalformed`.
pub(super) fn parse(id: &str) -> Option<IdShape> {
    let bytes = STANDARD.decode(id).ok()?;
    let mut input = Cursor(&bytes);
    if input.take(2)? != [0x00, 0x03] {
        return None;
    }
    let guid_len = input.u16le()?;
    let guid = std::str::from_utf8(input.take(guid_len)?).ok()?;
    if !is_guid_text(guid) {
        return None;
    }
    if input.take(1)?[0] > 3 {
        return None;
    }
    let entry_len = input.u16le()?;
    let entry = input.take(entry_len)?;
    let kind = match (entry.get(20..22)?, entry.len()) {
        ([0x01, 0x00], 46) => IdKind::Folder,
        ([0x07, 0x00], 70) => IdKind::Item,
        _ => return None,
    };
    let kind = match (kind, input.0) {
        (kind, []) => kind,
        (IdKind::Item, [0x01, 18, 0, 16, 0, key @ ..]) if key.len() == 16 => IdKind::Attachment,
        _ => return None,
    };
    Some(IdShape {
        mailbox_guid: guid.to_ascii_lowercase(),
        kind,
    })
}

/// Reads a byte string front to back.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u16le(&mut self) -> Option<usize> {
        let b = self.take(2)?;
        Some(usize::from(u16::from_le_bytes([b[0], b[1]])))
    }
}

fn counter(value: u64) -> [u8; 6] {
    let b = value.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

fn guid_text(g: &[u8; 16]) -> String {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    format!(
        "{}-{}-{}-{}-{}",
        hex(&g[0..4]),
        hex(&g[4..6]),
        hex(&g[6..8]),
        hex(&g[8..10]),
        hex(&g[10..16])
    )
}

fn is_guid_text(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_ids_measure_and_start_like_exchange_ones() {
        let ids = MailboxIds::for_address("alice@example.com");
        let item = ids.item_id(0x010c, 0x0123_4567);
        assert_eq!(item.len(), 152);
        assert!(item.starts_with("AAMkA"), "{item}");
        let attachment = ids.attachment_id(0x010c, 0x0123_4567, 0);
        assert_eq!(attachment.len(), 180);
        assert!(attachment.starts_with(&item[..148]), "{attachment}");
        assert_eq!(ids.folder_id(0x010c).len(), 120);
        assert!(ids.item_change_key(7).starts_with("CQAAABYAAAA"));
        assert!(ids.folder_change_key(7).starts_with("AQAAABYAAAA"));
        assert_eq!(ids.item_change_key(7).len(), 40);
    }

    #[test]
    fn ids_parse_back_to_their_kind_and_mailbox() {
        let ids = MailboxIds::for_address("alice@example.com");
        let shape = |id: &str| parse(id).map(|s| (s.mailbox_guid, s.kind));
        let guid = ids.guid().to_owned();
        assert_eq!(
            shape(&ids.folder_id(1)),
            Some((guid.clone(), IdKind::Folder))
        );
        assert_eq!(
            shape(&ids.item_id(1, 2)),
            Some((guid.clone(), IdKind::Item))
        );
        assert_eq!(
            shape(&ids.attachment_id(1, 2, 3)),
            Some((guid, IdKind::Attachment))
        );
    }

    #[test]
    fn two_mailboxes_embed_different_guids() {
        let a = MailboxIds::for_address("alice@example.com");
        let b = MailboxIds::for_address("bob@example.com");
        assert_ne!(a.guid(), b.guid());
        assert_ne!(a.item_id(1, 2), b.item_id(1, 2));
        assert_eq!(
            a.guid(),
            MailboxIds::for_address("Alice@Example.COM").guid()
        );
    }

    #[test]
    fn strings_that_are_not_ids_do_not_parse() {
        let ids = MailboxIds::for_address("alice@example.com");
        let item = ids.item_id(1, 2);
        for bad in [
            "",
            "not base64!",
            "AAMkAGI2",
            "AkAjzQTbY/g=",
            &item[..item.len() - 4],
            &format!("{item}AAAA"),
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
