//! The collision-head bar against attention with known content: built from
//! distance alone it must fail (and sit at ≈ 0.5 at matched distance);
//! knowing the true future contacts it must pass and sit at the ballistic
//! ceiling. And on the demo's own scene, at a tiny size, the distance
//! baseline fails the bar while its score alone would have passed the old one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)] // a test may stop at the first failure

use headlab_analysis::baselines::{
    all_head_controls, baseline_table, floor_ceiling, softmax_attention, Baseline, FrameKin, PairTable,
};
use headlab_analysis::evalset::{choose_eval_frames, frame_geoms, pair_table};
use headlab_analysis::heads::{bar, meets_bar};
use headlab_analysis::logistic::BaseModel;
use headlab_analysis::metrics::{default_g_edges, ContactSet, FrameGeom, ProbeAccum};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// Random disks in a unit box with random velocities; "contact during the
/// interval" is exactly the ballistic prediction, so ballistics is a perfect
/// predictor here (ceiling 1).
fn synthetic(frames: usize, seed: u64) -> (Vec<(Vec<f32>, Vec<f32>, Vec<f32>)>, Vec<FrameGeom>) {
    let n = 16;
    let dt = 0.05;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut kin = Vec::new();
    let mut geoms = Vec::new();
    for _ in 0..frames {
        let pos: Vec<f32> = (0..2 * n).map(|_| rng.gen_range(0.0..1.0)).collect();
        let vel: Vec<f32> = (0..2 * n).map(|_| rng.sample::<f64, _>(StandardNormal) as f32).collect();
        let radii = vec![0.05f32; n];
        let mut cs = ContactSet::empty(n);
        for i in 0..n {
            for j in i + 1..n {
                let x = [(pos[2 * j] - pos[2 * i]) as f64, (pos[2 * j + 1] - pos[2 * i + 1]) as f64];
                let v = [(vel[2 * j] - vel[2 * i]) as f64, (vel[2 * j + 1] - vel[2 * i + 1]) as f64];
                if headlab_analysis::baselines::ballistic(&x, &v, 0.1, dt).dmin < 0.1 {
                    cs.insert(i, j);
                }
            }
        }
        geoms.push(FrameGeom::new(&pos, &radii, 2, 1.0, cs));
        kin.push((pos, vel, radii));
    }
    (kin, geoms)
}

fn table(kin: &[(Vec<f32>, Vec<f32>, Vec<f32>)], geoms: &[FrameGeom]) -> PairTable {
    let k: Vec<FrameKin<'_>> = kin
        .iter()
        .map(|(p, v, r)| FrameKin { positions: p, velocities: v, radii: r, dim: 2, frame_dt: 0.05 })
        .collect();
    PairTable::new(&k, geoms)
}

#[test]
fn distance_attention_fails_and_oracle_attention_passes_at_the_ceiling() {
    let (kin, geoms) = synthetic(300, 1);
    let t = table(&kin, &geoms);
    let base = BaseModel::fit(&t);
    let edges = default_g_edges();
    let bt = baseline_table(&t, &geoms, &edges, &base);
    let (floor, ceiling) = floor_ceiling(&bt);
    assert!((ceiling - 1.0).abs() < 1e-12, "ballistics is the truth here: {ceiling}");
    assert!((floor - 0.5).abs() < 0.06, "distance at matched distance: {floor}");
    let n = 16;
    // Head 0: softmax of minus distance with a steep temperature, self 0.9.
    // Head 1: the oracle — its off-self attention on the true partners.
    let dist = softmax_attention(n, &t.baseline_scores(Baseline::Distance), 40.0);
    let mut acc = ProbeAccum::new(1, 2, &edges);
    for (f, g) in geoms.iter().enumerate() {
        let mut att = vec![0f32; 2 * n * n];
        for i in 0..n {
            let deg = g.interval.degree(i);
            for j in 0..n {
                att[i * n + j] = if i == j { 0.9 } else { 0.1 * dist[f][i * n + j] };
                att[n * n + i * n + j] = if i == j {
                    0.9
                } else if deg == 0 {
                    0.1 / (n - 1) as f32
                } else if g.interval.contains(i, j) {
                    0.1 / deg as f32
                } else {
                    0.0
                };
            }
        }
        acc.add_layer_frame(0, &att, g);
    }
    let m = acc.finish();
    let c = all_head_controls(&acc, &t, &base, floor, ceiling, 0);
    // Distance-built attention: the self-excluded score is high — the old
    // bar's score part passes — but it knows nothing beyond distance.
    eprintln!(
        "distance head: score {:.3}, matched {:.3} ± {:.3}; oracle: score {:.3}, matched {:.3}",
        m[0].overlap.excl_norm, c[0].matched.value, c[0].matched.se, m[1].overlap.excl_norm, c[1].matched.value
    );
    assert!(m[0].overlap.excl_norm >= bar::SCORE_MIN, "{}", m[0].overlap.excl_norm);
    assert!((c[0].matched.value - 0.5).abs() < 0.06, "{:?}", c[0].matched);
    assert!(c[0].position.abs() < 0.15, "{}", c[0].position);
    assert!(!meets_bar(m[0].overlap.excl_norm, c[0].matched.value));
    // The oracle passes and sits at the ceiling.
    assert!(meets_bar(m[1].overlap.excl_norm, c[1].matched.value), "{:?} {:?}", m[1].overlap, c[1].matched);
    assert!((c[1].matched.value - 1.0).abs() < 1e-9 && (c[1].position - 1.0).abs() < 1e-9);
    // Contacts come from approaching pairs, so the oracle prefers them (its
    // zero weight on every non-partner ties approaching and receding ones,
    // which keeps the selectivity well below 1).
    assert!(c[1].approach.value > 0.5 + 3.0 * c[1].approach.se, "contacts approach: {:?}", c[1].approach);
    assert!(c[1].incr.lo > 0.0, "{:?}", c[1].incr);
    // The softmax baselines as attention: distance fails the bar; ballistics
    // knows more at matched distance than distance does (but less than as a
    // raw score: a row with no partner must still put its mass on someone).
    let row = |b: Baseline, k: &str| bt[b.name()][k];
    assert!(!meets_bar(
        row(Baseline::Distance, "softmax_score_excl_norm_overlap"),
        row(Baseline::Distance, "softmax_auroc_matched")
    ));
    let (sd, sb) =
        (row(Baseline::Distance, "softmax_auroc_matched"), row(Baseline::Ballistic, "softmax_auroc_matched"));
    eprintln!("softmax attention, matched AUROC: distance {sd:.3}, ballistic {sb:.3}");
    assert!(sb > sd + 0.05, "ballistic {sb} vs distance {sd}");
}

#[test]
fn distance_baseline_fails_the_bar_on_the_demo_scene() {
    let text = include_str!("../../../scenes/demo.toml");
    let scene = headlab_sim::Scene::from_toml_str(text, "scenes/demo.toml").unwrap();
    let ds =
        headlab_sim::simulate(&scene, headlab_sim::SimOptions { n_traj: 6, n_frames: 40, seed: 3, threads: 1 }, None)
            .unwrap();
    let trajs: Vec<usize> = (0..ds.n_traj).collect();
    let frames = choose_eval_frames(&ds, &trajs, 128, 0);
    let geoms = frame_geoms(&ds, &frames, 1.0);
    let t = pair_table(&ds, &frames, &geoms);
    let base = BaseModel::fit(&t);
    let bt = baseline_table(&t, &geoms, &default_g_edges(), &base);
    let (floor, ceiling) = floor_ceiling(&bt);
    let d = &bt[Baseline::Distance.name()];
    eprintln!("demo scene: {bt:#?}");
    // Over all pairs distance is an excellent predictor of contact…
    assert!(d["auroc_all"] > 0.9, "{}", d["auroc_all"]);
    // …its softmax attention scores far above chance…
    assert!(d["softmax_score_excl_norm_overlap"] > 0.3, "{}", d["softmax_score_excl_norm_overlap"]);
    // …but at matched distance it knows nothing more, and fails the bar.
    assert!((floor - 0.5).abs() < 0.1, "{floor}");
    assert!(!meets_bar(d["softmax_score_excl_norm_overlap"], d["softmax_auroc_matched"]));
    assert!(ceiling > floor + 0.2, "ballistics knows more at matched distance: {ceiling} vs {floor}");
}
