//! Small plotting helpers (plotters, PNG) shared by the ICL and scaling
//! lenses: line charts with error bars and optional log axes, histograms
//! against a reference curve, and a minimal HTML page builder.
//!
//! Log axes are drawn by plotting log10 of the values on a linear axis and
//! labelling ticks with 10^v, which keeps one code path for every chart.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

/// One line of a chart; `err` (same length as `points`, or empty) draws
/// ±err error bars.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub err: Vec<f64>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series { name: name.into(), points, err: Vec::new() }
    }
    pub fn with_err(mut self, err: Vec<f64>) -> Self {
        self.err = err;
        self
    }
}

/// Axes of a chart.
#[derive(Debug, Clone, Default)]
pub struct Axes {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
}

pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

fn tx(v: f64, log: bool) -> Option<f64> {
    if log {
        (v > 0.0 && v.is_finite()).then(|| v.log10())
    } else {
        v.is_finite().then_some(v)
    }
}

fn fmt_tick(v: f64, log: bool) -> String {
    let x = if log { 10f64.powf(v) } else { v };
    if log && x.abs() >= 1e-2 && x.abs() < 1e4 {
        // Two significant digits: 3.2, 10, 32, 100, 320, ...
        let mag = x.abs().log10().floor() as i32;
        let r = (x / 10f64.powi(mag - 1)).round() * 10f64.powi(mag - 1);
        let dec = (1 - mag).max(0) as usize;
        return format!("{r:.dec$}");
    }
    if x == 0.0 {
        "0".into()
    } else if x.abs() >= 1e4 || x.abs() < 1e-2 {
        format!("{x:.0e}")
    } else if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        lo -= 0.5;
        hi += 0.5;
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

type DResult = Result<(), String>;

/// Draw a line chart into an area.
pub fn draw_lines<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, axes: &Axes, series: &[Series]) -> DResult {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let pts: Vec<Vec<(f64, f64, Option<(f64, f64)>)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .enumerate()
                .filter_map(|(i, &(x, y))| {
                    let (x, y) = (tx(x, axes.log_x)?, tx(y, axes.log_y)?);
                    let bar = s.err.get(i).and_then(|&err| {
                        let (ry, _) = (s.points[i].1, 0);
                        let lo = tx(ry - err, axes.log_y).unwrap_or(y - 1.0);
                        let hi = tx(ry + err, axes.log_y)?;
                        Some((lo, hi))
                    });
                    Some((x, y, bar))
                })
                .collect()
        })
        .collect();
    let (x0, x1) = range(pts.iter().flatten().map(|p| p.0));
    let (y0, y1) = range(pts.iter().flatten().flat_map(|p| {
        let (a, b) = p.2.unwrap_or((p.1, p.1));
        [p.1, a, b]
    }));
    let mut chart = ChartBuilder::on(area)
        .caption(&axes.title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(e)?;
    let (lx, ly) = (axes.log_x, axes.log_y);
    chart
        .configure_mesh()
        .x_desc(axes.x_label.as_str())
        .y_desc(axes.y_label.as_str())
        .x_label_formatter(&|v| fmt_tick(*v, lx))
        .y_label_formatter(&|v| fmt_tick(*v, ly))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(e)?;
    for (i, (s, p)) in series.iter().zip(&pts).enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(p.iter().map(|q| (q.0, q.1)), c.stroke_width(2)))
            .map_err(e)?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(p.iter().map(|q| Circle::new((q.0, q.1), 3, c.filled()))).map_err(e)?;
        chart
            .draw_series(p.iter().filter_map(|q| q.2.map(|(a, b)| PathElement::new(vec![(q.0, a), (q.0, b)], c.stroke_width(1)))))
            .map_err(e)?;
        let cap = 0.01 * (x1 - x0);
        chart
            .draw_series(p.iter().filter_map(|q| q.2.map(|(a, b)| (q.0, a, b))).flat_map(|(x, a, b)| {
                [PathElement::new(vec![(x - cap, a), (x + cap, a)], c.stroke_width(1)), PathElement::new(vec![(x - cap, b), (x + cap, b)], c.stroke_width(1))]
            }))
            .map_err(e)?;
    }
    if series.len() > 1 || series.first().is_some_and(|s| !s.name.is_empty()) {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.6))
            .border_style(BLACK.mix(0.5))
            .label_font(("sans-serif", 12))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(e)?;
    }
    Ok(())
}

/// Draw histograms (as step lines, densities) plus optional reference curves.
/// `hists`: (name, bin edges, densities); `refs`: (name, points).
pub fn draw_hists<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    axes: &Axes,
    hists: &[(String, Vec<f64>, Vec<f64>)],
    refs: &[(String, Vec<(f64, f64)>)],
) -> DResult {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let steps: Vec<Vec<(f64, f64)>> = hists
        .iter()
        .map(|(_, edges, dens)| {
            let mut v = Vec::new();
            for (i, &d) in dens.iter().enumerate() {
                if let Some(y) = tx(d, axes.log_y) {
                    v.push((edges[i], y));
                    v.push((edges[i + 1], y));
                }
            }
            v
        })
        .collect();
    let refs_t: Vec<Vec<(f64, f64)>> =
        refs.iter().map(|(_, p)| p.iter().filter_map(|&(x, y)| Some((x, tx(y, axes.log_y)?))).collect()).collect();
    let (x0, x1) = range(steps.iter().flatten().map(|p| p.0));
    let (mut y0, y1) = range(steps.iter().flatten().map(|p| p.1));
    if !axes.log_y {
        y0 = 0.0;
    }
    let mut chart = ChartBuilder::on(area)
        .caption(&axes.title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(e)?;
    let ly = axes.log_y;
    chart
        .configure_mesh()
        .x_desc(axes.x_label.as_str())
        .y_desc(axes.y_label.as_str())
        .y_label_formatter(&|v| fmt_tick(*v, ly))
        .x_label_formatter(&|v| fmt_tick(*v, false))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(e)?;
    for (i, ((name, _, _), s)) in hists.iter().zip(&steps).enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(s.iter().copied(), c.stroke_width(2)))
            .map_err(e)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    for (i, ((name, _), p)) in refs.iter().zip(&refs_t).enumerate() {
        let c = PALETTE[(hists.len() + i) % PALETTE.len()];
        let clipped: Vec<(f64, f64)> = p.iter().copied().filter(|q| q.1 >= y0 && q.0 >= x0 && q.0 <= x1).collect();
        chart
            .draw_series(LineSeries::new(clipped, ShapeStyle::from(&c).stroke_width(2)))
            .map_err(e)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.6))
        .border_style(BLACK.mix(0.5))
        .label_font(("sans-serif", 12))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(e)?;
    Ok(())
}

/// A PNG with `panels` side by side; `draw(i, area)` fills panel i.
pub fn png_panels(
    path: &Path,
    panels: usize,
    panel_w: u32,
    h: u32,
    mut draw: impl FnMut(usize, &DrawingArea<BitMapBackend, Shift>) -> DResult,
) -> DResult {
    let root = BitMapBackend::new(path, (panel_w * panels.max(1) as u32, h)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let areas = root.split_evenly((1, panels.max(1)));
    for (i, a) in areas.iter().enumerate() {
        draw(i, a)?;
    }
    root.present().map_err(|e| format!("{}: {e}", path.display()))
}

/// Minimal HTML escaping.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// An HTML page under construction.
#[derive(Default)]
pub struct Page {
    body: String,
}

impl Page {
    pub fn h(&mut self, level: u8, text: &str) {
        self.body += &format!("<h{level}>{}</h{level}>\n", esc(text));
    }
    /// Raw HTML (the caller escapes).
    pub fn raw(&mut self, html: &str) {
        self.body += html;
        self.body.push('\n');
    }
    pub fn p(&mut self, text: &str) {
        self.body += &format!("<p>{}</p>\n", esc(text));
    }
    pub fn img(&mut self, file: &str, alt: &str) {
        self.body += &format!("<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>\n", esc(file), esc(alt), esc(alt));
    }
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        self.body += "<table><tr>";
        for h in header {
            self.body += &format!("<th>{}</th>", esc(h));
        }
        self.body += "</tr>\n";
        for r in rows {
            self.body += "<tr>";
            for c in r {
                self.body += &format!("<td>{}</td>", esc(c));
            }
            self.body += "</tr>\n";
        }
        self.body += "</table>\n";
    }
    pub fn render(&self, title: &str) -> String {
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
body{{font-family:sans-serif;max-width:1300px;margin:2em auto;color:#222}}\
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
th{{background:#f0f0f0}}img{{max-width:100%;border:1px solid #ddd}}figure{{margin:1em 0}}\
figcaption{{font-size:90%;color:#555}}code{{background:#f4f4f4;padding:0 3px}}</style></head>\n<body>\n<h1>{t}</h1>\n{b}</body></html>\n",
            t = esc(title),
            b = self.body
        )
    }
}

/// Format a number compactly for tables.
pub fn num(x: f64) -> String {
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
