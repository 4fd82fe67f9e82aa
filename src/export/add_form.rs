//! An int8 ADD as one linear form, found per layer and verified on every input pair.
//!
//! TFLite's int8 ADD rescales both inputs to a common scale (`(v + offset) * 2^20`, each times
//! its Q31 multiplier, rounded), sums them and rescales the sum (rounded again): two or three
//! fixed-point multiplications per element. Over int8 inputs the result is a function of 65,536
//! input pairs, and for calibrated layers it equals `sat8((a * mul_a + b * mul_b + bias) >>
//! shift)` for suitable integers: the ideal real-valued result is linear in `a` and `b`, and its
//! roundings land on the same integers as long as no input pair comes closer to a rounding
//! boundary than the form's error. [`add_form`] searches such a form and returns it only after
//! checking all 65,536 pairs against the exact arithmetic, so using it is bit-exact by
//! construction; a layer without one keeps the fixed-point kernel. On Cortex-M the form is two
//! multiply-accumulates and one saturation per element.

use super::quant::{ADD_LEFT_SHIFT, Requant, multiply_by_quantized_multiplier};

/// `sat8((a * mul_a + b * mul_b + bias) >> shift)` for raw int8 inputs `a`, `b`; every partial
/// sum (`a * mul_a + bias`, then `+ b * mul_b`) fits in an i32 for all int8 inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddForm {
    /// Multiplier of input 1.
    pub mul_a: i32,
    /// Multiplier of input 2.
    pub mul_b: i32,
    /// Constant: offsets, output zero point and the rounding, scaled by `2^shift`.
    pub bias: i32,
    /// Right shift, 1..=30.
    pub shift: u32,
}

impl AddForm {
    /// The form applied to one pair.
    pub fn apply(&self, a: i8, b: i8) -> i8 {
        let t = (a as i32 * self.mul_a + self.bias) + b as i32 * self.mul_b;
        (t >> self.shift).clamp(-128, 127) as i8
    }
}

/// The exact int8 ADD of raw inputs `a`, `b` (offsets are minus the zero points): TFLite's
/// arithmetic, which the reference executor runs.
#[allow(clippy::too_many_arguments)]
pub fn exact_add(a: i8, b: i8, in1: Requant, in2: Requant, out: Requant, off1: i32, off2: i32, out_zero: i32, lo: i32, hi: i32) -> i8 {
    let x1 = multiply_by_quantized_multiplier((a as i32 + off1) << ADD_LEFT_SHIFT, in1);
    let x2 = multiply_by_quantized_multiplier((b as i32 + off2) << ADD_LEFT_SHIFT, in2);
    (multiply_by_quantized_multiplier(x1 + x2, out) + out_zero).clamp(lo, hi) as i8
}

/// The real value of a requantisation multiplier.
fn real(r: Requant) -> f64 {
    r.multiplier as f64 * 2f64.powi(r.shift - 31)
}

/// A linear form equal to the exact ADD on all 65,536 input pairs, or `None`. Only for the whole
/// int8 range as clamp (an ADD without activation; the form saturates to int8 and nothing else).
#[allow(clippy::too_many_arguments)]
pub fn add_form(
    in1: Requant,
    in2: Requant,
    out: Requant,
    off1: i32,
    off2: i32,
    out_zero: i32,
    act_min: i32,
    act_max: i32,
) -> Option<AddForm> {
    if act_min != -128 || act_max != 127 {
        return None;
    }
    let exact: Vec<i8> =
        (0..65536).map(|i| exact_add((i >> 8) as u8 as i8, i as u8 as i8, in1, in2, out, off1, off2, out_zero, -128, 127)).collect();
    let scale = 2f64.powi(ADD_LEFT_SHIFT) * real(out);
    let (slope_a, slope_b) = (scale * real(in1), scale * real(in2));
    // The largest shift first (the finest form), down to where a form is too coarse to help.
    for shift in (8..=30u32).rev() {
        let unit = 2f64.powi(shift as i32);
        if (slope_a.abs() + slope_b.abs()) * unit * 128.0 >= 2f64.powi(30) {
            continue;
        }
        for da in -2..=2i64 {
            for db in -2..=2i64 {
                let ma = (slope_a * unit).round() as i64 + da;
                let mb = (slope_b * unit).round() as i64 + db;
                if let Some(form) = fit_bias(&exact, ma, mb, shift) {
                    return Some(form);
                }
            }
        }
    }
    None
}

/// The bias interval every pair allows for multipliers `ma`, `mb` and `shift`, and a form from
/// it whose partial sums fit in an i32; checked against `exact` once more.
fn fit_bias(exact: &[i8], ma: i64, mb: i64, shift: u32) -> Option<AddForm> {
    let unit = 1i64 << shift;
    let (mut lo, mut hi) = (i64::MIN, i64::MAX);
    for (i, &y) in exact.iter().enumerate() {
        let (a, b) = ((i >> 8) as u8 as i8 as i64, i as u8 as i8 as i64);
        let base = a * ma + b * mb;
        // y * unit <= base + bias < (y + 1) * unit; a saturated end is one-sided.
        if y > -128 {
            lo = lo.max(y as i64 * unit - base);
        }
        if y < 127 {
            hi = hi.min((y as i64 + 1) * unit - 1 - base);
        }
        if lo > hi {
            return None;
        }
    }
    // The bias nearest zero within the interval keeps the sums smallest.
    let bias = 0i64.clamp(lo, hi);
    let fits = |v: i64| i32::try_from(v).is_ok();
    let corners = [-128i64, 127];
    let ok = fits(ma)
        && fits(mb)
        && fits(bias)
        && corners.iter().all(|&a| fits(a * ma + bias) && corners.iter().all(|&b| fits(a * ma + bias + b * mb)));
    if !ok {
        return None;
    }
    let form = AddForm { mul_a: ma as i32, mul_b: mb as i32, bias: bias as i32, shift };
    exact.iter().enumerate().all(|(i, &y)| form.apply((i >> 8) as u8 as i8, i as u8 as i8) == y).then_some(form)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::quant::quantize_multiplier;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// TFLite's ADD parameters for input scales `s1`, `s2` and output scale `so`.
    fn params(s1: f64, s2: f64, so: f64) -> (Requant, Requant, Requant) {
        let twice_max = 2.0 * s1.max(s2);
        (
            quantize_multiplier(s1 / twice_max),
            quantize_multiplier(s2 / twice_max),
            quantize_multiplier(twice_max / ((1i64 << ADD_LEFT_SHIFT) as f64 * so)),
        )
    }

    #[test]
    fn forms_of_calibrated_adds_equal_the_exact_add_on_every_pair() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut found = 0;
        for _ in 0..40 {
            let s1 = rng.random_range(0.005..0.2);
            let s2 = s1 * rng.random_range(0.2..5.0);
            let so = (s1 + s2) * rng.random_range(0.4..1.2);
            let (in1, in2, out) = params(s1, s2, so);
            let (o1, o2, zo) = (rng.random_range(-60..=128), rng.random_range(-60..=128), rng.random_range(-128..=60));
            let Some(f) = add_form(in1, in2, out, o1, o2, zo, -128, 127) else { continue };
            found += 1;
            // An independent re-check of all pairs.
            for a in -128..=127i32 {
                for b in -128..=127i32 {
                    let want = exact_add(a as i8, b as i8, in1, in2, out, o1, o2, zo, -128, 127);
                    assert_eq!(f.apply(a as i8, b as i8), want, "{f:?} at ({a}, {b})");
                }
            }
        }
        // Measured: every one of the 40 has a form (the search starts at the finest shift).
        assert!(found >= 36, "only {found} of 40 adds have a linear form");
    }

    #[test]
    fn a_narrow_clamp_or_a_wrong_form_is_refused() {
        let (in1, in2, out) = params(0.05, 0.04, 0.06);
        assert!(add_form(in1, in2, out, 11, -7, 4, -128, 100).is_none());
        let f = add_form(in1, in2, out, 11, -7, 4, -128, 127).expect("a calibrated add has a form");
        // Off by one in the bias somewhere breaks exactness on some pair: the check sees it.
        let exact: Vec<i8> =
            (0..65536).map(|i| exact_add((i >> 8) as u8 as i8, i as u8 as i8, in1, in2, out, 11, -7, 4, -128, 127)).collect();
        let off = AddForm { mul_a: f.mul_a + (1 << (f.shift - 4)), ..f };
        assert!((0..65536).any(|i: usize| off.apply((i >> 8) as u8 as i8, i as u8 as i8) != exact[i]));
    }
}
