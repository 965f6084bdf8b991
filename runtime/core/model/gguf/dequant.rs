//! Dequantisation of ggml block formats to f32, following ggml's
//! `dequantize_row_*` reference functions (`ggml-quants.c`) line for line.
use half::{bf16, f16};

use super::GgmlType;

/// Dequantises `bytes` of `ggml_type` into `n` f32 values; `None` if the type
/// is not supported. `bytes` must hold exactly `n` elements' worth of blocks.
pub(super) fn dequantize(ggml_type: GgmlType, bytes: &[u8], n: usize) -> Option<Vec<f32>> {
    use GgmlType as T;
    let mut out = vec![0f32; n];
    let y = &mut out;
    match ggml_type {
        T::F32 => blocks(bytes, y, 4, 1, |b, y| {
            y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])
        }),
        T::F16 => blocks(bytes, y, 2, 1, |b, y| y[0] = f16_at(b, 0)),
        T::BF16 => blocks(bytes, y, 2, 1, |b, y| {
            y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32()
        }),
        T::Q4_0 => blocks(bytes, y, 18, 32, block_q4_0),
        T::Q4_1 => blocks(bytes, y, 20, 32, block_q4_1),
        T::Q5_0 => blocks(bytes, y, 22, 32, block_q5_0),
        T::Q5_1 => blocks(bytes, y, 24, 32, block_q5_1),
        T::Q8_0 => blocks(bytes, y, 34, 32, block_q8_0),
        T::Q2_K => blocks(bytes, y, 84, 256, block_q2_k),
        T::Q3_K => blocks(bytes, y, 110, 256, block_q3_k),
        T::Q4_K => blocks(bytes, y, 144, 256, block_q4_k),
        T::Q5_K => blocks(bytes, y, 176, 256, block_q5_k),
        T::Q6_K => blocks(bytes, y, 210, 256, block_q6_k),
        T::Q8_K => blocks(bytes, y, 292, 256, block_q8_k),
        _ => return None,
    }
    Some(out)
}

/// Runs `block` over matching chunks; `chunks_exact` fixes each slice's length,
/// so the constant indices inside the block functions are always in range.
fn blocks(
    bytes: &[u8],
    out: &mut [f32],
    block_bytes: usize,
    block_len: usize,
    block: impl Fn(&[u8], &mut [f32]),
) {
    for (b, y) in bytes
        .chunks_exact(block_bytes)
        .zip(out.chunks_exact_mut(block_len))
    {
        block(b, y);
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Low nibbles are elements 0..16, high nibbles 16..32 (ggml's layout).
fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (j, &q) in b[2..18].iter().enumerate() {
        y[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for (j, &q) in b[4..20].iter().enumerate() {
        y[j] = (q & 0x0F) as f32 * d + m;
        y[j + 16] = (q >> 4) as f32 * d + m;
    }
}

/// The fifth bits of Q5 elements j and j+16, from the 32-bit `qh` mask.
fn q5_high_bits(qh: u32, j: usize) -> (u8, u8) {
    (
        (((qh >> j) << 4) & 0x10) as u8,
        ((qh >> (j + 12)) & 0x10) as u8,
    )
}

fn block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for (j, &q) in b[6..22].iter().enumerate() {
        let (h0, h1) = q5_high_bits(qh, j);
        y[j] = (((q & 0x0F) | h0) as i32 - 16) as f32 * d;
        y[j + 16] = (((q >> 4) | h1) as i32 - 16) as f32 * d;
    }
}

fn block_q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for (j, &q) in b[8..24].iter().enumerate() {
        let (h0, h1) = q5_high_bits(qh, j);
        y[j] = ((q & 0x0F) | h0) as f32 * d + m;
        y[j + 16] = ((q >> 4) | h1) as f32 * d + m;
    }
}

fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..34]) {
        *y = q as i8 as f32 * d;
    }
}

/// Layout: scales[16] (4-bit scale | 4-bit min), qs[64], d, dmin.
fn block_q2_k(b: &[u8], y: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    // Each 128-element half uses 32 bytes of qs, four 2-bit planes of them.
    for half in 0..2 {
        for plane in 0..4 {
            for sub in 0..2 {
                let sc = scales[half * 8 + plane * 2 + sub];
                let (dl, ml) = (d * (sc & 0x0F) as f32, dmin * (sc >> 4) as f32);
                let q = &qs[half * 32 + sub * 16..][..16];
                let out = &mut y[half * 128 + plane * 32 + sub * 16..][..16];
                for (y, &q) in out.iter_mut().zip(q) {
                    *y = dl * ((q >> (2 * plane)) & 3) as f32 - ml;
                }
            }
        }
    }
}

/// The 16 six-bit Q3_K scales packed into 12 bytes (ggml's kmask unpacking).
fn q3_k_scales(packed: &[u8]) -> [i8; 16] {
    let word =
        |i: usize| u32::from_le_bytes([packed[i], packed[i + 1], packed[i + 2], packed[i + 3]]);
    let (a0, a1, tmp) = (word(0), word(4), word(8));
    let (kmask1, kmask2) = (0x0303_0303u32, 0x0f0f_0f0fu32);
    let aux = [
        (a0 & kmask2) | ((tmp & kmask1) << 4),
        (a1 & kmask2) | (((tmp >> 2) & kmask1) << 4),
        ((a0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4),
        ((a1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4),
    ];
    let mut scales = [0i8; 16];
    for (i, s) in scales.iter_mut().enumerate() {
        *s = (aux[i / 4].to_le_bytes()[i % 4] as i8) - 32;
    }
    scales
}

/// Layout: hmask[32], qs[64], scales[12], d. A clear hmask bit subtracts 4.
fn block_q3_k(b: &[u8], y: &mut [f32]) {
    let (hmask, qs) = (&b[0..32], &b[32..96]);
    let scales = q3_k_scales(&b[96..108]);
    let d = f16_at(b, 108);
    for half in 0..2 {
        for plane in 0..4 {
            let mask = 1u8 << (half * 4 + plane);
            for sub in 0..2 {
                let dl = d * scales[half * 8 + plane * 2 + sub] as f32;
                let q = &qs[half * 32 + sub * 16..][..16];
                let h = &hmask[sub * 16..][..16];
                let out = &mut y[half * 128 + plane * 32 + sub * 16..][..16];
                for ((y, &q), &h) in out.iter_mut().zip(q).zip(h) {
                    let low = ((q >> (2 * plane)) & 3) as i32;
                    *y = dl * (low - if h & mask != 0 { 0 } else { 4 }) as f32;
                }
            }
        }
    }
}

/// Scale and min `j` (0..8) of a Q4_K/Q5_K block: six bits each, packed into
/// 12 bytes (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    };
    (sc as f32, m as f32)
}

/// Layout: d, dmin, scales[12], qs[128]; 64 elements per 32 bytes of qs.
fn block_q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qs) = (&b[4..16], &b[16..144]);
    for (chunk, (q, out)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        for (l, &q) in q.iter().enumerate() {
            out[l] = d * sc1 * (q & 0x0F) as f32 - dmin * m1;
            out[l + 32] = d * sc2 * (q >> 4) as f32 - dmin * m2;
        }
    }
}

/// Layout: d, dmin, scales[12], qh[32], qs[128]; qh bit 2c / 2c+1 is the
/// fifth bit of chunk c's low / high nibbles.
fn block_q5_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
    for (chunk, (q, out)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        for (l, (&q, &h)) in q.iter().zip(qh).enumerate() {
            let high1 = if h & u1 != 0 { 16 } else { 0 };
            let high2 = if h & u2 != 0 { 16 } else { 0 };
            out[l] = d * sc1 * ((q & 0x0F) + high1) as f32 - dmin * m1;
            out[l + 32] = d * sc2 * ((q >> 4) + high2) as f32 - dmin * m2;
        }
    }
}

/// Layout: ql[128], qh[64], scales[16] (i8), d. Six-bit codes centred on 32.
fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    for half in 0..2 {
        let ql = &b[half * 64..][..64];
        let qh = &b[128 + half * 32..][..32];
        let sc = &b[192 + half * 8..][..8];
        let out = &mut y[half * 128..][..128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            out[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            out[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            out[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            out[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

/// Layout: d (f32), qs[256] (i8), bsums[16] (i16, unused here).
fn block_q8_k(b: &[u8], y: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (y, &q) in y.iter_mut().zip(&b[4..260]) {
        *y = q as i8 as f32 * d;
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_dequantises, f16_round, Lcg};
    use super::super::GgmlType;
    use half::f16;

    /// ggml's `quantize_row_q8_0_ref`: d = amax / 127, codes rounded.
    fn quantize_q8_0(x: &[f32]) -> (Vec<u8>, Vec<f32>) {
        let (mut bytes, mut expected) = (Vec::new(), Vec::new());
        for block in x.chunks(32) {
            let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            bytes.extend(f16::from_f32(d).to_le_bytes());
            for &v in block {
                let q = (v * id).round() as i8;
                bytes.push(q as u8);
                expected.push(q as f32 * f16_round(d));
            }
        }
        (bytes, expected)
    }

    /// ggml's `quantize_row_q4_0_ref` (and q5_0 with `bits` = 5): d = -max/2^(bits-1).
    fn quantize_symmetric(x: &[f32], bits: u32) -> (Vec<u8>, Vec<f32>) {
        let half = (1 << (bits - 1)) as f32;
        let (mut bytes, mut expected) = (Vec::new(), vec![0f32; x.len()]);
        for (b, block) in x.chunks(32).enumerate() {
            let max = block
                .iter()
                .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let d = max / -half;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let codes: Vec<u8> = block
                .iter()
                .map(|&v| ((v * id + half + 0.5) as i8).min((2 * half as i8) - 1) as u8)
                .collect();
            for (j, &q) in codes.iter().enumerate() {
                expected[b * 32 + j] = (q as f32 - half) * f16_round(d);
            }
            bytes.extend(f16::from_f32(d).to_le_bytes());
            pack_nibbles(&mut bytes, &codes, bits);
        }
        (bytes, expected)
    }

    /// ggml's `quantize_row_q4_1_ref` (and q5_1 with `bits` = 5): d = (max-min)/(2^bits-1), m = min.
    fn quantize_affine(x: &[f32], bits: u32) -> (Vec<u8>, Vec<f32>) {
        let top = ((1 << bits) - 1) as f32;
        let (mut bytes, mut expected) = (Vec::new(), vec![0f32; x.len()]);
        for (b, block) in x.chunks(32).enumerate() {
            let min = block.iter().copied().fold(f32::MAX, f32::min);
            let max = block.iter().copied().fold(f32::MIN, f32::max);
            let d = (max - min) / top;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let codes: Vec<u8> = block
                .iter()
                .map(|&v| (((v - min) * id + 0.5) as u8).min(top as u8))
                .collect();
            for (j, &q) in codes.iter().enumerate() {
                expected[b * 32 + j] = q as f32 * f16_round(d) + f16_round(min);
            }
            bytes.extend(f16::from_f32(d).to_le_bytes());
            bytes.extend(f16::from_f32(min).to_le_bytes());
            pack_nibbles(&mut bytes, &codes, bits);
        }
        (bytes, expected)
    }

    /// Low nibble = element j, high nibble = element j+16; for 5-bit codes the
    /// fifth bits go first, in a u32 (bit j for element j).
    fn pack_nibbles(bytes: &mut Vec<u8>, codes: &[u8], bits: u32) {
        if bits == 5 {
            let qh = codes
                .iter()
                .enumerate()
                .fold(0u32, |qh, (j, &q)| qh | (((q >> 4) as u32) << j));
            bytes.extend(qh.to_le_bytes());
        }
        bytes.extend((0..16).map(|j| (codes[j] & 0x0F) | ((codes[j + 16] & 0x0F) << 4)));
    }

    #[test]
    fn legacy_quants_dequantise_to_the_ggml_reference_values() {
        let x = Lcg(7).floats(96);
        let cases = [
            (GgmlType::Q8_0, quantize_q8_0(&x)),
            (GgmlType::Q4_0, quantize_symmetric(&x, 4)),
            (GgmlType::Q5_0, quantize_symmetric(&x, 5)),
            (GgmlType::Q4_1, quantize_affine(&x, 4)),
            (GgmlType::Q5_1, quantize_affine(&x, 5)),
        ];
        for (ty, (bytes, expected)) in cases {
            assert_eq!(bytes.len() as u64, 3 * ty.block_layout().unwrap().1);
            assert_dequantises(ty, &[32, 3], bytes, &expected);
            // and the quantisation really approximates the input.
            let tolerance = if ty == GgmlType::Q8_0 { 0.03 } else { 0.5 };
            for (e, v) in expected.iter().zip(&x) {
                assert!((e - v).abs() < tolerance, "{ty}: {e} vs {v}");
            }
        }
    }

    /// Packs 8 six-bit (scale, min) pairs as ggml's `quantize_row_q4_K_ref` does.
    fn pack_scale_min_k4(scales: &[u8; 8], mins: &[u8; 8]) -> [u8; 12] {
        let mut out = [0u8; 12];
        for j in 0..8 {
            let (ls, lm) = (scales[j], mins[j]);
            if j < 4 {
                out[j] = ls;
                out[j + 4] = lm;
            } else {
                out[j + 4] = (ls & 0x0F) | ((lm & 0x0F) << 4);
                out[j - 4] |= (ls >> 4) << 6;
                out[j] |= (lm >> 4) << 6;
            }
        }
        out
    }

    fn codes(rng: &mut Lcg, n: usize, below: u32) -> Vec<u8> {
        (0..n).map(|_| rng.below(below) as u8).collect()
    }

    /// Q4_K and Q5_K: y = d·scale·q − dmin·min per 32 elements.
    fn k4_block(rng: &mut Lcg, bits: u32) -> (Vec<u8>, Vec<f32>) {
        let (d, dmin) = (f16_round(0.0123), f16_round(0.0071));
        let scales: [u8; 8] = std::array::from_fn(|_| rng.below(64) as u8);
        let mins: [u8; 8] = std::array::from_fn(|_| rng.below(64) as u8);
        let q = codes(rng, 256, 1 << bits);
        let expected = (0..256)
            .map(|i| d * scales[i / 32] as f32 * q[i] as f32 - dmin * mins[i / 32] as f32)
            .collect();
        let mut bytes = [d, dmin]
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect::<Vec<_>>();
        bytes.extend(pack_scale_min_k4(&scales, &mins));
        if bits == 5 {
            let mut qh = [0u8; 32];
            for (i, &c) in q.iter().enumerate() {
                qh[i % 32] |= (c >> 4) << (i / 32);
            }
            bytes.extend(qh);
        }
        for chunk in 0..4 {
            bytes.extend(
                (0..32)
                    .map(|l| (q[chunk * 64 + l] & 0x0F) | ((q[chunk * 64 + 32 + l] & 0x0F) << 4)),
            );
        }
        (bytes, expected)
    }

    /// Element i of a Q2_K/Q3_K block: (half, plane, sub, l) as ggml walks them.
    fn k23_position(i: usize) -> (usize, usize, usize, usize) {
        (i / 128, i % 128 / 32, i % 32 / 16, i % 16)
    }

    fn q2_k_block(rng: &mut Lcg) -> (Vec<u8>, Vec<f32>) {
        let (d, dmin) = (f16_round(0.02), f16_round(0.01));
        let scales = codes(rng, 16, 256);
        let q = codes(rng, 256, 4);
        let mut qs = [0u8; 64];
        let mut expected = Vec::new();
        for (i, &c) in q.iter().enumerate() {
            let (half, plane, sub, l) = k23_position(i);
            qs[half * 32 + sub * 16 + l] |= c << (2 * plane);
            let sc = scales[half * 8 + plane * 2 + sub];
            expected.push(d * (sc & 0x0F) as f32 * c as f32 - dmin * (sc >> 4) as f32);
        }
        let mut bytes = scales;
        bytes.extend(qs);
        bytes.extend(
            [d, dmin]
                .iter()
                .flat_map(|&v| f16::from_f32(v).to_le_bytes()),
        );
        (bytes, expected)
    }

    fn q3_k_block(rng: &mut Lcg) -> (Vec<u8>, Vec<f32>) {
        let d = f16_round(0.03);
        let scales = codes(rng, 16, 64);
        let q = codes(rng, 256, 8);
        let (mut hmask, mut qs, mut packed) = ([0u8; 32], [0u8; 64], [0u8; 12]);
        // ggml's quantize_row_q3_K_ref scale packing.
        for (j, &s) in scales.iter().enumerate() {
            if j < 8 {
                packed[j] = s & 0x0F;
            } else {
                packed[j - 8] |= (s & 0x0F) << 4;
            }
            packed[j % 4 + 8] |= (s >> 4) << (2 * (j / 4));
        }
        let mut expected = Vec::new();
        for (i, &c) in q.iter().enumerate() {
            let (half, plane, sub, l) = k23_position(i);
            qs[half * 32 + sub * 16 + l] |= (c & 3) << (2 * plane);
            hmask[sub * 16 + l] |= (c >> 2) << (half * 4 + plane);
            let scale = scales[half * 8 + plane * 2 + sub] as f32 - 32.0;
            expected.push(d * scale * (c as f32 - 4.0));
        }
        let mut bytes = hmask.to_vec();
        bytes.extend(qs);
        bytes.extend(packed);
        bytes.extend(f16::from_f32(d).to_le_bytes());
        (bytes, expected)
    }

    fn q6_k_block(rng: &mut Lcg) -> (Vec<u8>, Vec<f32>) {
        let d = f16_round(0.004);
        let scales: Vec<i8> = (0..16).map(|_| rng.below(256) as u8 as i8).collect();
        let q = codes(rng, 256, 64);
        let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
        let mut expected = Vec::new();
        for (i, &c) in q.iter().enumerate() {
            let (half, quarter, l) = (i / 128, i % 128 / 32, i % 32);
            ql[half * 64 + (quarter % 2) * 32 + l] |= (c & 0x0F) << (4 * (quarter / 2));
            qh[half * 32 + l] |= (c >> 4) << (2 * quarter);
            let scale = scales[half * 8 + l / 16 + 2 * quarter] as f32;
            expected.push(d * scale * (c as f32 - 32.0));
        }
        let mut bytes = ql.to_vec();
        bytes.extend(qh);
        bytes.extend(scales.iter().map(|&s| s as u8));
        bytes.extend(f16::from_f32(d).to_le_bytes());
        (bytes, expected)
    }

    fn q8_k_block(rng: &mut Lcg) -> (Vec<u8>, Vec<f32>) {
        let d = 0.0125f32;
        let q = codes(rng, 256, 256);
        let mut bytes = d.to_le_bytes().to_vec();
        bytes.extend(&q);
        bytes.extend([0u8; 32]); // bsums: only used by dot products
        (bytes, q.iter().map(|&c| d * c as i8 as f32).collect())
    }

    /// Makes one block: its bytes and the values it must dequantise to.
    type BlockMaker = fn(&mut Lcg) -> (Vec<u8>, Vec<f32>);

    #[test]
    fn k_quants_dequantise_to_the_ggml_reference_values() {
        let mut rng = Lcg(11);
        let makers: [(GgmlType, BlockMaker); 6] = [
            (GgmlType::Q2_K, q2_k_block),
            (GgmlType::Q3_K, q3_k_block),
            (GgmlType::Q4_K, |r| k4_block(r, 4)),
            (GgmlType::Q5_K, |r| k4_block(r, 5)),
            (GgmlType::Q6_K, q6_k_block),
            (GgmlType::Q8_K, q8_k_block),
        ];
        for (ty, make) in makers {
            let (mut bytes, mut expected) = make(&mut rng);
            let (second, more) = make(&mut rng);
            bytes.extend(second);
            expected.extend(more);
            assert_eq!(bytes.len() as u64, 2 * ty.block_layout().unwrap().1, "{ty}");
            assert_dequantises(ty, &[256, 2], bytes, &expected);
        }
    }
}
