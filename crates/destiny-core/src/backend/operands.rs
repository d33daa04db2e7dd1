//! The operands of the backend's operations: matrix shapes and layouts, sparse batches,
//! targets, output layers and optimizer steps.

use super::Backend;
use crate::config::{Activation, DeltaBoost, ErrorFunction};

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

/// The order of [`Backend::top_k`]'s `(score, column)` results, best first: higher score,
/// then lower column; NaN ranks with -inf.
pub fn top_k_order(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    let score = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    score(b.0).total_cmp(&score(a.0)).then(a.1.cmp(&b.1))
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

/// An output layer as [`Backend::output_delta`] needs it: what it applies after its
/// products (the bias, then the activation) and the error function it is trained on.
pub struct OutputLayer<'a, B: Backend + ?Sized> {
    pub error: ErrorFunction,
    /// Weights of the error (and so the deltas) of units with and without a target.
    pub boost: DeltaBoost,
    pub activation: Activation,
    /// Length `cols`.
    pub bias: Option<&'a B::Buffer>,
    /// Per-unit slopes of `ParametricRectifiedLinear`, length `cols`.
    pub slope: Option<&'a B::Buffer>,
}

impl<B: Backend + ?Sized> Clone for OutputLayer<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Backend + ?Sized> Copy for OutputLayer<'_, B> {}

/// The shape of a row-major `rows x cols` matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub rows: usize,
    pub cols: usize,
}

impl Shape {
    /// A `rows x cols` matrix.
    pub fn new(rows: usize, cols: usize) -> Self {
        Shape { rows, cols }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// True when the matrix has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

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
    /// How many values a buffer needs to hold a matrix of `shape` laid out so (0 for an
    /// empty one).
    pub fn extent(&self, shape: Shape) -> usize {
        if shape.is_empty() {
            return 0;
        }
        self.offset + (shape.rows - 1) * self.stride + shape.cols
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

impl OptimizerStep {
    /// Adam's bias corrections of this step, `(1 / (1 - beta1^t), 1 / (1 - beta2^t))`;
    /// `(1, 1)` for the other optimizers.
    pub fn bias_corrections(&self) -> (f32, f32) {
        match self.kind {
            OptimizerKind::Adam { beta1, beta2, .. } => {
                let t = self.step as i32;
                (1.0 / (1.0 - beta1.powi(t)), 1.0 / (1.0 - beta2.powi(t)))
            }
            _ => (1.0, 1.0),
        }
    }
}
