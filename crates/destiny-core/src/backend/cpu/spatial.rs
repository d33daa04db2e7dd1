//! The spatial layers on the CPU, the reference the GPU is checked against: convolution as
//! im2col and one `gemm` product per sample, pooling, local response normalisation and batch
//! normalisation. Work runs in parallel over samples, or over the groups a reduction across
//! the batch is made for, in a fixed order so that results do not depend on the scheduling.

use super::dense::gemm;
use super::CpuBackend;
use crate::backend::{
    GemmShape, Grid, LocalResponse, Normalization, NormalizationPass, Pooling, Sliding,
};
use rayon::prelude::*;
use std::ops::RangeInclusive;

/// Sample `r` of a batch of samples of `len` values each.
fn sample(buf: &[f32], r: usize, len: usize) -> &[f32] {
    &buf[r * len..(r + 1) * len]
}

/// The first `rows` samples of `len` values of `buf` (which may be longer), numbered, to be
/// written in parallel; none when `len` is 0.
fn samples_mut(
    buf: &mut [f32],
    rows: usize,
    len: usize,
) -> impl IndexedParallelIterator<Item = (usize, &mut [f32])> + '_ {
    buf[..rows * len].par_chunks_mut(len.max(1)).enumerate()
}

/// The taps of output position `p`'s window in window order (z, then y, then x, outermost
/// first), which is also a filter's order: the input position each reads, `None` where it
/// lies in the padding or past the input. The one walk over a window that convolution and
/// pooling share.
fn window_taps(s: Sliding, p: usize) -> impl Iterator<Item = Option<usize>> + Clone {
    let (window, input) = (s.window, s.input.spatial);
    let [out_x, out_y, _] = s.output.spatial;
    let out = [p % out_x, p / out_x % out_y, p / (out_x * out_y)];
    // The input coordinate that tap `i` of dimension `d` reads, if it is inside the input.
    let at = move |d: usize, i: usize| {
        (out[d] * window.stride[d] + i)
            .checked_sub(window.padding[d])
            .filter(|&c| c < input[d])
    };
    (0..window.kernel[2]).flat_map(move |kz| {
        (0..window.kernel[1]).flat_map(move |ky| {
            (0..window.kernel[0])
                .map(move |kx| Some(at(0, kx)? + input[0] * (at(1, ky)? + input[1] * at(2, kz)?)))
        })
    })
}

/// The entries of output position `p`'s im2col row, ordered as a filter (input channel, then
/// tap): each entry's index in the row and the index in the sample it reads (`None` in the
/// padding), so that im2col and its adjoint walk the same pairs.
fn column_entries(s: Sliding, p: usize) -> impl Iterator<Item = (usize, Option<usize>)> {
    let (taps, in_positions) = (s.window.size(), s.input.positions());
    (0..s.input.channels).flat_map(move |c| {
        window_taps(s, p)
            .enumerate()
            .map(move |(tap, input)| (c * taps + tap, input.map(|i| c * in_positions + i)))
    })
}

/// Length of one im2col row: a filter's values, `input channels * window size`.
fn row_len(s: Sliding) -> usize {
    s.input.channels * s.window.size()
}

/// im2col: writes each output position's window of the sample `x` as a row of `columns`
/// (`output positions x row_len`), zero in the padding, so that the convolution of the sample
/// is a single matrix product with the filters.
fn im2col(s: Sliding, x: &[f32], columns: &mut [f32]) {
    let k = row_len(s);
    for p in 0..s.output.positions() {
        let row = &mut columns[p * k..(p + 1) * k];
        for (column, input) in column_entries(s, p) {
            row[column] = input.map_or(0.0, |i| x[i]);
        }
    }
}

/// im2col's adjoint: adds each entry of `columns` to the input position it was read from
/// (padding entries are dropped), turning gradients of the columns into `dE/dx`.
fn col2im_add(s: Sliding, columns: &[f32], dx: &mut [f32]) {
    let k = row_len(s);
    for p in 0..s.output.positions() {
        let row = &columns[p * k..(p + 1) * k];
        for (column, input) in column_entries(s, p) {
            if let Some(i) = input {
                dx[i] += row[column];
            }
        }
    }
}

/// Threads for each of `tasks` matrix products run side by side: the cores left over when
/// there are fewer tasks than cores (a single sample predicted alone), else one.
fn threads_per_task(tasks: usize) -> usize {
    (rayon::current_num_threads() / tasks.max(1)).max(1)
}

/// `z = beta * z + x (*) w`, a sample at a time: `z` (output channels x positions) = `w`
/// (output channels x row_len) times the sample's im2col matrix transposed. With `beta == 0`
/// `z` is not read.
pub(super) fn convolution_forward(
    s: Sliding,
    rows: usize,
    x: &[f32],
    w: &[f32],
    beta: f32,
    z: &mut [f32],
) {
    let (positions, k) = (s.output.positions(), row_len(s));
    let shape = GemmShape {
        m: s.output.channels,
        n: positions,
        k,
        transpose_a: false,
        transpose_b: true,
    };
    let threads = threads_per_task(rows);
    samples_mut(z, rows, s.output.len()).for_each_init(
        || vec![0.0; positions * k],
        |columns, (r, z)| {
            im2col(s, sample(x, r, s.input.len()), columns);
            gemm(threads, shape, 1.0, w, columns, beta, z);
        },
    );
}

/// `dx += dE/dx`, a sample at a time: the im2col matrix's gradient `delta^T * w` (positions x
/// row_len), folded back onto the input by [`col2im_add`].
pub(super) fn convolution_backward_data(
    s: Sliding,
    rows: usize,
    delta: &[f32],
    w: &[f32],
    dx: &mut [f32],
) {
    let (positions, k) = (s.output.positions(), row_len(s));
    let shape = GemmShape {
        m: positions,
        n: k,
        k: s.output.channels,
        transpose_a: true,
        transpose_b: false,
    };
    let threads = threads_per_task(rows);
    samples_mut(dx, rows, s.input.len()).for_each_init(
        || vec![0.0; positions * k],
        |columns, (r, dx)| {
            gemm(
                threads,
                shape,
                1.0,
                sample(delta, r, s.output.len()),
                w,
                0.0,
                columns,
            );
            col2im_add(s, columns, dx);
        },
    );
}

/// Most partial filter gradients [`convolution_backward_filter`] sums: fixed, so that the sums
/// do not depend on the number of threads, and few, to bound their memory.
const FILTER_PARTIALS: usize = 16;

/// `grad += alpha * dE/dw`, the sum over samples of `delta` (output channels x positions)
/// times the sample's im2col matrix. Contiguous blocks of samples are summed in parallel into
/// partial gradients, then added in block order.
pub(super) fn convolution_backward_filter(
    s: Sliding,
    rows: usize,
    x: &[f32],
    delta: &[f32],
    alpha: f32,
    grad: &mut [f32],
) {
    let (positions, k) = (s.output.positions(), row_len(s));
    let shape = GemmShape {
        m: s.output.channels,
        n: k,
        k: positions,
        transpose_a: false,
        transpose_b: false,
    };
    let blocks = rows.min(FILTER_PARTIALS);
    let threads = threads_per_task(blocks);
    let partials: Vec<Vec<f32>> = (0..blocks)
        .into_par_iter()
        .map(|b| {
            let mut partial = vec![0.0; s.filter_len()];
            let mut columns = vec![0.0; positions * k];
            for r in b * rows / blocks..(b + 1) * rows / blocks {
                im2col(s, sample(x, r, s.input.len()), &mut columns);
                let delta = sample(delta, r, s.output.len());
                gemm(threads, shape, 1.0, delta, &columns, 1.0, &mut partial);
            }
            partial
        })
        .collect();
    for partial in &partials {
        for (g, p) in grad.iter_mut().zip(partial) {
            *g += alpha * p;
        }
    }
}

/// `z[r][c][p] += bias[c]`, in parallel over samples.
pub(super) fn channel_bias(g: Grid, rows: usize, bias: &[f32], z: &mut [f32]) {
    let positions = g.positions();
    samples_mut(z, rows, g.len()).for_each(|(_, z)| {
        for (plane, &b) in z.chunks_mut(positions).zip(bias) {
            plane.iter_mut().for_each(|z| *z += b);
        }
    });
}

/// `grad[c] += alpha * sum` of channel `c`'s deltas over the batch, in parallel over channels.
pub(super) fn channel_bias_gradient(
    g: Grid,
    rows: usize,
    delta: &[f32],
    alpha: f32,
    grad: &mut [f32],
) {
    let groups = Groups::new(g, rows, true);
    grad[..g.channels]
        .par_iter_mut()
        .enumerate()
        .for_each(|(c, grad)| *grad += alpha * groups.sum(c, |i| delta[i] as f64) as f32);
}

/// Index in `plane` (one channel of one sample) and value of the first largest input of
/// output position `p`'s window: the max pooling's output, and where its gradient goes.
fn window_max(s: Sliding, plane: &[f32], p: usize) -> (usize, f32) {
    window_taps(s, p)
        .flatten()
        .map(|i| (i, plane[i]))
        .reduce(|best, next| if next.1 > best.1 { next } else { best })
        .expect("checked: every window overlaps the input")
}

/// `y` (overwritten) = each window's maximum or mean over its positions inside the input, in
/// parallel over the channels of every sample (pooling keeps the channels).
pub(super) fn pooling_forward(p: Pooling, s: Sliding, rows: usize, x: &[f32], y: &mut [f32]) {
    let planes = rows * s.output.channels;
    samples_mut(y, planes, s.output.positions()).for_each(|(q, y)| {
        let plane = sample(x, q, s.input.positions());
        for (o, y) in y.iter_mut().enumerate() {
            *y = match p {
                Pooling::Max => window_max(s, plane, o).1,
                Pooling::Average => {
                    let (sum, count) = window_taps(s, o)
                        .flatten()
                        .fold((0.0, 0), |(sum, count), i| (sum + plane[i], count + 1));
                    sum / count as f32
                }
            };
        }
    });
}

/// `dx += dE/dx`: each window's `dy` to its first largest input (max), or shared equally by
/// its positions inside the input (average). The maximum is found again from `x`, so the
/// forward output is not needed.
pub(super) fn pooling_backward(
    p: Pooling,
    s: Sliding,
    rows: usize,
    x: &[f32],
    _y: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    let (in_positions, out_positions) = (s.input.positions(), s.output.positions());
    samples_mut(dx, rows * s.input.channels, in_positions).for_each(|(q, dx)| {
        let (plane, dy) = (sample(x, q, in_positions), sample(dy, q, out_positions));
        for (o, &dy) in dy.iter().enumerate() {
            match p {
                Pooling::Max => dx[window_max(s, plane, o).0] += dy,
                Pooling::Average => {
                    let inputs = window_taps(s, o).flatten();
                    let share = dy / inputs.clone().count() as f32;
                    inputs.for_each(|i| dx[i] += share);
                }
            }
        }
    });
}

/// The channels whose squares normalise channel `c`: `c - (n - 1) / 2 ..= c + n / 2`, those
/// of the `channels` that exist.
fn response_window(n: usize, c: usize, channels: usize) -> RangeInclusive<usize> {
    c.saturating_sub((n - 1) / 2)..=(c + n / 2).min(channels - 1)
}

/// The channels whose [`response_window`] holds channel `j` (the window mirrored), those that
/// exist: where `x_j` enters the normalisation.
fn windows_holding(n: usize, j: usize, channels: usize) -> RangeInclusive<usize> {
    j.saturating_sub(n / 2)..=(j + (n - 1) / 2).min(channels - 1)
}

/// Writes each unit's `s = k + alpha / n * sum` of the squares over its channel window, for
/// one sample `x` laid out as `g`: what the forward and backward passes both need.
fn response_scales(r: LocalResponse, g: Grid, x: &[f32], scales: &mut [f32]) {
    let positions = g.positions();
    for c in 0..g.channels {
        let window = response_window(r.n, c, g.channels);
        for p in 0..positions {
            let squares: f32 = window.clone().map(|c| x[c * positions + p].powi(2)).sum();
            scales[c * positions + p] = r.k + r.alpha / r.n as f32 * squares;
        }
    }
}

/// `y = x * s^-beta` (overwritten), in parallel over samples.
pub(super) fn local_response_forward(
    r: LocalResponse,
    g: Grid,
    rows: usize,
    x: &[f32],
    y: &mut [f32],
) {
    let len = g.len();
    samples_mut(y, rows, len).for_each_init(
        || vec![0.0; len],
        |scales, (row, y)| {
            let x = sample(x, row, len);
            response_scales(r, g, x, scales);
            for ((y, &x), &s) in y.iter_mut().zip(x).zip(scales.iter()) {
                *y = x * s.powf(-r.beta);
            }
        },
    );
}

/// `dx += dE/dx`, in parallel over samples: `dE/dx_j = dy_j * s_j^-beta - 2 * alpha * beta / n
/// * x_j * sum(dy_c * y_c / s_c)` over the channels `c` whose windows hold `j`.
pub(super) fn local_response_backward(
    r: LocalResponse,
    g: Grid,
    rows: usize,
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    let (len, positions) = (g.len(), g.positions());
    let factor = 2.0 * r.alpha * r.beta / r.n as f32;
    samples_mut(dx, rows, len).for_each_init(
        || (vec![0.0; len], vec![0.0; len]),
        |(scales, ratios), (row, dx)| {
            let (x, y, dy) = (
                sample(x, row, len),
                sample(y, row, len),
                sample(dy, row, len),
            );
            response_scales(r, g, x, scales);
            for (((q, &dy), &y), &s) in ratios.iter_mut().zip(dy).zip(y).zip(scales.iter()) {
                *q = dy * y / s;
            }
            for j in 0..g.channels {
                let holding = windows_holding(r.n, j, g.channels);
                for p in 0..positions {
                    let u = j * positions + p;
                    let through: f32 = holding.clone().map(|c| ratios[c * positions + p]).sum();
                    dx[u] += dy[u] * scales[u].powf(-r.beta) - factor * x[u] * through;
                }
            }
        },
    );
}

/// How the values of a batch fall into the groups that batch normalisation (and the channel
/// bias gradient) reduce over: group `g` is values `g * span..(g + 1) * span` of each of the
/// `rows` samples of `len` values, a channel's positions (`span` = positions) or one unit
/// (`span` = 1).
#[derive(Debug, Clone, Copy)]
struct Groups {
    rows: usize,
    len: usize,
    span: usize,
}

impl Groups {
    /// The groups of `rows` samples laid out as `grid`: channels or single units.
    fn new(grid: Grid, rows: usize, per_channel: bool) -> Self {
        let span = if per_channel { grid.positions() } else { 1 };
        Groups {
            rows,
            len: grid.len(),
            span,
        }
    }

    /// The values in each group, `N`.
    fn count(self) -> usize {
        self.rows * self.span
    }

    /// The indices in the batch of group `g`'s values, sample by sample.
    fn indices(self, g: usize) -> impl Iterator<Item = usize> {
        (0..self.rows).flat_map(move |r| {
            let first = r * self.len + g * self.span;
            first..first + self.span
        })
    }

    /// The sum of `f(index)` over group `g`'s values, in f64 for accuracy over large groups.
    fn sum(self, g: usize, f: impl Fn(usize) -> f64) -> f64 {
        self.indices(g).map(f).sum()
    }

    /// Group `g`'s mean and biased variance in `x`, in two passes for accuracy.
    fn mean_variance(self, x: &[f32], g: usize) -> (f64, f64) {
        let n = self.count() as f64;
        let mean = self.sum(g, |i| x[i] as f64) / n;
        let variance = self.sum(g, |i| (x[i] as f64 - mean).powi(2)) / n;
        (mean, variance)
    }
}

/// `y = scale * (x - mean) * inverse_deviation + shift` (overwritten), with the batch's
/// statistics (saved, and moved into the running ones) or the running ones as `pass` says.
/// Statistics are computed in parallel over groups, then `y` in parallel over samples.
pub(super) fn batch_norm_forward(
    n: Normalization,
    rows: usize,
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    pass: NormalizationPass<'_, CpuBackend>,
    y: &mut [f32],
) {
    let groups = Groups::new(n.grid, rows, n.per_channel);
    let count = n.groups();
    let inverse_deviation = |variance: f64| (1.0 / (variance + n.epsilon as f64).sqrt()) as f32;
    let (mean, inverse): (Vec<f32>, Vec<f32>) = match pass {
        NormalizationPass::Training {
            factor,
            running_mean,
            running_variance,
            saved_mean,
            saved_inverse_deviation,
        } => {
            let statistics: Vec<(f64, f64)> = (0..count)
                .into_par_iter()
                .map(|g| groups.mean_variance(x, g))
                .collect();
            let (f, values) = (factor as f64, groups.count() as f64);
            // The running variance is unbiased; a single value has nothing to correct.
            let unbias = if values > 1.0 {
                values / (values - 1.0)
            } else {
                1.0
            };
            for (g, &(mean, variance)) in statistics.iter().enumerate() {
                saved_mean[g] = mean as f32;
                saved_inverse_deviation[g] = inverse_deviation(variance);
                running_mean[g] = ((1.0 - f) * running_mean[g] as f64 + f * mean) as f32;
                running_variance[g] =
                    ((1.0 - f) * running_variance[g] as f64 + f * variance * unbias) as f32;
            }
            (
                saved_mean[..count].to_vec(),
                saved_inverse_deviation[..count].to_vec(),
            )
        }
        NormalizationPass::Inference {
            running_mean,
            running_variance,
        } => (
            running_mean[..count].to_vec(),
            running_variance[..count]
                .iter()
                .map(|&v| inverse_deviation(v as f64))
                .collect(),
        ),
    };
    let len = n.grid.len();
    samples_mut(y, rows, len).for_each(|(r, y)| {
        let x = sample(x, r, len);
        for (g, (y, x)) in y
            .chunks_mut(groups.span)
            .zip(x.chunks(groups.span))
            .enumerate()
        {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = scale[g] * ((x - mean[g]) * inverse[g]) + shift[g];
            }
        }
    });
}

/// Writes `dx` (overwritten) and adds `alpha` times the scale's and shift's gradients, from
/// the statistics a training pass saved: per group, with `x_hat = (x - mean) * inverse`,
/// `dx = scale * inverse * (dy - mean(dy) - x_hat * mean(dy * x_hat))`. The sums run in
/// parallel over groups, then `dx` in parallel over samples.
#[allow(clippy::too_many_arguments)]
pub(super) fn batch_norm_backward(
    n: Normalization,
    rows: usize,
    x: &[f32],
    dy: &[f32],
    scale: &[f32],
    mean: &[f32],
    inverse: &[f32],
    alpha: f32,
    scale_gradient: &mut [f32],
    shift_gradient: &mut [f32],
    dx: &mut [f32],
) {
    let groups = Groups::new(n.grid, rows, n.per_channel);
    let x_hat = |i: usize, g: usize| (x[i] - mean[g]) * inverse[g];
    // Each group's sum(dy) and sum(dy * x_hat).
    let sums: Vec<(f64, f64)> = (0..n.groups())
        .into_par_iter()
        .map(|g| {
            let dy_sum = groups.sum(g, |i| dy[i] as f64);
            (dy_sum, groups.sum(g, |i| dy[i] as f64 * x_hat(i, g) as f64))
        })
        .collect();
    for (g, &(dy_sum, dy_x_hat_sum)) in sums.iter().enumerate() {
        scale_gradient[g] += alpha * dy_x_hat_sum as f32;
        shift_gradient[g] += alpha * dy_sum as f32;
    }
    let (len, values) = (n.grid.len(), groups.count() as f64);
    samples_mut(dx, rows, len).for_each(|(r, dx)| {
        for (g, dx) in dx.chunks_mut(groups.span).enumerate() {
            let (dy_mean, dy_x_hat_mean) = (sums[g].0 / values, sums[g].1 / values);
            for (j, dx) in dx.iter_mut().enumerate() {
                let i = r * len + g * groups.span + j;
                let centred = dy[i] - dy_mean as f32 - x_hat(i, g) * dy_x_hat_mean as f32;
                *dx = scale[g] * inverse[g] * centred;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::checks::check_sliding;
    use crate::backend::Window;
    use crate::testing::random_values;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(17)
    }

    /// A valid sliding of `kernel` from `input`, output extents as far as the window fits.
    fn sliding(
        input: [usize; 3],
        channels: [usize; 2],
        kernel: [usize; 3],
        stride: [usize; 3],
        padding: [usize; 3],
    ) -> Sliding {
        let output =
            std::array::from_fn(|d| (input[d] + 2 * padding[d] - kernel[d]) / stride[d] + 1);
        let s = Sliding {
            input: Grid::new(input, channels[0]),
            output: Grid::new(output, channels[1]),
            window: Window {
                kernel,
                stride,
                padding,
            },
        };
        check_sliding("test", &s).unwrap();
        s
    }

    /// `sum(r * out)`: the loss whose gradient with respect to `out` is `r`.
    fn weighted(r: &[f32], out: &[f32]) -> f64 {
        r.iter().zip(out).map(|(&r, &o)| r as f64 * o as f64).sum()
    }

    /// Central differences of `loss` at `at`, one value at a time.
    fn numeric_gradient(at: &[f32], step: f32, loss: impl Fn(&[f32]) -> f64) -> Vec<f64> {
        (0..at.len())
            .map(|i| {
                let (up, down) = (at[i] + step, at[i] - step);
                let mut moved = at.to_vec();
                moved[i] = up;
                let high = loss(&moved);
                moved[i] = down;
                (high - loss(&moved)) / (up as f64 - down as f64)
            })
            .collect()
    }

    /// What a backward pass added to `before`, divided by its `alpha`.
    fn added(after: &[f32], before: &[f32], alpha: f32) -> Vec<f32> {
        after
            .iter()
            .zip(before)
            .map(|(a, b)| (a - b) / alpha)
            .collect()
    }

    /// Asserts `analytic` within `tolerance` of `numeric` (relatively, above 1), and that the
    /// gradient does not vanish (which would test nothing).
    fn assert_gradient(what: &str, analytic: &[f32], numeric: &[f64], tolerance: f64) {
        assert_eq!(analytic.len(), numeric.len(), "{what}");
        assert!(numeric.iter().any(|n| n.abs() > 0.1), "{what} vanishes");
        for (i, (&a, &n)) in analytic.iter().zip(numeric).enumerate() {
            let error = (a as f64 - n).abs();
            assert!(
                error <= tolerance * n.abs().max(1.0),
                "{what}[{i}]: {a} analytically, {n} numerically"
            );
        }
    }

    fn assert_close(actual: &[f32], expected: &[f32], tolerance: f32) {
        assert_eq!(actual.len(), expected.len());
        for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
            assert!(
                (a - e).abs() <= tolerance,
                "[{i}]: {a}, expected {e}\n{actual:?}"
            );
        }
    }

    /// `1..=n` as values: the 3x3 input is `x(i, j) = 1 + i + 3 * j`.
    fn counting(n: usize) -> Vec<f32> {
        (1..=n).map(|v| v as f32).collect()
    }

    /// The convolution of one sample, with `z` one value longer than needed: it must stay.
    fn convolve(s: Sliding, rows: usize, x: &[f32], w: &[f32]) -> Vec<f32> {
        let mut z = vec![f32::NAN; rows * s.output.len() + 1];
        *z.last_mut().unwrap() = 42.0;
        convolution_forward(s, rows, x, w, 0.0, &mut z);
        assert_eq!(z.pop(), Some(42.0), "past the output");
        z
    }

    #[test]
    fn convolution_matches_hand_computed_values() {
        let x = counting(9);
        // 2x2 kernel w(i, j) = 1 + i + 2 * j, stride 1: z(0, 0) = 1*1 + 2*2 + 3*4 + 4*5.
        let s = sliding([3, 3, 1], [1, 1], [2, 2, 1], [1; 3], [0; 3]);
        assert_eq!(convolve(s, 1, &x, &counting(4)), [37.0, 47.0, 67.0, 77.0]);
        // 3x3 kernel w(i, j) = 1 + i + 3 * j, stride 2, padding 1: windows at -1 and 1,
        // each reading a 2x2 corner of the input, e.g. z(0, 0) = 5*1 + 6*2 + 8*4 + 9*5.
        let s = sliding([3, 3, 1], [1, 1], [3, 3, 1], [2, 2, 1], [1, 1, 0]);
        assert_eq!(convolve(s, 1, &x, &counting(9)), [94.0, 106.0, 106.0, 94.0]);
        // A 3x2 input and a kernel along x only: z(i, j) = x(i, j) + 10 * x(i + 1, j).
        let s = sliding([3, 2, 1], [1, 1], [2, 1, 1], [1; 3], [0; 3]);
        assert_eq!(
            convolve(s, 1, &x[..6], &[1.0, 10.0]),
            [21.0, 32.0, 54.0, 65.0]
        );
        // A 2x1x2 kernel over a 2x1x2 input, filters stored [z][y][x].
        let s = sliding([2, 1, 2], [1, 1], [2, 1, 2], [1; 3], [0; 3]);
        let w = [1.0, 10.0, 100.0, 1000.0];
        assert_eq!(convolve(s, 1, &counting(4), &w), [4321.0]);
        // Two samples of two channels to two, 1x1 kernel, filters stored [out][in].
        let s = sliding([2, 1, 1], [2, 2], [1; 3], [1; 3], [0; 3]);
        let w = [1.0, 10.0, 100.0, 1000.0];
        assert_eq!(
            convolve(s, 2, &counting(8), &w),
            [31.0, 42.0, 3100.0, 4200.0, 75.0, 86.0, 7500.0, 8600.0]
        );
    }

    #[test]
    fn convolution_adds_to_z_with_beta_one_and_ignores_it_with_beta_zero() {
        let s = sliding([3, 3, 1], [1, 1], [2, 2, 1], [1; 3], [0; 3]);
        let mut z = vec![1.0, -1.0, 0.5, 2.0];
        convolution_forward(s, 1, &counting(9), &counting(4), 1.0, &mut z);
        assert_eq!(z, [38.0, 46.0, 67.5, 79.0]);
        let mut z = vec![f32::NAN; 4];
        convolution_forward(s, 1, &counting(9), &counting(4), 0.0, &mut z);
        assert_eq!(z, [37.0, 47.0, 67.0, 77.0]);
    }

    /// Checks a convolution's data and filter gradients (added to non-zero buffers, the
    /// filters' times alpha) against central differences of `sum(r * z)` over `rows` samples.
    fn check_convolution_gradients(s: Sliding, rows: usize) {
        let mut rng = rng();
        let x = random_values(&mut rng, rows * s.input.len(), -1.0, 1.0);
        let w = random_values(&mut rng, s.filter_len(), -1.0, 1.0);
        let r = random_values(&mut rng, rows * s.output.len(), -1.0, 1.0);
        let loss = |x: &[f32], w: &[f32]| weighted(&r, &convolve(s, rows, x, w));
        // The loss is linear in x and in w: a large step loses nothing to truncation.
        let step = 0.5;

        let dx_before = random_values(&mut rng, x.len(), -1.0, 1.0);
        let mut dx = dx_before.clone();
        convolution_backward_data(s, rows, &r, &w, &mut dx);
        let numeric = numeric_gradient(&x, step, |x| loss(x, &w));
        assert_gradient("dx", &added(&dx, &dx_before, 1.0), &numeric, 1e-4);

        let (alpha, grad_before) = (0.5, random_values(&mut rng, w.len(), -1.0, 1.0));
        let mut grad = grad_before.clone();
        convolution_backward_filter(s, rows, &x, &r, alpha, &mut grad);
        let numeric = numeric_gradient(&w, step, |w| loss(&x, w));
        assert_gradient("dw", &added(&grad, &grad_before, alpha), &numeric, 1e-4);
    }

    #[test]
    fn convolution_2d_gradients_match_finite_differences() {
        check_convolution_gradients(sliding([5, 4, 1], [2, 3], [3, 3, 1], [1; 3], [1, 1, 0]), 2);
        check_convolution_gradients(sliding([7, 5, 1], [2, 3], [3, 3, 1], [2, 2, 1], [0; 3]), 2);
    }

    #[test]
    fn convolution_1d_gradients_match_finite_differences() {
        // More samples than partial filter gradients, so that blocks hold several.
        let s = sliding([9, 1, 1], [2, 3], [4, 1, 1], [2, 1, 1], [2, 0, 0]);
        check_convolution_gradients(s, FILTER_PARTIALS + 3);
    }

    #[test]
    fn convolution_3d_gradients_match_finite_differences() {
        let s = sliding([4, 3, 3], [2, 2], [2, 2, 3], [1, 2, 1], [1, 0, 1]);
        check_convolution_gradients(s, 2);
    }

    #[test]
    fn channel_bias_adds_to_each_channel() {
        let g = Grid::new([2, 1, 1], 2);
        let mut z = vec![0.0; 9];
        z[8] = 42.0;
        channel_bias(g, 2, &[1.0, 10.0], &mut z);
        assert_eq!(z, [1.0, 1.0, 10.0, 10.0, 1.0, 1.0, 10.0, 10.0, 42.0]);

        let mut grad = vec![1.0, 1.0];
        channel_bias_gradient(g, 2, &counting(8), 0.5, &mut grad);
        // Channel 0: 1 + 2 + 5 + 6; channel 1: 3 + 4 + 7 + 8.
        assert_eq!(grad, [1.0 + 7.0, 1.0 + 11.0]);
    }

    #[test]
    fn channel_bias_gradient_matches_finite_differences() {
        let (g, rows) = (Grid::new([3, 2, 1], 3), 2);
        let mut rng = rng();
        let z = random_values(&mut rng, rows * g.len(), -1.0, 1.0);
        let bias = random_values(&mut rng, g.channels, -1.0, 1.0);
        let r = random_values(&mut rng, z.len(), -1.0, 1.0);
        let numeric = numeric_gradient(&bias, 0.5, |bias| {
            let mut z = z.clone();
            channel_bias(g, rows, bias, &mut z);
            weighted(&r, &z)
        });
        let (alpha, before) = (2.0, vec![0.25; g.channels]);
        let mut grad = before.clone();
        channel_bias_gradient(g, rows, &r, alpha, &mut grad);
        assert_gradient("bias", &added(&grad, &before, alpha), &numeric, 1e-4);
    }

    fn pool(p: Pooling, s: Sliding, rows: usize, x: &[f32]) -> Vec<f32> {
        let mut y = vec![f32::NAN; rows * s.output.len()];
        pooling_forward(p, s, rows, x, &mut y);
        y
    }

    #[test]
    fn pooling_matches_hand_computed_values() {
        // 2x2 windows, stride 2, padding 1, over a 3x3 input: the windows hold 1, 2, 2 and 4
        // positions of the input.
        let s = sliding([3, 3, 1], [1, 1], [2, 2, 1], [2, 2, 1], [1, 1, 0]);
        let x = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0];
        assert_eq!(pool(Pooling::Max, s, 1, &x), [3.0, 4.0, 2.0, 9.0]);
        // Padding is neither a candidate for the maximum nor counted in the mean.
        let negated = x.map(|v: f32| -v);
        assert_eq!(pool(Pooling::Max, s, 1, &negated), [-3.0, -1.0, -1.0, -5.0]);
        assert_eq!(pool(Pooling::Average, s, 1, &x), [3.0, 2.5, 1.5, 6.25]);
        // Two channels of two samples, pooled apart: a 1D window of 2, stride 1.
        let s = sliding([3, 1, 1], [2, 2], [2, 1, 1], [1; 3], [0; 3]);
        let x = [1.0, 3.0, 2.0, 6.0, 5.0, 4.0, 0.0, 1.0, 0.5, 2.0, 8.0, 7.0];
        let max = [3.0, 3.0, 6.0, 5.0, 1.0, 1.0, 8.0, 8.0];
        assert_eq!(pool(Pooling::Max, s, 2, &x), max);
    }

    #[test]
    fn max_pooling_sends_the_gradient_to_the_first_maximum() {
        // One 2x2 window, maxima at (1, 0) and (0, 1): (1, 0) comes first (y outer).
        let s = sliding([2, 2, 1], [1, 1], [2, 2, 1], [1; 3], [0; 3]);
        let x = [1.0, 7.0, 7.0, 2.0];
        let y = pool(Pooling::Max, s, 1, &x);
        let mut dx = vec![1.0; 4];
        pooling_backward(Pooling::Max, s, 1, &x, &y, &[0.5], &mut dx);
        assert_eq!(dx, [1.0, 1.5, 1.0, 1.0]);
        // Average: a quarter each, added.
        pooling_backward(Pooling::Average, s, 1, &x, &y, &[2.0], &mut dx);
        assert_eq!(dx, [1.5, 2.0, 1.5, 1.5]);
    }

    /// Checks a pooling's input gradient (added to a non-zero `dx`) against central
    /// differences of `sum(r * y)`, for inputs of distinct values at least `spacing` apart.
    fn check_pooling_gradient(p: Pooling, s: Sliding, rows: usize, step: f32) {
        let mut rng = rng();
        let mut x: Vec<f32> = (0..rows * s.input.len())
            .map(|i| i as f32 * 0.05 - 1.0)
            .collect();
        x.shuffle(&mut rng);
        let r = random_values(&mut rng, rows * s.output.len(), -1.0, 1.0);
        let numeric = numeric_gradient(&x, step, |x| weighted(&r, &pool(p, s, rows, x)));
        let before = random_values(&mut rng, x.len(), -1.0, 1.0);
        let mut dx = before.clone();
        pooling_backward(p, s, rows, &x, &pool(p, s, rows, &x), &r, &mut dx);
        assert_gradient(&format!("{p:?}"), &added(&dx, &before, 1.0), &numeric, 1e-4);
    }

    #[test]
    fn pooling_gradients_match_finite_differences() {
        // Steps under half the inputs' spacing keep each window's maximum where it is.
        let s = sliding([5, 4, 1], [2, 2], [3, 2, 1], [2, 1, 1], [1, 1, 0]);
        check_pooling_gradient(Pooling::Max, s, 2, 0.01);
        let s = sliding([5, 5, 2], [2, 2], [3, 3, 2], [2, 2, 1], [1, 1, 1]);
        check_pooling_gradient(Pooling::Max, s, 2, 0.01);
        check_pooling_gradient(Pooling::Average, s, 2, 0.5);
    }

    fn respond(r: LocalResponse, g: Grid, rows: usize, x: &[f32]) -> Vec<f32> {
        let mut y = vec![f32::NAN; rows * g.len()];
        local_response_forward(r, g, rows, x, &mut y);
        y
    }

    #[test]
    fn local_response_matches_the_formula() {
        // Three channels at two positions: x = (1, 2, 3) at the first, (2, 0, 0) at the second.
        let g = Grid::new([2, 1, 1], 3);
        let x = [1.0, 2.0, 2.0, 0.0, 3.0, 0.0];
        let lrn = |n| LocalResponse {
            k: 1.0,
            n,
            alpha: 1.0,
            beta: 1.0,
        };
        // n = 1: y = x / (1 + x^2).
        let expected = [1.0 / 2.0, 2.0 / 5.0, 2.0 / 5.0, 0.0, 3.0 / 10.0, 0.0];
        assert_close(&respond(lrn(1), g, 1, &x), &expected, 1e-6);
        // n = 3: channels c - 1..=c + 1, e.g. s_0 = 1 + (1 + 4) / 3.
        let expected = [3.0 / 8.0, 6.0 / 7.0, 6.0 / 17.0, 0.0, 9.0 / 16.0, 0.0];
        assert_close(&respond(lrn(3), g, 1, &x), &expected, 1e-6);
        // n = 2: channels c..=c + 1, e.g. s_0 = 1 + (1 + 4) / 2.
        let expected = [1.0 / 3.5, 2.0 / 3.0, 2.0 / 7.5, 0.0, 3.0 / 5.5, 0.0];
        assert_close(&respond(lrn(2), g, 1, &x), &expected, 1e-6);
        // beta = 0.5 with k = 2, alpha = 3, n = 1: y = x / sqrt(2 + 3 x^2).
        let r = LocalResponse {
            k: 2.0,
            n: 1,
            alpha: 3.0,
            beta: 0.5,
        };
        let y = respond(r, Grid::flat(1), 2, &[1.0, -2.0]);
        assert_close(&y, &[1.0 / 5f32.sqrt(), -2.0 / 14f32.sqrt()], 1e-6);
    }

    #[test]
    fn local_response_gradients_match_finite_differences() {
        let (g, rows) = (Grid::new([3, 1, 1], 7), 2);
        for n in [5, 4] {
            let r = LocalResponse {
                k: 1.0,
                n,
                alpha: 2.0,
                beta: 0.75,
            };
            let mut rng = rng();
            let x = random_values(&mut rng, rows * g.len(), -1.0, 1.0);
            let dy = random_values(&mut rng, x.len(), -1.0, 1.0);
            let numeric = numeric_gradient(&x, 1e-3, |x| weighted(&dy, &respond(r, g, rows, x)));
            let before = random_values(&mut rng, x.len(), -1.0, 1.0);
            let mut dx = before.clone();
            let y = respond(r, g, rows, &x);
            local_response_backward(r, g, rows, &x, &y, &dy, &mut dx);
            assert_gradient(&format!("n {n}"), &added(&dx, &before, 1.0), &numeric, 2e-3);
        }
    }

    /// The statistics of a batch normalisation: running mean and variance, saved mean and
    /// inverse deviation.
    #[derive(Debug, Clone)]
    struct Statistics {
        running_mean: Vec<f32>,
        running_variance: Vec<f32>,
        saved_mean: Vec<f32>,
        saved_inverse: Vec<f32>,
    }

    impl Statistics {
        fn new(running_mean: Vec<f32>, running_variance: Vec<f32>) -> Self {
            let groups = running_mean.len();
            Statistics {
                running_mean,
                running_variance,
                saved_mean: vec![f32::NAN; groups],
                saved_inverse: vec![f32::NAN; groups],
            }
        }
    }

    /// A training pass moving the running statistics by `factor`: `y` and the statistics.
    fn train(
        n: Normalization,
        rows: usize,
        x: &[f32],
        [scale, shift]: [&[f32]; 2],
        factor: f32,
        mut statistics: Statistics,
    ) -> (Vec<f32>, Statistics) {
        let mut y = vec![f32::NAN; x.len()];
        let pass = NormalizationPass::Training {
            factor,
            running_mean: &mut statistics.running_mean,
            running_variance: &mut statistics.running_variance,
            saved_mean: &mut statistics.saved_mean,
            saved_inverse_deviation: &mut statistics.saved_inverse,
        };
        batch_norm_forward(n, rows, x, scale, shift, pass, &mut y);
        (y, statistics)
    }

    #[test]
    fn batch_norm_matches_hand_computed_statistics() {
        let epsilon = Normalization::EPSILON;
        let inverse = |variance: f32| 1.0 / (variance + epsilon).sqrt();
        // Per unit, three samples of two units: unit 0 holds 1, 2, 6 (mean 3, variance 14/3),
        // unit 1 holds 0, 0, 3 (mean 1, variance 2).
        let n = Normalization {
            grid: Grid::flat(2),
            per_channel: false,
            epsilon,
        };
        let x = [1.0, 0.0, 2.0, 0.0, 6.0, 3.0];
        let (scale, shift) = ([2.0, -1.0], [0.5, 1.0]);
        let before = Statistics::new(vec![0.5, 0.0], vec![2.0, 1.0]);
        let (y, after) = train(n, 3, &x, [&scale, &shift], 0.1, before);
        assert_close(&after.saved_mean, &[3.0, 1.0], 1e-6);
        let (inverse_0, inverse_1) = (inverse(14.0 / 3.0), inverse(2.0));
        assert_close(&after.saved_inverse, &[inverse_0, inverse_1], 1e-6);
        // Running: 0.9 * running + 0.1 * batch, the variance unbiased (times 3 / 2).
        assert_close(&after.running_mean, &[0.9 * 0.5 + 0.1 * 3.0, 0.1], 1e-6);
        assert_close(
            &after.running_variance,
            &[1.8 + 0.1 * 7.0, 0.9 + 0.1 * 3.0],
            1e-6,
        );
        let expected = [-2, -1, -1, -1, 3, 2].map(|d| d as f32);
        let expected: Vec<f32> = expected
            .iter()
            .enumerate()
            .map(|(i, d)| match i % 2 {
                0 => 2.0 * d * inverse_0 + 0.5,
                _ => -d * inverse_1 + 1.0,
            })
            .collect();
        assert_close(&y, &expected, 1e-5);

        // Inference normalises with the running statistics instead.
        let mut y = vec![f32::NAN; 6];
        let pass = NormalizationPass::Inference {
            running_mean: &vec![1.0, -1.0],
            running_variance: &vec![4.0, 0.25],
        };
        batch_norm_forward(n, 3, &x, &scale, &shift, pass, &mut y);
        let expected: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &x)| match i % 2 {
                0 => 2.0 * (x - 1.0) * inverse(4.0) + 0.5,
                _ => -(x + 1.0) * inverse(0.25) + 1.0,
            })
            .collect();
        assert_close(&y, &expected, 1e-5);

        // Per channel: one channel of two positions, two samples: 1, 2, 3, 6, N = 4, mean 3,
        // variance (4 + 1 + 0 + 9) / 4 = 3.5, unbiased 14 / 3.
        let n = Normalization {
            grid: Grid::new([2, 1, 1], 1),
            per_channel: true,
            epsilon,
        };
        let before = Statistics::new(vec![0.0], vec![0.0]);
        let (y, after) = train(n, 2, &[1.0, 2.0, 3.0, 6.0], [&[1.0], &[0.0]], 0.5, before);
        assert_close(&after.saved_mean, &[3.0], 1e-6);
        assert_close(&after.saved_inverse, &[inverse(3.5)], 1e-6);
        assert_close(&after.running_mean, &[1.5], 1e-6);
        assert_close(&after.running_variance, &[7.0 / 3.0], 1e-6);
        let expected = [-2.0, -1.0, 0.0, 3.0].map(|d| d * inverse(3.5));
        assert_close(&y, &expected, 1e-5);

        // A single value per group: variance 0, nothing to unbias.
        let n = Normalization {
            grid: Grid::flat(1),
            per_channel: false,
            epsilon,
        };
        let before = Statistics::new(vec![1.0], vec![1.0]);
        let (y, after) = train(n, 1, &[5.0], [&[1.0], &[0.25]], 0.5, before);
        assert_close(&after.running_mean, &[3.0], 1e-6);
        assert_close(&after.running_variance, &[0.5], 1e-6);
        assert_close(&y, &[0.25], 1e-6);
    }

    /// Checks a training batch normalisation's gradients against central differences of
    /// `sum(r * y)`, `y` normalised by the batch's own statistics: `dx` is overwritten, the
    /// scale's and shift's gradients added times alpha.
    fn check_batch_norm_gradients(n: Normalization, rows: usize) {
        let mut rng = rng();
        let groups = n.groups();
        let x = random_values(&mut rng, rows * n.grid.len(), -1.0, 1.0);
        let scale = random_values(&mut rng, groups, 0.5, 2.0);
        let shift = random_values(&mut rng, groups, -1.0, 1.0);
        let r = random_values(&mut rng, x.len(), -1.0, 1.0);
        let fresh = Statistics::new(vec![0.0; groups], vec![1.0; groups]);
        let loss = |x: &[f32], scale: &[f32], shift: &[f32]| {
            weighted(&r, &train(n, rows, x, [scale, shift], 0.1, fresh.clone()).0)
        };
        let (_, saved) = train(n, rows, &x, [&scale, &shift], 0.1, fresh.clone());

        let alpha = 0.5;
        let (scale_before, shift_before) = (vec![1.0; groups], vec![-1.0; groups]);
        let (mut scale_gradient, mut shift_gradient) = (scale_before.clone(), shift_before.clone());
        let mut dx = vec![f32::NAN; x.len()];
        batch_norm_backward(
            n,
            rows,
            &x,
            &r,
            &scale,
            &saved.saved_mean,
            &saved.saved_inverse,
            alpha,
            &mut scale_gradient,
            &mut shift_gradient,
            &mut dx,
        );
        let numeric = numeric_gradient(&x, 1e-3, |x| loss(x, &scale, &shift));
        assert_gradient("dx", &dx, &numeric, 2e-3);
        let numeric = numeric_gradient(&scale, 1e-2, |scale| loss(&x, scale, &shift));
        let analytic = added(&scale_gradient, &scale_before, alpha);
        assert_gradient("scale", &analytic, &numeric, 1e-3);
        let numeric = numeric_gradient(&shift, 1e-2, |shift| loss(&x, &scale, shift));
        let analytic = added(&shift_gradient, &shift_before, alpha);
        assert_gradient("shift", &analytic, &numeric, 1e-3);
    }

    #[test]
    fn batch_norm_per_unit_gradients_match_finite_differences() {
        let n = Normalization {
            grid: Grid::new([2, 1, 1], 2),
            per_channel: false,
            epsilon: Normalization::EPSILON,
        };
        check_batch_norm_gradients(n, 5);
    }

    #[test]
    fn batch_norm_per_channel_gradients_match_finite_differences() {
        let n = Normalization {
            grid: Grid::new([3, 2, 1], 2),
            per_channel: true,
            epsilon: Normalization::EPSILON,
        };
        check_batch_norm_gradients(n, 3);
    }
}
