//! Which attachment of an item is its voice message (the rules are in the crate docs).

use ews_proto::mailbox::{Attachment, FileAttachment, Item};

use crate::{AttachmentRef, BadResponse, MailboxError, VoiceMessage};

/// File-name extensions of audio formats, for attachments without a useful content type.
const AUDIO_EXTENSIONS: [&str; 4] = [".wav", ".mp3", ".wma", ".gsm"];

/// The message-class prefixes of voice messages ([MS-OXOUM] §2.2.2.1; the protected form
/// `IPM.Note.rpmsg.Microsoft.Voicemail` of [MS-OXORMMS]), compared case-insensitively.
const VOICE_MAIL_CLASSES: [&str; 2] = [
    "ipm.note.microsoft.voicemail",
    "ipm.note.rpmsg.microsoft.voicemail",
];

/// Whether `item_class` is a voice-mail class: it starts with `IPM.Note.Microsoft.Voicemail`
/// or `IPM.Note.rpmsg.Microsoft.Voicemail`, in any case.
pub fn is_voice_mail_class(item_class: &str) -> bool {
    let class = item_class.trim().to_ascii_lowercase();
    VOICE_MAIL_CLASSES.iter().any(|p| class.starts_with(p))
}

/// Whether `attachment` is an audio attachment: not inline, and its content type is `audio/*`
/// (any case, parameters ignored), or — when the content type is missing, empty or
/// `application/octet-stream` — its name ends in `.wav`, `.mp3`, `.wma` or `.gsm` (any case).
pub fn is_audio_attachment(attachment: &FileAttachment) -> bool {
    if attachment.is_inline == Some(true) {
        return false;
    }
    let content_type = attachment
        .content_type
        .as_deref()
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if content_type.starts_with("audio/") {
        return true;
    }
    if !(content_type.is_empty() || content_type == "application/octet-stream") {
        return false;
    }
    let name = attachment
        .name
        .as_deref()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    AUDIO_EXTENSIONS.iter().any(|ext| name.ends_with(ext))
}

/// The file attachments that can be fetched and are not inline, in document order.
fn candidates(item: &Item) -> impl Iterator<Item = &FileAttachment> {
    item.attachments.iter().filter_map(|a| match a {
        Attachment::File(f) if f.is_inline != Some(true) && f.attachment_id.is_some() => Some(f),
        _ => None,
    })
}

/// The names listed by a `PidTagVoiceMessageAttachmentOrder` value, first to last: split at
/// `;`, spaces around each name trimmed, empty entries (a leading or trailing `;`) skipped.
pub fn attachment_order(value: &str) -> impl Iterator<Item = &str> {
    value.split(';').map(str::trim).filter(|n| !n.is_empty())
}

/// The item's voice-message attachment: the first name of `PidTagVoiceMessageAttachmentOrder`
/// that names a candidate (names compared case-insensitively), else the first audio attachment.
pub fn choose_audio(item: &Item) -> Option<&FileAttachment> {
    if let Some(order) = item.voice_message_attachment_order() {
        for wanted in attachment_order(order) {
            let named = candidates(item).find(|f| {
                f.name
                    .as_deref()
                    .is_some_and(|n| n.trim().eq_ignore_ascii_case(wanted))
            });
            if named.is_some() {
                return named;
            }
        }
    }
    candidates(item).find(|f| is_audio_attachment(f))
}

impl VoiceMessage {
    /// The voice message of a `GetItem` answer's item, chosen by the crate's rules.
    ///
    /// Fails with [`MailboxError::NoAudio`] when nothing is playable, and with
    /// [`MailboxError::BadResponse`] when the item has no `ItemId`.
    pub fn from_item(item: &Item) -> Result<Self, MailboxError> {
        let id = item
            .item_id
            .as_ref()
            .ok_or(MailboxError::BadResponse(BadResponse::Missing(
                "the GetItem answer's item has no ItemId",
            )))?;
        let item_class = item.item_class.clone().unwrap_or_default();
        let Some(audio) = choose_audio(item) else {
            return Err(MailboxError::NoAudio {
                item_class,
                attachments: item.attachments.len(),
            });
        };
        Ok(Self {
            item_id: id.id.clone(),
            change_key: id.change_key.clone(),
            item_class,
            subject: item.subject.clone(),
            audio: AttachmentRef {
                // `candidates` only yields attachments with an id.
                id: audio
                    .attachment_id
                    .as_ref()
                    .map(|a| a.id.clone())
                    .unwrap_or_default(),
                name: audio.name.clone().unwrap_or_default(),
                content_type: audio.content_type.clone(),
                size: audio.size,
            },
        })
    }

    /// Whether the item's class is a voice-mail class ([`is_voice_mail_class`]).
    pub fn is_voice_mail_class(&self) -> bool {
        is_voice_mail_class(&self.item_class)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

    use super::*;

    #[test]
    fn voice_mail_classes_in_any_case() {
        for class in [
            "IPM.Note.Microsoft.Voicemail.UM.CA",
            "IPM.Note.Microsoft.Voicemail.UM",
            "ipm.note.microsoft.voicemail",
            "IPM.Note.rpmsg.Microsoft.Voicemail.UM.CA",
            "IPM.NOTE.RPMSG.MICROSOFT.VOICEMAIL.UM",
        ] {
            assert!(is_voice_mail_class(class), "{class}");
        }
        for class in [
            "IPM.Note",
            "IPM.Note.Microsoft.Missed.Voice",
            "IPM.Note.Microsoft.Fax.CA",
            "",
        ] {
            assert!(!is_voice_mail_class(class), "{class}");
        }
    }

    #[test]
    fn attachment_order_as_ms_oxoum_writes_it() {
        // The spec's own acceptable spellings.
        for value in ["vm.wav", ";vm.wav", "; vm.wav"] {
            assert_eq!(attachment_order(value).collect::<Vec<_>>(), ["vm.wav"]);
        }
        for value in [
            "vm3.wav;vm2.wav;vm1.wav",
            "vm3.wav; vm2.wav; vm1.wav",
            ";vm3.wav;vm2.wav;vm1.wav",
            "vm3.wav;vm2.wav;vm1.wav;",
        ] {
            assert_eq!(
                attachment_order(value).collect::<Vec<_>>(),
                ["vm3.wav", "vm2.wav", "vm1.wav"]
            );
        }
        assert_eq!(attachment_order(" ; ").count(), 0);
    }

    fn file(
        name: Option<&str>,
        content_type: Option<&str>,
        inline: Option<bool>,
    ) -> FileAttachment {
        FileAttachment {
            name: name.map(Into::into),
            content_type: content_type.map(Into::into),
            is_inline: inline,
            ..FileAttachment::default()
        }
    }

    #[test]
    fn audio_by_type_or_by_extension_when_the_type_says_nothing() {
        for ct in [
            "audio/mp3",
            "audio/wma",
            "audio/gsm",
            "audio/WAV",
            "audio/x-wav",
            "audio/mpeg",
            "AUDIO/X-MS-WMA",
            "audio/wav; name=\"vm.wav\"",
        ] {
            assert!(
                is_audio_attachment(&file(Some("x"), Some(ct), None)),
                "{ct}"
            );
        }
        for name in ["vm.wav", "VM.MP3", "a.b.wma", "msg.gsm "] {
            assert!(
                is_audio_attachment(&file(Some(name), None, Some(false))),
                "{name}"
            );
            assert!(
                is_audio_attachment(&file(Some(name), Some(""), None)),
                "{name}"
            );
            assert!(
                is_audio_attachment(&file(Some(name), Some("Application/Octet-Stream"), None)),
                "{name}"
            );
            assert!(
                !is_audio_attachment(&file(Some(name), Some("text/plain"), None)),
                "{name}"
            );
        }
        assert!(!is_audio_attachment(&file(
            Some("vm.wav"),
            Some("audio/wav"),
            Some(true)
        )));
        assert!(!is_audio_attachment(&file(Some("vm.wave"), None, None)));
        assert!(!is_audio_attachment(&file(None, None, None)));
        assert!(!is_audio_attachment(&file(
            Some("photo.png"),
            Some("image/png"),
            None
        )));
    }
}
