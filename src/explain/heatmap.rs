//! Heatmaps and the probe's scatter for `runner explain`, as PNG and SVG: a title, labelled
//! rows and columns (tokens, units or candidates), and a colour bar with its range.

use crate::compare::plot::{plot_err, register_font, temporary};
use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use std::path::{Path, PathBuf};

/// A matrix to draw: `values[row][col]`, with a label per row and per column.
pub struct Heatmap<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub rows: &'a [String],
    pub cols: &'a [String],
    pub values: &'a [Vec<f32>],
    /// The colour range; None: the values' own minimum and maximum.
    pub range: Option<(f32, f32)>,
}

/// A figure drawn the same way on any plotters backend.
trait Figure {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static;
}

impl Heatmap<'_> {
    /// Writes `<stem>.png` and `<stem>.svg`; returns both paths.
    pub fn write(&self, stem: &Path) -> Result<Vec<PathBuf>> {
        write_both(stem, self.size(), self)
    }

    /// Cells of at least 14 pixels (labels stay readable), within sensible bounds.
    fn size(&self) -> (u32, u32) {
        let w = (self.cols.len() as u32 * 22).clamp(480, 1600) + 260;
        let h = (self.rows.len() as u32 * 16).clamp(200, 2000) + 140;
        (w, h)
    }
}

impl Figure for Heatmap<'_> {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(plot_err)?;
        let (w, _) = root.dim_in_pixel();
        let (main, bar) = root.split_horizontally(w.saturating_sub(110));
        let (lo, hi) = self.range.unwrap_or_else(|| bounds(self.values));
        let (n_rows, n_cols) = (self.rows.len(), self.cols.len());
        let longest = self
            .rows
            .iter()
            .map(|r| r.chars().count())
            .max()
            .unwrap_or(1);
        let mut chart = ChartBuilder::on(&main)
            .caption(self.title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(60)
            .y_label_area_size((longest as u32 * 8 + 40).min(220))
            // A segmented 0..=n-1 has one cell per row or column.
            .build_cartesian_2d(
                (0..n_cols as i32 - 1).into_segmented(),
                (0..n_rows as i32 - 1).into_segmented(),
            )
            .map_err(plot_err)?;
        let (cols, rows) = (self.cols, self.rows);
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(self.x_desc)
            .y_desc(self.y_desc)
            .x_labels(n_cols)
            .y_labels(n_rows)
            .x_label_formatter(&|v| label(cols, v, false))
            .y_label_formatter(&|v| label(rows, v, true))
            .x_label_style(("sans-serif", 12))
            .y_label_style(("sans-serif", 12))
            .draw()
            .map_err(plot_err)?;
        let cells = self.values.iter().enumerate().flat_map(|(r, row)| {
            row.iter().enumerate().map(move |(c, &v)| {
                // Row 0 at the top.
                let (x, y) = (c as i32, (n_rows - 1 - r) as i32);
                let color = ViridisRGB.get_color_normalized(v, lo, hi.max(lo + 1e-9));
                Rectangle::new(
                    [
                        (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                    ],
                    color.filled(),
                )
            })
        });
        chart.draw_series(cells).map_err(plot_err)?;
        colour_bar(&bar, lo, hi)?;
        root.present().map_err(plot_err)?;
        Ok(())
    }
}

/// The label of the row or column a segment stands for (rows counted from the top).
fn label(labels: &[String], v: &SegmentValue<i32>, from_top: bool) -> String {
    let SegmentValue::CenterOf(i) = *v else {
        return String::new();
    };
    let i = i.max(0) as usize;
    let i = if from_top {
        labels.len().saturating_sub(1 + i)
    } else {
        i
    };
    labels.get(i).map(|l| drawable(l)).unwrap_or_default()
}

/// The label in characters the embedded DejaVu font has: it has no CJK glyphs, so the
/// default pairs' 【 and 】 (and their like) are drawn as doubled ASCII brackets.
pub fn drawable(label: &str) -> String {
    label
        .chars()
        .map(|c| match c {
            '【' | '〔' | '［' | '「' | '『' => "[[".to_string(),
            '】' | '〕' | '］' | '」' | '』' => "]]".to_string(),
            '《' | '〈' => "<<".to_string(),
            '》' | '〉' => ">>".to_string(),
            '（' => "((".to_string(),
            '）' => "))".to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn bounds(values: &[Vec<f32>]) -> (f32, f32) {
    let (lo, hi) = values
        .iter()
        .flatten()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if lo.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    }
}

fn colour_bar<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, lo: f32, hi: f32) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let hi = hi.max(lo + 1e-9);
    let mut bar = ChartBuilder::on(area)
        .margin_top(40)
        .margin_bottom(70)
        .margin_right(10)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..1.0, lo as f64..hi as f64)
        .map_err(plot_err)?;
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(6)
        .y_label_style(("sans-serif", 13))
        .y_label_formatter(&|v| format!("{v:.2}"))
        .draw()
        .map_err(plot_err)?;
    let steps = 100;
    let band = (hi - lo) as f64 / steps as f64;
    bar.draw_series((0..steps).map(|i| {
        let y = lo as f64 + i as f64 * band;
        let color = ViridisRGB.get_color_normalized(y as f32, lo, hi);
        Rectangle::new([(0.0, y), (1.0, y + band)], color.filled())
    }))
    .map_err(plot_err)?;
    Ok(())
}

/// Predicted against true values (the depth probe on held-out positions), with y = x.
pub struct Scatter<'a> {
    pub title: &'a str,
    pub points: &'a [(f64, f64)],
}

impl Scatter<'_> {
    pub fn write(&self, stem: &Path) -> Result<Vec<PathBuf>> {
        write_both(stem, (640, 560), self)
    }
}

impl Figure for Scatter<'_> {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(plot_err)?;
        let hi = self
            .points
            .iter()
            .flat_map(|p| [p.0, p.1])
            .fold(1.0f64, f64::max)
            + 0.5;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.5..hi, -0.5..hi)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("true nesting depth")
            .y_desc("probe's prediction")
            .max_light_lines(1)
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(LineSeries::new([(-0.5, -0.5), (hi, hi)], BLACK.mix(0.4)))
            .map_err(plot_err)?;
        // Depths are integers, so the points pile up in columns: faint dots show density.
        chart
            .draw_series(
                self.points
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 2, BLUE.mix(0.25).filled())),
            )
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
        Ok(())
    }
}

/// Draws `figure` into `<stem>.png` and `<stem>.svg`, each through a temporary file.
fn write_both(stem: &Path, size: (u32, u32), figure: &impl Figure) -> Result<Vec<PathBuf>> {
    register_font();
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let tmp = temporary(&png);
    figure.draw(BitMapBackend::new(&tmp, size).into_drawing_area())?;
    std::fs::rename(&tmp, &png).with_context(|| format!("writing '{}'", png.display()))?;
    let tmp = temporary(&svg);
    figure.draw(SVGBackend::new(&tmp, size).into_drawing_area())?;
    std::fs::rename(&tmp, &svg).with_context(|| format!("writing '{}'", svg.display()))?;
    Ok(vec![png, svg])
}
