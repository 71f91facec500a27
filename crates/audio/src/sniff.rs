//! Recognising a file by its first bytes, so that a refusal can say what the file is.
//!
//! Only the signatures at the start of the file are looked at; anything not recognised here is
//! still handed to symphonia's probe, exactly as before.

use std::fmt;

/// A file format, recognised by its signature (the first bytes of the file).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Format {
    /// RIFF/WAVE (`.wav`): read for PCM, IEEE float, A-law, µ-law, IMA/MS ADPCM and GSM 06.10.
    Wav,
    /// MPEG audio layer III frames from the first byte (`.mp3`).
    Mp3,
    /// MPEG audio layer II frames (`.mp2`, `.mpa`).
    Mp2,
    /// MPEG audio layer I frames (`.mp1`).
    Mp1,
    /// An ID3v2 tag, usually in front of MP3 audio.
    Id3Tagged,
    /// RF64 or BW64: the 64-bit variant of WAV.
    Rf64,
    /// A RIFF file of another form than WAVE (e.g. `AVI `), with its four-character form type.
    Riff([u8; 4]),
    /// ASF, the container of Windows Media Audio and Video (`.wma`, `.wmv`, `.asf`): its audio
    /// is decoded by ffmpeg.
    Asf,
    /// Ogg, with the codec of its first stream when it is recognised.
    Ogg(Option<OggCodec>),
    /// FLAC (`.flac`).
    Flac,
    /// AIFF or AIFF-C (`.aif`, `.aiff`, `.aifc`).
    Aiff,
    /// ISO base media / MPEG-4 (`.m4a`, `.mp4`, `.3gp`), with its major brand.
    Mp4([u8; 4]),
    /// AAC in ADTS frames (`.aac`).
    AacAdts,
    /// AMR, narrow- or wide-band (`.amr`, `.awb`).
    Amr,
    /// Sun/NeXT audio (`.au`, `.snd`).
    SunAu,
    /// Apple Core Audio Format (`.caf`).
    Caf,
    /// Matroska or WebM (`.mka`, `.mkv`, `.webm`).
    Matroska,
    /// Standard MIDI (`.mid`): notes, not recorded sound.
    Midi,
    /// Monkey's Audio (`.ape`).
    MonkeysAudio,
    /// WavPack (`.wv`).
    WavPack,
    /// RealAudio / RealMedia (`.ra`, `.rm`).
    RealMedia,
}

impl Format {
    /// Whether openum's decoder reads this format at all (its codec may still be refused; ASF
    /// needs ffmpeg).
    pub fn is_readable(self) -> bool {
        matches!(self, Self::Wav | Self::Mp3 | Self::Id3Tagged | Self::Asf)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Wav => f.write_str("WAV (RIFF/WAVE)"),
            Self::Mp3 => f.write_str("MPEG audio layer III (MP3)"),
            Self::Mp2 => f.write_str("MPEG audio layer II (MP2)"),
            Self::Mp1 => f.write_str("MPEG audio layer I (MP1)"),
            Self::Id3Tagged => f.write_str("ID3-tagged audio (usually MP3)"),
            Self::Rf64 => f.write_str("RF64 (64-bit WAV)"),
            Self::Riff(form) => write!(f, "RIFF of form {} (not WAVE)", FourCc(form)),
            Self::Asf => f.write_str("ASF (Windows Media Audio/Video: .wma, .wmv, .asf)"),
            Self::Ogg(Some(codec)) => write!(f, "Ogg {codec}"),
            Self::Ogg(None) => f.write_str("Ogg"),
            Self::Flac => f.write_str("FLAC"),
            Self::Aiff => f.write_str("AIFF"),
            Self::Mp4(brand) => write!(f, "MPEG-4/ISO media (brand {})", FourCc(brand)),
            Self::AacAdts => f.write_str("AAC (ADTS)"),
            Self::Amr => f.write_str("AMR"),
            Self::SunAu => f.write_str("Sun/NeXT audio (.au)"),
            Self::Caf => f.write_str("Core Audio Format (CAF)"),
            Self::Matroska => f.write_str("Matroska/WebM"),
            Self::Midi => f.write_str("MIDI (notes, not recorded sound)"),
            Self::MonkeysAudio => f.write_str("Monkey's Audio (APE)"),
            Self::WavPack => f.write_str("WavPack"),
            Self::RealMedia => f.write_str("RealMedia"),
        }
    }
}

/// The codec of an Ogg file's first stream.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum OggCodec {
    /// Vorbis.
    Vorbis,
    /// Opus.
    Opus,
    /// Speex.
    Speex,
    /// FLAC in Ogg.
    Flac,
}

impl fmt::Display for OggCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Vorbis => "Vorbis",
            Self::Opus => "Opus",
            Self::Speex => "Speex",
            Self::Flac => "FLAC",
        })
    }
}

/// A WAV file's format tag (`wFormatTag`, or the tag inside `WAVE_FORMAT_EXTENSIBLE`'s
/// sub-format), which says how the samples are coded.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
pub struct WavFormatTag(pub u16);

impl WavFormatTag {
    /// The tags openum decodes: those symphonia's WAV reader accepts (PCM, MS ADPCM, IEEE
    /// float, A-law, µ-law, IMA ADPCM and `WAVE_FORMAT_EXTENSIBLE`) and GSM 06.10.
    pub(crate) fn is_readable(self) -> bool {
        matches!(
            self.0,
            0x0001 | 0x0002 | 0x0003 | 0x0006 | 0x0007 | 0x0011 | 0x0031 | 0xFFFE
        )
    }

    /// The codec's name, for the tags worth naming.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0001 => "PCM",
            0x0002 => "Microsoft ADPCM",
            0x0003 => "IEEE float",
            0x0006 => "G.711 A-law",
            0x0007 => "G.711 µ-law",
            0x000A => "Windows Media Audio 9 Voice",
            0x0010 => "OKI ADPCM",
            0x0011 => "IMA ADPCM",
            0x0014 => "G.723 ADPCM",
            0x0020 => "Yamaha ADPCM",
            0x0022 => "DSP Group TrueSpeech",
            0x0031 => "GSM 06.10",
            0x0040 => "G.721 ADPCM",
            0x0042 => "G.723.1",
            0x0050 => "MPEG audio layer I/II",
            0x0055 => "MPEG audio layer III (MP3)",
            0x0064 => "G.726 ADPCM",
            0x0065 => "G.722 ADPCM",
            0x0092 => "Dolby AC-3 (S/PDIF)",
            0x00FF | 0x1600 | 0x1610 => "AAC",
            0x0160 => "Windows Media Audio 1",
            0x0161 => "Windows Media Audio 2",
            0x0162 => "Windows Media Audio 9 Professional",
            0x0163 => "Windows Media Audio 9 Lossless",
            0x2000 => "Dolby AC-3",
            0xFFFE => "WAVE_FORMAT_EXTENSIBLE",
            _ => return None,
        })
    }
}

impl fmt::Display for WavFormatTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} (WAV format tag {:#06x})", self.0),
            None => write!(f, "an unknown codec (WAV format tag {:#06x})", self.0),
        }
    }
}

/// Up to the first eight bytes of a file, shown in an error about an unrecognised file.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct FirstBytes {
    bytes: [u8; 8],
    len: usize,
}

impl FirstBytes {
    pub(crate) fn of(data: &[u8]) -> Self {
        let len = data.len().min(8);
        let mut bytes = [0; 8];
        bytes[..len].copy_from_slice(&data[..len]);
        Self { bytes, len }
    }

    /// The bytes (fewer than eight for a shorter file).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Display for FirstBytes {
    /// `64 65 66 69 6e 69 74 65 "definite"`, or `none (the file is empty)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 {
            return f.write_str("none (the file is empty)");
        }
        for (i, b) in self.as_bytes().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        write!(f, " {}", FourCc(self.as_bytes()))
    }
}

/// Bytes as a quoted ASCII string, non-printable ones as `\xNN`.
struct FourCc<'a>(&'a [u8]);

impl fmt::Display for FourCc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &b in self.0 {
            match b {
                b'"' | b'\\' => write!(f, "\\{}", char::from(b))?,
                b' '..=b'~' => write!(f, "{}", char::from(b))?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        f.write_str("\"")
    }
}

/// The ASF header object's GUID, which every ASF file starts with.
pub(crate) const ASF_HEADER: [u8; 16] = [
    0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11, 0xA6, 0xD9, 0x00, 0xAA, 0x00, 0x62, 0xCE, 0x6C,
];

/// The format whose signature `bytes` starts with, if any.
pub(crate) fn sniff(bytes: &[u8]) -> Option<Format> {
    let at = |range: std::ops::Range<usize>| bytes.get(range);
    let four = |from: usize| -> Option<[u8; 4]> {
        at(from..from + 4).and_then(|b| <[u8; 4]>::try_from(b).ok())
    };
    let head = four(0)?;
    let format = match &head {
        b"RIFF" => match four(8)? {
            [b'W', b'A', b'V', b'E'] => Format::Wav,
            form => Format::Riff(form),
        },
        b"RF64" | b"BW64" => Format::Rf64,
        b"FORM" if matches!(&four(8)?, b"AIFF" | b"AIFC") => Format::Aiff,
        b"OggS" => Format::Ogg(ogg_codec(bytes)),
        b"fLaC" => Format::Flac,
        b"caff" => Format::Caf,
        b".snd" => Format::SunAu,
        b"MThd" => Format::Midi,
        b"MAC " => Format::MonkeysAudio,
        b"wvpk" => Format::WavPack,
        b".RMF" => Format::RealMedia,
        [0x1A, 0x45, 0xDF, 0xA3] => Format::Matroska,
        [b'.', b'r', b'a', 0xFD] => Format::RealMedia,
        [b'#', b'!', b'A', b'M'] if at(4..5) == Some(b"R") => Format::Amr,
        [b'I', b'D', b'3', _] => Format::Id3Tagged,
        _ if at(0..16) == Some(&ASF_HEADER[..]) => Format::Asf,
        _ if four(4) == Some(*b"ftyp") => Format::Mp4(four(8)?),
        // 12 sync bits with layer 00 (reserved in MPEG audio) and a valid sampling index: ADTS.
        [0xFF, b1, b2, _] if b1 & 0xF6 == 0xF0 && (b2 >> 2) & 0x0F < 13 => Format::AacAdts,
        // 11 sync bits and the layer: an MPEG audio frame.
        [0xFF, b1, _, _] if b1 & 0xE0 == 0xE0 => match b1 & 0x06 {
            0x02 => Format::Mp3,
            0x04 => Format::Mp2,
            0x06 => Format::Mp1,
            _ => return None,
        },
        _ => return None,
    };
    Some(format)
}

/// The codec of the first Ogg page's packet.
fn ogg_codec(bytes: &[u8]) -> Option<OggCodec> {
    let segments = usize::from(*bytes.get(26)?);
    let packet = bytes.get(27 + segments..)?;
    [
        (&b"\x01vorbis"[..], OggCodec::Vorbis),
        (b"OpusHead", OggCodec::Opus),
        (b"Speex   ", OggCodec::Speex),
        (b"\x7fFLAC", OggCodec::Flac),
    ]
    .into_iter()
    .find(|(magic, _)| packet.starts_with(magic))
    .map(|(_, codec)| codec)
}

/// For a RIFF/WAVE file, the format tag of its first `fmt ` chunk; for
/// `WAVE_FORMAT_EXTENSIBLE` with a standard sub-format GUID, the sub-format's tag.
pub(crate) fn wav_format_tag(bytes: &[u8]) -> Option<WavFormatTag> {
    /// The last 14 bytes of every `KSDATAFORMAT_SUBTYPE_*` GUID built from a format tag.
    const KSDATAFORMAT_TAIL: [u8; 14] = [
        0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
    ];
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let u16_at = |i: usize| Some(u16::from_le_bytes([*bytes.get(i)?, *bytes.get(i + 1)?]));
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]])
            as usize;
        if id == b"fmt " {
            let tag = u16_at(at + 8)?;
            // WAVEFORMATEXTENSIBLE: the SubFormat GUID is at offset 24 of the chunk's data.
            let sub = at + 8 + 24;
            if tag == 0xFFFE
                && len >= 40
                && bytes.get(sub + 2..sub + 16) == Some(&KSDATAFORMAT_TAIL[..])
            {
                // symphonia reads sub-format 4 as µ-law; leave that to it.
                return u16_at(sub)
                    .filter(|&t| t != 0x0004)
                    .map(WavFormatTag)
                    .or(Some(WavFormatTag(tag)));
            }
            return Some(WavFormatTag(tag));
        }
        at = at.checked_add(8 + len + (len & 1))?;
    }
    None
}
