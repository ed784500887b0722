//! The plotting set-up shared by the workspace's figures (plotters): the
//! legend box ([`legend`]), a chart's frame, its caption size, margin and
//! axis-label areas ([`Frame`]), and the x axis of training steps
//! ([`StepAxis`]). Used by analysis, report, probe and lens.

use plotters::chart::{MeshStyle, SeriesLabelStyle};
use plotters::coord::Shift;
use plotters::prelude::*;

/// The legend of `chart` at `pos` in the figures' style: a white box at 85 %
/// opacity with a black border. Settings chained after it replace the
/// style's (`.label_font(..)`, `.border_style(..)`); finish with `.draw()`.
pub fn legend<'a, 'b, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &'b mut ChartContext<'a, DB, CT>,
    pos: SeriesLabelPosition,
) -> SeriesLabelStyle<'a, 'b, DB, CT> {
    let mut style = chart.configure_series_labels();
    style.position(pos).background_style(WHITE.mix(0.85)).border_style(BLACK);
    style
}

/// A chart's frame, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Font size of the caption (sans-serif).
    pub caption: u32,
    /// Margin on every side.
    pub margin: u32,
    /// Height of the x (bottom) label area.
    pub x_label_area: u32,
    /// Width of the y (left) label area.
    pub y_label_area: u32,
}

/// The analysis figures' panels (ablation, lens physics): a caption of 18
/// pixels when there is one.
pub(crate) const PANEL: Frame = Frame { caption: 18, margin: 10, x_label_area: 35, y_label_area: 60 };

impl Frame {
    /// A chart builder on `area` with this frame and `caption` (sans-serif at
    /// [`Frame::caption`] pixels); an empty caption draws none and takes no room.
    pub fn on<'a, 'b, DB: DrawingBackend>(
        &self,
        area: &'a DrawingArea<DB, Shift>,
        caption: &str,
    ) -> ChartBuilder<'a, 'b, DB> {
        let mut b = ChartBuilder::on(area);
        if !caption.is_empty() {
            b.caption(caption, ("sans-serif", self.caption));
        }
        b.margin(self.margin).x_label_area_size(self.x_label_area).y_label_area_size(self.y_label_area);
        b
    }
}

/// A log x axis of training steps, plotted at step + 1 so that step 0 shows.
pub trait StepAxis {
    /// Names the x axis "`what` + 1" and labels its ticks in whole numbers.
    fn step_axis(&mut self, what: &str) -> &mut Self;
}

impl<X: Ranged<ValueType = f64>, Y: Ranged, DB: DrawingBackend> StepAxis for MeshStyle<'_, '_, X, Y, DB> {
    fn step_axis(&mut self, what: &str) -> &mut Self {
        self.x_desc(format!("{what} + 1")).x_label_formatter(&whole_number)
    }
}

fn whole_number(x: &f64) -> String {
    format!("{x:.0}")
}

/// Tick label at axis coordinate `v`; `span` is the axis length (in decades
/// on a log axis). A log axis spanning more than about one decade labels
/// only the powers of ten, a shorter one two significant digits; a linear
/// axis gets the decimals that its tick spacing (about span / 10) needs.
pub fn fmt_tick(v: f64, log: bool, span: f64) -> String {
    if log && span > 1.2 && (v - v.round()).abs() > 1e-6 {
        return String::new();
    }
    let (x, dec) = match log {
        true => {
            let x = round_sig(10f64.powf(v), 2);
            (x, 1 - x.abs().log10().floor() as i32)
        }
        false => (v, 1 - (span / 10.0).log10().floor() as i32),
    };
    let a = x.abs();
    if a == 0.0 || (!log && a < 1e-9 * span) {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{x:.0e}")
    } else {
        let s = format!("{x:.*}", dec.clamp(0, 6) as usize);
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

fn round_sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let unit = 10f64.powi(x.abs().log10().floor() as i32 - digits + 1);
    (x / unit).round() * unit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels() {
        // A log axis over three decades labels the powers of ten only.
        assert_eq!(fmt_tick(2.0, true, 3.0), "100");
        assert_eq!(fmt_tick(2.3, true, 3.0), "");
        assert_eq!(fmt_tick(-4.0, true, 3.0), "1e-4");
        assert_eq!(fmt_tick(-2.2, true, 1.0), "0.0063");
        // Linear: the decimals the tick spacing needs; float noise at zero reads 0.
        assert_eq!(fmt_tick(139.8, false, 1.0), "139.8");
        assert_eq!(fmt_tick(150.0, false, 200.0), "150");
        assert_eq!(fmt_tick(0.25, false, 1.0), "0.25");
        assert_eq!(fmt_tick(1e-17, false, 1.0), "0");
    }

    /// The frame reserves what it says: a chart built through it maps the
    /// data range onto the same pixels as one built by hand.
    #[test]
    fn frame_matches_the_builder_by_hand() {
        let mut svg = String::new();
        let area = SVGBackend::with_string(&mut svg, (400, 300)).into_drawing_area();
        let f = Frame { caption: 20, margin: 7, x_label_area: 30, y_label_area: 50 };
        let a = f.on(&area, "title").build_cartesian_2d(0f64..1.0, 0f64..1.0).unwrap();
        let b = ChartBuilder::on(&area)
            .caption("title", ("sans-serif", 20))
            .margin(7)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1.0, 0f64..1.0)
            .unwrap();
        assert_eq!(a.backend_coord(&(0.0, 0.0)), b.backend_coord(&(0.0, 0.0)));
        assert_eq!(a.backend_coord(&(1.0, 1.0)), b.backend_coord(&(1.0, 1.0)));
        // An empty caption takes no room: the plot reaches higher than with one.
        let c = f.on(&area, "").build_cartesian_2d(0f64..1.0, 0f64..1.0).unwrap();
        assert!(c.backend_coord(&(1.0, 1.0)).1 < a.backend_coord(&(1.0, 1.0)).1);
    }

    /// The legend box is white at 85 % with a black border, and an override
    /// chained after it wins.
    #[test]
    fn legend_draws_the_house_style_and_takes_overrides() {
        let draw = |background: Option<f64>| {
            let mut svg = String::new();
            {
                let area = SVGBackend::with_string(&mut svg, (300, 200)).into_drawing_area();
                let mut c = ChartBuilder::on(&area).build_cartesian_2d(0f64..1.0, 0f64..1.0).unwrap();
                c.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], RED))
                    .unwrap()
                    .label("a series")
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 10, y)], RED));
                let mut l = legend(&mut c, SeriesLabelPosition::UpperLeft);
                if let Some(o) = background {
                    l.background_style(WHITE.mix(o));
                }
                l.draw().unwrap();
                area.present().unwrap();
            }
            svg
        };
        let svg = draw(None);
        assert!(svg.contains(r##"opacity="0.85" fill="#FFFFFF" stroke="none""##), "{svg}");
        assert!(svg.contains(r##"opacity="1" fill="none" stroke="#000000""##), "{svg}");
        let svg = draw(Some(0.8));
        assert!(svg.contains(r##"opacity="0.8" fill="#FFFFFF""##) && !svg.contains(r#"opacity="0.85""#), "{svg}");
    }
}
