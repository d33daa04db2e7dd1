//! Evaluation of recommendations: ranking metrics, the baselines every evaluation is
//! compared with, DSSTNE's recommendation files, and plots.

pub mod baselines;
pub mod long_form;
pub mod plot;
pub mod recs;
pub mod truth;

/// The ranking metrics, shared with training's validation (`destiny_core::ranking`).
pub use destiny_core::ranking as metrics;
pub use destiny_core::ranking::{evaluate, Metrics};
pub use long_form::{long_form, write_top_k_parquet};
pub use recs::{read_recommendations, write_recommendations, write_top_k, Recommendations};
pub use truth::{evaluate_recommendations, read_truth, Truth};
