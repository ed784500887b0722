//! The side panel (egui): playback, color mode, the head grid, the
//! checkpoint slider, the color bar, what the query attends to, frame time
//! and the keyboard shortcuts.

use bevy::prelude::*;
use bevy_egui::{egui, EguiContexts};

use crate::app::{to_world, AttnScale, ColorMode, Data, Shown, ViewState, WorldCamera};
use headlab_viewer::color::{Colormap, Scale, NO_VALUE};

/// Width of the panel in logical pixels (the 3D view starts to its right).
pub const PANEL_WIDTH: f32 = 300.0;

pub const SHORTCUTS: &[(&str, &str)] = &[
    ("Space", "play / pause"),
    ("← →", "step one frame"),
    ("Home End", "first / last frame"),
    ("↑ ↓", "faster / slower"),
    ("PgUp PgDn", "previous / next trajectory"),
    (", .", "previous / next checkpoint"),
    ("L  H", "next layer / next head"),
    ("1 2 3", "color by attention / score / speed"),
    ("click", "pick the query particle"),
    ("Q", "next query particle"),
    ("C  M  B", "contacts / model rollout / box"),
    ("drag", "orbit (right or middle: pan)"),
    ("wheel", "zoom"),
    ("R", "reset the camera"),
    ("T", "play through the checkpoints"),
    ("P", "save a PNG of the window here"),
    ("Tab", "hide / show this panel"),
    ("Esc", "quit"),
];

fn c32(c: [f32; 3]) -> egui::Color32 {
    egui::Color32::from_rgb((c[0] * 255.0) as u8, (c[1] * 255.0) as u8, (c[2] * 255.0) as u8)
}

/// A horizontal color bar with its scale: lo, middle and hi labels.
fn color_bar(ui: &mut egui::Ui, scale: Scale, label: &str) {
    ui.label(egui::RichText::new(label).strong());
    let width = ui.available_width().min(PANEL_WIDTH - 30.0);
    let (rect, _) = ui.allocate_exact_size(egui::vec2(width, 16.0), egui::Sense::hover());
    let steps = 64;
    for k in 0..steps {
        let t0 = k as f32 / steps as f32;
        let x0 = rect.left() + t0 * rect.width();
        let x1 = rect.left() + (k + 1) as f32 / steps as f32 * rect.width();
        let r = egui::Rect::from_min_max(egui::pos2(x0, rect.top()), egui::pos2(x1 + 0.5, rect.bottom()));
        ui.painter().rect_filled(r, 0.0, c32(scale.map.at(t0 + 0.5 / steps as f32)));
    }
    ui.horizontal(|ui| {
        let fmt = |v: f32| if v.abs() >= 0.01 || v == 0.0 { format!("{v:.3}") } else { format!("{v:.1e}") };
        ui.label(fmt(scale.lo));
        ui.add_space((width / 2.0 - 60.0).max(0.0));
        ui.label(fmt((scale.lo + scale.hi) / 2.0));
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            ui.label(fmt(scale.hi));
        });
    });
    ui.horizontal(|ui| {
        let (r, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
        ui.painter().rect_filled(r, 0.0, c32(NO_VALUE));
        ui.label("no value");
    });
}

pub fn panel(
    mut contexts: EguiContexts,
    mut st: ResMut<ViewState>,
    data: Res<Data>,
    shown: Res<Shown>,
    camera: Query<(&Camera, &GlobalTransform), With<WorldCamera>>,
) -> Result {
    if !st.show_ui {
        return Ok(());
    }
    let ctx = contexts.ctx_mut()?;
    // Which box is which, when the model rollout plays beside the truth.
    if let (Some(ro), Ok((cam, gtf))) = (data.0.rollout.as_ref(), camera.single()) {
        let r = &data.0;
        let b = &r.truth.meta.box_size;
        let dim = r.truth.dim();
        let top = if dim == 2 { [b[0] as f32 / 2.0, b[1] as f32, 0.0] } else { [b[0] as f32 / 2.0, 0.0, b[2] as f32] };
        let model_here = ro.for_truth(st.traj).is_some() && st.show_rollout && st.frame_index() < ro.data.n_frames;
        let painter = ctx.layer_painter(egui::LayerId::new(egui::Order::Foreground, egui::Id::new("box_labels")));
        let name = ro.path.file_stem().unwrap_or_default().to_string_lossy().replace("rollout_", "model rollout, ");
        for (model, label) in [(false, "ground truth".to_string()), (true, name)] {
            if model && !model_here {
                continue;
            }
            let off = if model { bevy::math::Vec3::X * (b[0] as f32 * 1.2) } else { bevy::math::Vec3::ZERO };
            if let Ok(p) = cam.world_to_viewport(gtf, to_world(top, dim) + off) {
                painter.text(
                    egui::pos2(p.x, p.y - 10.0),
                    egui::Align2::CENTER_BOTTOM,
                    label,
                    egui::FontId::proportional(15.0),
                    egui::Color32::from_gray(220),
                );
            }
        }
    }
    let mut root = egui::Ui::new(
        ctx.clone(),
        "viewport".into(),
        egui::UiBuilder::new().layer_id(egui::LayerId::background()).max_rect(ctx.viewport_rect()),
    );
    let r = &data.0;
    egui::Panel::left("headlab_panel").exact_size(PANEL_WIDTH).resizable(false).show(&mut root, |ui| {
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.heading("headlab viewer");
            ui.label(format!("{}", r.opened.display()));
            ui.label(format!(
                "{} trajectories × {} frames, {} particles, {}D",
                r.truth.n_traj,
                r.truth.n_frames,
                r.truth.n_particles,
                r.truth.dim()
            ));
            if let Some(ro) = &r.rollout {
                ui.label(format!("model rollout: {}", ro.path.file_name().unwrap_or_default().to_string_lossy()));
            }
            for note in &r.notes {
                ui.colored_label(egui::Color32::from_rgb(230, 180, 80), note);
            }
            ui.separator();

            // Playback.
            ui.horizontal(|ui| {
                if ui.button(if st.playing { "⏸ pause" } else { "▶ play" }).clicked() {
                    st.playing = !st.playing;
                }
                if ui.button("◀").clicked() {
                    st.playing = false;
                    st.frame = (st.frame.ceil() - 1.0).max(0.0);
                }
                if ui.button("▶").clicked() {
                    st.playing = false;
                    st.frame = (st.frame.floor() + 1.0).min((r.truth.n_frames - 1) as f32);
                }
            });
            let mut f = st.frame_index();
            if ui.add(egui::Slider::new(&mut f, 0..=r.truth.n_frames - 1).text("frame")).changed() {
                st.frame = f as f32;
            }
            let mut t = st.traj;
            if ui.add(egui::Slider::new(&mut t, 0..=r.truth.n_traj - 1).text("trajectory")).changed() {
                st.traj = t;
            }
            ui.add(egui::Slider::new(&mut st.speed, 0.25..=240.0).logarithmic(true).text("frames/s"));
            let q_max = r.truth.n_particles - 1;
            ui.add(egui::Slider::new(&mut st.query, 0..=q_max).text("query particle"));
            ui.separator();

            // Color mode.
            ui.label(egui::RichText::new("Color by").strong());
            ui.horizontal(|ui| {
                for m in [ColorMode::Attention, ColorMode::Score, ColorMode::Speed] {
                    ui.selectable_value(&mut st.mode, m, m.label());
                }
            });
            if st.mode == ColorMode::Attention {
                ui.horizontal(|ui| {
                    ui.label("scale:");
                    ui.selectable_value(&mut st.attn_scale, AttnScale::RowMax, "0 … row max");
                    ui.selectable_value(&mut st.attn_scale, AttnScale::Unit, "0 … 1");
                });
            }
            match shown.scale {
                Some(scale) => {
                    let label = match st.mode {
                        ColorMode::Attention => format!("a(query {} -> j), L{}.H{}", st.query, st.head.0, st.head.1),
                        ColorMode::Score => {
                            format!("collision score, L{}.H{} (chance 0, perfect 1)", st.head.0, st.head.1)
                        }
                        ColorMode::Speed => "speed |v|".to_string(),
                    };
                    color_bar(ui, scale, &label);
                }
                None => {
                    ui.label("(no color scale)");
                }
            }
            if r.rollout.is_some() && st.show_rollout && st.mode != ColorMode::Speed {
                ui.label("(the model rollout is plain: attention is cached for the ground truth only)");
            }
            if let Some(m) = &shown.message {
                ui.colored_label(egui::Color32::from_rgb(230, 180, 80), m);
            }
            if let Some(e) = &shown.error {
                ui.colored_label(egui::Color32::from_rgb(240, 90, 90), e);
            }
            if st.mode == ColorMode::Attention && !shown.row.is_empty() {
                let q = st.query;
                let mut others: Vec<(usize, f32)> =
                    shown.row.iter().copied().enumerate().filter(|&(j, _)| j != q).collect();
                others.sort_by(|a, b| b.1.total_cmp(&a.1));
                let partners: Vec<usize> = shown
                    .contacts
                    .iter()
                    .filter_map(|&(i, j)| {
                        if i == q {
                            Some(j)
                        } else if j == q {
                            Some(i)
                        } else {
                            None
                        }
                    })
                    .collect();
                ui.label(format!("on itself: a_qq = {:.3}", shown.row[q]));
                let top: Vec<String> = others
                    .iter()
                    .take(3)
                    .map(|(j, a)| format!("{j}{} {a:.3}", if partners.contains(j) { "*" } else { "" }))
                    .collect();
                ui.label(format!("top others: {}", top.join(", ")));
                ui.label("(* = in contact during this interval)");
            }
            ui.separator();

            // Head grid and checkpoint slider.
            if let Some(c) = r.attention.as_ref().filter(|c| !c.is_empty()) {
                let s = st.step_idx.min(c.steps.len() - 1);
                ui.label(egui::RichText::new(format!("Heads at step {} (collision score)", c.steps[s])).strong());
                let score_scale = Scale { map: Colormap::Diverging, lo: -1.0, hi: 1.0 };
                egui::Grid::new("heads").spacing([4.0, 4.0]).show(ui, |ui| {
                    for l in 0..c.n_layers {
                        for h in 0..c.n_heads {
                            let v = c.head_score(s, l, h) as f32;
                            let fill = c32(score_scale.color(v));
                            let text_color = if v.is_finite() && v.abs() > 0.55 {
                                egui::Color32::WHITE
                            } else {
                                egui::Color32::BLACK
                            };
                            let txt = egui::RichText::new(format!(
                                "L{l}.H{h}\n{}",
                                if v.is_finite() { format!("{v:+.2}") } else { "—".into() }
                            ))
                            .color(text_color)
                            .small();
                            let selected = st.head == (l, h);
                            let mut b = egui::Button::new(txt).fill(fill).min_size(egui::vec2(56.0, 34.0));
                            if selected {
                                b = b.stroke(egui::Stroke::new(3.0, egui::Color32::WHITE));
                            }
                            if ui.add(b).clicked() {
                                st.head = (l, h);
                                if st.mode == ColorMode::Speed {
                                    st.mode = ColorMode::Attention;
                                }
                            }
                        }
                        ui.end_row();
                    }
                });
                let mut k = s;
                let steps = c.steps.clone();
                let resp = ui.add(
                    egui::Slider::new(&mut k, 0..=steps.len() - 1)
                        .custom_formatter(move |v, _| format!("{}", steps[(v as usize).min(steps.len() - 1)]))
                        .text("checkpoint step"),
                );
                if resp.changed() {
                    st.step_idx = k;
                }
                ui.checkbox(&mut st.play_steps, "play through the checkpoints (T)");
                ui.label(format!(
                    "{} checkpoints cached; trajectories {:?}, frames {}–{}",
                    c.steps.len(),
                    c.trajs,
                    c.frames[0],
                    c.frames[c.frames.len() - 1]
                ));
            } else {
                ui.label("No attention cache (open a run folder probed by `headlab probe`).");
            }
            ui.separator();
            ui.checkbox(&mut st.show_contacts, "contacts (event table): lines");
            if r.rollout.is_some() {
                ui.checkbox(&mut st.show_rollout, "model rollout beside the truth (right)");
            }
            ui.checkbox(&mut st.show_box, "box");
            ui.label(format!("frame time {:.1} ms ({:.0} fps)", st.frame_ms, 1000.0 / st.frame_ms.max(1e-3)));
            ui.horizontal(|ui| {
                if ui.button("save PNG (P)").clicked() {
                    st.status = crate::app::SAVE_REQUEST.into();
                }
                ui.label(egui::RichText::new(&st.status).small());
            });
            egui::CollapsingHeader::new("Keyboard shortcuts").default_open(false).show(ui, |ui| {
                egui::Grid::new("keys").show(ui, |ui| {
                    for (k, what) in SHORTCUTS {
                        ui.monospace(*k);
                        ui.label(*what);
                        ui.end_row();
                    }
                });
            });
        });
    });
    Ok(())
}
