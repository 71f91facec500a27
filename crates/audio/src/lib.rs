//! Audio preparation: a voice-mail file (PCM or G.711 WAV at any rate, mono or stereo; MP3;
//! IMA/MS ADPCM WAV) decoded once into 8 kHz mono 16-bit PCM, ready for G.711.
//!
//! Decoding is symphonia's, resampling rubato's. Pure: bytes in, samples out.
//! GSM 06.10 WAV and WMA are refused with [`AudioError::Unsupported`], which names the format.

use std::io::Cursor;

use rubato::{FftFixedIn, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// The output sample rate (G.711).
pub const RATE: u32 = 8000;

/// Longest message accepted (Exchange UM capped voice mail at minutes, not hours).
pub const MAX_SECONDS: u32 = 20 * 60;

/// Why a file cannot be played.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// Not an audio format openum can read.
    #[error("not a supported audio file ({0})")]
    Unrecognised(String),
    /// A recognised container with a codec openum cannot decode.
    #[error("unsupported audio codec: {0}")]
    Unsupported(String),
    /// The file is damaged.
    #[error("the audio data is corrupt: {0}")]
    Corrupt(String),
    /// No samples at all.
    #[error("the file contains no audio")]
    Empty,
    /// Longer than [`MAX_SECONDS`].
    #[error("the message is longer than {MAX_SECONDS} seconds")]
    TooLong,
}

/// Decodes `bytes` into 8 kHz mono PCM. `extension` (e.g. `"wav"`, `"mp3"`) helps the probe.
pub fn decode_to_8k_mono(bytes: &[u8], extension: Option<&str>) -> Result<Vec<i16>, AudioError> {
    if let Some(name) = wav_codec_name(bytes).filter(|n| !n.is_empty()) {
        return Err(AudioError::Unsupported(name.to_owned()));
    }
    let mut hint = Hint::new();
    if let Some(ext) = extension {
        hint.with_extension(ext);
    }
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            source,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| AudioError::Unrecognised(e.to_string()))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or(AudioError::Empty)?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| AudioError::Unsupported(e.to_string()))?;
    let mut rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut mono: Vec<f32> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(AudioError::Corrupt(e.to_string())),
        };
        if packet.track_id() != track.id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A damaged frame in an MP3 is skipped, as players do.
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(e) => return Err(AudioError::Corrupt(e.to_string())),
        };
        let spec = *decoded.spec();
        rate = spec.rate;
        let channels = spec.channels.count().max(1);
        let mut buffer = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buffer.copy_interleaved_ref(decoded);
        for frame in buffer.samples().chunks(channels) {
            mono.push(frame.iter().sum::<f32>() / channels as f32);
        }
        if rate > 0 && mono.len() as u64 > u64::from(MAX_SECONDS) * u64::from(rate) {
            return Err(AudioError::TooLong);
        }
    }
    if mono.is_empty() || rate == 0 {
        return Err(AudioError::Empty);
    }
    let resampled = resample(&mono, rate)?;
    Ok(resampled
        .iter()
        .map(|&s| (s * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect())
}

/// Resamples mono `input` at `rate` to [`RATE`], compensating the resampler's delay.
fn resample(input: &[f32], rate: u32) -> Result<Vec<f32>, AudioError> {
    if rate == RATE {
        return Ok(input.to_vec());
    }
    const CHUNK: usize = 1024;
    let mut resampler = FftFixedIn::<f32>::new(rate as usize, RATE as usize, CHUNK, 2, 1)
        .map_err(|e| AudioError::Unsupported(format!("sample rate {rate}: {e}")))?;
    let delay = resampler.output_delay();
    let expected = (input.len() as u64 * u64::from(RATE) / u64::from(rate)) as usize;
    let mut out = Vec::with_capacity(expected + delay + CHUNK);
    let mut chunks = input.chunks_exact(CHUNK);
    for chunk in &mut chunks {
        let frames = resampler
            .process(&[chunk], None)
            .map_err(|e| AudioError::Corrupt(e.to_string()))?;
        out.extend_from_slice(&frames[0]);
    }
    let rest = chunks.remainder();
    let frames = resampler
        .process_partial(Some(&[rest]), None)
        .map_err(|e| AudioError::Corrupt(e.to_string()))?;
    out.extend_from_slice(&frames[0]);
    // Flush what the resampler still holds.
    while out.len() < expected + delay {
        let frames = resampler
            .process_partial::<&[f32]>(None, None)
            .map_err(|e| AudioError::Corrupt(e.to_string()))?;
        if frames[0].is_empty() {
            break;
        }
        out.extend_from_slice(&frames[0]);
    }
    let start = delay.min(out.len());
    let end = (start + expected).min(out.len());
    Ok(out[start..end].to_vec())
}

/// For a RIFF/WAVE file whose codec symphonia cannot decode, the codec's name (so the error
/// names it); `None` for everything else.
fn wav_codec_name(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]])
            as usize;
        if id == b"fmt " && at + 10 <= bytes.len() {
            let tag = u16::from_le_bytes([bytes[at + 8], bytes[at + 9]]);
            return Some(match tag {
                0x0031 => "GSM 06.10 WAV (WAVE_FORMAT_GSM610) — convert it to PCM WAV or MP3",
                0x0022 | 0x0160..=0x0163 => {
                    "Windows Media Audio in WAV — convert it to PCM WAV or MP3"
                }
                0x0055 => "", // MP3 in WAV: symphonia reads it
                _ => "",
            });
        }
        at += 8 + len + (len & 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    use testkit::pcm_wav as wav;

    fn tone(rate: u32, hz: f32, seconds: f32) -> Vec<i16> {
        testkit::tone(rate, hz, seconds, 12000.0)
    }

    /// Dominant frequency by counting zero crossings.
    fn frequency(samples: &[i16]) -> f32 {
        let crossings = samples
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count();
        crossings as f32 / 2.0 / (samples.len() as f32 / RATE as f32)
    }

    #[test]
    fn pcm_wav_at_8k_passes_through() {
        let src = tone(8000, 440.0, 1.0);
        let out = decode_to_8k_mono(&wav(8000, 1, &src), Some("wav")).unwrap();
        assert_eq!(out.len(), 8000);
        let max_err = src
            .iter()
            .zip(&out)
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .max()
            .unwrap();
        assert!(max_err <= 1, "{max_err}");
    }

    #[test]
    fn stereo_44k1_is_downmixed_and_resampled_keeping_pitch_and_length() {
        let mono = tone(44100, 1000.0, 2.0);
        let stereo: Vec<i16> = mono.iter().flat_map(|&s| [s, s]).collect();
        let out = decode_to_8k_mono(&wav(44100, 2, &stereo), None).unwrap();
        assert!((out.len() as i64 - 16000).abs() <= 2, "{}", out.len());
        let f = frequency(&out);
        assert!((f - 1000.0).abs() < 10.0, "{f} Hz");
    }

    /// A G.711 WAV (format tag 6 = A-law, 7 = µ-law), 8-bit samples.
    fn g711_wav(tag: u16, bytes: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(38 + bytes.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&18u32.to_le_bytes());
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&8000u32.to_le_bytes());
        v.extend_from_slice(&8000u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&8u16.to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        v.extend_from_slice(bytes);
        v
    }

    #[test]
    fn g711_wavs_decode_in_both_laws() {
        use call_engine::g711::{linear_to_alaw, linear_to_ulaw};
        let src = tone(8000, 700.0, 1.0);
        for (tag, encode) in [(7u16, linear_to_ulaw as fn(i16) -> u8), (6, linear_to_alaw)] {
            let bytes: Vec<u8> = src.iter().map(|&s| encode(s)).collect();
            let out = decode_to_8k_mono(&g711_wav(tag, &bytes), Some("wav")).unwrap();
            assert_eq!(out.len(), 8000, "tag {tag}");
            let f = frequency(&out);
            assert!((f - 700.0).abs() < 5.0, "tag {tag}: {f} Hz");
            let err = src
                .iter()
                .zip(&out)
                .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
                .max()
                .unwrap();
            assert!(err < 800, "tag {tag}: max error {err}");
        }
    }

    #[test]
    fn refuses_garbage_empty_and_gsm_with_a_clear_reason() {
        assert!(matches!(
            decode_to_8k_mono(b"definitely not audio", None),
            Err(AudioError::Unrecognised(_))
        ));
        assert!(decode_to_8k_mono(&wav(8000, 1, &[]), Some("wav")).is_err());
        let mut gsm = wav(8000, 1, &[0; 100]);
        gsm[20] = 0x31; // WAVE_FORMAT_GSM610
        gsm[21] = 0x00;
        let err = decode_to_8k_mono(&gsm, Some("wav"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("GSM 06.10"), "{err}");
    }
}
