//! Audio preparation: a voice-mail file decoded once into 8 kHz mono 16-bit PCM, ready for
//! G.711. Pure: bytes in, samples out (but for ASF, which an `ffmpeg` process decodes).
//!
//! The formats Exchange Unified Messaging and PBX voice-mail systems leave in mailboxes
//! (MS-OXOUM, "Voice Mail and Fax Objects"), and how each is read:
//!
//! - WAV with PCM, G.711 A-law or µ-law, IEEE float, IMA or MS ADPCM, at any rate, mono or
//!   stereo; and MP3: symphonia.
//! - WAV with GSM 06.10 (format tag 0x0031, Microsoft's 65-byte blocks of two frames): the
//!   hand-written decoder in `gsm610`, bit-exact with the ETSI reference, after the RIFF chunks
//!   are read here (symphonia does not know the tag).
//! - ASF (`.wma`) with Windows Media Audio 1 or 2, WMA 9 Voice, Pro or Lossless: no Rust
//!   decoder exists, so an `ffmpeg` process decodes it, found at `OPENUM_FFMPEG` or on `PATH`
//!   ([`DecodeOptions`]); the codec is named from the ASF header in every message about it.
//!
//! Resampling to 8 kHz is rubato's. Every refusal is an [`AudioError`] that names what was
//! found: a container recognised by its first bytes but not read
//! ([`AudioError::UnsupportedFormat`]: Ogg, FLAC, M4A…), a WAV codec that is not decoded
//! ([`AudioError::UnsupportedWavCodec`]: TrueSpeech, MP3 or WMA in WAV…), a malformed GSM WAV
//! ([`AudioError::MalformedGsmWav`]), an ASF file without ffmpeg to decode it
//! ([`AudioError::FfmpegUnavailable`]) or that ffmpeg refused ([`AudioError::FfmpegFailed`],
//! with its message), and so on.

use std::io::Cursor;
use std::path::PathBuf;
use std::time::Duration;

use rubato::{FftFixedIn, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CodecType, DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

mod asf;
mod ffmpeg;
mod gsm610;
mod gsm_wav;
mod sniff;

pub use asf::AsfAudio;
pub use ffmpeg::{FfmpegExit, FfmpegProgram, FFMPEG_ENV};
pub use gsm_wav::GsmWavProblem;
pub use sniff::{FirstBytes, Format, OggCodec, WavFormatTag};

/// The output sample rate (G.711).
pub const RATE: u32 = 8000;

/// Longest message accepted (Exchange UM capped voice mail at minutes, not hours).
pub const MAX_SECONDS: u32 = 20 * 60;

/// The highest sample rate accepted (the length limit is counted in seconds of the file's own
/// rate, so a file claiming megahertz must not lift it).
pub const MAX_RATE: u32 = 192_000;

/// How long ffmpeg may take over one file by default before it is killed.
pub const FFMPEG_TIMEOUT: Duration = Duration::from_secs(60);

/// How [`decode_to_8k_mono_with`] decodes; [`Default`] is what [`decode_to_8k_mono`] uses.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DecodeOptions {
    /// The ffmpeg program that decodes ASF (Windows Media Audio). `None`: the one named by
    /// [`OPENUM_FFMPEG`](FFMPEG_ENV) when it is set, else `ffmpeg` on `PATH`.
    pub ffmpeg: Option<PathBuf>,
    /// How long ffmpeg may take over one file before it is killed and the file refused.
    pub ffmpeg_timeout: Duration,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            ffmpeg: None,
            ffmpeg_timeout: FFMPEG_TIMEOUT,
        }
    }
}

impl DecodeOptions {
    /// These options, with `program` as the ffmpeg to run.
    pub fn with_ffmpeg(mut self, program: impl Into<PathBuf>) -> Self {
        self.ffmpeg = Some(program.into());
        self
    }

    /// These options, with ffmpeg killed after `timeout`.
    pub fn with_ffmpeg_timeout(mut self, timeout: Duration) -> Self {
        self.ffmpeg_timeout = timeout;
        self
    }
}

/// Why a file cannot be played.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// The decoder failed on the file in a way its authors did not foresee (it panicked): the
    /// file is malformed in a way no reader here can handle.
    #[error(
        "the {} decoder cannot read this file (first bytes {first_bytes}): it is malformed",
        format.map_or_else(|| "audio".to_owned(), |f| f.to_string())
    )]
    DecoderPanicked {
        /// What the file looked like, if anything known.
        format: Option<Format>,
        /// Its first bytes.
        first_bytes: FirstBytes,
    },
    /// The first bytes match no known audio format and no reader accepted the file.
    #[error(
        "not a supported audio file: no known audio format starts with the bytes {first_bytes} \
         ({source})"
    )]
    Unrecognised {
        /// The first bytes of the file.
        first_bytes: FirstBytes,
        /// Why symphonia's probe gave up.
        #[source]
        source: SymphoniaError,
    },
    /// A format recognised by its signature that openum does not read (Ogg, FLAC, M4A…); or
    /// an ASF file whose header cannot be read (it ends early, or its sizes do not add up).
    #[error("{} — convert it to PCM WAV or MP3", Unsupported(*.0))]
    UnsupportedFormat(Format),
    /// A WAV file whose codec openum cannot decode (TrueSpeech, MP3 or WMA in WAV…).
    #[error("unsupported audio codec: {0} — convert it to PCM WAV or MP3")]
    UnsupportedWavCodec(WavFormatTag),
    /// A GSM 06.10 WAV file that does not fit Microsoft's framing, or is cut short.
    #[error("malformed GSM 06.10 WAV file: {0}")]
    MalformedGsmWav(GsmWavProblem),
    /// An ASF file (Windows Media Audio), which only ffmpeg decodes, and ffmpeg could not be
    /// started.
    #[error(
        "{asf} needs ffmpeg to decode: install ffmpeg (Debian package `ffmpeg`) or set \
         {FFMPEG_ENV} to its path ({program}: {source})"
    )]
    FfmpegUnavailable {
        /// The file's audio, as its header names it.
        asf: AsfAudio,
        /// The program that could not be run.
        program: FfmpegProgram,
        /// Why it could not.
        #[source]
        source: std::io::Error,
    },
    /// ffmpeg could not decode an ASF file: it failed, or wrote no audio but complaints.
    #[error("ffmpeg could not decode {asf}: {exit}: {}", or_none(stderr))]
    FfmpegFailed {
        /// The file's audio, as its header names it.
        asf: AsfAudio,
        /// How ffmpeg ended.
        exit: FfmpegExit,
        /// What ffmpeg wrote to its standard error (the start of it), trimmed.
        stderr: String,
    },
    /// ffmpeg took longer than the timeout over an ASF file and was killed.
    #[error("ffmpeg took longer than {} s to decode {asf} and was stopped", timeout.as_secs_f32())]
    FfmpegTimedOut {
        /// The file's audio, as its header names it.
        asf: AsfAudio,
        /// The time it was given.
        timeout: Duration,
    },
    /// Talking to the ffmpeg process failed.
    #[error("passing {asf} through ffmpeg failed: {source}")]
    FfmpegIo {
        /// The file's audio, as its header names it.
        asf: AsfAudio,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A file recognised as a readable format whose headers cannot be read.
    #[error("the file looks like {format} but cannot be read: {source}")]
    Unreadable {
        /// What the first bytes say the file is.
        format: Format,
        /// Why the reader refused it.
        #[source]
        source: SymphoniaError,
    },
    /// A stream whose codec openum has no decoder for (e.g. MPEG layer II).
    #[error("unsupported audio codec: {} ({source})", CodecName(*.codec))]
    UnsupportedCodec {
        /// The stream's codec.
        codec: CodecType,
        /// Why no decoder was made.
        #[source]
        source: SymphoniaError,
    },
    /// The file is damaged.
    #[error("the audio data is corrupt: {0}")]
    Corrupt(#[source] SymphoniaError),
    /// No samples at all.
    #[error("the file contains no audio")]
    Empty,
    /// Longer than [`MAX_SECONDS`].
    #[error("the message is longer than {MAX_SECONDS} seconds")]
    TooLong,
    /// The file claims a sample rate above [`MAX_RATE`].
    #[error(
        "the file's sample rate of {rate} Hz is not a real recording's (at most {MAX_RATE} Hz)"
    )]
    ImplausibleSampleRate {
        /// The rate it claims.
        rate: u32,
    },
    /// The sample rate cannot be resampled to 8 kHz.
    #[error("cannot resample audio at {rate} Hz to {RATE} Hz: {source}")]
    UnsupportedSampleRate {
        /// The file's sample rate.
        rate: u32,
        /// Why the resampler refused it.
        #[source]
        source: rubato::ResamplerConstructionError,
    },
    /// Resampling failed midway.
    #[error("resampling audio at {rate} Hz to {RATE} Hz failed: {source}")]
    Resample {
        /// The file's sample rate.
        rate: u32,
        /// What the resampler reported.
        #[source]
        source: rubato::ResampleError,
    },
}

/// The refusal of a format openum does not read, for messages.
struct Unsupported(Format);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            // ASF files are decoded; this one's header could not even be read.
            Format::Asf => write!(
                f,
                "{} whose header cannot be read is not a supported audio file",
                self.0
            ),
            format => write!(f, "{format} is not a supported audio format"),
        }
    }
}

/// ffmpeg's message, or a note that it gave none.
fn or_none(stderr: &str) -> &str {
    if stderr.is_empty() {
        "(no message)"
    } else {
        stderr
    }
}

/// A codec's name for messages: the MPEG layers by name, others by symphonia's id.
struct CodecName(CodecType);

impl std::fmt::Display for CodecName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use symphonia::core::codecs::{CODEC_TYPE_MP1, CODEC_TYPE_MP2, CODEC_TYPE_MP3};
        match self.0 {
            CODEC_TYPE_MP1 => f.write_str("MPEG audio layer I (MP1)"),
            CODEC_TYPE_MP2 => f.write_str("MPEG audio layer II (MP2)"),
            CODEC_TYPE_MP3 => f.write_str("MPEG audio layer III (MP3)"),
            other => write!(f, "codec {other}"),
        }
    }
}

/// Decodes `bytes` into 8 kHz mono PCM. `extension` (e.g. `"wav"`, `"mp3"`) helps the probe.
/// ASF files go through ffmpeg as [`DecodeOptions::default`] says.
pub fn decode_to_8k_mono(bytes: &[u8], extension: Option<&str>) -> Result<Vec<i16>, AudioError> {
    decode_to_8k_mono_with(bytes, extension, &DecodeOptions::default())
}

/// [`decode_to_8k_mono`], with ffmpeg (for ASF) chosen and bounded by `options`.
pub fn decode_to_8k_mono_with(
    bytes: &[u8],
    extension: Option<&str>,
    options: &DecodeOptions,
) -> Result<Vec<i16>, AudioError> {
    // symphonia 0.5 has `unreachable!`s that some malformed headers reach (an extensible WAV
    // with 0 bits per sample, for one). Files come from users and, soon, from mailboxes: a
    // decoder panic is a refusal of that file, never a crash of the caller. The closure only
    // reads `bytes` and owns everything it builds, so nothing is left half-changed by a panic.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode(bytes, extension, options)
    }))
    .unwrap_or_else(|_| {
        Err(AudioError::DecoderPanicked {
            format: sniff::sniff(bytes),
            first_bytes: FirstBytes::of(bytes),
        })
    })
}

fn decode(
    bytes: &[u8],
    extension: Option<&str>,
    options: &DecodeOptions,
) -> Result<Vec<i16>, AudioError> {
    let sniffed = sniff::sniff(bytes);
    if sniffed == Some(Format::Asf) {
        return decode_asf(bytes, options);
    }
    if let Some(format) = sniffed.filter(|f| !f.is_readable()) {
        return Err(AudioError::UnsupportedFormat(format));
    }
    match sniff::wav_format_tag(bytes) {
        Some(WavFormatTag(GSM610)) => return decode_gsm_wav(bytes),
        Some(tag) if !tag.is_readable() => return Err(AudioError::UnsupportedWavCodec(tag)),
        _ => {}
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
            // Gapless: the encoder delay and padding an MP3's LAME/Xing header declares are
            // trimmed, so the message starts on its first sample (as players and ffmpeg do),
            // not 50-70 ms of codec delay later.
            &FormatOptions {
                enable_gapless: true,
                ..FormatOptions::default()
            },
            &MetadataOptions::default(),
        )
        .map_err(|source| match sniffed {
            Some(format) => AudioError::Unreadable { format, source },
            None => AudioError::Unrecognised {
                first_bytes: FirstBytes::of(bytes),
                source,
            },
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or(AudioError::Empty)?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|source| AudioError::UnsupportedCodec {
            codec: track.codec_params.codec,
            source,
        })?;
    let mut rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut mono: Vec<f32> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(AudioError::Corrupt(e)),
        };
        if packet.track_id() != track.id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A damaged frame in an MP3 is skipped, as players do.
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(e) => return Err(AudioError::Corrupt(e)),
        };
        let spec = *decoded.spec();
        rate = spec.rate;
        let channels = spec.channels.count().max(1);
        let mut buffer = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buffer.copy_interleaved_ref(decoded);
        for frame in buffer.samples().chunks(channels) {
            mono.push(frame.iter().sum::<f32>() / channels as f32);
        }
        if rate > MAX_RATE {
            return Err(AudioError::ImplausibleSampleRate { rate });
        }
        if rate > 0 && mono.len() as u64 > u64::from(MAX_SECONDS) * u64::from(rate) {
            return Err(AudioError::TooLong);
        }
    }
    if mono.is_empty() || rate == 0 {
        return Err(AudioError::Empty);
    }
    Ok(to_i16(&resample(&mono, rate)?))
}

/// `WAVE_FORMAT_GSM610`.
const GSM610: u16 = 0x0031;

/// A GSM 06.10 WAV: its chunks read here, its blocks decoded by [`gsm610`]; at 8 kHz (as they
/// all are in practice) the decoder's samples are returned as they are.
fn decode_gsm_wav(bytes: &[u8]) -> Result<Vec<i16>, AudioError> {
    let decoded = gsm_wav::decode(bytes, MAX_SECONDS).map_err(|e| match e {
        gsm_wav::DecodeError::Malformed(problem) => AudioError::MalformedGsmWav(problem),
        gsm_wav::DecodeError::TooLong => AudioError::TooLong,
    })?;
    if decoded.samples.is_empty() {
        return Err(AudioError::Empty);
    }
    if decoded.rate == RATE {
        return Ok(decoded.samples);
    }
    let mono: Vec<f32> = decoded
        .samples
        .iter()
        .map(|&s| f32::from(s) / 32768.0)
        .collect();
    Ok(to_i16(&resample(&mono, decoded.rate)?))
}

/// An ASF file (Windows Media Audio), through ffmpeg. One whose header cannot be read is
/// refused without starting ffmpeg.
fn decode_asf(bytes: &[u8], options: &DecodeOptions) -> Result<Vec<i16>, AudioError> {
    let asf = asf::audio(bytes).ok_or(AudioError::UnsupportedFormat(Format::Asf))?;
    let program = FfmpegProgram::choose(options.ffmpeg.as_deref());
    let samples = ffmpeg::decode(bytes, asf, program, options.ffmpeg_timeout)?;
    if samples.is_empty() {
        return Err(AudioError::Empty);
    }
    Ok(samples)
}

/// Samples in [-1, 1] to 16-bit.
fn to_i16(samples: &[f32]) -> Vec<i16> {
    samples
        .iter()
        .map(|&s| (s * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Resamples mono `input` at `rate` to [`RATE`], compensating the resampler's delay.
fn resample(input: &[f32], rate: u32) -> Result<Vec<f32>, AudioError> {
    if rate == RATE {
        return Ok(input.to_vec());
    }
    const CHUNK: usize = 1024;
    let mut resampler = FftFixedIn::<f32>::new(rate as usize, RATE as usize, CHUNK, 2, 1)
        .map_err(|source| AudioError::UnsupportedSampleRate { rate, source })?;
    let delay = resampler.output_delay();
    let expected = (input.len() as u64 * u64::from(RATE) / u64::from(rate)) as usize;
    let mut out = Vec::with_capacity(expected + delay + CHUNK);
    let mut chunks = input.chunks_exact(CHUNK);
    for chunk in &mut chunks {
        let frames = resampler
            .process(&[chunk], None)
            .map_err(|source| AudioError::Resample { rate, source })?;
        out.extend_from_slice(&frames[0]);
    }
    let rest = chunks.remainder();
    let frames = resampler
        .process_partial(Some(&[rest]), None)
        .map_err(|source| AudioError::Resample { rate, source })?;
    out.extend_from_slice(&frames[0]);
    // Flush what the resampler still holds.
    while out.len() < expected + delay {
        let frames = resampler
            .process_partial::<&[f32]>(None, None)
            .map_err(|source| AudioError::Resample { rate, source })?;
        if frames[0].is_empty() {
            break;
        }
        out.extend_from_slice(&frames[0]);
    }
    let start = delay.min(out.len());
    let end = (start + expected).min(out.len());
    Ok(out[start..end].to_vec())
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
            Err(AudioError::Unrecognised { .. })
        ));
        assert!(decode_to_8k_mono(&wav(8000, 1, &[]), Some("wav")).is_err());
        let mut gsm = wav(8000, 1, &[0; 100]);
        gsm[20] = 0x31; // WAVE_FORMAT_GSM610
        gsm[21] = 0x00;
        let err = decode_to_8k_mono(&gsm, Some("wav")).unwrap_err();
        assert!(matches!(err, AudioError::MalformedGsmWav(_)), "{err:?}");
        let err = err.to_string();
        assert!(err.contains("GSM 06.10"), "{err}");
    }

    /// A RIFF/WAVE header with format tag `tag` and a few bytes of data.
    fn wav_with_tag(tag: u16) -> Vec<u8> {
        let mut v = wav(8000, 1, &[0; 100]);
        v[20..22].copy_from_slice(&tag.to_le_bytes());
        v
    }

    fn refusal(bytes: &[u8], extension: &str) -> AudioError {
        decode_to_8k_mono(bytes, Some(extension)).unwrap_err()
    }

    /// The start of a real ASF (WMA) file: the header object GUID, size and object count.
    fn asf() -> Vec<u8> {
        let mut v = vec![
            0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11, 0xA6, 0xD9, 0x00, 0xAA, 0x00, 0x62,
            0xCE, 0x6C,
        ];
        v.extend_from_slice(&5000u64.to_le_bytes());
        v.extend_from_slice(&[6, 0, 0, 0, 1, 2]);
        v.resize(4000, 0x5A);
        v
    }

    #[test]
    fn an_asf_whose_header_cannot_be_read_is_refused_naming_asf() {
        // Its header object claims 5000 bytes of a 4000-byte file.
        let err = refusal(&asf(), "wma");
        assert!(
            matches!(err, AudioError::UnsupportedFormat(Format::Asf)),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("ASF") && text.contains("Windows Media") && text.contains("not"),
            "{text}"
        );
        assert!(text.contains("header cannot be read"), "{text}");
        assert!(!text.contains("end of stream"), "{text}");
    }

    #[test]
    fn a_misnamed_wma_is_still_refused_as_asf() {
        assert!(matches!(
            refusal(&asf(), "mp3"),
            AudioError::UnsupportedFormat(Format::Asf)
        ));
    }

    #[test]
    fn ogg_opus_file_is_refused_naming_ogg_and_opus() {
        let mut page = b"OggS\0\x02".to_vec();
        page.resize(26, 0);
        page.push(1); // one segment
        page.push(19); // of 19 bytes
        page.extend_from_slice(b"OpusHead\x01\x01\x38\x01\x80\xbb\0\0\0\0\0");
        let err = refusal(&page, "opus");
        assert!(
            matches!(
                err,
                AudioError::UnsupportedFormat(Format::Ogg(Some(OggCodec::Opus)))
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("Ogg Opus"), "{err}");
    }

    #[test]
    fn flac_aiff_m4a_amr_and_midi_are_refused_naming_the_format() {
        let mut m4a = b"\0\0\0\x20ftypM4A \0\0\0\0".to_vec();
        m4a.resize(64, 0);
        let cases: [(&[u8], Format, &str); 5] = [
            (b"fLaC\0\0\0\x22", Format::Flac, "FLAC"),
            (b"FORM\0\0\x10\0AIFFCOMM", Format::Aiff, "AIFF"),
            (
                &m4a,
                Format::Mp4(*b"M4A "),
                "MPEG-4/ISO media (brand \"M4A \")",
            ),
            (b"#!AMR\n\x3c\x00", Format::Amr, "AMR"),
            (b"MThd\0\0\0\x06\0\x01", Format::Midi, "MIDI"),
        ];
        for (bytes, format, name) in cases {
            let err = refusal(bytes, "wav");
            assert!(
                matches!(&err, AudioError::UnsupportedFormat(f) if *f == format),
                "{name}: {err:?}"
            );
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn aac_adts_stream_is_refused_naming_aac() {
        let err = refusal(&[0xFF, 0xF1, 0x50, 0x80, 0x02, 0x1F, 0xFC, 0, 0, 0], "aac");
        assert!(
            matches!(err, AudioError::UnsupportedFormat(Format::AacAdts)),
            "{err:?}"
        );
        assert!(err.to_string().contains("AAC (ADTS)"), "{err}");
    }

    #[test]
    fn avi_is_refused_naming_its_riff_form() {
        let mut avi = b"RIFF\0\x10\0\0AVI LIST".to_vec();
        avi.resize(64, 0);
        let err = refusal(&avi, "avi");
        assert!(
            matches!(err, AudioError::UnsupportedFormat(Format::Riff(form)) if &form == b"AVI "),
            "{err:?}"
        );
        assert!(err.to_string().contains("\"AVI \""), "{err}");
    }

    #[test]
    fn wav_codecs_without_a_decoder_are_refused_naming_codec_and_tag() {
        for (tag, name) in [
            (0x0040, "G.721 ADPCM (WAV format tag 0x0040)"),
            (0x0055, "MPEG audio layer III (MP3) (WAV format tag 0x0055)"),
            (0x0161, "Windows Media Audio 2 (WAV format tag 0x0161)"),
            (0x0022, "DSP Group TrueSpeech (WAV format tag 0x0022)"),
            (0x4321, "an unknown codec (WAV format tag 0x4321)"),
        ] {
            let err = refusal(&wav_with_tag(tag), "wav");
            assert!(
                matches!(err, AudioError::UnsupportedWavCodec(WavFormatTag(t)) if t == tag),
                "{tag:#x}: {err:?}"
            );
            let text = err.to_string();
            assert!(text.contains(name), "{text}");
            assert!(text.contains("convert it to PCM WAV or MP3"), "{text}");
        }
    }

    /// A WAVE_FORMAT_EXTENSIBLE file (40-byte fmt chunk) with a standard SubFormat GUID built
    /// from `sub_format`, `bits` per sample, and 100 bytes of silence.
    fn extensible_wav(sub_format: u8, bits: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(4 + 48 + 8 + 100u32).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&40u32.to_le_bytes());
        v.extend_from_slice(&0xFFFEu16.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&8000u32.to_le_bytes());
        v.extend_from_slice(&16000u32.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(&22u16.to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(&4u32.to_le_bytes());
        v.extend_from_slice(&[
            sub_format, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00,
            0x38, 0x9B, 0x71,
        ]);
        v.extend_from_slice(b"data");
        v.extend_from_slice(&100u32.to_le_bytes());
        v.extend_from_slice(&[0; 100]);
        v
    }

    #[test]
    fn extensible_wav_is_refused_naming_its_sub_format() {
        // SubFormat DSP Group TrueSpeech.
        let err = refusal(&extensible_wav(0x22, 16), "wav");
        assert!(
            matches!(err, AudioError::UnsupportedWavCodec(WavFormatTag(0x0022))),
            "{err:?}"
        );
        // The same file with a PCM SubFormat decodes.
        let pcm = extensible_wav(0x01, 16);
        assert_eq!(decode_to_8k_mono(&pcm, Some("wav")).unwrap().len(), 50);
    }

    #[test]
    fn extensible_wav_with_the_gsm_sub_format_goes_to_the_gsm_reader() {
        let err = refusal(&extensible_wav(0x31, 16), "wav");
        assert!(
            matches!(
                err,
                AudioError::MalformedGsmWav(GsmWavProblem::BlockAlign(2))
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_wav_header_that_makes_the_decoder_panic_is_refused_not_a_crash() {
        // Extensible PCM with 0 bits per sample: symphonia 0.5 reaches an `unreachable!`.
        let err = refusal(&extensible_wav(0x01, 0), "wav");
        assert!(matches!(err, AudioError::DecoderPanicked { .. }), "{err:?}");
        assert!(err.to_string().contains("malformed"), "{err}");
    }

    #[test]
    fn garbage_is_refused_quoting_its_first_bytes() {
        let err = refusal(b"definitely not audio", "wav");
        assert!(
            matches!(&err, AudioError::Unrecognised { first_bytes, .. } if first_bytes.as_bytes() == b"definite"),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("64 65 66 69 6e 69 74 65 \"definite\""),
            "{text}"
        );
        assert!(std::error::Error::source(&err).is_some());
        let empty = refusal(b"", "wav");
        assert!(
            empty.to_string().contains("none (the file is empty)"),
            "{empty}"
        );
    }

    #[test]
    fn damaged_wav_is_refused_as_unreadable_wav_with_the_reader_error_as_source() {
        let err = refusal(b"RIFF....WAVEnot really", "wav");
        assert!(
            matches!(
                err,
                AudioError::Unreadable {
                    format: Format::Wav,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("the file looks like WAV (RIFF/WAVE) but cannot be read: "),
            "{err}"
        );
        let source = std::error::Error::source(&err).unwrap();
        assert!(source.downcast_ref::<SymphoniaError>().is_some());
    }

    /// MPEG-1 layer II frames, 192 kbit/s at 48 kHz (576 bytes each).
    fn mp2_frames() -> Vec<u8> {
        let mut frames = Vec::new();
        for _ in 0..8 {
            let mut frame = vec![0xFF, 0xFD, 0xA4, 0x00];
            frame.resize(576, 0);
            frames.extend_from_slice(&frame);
        }
        frames
    }

    #[test]
    fn mp2_file_is_refused_naming_the_layer() {
        let err = refusal(&mp2_frames(), "mp2");
        assert!(
            matches!(err, AudioError::UnsupportedFormat(Format::Mp2)),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("MPEG audio layer II (MP2)"),
            "{err}"
        );
    }

    #[test]
    fn id3_tagged_mp2_is_refused_naming_the_codec() {
        // An ID3v2.3 tag (one TSSE frame) hides the frames from the signature check; the decoder
        // names them.
        let mut tagged = b"ID3\x03\0\0\0\0\0\x0cTSSE\0\0\0\x02\0\0\0x".to_vec();
        tagged.extend_from_slice(&mp2_frames());
        let err = refusal(&tagged, "mp3");
        assert!(
            matches!(err, AudioError::UnsupportedCodec { codec, .. } if codec == symphonia::core::codecs::CODEC_TYPE_MP2),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("MPEG audio layer II (MP2)"),
            "{err}"
        );
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn a_zero_sample_rate_is_refused_naming_the_rate() {
        let err = resample(&[0.0; 10], 0).unwrap_err();
        assert!(
            matches!(err, AudioError::UnsupportedSampleRate { rate: 0, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("cannot resample audio at 0 Hz to 8000 Hz: "),
            "{err}"
        );
    }

    /// An ASF file with a readable header naming audio of format `tag`, and some data.
    fn asf_with_codec(tag: u16) -> Vec<u8> {
        let mut v = asf::header_with_audio(tag);
        v.resize(v.len() + 4000, 0x5A);
        v
    }

    /// Decodes `bytes` with `program` as ffmpeg.
    fn with_ffmpeg(
        bytes: &[u8],
        program: impl Into<PathBuf>,
        timeout: Duration,
    ) -> Result<Vec<i16>, AudioError> {
        let options = DecodeOptions::default()
            .with_ffmpeg(program)
            .with_ffmpeg_timeout(timeout);
        decode_to_8k_mono_with(bytes, Some("wma"), &options)
    }

    /// A shell script standing in for ffmpeg, in a directory removed when dropped.
    struct FakeFfmpeg(PathBuf);

    impl FakeFfmpeg {
        fn new(name: &str, body: &str) -> Self {
            use std::os::unix::fs::PermissionsExt;
            let dir = std::env::temp_dir().join(format!(
                "openum-audio-fake-ffmpeg-{}-{name}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("ffmpeg");
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            Self(path)
        }

        /// Decodes `bytes` with this script as ffmpeg. A script just written can be "busy"
        /// for a moment while another test's child still holds it open: that is retried.
        fn decode(&self, bytes: &[u8], timeout: Duration) -> Result<Vec<i16>, AudioError> {
            for _ in 0..50 {
                match with_ffmpeg(bytes, &self.0, timeout) {
                    Err(AudioError::FfmpegUnavailable { source, .. })
                        if source.raw_os_error() == Some(26) =>
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    other => return other,
                }
            }
            panic!("{} stayed busy", self.0.display());
        }
    }

    impl Drop for FakeFfmpeg {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    #[test]
    fn an_asf_file_without_ffmpeg_is_refused_naming_the_codec_and_the_fix() {
        for (tag, codec) in [
            (0x0161, "ASF (Windows Media Audio 2)"),
            (0x000A, "ASF (Windows Media Audio 9 Voice)"),
            (0x0160, "ASF (Windows Media Audio 1)"),
        ] {
            let err = with_ffmpeg(
                &asf_with_codec(tag),
                "/nonexistent/openum/ffmpeg",
                FFMPEG_TIMEOUT,
            )
            .unwrap_err();
            let AudioError::FfmpegUnavailable {
                asf,
                program,
                source,
            } = &err
            else {
                panic!("{err:?}");
            };
            assert_eq!(asf.format_tag, Some(tag));
            assert_eq!(
                *program,
                FfmpegProgram::Configured("/nonexistent/openum/ffmpeg".into())
            );
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            let text = err.to_string();
            assert!(
                text.starts_with(&format!(
                    "{codec} needs ffmpeg to decode: install ffmpeg (Debian package `ffmpeg`) \
                     or set OPENUM_FFMPEG to its path (/nonexistent/openum/ffmpeg (configured): "
                )),
                "{text}"
            );
        }
    }

    #[test]
    fn ffmpeg_gets_the_file_on_stdin_and_its_stdout_is_the_audio() {
        // `cat` echoes the file while it is still being written: nothing deadlocks, and a
        // megabyte goes through both pipes intact.
        let fake = FakeFfmpeg::new("cat", "exec cat");
        let mut bytes = asf_with_codec(0x0161);
        bytes.extend((0..1_000_000u32).map(|i| (i % 251) as u8));
        bytes.truncate(bytes.len() & !1);
        let out = fake.decode(&bytes, FFMPEG_TIMEOUT).unwrap();
        let expected: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert!(out == expected, "{} samples", out.len());
    }

    #[test]
    fn an_ffmpeg_failure_carries_its_exit_and_trimmed_message() {
        let fake = FakeFfmpeg::new(
            "fails",
            "cat >/dev/null; printf '\\n  [asf] this is not right  \\n\\n' >&2; exit 3",
        );
        let err = fake
            .decode(&asf_with_codec(0x0161), FFMPEG_TIMEOUT)
            .unwrap_err();
        let AudioError::FfmpegFailed { exit, stderr, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(exit.0.code(), Some(3));
        assert_eq!(stderr, "[asf] this is not right");
        assert_eq!(
            err.to_string(),
            "ffmpeg could not decode ASF (Windows Media Audio 2): it failed with exit status: 3: \
             [asf] this is not right"
        );
        // Silent failures say so.
        let err = with_ffmpeg(&asf_with_codec(0x0161), "false", FFMPEG_TIMEOUT).unwrap_err();
        assert!(err.to_string().ends_with(": (no message)"), "{err}");
        // Success with no audio and no complaint is an empty file.
        let err = with_ffmpeg(&asf_with_codec(0x0161), "true", FFMPEG_TIMEOUT).unwrap_err();
        assert!(matches!(err, AudioError::Empty), "{err:?}");
    }

    #[test]
    fn ffmpeg_running_past_the_timeout_is_killed() {
        let fake = FakeFfmpeg::new("hangs", "exec sleep 30");
        let started = std::time::Instant::now();
        let err = fake
            .decode(&asf_with_codec(0x0161), Duration::from_millis(300))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            matches!(err, AudioError::FfmpegTimedOut { timeout, .. } if timeout == Duration::from_millis(300)),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "ffmpeg took longer than 0.3 s to decode ASF (Windows Media Audio 2) and was stopped"
        );
    }

    #[test]
    fn ffmpeg_writing_more_than_a_message_may_hold_is_stopped() {
        // `yes` writes for ever.
        let fake = FakeFfmpeg::new("endless", "exec yes");
        let err = fake
            .decode(&asf_with_codec(0x0161), FFMPEG_TIMEOUT)
            .unwrap_err();
        assert!(matches!(err, AudioError::TooLong), "{err:?}");
    }
}
