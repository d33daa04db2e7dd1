//! Training progress: a bar with loss and samples/s on a terminal, plain lines otherwise.

use destiny_core::train::{EpochReport, Progress};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// The display of one epoch.
pub struct EpochProgress {
    bar: Option<ProgressBar>,
    epoch: usize,
    epochs: usize,
}

impl EpochProgress {
    /// Starts the display of epoch `epoch` (0-based) of `epochs`.
    pub fn new(epoch: usize, epochs: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("epoch {prefix} {bar:30} {pos}/{len} samples  {msg}")
                    .expect("valid template"),
            );
            bar.set_prefix(format!("{}/{epochs}", epoch + 1));
            bar
        });
        EpochProgress { bar, epoch, epochs }
    }

    /// Shows the progress reported by training.
    pub fn update(&mut self, progress: &Progress) {
        if let Some(bar) = &self.bar {
            bar.set_length(progress.samples as u64);
            bar.set_position(progress.samples_done as u64);
            bar.set_message(format!(
                "loss {:.4}  {:.0} samples/s",
                progress.loss, progress.samples_per_second
            ));
        }
    }

    /// Ends the epoch with its summary line.
    pub fn finish(self, report: &EpochReport) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let summary = &report.summary;
        let mut validation = report
            .validation_loss
            .map_or(String::new(), |v| format!("  validation loss {v:.4}"));
        if let Some(figures) = &report.validation {
            validation += &format!(
                "  NDCG@100 {:.4}  Recall@20 {:.4}{}",
                figures.ndcg_at_100,
                figures.recall_at_20,
                if report.best { " (best)" } else { "" }
            );
        }
        let skipped = match summary.skipped_batches {
            0 => String::new(),
            n => format!("  ({n} batches skipped: loss not finite)"),
        };
        eprintln!(
            "epoch {}/{}: loss {:.4}{validation}  {:.1} s  {:.0} samples/s{skipped}",
            self.epoch + 1,
            self.epochs,
            summary.loss,
            summary.seconds,
            summary.samples as f64 / summary.seconds
        );
    }
}
