//! Charts and report pages of the lenses. [`write_png`] draws [`Panel`]s in a
//! grid into a PNG (plotters): lines, dots, error bars and histograms, with
//! optional log axes, vertical marker lines, a categorical x axis and a
//! legend, all in one palette and one style. [`Page`], [`esc`] and [`num`]
//! build the HTML pages that show them.
//!
//! Log axes are drawn by plotting log10 of the values on a linear axis and
//! labelling ticks with 10^v, which keeps one code path for every chart.

use std::error::Error;
use std::path::Path;

use headlab_analysis::plot::{fmt_tick, legend};
use plotters::coord::Shift;
use plotters::prelude::*;

pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// For reference lines such as thresholds.
pub(crate) const BLACK_ISH: RGBColor = RGBColor(60, 60, 60);

/// How a series is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Mark {
    /// A line, broken where values are missing.
    #[default]
    Line,
    /// A line with a dot on every point.
    LineDots,
    /// Dots only.
    Dots,
    /// A thin, faded line, for plots with many curves.
    Thin,
    /// The outline of a histogram; a linear y axis then starts at 0.
    Steps,
}

/// One series of a panel.
#[derive(Clone, Debug, Default)]
pub(crate) struct Series {
    /// Legend entry; an empty name keeps the series out of the legend.
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// ±err error bars, one per point (or empty).
    pub err: Vec<f64>,
    pub mark: Mark,
    /// `None`: the palette colour of the series' position in its panel.
    pub color: Option<RGBColor>,
    /// A reference curve: drawn, but the axis ranges come from the other series.
    pub overlay: bool,
}

impl Series {
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series { name: name.into(), points, ..Default::default() }
    }
    pub fn dots(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series { mark: Mark::Dots, ..Series::line(name, points) }
    }
    /// A histogram given by its bin edges (one more than bins) and densities.
    pub fn hist(name: impl Into<String>, edges: &[f64], density: &[f64]) -> Self {
        let points = density.iter().enumerate().flat_map(|(i, &d)| [(edges[i], d), (edges[i + 1], d)]).collect();
        Series { mark: Mark::Steps, ..Series::line(name, points) }
    }
    /// Dots on the line.
    pub fn marked(mut self) -> Self {
        self.mark = Mark::LineDots;
        self
    }
    pub fn thin(mut self) -> Self {
        self.mark = Mark::Thin;
        self
    }
    pub fn colored(mut self, color: RGBColor) -> Self {
        self.color = Some(color);
        self
    }
    pub fn with_err(mut self, err: Vec<f64>) -> Self {
        self.err = err;
        self
    }
    pub fn overlay(mut self) -> Self {
        self.overlay = true;
        self
    }
}

/// Pairs x and y values into points.
pub(crate) fn xy(x: &[f64], y: impl IntoIterator<Item = f64>) -> Vec<(f64, f64)> {
    x.iter().copied().zip(y).collect()
}

/// Where a panel's legend goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum LegendPos {
    #[default]
    UpperRight,
    UpperLeft,
    LowerRight,
    LowerLeft,
    None,
}

/// One chart.
#[derive(Clone, Debug, Default)]
pub(crate) struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
    /// Vertical marker lines (x, legend entry or "").
    pub vlines: Vec<(f64, String)>,
    /// Fixed y range instead of the data's; points outside it are not drawn.
    pub y_range: Option<(f64, f64)>,
    /// Categorical x axis: x values are indices into these labels.
    pub x_ticks: Option<Vec<String>>,
    pub legend: LegendPos,
}

/// Draw `panels` in a grid of `cols` columns into a PNG of `size` pixels.
pub(crate) fn write_png(path: &Path, panels: &[Panel], cols: usize, size: (u32, u32)) -> Result<(), String> {
    // Drawn beside the target and renamed over it: never a truncated PNG.
    let tmp = headlab_store::fsutil::partial_path(path);
    if let Err(e) = draw_png(&tmp, panels, cols, size) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    headlab_store::fsutil::commit_partial(path).map_err(|e| e.to_string())
}

fn draw_png(path: &Path, panels: &[Panel], cols: usize, size: (u32, u32)) -> Result<(), String> {
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let cols = cols.max(1);
    let areas = root.split_evenly((panels.len().div_ceil(cols).max(1), cols));
    for (panel, area) in panels.iter().zip(&areas) {
        draw_panel(panel, area).map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

/// Axis coordinate of a value: log10 on a log axis; `None` if it cannot be shown.
fn tf(v: f64, log: bool) -> Option<f64> {
    match log {
        true => (v > 0.0 && v.is_finite()).then(|| v.log10()),
        false => v.is_finite().then_some(v),
    }
}

/// A point in axis coordinates with its error bar (low, high).
#[derive(Clone, Copy)]
struct Pt {
    x: f64,
    y: f64,
    bar: Option<(f64, f64)>,
}

fn to_axes(s: &Series, log_x: bool, log_y: bool) -> Vec<Option<Pt>> {
    s.points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            let (x, y_axis) = (tf(x, log_x)?, tf(y, log_y)?);
            // A lower end at or below 0 on a log axis is drawn one decade down.
            let bar = s.err.get(i).and_then(|&e| Some((tf(y - e, log_y).unwrap_or(y_axis - 1.0), tf(y + e, log_y)?)));
            Some(Pt { x, y: y_axis, bar })
        })
        .collect()
}

/// Data range padded by 4%; (0, 1) without data.
fn padded(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi - lo < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        let pad = 0.04 * (hi - lo);
        (lo - pad, hi + pad)
    }
}

/// Number of tick positions to ask plotters for.
fn n_ticks(log: bool, span: f64) -> usize {
    // Enough positions that the powers of ten are among them.
    if log && span > 1.2 {
        20
    } else {
        10
    }
}

fn draw_panel(p: &Panel, area: &DrawingArea<BitMapBackend, Shift>) -> Result<(), Box<dyn Error>> {
    let (lx, ly) = (p.log_x, p.log_y);
    let pts: Vec<Vec<Option<Pt>>> = p.series.iter().map(|s| to_axes(s, lx, ly)).collect();
    let ranged = || p.series.iter().zip(&pts).filter(|(s, _)| !s.overlay).flat_map(|(_, v)| v.iter().flatten());
    let vline_xs = p.vlines.iter().filter_map(|v| tf(v.0, lx));
    let (x0, x1) = padded(ranged().map(|q| q.x).chain(vline_xs));
    let (mut y0, y1) = match p.y_range {
        Some((a, b)) => (tf(a, ly).unwrap_or(0.0), tf(b, ly).unwrap_or(1.0)),
        None => padded(ranged().flat_map(|q| {
            let (a, b) = q.bar.unwrap_or((q.y, q.y));
            [q.y, a, b]
        })),
    };
    if p.y_range.is_none() && !ly && p.series.iter().any(|s| s.mark == Mark::Steps) {
        y0 = 0.0;
    }

    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let x_fmt = |v: &f64| match &p.x_ticks {
        Some(t) => {
            let i = v.round();
            let on_tick = (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < t.len();
            if on_tick {
                t[i as usize].clone()
            } else {
                String::new()
            }
        }
        None => fmt_tick(*v, lx, x1 - x0),
    };
    chart
        .configure_mesh()
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .x_labels(p.x_ticks.as_ref().map_or(n_ticks(lx, x1 - x0), |t| t.len() * 4 + 1))
        .y_labels(n_ticks(ly, y1 - y0))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&|v| fmt_tick(*v, ly, y1 - y0))
        .light_line_style(WHITE.mix(0.0))
        .label_style(("sans-serif", 13))
        .draw()?;

    let mut any_label = false;
    let gray = BLACK.mix(0.5);
    for (x, label) in &p.vlines {
        let Some(x) = tf(*x, lx) else { continue };
        let s = chart.draw_series(LineSeries::new([(x, y0), (x, y1)], ShapeStyle::from(&gray).stroke_width(1)))?;
        if !label.is_empty() {
            any_label = true;
            s.label(label.as_str()).legend(move |(a, b)| PathElement::new([(a, b), (a + 18, b)], gray));
        }
    }

    let inside = |q: &Pt| q.x >= x0 && q.x <= x1 && q.y >= y0 - 1e-9 && q.y <= y1 + 1e-9;
    let cap = 0.01 * (x1 - x0);
    for (i, (s, pts)) in p.series.iter().zip(&pts).enumerate() {
        let pts: Vec<Option<Pt>> = pts.iter().map(|q| q.filter(inside)).collect();
        if pts.iter().all(Option::is_none) {
            continue;
        }
        let color = s.color.unwrap_or(PALETTE[i % PALETTE.len()]);
        let line = match s.mark {
            Mark::Thin => ShapeStyle::from(&color.mix(0.6)).stroke_width(1),
            _ => color.stroke_width(2),
        };
        if s.mark != Mark::Dots {
            // One line per run of drawable points.
            for run in pts.split(Option::is_none).filter(|r| !r.is_empty()) {
                chart.draw_series(LineSeries::new(run.iter().flatten().map(|q| (q.x, q.y)), line))?;
            }
        }
        let dot = match s.mark {
            Mark::Dots => 4,
            Mark::LineDots => 3,
            _ => 0,
        };
        if dot > 0 {
            chart.draw_series(pts.iter().flatten().map(|q| Circle::new((q.x, q.y), dot, color.filled())))?;
        }
        let bars = pts.iter().flatten().filter_map(|q| Some((q.x, q.bar?)));
        let bar_style = color.stroke_width(1);
        chart.draw_series(bars.flat_map(|(x, (a, b))| {
            let (a, b) = (a.max(y0), b.min(y1));
            [vec![(x, a), (x, b)], vec![(x - cap, a), (x + cap, a)], vec![(x - cap, b), (x + cap, b)]]
                .map(|path| PathElement::new(path, bar_style))
        }))?;
        if !s.name.is_empty() {
            any_label = true;
            let entry = chart.draw_series(std::iter::empty::<PathElement<(f64, f64)>>())?.label(s.name.as_str());
            if s.mark == Mark::Dots {
                entry.legend(move |(a, b)| Circle::new((a + 9, b), 4, color.filled()));
            } else {
                entry.legend(move |(a, b)| PathElement::new([(a, b), (a + 18, b)], line));
            }
        }
    }

    let pos = match p.legend {
        LegendPos::UpperRight => SeriesLabelPosition::UpperRight,
        LegendPos::UpperLeft => SeriesLabelPosition::UpperLeft,
        LegendPos::LowerRight => SeriesLabelPosition::LowerRight,
        LegendPos::LowerLeft => SeriesLabelPosition::LowerLeft,
        LegendPos::None => return Ok(()),
    };
    if any_label {
        legend(&mut chart, pos).border_style(BLACK.mix(0.3)).label_font(("sans-serif", 13)).draw()?;
    }
    Ok(())
}

/// Format a number compactly for tables.
pub(crate) fn num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x == 0.0 {
        return "0".into();
    }
    if x.abs() >= 1e4 || x.abs() < 1e-3 {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}
