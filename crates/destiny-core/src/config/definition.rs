//! The network definition as the engine uses it, after parsing and validation.
//!
//! These types mirror DSSTNE's definition language (see `parse.rs` for the JSON side) but hold
//! only what Destiny builds; every value here has already been checked.

pub use crate::backend::LocalResponse;
use serde::{Deserialize, Serialize};

/// A whole network: global settings and its layers in definition order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkDefinition {
    /// DSSTNE's `Version` (informational).
    pub version: f32,
    /// The network's name.
    pub name: String,
    /// `FeedForward` or `AutoEncoder`; both train the same way.
    pub kind: NetworkKind,
    /// The error function of the output layers, with its parameters.
    pub error_function: ErrorFunction,
    /// Denoising of sparse inputs: the probability that an input entry is dropped.
    pub denoising: Option<f32>,
    /// Shuffle the order of samples every epoch (DSSTNE's `ShuffleIndices`).
    pub shuffle_indices: bool,
    /// Learning-rate decay (DSSTNE's `Decay`): step `s` uses `rate / (1 + decay * s)`.
    #[serde(default)]
    pub decay: f32,
    /// DSSTNE's `DeltaBoost`: the output deltas of units with and without a target, scaled.
    #[serde(default)]
    pub delta_boost: DeltaBoost,
    /// Parameters of every local response normalisation layer (DSSTNE's network-level
    /// `LocalResponseNormalization`).
    #[serde(default = "dsstne_local_response")]
    pub local_response: LocalResponse,
    /// Layers in definition order.
    pub layers: Vec<LayerDefinition>,
}

fn dsstne_local_response() -> LocalResponse {
    LocalResponse::DSSTNE
}

/// DSSTNE's network kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkKind {
    FeedForward,
    AutoEncoder,
}

/// What a layer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LayerKind {
    Input,
    Hidden,
    Output,
}

/// A layer's width: fixed, or taken from its dataset (`"auto"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Width {
    Fixed(usize),
    Auto,
}

/// One layer of the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerDefinition {
    pub name: String,
    pub kind: LayerKind,
    /// Number of units (`N`); multi-dimensional `N` is flattened to the product. Convolutional
    /// and pooling layers are `Auto`: their units follow from their sources.
    pub width: Width,
    /// The dataset feeding an input layer or giving an output layer's targets.
    pub dataset: Option<String>,
    /// Input/output: the data is sparse. Hidden: apply the sparseness penalty.
    pub sparse: bool,
    /// Layers whose outputs feed this one through weights (default: the previous layer).
    pub sources: Vec<String>,
    /// Layers whose outputs are added to this layer's pre-activation (same width).
    pub skips: Vec<String>,
    pub activation: Activation,
    /// Probability of dropping each unit of this layer's output during training.
    pub dropout: f32,
    pub weight_init: WeightInit,
    /// Max-norm constraint on each unit's incoming weights; 0 means none.
    pub weight_norm: f32,
    /// Sparseness penalty of a hidden layer marked `Sparse` (layer value or network default).
    pub sparseness_penalty: Option<SparsenessPenalty>,
    /// Connections of this layer that reuse another connection's weights.
    pub shared_weights: Vec<SharedWeight>,
    /// A sparse input layer's rows scaled to unit length (L2) before denoising, as Mult-DAE
    /// does: Destiny's extension `"Normalize": true`, unknown to DSSTNE.
    #[serde(default)]
    pub normalize: bool,
    /// What the layer computes from its sources (DSSTNE's `Type`); inputs are fully connected.
    #[serde(default)]
    pub layer_type: LayerType,
    /// A hidden layer's sums normalised over each batch before its activation.
    #[serde(default)]
    pub batch_normalization: bool,
    /// `N` given as dimensions (`[x, y, z, w]`, 1 to 4 of them), as an image input's; empty
    /// when `N` is one number or `auto`.
    #[serde(default)]
    pub dimensions: Vec<usize>,
}

impl LayerDefinition {
    /// A layer with DSSTNE's defaults for everything but its name, kind and width: no
    /// dataset, dense, fed by no named source, sigmoid, no dropout, Xavier weights, no
    /// weight norm, no sparseness penalty and no shared weights.
    pub fn new(name: impl Into<String>, kind: LayerKind, width: Width) -> LayerDefinition {
        LayerDefinition {
            name: name.into(),
            kind,
            width,
            dataset: None,
            sparse: false,
            sources: Vec::new(),
            skips: Vec::new(),
            activation: Activation::Sigmoid,
            dropout: 0.0,
            weight_init: WeightInit::default(),
            weight_norm: 0.0,
            sparseness_penalty: None,
            shared_weights: Vec::new(),
            normalize: false,
            layer_type: LayerType::FullyConnected,
            batch_normalization: false,
            dimensions: Vec::new(),
        }
    }
}

/// What a computed layer does with its sources, DSSTNE's layer `Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LayerType {
    /// Every unit of every source through a weight matrix.
    #[default]
    FullyConnected,
    /// `filters` (DSSTNE's `N`) filters sliding over each source's grid; the layer's channels
    /// are the filters.
    Convolutional { filters: usize, kernel: Kernel },
    /// A function of each window of its one source, channel by channel.
    Pooling(PoolingFunction, Kernel),
}

/// A sliding window as DSSTNE's `Kernel` and `KernelStride` give it, over the first
/// `dimensions` (1 to 3) dimensions of the source; the next one holds its channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kernel {
    pub dimensions: usize,
    /// The window's extent in each dimension (unused ones are 1).
    pub size: [usize; 3],
    pub stride: [usize; 3],
}

impl Default for Kernel {
    /// DSSTNE's defaults: a window of one position, stride 1.
    fn default() -> Self {
        Kernel {
            dimensions: 1,
            size: [1; 3],
            stride: [1; 3],
        }
    }
}

/// What a pooling layer takes of each window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolingFunction {
    Max,
    Average,
    /// Local response normalisation across channels, with the network's parameters (the
    /// layer's window is unused).
    LocalResponseNormalization,
}

/// Activation functions, with the parameters the parametric ones need.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Activation {
    Sigmoid,
    Tanh,
    RectifiedLinear,
    /// `max(z, slope * z)`.
    LeakyRectifiedLinear {
        slope: f32,
    },
    /// Leaky ReLU whose slope is learned per unit, starting at `slope`.
    ParametricRectifiedLinear {
        slope: f32,
    },
    /// `z` for `z > 0`, else `alpha * (exp(z) - 1)`.
    ExponentialLinear {
        alpha: f32,
    },
    /// `lambda * elu(z, alpha)`.
    ScaledExponentialLinear {
        alpha: f32,
        lambda: f32,
    },
    SoftPlus,
    SoftSign,
    /// Softmax over each row.
    SoftMax,
    /// ReLU scaled so that each row's largest value is 1.
    ReluMax,
    /// Identity scaled so that each row's largest magnitude is 1.
    LinearMax,
    Linear,
}

/// Error functions of output layers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum ErrorFunction {
    /// Sum of `|a - t|`.
    L1,
    /// Sum of `(a - t)^2 / 2`.
    L2,
    /// Binary cross entropy per unit; categorical for SoftMax outputs.
    CrossEntropy,
    /// Cross entropy with margins and separate weights for ones and zeros (DSSTNE's default).
    ScaledMarginalCrossEntropy(MarginalParameters),
    /// As above, each target's term also scaled by the target's data value.
    DataScaledMarginalCrossEntropy(MarginalParameters),
    /// `max(0, 1 - y a)` with `y = 1` for a positive target, else `-1`.
    Hinge,
    /// `max(0, 1 - y a)^2` with `y` as for `Hinge`.
    L2Hinge,
}

/// Parameters of the marginal cross entropies: a target unit adds no error once its output
/// reaches `one_target`, a non-target once it falls to `zero_target`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MarginalParameters {
    pub one_target: f32,
    pub zero_target: f32,
    pub one_scale: f32,
    pub zero_scale: f32,
}

impl Default for MarginalParameters {
    /// DSSTNE's defaults.
    fn default() -> Self {
        MarginalParameters {
            one_target: 0.9,
            zero_target: 0.1,
            one_scale: 1.0,
            zero_scale: 1.0,
        }
    }
}

/// DSSTNE's `DeltaBoost`: the output delta of a unit whose target is non-zero (a stored entry
/// of a sparse target) is scaled by `one`, of the others by `zero`, so that rare positives can
/// weigh more than the many zeros. DSSTNE scales the deltas alone and reports the unscaled
/// error; Destiny scales the error the same way, so that the reported loss is the one the
/// deltas descend.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DeltaBoost {
    pub one: f32,
    pub zero: f32,
}

impl Default for DeltaBoost {
    /// No boost.
    fn default() -> Self {
        DeltaBoost {
            one: 1.0,
            zero: 1.0,
        }
    }
}

impl DeltaBoost {
    /// The weight of a unit whose target is `t`.
    #[inline(always)]
    pub fn weight(self, t: f32) -> f32 {
        if t != 0.0 {
            self.one
        } else {
            self.zero
        }
    }
}

/// Weight initialisation of a layer's incoming weights and its bias.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WeightInit {
    pub scheme: WeightInitScheme,
    /// Multiplies the scheme's spread (or is the constant for `Constant`).
    pub scale: f32,
    /// Initial value of every bias.
    pub bias: f32,
}

impl Default for WeightInit {
    fn default() -> Self {
        WeightInit {
            scheme: WeightInitScheme::Xavier,
            scale: 1.0,
            bias: 0.0,
        }
    }
}

/// Weight initialisation schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WeightInitScheme {
    /// Uniform in `±scale * sqrt(6 / (fan_in + fan_out))`.
    Xavier,
    /// Uniform in `±scale * sqrt(3 / fan_in)`.
    CaffeXavier,
    /// Normal with standard deviation `scale`.
    Gaussian,
    /// Uniform in `±scale`.
    Uniform,
    /// Uniform in `±scale`, then each unit's incoming weights scaled to unit length.
    UnitBall,
    /// Normal with standard deviation `scale * sqrt(1 / fan_in)` (for SELU networks).
    Selu,
    /// Every weight equal to `scale`.
    Constant,
}

/// Sparseness penalty on a hidden layer: `beta * KL(p || mean activation)` per unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SparsenessPenalty {
    pub p: f32,
    pub beta: f32,
}

/// A connection that reuses the weights of another connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedWeight {
    /// The source layer of this layer's connection that reuses the weights.
    pub input_layer: String,
    /// The connection whose weights are reused: from `source_input_layer`...
    pub source_input_layer: String,
    /// ...to `source_output_layer`.
    pub source_output_layer: String,
    /// Use the weights transposed (tied autoencoders).
    pub transposed: bool,
}
