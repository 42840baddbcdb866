//! Learning-curve figures with plotters: validation exact match and training loss against
//! elapsed seconds or steps, one line per run. The font is embedded (DejaVu Sans), so no
//! system font library is needed.

use super::RunData;
use crate::error::UserError;
use crate::spec::Objective;
use crate::train::MetricsRow;
use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::combinators::BindKeyPoints;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// The x axis of a learning-curve plot (`--x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum XAxis {
    Seconds,
    #[value(name = "step")]
    Steps,
}

/// The image formats a plot can be written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImageFormat {
    Png,
    Svg,
}

/// Checks that a plot can be written at `path`: a `.png` or `.svg` name in a directory
/// that exists (a plot never creates directories).
pub fn check_path(path: &Path) -> Result<(), UserError> {
    image_format(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(UserError::input(
                path.display().to_string(),
                format!("the directory '{}' does not exist", dir.display()),
            ));
        }
    }
    Ok(())
}

fn image_format(path: &Path) -> Result<ImageFormat, UserError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_lowercase();
    match ext.as_str() {
        "png" => Ok(ImageFormat::Png),
        "svg" => Ok(ImageFormat::Svg),
        _ => Err(UserError::input(
            path.display().to_string(),
            "the plot file must end in .png or .svg",
        )),
    }
}

impl XAxis {
    fn value(self, r: &MetricsRow) -> f64 {
        match self {
            XAxis::Seconds => r.elapsed_s,
            XAxis::Steps => r.step as f64,
        }
    }

    fn label(self) -> &'static str {
        match self {
            XAxis::Seconds => "elapsed seconds",
            XAxis::Steps => "step",
        }
    }
}

pub(crate) fn plot_err<E: std::error::Error + Send + Sync>(
    e: DrawingAreaErrorKind<E>,
) -> anyhow::Error {
    anyhow!("drawing the plot: {e:?}")
}

pub(crate) fn register_font() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// Writes the curves of `runs` to a `.png` or `.svg` file, through a temporary file.
pub fn curves(runs: &[(String, Vec<MetricsRow>)], path: &Path, x: XAxis) -> Result<()> {
    register_font();
    let format = image_format(path)?;
    let tmp = temporary(path);
    let size = (1000, 720);
    match format {
        ImageFormat::Png => draw(BitMapBackend::new(&tmp, size).into_drawing_area(), runs, x)?,
        ImageFormat::Svg => draw(SVGBackend::new(&tmp, size).into_drawing_area(), runs, x)?,
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing '{}'", path.display()))?;
    Ok(())
}

/// Where a figure is drawn before it is renamed into place: named like every temporary
/// file, so that what a kill leaves is recognised and removed (`runner resume`).
pub(crate) fn temporary(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{}{name}", crate::artifacts::TMP_PREFIX))
}

/// Where the log-scale loss axis is labelled: 1, 2 and 5 times each power of ten in the
/// range, every integer multiple when that gives fewer than three, and evenly spaced round
/// values when even those do not (a range inside one decade, such as 1.2 to 2.3). Left to
/// plotters, such a range got no label at all.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = lo.log10().floor() as i32..=hi.log10().ceil() as i32;
    let within = |multiples: &[f64]| -> Vec<f64> {
        decades
            .clone()
            .flat_map(|d| {
                multiples
                    .iter()
                    .map(move |m| round_to(m * 10f64.powi(d), 3))
            })
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    };
    let ticks = within(&[1.0, 2.0, 5.0]);
    if ticks.len() >= 3 {
        return ticks;
    }
    let ticks = within(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    if ticks.len() >= 3 {
        return ticks;
    }
    (1..=4)
        .map(|i| round_to(lo + (hi - lo) * i as f64 / 5.0, 2))
        .collect()
}

/// `v` to `digits` significant digits.
fn round_to(v: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits - 1 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
}

/// A tick label with at most three significant digits and no trailing zeros: 0.001, 0.02,
/// 1.5, 20.
fn tick_label(v: f64) -> String {
    let v = round_to(v, 3);
    let decimals = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// The log-scale range of `value` (a loss) over every run's rows, with a margin.
fn loss_range(runs: &[(String, Vec<MetricsRow>)], value: fn(&MetricsRow) -> f64) -> (f64, f64) {
    let losses = runs
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(value))
        .filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = losses.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo.is_finite() {
        (lo * 0.8, hi * 1.25)
    } else {
        (1e-3, 10.0)
    }
}

/// The figure every run leaves in its directory.
pub fn history(rows: &[MetricsRow], label: &str, path: &Path) -> Result<()> {
    curves(&[(label.to_string(), rows.to_vec())], path, XAxis::Seconds)
}

pub fn compare(runs: &[RunData], path: &Path, x: XAxis) -> Result<()> {
    let series: Vec<(String, Vec<MetricsRow>)> = runs
        .iter()
        .filter(|r| !r.rows.is_empty())
        .map(|r| (r.label.clone(), r.rows.clone()))
        .collect();
    if series.is_empty() {
        bail!("no run has metrics to plot");
    }
    curves(&series, path, x)
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    runs: &[(String, Vec<MetricsRow>)],
    x: XAxis,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(plot_err)?;
    let (top, bottom) = root.split_vertically(360);
    let x_max = runs
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(|r| x.value(r)))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let axes = (x, x_max);
    let scored = runs
        .iter()
        .any(|(_, rows)| rows.iter().any(|r| r.val_exact.is_some()));
    if scored {
        exact_panel(&top, runs, axes)?;
    } else {
        // Language models and text runs have no exact match: their validation loss is the
        // curve to watch.
        let val = LossPanel {
            caption: "validation loss",
            column: "val_loss",
            value: |r| r.val_loss,
        };
        val.draw(&top, runs, axes, true)?;
    }
    let train = LossPanel {
        caption: "training loss",
        column: "train_loss",
        value: |r| r.train_loss,
    };
    train.draw(&bottom, runs, axes, !scored)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Validation exact match against `x`, with the legend.
fn exact_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    runs: &[(String, Vec<MetricsRow>)],
    (x, x_max): (XAxis, f64),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let mut exact = ChartBuilder::on(area)
        .caption("validation exact match", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max, 0.0..1.0)
        .map_err(plot_err)?;
    // Few light lines: at ten per interval they merged into a grey band.
    exact
        .configure_mesh()
        .x_desc(x.label())
        .y_desc("val_exact")
        .max_light_lines(4)
        .draw()
        .map_err(plot_err)?;
    for (i, (label, rows)) in runs.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let style = ShapeStyle::from(color).stroke_width(2);
        exact
            .draw_series(LineSeries::new(
                rows.iter().filter_map(|r| Some((x.value(r), r.val_exact?))),
                style,
            ))
            .map_err(plot_err)?
            .label(label.as_str())
            .legend(move |(px, py)| PathElement::new(vec![(px, py), (px + 20, py)], color));
    }
    // Exact match rises: the lower right is where the curves are not.
    legend(&mut exact, SeriesLabelPosition::LowerRight)
}

/// A loss on a log axis against `x`.
struct LossPanel {
    caption: &'static str,
    column: &'static str,
    value: fn(&MetricsRow) -> f64,
}

impl LossPanel {
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        runs: &[(String, Vec<MetricsRow>)],
        (x, x_max): (XAxis, f64),
        with_legend: bool,
    ) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let (lo, hi) = loss_range(runs, self.value);
        let mut loss = ChartBuilder::on(area)
            .caption(self.caption, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(
                0.0..x_max,
                (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
            )
            .map_err(plot_err)?;
        loss.configure_mesh()
            .x_desc(x.label())
            .y_desc(self.column)
            .y_label_formatter(&|v| tick_label(*v))
            .max_light_lines(4)
            .draw()
            .map_err(plot_err)?;
        for (i, (label, rows)) in runs.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let style = ShapeStyle::from(color).stroke_width(2);
            let points = rows
                .iter()
                .map(|r| (x.value(r), (self.value)(r)))
                .filter(|(_, v)| v.is_finite() && *v > 0.0);
            let series = loss
                .draw_series(LineSeries::new(points, style))
                .map_err(plot_err)?;
            if with_legend {
                series
                    .label(label.as_str())
                    .legend(move |(px, py)| PathElement::new(vec![(px, py), (px + 20, py)], color));
            }
        }
        if with_legend {
            legend(&mut loss, SeriesLabelPosition::UpperRight)?;
        }
        Ok(())
    }
}

fn legend<'a, DB: DrawingBackend + 'a, C: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, C>,
    position: SeriesLabelPosition,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

/// Best objective so far against trial number, with each complete trial as a point.
pub fn best_so_far(points: &[(u64, f64)], objective: Objective, path: &Path) -> Result<()> {
    let name = objective.name();
    register_font();
    let tmp = temporary(path);
    {
        let root = BitMapBackend::new(&tmp, (900, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let n = points.iter().map(|p| p.0).max().unwrap_or(0) as f64 + 1.0;
        let (lo, hi) = points
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p.1), hi.max(p.1))
            });
        let (lo, hi) = if lo.is_finite() && hi > lo {
            (lo, hi)
        } else {
            (lo - 0.5, lo + 0.5)
        };
        let pad = (hi - lo) * 0.05;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("best {name} over trials"), ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5..n, (lo - pad)..(hi + pad))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("trial")
            .y_desc(name)
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&(t, v)| Circle::new((t as f64, v), 4, BLUE.mix(0.6).filled())),
            )
            .map_err(plot_err)?;
        let mut best: Option<f64> = None;
        let line: Vec<(f64, f64)> = points
            .iter()
            .map(|&(t, v)| {
                let b = match best {
                    Some(b) if objective.loss(b) <= objective.loss(v) => b,
                    _ => v,
                };
                best = Some(b);
                (t as f64, b)
            })
            .collect();
        chart
            .draw_series(LineSeries::new(line, RED.stroke_width(2)))
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing '{}'", path.display()))?;
    Ok(())
}

/// Exact match against the share of weights pruned: straight after pruning (blue), and
/// after fine-tuning with the pruned weights held at zero (red), when there is one.
pub fn sparsity_curve(pruned: &[(f64, f64)], tuned: &[(f64, f64)], path: &Path) -> Result<()> {
    register_font();
    let tmp = temporary(path);
    {
        let root = BitMapBackend::new(&tmp, (900, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("exact match against sparsity", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..1.0, 0.0..1.02)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("share of weight-matrix entries set to zero")
            .y_desc("exact match (fresh examples)")
            .draw()
            .map_err(plot_err)?;
        for (points, colour, label) in [
            (pruned, BLUE, "pruned"),
            (tuned, RED, "pruned, then fine-tuned"),
        ] {
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(points.to_vec(), colour.stroke_width(2)))
                .map_err(plot_err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
                .map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerLeft)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing '{}'", path.display()))?;
    Ok(())
}

/// Parallel coordinates: one vertical axis per parameter (scaled to [0, 1] of its range),
/// one line per trial, coloured from red (worst) to green (best).
pub fn parallel(axes: &[String], lines: &[(Vec<f64>, f64)], path: &Path) -> Result<()> {
    register_font();
    let tmp = temporary(path);
    {
        let root = BitMapBackend::new(&tmp, (1000, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let k = axes.len().max(2) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "parameters against the objective (green = best)",
                ("sans-serif", 22),
            )
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(40)
            .build_cartesian_2d(-0.2..(k - 0.8), -0.05..1.05)
            .map_err(plot_err)?;
        let names = axes.to_vec();
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(axes.len())
            .x_label_formatter(&|x| {
                let i = x.round() as usize;
                if (x - i as f64).abs() < 0.01 {
                    names.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("position in range")
            .draw()
            .map_err(plot_err)?;
        for i in 0..axes.len() {
            chart
                .draw_series(LineSeries::new(
                    vec![(i as f64, 0.0), (i as f64, 1.0)],
                    BLACK.stroke_width(1),
                ))
                .map_err(plot_err)?;
        }
        let (lo, hi) = lines
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), l| {
                (lo.min(l.1), hi.max(l.1))
            });
        for (values, score) in lines {
            let t = if hi > lo {
                (score - lo) / (hi - lo)
            } else {
                1.0
            };
            let color = RGBColor((255.0 * (1.0 - t)) as u8, (180.0 * t) as u8, 40);
            let pts: Vec<(f64, f64)> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64, *v))
                .collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing '{}'", path.display()))?;
    Ok(())
}

/// Exact match by answer length (left) and by nesting depth (right), one line per curve
/// (a run's sets, or several runs), points where a group has examples; PNG or SVG.
pub fn suite(curves: &[crate::eval::suite::SuiteCurve], path: &Path) -> Result<()> {
    register_font();
    let format = image_format(path)?;
    let tmp = temporary(path);
    let size = (1100, 460);
    match format {
        ImageFormat::Png => draw_suite(BitMapBackend::new(&tmp, size).into_drawing_area(), curves)?,
        ImageFormat::Svg => draw_suite(SVGBackend::new(&tmp, size).into_drawing_area(), curves)?,
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing '{}'", path.display()))?;
    Ok(())
}

type Groups = Vec<(usize, usize, usize)>;
/// A panel of the suite figure: its area, the x axis, and which groups it draws.
type SuitePanel<'a, DB> = (
    &'a DrawingArea<DB, Shift>,
    &'static str,
    fn(&crate::eval::suite::SuiteCurve) -> &Groups,
);

fn draw_suite<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    curves: &[crate::eval::suite::SuiteCurve],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(plot_err)?;
    let (left, right) = root.split_horizontally(550);
    let panels: [SuitePanel<DB>; 2] = [
        (&left, "answer length (closers)", |c| &c.by_length),
        (&right, "nesting depth", |c| &c.by_depth),
    ];
    for (area, desc, groups) in panels {
        let x_max = curves
            .iter()
            .flat_map(|c| groups(c).iter().map(|g| g.0))
            .max()
            .unwrap_or(1) as f64
            + 0.5;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("exact match by {desc}"), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(50)
            .build_cartesian_2d(0.5..x_max, 0.0..1.02)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(desc)
            .y_desc("exact match")
            .max_light_lines(1)
            .x_labels((x_max as usize).clamp(2, 20))
            // Groups are whole numbers: no label between them.
            .x_label_formatter(&|v| {
                if v.fract().abs() < 1e-9 {
                    format!("{v:.0}")
                } else {
                    String::new()
                }
            })
            .draw()
            .map_err(plot_err)?;
        for (i, curve) in curves.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = groups(curve)
                .iter()
                .filter(|g| g.2 > 0)
                .map(|&(g, c, t)| (g as f64, c as f64 / t as f64))
                .collect();
            chart
                .draw_series(LineSeries::new(
                    points.clone(),
                    ShapeStyle::from(color).stroke_width(2),
                ))
                .map_err(plot_err)?
                .label(curve.label.as_str())
                .legend(move |(px, py)| PathElement::new(vec![(px, py), (px + 20, py)], color));
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, color.filled())),
                )
                .map_err(plot_err)?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_read_as_plain_numbers_over_any_range() {
        assert_eq!(
            log_ticks(8e-4, 1.5),
            [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
        );
        assert_eq!(log_ticks(0.3, 0.9), [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]);
        assert_eq!(log_ticks(1.2, 2.3).len(), 4);
        for (v, text) in [
            (0.001, "0.001"),
            (0.02, "0.02"),
            (1.5, "1.5"),
            (20.0, "20"),
            (0.30000000000000004, "0.3"),
            (2.2600001, "2.26"),
            (1e-6, "0.000001"),
        ] {
            assert_eq!(tick_label(v), text);
        }
    }

    /// The loss panel's axis labels as (y, text), read from the SVG the plot writes.
    fn loss_axis_labels(losses: &[f64]) -> Vec<(f64, String)> {
        let rows: Vec<MetricsRow> = losses
            .iter()
            .enumerate()
            .map(|(i, &train_loss)| MetricsRow {
                step: 10 * (i as u64 + 1),
                epoch: 1,
                elapsed_s: i as f64 + 1.0,
                samples: 640,
                train_loss,
                val_loss: train_loss,
                val_token_acc: 0.5,
                val_exact: Some(0.5),
                lr: 1e-3,
                stage: 0,
                reward: None,
                val_ppl: None,
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.svg");
        curves(&[("run".into(), rows)], &path, XAxis::Steps).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        // Labels of the y axis sit left of the plot (x < 66); the loss panel is the lower
        // half of the 720-pixel figure.
        svg.split("<text ")
            .skip(1)
            .filter_map(|t| {
                let attr = |name: &str| -> Option<f64> {
                    let rest = t.split(&format!("{name}=\"")).nth(1)?;
                    rest.split('"').next()?.parse().ok()
                };
                let text = t.split('>').nth(1)?.split('<').next()?.trim().to_string();
                let (x, y) = (attr("x")?, attr("y")?);
                (x < 66.0 && x > 20.0 && y > 380.0).then_some((y, text))
            })
            .collect()
    }

    #[test]
    fn loss_axes_have_readable_separate_labels() {
        for losses in [
            vec![2.3, 2.0, 1.7, 1.4, 1.2],             // inside one decade
            vec![1.1, 0.3, 0.05, 0.01, 0.002, 0.0012], // three decades
            vec![0.9, 0.8, 0.7, 0.65, 0.6],            // between 0.5 and 1
        ] {
            let labels = loss_axis_labels(&losses);
            assert!(labels.len() >= 3, "{losses:?}: {labels:?}");
            for (_, text) in &labels {
                let v: f64 = text.parse().unwrap_or_else(|_| panic!("label {text:?}"));
                assert!(v > 0.0 && text.len() <= 6, "{losses:?}: {text:?}");
            }
            let mut ys: Vec<f64> = labels.iter().map(|l| l.0).collect();
            ys.sort_by(f64::total_cmp);
            assert!(
                ys.windows(2).all(|w| w[1] - w[0] >= 12.0),
                "{losses:?}: labels overlap: {labels:?}"
            );
        }
    }
}
