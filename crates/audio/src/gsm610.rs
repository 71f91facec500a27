//! GSM 06.10 full-rate speech decoding (RPE-LTP), for WAV files with format tag 0x0031.
//!
//! Why hand-written: no maintained Rust GSM 06.10 decoder exists (crates.io has only an
//! unmaintained binding to the C libgsm), and voice-mail systems (Exchange Unified Messaging,
//! many PBXs) put GSM 06.10 WAV files in mailboxes. The codec is small and fully specified, so it
//! is written here from the specification rather than pulled in as C.
//!
//! What it follows: ETSI EN 300 961 / GSM 06.10 ("Full rate speech; Transcoding"), the decoder of
//! clause 4.3 built from the blocks of clause 4.2: APCM inverse quantisation and RPE grid
//! positioning (4.2.16, 4.2.17), long-term synthesis filtering (4.3.2), decoding of the coded
//! log-area ratios, their interpolation and conversion to reflection coefficients (4.2.8,
//! 4.2.9), the short-term synthesis lattice filter (4.3.3), then de-emphasis, upscaling and
//! truncation to 13 bits (4.3.4–4.3.6). Every step uses the specification's 16-bit fixed-point
//! operations (saturating `add`/`sub`, rounding `mult_r`, arithmetic shifts), so the output is
//! bit-exact with the reference: the tests check it sample for sample against libgsm (through
//! ffmpeg's `libgsm_ms`), also on full-scale signals that saturate the arithmetic. ffmpeg's
//! native `gsm_ms` decoder gives the same samples for ordinary signals but departs from the
//! reference on such full-scale ones.
//!
//! The framing is Microsoft's "WAV49" (`WAVE_FORMAT_GSM610`): a 65-byte block holds two
//! 260-bit frames back to back, 320 samples in all. The block is one little-endian bit stream:
//! bits are taken from each byte least significant first, each parameter is stored least
//! significant bit first, and the parameters come in the specification's order (LARc1..LARc8,
//! then per sub-frame Nc, bc, Mc, xmaxc, xMc0..xMc12).

/// Bytes in one WAV49 block.
pub(crate) const BLOCK_ALIGN: usize = 65;
/// Samples one block decodes to.
pub(crate) const SAMPLES_PER_BLOCK: usize = 2 * FRAME;
/// Samples in one GSM frame (20 ms at 8 kHz).
const FRAME: usize = 160;
/// Samples in one sub-frame.
const SUBFRAME: usize = 40;

/// Bits of LARc1..LARc8 (table 1.1 of the specification).
const LARC_BITS: [u32; 8] = [6, 6, 5, 5, 4, 4, 3, 3];
/// MIC(i): the smallest value of each LARc, which the coded value is offset from.
const MIC: [i16; 8] = [-32, -32, -16, -16, -8, -8, -4, -4];
/// B(i) of the LAR quantiser (table 4.1).
const B: [i16; 8] = [0, 0, 2048, -2560, 94, -1792, -341, -1144];
/// 1/A(i) of the LAR quantiser (table 4.1), scaled.
const INVA: [i16; 8] = [13107, 13107, 13107, 13107, 19223, 17476, 31454, 29708];
/// QLB: the decoded long-term prediction gains (table 4.3b).
const QLB: [i16; 4] = [3277, 11469, 21299, 32767];
/// FAC: the normalised inverse mantissas of the APCM block maximum (table 4.6).
const FAC: [i16; 8] = [18431, 20479, 22527, 24575, 26623, 28671, 30719, 32767];
/// The smallest and largest long-term lags the coder uses; others repeat the last one.
const LAG_MIN: i16 = 40;
const LAG_MAX: i16 = 120;

// The basic 16-bit operations of the specification (clause 4.1 / 5.1).

fn saturate(x: i32) -> i16 {
    x.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

fn add(a: i16, b: i16) -> i16 {
    saturate(i32::from(a) + i32::from(b))
}

fn sub(a: i16, b: i16) -> i16 {
    saturate(i32::from(a) - i32::from(b))
}

/// `a × b` with rounding, in Q15; the one overflowing product saturates.
fn mult_r(a: i16, b: i16) -> i16 {
    if a == i16::MIN && b == i16::MIN {
        i16::MAX
    } else {
        ((i32::from(a) * i32::from(b) + 16384) >> 15) as i16
    }
}

fn abs_s(a: i16) -> i16 {
    if a == i16::MIN {
        i16::MAX
    } else {
        a.abs()
    }
}

/// Arithmetic shift right by `n` (left for a negative `n`).
fn asr(a: i16, n: i16) -> i16 {
    if n >= 16 {
        if a < 0 {
            -1
        } else {
            0
        }
    } else if n <= -16 {
        0
    } else if n < 0 {
        (i32::from(a) << -n) as i16
    } else {
        a >> n
    }
}

/// Shift left by `n` (arithmetic right for a negative `n`).
fn asl(a: i16, n: i16) -> i16 {
    if n >= 16 {
        0
    } else if n <= -16 {
        if a < 0 {
            -1
        } else {
            0
        }
    } else if n < 0 {
        a >> -n
    } else {
        (i32::from(a) << n) as i16
    }
}

/// The parameters of one 5 ms sub-frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SubFrame {
    /// Nc: the long-term prediction lag.
    lag: i16,
    /// bc: the coded long-term prediction gain.
    gain: i16,
    /// Mc: the RPE grid position.
    grid: i16,
    /// xmaxc: the coded block maximum.
    xmaxc: i16,
    /// xMc: the 13 coded RPE pulses.
    pulses: [i16; 13],
}

/// The parameters of one 20 ms frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Frame {
    /// LARc1..LARc8: the coded log-area ratios.
    larc: [i16; 8],
    sub: [SubFrame; 4],
}

/// Reads a block's bits, least significant first within each byte and each value.
struct Bits<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn take(&mut self, n: u32) -> i16 {
        let mut value = 0i16;
        for i in 0..n {
            let byte = self.bytes.get(self.at / 8).copied().unwrap_or(0);
            let bit = (byte >> (self.at % 8)) & 1;
            value |= i16::from(bit) << i;
            self.at += 1;
        }
        value
    }

    fn frame(&mut self) -> Frame {
        let mut frame = Frame::default();
        for (larc, bits) in frame.larc.iter_mut().zip(LARC_BITS) {
            *larc = self.take(bits);
        }
        for sub in &mut frame.sub {
            sub.lag = self.take(7);
            sub.gain = self.take(2);
            sub.grid = self.take(2);
            sub.xmaxc = self.take(6);
            for pulse in &mut sub.pulses {
                *pulse = self.take(3);
            }
        }
        frame
    }
}

/// A GSM 06.10 decoder: the state the synthesis carries from frame to frame.
#[derive(Clone, Debug)]
pub(crate) struct Decoder {
    /// LARpp of the previous frame, for the interpolation at the start of the next.
    larpp_prev: [i16; 8],
    /// v[0..8]: the short-term synthesis lattice filter's memory.
    v: [i16; 9],
    /// drp[-120..-1], the reconstructed short-term residual of the last 120 samples, followed
    /// by the 40 samples of the sub-frame being decoded.
    drp: [i16; 120 + SUBFRAME],
    /// nrp: the last valid long-term lag.
    nrp: i16,
    /// msr: the de-emphasis filter's memory.
    msr: i16,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            larpp_prev: [0; 8],
            v: [0; 9],
            drp: [0; 120 + SUBFRAME],
            nrp: LAG_MIN,
            msr: 0,
        }
    }
}

impl Decoder {
    /// Decodes one 65-byte WAV49 block (two frames) into `out`, 320 samples.
    pub(crate) fn decode_block(&mut self, block: &[u8; BLOCK_ALIGN], out: &mut Vec<i16>) {
        let mut bits = Bits {
            bytes: block,
            at: 0,
        };
        for _ in 0..2 {
            let frame = bits.frame();
            let mut samples = [0i16; FRAME];
            self.decode_frame(&frame, &mut samples);
            out.extend_from_slice(&samples);
        }
    }

    fn decode_frame(&mut self, frame: &Frame, out: &mut [i16; FRAME]) {
        // wt: the reconstructed short-term residual, sub-frame by sub-frame.
        let mut wt = [0i16; FRAME];
        for (sub, wt) in frame.sub.iter().zip(wt.chunks_exact_mut(SUBFRAME)) {
            let erp = rpe_decode(sub);
            self.long_term_synthesis(sub, &erp, wt);
        }
        self.short_term_synthesis(&frame.larc, &wt, out);
        self.postprocess(out);
    }

    /// 4.3.2: rebuilds drp[0..39] from the RPE signal and the delayed residual, writes it to
    /// `wt` and shifts the history.
    fn long_term_synthesis(&mut self, sub: &SubFrame, erp: &[i16; SUBFRAME], wt: &mut [i16]) {
        let lag = if (LAG_MIN..=LAG_MAX).contains(&sub.lag) {
            sub.lag
        } else {
            self.nrp
        };
        self.nrp = lag;
        let brp = QLB[(sub.gain & 3) as usize];
        // drp[k] is self.drp[120 + k]; drp[k - lag] is self.drp[120 + k - lag] (lag ≥ 40).
        let lag = lag as usize;
        for (k, &e) in erp.iter().enumerate() {
            let drpp = mult_r(brp, self.drp[120 + k - lag]);
            self.drp[120 + k] = add(e, drpp);
        }
        wt.copy_from_slice(&self.drp[120..]);
        self.drp.copy_within(SUBFRAME.., 0);
    }

    /// 4.2.8–4.2.10 / 4.3.3: decodes the LARs, interpolates them with the previous frame's over
    /// the four stretches of the frame, and runs the lattice filter.
    fn short_term_synthesis(&mut self, larc: &[i16; 8], wt: &[i16; FRAME], sr: &mut [i16; FRAME]) {
        let larpp = decode_lars(larc);
        let prev = self.larpp_prev;
        let stretches: [(std::ops::Range<usize>, [i16; 8]); 4] = [
            (
                0..13,
                std::array::from_fn(|i| add(add(prev[i] >> 2, larpp[i] >> 2), prev[i] >> 1)),
            ),
            (
                13..27,
                std::array::from_fn(|i| add(prev[i] >> 1, larpp[i] >> 1)),
            ),
            (
                27..40,
                std::array::from_fn(|i| add(add(prev[i] >> 2, larpp[i] >> 2), larpp[i] >> 1)),
            ),
            (40..FRAME, larpp),
        ];
        for (range, larp) in stretches {
            let rrp = larp.map(lar_to_reflection);
            for k in range {
                let mut sri = wt[k];
                for i in (0..8).rev() {
                    sri = sub(sri, mult_r(rrp[i], self.v[i]));
                    self.v[i + 1] = add(self.v[i], mult_r(rrp[i], sri));
                }
                self.v[0] = sri;
                sr[k] = sri;
            }
        }
        self.larpp_prev = larpp;
    }

    /// 4.3.4–4.3.6: de-emphasis, upscaling, truncation to 13 bits.
    fn postprocess(&mut self, samples: &mut [i16; FRAME]) {
        for s in samples {
            self.msr = add(*s, mult_r(self.msr, 28180));
            *s = add(self.msr, self.msr) & !7;
        }
    }
}

/// 4.2.15–4.2.17: the 40-sample RPE signal erp of one sub-frame: the 13 pulses, inverse
/// quantised with the block maximum, on every third sample from the grid position.
fn rpe_decode(subframe: &SubFrame) -> [i16; SUBFRAME] {
    // The block maximum's exponent and mantissa.
    let xmaxc = subframe.xmaxc;
    let mut exp: i16 = if xmaxc > 15 { (xmaxc >> 3) - 1 } else { 0 };
    let mut mant = xmaxc - (exp << 3);
    if mant == 0 {
        exp = -4;
        mant = 7;
    } else {
        while mant <= 7 {
            mant = (mant << 1) | 1;
            exp -= 1;
        }
        mant -= 8;
    }
    // APCM inverse quantisation.
    let temp1 = FAC[(mant & 7) as usize];
    let temp2 = sub(6, exp);
    let temp3 = asl(1, sub(temp2, 1));
    let mut erp = [0i16; SUBFRAME];
    let grid = (subframe.grid & 3) as usize;
    for (i, &pulse) in subframe.pulses.iter().enumerate() {
        // The 3-bit code is an odd level from -7 to 7, in Q12.
        let temp = ((pulse << 1) - 7) << 12;
        let temp = add(mult_r(temp1, temp), temp3);
        erp[grid + 3 * i] = asr(temp, temp2);
    }
    erp
}

/// 4.2.8: LARpp(1..8) from the coded LARc(1..8).
fn decode_lars(larc: &[i16; 8]) -> [i16; 8] {
    std::array::from_fn(|i| {
        let temp1 = add(larc[i], MIC[i]) << 10;
        let temp1 = sub(temp1, B[i] << 1);
        let temp1 = mult_r(INVA[i], temp1);
        add(temp1, temp1)
    })
}

/// 4.2.9.2: a reflection coefficient from an interpolated LAR (the piecewise-linear inverse
/// of the LAR companding).
fn lar_to_reflection(larp: i16) -> i16 {
    let magnitude = abs_s(larp);
    let magnitude = if magnitude < 11059 {
        magnitude << 1
    } else if magnitude < 20070 {
        magnitude + 11059
    } else {
        add(magnitude >> 2, 26112)
    };
    if larp < 0 {
        sub(0, magnitude)
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packs `frames` the WAV49 way: one little-endian bit stream.
    fn pack(frames: [&Frame; 2]) -> [u8; BLOCK_ALIGN] {
        let mut block = [0u8; BLOCK_ALIGN];
        let mut at = 0usize;
        let mut put = |value: i16, bits: u32| {
            for i in 0..bits {
                if (value >> i) & 1 == 1 {
                    block[at / 8] |= 1 << (at % 8);
                }
                at += 1;
            }
        };
        for frame in frames {
            for (&larc, bits) in frame.larc.iter().zip(LARC_BITS) {
                put(larc, bits);
            }
            for sub in &frame.sub {
                put(sub.lag, 7);
                put(sub.gain, 2);
                put(sub.grid, 2);
                put(sub.xmaxc, 6);
                for &p in &sub.pulses {
                    put(p, 3);
                }
            }
        }
        assert_eq!(at, 520);
        block
    }

    fn sample_frame(seed: i16) -> Frame {
        let mut frame = Frame::default();
        for (i, larc) in frame.larc.iter_mut().enumerate() {
            *larc = (seed + i as i16 * 3) & ((1 << LARC_BITS[i]) - 1);
        }
        for (j, sub) in frame.sub.iter_mut().enumerate() {
            let j = j as i16;
            sub.lag = (seed * 7 + j * 13) & 127;
            sub.gain = (seed + j) & 3;
            sub.grid = (seed + 2 * j) & 3;
            sub.xmaxc = (seed * 5 + j * 11) & 63;
            for (i, p) in sub.pulses.iter_mut().enumerate() {
                *p = (seed + j + i as i16) & 7;
            }
        }
        frame
    }

    #[test]
    fn a_block_unpacks_into_two_frames_in_the_wav49_bit_order() {
        let (a, b) = (sample_frame(5), sample_frame(22));
        let block = pack([&a, &b]);
        let mut bits = Bits {
            bytes: &block,
            at: 0,
        };
        assert_eq!(bits.frame(), a);
        // The second frame starts in the middle of byte 32.
        assert_eq!(bits.at, 260);
        assert_eq!(bits.frame(), b);
        assert_eq!(bits.at, 520);
    }

    #[test]
    fn the_first_parameter_is_the_low_six_bits_of_the_first_byte() {
        let mut block = [0u8; BLOCK_ALIGN];
        block[0] = 0b1010_1101;
        block[1] = 0b0000_0001;
        let frame = Bits {
            bytes: &block,
            at: 0,
        }
        .frame();
        assert_eq!(frame.larc[0], 0b10_1101);
        assert_eq!(frame.larc[1], 0b00_0110);
    }

    #[test]
    fn the_block_maximum_splits_into_the_specified_exponent_and_mantissa() {
        // xmaxc 0 → exp -4, mant 7 → temp2 = 10, FAC 32767; the level 7 (code 7) then gives
        // (28672 + 512) >> 10 = 28.
        let mut sub = SubFrame {
            xmaxc: 0,
            pulses: [7; 13],
            ..SubFrame::default()
        };
        assert_eq!(rpe_decode(&sub)[0], 28);
        // xmaxc 63 → exp 6, mant 7 → no shift: 28672 (± rounding) at full scale.
        sub.xmaxc = 63;
        let erp = rpe_decode(&sub);
        assert_eq!(erp[0], mult_r(32767, 28672));
        // Only every third sample from the grid position carries a pulse.
        sub.grid = 2;
        let erp = rpe_decode(&sub);
        assert!(erp
            .iter()
            .enumerate()
            .all(|(k, &e)| (e != 0) == (k >= 2 && (k - 2) % 3 == 0)));
    }

    #[test]
    fn out_of_range_lags_repeat_the_last_valid_one() {
        let mut decoder = Decoder::default();
        let sub = SubFrame {
            lag: 3,
            ..SubFrame::default()
        };
        decoder.long_term_synthesis(&sub, &[0; SUBFRAME], &mut [0; SUBFRAME]);
        assert_eq!(decoder.nrp, 40);
        let sub = SubFrame {
            lag: 77,
            ..SubFrame::default()
        };
        decoder.long_term_synthesis(&sub, &[0; SUBFRAME], &mut [0; SUBFRAME]);
        assert_eq!(decoder.nrp, 77);
        let sub = SubFrame {
            lag: 127,
            ..SubFrame::default()
        };
        decoder.long_term_synthesis(&sub, &[0; SUBFRAME], &mut [0; SUBFRAME]);
        assert_eq!(decoder.nrp, 77);
    }

    #[test]
    fn reflection_coefficients_follow_the_three_segments_and_saturate() {
        assert_eq!(lar_to_reflection(1000), 2000);
        assert_eq!(lar_to_reflection(-1000), -2000);
        assert_eq!(lar_to_reflection(15000), 26059);
        // 8191 + 26112 overflows: the saturating add keeps it at full scale.
        assert_eq!(lar_to_reflection(32767), i16::MAX);
        assert_eq!(lar_to_reflection(i16::MIN), -i16::MAX);
    }

    #[test]
    fn the_basic_operations_saturate_and_round_as_specified() {
        assert_eq!(add(i16::MAX, 1), i16::MAX);
        assert_eq!(sub(i16::MIN, 1), i16::MIN);
        assert_eq!(mult_r(i16::MIN, i16::MIN), i16::MAX);
        assert_eq!(mult_r(16384, 3), 2); // 1.5 rounds up
        assert_eq!(mult_r(16384, -3), -1); // -1.5 rounds up too
        assert_eq!(asl(1, -1), 0);
        assert_eq!(asr(-5, 1), -3);
        assert_eq!(asr(3, -2), 12);
    }

    #[test]
    fn a_block_decodes_to_320_deterministic_13_bit_samples() {
        // All-zero parameters are not silence in GSM (LARc 0 is the most negative LAR and the
        // pulse code 0 is the level -7), but the output is fixed by the specification.
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        decoder.decode_block(&[0; BLOCK_ALIGN], &mut out);
        assert_eq!(out.len(), SAMPLES_PER_BLOCK);
        assert!(out.iter().all(|s| s & 7 == 0), "13-bit output");
        let mut again = Vec::new();
        Decoder::default().decode_block(&[0; BLOCK_ALIGN], &mut again);
        assert_eq!(out, again);
    }
}
