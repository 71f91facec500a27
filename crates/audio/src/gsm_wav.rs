//! GSM 06.10 WAV files (`WAVE_FORMAT_GSM610`, tag 0x0031): the RIFF chunks symphonia's WAV
//! reader refuses, read here and decoded with [`crate::gsm610`].

use std::fmt;

use crate::gsm610::{self, BLOCK_ALIGN, SAMPLES_PER_BLOCK};

/// What is wrong with a GSM 06.10 WAV file.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum GsmWavProblem {
    /// The `fmt ` chunk is shorter than the 16 bytes of a `WAVEFORMAT`.
    FmtTooShort(u32),
    /// GSM 06.10 is mono; the file says it has this many channels.
    Channels(u16),
    /// The sample rate is 0.
    ZeroSampleRate,
    /// The sample rate is above any real recording's (GSM 06.10 is 8 kHz): taken at its word it
    /// would lift the length limit, which is counted in seconds.
    ImplausibleSampleRate(u32),
    /// The block alignment (bytes per block) is not 65, the Microsoft framing of two frames.
    BlockAlign(u16),
    /// The samples per block in the format's extension is not 320.
    SamplesPerBlock(u16),
    /// The file has no `data` chunk.
    NoData,
    /// The audio data ends inside a block: its length is not a multiple of 65.
    TruncatedBlock {
        /// The length of the audio data, in bytes.
        data_len: usize,
    },
}

impl fmt::Display for GsmWavProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::FmtTooShort(len) => {
                write!(f, "its fmt chunk is {len} bytes long, shorter than 16")
            }
            Self::Channels(n) => write!(f, "it has {n} channels; GSM 06.10 is mono"),
            Self::ZeroSampleRate => f.write_str("its sample rate is 0 Hz"),
            Self::ImplausibleSampleRate(rate) => write!(
                f,
                "its sample rate of {rate} Hz is not a real recording's (at most {} Hz)",
                crate::MAX_RATE
            ),
            Self::BlockAlign(n) => write!(
                f,
                "its block alignment is {n} bytes, not the {BLOCK_ALIGN} of two GSM frames"
            ),
            Self::SamplesPerBlock(n) => write!(
                f,
                "it declares {n} samples per block, not the {SAMPLES_PER_BLOCK} of two GSM frames"
            ),
            Self::NoData => f.write_str("it has no data chunk"),
            Self::TruncatedBlock { data_len } => write!(
                f,
                "its audio data ({data_len} bytes) ends inside a {BLOCK_ALIGN}-byte block: the file \
                 is truncated"
            ),
        }
    }
}

/// Mono samples at `rate`, decoded from a GSM 06.10 WAV.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub(crate) rate: u32,
    pub(crate) samples: Vec<i16>,
}

/// The RIFF chunks of a WAVE file: (id, data), the data cut to what the file holds.
fn chunks(bytes: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut at = 12usize;
    std::iter::from_fn(move || {
        let header = bytes.get(at..at.checked_add(8)?)?;
        let id = [header[0], header[1], header[2], header[3]];
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let start = at + 8;
        let end = start.saturating_add(len).min(bytes.len());
        at = start.saturating_add(len).saturating_add(len & 1);
        Some((id, &bytes[start..end]))
    })
}

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*data.get(at)?, *data.get(at + 1)?]))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// Decodes a RIFF/WAVE file whose format tag is GSM 06.10 (checked by the caller), refusing
/// one whose format or data do not fit the 65-byte framing, or that holds more than
/// `max_seconds` of audio. The samples are cut to the `fact` chunk's count when it has one.
pub(crate) fn decode(bytes: &[u8], max_seconds: u32) -> Result<Decoded, DecodeError> {
    let mut fmt = None;
    let mut data = None;
    let mut fact = None;
    for (id, body) in chunks(bytes) {
        match &id {
            b"fmt " if fmt.is_none() => fmt = Some(body),
            b"fact" if fact.is_none() => fact = u32_at(body, 0),
            b"data" if data.is_none() => data = Some(body),
            _ => {}
        }
        if fmt.is_some() && data.is_some() {
            break;
        }
    }
    let fmt = fmt.unwrap_or_default();
    let (Some(channels), Some(rate), Some(block_align)) =
        (u16_at(fmt, 2), u32_at(fmt, 4), u16_at(fmt, 12))
    else {
        return Err(GsmWavProblem::FmtTooShort(fmt.len() as u32).into());
    };
    if fmt.len() < 16 {
        return Err(GsmWavProblem::FmtTooShort(fmt.len() as u32).into());
    }
    if channels != 1 {
        return Err(GsmWavProblem::Channels(channels).into());
    }
    if rate == 0 {
        return Err(GsmWavProblem::ZeroSampleRate.into());
    }
    if rate > crate::MAX_RATE {
        return Err(GsmWavProblem::ImplausibleSampleRate(rate).into());
    }
    if usize::from(block_align) != BLOCK_ALIGN {
        return Err(GsmWavProblem::BlockAlign(block_align).into());
    }
    // WAVEFORMATEX's cbSize, then GSM's wSamplesPerBlock (0 is taken as unset).
    if u16_at(fmt, 16).unwrap_or(0) >= 2 {
        match u16_at(fmt, 18) {
            Some(0) | None => {}
            Some(n) if usize::from(n) == SAMPLES_PER_BLOCK => {}
            Some(n) => return Err(GsmWavProblem::SamplesPerBlock(n).into()),
        }
    }
    let data = data.ok_or(GsmWavProblem::NoData)?;
    if data.len() % BLOCK_ALIGN != 0 {
        return Err(GsmWavProblem::TruncatedBlock {
            data_len: data.len(),
        }
        .into());
    }
    // Refuse before decoding: the samples take ten times the bytes of the blocks.
    let max_samples = u64::from(max_seconds) * u64::from(rate);
    let blocks = data.len() / BLOCK_ALIGN;
    if (blocks as u64)
        .saturating_sub(1)
        .saturating_mul(SAMPLES_PER_BLOCK as u64)
        > max_samples
    {
        return Err(DecodeError::TooLong);
    }
    let mut decoder = gsm610::Decoder::default();
    let mut samples = Vec::with_capacity(blocks * SAMPLES_PER_BLOCK);
    for block in data.chunks_exact(BLOCK_ALIGN) {
        if let Ok(block) = <&[u8; BLOCK_ALIGN]>::try_from(block) {
            decoder.decode_block(block, &mut samples);
        }
    }
    // The fact chunk counts the samples really coded; the last block is padded.
    if let Some(count) = fact.map(|n| n as usize) {
        if count > 0 && count < samples.len() {
            samples.truncate(count);
        }
    }
    if samples.len() as u64 > max_samples {
        return Err(DecodeError::TooLong);
    }
    Ok(Decoded { rate, samples })
}

/// Why [`decode`] gave up.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// The file is not a well-formed GSM 06.10 WAV.
    Malformed(GsmWavProblem),
    /// More samples than the caller accepts.
    TooLong,
}

impl From<GsmWavProblem> for DecodeError {
    fn from(problem: GsmWavProblem) -> Self {
        Self::Malformed(problem)
    }
}
