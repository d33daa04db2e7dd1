//! Evaluation of recommendations: ranking metrics, the baselines every evaluation is
//! compared with, DSSTNE's recommendation files, and plots.

pub mod baselines;
pub mod metrics;
pub mod plot;
pub mod recs;
pub mod truth;

pub use metrics::{evaluate, Metrics};
pub use recs::{
    read_recommendations, write_recommendations, write_recommendations_parquet, Recommendations,
};
pub use truth::{evaluate_recommendations, read_truth, Truth};
