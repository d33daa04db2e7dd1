//! A PNG of the metrics against K: one panel per metric, one line per system.

use crate::metrics::Metrics;
use destiny_core::error::{Error, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// A plotted metric: its name and how to read it.
type Metric = (&'static str, fn(&Metrics) -> f64);

/// Where a TrueType font is looked for (DejaVu Sans, Debian's `fonts-dejavu-core`), unless
/// `DESTINY_FONT` names one.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Registers a font with plotters once (it keeps a `'static` reference).
fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let candidates: Vec<String> = std::env::var("DESTINY_FONT")
                .ok()
                .into_iter()
                .chain(FONT_PATHS.iter().map(|p| p.to_string()))
                .collect();
            let bytes = candidates
                .iter()
                .find_map(|p| std::fs::read(p).ok())
                .ok_or_else(|| format!("no font found for the plot (tried {}; install fonts-dejavu-core or set DESTINY_FONT)", candidates.join(", ")))?;
            plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
                .map_err(|_| "the font could not be read".to_string())
        })
        .clone()
        .map_err(Error::Data)
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Draws precision, recall, NDCG and MAP against K for each `(system, metrics)` into a PNG
/// of `width x height` pixels, written atomically.
pub fn plot_metrics(
    path: &Path,
    systems: &[(String, Vec<Metrics>)],
    width: u32,
    height: u32,
) -> Result<()> {
    register_font()?;
    let drawing_error = |e: &dyn std::fmt::Display| {
        Error::Data(format!("{}: drawing failed ({e})", path.display()))
    };
    destiny_core::atomic::write_path(path, |temporary| {
        // The temporary file keeps the .png extension, which tells plotters the format.
        let root = BitMapBackend::new(temporary, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| drawing_error(&e))?;
        let panels = root.split_evenly((2, 2));
        let metrics: [Metric; 4] = [
            ("Precision@K", |m| m.precision),
            ("Recall@K", |m| m.recall),
            ("NDCG@K", |m| m.ndcg),
            ("MAP@K", |m| m.map),
        ];
        let max_k = systems
            .iter()
            .flat_map(|(_, m)| m.iter().map(|m| m.k))
            .max()
            .unwrap_or(1);
        for (panel, (title, value)) in panels.iter().zip(metrics) {
            let top = systems
                .iter()
                .flat_map(|(_, m)| m.iter().map(value))
                .fold(0.0f64, f64::max);
            let mut chart = ChartBuilder::on(panel)
                .caption(title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(32)
                .y_label_area_size(48)
                .build_cartesian_2d(0usize..max_k + 1, 0.0..(top * 1.1).max(0.01))
                .map_err(|e| drawing_error(&e))?;
            chart
                .configure_mesh()
                .x_desc("K")
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(|e| drawing_error(&e))?;
            for (s, (name, points)) in systems.iter().enumerate() {
                let color = COLORS[s % COLORS.len()];
                let series: Vec<(usize, f64)> = points.iter().map(|m| (m.k, value(m))).collect();
                chart
                    .draw_series(LineSeries::new(series.clone(), color.stroke_width(2)))
                    .map_err(|e| drawing_error(&e))?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(
                        series
                            .into_iter()
                            .map(|p| Circle::new(p, 3, color.filled())),
                    )
                    .map_err(|e| drawing_error(&e))?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(|e| drawing_error(&e))?;
        }
        root.present().map_err(|e| drawing_error(&e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_of_the_asked_size() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("metrics.png");
        let metrics = |scale: f64| -> Vec<Metrics> {
            [10, 20, 50]
                .iter()
                .map(|&k| Metrics {
                    k,
                    precision: 0.1 * scale,
                    recall: 0.2 * scale,
                    ndcg: 0.3 * scale,
                    map: 0.1,
                    users: 5,
                    short_lists: 0,
                })
                .collect()
        };
        plot_metrics(
            &path,
            &[
                ("model".into(), metrics(1.0)),
                ("baseline".into(), metrics(0.5)),
            ],
            800,
            600,
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // The IHDR chunk holds width and height, big-endian.
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 800);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 600);
        assert_eq!(std::fs::read_dir(folder.path()).unwrap().count(), 1);
    }
}
