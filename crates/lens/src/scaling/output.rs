//! Writing the scaling lens results: `scaling.h5` and an HTML page with plots.
//!
//! `scaling.h5` layout (kind `lens`, attribute `lens = "scaling"`, `config` =
//! TOML): attributes `options` (names), datasets `ns` [N], `spreads` [S], and
//! per metric an array [options, spreads, ns]: `frac_saturated`,
//! `jacobian_fro`, `effective_jacobian`, `entropy`, `entropy_norm`,
//! `max_weight`, `score_std`.

use std::path::Path;

use hdf5::types::VarLenUnicode;
use headlab_store::h5util::{set_str_attr, write_array, Ctx};
use headlab_store::{atomic_write, FileKind, StoreError};

use super::{ScalingError, ScalingPoint, ScalingReport};
use crate::plot::{num, write_png, Panel, Series};
use headlab_store::html::Page;

type Metric = (&'static str, &'static str, fn(&ScalingPoint) -> f64, bool);

const METRICS: [Metric; 7] = [
    ("frac_saturated", "fraction of saturated rows (max weight > 1 − ε)", |p| p.sat.frac_saturated, false),
    ("jacobian_fro", "mean ‖softmax Jacobian‖_F", |p| p.sat.jacobian_fro, true),
    ("effective_jacobian", "mean ‖J‖_F / c (sensitivity to raw q·k)", |p| p.effective_jacobian, true),
    ("entropy_norm", "mean entropy / ln N", |p| p.sat.entropy_norm, false),
    ("entropy", "mean entropy (nats)", |p| p.sat.entropy, false),
    ("max_weight", "mean largest weight", |p| p.sat.max_weight, false),
    ("score_std", "mean within-row std of scaled scores", |p| p.score_std, true),
];

/// Write `scaling.h5` atomically.
pub fn write_h5(path: &Path, r: &ScalingReport) -> Result<(), ScalingError> {
    let c = &r.config;
    let config_toml = c.to_toml()?;
    atomic_write(path, FileKind::Lens, |f| {
        let ctx = Ctx(path);
        set_str_attr(f, path, "lens", "scaling")?;
        set_str_attr(f, path, "config", &config_toml)?;
        let names: Vec<VarLenUnicode> = c.options.iter().map(|o| o.name().parse().unwrap_or_default()).collect();
        let a = ctx.h5("options", f.new_attr::<VarLenUnicode>().shape(names.len()).create("options"))?;
        ctx.h5("options", a.write_raw(&names))?;
        write_array(f, path, "ns", &c.ns.iter().map(|&n| n as u64).collect::<Vec<_>>(), &[c.ns.len()])?;
        write_array(f, path, "spreads", &c.spreads, &[c.spreads.len()])?;
        let shape = [c.options.len(), c.spreads.len(), c.ns.len()];
        for (name, _, get, _) in METRICS {
            let v: Vec<f64> = r.points.iter().map(get).collect();
            write_array(f, path, name, &v, &shape)?;
        }
        Ok::<(), StoreError>(())
    })?;
    Ok(())
}

fn out_err(path: &Path, msg: String) -> ScalingError {
    ScalingError::Output { path: path.display().to_string(), msg }
}

/// The plots and `index.html` in `dir`.
pub fn write_html(dir: &Path, r: &ScalingReport) -> Result<(), ScalingError> {
    let c = &r.config;
    let mut page = Page::new("headlab lens: attention score scaling");
    page.p(&format!(
        "Attention score scaling (Bernhard 2023, arXiv 2311.09406). Random queries q ~ N(0, {}² I_d) and keys k_j = exp(σ g_j) z_j, z_j ~ N(0, {}² I_d), g_j ~ N(0,1), d = {}; \
         {} query rows × {} independent key sets per point. Each option divides q·k by its c (below) before the softmax. \
         A row is saturated when its largest weight exceeds 1 − ε = {}. ‖J‖_F is the Frobenius norm of the softmax Jacobian diag(p) − ppᵀ; \
         ‖J‖_F / c is the pattern's sensitivity to the raw dot products.",
        c.query_std, c.key_std, c.d, c.queries, c.trials, 1.0 - c.eps
    ));
    page.table(
        &["option", "score"],
        &c.options.iter().map(|o| vec![o.name().to_string(), o.formula().to_string()]).collect::<Vec<_>>(),
    );
    for (name, desc, get, log_y) in METRICS {
        if name == "entropy" || name == "max_weight" {
            continue;
        }
        let file = format!("scaling_{name}.png");
        let p = dir.join(&file);
        let panels: Vec<Panel> = c
            .spreads
            .iter()
            .map(|&spread| {
                let series = c
                    .options
                    .iter()
                    .map(|&o| {
                        Series::line(
                            o.name(),
                            c.ns.iter().filter_map(|&n| r.get(o, spread, n).map(|pt| (n as f64, get(pt)))).collect(),
                        )
                        .marked()
                    })
                    .collect();
                Panel {
                    title: format!("σ = {spread}"),
                    x_label: "N (keys)".into(),
                    y_label: desc.into(),
                    log_x: true,
                    log_y,
                    series,
                    ..Default::default()
                }
            })
            .collect();
        write_png(&p, &panels, panels.len(), (420 * panels.len() as u32, 380)).map_err(|e| out_err(&p, e))?;
        page.img(&file, &format!("{desc} against the number of keys N, one panel per key-length spread σ."));
    }
    page.h(2, "Table");
    let rows: Vec<Vec<String>> = r
        .points
        .iter()
        .map(|p| {
            vec![
                p.option.name().into(),
                p.spread.to_string(),
                p.n.to_string(),
                num(p.sat.frac_saturated),
                num(p.sat.max_weight),
                num(p.sat.jacobian_fro),
                num(p.effective_jacobian),
                num(p.sat.entropy_norm),
                num(p.score_std),
            ]
        })
        .collect();
    page.table(
        &["option", "σ", "N", "saturated", "max weight", "‖J‖_F", "‖J‖_F / c", "entropy / ln N", "score std"],
        &rows,
    );
    Ok(page.write(&dir.join("index.html"))?)
}
