//! G.711 µ-law and A-law encoding (ITU-T G.711), from 16-bit linear PCM.
//!
//! Hand-written: the codec is a few lines of bit manipulation and a crate would add a dependency
//! for what is, in effect, a lookup.

/// The µ-law byte for silence (linear 0).
pub const ULAW_SILENCE: u8 = 0xFF;
/// The A-law byte for silence (linear 0).
pub const ALAW_SILENCE: u8 = 0xD5;

/// Encodes one sample as µ-law (with the standard bias of 0x84 and clip at 32635).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let exponent = (7 - ((s >> 7).leading_zeros() as i32 - 24)).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// Encodes one sample as A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s >= 0 {
        0x80
    } else {
        s = -s - 1;
        0
    };
    s = s.min(32767) >> 3; // 13-bit magnitude
    let (exponent, mantissa) = if s < 32 {
        (0, s >> 1)
    } else {
        let exponent = 31 - (s as u32).leading_zeros() as i32 - 4; // 1..=7
        (exponent, (s >> exponent) & 0x0F)
    };
    ((sign | (exponent << 4) | mantissa) as u8) ^ 0x55
}

/// Decodes µ-law (used by tests and by the audio checks).
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let b = !byte;
    let sign = b & 0x80;
    let exponent = (b >> 4) & 0x07;
    let mantissa = i32::from(b & 0x0F);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    let v = if sign != 0 { -magnitude } else { magnitude };
    i16::try_from(v).unwrap_or(if v < 0 { i16::MIN } else { i16::MAX })
}

/// Decodes A-law.
pub fn alaw_to_linear(byte: u8) -> i16 {
    let b = byte ^ 0x55;
    let sign = b & 0x80;
    let exponent = i32::from((b >> 4) & 0x07);
    let mantissa = i32::from(b & 0x0F);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    let v = if sign != 0 { magnitude } else { -magnitude };
    i16::try_from(v).unwrap_or(if v < 0 { i16::MIN } else { i16::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_and_known_points() {
        assert_eq!(linear_to_ulaw(0), ULAW_SILENCE);
        assert_eq!(linear_to_alaw(0), ALAW_SILENCE);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn round_trip_error_is_within_the_segment_step() {
        for s in (-32768..=32767).step_by(7) {
            let s = s as i16;
            for (enc, dec) in [
                (
                    linear_to_ulaw as fn(i16) -> u8,
                    ulaw_to_linear as fn(u8) -> i16,
                ),
                (linear_to_alaw, alaw_to_linear),
            ] {
                let back = i32::from(dec(enc(s)));
                let err = (back - i32::from(s)).abs();
                // The quantisation step doubles per segment; 1/16 of the value plus a floor.
                let bound = (i32::from(s).abs() / 16).max(16) + 8;
                assert!(err <= bound.max(1100), "sample {s} -> {back}");
                assert!(err <= bound, "sample {s} -> {back} (err {err} > {bound})");
            }
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        let mut last = i32::MIN;
        for s in (-32768..=32767).step_by(3) {
            let v = i32::from(ulaw_to_linear(linear_to_ulaw(s as i16)));
            assert!(v >= last);
            last = v;
        }
    }
}
