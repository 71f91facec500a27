//! `OPENUM_FFMPEG` chooses the ffmpeg that decodes ASF. Alone in its test binary: the variable
//! is process-wide, and the other tests decode ASF with ffmpeg from `PATH`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod common;

use openum_audio::{decode_to_8k_mono, AudioError, FfmpegProgram, FFMPEG_ENV};

#[test]
fn openum_ffmpeg_naming_a_missing_program_refuses_wma_naming_the_format_and_the_fix() {
    let dir = common::TempDir::new("env");
    let wma = dir.path("message.wma");
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=1",
        "-ar",
        "16000",
        "-c:a",
        "wmav2",
        wma.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&wma).unwrap();
    // With the variable unset, ffmpeg on PATH decodes it.
    std::env::remove_var(FFMPEG_ENV);
    assert!(decode_to_8k_mono(&bytes, Some("wma")).unwrap().len() >= 7000);

    let missing = dir.path("no-such-ffmpeg");
    std::env::set_var(FFMPEG_ENV, &missing);
    let err = decode_to_8k_mono(&bytes, Some("wma")).unwrap_err();
    std::env::remove_var(FFMPEG_ENV);
    let AudioError::FfmpegUnavailable { asf, program, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(asf.format_tag, Some(0x0161));
    assert_eq!(*program, FfmpegProgram::Environment(missing.clone()));
    let text = err.to_string();
    assert!(
        text.starts_with(
            "ASF (Windows Media Audio 2) needs ffmpeg to decode: install ffmpeg (Debian package \
             `ffmpeg`) or set OPENUM_FFMPEG to its path ("
        ) && text.contains(&format!("{} (from OPENUM_FFMPEG): ", missing.display())),
        "{text}"
    );
}
