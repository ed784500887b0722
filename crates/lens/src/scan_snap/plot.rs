//! Small line/point chart helper (plotters, PNG) shared by the lenses.

use std::path::Path;

use plotters::prelude::*;

pub(crate) const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

#[derive(Clone)]
pub(crate) struct Series {
    pub name: String,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    pub color: RGBColor,
    /// Draw markers (true) or a line (false).
    pub points: bool,
    /// Thin, unlabelled line (for many-curve plots); only the first of a group should carry a name.
    pub thin: bool,
}

impl Series {
    pub fn line(name: impl Into<String>, x: Vec<f64>, y: Vec<f64>, color: RGBColor) -> Self {
        Series { name: name.into(), x, y, color, points: false, thin: false }
    }
    pub fn points(name: impl Into<String>, x: Vec<f64>, y: Vec<f64>, color: RGBColor) -> Self {
        Series { name: name.into(), x, y, color, points: true, thin: false }
    }
    pub fn thin(mut self) -> Self {
        self.thin = true;
        self
    }
}

pub(crate) const BLACK_ISH: RGBColor = RGBColor(60, 60, 60);

/// Where a panel's legend goes.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
#[allow(dead_code)]
pub(crate) enum LegendPos {
    #[default]
    UpperRight,
    UpperLeft,
    LowerRight,
    LowerLeft,
    None,
}

#[derive(Clone, Default)]
pub(crate) struct Panel {
    pub legend: LegendPos,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub log_x: bool,
    pub log_y: bool,
    /// Vertical marker lines (x, label).
    pub vlines: Vec<(f64, String)>,
    pub y_range: Option<(f64, f64)>,
    /// Categorical x axis: x values are indices into these labels.
    pub x_ticks: Option<Vec<String>>,
}

fn tf(v: f64, log: bool) -> Option<f64> {
    if !v.is_finite() {
        return None;
    }
    if log {
        (v > 0.0).then(|| v.log10())
    } else {
        Some(v)
    }
}

/// Tick label; on a log axis (`decades` = span in powers of ten) only powers
/// of ten are labelled when the axis spans more than one decade.
fn fmt_tick(v: f64, log: bool, decades: f64) -> String {
    if log && decades > 1.2 && (v - v.round()).abs() > 1e-6 {
        return String::new();
    }
    let v = if log { 10f64.powf(v) } else { v };
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.0e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Draw `panels` in a grid with `cols` columns into a PNG of `size` pixels.
pub(crate) fn draw(path: &Path, panels: &[Panel], cols: usize, size: (u32, u32)) -> Result<(), String> {
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let cols = cols.max(1);
    let rows = panels.len().div_ceil(cols);
    let areas = root.split_evenly((rows, cols));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        draw_panel(panel, area).map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

fn draw_panel(p: &Panel, area: &DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<(), Box<dyn std::error::Error>> {
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for s in &p.series {
        for (&x, &y) in s.x.iter().zip(&s.y) {
            if let (Some(x), Some(y)) = (tf(x, p.log_x), tf(y, p.log_y)) {
                xs.push(x);
                ys.push(y);
            }
        }
    }
    for (x, _) in &p.vlines {
        if let Some(x) = tf(*x, p.log_x) {
            xs.push(x);
        }
    }
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() {
            (0.0, 1.0)
        } else if hi - lo < 1e-12 {
            (lo - 0.5, hi + 0.5)
        } else {
            let pad = 0.04 * (hi - lo);
            (lo - pad, hi + pad)
        }
    };
    let (x0, x1) = range(&xs);
    let (y0, y1) = match p.y_range {
        Some((a, b)) => (tf(a, p.log_y).unwrap_or(0.0), tf(b, p.log_y).unwrap_or(1.0)),
        None => range(&ys),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let (lx, ly) = (p.log_x, p.log_y);
    let cat = p.x_ticks.clone();
    let x_fmt = move |v: &f64| match &cat {
        Some(t) => {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < t.len() {
                t[i as usize].clone()
            } else {
                String::new()
            }
        }
        None => fmt_tick(*v, lx, x1 - x0),
    };
    let n_x = match &p.x_ticks {
        Some(t) => t.len() * 4 + 1,
        None if lx && x1 - x0 > 1.2 => 20,
        None => 10,
    };
    chart
        .configure_mesh()
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .x_labels(n_x)
        .y_labels(if ly && y1 - y0 > 1.2 { 20 } else { 10 })
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&|v| fmt_tick(*v, ly, y1 - y0))
        .light_line_style(WHITE.mix(0.0))
        .label_style(("sans-serif", 13))
        .draw()?;
    for (x, label) in &p.vlines {
        if let Some(x) = tf(*x, p.log_x) {
            let style = ShapeStyle::from(&BLACK.mix(0.5)).stroke_width(1);
            let s = chart.draw_series(LineSeries::new(vec![(x, y0), (x, y1)], style))?;
            if !label.is_empty() {
                s.label(label.clone()).legend(move |(a, b)| PathElement::new(vec![(a, b), (a + 18, b)], BLACK.mix(0.5)));
            }
        }
    }
    let mut any_label = !p.vlines.iter().all(|v| v.1.is_empty());
    for s in &p.series {
        let pts: Vec<Option<(f64, f64)>> = s
            .x
            .iter()
            .zip(&s.y)
            .map(|(&x, &y)| Some((tf(x, lx)?, tf(y, ly)?)))
            .collect();
        let color = s.color;
        let anno = if s.points {
            let flat: Vec<(f64, f64)> = pts.iter().flatten().copied().collect();
            chart.draw_series(flat.into_iter().map(move |c| Circle::new(c, 4, color.filled())))?
        } else {
            // Break the line where values are missing.
            let width = if s.thin { 1 } else { 2 };
            let style = if s.thin { color.mix(0.6).stroke_width(width) } else { color.stroke_width(width) };
            let mut segs: Vec<Vec<(f64, f64)>> = vec![vec![]];
            for p in &pts {
                match p {
                    Some(c) => segs.last_mut().unwrap().push(*c),
                    None => {
                        if !segs.last().unwrap().is_empty() {
                            segs.push(vec![]);
                        }
                    }
                }
            }
            let mut it = segs.into_iter().filter(|s| !s.is_empty());
            let Some(first) = it.next() else { continue };
            for seg in it {
                chart.draw_series(LineSeries::new(seg, style))?;
            }
            chart.draw_series(LineSeries::new(first, style))?
        };
        if !s.name.is_empty() {
            any_label = true;
            anno.label(s.name.clone()).legend(move |(a, b)| PathElement::new(vec![(a, b), (a + 18, b)], color.stroke_width(2)));
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
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .position(pos)
            .draw()?;
    }
    Ok(())
}
