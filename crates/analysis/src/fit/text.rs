//! Plain-text renderings of fits shared by the CLI and the report: the
//! table of every form, and sentences that say exactly what the data
//! support (degenerate fits named as such, ties as ties, and what every
//! interval is over).

use std::fmt::Write as _;

use super::seeds::{SeedStat, SeedSummary};
use super::{Estimate, Family, FitModel, ModelFit, SeriesFit, Verdict, FAMILY_MARGIN};

/// `v [lo, hi]`, `v [lo, –)` for an open side, or `v` without interval.
pub fn fmt_est(e: &Estimate, digits: usize) -> String {
    if !e.value.is_finite() {
        return "–".into();
    }
    let side = |x: f64, open: &str| if x.is_finite() { format!("{x:.digits$}") } else { open.to_string() };
    if e.lo.is_finite() || e.hi.is_finite() {
        format!("{:.digits$} [{}, {}]", e.value, side(e.lo, "–"), side(e.hi, "–"))
    } else {
        format!("{:.digits$}", e.value)
    }
}

/// Parameters of a fit as `name = value [lo, hi]; …`, or the reason it is
/// degenerate (its parameters are then not estimates and not printed).
pub fn params_text(f: &ModelFit) -> String {
    if f.is_degenerate() {
        return format!("degenerate: {}", f.degenerate.join("; "));
    }
    f.model
        .param_names()
        .iter()
        .zip(&f.params)
        .map(|(n, e)| format!("{n} = {}", fmt_est(e, if e.value.abs() >= 100.0 { 0 } else { 3 })))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Rows of the forms table: (form, family, ΔAICc, weight, parameters or degeneracy, notes).
pub fn table_rows(f: &SeriesFit) -> Vec<[String; 6]> {
    f.fits
        .iter()
        .map(|m| {
            [
                m.model.name().to_string(),
                m.model.family().name().to_string(),
                if m.is_degenerate() { "–".into() } else { format!("{:.1}", m.delta) },
                if m.is_degenerate() { "–".into() } else { format!("{:.2}", m.weight) },
                params_text(m),
                m.notes.join("; "),
            ]
        })
        .collect()
}

/// The forms table as aligned text.
pub fn table_text(f: &SeriesFit, indent: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{indent}{:<12} {:<17} {:>7} {:>6}  parameters [{:.0} % intervals over checkpoints of this run]",
        "form",
        "family",
        "ΔAICc",
        "weight",
        f.level * 100.0
    );
    for r in table_rows(f) {
        let _ = writeln!(
            s,
            "{indent}{:<12} {:<17} {:>7} {:>6}  {}{}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            if r[5].is_empty() { String::new() } else { format!("  ({})", r[5]) }
        );
    }
    s
}

/// One sentence on the test that matters for one fit: power-like against
/// exponential-like, with the evidence.
pub fn verdict_sentence(f: Option<&SeriesFit>, what: &str) -> String {
    let Some(f) = f else { return format!("The {what} has too few checkpoints to fit.") };
    let mut s = format!(
        "On the {what} ({} points from {:.0} to {:.0}; residual lag-1 autocorrelation {:.2}, so about {:.0} effectively independent points), ",
        f.n, f.t_from, f.t_to, f.rho, f.n_eff
    );
    let bp = f.best_of(Family::PowerLike);
    let be = f.best_of(Family::ExpLike);
    match f.verdict {
        Verdict::NoFit => {
            let missing = if bp.is_none() { "power-like" } else { "exponential-like" };
            let _ = write!(s, "no {missing} form gives a non-degenerate fit, so the two families cannot be compared");
        }
        v => {
            let (bp, be) = (bp.map(|m| m.model.name()).unwrap_or("–"), be.map(|m| m.model.name()).unwrap_or("–"));
            let what_wins = match v {
                Verdict::PowerLike => format!("power-like relaxation is supported over exponential/logistic: the best power-like form ({bp}) beats the best exponential-like one ({be}) by {:.1} AICc units", f.family_delta),
                Verdict::ExpLike => format!("exponential/logistic relaxation is supported over power-like: {be} beats {bp} by {:.1} AICc units", -f.family_delta),
                _ => format!("power-like and exponential-like relaxation are tied within {FAMILY_MARGIN} AICc units (best power-like {bp}, best exponential-like {be}, difference {:.1})", f.family_delta),
            };
            s.push_str(&what_wins);
            let _ = write!(
                s,
                " (Akaike weights: power-like {:.2}, exponential-like {:.2})",
                f.weight_power_like, f.weight_exp_like
            );
        }
    }
    let deg: Vec<String> = f.fits.iter().filter(|m| m.is_degenerate()).map(|m| m.model.name().to_string()).collect();
    if !deg.is_empty() {
        let _ = write!(s, "; degenerate, not estimates: {}", deg.join(", "));
    }
    for m in [FitModel::PowerOnset, FitModel::Power] {
        if let Some(a) = f.get(m).and_then(|x| x.exponent()) {
            let _ = write!(
                s,
                "; {} α = {} ({:.0} % profile-likelihood interval over checkpoints)",
                m.name(),
                fmt_est(&a, 2),
                f.level * 100.0
            );
        }
    }
    s.push('.');
    s
}

fn log_stat_text(st: &SeedStat, level: f64, on: &str, digits: usize) -> String {
    if st.n == 0 {
        return "no seed gave a usable value (degenerate or not bounded by the data)".into();
    }
    if st.lo.is_finite() {
        format!("geometric mean {:.digits$} [{:.digits$}, {:.digits$}] ({:.0} % t-interval on {on} over {} seeds; between-seed s.d. a factor {:.2})", st.mean, st.lo, st.hi, level * 100.0, st.n, st.sd)
    } else {
        format!("{:.digits$} (one seed; no interval)", st.mean)
    }
}

/// The seed-level summary in sentences.
pub fn seeds_text(s: &SeedSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Verdict over {} seeds (tail after onset): {} — {}.",
        s.n_seeds,
        s.tail.verdict.words(),
        s.tail.reason
    );
    let _ = writeln!(out, "Whole curve over seeds: {} — {}.", s.whole.verdict.words(), s.whole.reason);
    let _ = writeln!(out, "Emergence step: {}.", log_stat_text(&s.emergence, s.level, "ln t", 0));
    for (what, st, w) in [
        ("from the onset (power_onset α)", &s.alpha_onset, s.alpha_onset_weight),
        ("with a free origin (power α)", &s.alpha_free, s.alpha_free_weight),
    ] {
        let _ = writeln!(
            out,
            "Tail exponent {what}: {}; the form's mean Akaike weight on the tails is {w:.2}{}.",
            log_stat_text(st, s.level, "ln α", 2),
            if w < 0.05 {
                ", so the data reject this form and its exponent describes nothing they support"
            } else {
                ""
            }
        );
    }
    out
}
