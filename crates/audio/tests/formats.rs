//! The voice-mail formats of MS-OXOUM that need more than symphonia: GSM 06.10 WAV (decoded
//! here, checked against ffmpeg's decoders) and ASF / Windows Media Audio (decoded by ffmpeg).
//! Fixtures are made at test time with ffmpeg, which these tests require (they fail, not skip,
//! without it; CI installs it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod common;

use common::{best_correlation, ffmpeg, ffmpeg_decode, TempDir};
use openum_audio::{decode_to_8k_mono, AudioError, FfmpegExit, GsmWavProblem};

#[test]
fn a_gsm_wav_at_another_rate_is_resampled_to_8_khz() {
    let dir = TempDir::new("gsm-rate");
    let mut wav = gsm_fixture(&dir);
    let at_8k = decode_to_8k_mono(&wav, Some("wav")).unwrap();
    assert_eq!(at_8k.len(), 1600);
    // The same blocks, said to be at 16 kHz: half as many samples at 8 kHz.
    let fmt = chunk_at(&wav, b"fmt ");
    wav[fmt + 8 + 4..fmt + 8 + 8].copy_from_slice(&16000u32.to_le_bytes());
    assert_eq!(decode_to_8k_mono(&wav, Some("wav")).unwrap().len(), 800);
}

/// A frequency sweep from 300 Hz to 2.7 kHz over `seconds`, at half scale: a speech-band
/// signal whose waveform a codec must follow closely to correlate.
fn sweep(seconds: u32, rate: u32) -> String {
    format!(
        "aevalsrc=0.5*sin(2*PI*(300*t+{}*t*t)):s={rate}:d={seconds}",
        1200.0 / f64::from(seconds)
    )
}

/// `source` (an ffmpeg lavfi source) encoded to GSM 06.10 WAV in `dir`.
fn gsm_wav_of(dir: &TempDir, source: &str) -> std::path::PathBuf {
    let gsm = dir.path("gsm.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        source,
        "-ar",
        "8000",
        "-ac",
        "1",
        "-c:a",
        "gsm_ms",
        gsm.to_str().unwrap(),
    ]);
    gsm
}

#[test]
fn gsm_wav_decodes_like_ffmpeg_and_keeps_its_length() {
    let dir = TempDir::new("gsm-tone");
    let gsm = gsm_wav_of(&dir, "sine=frequency=440:duration=2");
    let ours = decode_to_8k_mono(&std::fs::read(&gsm).unwrap(), Some("wav")).unwrap();
    // ffmpeg's own choice of decoder for the file: its native `gsm_ms`.
    let theirs = ffmpeg_decode(&gsm, None);
    assert_eq!(ours.len(), 16000, "2 s at 8 kHz");
    assert_eq!(theirs.len(), ours.len());
    let (correlation, lag) = best_correlation(&ours, &theirs, 8);
    println!("GSM tone vs ffmpeg's decode: correlation {correlation:.6} at lag {lag}");
    assert!(correlation >= 0.99, "{correlation} at lag {lag}");
    assert_eq!(lag, 0);
}

#[test]
fn gsm_wav_decodes_bit_exact_with_the_libgsm_reference_even_at_full_scale() {
    // A tone; loud white noise and a full-scale square wave, which drive the fixed-point
    // arithmetic into its saturating corners and the coder through all its lags and grids.
    // libgsm (ffmpeg's `libgsm_ms`, the same library as its GSM encoder) is the reference
    // implementation of the specification; ffmpeg's native `gsm_ms` decoder agrees with it on
    // the tone but departs from it where the arithmetic saturates, so it is only reported.
    for (name, source) in [
        ("tone", "sine=frequency=440:duration=2"),
        (
            "noise",
            "anoisesrc=color=white:amplitude=0.9:duration=2:sample_rate=8000:seed=7",
        ),
        ("square", "aevalsrc=0.999*sgn(sin(2*PI*310*t)):s=8000:d=2"),
    ] {
        let dir = TempDir::new(name);
        let gsm = gsm_wav_of(&dir, source);
        let ours = decode_to_8k_mono(&std::fs::read(&gsm).unwrap(), Some("wav")).unwrap();
        let reference = ffmpeg_decode(&gsm, Some("libgsm_ms"));
        let native = ffmpeg_decode(&gsm, Some("gsm_ms"));
        assert_eq!(ours.len(), 16000, "{name}: 2 s at 8 kHz");
        assert_eq!(reference.len(), ours.len(), "{name}");
        let differ = |other: &[i16]| ours.iter().zip(other).filter(|(a, b)| a != b).count();
        println!(
            "GSM {name}: {} of 16000 samples differ from libgsm; {} from ffmpeg's native \
             decoder (correlation {:.4})",
            differ(&reference),
            differ(&native),
            best_correlation(&ours, &native, 0).0
        );
        assert_eq!(differ(&reference), 0, "{name}: not bit-exact with libgsm");
    }
}

#[test]
fn gsm_wav_of_a_sweep_follows_the_original_signal() {
    let dir = TempDir::new("gsm-sweep");
    let pcm = dir.path("sweep.wav");
    let gsm = dir.path("sweep-gsm.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &sweep(3, 8000),
        "-c:a",
        "pcm_s16le",
        pcm.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-i",
        pcm.to_str().unwrap(),
        "-c:a",
        "gsm_ms",
        gsm.to_str().unwrap(),
    ]);
    let original = decode_to_8k_mono(&std::fs::read(&pcm).unwrap(), Some("wav")).unwrap();
    let decoded = decode_to_8k_mono(&std::fs::read(&gsm).unwrap(), Some("wav")).unwrap();
    assert_eq!(decoded.len(), original.len());
    let (correlation, lag) = best_correlation(&original, &decoded, 40);
    println!("GSM sweep vs original: correlation {correlation:.4} at lag {lag}");
    assert!(correlation >= 0.9, "{correlation} at lag {lag}");
    // And it is, sample for sample, what the reference decoder makes of the same file.
    assert_eq!(decoded, ffmpeg_decode(&gsm, Some("libgsm_ms")));
}

/// A GSM WAV made by ffmpeg, for the malformed variants.
fn gsm_fixture(dir: &TempDir) -> Vec<u8> {
    std::fs::read(gsm_wav_of(dir, "sine=frequency=300:duration=0.2")).unwrap()
}

/// Where `id`'s chunk starts in a RIFF file.
fn chunk_at(wav: &[u8], id: &[u8; 4]) -> usize {
    let mut at = 12;
    while &wav[at..at + 4] != id {
        let len = u32::from_le_bytes(wav[at + 4..at + 8].try_into().unwrap()) as usize;
        at += 8 + len + (len & 1);
    }
    at
}

#[test]
fn a_gsm_wav_cut_inside_a_block_is_refused_as_truncated() {
    let dir = TempDir::new("gsm-truncated");
    let mut wav = gsm_fixture(&dir);
    let data = chunk_at(&wav, b"data");
    let len = u32::from_le_bytes(wav[data + 4..data + 8].try_into().unwrap()) as usize;
    assert_eq!(len % 65, 0);
    // Cut the file 20 bytes into its last block.
    wav.truncate(data + 8 + len - 45);
    let err = decode_to_8k_mono(&wav, Some("wav")).unwrap_err();
    assert!(
        matches!(
            err,
            AudioError::MalformedGsmWav(GsmWavProblem::TruncatedBlock { data_len }) if data_len == len - 45
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("GSM 06.10") && text.contains("truncated"),
        "{text}"
    );
}

#[test]
fn a_gsm_wav_with_the_wrong_block_alignment_is_refused_naming_it() {
    let dir = TempDir::new("gsm-align");
    let mut wav = gsm_fixture(&dir);
    let fmt = chunk_at(&wav, b"fmt ");
    wav[fmt + 8 + 12..fmt + 8 + 14].copy_from_slice(&66u16.to_le_bytes());
    let err = decode_to_8k_mono(&wav, Some("wav")).unwrap_err();
    assert!(
        matches!(
            err,
            AudioError::MalformedGsmWav(GsmWavProblem::BlockAlign(66))
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "malformed GSM 06.10 WAV file: its block alignment is 66 bytes, not the 65 of two GSM \
         frames"
    );
}

#[test]
fn a_gsm_wav_claiming_megahertz_is_refused_before_it_lifts_the_length_limit() {
    let dir = TempDir::new("gsm-rate");
    let mut wav = gsm_fixture(&dir);
    let fmt = chunk_at(&wav, b"fmt ");
    wav[fmt + 8 + 4..fmt + 8 + 8].copy_from_slice(&8_000_000u32.to_le_bytes());
    let err = decode_to_8k_mono(&wav, Some("wav")).unwrap_err();
    assert!(
        matches!(
            err,
            AudioError::MalformedGsmWav(GsmWavProblem::ImplausibleSampleRate(8_000_000))
        ),
        "{err:?}"
    );
}

#[test]
fn a_gsm_wav_declaring_other_than_320_samples_per_block_is_refused() {
    let dir = TempDir::new("gsm-spb");
    let mut wav = gsm_fixture(&dir);
    let fmt = chunk_at(&wav, b"fmt ");
    wav[fmt + 8 + 18..fmt + 8 + 20].copy_from_slice(&160u16.to_le_bytes());
    let err = decode_to_8k_mono(&wav, Some("wav")).unwrap_err();
    assert!(
        matches!(
            err,
            AudioError::MalformedGsmWav(GsmWavProblem::SamplesPerBlock(160))
        ),
        "{err:?}"
    );
}

/// A sweep at 16 kHz as PCM WAV, and the same encoded with `codec` in ASF. (At 16 kHz the WMA
/// frame, and so the codec's delay, is a whole number of 8 kHz samples; at 22.05 kHz the
/// delay of 1024 samples falls between two, and the sweep's upper half loses correlation to
/// that half-sample shift alone.)
fn wma_fixture(dir: &TempDir, codec: &str) -> (Vec<u8>, Vec<u8>) {
    let pcm = dir.path("source.wav");
    let wma = dir.path("encoded.wma");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &sweep(3, 16000),
        "-c:a",
        "pcm_s16le",
        pcm.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-i",
        pcm.to_str().unwrap(),
        "-c:a",
        codec,
        "-b:a",
        "64k",
        wma.to_str().unwrap(),
    ]);
    (std::fs::read(pcm).unwrap(), std::fs::read(wma).unwrap())
}

fn assert_wma_follows_its_source(codec: &str) {
    let dir = TempDir::new(codec);
    let (pcm, wma) = wma_fixture(&dir, codec);
    let source = decode_to_8k_mono(&pcm, Some("wav")).unwrap();
    let decoded = decode_to_8k_mono(&wma, Some("wma")).unwrap();
    assert!(
        decoded.len() + 2000 >= source.len(),
        "{codec}: {} samples for {}",
        decoded.len(),
        source.len()
    );
    let (correlation, lag) = best_correlation(&source, &decoded, 2000);
    println!("{codec} vs source: correlation {correlation:.4} at lag {lag}");
    assert!(correlation >= 0.9, "{codec}: {correlation} at lag {lag}");
}

#[test]
fn wma2_in_asf_decodes_through_ffmpeg_following_the_source() {
    assert_wma_follows_its_source("wmav2");
}

#[test]
fn wma1_in_asf_decodes_through_ffmpeg_following_the_source() {
    assert_wma_follows_its_source("wmav1");
}

#[test]
fn an_asf_file_ffmpeg_cannot_decode_is_refused_with_ffmpegs_message() {
    let dir = TempDir::new("asf-corrupt");
    let (_, wma) = wma_fixture(&dir, "wmav2");
    let header_size = u64::from_le_bytes(wma[16..24].try_into().unwrap()) as usize;

    // Only the header, no data object: ffmpeg fails.
    let err = decode_to_8k_mono(&wma[..header_size], Some("wma")).unwrap_err();
    let AudioError::FfmpegFailed { asf, exit, stderr } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(asf.format_tag, Some(0x0161));
    assert!(!exit.0.success());
    assert!(stderr.contains("Invalid data"), "{stderr}");
    let text = err.to_string();
    println!("{text}");
    assert!(
        text.starts_with("ffmpeg could not decode ASF (Windows Media Audio 2): it failed with ")
            && text.ends_with(stderr.as_str()),
        "{text}"
    );

    // Every data packet overwritten: ffmpeg exits 0 but writes nothing and complains.
    let mut garbled = wma.clone();
    for b in &mut garbled[header_size + 50..] {
        *b = 0xFF;
    }
    let err = decode_to_8k_mono(&garbled, Some("wma")).unwrap_err();
    let AudioError::FfmpegFailed {
        exit: FfmpegExit(status),
        stderr,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(status.success());
    assert!(!stderr.is_empty() && stderr == stderr.trim());
    assert!(
        err.to_string().contains("without writing any audio"),
        "{err}"
    );
}
