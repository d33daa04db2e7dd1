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
            let t = step.step as i32;
            let correction1 = 1.0 / (1.0 - beta1.powi(t));
            let correction2 = 1.0 / (1.0 - beta2.powi(t));
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
