//! What an ASF file (`.wma`) holds: the codec of its audio stream, read from the header's
//! Stream Properties Object, so that messages about it can name the codec.
//!
//! Layout from the ASF specification (revision 01.20.03): the Header Object (GUID, size, object
//! count, two reserved bytes) holds objects (GUID, size, data); a Stream Properties Object
//! whose stream type is Audio Media carries a `WAVEFORMATEX` as its type-specific data, and that
//! starts with the format tag.

use std::fmt;

use crate::WavFormatTag;

/// `ASF_Stream_Properties_Object`, B7DC0791-A9B7-11CF-8EE6-00C00C205365, as stored.
const STREAM_PROPERTIES: [u8; 16] = [
    0x91, 0x07, 0xDC, 0xB7, 0xB7, 0xA9, 0xCF, 0x11, 0x8E, 0xE6, 0x00, 0xC0, 0x0C, 0x20, 0x53, 0x65,
];

/// `ASF_Audio_Media`, F8699E40-5B4D-11CF-A8FD-00805F5C442B, as stored.
const AUDIO_MEDIA: [u8; 16] = [
    0x40, 0x9E, 0x69, 0xF8, 0x4D, 0x5B, 0xCF, 0x11, 0xA8, 0xFD, 0x00, 0x80, 0x5F, 0x5C, 0x44, 0x2B,
];

/// The Header Object's fixed part: GUID, size, object count, two reserved bytes.
const HEADER_FIXED: usize = 30;
/// An object's GUID and size.
const OBJECT_HEADER: usize = 24;
/// Where a Stream Properties Object's type-specific data length and data are.
const TYPE_SPECIFIC_LEN_AT: usize = 64;
const TYPE_SPECIFIC_AT: usize = 78;

/// An ASF file's audio, as its header describes it: the format tag of its first audio
/// stream's `WAVEFORMATEX`, when the header has one where openum looks (the top level).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct AsfAudio {
    /// The format tag: 0x0161 Windows Media Audio 2, 0x000A Windows Media Audio 9 Voice…
    pub format_tag: Option<u16>,
}

impl AsfAudio {
    /// The codec's name (e.g. "Windows Media Audio 2"), when its tag is known.
    pub fn codec_name(self) -> Option<&'static str> {
        self.format_tag.and_then(|t| WavFormatTag(t).name())
    }
}

impl fmt::Display for AsfAudio {
    /// `ASF (Windows Media Audio 2)`, `ASF (audio format tag 0x1234)` or
    /// `ASF (no audio stream described in its header)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.codec_name(), self.format_tag) {
            (Some(name), _) => write!(f, "ASF ({name})"),
            (None, Some(tag)) => write!(f, "ASF (audio format tag {tag:#06x})"),
            (None, None) => f.write_str("ASF (no audio stream described in its header)"),
        }
    }
}

/// Reads the header of an ASF file (one that starts with the Header Object's GUID). `None`
/// when the header is malformed: its size or an object's runs past the file or below the
/// minimum.
pub(crate) fn audio(bytes: &[u8]) -> Option<AsfAudio> {
    // Every `.ok()?` below is a bounds or width check on a header field: a file whose header
    // does not fit is not an ASF file this reader describes (`None`), not an error to report.
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(
            bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
        ))
    };
    let header_size = usize::try_from(u64_at(16)?).ok()?;
    if header_size < HEADER_FIXED || header_size > bytes.len() {
        return None;
    }
    let mut at = HEADER_FIXED;
    let mut format_tag = None;
    while at < header_size {
        let size = usize::try_from(u64_at(at + 16)?).ok()?;
        let end = at.checked_add(size)?;
        if size < OBJECT_HEADER || end > header_size {
            return None;
        }
        let object = &bytes[at..end];
        if format_tag.is_none() && object[..16] == STREAM_PROPERTIES {
            format_tag = audio_format_tag(object);
        }
        at = end;
    }
    Some(AsfAudio { format_tag })
}

/// The format tag of a Stream Properties Object's `WAVEFORMATEX`, if its stream is audio.
fn audio_format_tag(object: &[u8]) -> Option<u16> {
    if object.get(OBJECT_HEADER..OBJECT_HEADER + 16)? != AUDIO_MEDIA {
        return None;
    }
    let len = object.get(TYPE_SPECIFIC_LEN_AT..TYPE_SPECIFIC_LEN_AT + 4)?;
    if u32::from_le_bytes(len.try_into().ok()?) < 2 {
        return None;
    }
    let tag = object.get(TYPE_SPECIFIC_AT..TYPE_SPECIFIC_AT + 2)?;
    Some(u16::from_le_bytes([tag[0], tag[1]]))
}

/// A minimal ASF header with one audio stream of format `tag`, for tests.
#[cfg(test)]
pub(crate) fn header_with_audio(tag: u16) -> Vec<u8> {
    let mut stream = Vec::new();
    stream.extend_from_slice(&STREAM_PROPERTIES);
    stream.extend_from_slice(&0u64.to_le_bytes()); // size, set below
    stream.extend_from_slice(&AUDIO_MEDIA);
    stream.extend_from_slice(&[0; 16]); // error correction type
    stream.extend_from_slice(&0u64.to_le_bytes()); // time offset
    stream.extend_from_slice(&18u32.to_le_bytes()); // type-specific data length
    stream.extend_from_slice(&0u32.to_le_bytes()); // error correction data length
    stream.extend_from_slice(&1u16.to_le_bytes()); // flags: stream 1
    stream.extend_from_slice(&0u32.to_le_bytes()); // reserved
    stream.extend_from_slice(&tag.to_le_bytes());
    stream.extend_from_slice(&1u16.to_le_bytes()); // channels
    stream.extend_from_slice(&8000u32.to_le_bytes());
    stream.extend_from_slice(&2000u32.to_le_bytes());
    stream.extend_from_slice(&40u16.to_le_bytes());
    stream.extend_from_slice(&16u16.to_le_bytes());
    stream.extend_from_slice(&0u16.to_le_bytes());
    let size = stream.len() as u64;
    stream[16..24].copy_from_slice(&size.to_le_bytes());

    let mut v = crate::sniff::ASF_HEADER.to_vec();
    v.extend_from_slice(&((HEADER_FIXED + stream.len()) as u64).to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes());
    v.extend_from_slice(&[1, 2]);
    v.extend_from_slice(&stream);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audio_codec_is_read_from_the_stream_properties() {
        for (tag, text) in [
            (0x0161, "ASF (Windows Media Audio 2)"),
            (0x0160, "ASF (Windows Media Audio 1)"),
            (0x000A, "ASF (Windows Media Audio 9 Voice)"),
            (0x0162, "ASF (Windows Media Audio 9 Professional)"),
            (0x0163, "ASF (Windows Media Audio 9 Lossless)"),
            (0x4321, "ASF (audio format tag 0x4321)"),
        ] {
            let asf = audio(&header_with_audio(tag)).unwrap();
            assert_eq!(asf.format_tag, Some(tag));
            assert_eq!(asf.to_string(), text);
        }
    }

    #[test]
    fn a_header_without_an_audio_stream_names_none() {
        let mut header = header_with_audio(0x0161);
        // Make the stream a video stream.
        header[HEADER_FIXED + OBJECT_HEADER] ^= 0xFF;
        let asf = audio(&header).unwrap();
        assert_eq!(asf.format_tag, None);
        assert_eq!(
            asf.to_string(),
            "ASF (no audio stream described in its header)"
        );
    }

    #[test]
    fn a_header_running_past_the_file_or_with_a_bad_object_size_is_malformed() {
        let header = header_with_audio(0x0161);
        assert!(audio(&header[..header.len() - 1]).is_none());
        let mut bad = header.clone();
        bad[HEADER_FIXED + 16..HEADER_FIXED + 24].copy_from_slice(&5u64.to_le_bytes());
        assert!(audio(&bad).is_none());
        let mut zero = crate::sniff::ASF_HEADER.to_vec();
        zero.resize(2000, 0);
        assert!(audio(&zero).is_none());
    }
}
