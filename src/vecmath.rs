//! Single-precision kernels written to vectorise, shared by the Rust decoding step
//! (`crate::model::native`) and the sampler's host draw (`crate::sample`): a leaf, so
//! the sampler's draws need no model code.

/// Unnormalised softmax weights of one row: `out = e^(z − max z)` (a softmax without
/// its division; the draw normalises).
pub fn softmax_weights(z: &[f32], out: &mut [f32]) {
    #[inline(always)]
    fn body(z: &[f32], out: &mut [f32]) {
        let m = max(z);
        for (o, &zi) in out.iter_mut().zip(z) {
            *o = zi - m;
        }
        exp_in_place(out);
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn body_avx2(z: &[f32], out: &mut [f32]) {
        body(z, out)
    }
    assert_eq!(z.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { body_avx2(z, out) };
    }
    body(z, out)
}

/// `ln softmax(z)_i`: the log-probability entry `i` of one row of logits gives (the
/// sum of weights in eight lanes of single precision, its logarithm in double).
pub fn log_softmax_at(z: &[f32], i: usize) -> f64 {
    #[inline(always)]
    fn body(z: &[f32]) -> (f32, f64) {
        let m = max(z);
        let mut lanes = [0f32; 8];
        let mut chunks = z.chunks_exact(8);
        for ch in &mut chunks {
            for j in 0..8 {
                lanes[j] += exp(ch[j] - m);
            }
        }
        let rest: f64 = chunks.remainder().iter().map(|&x| exp(x - m) as f64).sum();
        (m, lanes.iter().map(|&x| x as f64).sum::<f64>() + rest)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn body_avx2(z: &[f32]) -> (f32, f64) {
        body(z)
    }
    #[cfg(target_arch = "x86_64")]
    let (m, sum) = if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        unsafe { body_avx2(z) }
    } else {
        body(z)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (m, sum) = body(z);
    (z[i] - m) as f64 - sum.ln()
}

/// Largest value, in eight lanes.
#[inline(always)]
pub fn max(v: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = v.chunks_exact(8);
    for ch in &mut chunks {
        for i in 0..8 {
            lanes[i] = if ch[i] > lanes[i] { ch[i] } else { lanes[i] };
        }
    }
    chunks.remainder().iter().chain(&lanes).fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

/// `e^x` in single precision, branch-free so that loops over it vectorise:
/// `x = n·ln 2 + r` with |r| ≤ ln 2 / 2, `e^r` by its degree-7 Taylor polynomial (truncation below
/// 10⁻⁸ there), times `2^n` applied as two powers of two so that results down to f32's
/// smallest subnormal come out (as libtorch's softmax gives them: a rare token keeps
/// its weight); below that, 0. Inputs above 88 give e^88 (only the activations
/// exponentiate positive values, and only divide by the result).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4; // few mantissa bits: n·LN2_HI is exact
    const LN2_LO: f32 = -2.121_944_4e-4;
    const LOWEST: f32 = -103.972_08; // ln of the smallest subnormal
    let xc = x.clamp(LOWEST, 88.0);
    let n = (xc * LOG2E + 0.5).floor();
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // n is a whole number in [-150, 128]: adding 1.5·2²³ puts it in the low mantissa
    // bits (as `n as i32` gives, but without a scalar conversion per lane).
    let ni = (n + 12_582_912.0).to_bits() as i32 - 0x4B40_0000;
    let half = ni >> 1;
    let s1 = f32::from_bits(((half + 127) as u32) << 23);
    let s2 = f32::from_bits(((ni - half + 127) as u32) << 23);
    let y = p * s1 * s2;
    if x < LOWEST {
        0.0
    } else {
        y
    }
}

#[inline(always)]
pub fn exp_in_place(v: &mut [f32]) {
    for x in v.iter_mut() {
        *x = exp(*x);
    }
}
