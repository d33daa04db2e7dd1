//! Optimizer steps and the max-norm constraint.

use crate::backend::{OptimizerKind, OptimizerStep};
use rayon::prelude::*;

const CHUNK: usize = 16_384;

/// One optimizer step over `params`, with `state` holding the optimizer's buffers.
pub fn step(step: &OptimizerStep, params: &mut [f32], grad: &[f32], state: &mut [Vec<f32>]) {
    let lr = step.learning_rate;
    let (l1, l2) = (step.l1, step.l2);
    let decayed = move |w: f32, g: f32| {
        g + l2 * w
            + if w > 0.0 {
                l1
            } else if w < 0.0 {
                -l1
            } else {
                0.0
            }
    };
    let params = params.par_chunks_mut(CHUNK);
    let grad = grad.par_chunks(CHUNK);
    match (step.kind, state) {
        (OptimizerKind::Sgd, []) => params.zip(grad).for_each(|(w, g)| {
            for (w, &g) in w.iter_mut().zip(g) {
                *w -= lr * decayed(*w, g);
            }
        }),
        (OptimizerKind::Momentum { momentum }, [v]) => params
            .zip(grad)
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|((w, g), v)| {
                for ((w, &g), v) in w.iter_mut().zip(g).zip(v) {
                    *v = momentum * *v - lr * decayed(*w, g);
                    *w += *v;
                }
            }),
        (OptimizerKind::Nesterov { momentum }, [v]) => params
            .zip(grad)
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|((w, g), v)| {
                for ((w, &g), v) in w.iter_mut().zip(g).zip(v) {
                    let previous = *v;
                    *v = momentum * *v - lr * decayed(*w, g);
                    *w += -momentum * previous + (1.0 + momentum) * *v;
                }
            }),
        (OptimizerKind::AdaGrad { epsilon }, [s]) => params
            .zip(grad)
            .zip(s.par_chunks_mut(CHUNK))
            .for_each(|((w, g), s)| {
                for ((w, &g), s) in w.iter_mut().zip(g).zip(s) {
                    let g = decayed(*w, g);
                    *s += g * g;
                    *w -= lr * g / (s.sqrt() + epsilon);
                }
            }),
        (OptimizerKind::RmsProp { rho, epsilon }, [s]) => params
            .zip(grad)
            .zip(s.par_chunks_mut(CHUNK))
            .for_each(|((w, g), s)| {
                for ((w, &g), s) in w.iter_mut().zip(g).zip(s) {
                    let g = decayed(*w, g);
                    *s = rho * *s + (1.0 - rho) * g * g;
                    *w -= lr * g / (s.sqrt() + epsilon);
                }
            }),
        (OptimizerKind::AdaDelta { rho, epsilon }, [s, u]) => params
            .zip(grad)
            .zip(s.par_chunks_mut(CHUNK).zip(u.par_chunks_mut(CHUNK)))
            .for_each(|((w, g), (s, u))| {
                for (((w, &g), s), u) in w.iter_mut().zip(g).zip(s).zip(u) {
                    let g = decayed(*w, g);
                    *s = rho * *s + (1.0 - rho) * g * g;
                    let d = (*u + epsilon).sqrt() / (*s + epsilon).sqrt() * g;
                    *u = rho * *u + (1.0 - rho) * d * d;
                    *w -= lr * d;
                }
            }),
        (
            OptimizerKind::Adam {
                beta1,
                beta2,
                epsilon,
            },
            [m, v],
        ) => {
            let (correction1, correction2) = step.bias_corrections();
            params
                .zip(grad)
                .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
                .for_each(|((w, g), (m, v))| {
                    for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
                        let g = decayed(*w, g);
                        *m = beta1 * *m + (1.0 - beta1) * g;
                        *v = beta2 * *v + (1.0 - beta2) * g * g;
                        *w -= lr * (*m * correction1) / ((*v * correction2).sqrt() + epsilon);
                    }
                })
        }
        (kind, state) => panic!("optimizer {kind:?} given {} state buffers", state.len()),
    }
}

/// Scales each column of `rows x cols` `w` whose norm exceeds `max_norm` down to it.
pub fn max_norm(rows: usize, cols: usize, max_norm: f32, w: &mut [f32]) {
    let mut squares = vec![0.0f32; cols];
    for row in w[..rows * cols].chunks(cols) {
        squares.iter_mut().zip(row).for_each(|(s, w)| *s += w * w);
    }
    let scales: Vec<f32> = squares
        .iter()
        .map(|&s| {
            if s.sqrt() > max_norm {
                max_norm / s.sqrt()
            } else {
                1.0
            }
        })
        .collect();
    w[..rows * cols]
        .par_chunks_mut(cols)
        .for_each(|row| row.iter_mut().zip(&scales).for_each(|(w, s)| *w *= s));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step from w = [0.5, -0.2] with g = [0.1, -0.3], lr 0.1, and the state given.
    fn one_step(
        kind: OptimizerKind,
        l1: f32,
        l2: f32,
        state: Vec<Vec<f32>>,
        t: u64,
    ) -> (Vec<f32>, Vec<Vec<f32>>) {
        let mut w = vec![0.5, -0.2];
        let mut state = state;
        let settings = OptimizerStep {
            kind,
            learning_rate: 0.1,
            l1,
            l2,
            step: t,
        };
        super::step(&settings, &mut w, &[0.1, -0.3], &mut state);
        (w, state)
    }

    fn close(a: &[f32], b: &[f64]) {
        for (x, y) in a.iter().zip(b) {
            assert!((*x as f64 - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn sgd_with_decay() {
        // g' = g + l2 w + l1 sign(w) = [0.1 + 0.05 + 0.01, -0.3 - 0.02 - 0.01]
        let (w, _) = one_step(OptimizerKind::Sgd, 0.01, 0.1, vec![], 1);
        close(&w, &[0.5 - 0.1 * 0.16, -0.2 + 0.1 * 0.33]);
    }

    #[test]
    fn momentum_and_nesterov() {
        let (w, s) = one_step(
            OptimizerKind::Momentum { momentum: 0.9 },
            0.0,
            0.0,
            vec![vec![0.2, 0.1]],
            1,
        );
        // v = 0.9 v - 0.1 g = [0.18 - 0.01, 0.09 + 0.03]
        close(&s[0], &[0.17, 0.12]);
        close(&w, &[0.67, -0.08]);
        let (w, s) = one_step(
            OptimizerKind::Nesterov { momentum: 0.9 },
            0.0,
            0.0,
            vec![vec![0.2, 0.1]],
            1,
        );
        close(&s[0], &[0.17, 0.12]);
        // w += -0.9 v_old + 1.9 v_new
        close(&w, &[0.5 - 0.18 + 1.9 * 0.17, -0.2 - 0.09 + 1.9 * 0.12]);
    }

    #[test]
    fn adaptive_methods() {
        let (w, s) = one_step(
            OptimizerKind::AdaGrad { epsilon: 1e-8 },
            0.0,
            0.0,
            vec![vec![0.03, 0.0]],
            1,
        );
        close(&s[0], &[0.04, 0.09]);
        close(&w, &[0.5 - 0.1 * 0.1 / 0.2, -0.2 + 0.1 * 0.3 / 0.3]);
        let (w, s) = one_step(
            OptimizerKind::RmsProp {
                rho: 0.9,
                epsilon: 1e-8,
            },
            0.0,
            0.0,
            vec![vec![0.01, 0.0]],
            1,
        );
        close(&s[0], &[0.009 + 0.001, 0.009]);
        close(
            &w,
            &[
                0.5 - 0.1 * 0.1 / 0.01f64.sqrt(),
                -0.2 + 0.1 * 0.3 / 0.009f64.sqrt(),
            ],
        );
        let (w, s) = one_step(
            OptimizerKind::AdaDelta {
                rho: 0.5,
                epsilon: 1e-6,
            },
            0.0,
            0.0,
            vec![vec![0.0; 2], vec![0.0; 2]],
            1,
        );
        let (s0, s1) = (0.5 * 0.01, 0.5 * 0.09);
        let d0 = (1e-6f64).sqrt() / (s0 + 1e-6f64).sqrt() * 0.1;
        let d1 = (1e-6f64).sqrt() / (s1 + 1e-6f64).sqrt() * -0.3;
        close(&s[0], &[s0, s1]);
        close(&s[1], &[0.5 * d0 * d0, 0.5 * d1 * d1]);
        close(&w, &[0.5 - 0.1 * d0, -0.2 - 0.1 * d1]);
        let (w, s) = one_step(
            OptimizerKind::Adam {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
            },
            0.0,
            0.0,
            vec![vec![0.0; 2], vec![0.0; 2]],
            1,
        );
        // First step: m_hat = g, v_hat = g^2, so the update is lr * sign(g).
        close(&s[0], &[0.01, -0.03]);
        close(&w, &[0.4, -0.1]);
    }

    #[test]
    fn max_norm_scales_only_long_columns() {
        // Columns: (3, 4) has norm 5, (0.3, 0.4) has norm 0.5.
        let mut w = vec![3.0, 0.3, 4.0, 0.4];
        max_norm(2, 2, 1.0, &mut w);
        close(&w, &[0.6, 0.3, 0.8, 0.4]);
    }
}
