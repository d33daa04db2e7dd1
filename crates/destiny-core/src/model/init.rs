//! Initial values of parameters, drawn on the host from a seeded generator.

use super::topology::{ParameterRole, ParameterSpec};
use crate::backend::random::derive_seed;
use crate::config::WeightInitScheme;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// The initial values of parameter `index` of a network seeded with `seed`.
pub fn initial_values(spec: &ParameterSpec, index: usize, seed: u64) -> Vec<f32> {
    match spec.role {
        ParameterRole::Bias => vec![spec.init.bias; spec.len()],
        ParameterRole::Slope => vec![spec.initial_slope; spec.len()],
        ParameterRole::Scale | ParameterRole::RunningVariance => vec![1.0; spec.len()],
        ParameterRole::Shift | ParameterRole::RunningMean => vec![0.0; spec.len()],
        ParameterRole::Weights | ParameterRole::Filters => {
            weights(spec, derive_seed(seed, &[0x1417, index as u64]))
        }
    }
}

fn weights(spec: &ParameterSpec, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // A weight matrix has a row per source unit; a filter bank a row per filter.
    let (fan_in, fan_out) = match spec.role {
        ParameterRole::Filters => (spec.cols as f32, spec.rows as f32),
        _ => (spec.rows as f32, spec.cols as f32),
    };
    let scale = spec.init.scale;
    let mut uniform = |limit: f32| -> Vec<f32> {
        (0..spec.len())
            .map(|_| rng.random_range(-1.0f32..1.0) * limit)
            .collect()
    };
    match spec.init.scheme {
        WeightInitScheme::Xavier => uniform(scale * (6.0 / (fan_in + fan_out)).sqrt()),
        WeightInitScheme::CaffeXavier => uniform(scale * (3.0 / fan_in).sqrt()),
        WeightInitScheme::Uniform => uniform(scale),
        WeightInitScheme::UnitBall => {
            let mut w = uniform(scale);
            match spec.role {
                ParameterRole::Filters => w.chunks_mut(spec.cols).for_each(normalize),
                _ => normalize_columns(&mut w, spec.cols),
            }
            w
        }
        WeightInitScheme::Gaussian => gaussian(&mut rng, spec.len(), scale),
        WeightInitScheme::Selu => gaussian(&mut rng, spec.len(), scale * (1.0 / fan_in).sqrt()),
        WeightInitScheme::Constant => vec![scale; spec.len()],
    }
}

fn gaussian(rng: &mut ChaCha8Rng, len: usize, deviation: f32) -> Vec<f32> {
    let normal = Normal::new(0.0f32, deviation.max(0.0)).expect("finite deviation");
    (0..len).map(|_| normal.sample(rng)).collect()
}

/// Scales `w` (one filter) to unit length.
fn normalize(w: &mut [f32]) {
    let norm = w.iter().map(|w| w * w).sum::<f32>().sqrt();
    if norm > 0.0 {
        w.iter_mut().for_each(|w| *w /= norm);
    }
}

/// Scales each column (a unit's incoming weights) to unit length.
fn normalize_columns(w: &mut [f32], cols: usize) {
    let mut squares = vec![0.0f32; cols];
    for row in w.chunks(cols) {
        squares.iter_mut().zip(row).for_each(|(s, w)| *s += w * w);
    }
    for row in w.chunks_mut(cols) {
        row.iter_mut().zip(&squares).for_each(|(w, s)| {
            if *s > 0.0 {
                *w /= s.sqrt()
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WeightInit;

    fn spec(scheme: WeightInitScheme, scale: f32) -> ParameterSpec {
        ParameterSpec {
            name: "w".into(),
            role: ParameterRole::Weights,
            rows: 200,
            cols: 50,
            init: WeightInit {
                scheme,
                scale,
                bias: 0.5,
            },
            initial_slope: 0.0,
            users: 1,
        }
    }

    #[test]
    fn schemes_have_their_spread() {
        let xavier = initial_values(&spec(WeightInitScheme::Xavier, 1.0), 0, 1);
        let limit = (6.0f32 / 250.0).sqrt();
        assert!(xavier.iter().all(|w| w.abs() <= limit));
        assert!(xavier.iter().any(|w| w.abs() > 0.9 * limit));
        let gaussian = initial_values(&spec(WeightInitScheme::Gaussian, 0.1), 0, 1);
        let variance = gaussian.iter().map(|w| w * w).sum::<f32>() / gaussian.len() as f32;
        assert!((variance.sqrt() - 0.1).abs() < 0.005, "{}", variance.sqrt());
        let ball = initial_values(&spec(WeightInitScheme::UnitBall, 1.0), 0, 1);
        let norm: f32 = (0..200).map(|r| ball[r * 50].powi(2)).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
        assert!(
            initial_values(&spec(WeightInitScheme::Constant, 0.25), 0, 1)
                .iter()
                .all(|&w| w == 0.25)
        );
        let mut bias = spec(WeightInitScheme::Xavier, 1.0);
        bias.role = ParameterRole::Bias;
        assert!(initial_values(&bias, 0, 1).iter().all(|&b| b == 0.5));
    }

    #[test]
    fn seeds_reproduce() {
        let s = spec(WeightInitScheme::Xavier, 1.0);
        assert_eq!(initial_values(&s, 3, 9), initial_values(&s, 3, 9));
        assert_ne!(initial_values(&s, 3, 9), initial_values(&s, 4, 9));
        assert_ne!(initial_values(&s, 3, 9), initial_values(&s, 3, 10));
    }
}
