//! The report's "Causal evidence" section, from `RUN/ablation.h5`
//! (`headlab ablate`): what ablating each head does to particles in contact
//! and to free particles, whether its off-self attention carries the
//! effect, how much a geometry-only pattern (the non-learned baseline) can
//! do, when over training the heads start to matter, and activation patching.

use std::fmt::Write as _;
use std::path::Path;

use headlab_analysis::ablation::{
    effect_sentence, fmt_est, fmt_ratio, plot, share_sentence, Ablation, Est, Kind, ROLLOUT_METRICS,
};
use headlab_store::analysis::Analysis;

use crate::{esc, ReportError, Result};

fn cell(a: &Ablation, s: usize, t: usize, k: usize) -> String {
    let c = a.onestep_est("contact_ratio", s, t, k);
    let f = a.onestep_est("free_ratio", s, t, k);
    let sel = a.onestep_est("selectivity", s, t, k);
    let mark = |e: Est| if e.excludes(1.0) { "" } else { " ≈" };
    format!(
        "contact {}{}<br>free {}{}<br>ratio {}{}",
        esc(&fmt_ratio(c)),
        mark(c),
        esc(&fmt_ratio(f)),
        mark(f),
        esc(&fmt_ratio(sel)),
        mark(sel)
    )
}

/// The section's HTML and one summary sentence (empty if nothing to say).
pub(crate) fn section(out: &Path, prefix: &str, an: &Analysis, series: &str, a: &Ablation) -> Result<(String, String)> {
    let mut h = String::new();
    let last = a.steps.len() - 1;
    let step = a.steps[last];
    let perr =
        |f: &str, e: headlab_analysis::AnalysisError| ReportError::Plot { path: out.join(f), msg: e.to_string() };
    let _ = writeln!(h, "<h3>Causal evidence (headlab ablate)</h3>");
    let _ = writeln!(
        h,
        "<p>Each head, each whole layer and the group <code>collision</code> ({}) is ablated on the probe's {} evaluation frames; every number is ablated / intact one-step error with a 95 % cluster-bootstrap interval over the {} evaluation trajectories the frames come from. “Contact” particles touch another particle during the predicted interval; the others are “free” (wall contacts count as free). “≈”: the interval includes 1 (no measurable change). The geometry-only patterns (geo-distance; geo-approach, whose distance after one frame of free flight stands in for time to contact) are the non-learned baselines: the share of the off-self damage they repair says how much of the head's job geometry alone can do (1 = all of it). The kinds answer different questions:</p><ul>",
        a.group().map(|g| g.heads.iter().map(|&(l, hh)| format!("L{l}.H{hh}")).collect::<Vec<_>>().join(", ")).unwrap_or_else(|| "no head met the collision-head bar".into()),
        a.n_eval_frames,
        a.n_clusters
    );
    for &k in &a.kinds {
        let _ = writeln!(h, "<li><b>{}</b>: {}</li>", k.name(), esc(k.question()));
    }
    h.push_str("</ul>\n");
    let ic = a
        .intact
        .get("contact_mse")
        .and_then(|v| v.get(last * 3..last * 3 + 3))
        .map(Est::from_slice)
        .unwrap_or(Est::NAN);
    let ifr =
        a.intact.get("free_mse").and_then(|v| v.get(last * 3..last * 3 + 3)).map(Est::from_slice).unwrap_or(Est::NAN);
    let _ = writeln!(h, "<p>Intact model at step {step}: one-step MSE (normalized units) {} for contact particles, {} for free ones.</p>", esc(&fmt_est(ic)), esc(&fmt_est(ifr)));

    // Sentences for the collision heads and the group.
    let mut focus: Vec<usize> = match a.group() {
        Some(g) => g.heads.iter().filter_map(|&(l, hh)| a.target_index(&format!("L{l}.H{hh}"))).collect(),
        None => vec![],
    };
    focus.extend(a.target_index("collision"));
    let mut summary = String::new();
    if !focus.is_empty() {
        h.push_str("<ul>\n");
        for &t in &focus {
            let mut lines = Vec::new();
            for k in [Kind::Zero, Kind::OffSelf] {
                if let Some(s) = a.kind_index(k).and_then(|_| effect_sentence(a, last, t, k)) {
                    lines.push(s);
                }
            }
            for k in [Kind::GeoDistance, Kind::GeoApproach, Kind::Oracle] {
                if let (Some(ki), Some(_)) = (a.kind_index(k), a.kind_index(Kind::OffSelf)) {
                    lines.push(share_sentence(k, a.onestep_est("share_of_offself", last, t, ki)));
                }
            }
            // The summary: the best head's and the group's off-self sentences.
            let best = headlab_analysis::heads::run_verdict(an, None)
                .and_then(|v| v.top_heads().first().map(|b| format!("L{}.H{}", b.layer, b.head)));
            if a.targets[t].name == "collision" || Some(&a.targets[t].name) == best.as_ref() {
                if let Some(l) = lines.iter().find(|l| {
                    l.contains("off-self attention multiplies") || l.contains("off-self attention does nothing")
                }) {
                    summary.push_str(if summary.is_empty() { "Causal test at step " } else { " " });
                    if summary == "Causal test at step " {
                        let _ = write!(summary, "{step}: ");
                    }
                    summary.push_str(l);
                }
            }
            let _ = writeln!(h, "<li><b>{}</b>: {}</li>", esc(&a.targets[t].name), esc(&lines.join(" ")));
        }
        h.push_str("</ul>\n");
    }

    // The table at the final step.
    h.push_str("<table><tr><th>ablated</th>");
    for k in &a.kinds {
        let _ = write!(h, "<th>{}</th>", k.name());
    }
    h.push_str("</tr>\n");
    for t in 0..a.targets.len() {
        let _ = write!(h, "<tr><td>{}</td>", esc(&a.targets[t].name));
        for k in 0..a.kinds.len() {
            let _ = write!(h, "<td>{}</td>", cell(a, last, t, k));
        }
        h.push_str("</tr>\n");
    }
    let _ = writeln!(h, "</table><p class=\"small\">At step {step}: per cell the one-step error of contact particles, of free particles (ablated / intact) and their ratio (&gt; 1: contact particles are hurt more), each with its 95 % interval.</p>");

    // Rollouts.
    if let Some(r) = &a.rollout {
        let _ = write!(h, "<p>Rollouts at step {} ({} validation trajectories from frame 0): mean squared position error with the heads ablated / intact, after 10 and 50 frames (intervals: bootstrap over rollouts; run for the collision heads, the layers and the group; oracle not run, a predicted state has no true contact partners).</p><table><tr><th>ablated</th>", r.step, r.n_rollouts);
        for k in &a.kinds {
            let _ = write!(h, "<th>{}</th>", k.name());
        }
        h.push_str("</tr>\n");
        let rows: Vec<usize> = if focus.is_empty() {
            (0..a.targets.len()).collect()
        } else {
            focus
                .iter()
                .copied()
                .chain(
                    a.targets
                        .iter()
                        .enumerate()
                        .filter(|(_, t)| !t.name.contains('.') && t.name != "collision")
                        .map(|(i, _)| i),
                )
                .collect()
        };
        for t in rows {
            let _ = write!(h, "<tr><td>{}</td>", esc(&a.targets[t].name));
            for k in 0..a.kinds.len() {
                let v: Vec<String> = ROLLOUT_METRICS.iter().map(|m| fmt_ratio(a.rollout_est(m, t, k))).collect();
                let _ = write!(h, "<td>10: {}<br>50: {}</td>", esc(&v[0]), esc(&v[1]));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
    }

    // Figures.
    let f = format!("{prefix}ablation_effects.png");
    plot::effects_figure(&out.join(&f), a, last).map_err(|e| perr(&f, e))?;
    let _ = writeln!(h, "<figure><img src=\"{}\" alt=\"ablation effects\"><figcaption>At step {step}, per ablation kind: for every head, layer and the collision group, the one-step error of particles in contact (red) and of free particles (blue), ablated / intact, with 95 % cluster-bootstrap intervals (log scale; the line is 1 = no change). A head that does collision work raises red well above blue under off-self ablation.</figcaption></figure>", esc(&f));
    if a.steps.len() >= 2 {
        let ts: Vec<usize> = if focus.is_empty() {
            (0..a.targets.len()).filter(|&t| a.targets[t].heads.len() == 1).collect()
        } else {
            focus.clone()
        };
        let f = format!("{prefix}ablation_training.png");
        plot::training_figure(&out.join(&f), a, an, series, &ts).map_err(|e| perr(&f, e))?;
        let _ = writeln!(h, "<figure><img src=\"{}\" alt=\"ablation over training\"><figcaption>Over training (checkpoints ablated: {}): the collision score of each head (top), the contact-particle error ratio under off-self (solid) and zero (dashed) ablation (middle), and the selectivity of the off-self ablation (bottom), with 95 % intervals. One sees when each head starts to matter and whether that follows its score.</figcaption></figure>", esc(&f), a.steps.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "));
    }
    if let Some(p) = &a.patching {
        let f = format!("{prefix}patching.png");
        plot::patching_figure(&out.join(&f), a).map_err(|e| perr(&f, e))?;
        let site_lines: Vec<String> = p
            .sites
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.ends_with("resid")
                    || a.group().is_some_and(|g| g.heads.iter().any(|&(l, hh)| format!("L{l}.H{hh}") == **s))
            })
            .map(|(i, s)| {
                format!(
                    "{s}: restores {}, destroys {}",
                    fmt_est(Est::from_slice(&p.denoise[i * 3..i * 3 + 3])),
                    fmt_est(Est::from_slice(&p.noise[i * 3..i * 3 + 3]))
                )
            })
            .collect();
        let _ = writeln!(
            h,
            "<p>Activation patching at step {} on {} counterfactual pairs: a clean frame where particles i and j touch during the interval, and a corrupted copy with j moved to the nearest grid spot where, at twice its speed, it would touch no particle and no wall during the interval (velocities unchanged). Patched at the query i only: a head's hook_z, or a layer's residual stream. The median change of i's predicted Δv between clean and corrupted is {:.3e} (median true |Δv| of i: {:.3e}). {}.</p>",
            p.step,
            p.n_pairs,
            p.median_gap,
            p.median_true_dv,
            esc(&site_lines.join("; "))
        );
        let _ = writeln!(h, "<figure><img src=\"{}\" alt=\"activation patching\"><figcaption>Per site, the share of the clean − corrupted difference in the query's predicted velocity change that patching restores (green: clean activation into the corrupted run) or destroys (orange: corrupted into clean): Σ (patched − corrupted)·(clean − corrupted) / Σ |clean − corrupted|² over pairs, with a 95 % bootstrap interval over pairs. The last layer's residual stream restores everything by construction (a check).</figcaption></figure>", esc(&f));
    }
    Ok((h, summary))
}
