//! The boundary between the network and the device that computes it.
//!
//! The network (forward order, back-propagation, optimizer schedule) is written once against
//! [`Backend`]; each device implements a small set of fused operations. Operations take the
//! logical shape of every matrix, so that a backend may lay a matrix out however it likes,
//! including split across several devices.
//!
//! Conventions: dense matrices are row-major `rows x cols` buffers of `f32`; a weight matrix
//! of a connection from `m` units to `n` units is `m x n` (one row per input unit), so a
//! sparse input touches whole rows. Operations that add into an output say so.

pub mod cpu;
pub mod random;

use crate::config::{Activation, ErrorFunction};
use crate::data::SparseRows;
use crate::error::{Error, Result};

/// A batch of sparse rows resident on a backend.
pub struct SparseBatch<B: Backend + ?Sized> {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub width: usize,
    /// Number of stored entries.
    pub nnz: usize,
    /// `rows + 1` offsets into `indices`.
    pub offsets: B::Indices,
    /// Column of each entry.
    pub indices: B::Indices,
    /// Value of each entry; `None` means all ones.
    pub values: Option<B::Buffer>,
}

/// The entries of a sparse dataset kept on a backend for a whole run, from which batches are
/// gathered there (the row offsets stay on the host, which sizes each batch).
pub struct ResidentEntries<B: Backend + ?Sized> {
    /// Number of stored entries.
    pub nnz: usize,
    /// Column of each entry.
    pub indices: B::Indices,
    /// Value of each entry; `None` means all ones.
    pub values: Option<B::Buffer>,
}

/// Checks the layout of a [`Backend::gather_sparse`] against `nnz` resident entries: one
/// source per row, offsets that never decrease, and no row reading past the entries.
pub fn check_gather_layout(offsets: &[u32], sources: &[u64], nnz: usize) -> Result<()> {
    let rows = offsets.len().saturating_sub(1);
    if sources.len() != rows {
        return Err(Error::Dimension(format!(
            "gather: {} sources for {rows} rows",
            sources.len()
        )));
    }
    for r in 0..rows {
        let len = offsets[r + 1]
            .checked_sub(offsets[r])
            .ok_or_else(|| Error::Dimension(format!("gather: offsets decrease at row {r}")))?;
        if sources[r] + len as u64 > nnz as u64 {
            return Err(Error::Dimension(format!(
                "gather: row {r} reads entries {}..{} of {nnz}",
                sources[r],
                sources[r] + len as u64
            )));
        }
    }
    Ok(())
}

/// The order of [`Backend::top_k`]'s `(score, column)` results, best first: higher score,
/// then lower column; NaN ranks with -inf.
pub fn top_k_order(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    let score = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    score(b.0).total_cmp(&score(a.0)).then(a.1.cmp(&b.1))
}

/// Checks that sparse targets fit an output of `rows x cols` that is the columns from
/// `first_column` on of theirs.
pub fn check_sparse_target<B: Backend + ?Sized>(
    x: &SparseBatch<B>,
    rows: usize,
    cols: usize,
    first_column: usize,
) -> Result<()> {
    if x.rows != rows || first_column + cols > x.width {
        return Err(Error::Dimension(format!(
            "sparse target of {} x {} for an output of {rows} x {cols} from column {first_column}",
            x.rows, x.width
        )));
    }
    Ok(())
}

/// The target of an output layer for one batch.
pub enum Target<'a, B: Backend + ?Sized> {
    /// A dense `rows x cols` matrix of targets.
    Dense(&'a B::Buffer),
    /// Sparse targets: every entry not stored is 0. They index the whole output; a layer split
    /// across ranks holds its columns from `first_column` on and skips entries outside them.
    Sparse {
        entries: &'a SparseBatch<B>,
        first_column: usize,
    },
}

/// What an output layer applies after its products: the bias, then the activation.
pub struct OutputActivation<'a, B: Backend + ?Sized> {
    pub activation: Activation,
    /// Length `cols`.
    pub bias: Option<&'a B::Buffer>,
    /// Per-unit slopes of `ParametricRectifiedLinear`.
    pub slope: Option<&'a B::Buffer>,
}

impl<B: Backend + ?Sized> Clone for OutputActivation<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Backend + ?Sized> Copy for OutputActivation<'_, B> {}

/// Shape and transposition of a dense product `C = alpha * op(A) * op(B) + beta * C`,
/// with `op(A)` of `m x k`, `op(B)` of `k x n` and `C` of `m x n`, all row-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// A is stored `k x m` and used transposed.
    pub transpose_a: bool,
    /// B is stored `n x k` and used transposed.
    pub transpose_b: bool,
}

/// Where a block of columns lies in a wider matrix: a layer split across ranks keeps
/// columns `offset..offset + cols` of a matrix `total` columns wide. Random masks are drawn
/// by each element's index in the whole matrix, so a split layer drops what it would whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnWindow {
    /// First column of the block in the whole matrix.
    pub offset: usize,
    /// Width of the whole matrix.
    pub total: usize,
}

impl ColumnWindow {
    /// A block that is the whole matrix, `cols` wide.
    pub fn whole(cols: usize) -> Self {
        ColumnWindow {
            offset: 0,
            total: cols,
        }
    }
}

/// A row-major matrix inside a larger buffer: element `(r, c)` at `offset + r * stride + c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strided {
    /// Index of element `(0, 0)`.
    pub offset: usize,
    /// Distance between the starts of consecutive rows.
    pub stride: usize,
}

impl Strided {
    /// How many values a buffer needs to hold a `rows x cols` matrix laid out so (`rows` and
    /// `cols` at least 1).
    pub fn extent(&self, rows: usize, cols: usize) -> usize {
        self.offset + (rows - 1) * self.stride + cols
    }
}

/// Optimizers, with their hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum OptimizerKind {
    /// `w -= lr * g`
    Sgd,
    /// `v = mu * v - lr * g; w += v`
    Momentum { momentum: f32 },
    /// Nesterov momentum in the form `v' = mu * v - lr * g; w += -mu * v + (1 + mu) * v'`.
    Nesterov { momentum: f32 },
    /// `s += g^2; w -= lr * g / (sqrt(s) + eps)`
    AdaGrad { epsilon: f32 },
    /// `s = rho * s + (1 - rho) * g^2; w -= lr * g / (sqrt(s) + eps)`
    RmsProp { rho: f32, epsilon: f32 },
    /// Zeiler's AdaDelta: `s = rho s + (1-rho) g^2; d = sqrt(u + eps) / sqrt(s + eps) * g;
    /// u = rho u + (1-rho) d^2; w -= lr * d` (lr is 1 in the paper).
    AdaDelta { rho: f32, epsilon: f32 },
    /// Adam with bias correction: `m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
    /// w -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
    Adam {
        beta1: f32,
        beta2: f32,
        epsilon: f32,
    },
}

impl OptimizerKind {
    /// How many state buffers (each the size of the parameters) the optimizer keeps.
    pub fn state_count(&self) -> usize {
        match self {
            OptimizerKind::Sgd => 0,
            OptimizerKind::Momentum { .. }
            | OptimizerKind::Nesterov { .. }
            | OptimizerKind::AdaGrad { .. }
            | OptimizerKind::RmsProp { .. } => 1,
            OptimizerKind::AdaDelta { .. } | OptimizerKind::Adam { .. } => 2,
        }
    }
}

/// One optimizer step over a parameter buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerStep {
    pub kind: OptimizerKind,
    pub learning_rate: f32,
    /// L1 weight decay: `g += l1 * sign(w)` before the update.
    pub l1: f32,
    /// L2 weight decay: `g += l2 * w` before the update.
    pub l2: f32,
    /// 1-based step count, for Adam's bias correction.
    pub step: u64,
}

/// The fused operations a device provides. See the module documentation for conventions.
pub trait Backend: Send + Sync {
    /// A buffer of `f32` on the device.
    type Buffer: Send + Sync;
    /// A buffer of `u32` on the device.
    type Indices: Send + Sync;
    /// Top-K results on their way to the host (see [`Backend::top_k`]).
    type TopK: Send;

    /// A short description of the device, for logs ("cpu (2 threads)", "cuda:0 H100").
    fn name(&self) -> String;

    /// A buffer of `len` zeros.
    fn zeros(&self, len: usize) -> Result<Self::Buffer>;
    /// A buffer holding `host`.
    fn upload(&self, host: &[f32]) -> Result<Self::Buffer>;
    /// Overwrites the start of `buffer` with `host` (no reallocation).
    fn write(&self, host: &[f32], buffer: &mut Self::Buffer) -> Result<()>;
    /// The buffer's contents (waits for pending work).
    fn download(&self, buffer: &Self::Buffer) -> Result<Vec<f32>>;
    /// An index buffer holding `host`.
    fn upload_indices(&self, host: &[u32]) -> Result<Self::Indices>;
    /// Sets the first `len` values of `buffer` to `value`.
    fn fill(&self, buffer: &mut Self::Buffer, len: usize, value: f32) -> Result<()>;
    /// `y[..len] += alpha * x[..len]`.
    fn axpy(&self, len: usize, alpha: f32, x: &Self::Buffer, y: &mut Self::Buffer) -> Result<()>;

    /// The contents of an index buffer (waits for pending work).
    fn download_indices(&self, buffer: &Self::Indices) -> Result<Vec<u32>>;

    /// Uploads a batch of sparse rows. Offsets must fit in `u32`.
    fn upload_sparse(&self, rows: &SparseRows) -> Result<SparseBatch<Self>> {
        let offsets: Vec<u32> = rows.offsets().iter().map(|&o| o as u32).collect();
        Ok(SparseBatch {
            rows: rows.len(),
            width: rows.width(),
            nnz: rows.nnz(),
            offsets: self.upload_indices(&offsets)?,
            indices: self.upload_indices(rows.indices())?,
            values: rows.values().map(|v| self.upload(v)).transpose()?,
        })
    }

    /// Whether training should copy sparse datasets to the backend once and gather each batch
    /// there ([`Backend::gather_sparse`]), rather than gather batches on the host and upload
    /// them: true where the host would otherwise be the bottleneck, as in front of a GPU.
    fn prefers_resident_data(&self) -> bool {
        false
    }

    /// Copies the entries of `rows` to the backend for [`Backend::gather_sparse`].
    fn upload_entries(&self, rows: &SparseRows) -> Result<ResidentEntries<Self>> {
        Ok(ResidentEntries {
            nnz: rows.nnz(),
            indices: self.upload_indices(rows.indices())?,
            values: rows.values().map(|v| self.upload(v)).transpose()?,
        })
    }

    /// Gathers a batch from resident entries: row `r` is the `offsets[r + 1] - offsets[r]`
    /// entries from `sources[r]` on. With `denoising = Some((p, seed))`, entry `e` of the
    /// batch is zeroed when `random::uniform(seed, e) < p` and the others are scaled by
    /// `1 / (1 - p)`, which gives the products and gradients of dropping the zeroed entries.
    fn gather_sparse(
        &self,
        entries: &ResidentEntries<Self>,
        width: usize,
        offsets: &[u32],
        sources: &[u64],
        denoising: Option<(f32, u64)>,
    ) -> Result<SparseBatch<Self>>;

    /// Dense product `c = alpha * op(a) * op(b) + beta * c`.
    fn gemm(
        &self,
        shape: GemmShape,
        alpha: f32,
        a: &Self::Buffer,
        b: &Self::Buffer,
        beta: f32,
        c: &mut Self::Buffer,
    ) -> Result<()>;

    /// Sparse-input product: `out = beta * out + x * w`, with `x` a `rows x m` sparse batch,
    /// `w` of `m x n` and `out` of `rows x n`. Sums only the weight rows each sample touches.
    fn sparse_matmul(
        &self,
        x: &SparseBatch<Self>,
        w: &Self::Buffer,
        n: usize,
        beta: f32,
        out: &mut Self::Buffer,
    ) -> Result<()>;

    /// Sparse-input weight gradient: `grad += alpha * x^T * delta`, with `delta` of
    /// `rows x n` and `grad` of `m x n`. Only the rows of `grad` the batch touches change, so
    /// passing the weights themselves with `alpha = -lr` is a plain SGD step.
    fn sparse_transpose_matmul(
        &self,
        x: &SparseBatch<Self>,
        delta: &Self::Buffer,
        n: usize,
        alpha: f32,
        grad: &mut Self::Buffer,
    ) -> Result<()>;

    /// `grad[c] += alpha * sum_r delta[r, c]`.
    fn bias_gradient(
        &self,
        rows: usize,
        cols: usize,
        delta: &Self::Buffer,
        alpha: f32,
        grad: &mut Self::Buffer,
    ) -> Result<()>;

    /// Adds `bias` (length `cols`, when given) to every row of the `rows x cols` matrix `z`,
    /// then `a = f(z)`: one pass instead of two. `slope` holds the per-unit slopes of
    /// `ParametricRectifiedLinear` and is `None` for every other activation.
    #[allow(clippy::too_many_arguments)]
    fn activation_forward(
        &self,
        activation: Activation,
        rows: usize,
        cols: usize,
        bias: Option<&Self::Buffer>,
        z: &mut Self::Buffer,
        slope: Option<&Self::Buffer>,
        a: &mut Self::Buffer,
    ) -> Result<()>;

    /// Turns `delta` from `dE/da` into `dE/dz` in place, given `z` and `a = f(z)`.
    #[allow(clippy::too_many_arguments)]
    fn activation_backward(
        &self,
        activation: Activation,
        rows: usize,
        cols: usize,
        z: &Self::Buffer,
        a: &Self::Buffer,
        slope: Option<&Self::Buffer>,
        delta: &mut Self::Buffer,
    ) -> Result<()>;

    /// Gradient of the per-unit PReLU slopes: `grad[c] += alpha * sum_r [z<0] z * delta`,
    /// with `delta = dE/da`.
    fn slope_gradient(
        &self,
        rows: usize,
        cols: usize,
        z: &Self::Buffer,
        delta: &Self::Buffer,
        alpha: f32,
        grad: &mut Self::Buffer,
    ) -> Result<()>;

    /// Output layer, fused: from `z`, the layer's products without its bias, applies the bias
    /// and the activation, writes `delta = dE/dz` for the whole `rows x cols` output and adds
    /// the batch's summed error to `loss[0]`, in one pass where the activation allows it.
    /// Neither the biased sums nor the activations are stored, and with a sparse target no
    /// dense target is built.
    #[allow(clippy::too_many_arguments)]
    fn output_delta(
        &self,
        error: ErrorFunction,
        output: OutputActivation<'_, Self>,
        rows: usize,
        cols: usize,
        z: &Self::Buffer,
        target: Target<'_, Self>,
        delta: &mut Self::Buffer,
        loss: &mut Self::Buffer,
    ) -> Result<()>;

    /// Sparseness penalty on a hidden layer's `rows x cols` activations `a`: adds
    /// `beta * (-p / rho_c + (1 - p) / (1 - rho_c))` to `delta[r, c]` (`dE/da`), with `rho_c`
    /// the column's mean activation, and `rows * beta * sum_c KL(p || rho_c)` to `loss[0]`.
    #[allow(clippy::too_many_arguments)]
    fn sparseness_penalty(
        &self,
        rows: usize,
        cols: usize,
        a: &Self::Buffer,
        p: f32,
        beta: f32,
        delta: &mut Self::Buffer,
        loss: &mut Self::Buffer,
    ) -> Result<()>;

    /// Inverted dropout over a `rows x cols` matrix that is the `window` of a wider one:
    /// element `(r, c)`, whose index in the whole matrix is `i = r * window.total +
    /// window.offset + c`, is zeroed when `random::uniform(seed, i) < p`, and kept ones are
    /// scaled by `1 / (1 - p)`. Applying it to the activations and then, with the same seed,
    /// to their deltas back-propagates it.
    #[allow(clippy::too_many_arguments)]
    fn dropout(
        &self,
        rows: usize,
        cols: usize,
        window: ColumnWindow,
        p: f32,
        seed: u64,
        x: &mut Self::Buffer,
    ) -> Result<()>;

    /// Copies the `rows x cols` matrix at `from` in `src` to `to` in `dst`, or adds it there
    /// when `accumulate`: how a layer's column blocks are laid out for collectives.
    #[allow(clippy::too_many_arguments)]
    fn copy_matrix(
        &self,
        rows: usize,
        cols: usize,
        src: &Self::Buffer,
        from: Strided,
        dst: &mut Self::Buffer,
        to: Strided,
        accumulate: bool,
    ) -> Result<()>;

    /// One optimizer step: `params -= update(grad)`, with `state` holding
    /// `step.kind.state_count()` buffers of `len` values.
    fn optimizer_step(
        &self,
        step: &OptimizerStep,
        len: usize,
        params: &mut Self::Buffer,
        grad: &Self::Buffer,
        state: &mut [Self::Buffer],
    ) -> Result<()>;

    /// Max-norm constraint: scales each column of the `rows x cols` matrix `w` (a unit's
    /// incoming weights) whose Euclidean norm exceeds `max_norm` down to `max_norm`.
    fn max_norm(&self, rows: usize, cols: usize, max_norm: f32, w: &mut Self::Buffer)
        -> Result<()>;

    /// The `k` highest scores of each row of `rows x cols` `scores`, best first, skipping the
    /// columns of that row in `exclude`; equal scores rank the lower column first. The scores
    /// are the columns from `first_column` on of a wider output (0 unless it is split across
    /// ranks), which `exclude` and the returned columns index. Queues the selection and its
    /// copy to the host; [`Backend::read_top_k`] waits for them, so that the host can queue
    /// the next batch first.
    #[allow(clippy::too_many_arguments)]
    fn top_k(
        &self,
        rows: usize,
        cols: usize,
        scores: &Self::Buffer,
        k: usize,
        exclude: Option<&SparseBatch<Self>>,
        first_column: usize,
    ) -> Result<Self::TopK>;

    /// The `rows * k` columns and scores of a [`Backend::top_k`]; a row with fewer than `k`
    /// candidates is padded with column `u32::MAX` and score `-inf`.
    fn read_top_k(&self, top: Self::TopK) -> Result<(Vec<u32>, Vec<f32>)>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_layouts_are_checked() {
        assert!(check_gather_layout(&[0, 2, 5], &[4, 0], 7).is_ok());
        let errors = [
            (
                check_gather_layout(&[0, 2, 5], &[4], 7),
                "1 sources for 2 rows",
            ),
            (
                check_gather_layout(&[0, 3, 2], &[0, 0], 7),
                "decrease at row 1",
            ),
            (
                check_gather_layout(&[0, 2, 5], &[6, 0], 7),
                "row 0 reads entries 6..8 of 7",
            ),
        ];
        for (result, expected) in errors {
            let message = result.unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
        }
    }
}
