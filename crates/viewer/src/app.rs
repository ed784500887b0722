//! The bevy app: particles as instanced spheres, an orbit camera, contact
//! lines, the query outline, playback, and the screenshot-and-exit mode.
//! The side panel lives in `ui.rs`; the data in `data.rs`.

use std::path::PathBuf;

use bevy::camera::visibility::RenderLayers;
use bevy::camera::{CameraOutputMode, Viewport};
use bevy::core_pipeline::tonemapping::Tonemapping;
use bevy::input::mouse::{AccumulatedMouseMotion, AccumulatedMouseScroll, MouseScrollUnit};
use bevy::prelude::*;
use bevy::render::render_resource::{BlendState, Face};
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};
use bevy::render::view::Msaa;
use bevy::render::RenderPlugin;
use bevy::window::{PrimaryWindow, WindowResolution};
use bevy_egui::input::EguiWantsInput;
use bevy_egui::{EguiGlobalSettings, EguiPlugin, EguiPrimaryContextPass, PrimaryEguiContext};

use headlab_viewer::color::{Colormap, Scale, NO_VALUE};
use headlab_viewer::data::{self, Replay};

/// What the particles are colored by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorMode {
    /// a_ij of the selected head from the query particle to every other.
    Attention,
    /// Per-particle collision score of the selected head (probe's definition).
    Score,
    /// Particle speed |v|.
    Speed,
}

impl ColorMode {
    pub fn label(self) -> &'static str {
        match self {
            ColorMode::Attention => "attention a_ij",
            ColorMode::Score => "collision score",
            ColorMode::Speed => "speed |v|",
        }
    }
}

/// How the attention color scale is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttnScale {
    /// 0 … the largest a_ij (j ≠ query) of the shown row.
    RowMax,
    /// 0 … 1.
    Unit,
}

/// Options from the command line.
#[derive(Debug, Clone)]
pub struct Launch {
    pub traj: Option<usize>,
    pub frame: Option<usize>,
    pub step: Option<u64>,
    pub head: Option<(usize, usize)>,
    pub color: Option<ColorMode>,
    pub query: Option<usize>,
    pub screenshot: Option<PathBuf>,
    pub size: (u32, u32),
    pub no_ui: bool,
    pub play: bool,
    /// Frames rendered before the screenshot.
    pub shot_after: u32,
}

/// Everything the user can change, in one place (the panel, keys and mouse edit it).
#[derive(Resource, Debug, Clone)]
pub struct ViewState {
    pub traj: usize,
    /// Fractional while playing.
    pub frame: f32,
    pub playing: bool,
    /// Frames per second of playback.
    pub speed: f32,
    pub mode: ColorMode,
    pub head: (usize, usize),
    /// Index into the attention cache's steps.
    pub step_idx: usize,
    pub query: usize,
    pub attn_scale: AttnScale,
    pub show_contacts: bool,
    pub show_rollout: bool,
    pub show_box: bool,
    pub show_ui: bool,
    /// Smoothed frame time in ms.
    pub frame_ms: f32,
    /// Step through the checkpoints automatically (watch a head form).
    pub play_steps: bool,
    /// Status line (e.g. where a saved picture went).
    pub status: String,
}

impl ViewState {
    pub fn frame_index(&self) -> usize {
        self.frame.max(0.0).floor() as usize
    }
}

/// The opened data.
#[derive(Resource)]
pub struct Data(pub Replay);

/// What the current frame is colored with (the panel shows it).
#[derive(Resource, Default, Debug, Clone)]
pub struct Shown {
    /// Per truth particle; NaN = no value.
    pub values: Vec<f32>,
    pub scale: Option<Scale>,
    /// Why there is no coloring, if there is none.
    pub message: Option<String>,
    /// Attention row of the query (attention mode), for the panel.
    pub row: Vec<f32>,
    /// Contact pairs drawn this frame.
    pub contacts: Vec<(usize, usize)>,
    /// Last error (e.g. reading a checkpoint's patterns).
    pub error: Option<String>,
}

#[derive(Component)]
struct Particle {
    idx: usize,
    model: bool,
}
#[derive(Component)]
struct QueryHalo;
#[derive(Component)]
struct ContactLine(usize);
#[derive(Component)]
struct BoxEdge {
    model: bool,
}
#[derive(Component)]
pub struct WorldCamera;

/// Materials: 256 slots per colormap, so particles of equal color share a
/// material and bevy batches them into instanced draws.
#[derive(Resource)]
struct Palette {
    viridis: Vec<Handle<StandardMaterial>>,
    diverging: Vec<Handle<StandardMaterial>>,
    gray: Handle<StandardMaterial>,
    plain: Handle<StandardMaterial>,
}

impl Palette {
    fn get(&self, scale: Option<Scale>, v: f32) -> Handle<StandardMaterial> {
        let Some(scale) = scale else { return self.plain.clone() };
        match scale.slot(v) {
            None => self.gray.clone(),
            Some(k) => match scale.map {
                Colormap::Viridis => self.viridis[k].clone(),
                Colormap::Diverging => self.diverging[k].clone(),
            },
        }
    }
}

/// Orbit camera around a focus point.
#[derive(Resource, Debug, Clone, Copy)]
pub struct Orbit {
    focus: Vec3,
    yaw: f32,
    pitch: f32,
    dist: f32,
    home: (Vec3, f32, f32, f32),
}

impl Orbit {
    fn transform(&self) -> Transform {
        let rot = Quat::from_euler(EulerRot::YXZ, self.yaw, -self.pitch, 0.0);
        let pos = self.focus + rot * Vec3::new(0.0, 0.0, self.dist);
        Transform::from_translation(pos).looking_at(self.focus, rot * Vec3::Y)
    }
    fn reset(&mut self) {
        (self.focus, self.yaw, self.pitch, self.dist) = self.home;
    }
}

/// What new contact lines are made of, and how many exist.
#[derive(Resource)]
struct LinePool {
    mesh: Handle<Mesh>,
    material: Handle<StandardMaterial>,
    len: usize,
}

/// Screenshot-and-exit plan.
#[derive(Resource)]
struct Shot {
    path: PathBuf,
    frames: u32,
    after: u32,
    requested: bool,
}

/// What is computed once per trajectory: contacts by interval (from the
/// event table) and the speed color scale's top.
#[derive(Resource, Default)]
struct TrajCache {
    traj: Option<usize>,
    by_interval: Vec<Vec<(usize, usize)>>,
    max_speed: f32,
}

/// Map simulator coordinates (2D: x, y; 3D: x, y, z with gravity along −z)
/// to bevy's y-up world (a proper rotation, so handedness is kept).
pub fn to_world(p: [f32; 3], dim: usize) -> Vec3 {
    if dim == 2 {
        Vec3::new(p[0], p[1], 0.0)
    } else {
        Vec3::new(p[0], p[2], -p[1])
    }
}

/// Offset of the model-rollout copy, beside the truth.
fn model_offset(r: &Replay) -> Vec3 {
    Vec3::X * (r.truth.meta.box_size[0] as f32 * 1.2)
}

/// Initial state from the launch options and the data.
pub fn initial_state(r: &Replay, l: &Launch) -> ViewState {
    let cache = r.attention.as_ref().filter(|c| !c.is_empty());
    let step_idx = match (cache, l.step) {
        (Some(c), Some(s)) => c.nearest_step(s).unwrap_or(0),
        (Some(c), None) => c.steps.len() - 1,
        _ => 0,
    };
    let head = l.head.unwrap_or_else(|| {
        // default: the highest-scoring head at the chosen checkpoint (a UI
        // starting point, not a verdict: the report names tied heads together)
        cache
            .and_then(|c| {
                let mut best = None;
                for layer in 0..c.n_layers {
                    for h in 0..c.n_heads {
                        let s = c.head_score(step_idx, layer, h);
                        if s.is_finite() && best.is_none_or(|(b, _)| s > b) {
                            best = Some((s, (layer, h)));
                        }
                    }
                }
                best.map(|b| b.1)
            })
            .unwrap_or((0, 0))
    });
    let traj = l.traj.unwrap_or_else(|| cache.map(|c| c.trajs[0] as usize).unwrap_or(0));
    let frame = l.frame.unwrap_or_else(|| cache.map(|c| c.frames[0] as usize).unwrap_or(0));
    let mode = l.color.unwrap_or(if cache.is_some() { ColorMode::Attention } else { ColorMode::Speed });
    let query = l.query.unwrap_or_else(|| {
        // default: the particle with the most partners at this frame
        let all = data::contacts_by_interval(&r.truth, traj.min(r.truth.n_traj - 1));
        let pairs = all.get(frame).cloned().unwrap_or_default();
        let mut deg = vec![0usize; r.truth.n_particles];
        for (i, j) in pairs {
            deg[i] += 1;
            deg[j] += 1;
        }
        (0..deg.len()).max_by_key(|&i| (deg[i], std::cmp::Reverse(i))).unwrap_or(0)
    });
    ViewState {
        traj,
        frame: frame as f32,
        playing: l.play,
        speed: 10.0,
        mode,
        head,
        step_idx,
        query,
        attn_scale: AttnScale::RowMax,
        show_contacts: true,
        show_rollout: true,
        show_box: true,
        show_ui: !l.no_ui,
        frame_ms: 0.0,
        play_steps: false,
        status: String::new(),
    }
}

/// Check launch options against the data; errors name the option and value.
pub fn validate(r: &Replay, l: &Launch) -> Result<(), String> {
    let ds = &r.truth;
    if let Some(t) = l.traj {
        if t >= ds.n_traj {
            return Err(format!("--traj {t}: {} has trajectories 0..{}", r.truth_path.display(), ds.n_traj - 1));
        }
    }
    if let Some(f) = l.frame {
        if f >= ds.n_frames {
            return Err(format!("--frame {f}: {} has frames 0..{}", r.truth_path.display(), ds.n_frames - 1));
        }
    }
    if let Some(q) = l.query {
        if q >= ds.n_particles {
            return Err(format!("--query {q}: there are {} particles (0..{})", ds.n_particles, ds.n_particles - 1));
        }
    }
    let needs_attention =
        l.head.is_some() || l.step.is_some() || matches!(l.color, Some(ColorMode::Attention | ColorMode::Score));
    match r.attention.as_ref() {
        None if needs_attention => {
            return Err(format!(
                "{} has no attention cache: --head, --step and --color attention|score need a probed run (a run folder or its analysis.h5)",
                r.opened.display()
            ))
        }
        Some(c) => {
            if let Some((layer, h)) = l.head {
                if layer >= c.n_layers || h >= c.n_heads {
                    return Err(format!("--head {layer}.{h}: the model has layers 0..{} and heads 0..{}", c.n_layers - 1, c.n_heads - 1));
                }
            }
            if needs_attention && c.is_empty() {
                return Err(format!("{}: no attention patterns were cached by the probe", c.path.display()));
            }
        }
        None => {}
    }
    Ok(())
}

/// Build and run the app. Returns the process exit code.
pub fn run(replay: Replay, launch: Launch) -> AppExit {
    let state = initial_state(&replay, &launch);
    let title = format!("headlab viewer — {}", replay.opened.display());
    let mut app = App::new();
    app.insert_resource(ClearColor(Color::srgb(0.06, 0.06, 0.08)))
        .add_plugins(
            DefaultPlugins
                .set(WindowPlugin {
                    primary_window: Some(Window {
                        title,
                        resolution: WindowResolution::new(launch.size.0, launch.size.1).with_scale_factor_override(1.0),
                        ..default()
                    }),
                    ..default()
                })
                .set(RenderPlugin { synchronous_pipeline_compilation: true, ..default() })
                .set(bevy::log::LogPlugin { filter: "warn,wgpu=error,naga=error".into(), ..default() }),
        )
        .add_plugins(EguiPlugin::default())
        .insert_resource(GlobalAmbientLight {
            color: Color::WHITE,
            brightness: 900.0,
            affects_lightmapped_meshes: true,
        })
        .insert_resource(state)
        .insert_resource(Data(replay))
        .init_resource::<Shown>()
        .init_resource::<TrajCache>()
        .add_systems(Startup, setup)
        .add_systems(
            Update,
            (keyboard, advance, camera_control, compute_colors, apply_visuals, frame_time, save_picture).chain(),
        )
        .add_systems(EguiPrimaryContextPass, crate::ui::panel);
    if let Some(path) = launch.screenshot {
        app.insert_resource(Shot { path, frames: 0, after: launch.shot_after, requested: false })
            .add_systems(Update, take_screenshot.after(apply_visuals));
    }
    app.run()
}

fn setup(
    mut commands: Commands,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut egui_settings: ResMut<EguiGlobalSettings>,
    data: Res<Data>,
) {
    let r = &data.0;
    let dim = r.truth.dim();
    let mat = |c: [f32; 3]| StandardMaterial {
        base_color: Color::srgb(c[0], c[1], c[2]),
        perceptual_roughness: 0.55,
        metallic: 0.0,
        ..default()
    };
    let viridis = (0..256).map(|k| materials.add(mat(Colormap::Viridis.at(k as f32 / 255.0)))).collect();
    let diverging = (0..256).map(|k| materials.add(mat(Colormap::Diverging.at(k as f32 / 255.0)))).collect();
    let palette = Palette {
        viridis,
        diverging,
        gray: materials.add(mat(NO_VALUE)),
        plain: materials.add(mat([0.75, 0.72, 0.62])),
    };

    // Particles: one shared unit sphere, scaled per particle; equal materials batch.
    let n = r.truth.n_particles;
    // Fewer triangles when there are many particles (each is small on screen).
    let subdivisions = if n <= 200 {
        3
    } else if n <= 2000 {
        2
    } else {
        1
    };
    let sphere =
        meshes.add(Sphere::new(1.0).mesh().ico(subdivisions).unwrap_or_else(|_| Sphere::new(1.0).mesh().uv(16, 8)));
    for idx in 0..n {
        commands.spawn((
            Particle { idx, model: false },
            Mesh3d(sphere.clone()),
            MeshMaterial3d(palette.plain.clone()),
            Transform::default(),
        ));
    }
    if r.rollout.is_some() {
        for idx in 0..n {
            commands.spawn((
                Particle { idx, model: true },
                Mesh3d(sphere.clone()),
                MeshMaterial3d(palette.plain.clone()),
                Transform::default(),
            ));
        }
    }
    // The query outline: a slightly larger sphere drawn from inside (front
    // faces culled), so only its rim shows around the query particle.
    let halo = materials.add(StandardMaterial {
        base_color: Color::WHITE,
        unlit: true,
        cull_mode: Some(Face::Front),
        ..default()
    });
    commands.spawn((QueryHalo, Mesh3d(sphere.clone()), MeshMaterial3d(halo), Transform::default(), Visibility::Hidden));

    // Contact lines: a pool of thin cylinders.
    let cyl = meshes.add(Cylinder::new(1.0, 1.0));
    let line_mat =
        materials.add(StandardMaterial { base_color: Color::srgb(1.0, 0.85, 0.2), unlit: true, ..default() });
    // (grown on demand in `apply_visuals`: idle entities still cost a little every frame)
    commands.insert_resource(LinePool { mesh: cyl, material: line_mat, len: 0 });

    // The box: its edges as thin bars.
    let b = &r.truth.meta.box_size;
    let size = [b[0] as f32, b[1] as f32, if dim == 3 { b[2] as f32 } else { 0.0 }];
    let diag = (size[0] * size[0] + size[1] * size[1] + size[2] * size[2]).sqrt();
    let edge_mat =
        materials.add(StandardMaterial { base_color: Color::srgb(0.55, 0.58, 0.65), unlit: true, ..default() });
    let unit = meshes.add(Cuboid::new(1.0, 1.0, 1.0));
    let corners: Vec<[f32; 3]> = if dim == 2 {
        vec![[0.0, 0.0, 0.0], [size[0], 0.0, 0.0], [size[0], size[1], 0.0], [0.0, size[1], 0.0]]
    } else {
        (0..8)
            .map(|c| [size[0] * (c & 1) as f32, size[1] * ((c >> 1) & 1) as f32, size[2] * ((c >> 2) & 1) as f32])
            .collect()
    };
    let edges: Vec<(usize, usize)> = if dim == 2 {
        vec![(0, 1), (1, 2), (2, 3), (3, 0)]
    } else {
        let mut e = Vec::new();
        for a in 0..8usize {
            for bit in [1usize, 2, 4] {
                if a & bit == 0 {
                    e.push((a, a | bit));
                }
            }
        }
        e
    };
    let thick = 0.004 * diag;
    let sides: &[bool] = if r.rollout.is_some() { &[false, true] } else { &[false] };
    for &model in sides {
        let off = if model { model_offset(r) } else { Vec3::ZERO };
        for &(a, c) in &edges {
            let (pa, pc) = (to_world(corners[a], dim) + off, to_world(corners[c], dim) + off);
            let len = (pc - pa).length();
            let t = Transform::from_translation((pa + pc) / 2.0)
                .looking_to(pc - pa, if (pc - pa).normalize().y.abs() > 0.9 { Vec3::Z } else { Vec3::Y })
                .with_scale(Vec3::new(thick, thick, len));
            commands.spawn((BoxEdge { model }, Mesh3d(unit.clone()), MeshMaterial3d(edge_mat.clone()), t));
        }
    }

    // Lights and camera.
    commands.spawn((
        DirectionalLight { illuminance: 4000.0, shadow_maps_enabled: false, ..default() },
        Transform::from_xyz(0.3, 1.0, 0.6).looking_at(Vec3::ZERO, Vec3::Y),
    ));
    let center = to_world([size[0] / 2.0, size[1] / 2.0, size[2] / 2.0], dim);
    let focus = if r.rollout.is_some() { center + model_offset(r) / 2.0 } else { center };
    let span = if r.rollout.is_some() { diag * 2.2 } else { diag };
    let dist = span * if dim == 2 { 1.15 } else { 1.45 };
    let (yaw, pitch) = if dim == 2 { (0.0, 0.0) } else { (0.6, 0.45) };
    let orbit = Orbit { focus, yaw, pitch, dist, home: (focus, yaw, pitch, dist) };
    commands.spawn((
        WorldCamera,
        Camera3d::default(),
        Projection::Perspective(PerspectiveProjection { fov: 0.7, near: diag * 0.01, far: diag * 100.0, ..default() }),
        Msaa::Off,
        Tonemapping::None,
        orbit.transform(),
    ));
    commands.insert_resource(orbit);
    // egui draws on its own camera, so the 3D camera's viewport can leave room for the panel.
    egui_settings.auto_create_primary_context = false;
    commands.spawn((
        PrimaryEguiContext,
        Camera2d,
        RenderLayers::none(),
        Camera {
            order: 1,
            output_mode: CameraOutputMode::Write {
                blend_state: Some(BlendState::ALPHA_BLENDING),
                clear_color: ClearColorConfig::None,
            },
            clear_color: ClearColorConfig::Custom(Color::NONE),
            ..default()
        },
    ));
    commands.insert_resource(palette);
}

fn keyboard(
    keys: Res<ButtonInput<KeyCode>>,
    mut st: ResMut<ViewState>,
    data: Res<Data>,
    mut orbit: ResMut<Orbit>,
    egui: Res<EguiWantsInput>,
    mut exit: MessageWriter<AppExit>,
) {
    if egui.wants_keyboard_input() {
        return;
    }
    let r = &data.0;
    let last = (r.truth.n_frames - 1) as f32;
    if keys.just_pressed(KeyCode::Space) {
        st.playing = !st.playing;
    }
    if keys.just_pressed(KeyCode::ArrowRight) {
        st.playing = false;
        st.frame = (st.frame.floor() + 1.0).min(last);
    }
    if keys.just_pressed(KeyCode::ArrowLeft) {
        st.playing = false;
        st.frame = (st.frame.ceil() - 1.0).max(0.0);
    }
    if keys.just_pressed(KeyCode::Home) {
        st.frame = 0.0;
    }
    if keys.just_pressed(KeyCode::End) {
        st.frame = last;
    }
    if keys.just_pressed(KeyCode::ArrowUp) {
        st.speed = (st.speed * 1.5).min(240.0);
    }
    if keys.just_pressed(KeyCode::ArrowDown) {
        st.speed = (st.speed / 1.5).max(0.25);
    }
    if keys.just_pressed(KeyCode::PageDown) && st.traj + 1 < r.truth.n_traj {
        st.traj += 1;
    }
    if keys.just_pressed(KeyCode::PageUp) && st.traj > 0 {
        st.traj -= 1;
    }
    if let Some(c) = r.attention.as_ref().filter(|c| !c.is_empty()) {
        if keys.just_pressed(KeyCode::Period) && st.step_idx + 1 < c.steps.len() {
            st.step_idx += 1;
        }
        if keys.just_pressed(KeyCode::Comma) && st.step_idx > 0 {
            st.step_idx -= 1;
        }
        let (l, h) = st.head;
        if keys.just_pressed(KeyCode::KeyL) {
            st.head = ((l + 1) % c.n_layers, h);
        }
        if keys.just_pressed(KeyCode::KeyH) {
            st.head = (l, (h + 1) % c.n_heads);
        }
        if keys.just_pressed(KeyCode::Digit1) {
            st.mode = ColorMode::Attention;
        }
        if keys.just_pressed(KeyCode::Digit2) {
            st.mode = ColorMode::Score;
        }
    }
    if keys.just_pressed(KeyCode::Digit3) {
        st.mode = ColorMode::Speed;
    }
    if keys.just_pressed(KeyCode::KeyQ) {
        st.query = (st.query + 1) % r.truth.n_particles;
    }
    if keys.just_pressed(KeyCode::KeyC) {
        st.show_contacts = !st.show_contacts;
    }
    if keys.just_pressed(KeyCode::KeyM) {
        st.show_rollout = !st.show_rollout;
    }
    if keys.just_pressed(KeyCode::KeyB) {
        st.show_box = !st.show_box;
    }
    if keys.just_pressed(KeyCode::Tab) {
        st.show_ui = !st.show_ui;
    }
    if keys.just_pressed(KeyCode::KeyR) {
        orbit.reset();
    }
    if keys.just_pressed(KeyCode::KeyT) {
        st.play_steps = !st.play_steps;
    }
    if keys.just_pressed(KeyCode::KeyP) {
        st.status = SAVE_REQUEST.into();
    }
    if keys.just_pressed(KeyCode::Escape) {
        exit.write(AppExit::Success);
    }
}

/// `status` value that asks `save_picture` for a PNG of the window.
pub const SAVE_REQUEST: &str = "saving…";

/// Save the window as PNG in the working directory (key P or the panel's button).
fn save_picture(mut commands: Commands, mut st: ResMut<ViewState>, data: Res<Data>) {
    if st.status != SAVE_REQUEST {
        return;
    }
    let step = data
        .0
        .attention
        .as_ref()
        .filter(|c| !c.is_empty())
        .map(|c| format!("_step{}", c.steps[st.step_idx.min(c.steps.len() - 1)]))
        .unwrap_or_default();
    let name = format!(
        "headlab_view_traj{}_frame{}{}_L{}H{}_{}.png",
        st.traj,
        st.frame_index(),
        step,
        st.head.0,
        st.head.1,
        st.mode.label().split(' ').next().unwrap_or("view")
    );
    let path = std::env::current_dir().unwrap_or_default().join(name);
    st.status = format!("saved {}", path.display());
    commands.spawn(Screenshot::primary_window()).observe(
        move |ev: On<ScreenshotCaptured>, mut st: ResMut<ViewState>| {
            if let Err(e) = save_png(&ev.image, &path) {
                st.status = e;
            }
        },
    );
}

fn advance(time: Res<Time>, mut st: ResMut<ViewState>, data: Res<Data>, mut since: Local<f32>) {
    if st.play_steps {
        // Two checkpoints a second, looping.
        *since += time.delta_secs();
        if *since > 0.5 {
            *since = 0.0;
            let n = data.0.attention.as_ref().map(|c| c.steps.len()).unwrap_or(0);
            if n > 0 {
                st.step_idx = (st.step_idx + 1) % n;
            }
        }
    }
    if !st.playing {
        return;
    }
    let last = (data.0.truth.n_frames - 1) as f32;
    st.frame += st.speed * time.delta_secs();
    if st.frame > last {
        st.frame = 0.0;
    }
}

#[allow(clippy::too_many_arguments)]
fn camera_control(
    mouse: Res<ButtonInput<MouseButton>>,
    motion: Res<AccumulatedMouseMotion>,
    scroll: Res<AccumulatedMouseScroll>,
    egui: Res<EguiWantsInput>,
    mut orbit: ResMut<Orbit>,
    mut cam: Query<(&mut Transform, &mut Camera, &GlobalTransform), With<WorldCamera>>,
    window: Query<&Window, With<PrimaryWindow>>,
    mut st: ResMut<ViewState>,
    data: Res<Data>,
    mut drag: Local<f32>,
) {
    let Ok((mut tf, mut camera, gtf)) = cam.single_mut() else { return };
    let Ok(win) = window.single() else { return };
    let over_ui = egui.wants_pointer_input() || egui.is_pointer_over_area();
    // Keep the 3D view beside the panel.
    let panel = if st.show_ui { crate::ui::PANEL_WIDTH } else { 0.0 };
    let (w, h) = (win.physical_width(), win.physical_height());
    let px = ((panel * win.scale_factor()) as u32).min(w.saturating_sub(1));
    camera.viewport = Some(Viewport {
        physical_position: UVec2::new(px, 0),
        physical_size: UVec2::new((w - px).max(1), h.max(1)),
        ..default()
    });

    if !over_ui {
        let d = motion.delta;
        if mouse.pressed(MouseButton::Left) {
            *drag += d.length();
            orbit.yaw -= d.x * 0.006;
            orbit.pitch = (orbit.pitch + d.y * 0.006).clamp(-1.55, 1.55);
        }
        if mouse.pressed(MouseButton::Right) || mouse.pressed(MouseButton::Middle) {
            let rot = tf.rotation;
            let k = orbit.dist * 0.0015;
            orbit.focus += rot * Vec3::new(-d.x * k, d.y * k, 0.0);
        }
        let s = match scroll.unit {
            MouseScrollUnit::Line => scroll.delta.y,
            MouseScrollUnit::Pixel => scroll.delta.y / 40.0,
        };
        if s != 0.0 {
            orbit.dist = (orbit.dist * 0.9f32.powf(s)).max(1e-3);
        }
        if mouse.just_pressed(MouseButton::Left) {
            *drag = 0.0;
        }
        // A click (press and release without dragging) picks the query particle.
        if mouse.just_released(MouseButton::Left) && *drag < 4.0 {
            if let Some(cursor) = win.cursor_position() {
                // (bevy's viewport conversions take window coordinates)
                if let Ok(ray) = camera.viewport_to_world(gtf, cursor) {
                    let r = &data.0;
                    let dim = r.truth.dim();
                    let n = r.truth.n_particles;
                    let centers: Vec<[f32; 3]> = data::positions_at(&r.truth, st.traj, st.frame)
                        .into_iter()
                        .map(|p| to_world(p, dim).to_array())
                        .collect();
                    let radii = &r.truth.radii[st.traj * n..(st.traj + 1) * n];
                    if let Some(k) =
                        data::pick_sphere(ray.origin.to_array(), ray.direction.as_vec3().to_array(), &centers, radii)
                    {
                        st.query = k;
                    }
                }
            }
        }
    }
    *tf = orbit.transform();
}

fn compute_colors(
    mut st: ResMut<ViewState>,
    mut data: ResMut<Data>,
    mut shown: ResMut<Shown>,
    mut contacts: ResMut<TrajCache>,
) {
    let r = &mut data.0;
    let n = r.truth.n_particles;
    st.traj = st.traj.min(r.truth.n_traj - 1);
    st.query = st.query.min(n - 1);
    let frame = st.frame_index().min(r.truth.n_frames - 1);
    if contacts.traj != Some(st.traj) {
        contacts.by_interval = data::contacts_by_interval(&r.truth, st.traj);
        contacts.max_speed = data::max_speed(&r.truth, st.traj);
        contacts.traj = Some(st.traj);
    }
    shown.contacts =
        if st.show_contacts { contacts.by_interval.get(frame).cloned().unwrap_or_default() } else { Vec::new() };
    shown.message = None;
    shown.row.clear();
    match st.mode {
        ColorMode::Speed => {
            shown.values = data::speeds(&r.truth, st.traj, frame);
            let hi = contacts.max_speed.max(1e-6);
            shown.scale = Some(Scale { map: Colormap::Viridis, lo: 0.0, hi });
        }
        ColorMode::Attention | ColorMode::Score => {
            shown.values = vec![f32::NAN; n];
            shown.scale = None;
            let Some(cache) = r.attention.as_mut().filter(|c| !c.is_empty()) else {
                shown.message = Some("no attention cache: open a probed run to color by a head".into());
                return;
            };
            st.step_idx = st.step_idx.min(cache.steps.len() - 1);
            let Some(slot) = cache.slot(st.traj, frame) else {
                shown.message = Some(format!(
                    "attention is cached for trajectories {:?}, frames {}–{} only",
                    cache.trajs,
                    cache.frames.first().unwrap_or(&0),
                    cache.frames.last().unwrap_or(&0)
                ));
                return;
            };
            let pats = match cache.patterns(st.step_idx) {
                Ok(p) => p,
                Err(e) => {
                    shown.error = Some(e.to_string());
                    return;
                }
            };
            let (l, h) = st.head;
            let pat = cache.frame_pattern(&pats, l.min(cache.n_layers - 1), h.min(cache.n_heads - 1), slot);
            if st.mode == ColorMode::Attention {
                let q = st.query;
                let row = pat[q * n..(q + 1) * n].to_vec();
                let max_other = row.iter().enumerate().filter(|&(j, _)| j != q).map(|(_, &a)| a).fold(0.0f32, f32::max);
                let hi = match st.attn_scale {
                    AttnScale::RowMax => max_other.max(1e-6),
                    AttnScale::Unit => 1.0,
                };
                shown.values = row.iter().enumerate().map(|(j, &a)| if j == q { f32::NAN } else { a }).collect();
                shown.scale = Some(Scale { map: Colormap::Viridis, lo: 0.0, hi });
                shown.row = row;
            } else {
                let partners = contacts.by_interval.get(frame).cloned().unwrap_or_default();
                shown.values = data::particle_scores(pat, n, &partners);
                shown.scale = Some(Scale { map: Colormap::Diverging, lo: -1.0, hi: 1.0 });
            }
        }
    }
}

#[allow(clippy::type_complexity, clippy::too_many_arguments)] // a bevy system takes its queries as arguments
fn apply_visuals(
    mut commands: Commands,
    mut pool: ResMut<LinePool>,
    st: Res<ViewState>,
    data: Res<Data>,
    shown: Res<Shown>,
    palette: Res<Palette>,
    mut particles: Query<
        (&Particle, &mut Transform, &mut MeshMaterial3d<StandardMaterial>, &mut Visibility),
        (Without<QueryHalo>, Without<ContactLine>, Without<BoxEdge>),
    >,
    mut halo: Query<
        (&mut Transform, &mut Visibility),
        (With<QueryHalo>, Without<Particle>, Without<ContactLine>, Without<BoxEdge>),
    >,
    mut lines: Query<
        (&ContactLine, &mut Transform, &mut Visibility),
        (Without<Particle>, Without<QueryHalo>, Without<BoxEdge>),
    >,
    mut edges: Query<(&BoxEdge, &mut Visibility), (Without<Particle>, Without<QueryHalo>, Without<ContactLine>)>,
) {
    let r = &data.0;
    let dim = r.truth.dim();
    let n = r.truth.n_particles;
    let traj = st.traj;
    let radii = &r.truth.radii[traj * n..(traj + 1) * n];
    let truth_pos: Vec<Vec3> =
        data::positions_at(&r.truth, traj, st.frame).into_iter().map(|p| to_world(p, dim)).collect();
    let model = r.rollout.as_ref().filter(|_| st.show_rollout).and_then(|ro| ro.for_truth(traj).map(|k| (ro, k)));
    let model_frame_ok = model.is_some_and(|(ro, _)| st.frame_index() < ro.data.n_frames);
    let model_pos: Option<Vec<Vec3>> = model.filter(|_| model_frame_ok).map(|(ro, k)| {
        data::positions_at(&ro.data, k, st.frame.min((ro.data.n_frames - 1) as f32))
            .into_iter()
            .map(|p| to_world(p, dim) + model_offset(r))
            .collect()
    });
    let model_speed: Option<Vec<f32>> = model
        .filter(|_| model_frame_ok && st.mode == ColorMode::Speed)
        .map(|(ro, k)| data::speeds(&ro.data, k, st.frame_index()));
    for (p, mut tf, mut mat, mut vis) in &mut particles {
        if p.model {
            match &model_pos {
                Some(pos) => {
                    vis.set_if_neq(Visibility::Inherited);
                    tf.set_if_neq(Transform::from_translation(pos[p.idx]).with_scale(Vec3::splat(radii[p.idx])));
                    let h = match &model_speed {
                        Some(sp) => palette.get(shown.scale, sp[p.idx]),
                        None => palette.plain.clone(),
                    };
                    if mat.0 != h {
                        mat.0 = h;
                    }
                }
                None => {
                    vis.set_if_neq(Visibility::Hidden);
                }
            }
        } else {
            tf.set_if_neq(Transform::from_translation(truth_pos[p.idx]).with_scale(Vec3::splat(radii[p.idx])));
            let h = if st.mode == ColorMode::Attention && p.idx == st.query && shown.scale.is_some() {
                palette.plain.clone()
            } else {
                palette.get(shown.scale, shown.values.get(p.idx).copied().unwrap_or(f32::NAN))
            };
            if mat.0 != h {
                mat.0 = h;
            }
        }
    }
    if let Ok((mut tf, mut vis)) = halo.single_mut() {
        let show = matches!(st.mode, ColorMode::Attention);
        vis.set_if_neq(if show { Visibility::Inherited } else { Visibility::Hidden });
        let q = st.query.min(n - 1);
        tf.set_if_neq(Transform::from_translation(truth_pos[q]).with_scale(Vec3::splat(radii[q] * 1.15)));
    }
    let thin = radii.iter().copied().fold(f32::INFINITY, f32::min) * 0.18;
    for (line, mut tf, mut vis) in &mut lines {
        match shown.contacts.get(line.0) {
            Some(&(i, j)) if st.show_contacts => {
                // In 2D the line floats just above the disks (seen from +z), so
                // touching pairs, whose centers hide inside the spheres, show it too.
                let lift = if dim == 2 { Vec3::Z * radii[i].max(radii[j]) * 1.05 } else { Vec3::ZERO };
                let (a, b) = (truth_pos[i] + lift, truth_pos[j] + lift);
                let len = (b - a).length().max(1e-6);
                vis.set_if_neq(Visibility::Inherited);
                tf.set_if_neq(
                    Transform::from_translation((a + b) / 2.0)
                        .with_rotation(Quat::from_rotation_arc(Vec3::Y, (b - a) / len))
                        .with_scale(Vec3::new(thin, len, thin)),
                );
            }
            _ => {
                vis.set_if_neq(Visibility::Hidden);
            }
        }
    }
    // More contacts than lines: add lines (they show from the next frame).
    let want = if st.show_contacts { shown.contacts.len() } else { 0 };
    while pool.len < want {
        commands.spawn((
            ContactLine(pool.len),
            Mesh3d(pool.mesh.clone()),
            MeshMaterial3d(pool.material.clone()),
            Transform::default(),
            Visibility::Hidden,
        ));
        pool.len += 1;
    }
    for (e, mut vis) in &mut edges {
        let show = st.show_box && (!e.model || model_pos.is_some());
        vis.set_if_neq(if show { Visibility::Inherited } else { Visibility::Hidden });
    }
}

fn frame_time(time: Res<Time<Real>>, mut st: ResMut<ViewState>) {
    let ms = time.delta_secs() * 1000.0;
    st.frame_ms = if st.frame_ms == 0.0 { ms } else { 0.95 * st.frame_ms + 0.05 * ms };
}

fn take_screenshot(
    mut commands: Commands,
    mut shot: ResMut<Shot>,
    st: Res<ViewState>,
    mut exit: MessageWriter<AppExit>,
) {
    shot.frames += 1;
    // Earlier frames may be blank while pipelines and the panel settle.
    if shot.frames == shot.after && !shot.requested {
        shot.requested = true;
        let path = shot.path.clone();
        if shot.after > 30 {
            println!("frame time {:.1} ms (smoothed over the last ~20 of {} frames)", st.frame_ms, shot.after);
        }
        commands.spawn(Screenshot::primary_window()).observe(
            move |ev: On<ScreenshotCaptured>, mut exit: MessageWriter<AppExit>| match save_png(&ev.image, &path) {
                Ok(()) => {
                    println!("screenshot written to {}", path.display());
                    exit.write(AppExit::Success);
                }
                Err(e) => {
                    eprintln!("headlab-viewer: error: {e}");
                    exit.write(AppExit::error());
                }
            },
        );
    }
    if shot.frames > shot.after + 600 {
        eprintln!("headlab-viewer: error: the screenshot was not captured 600 frames after it was asked for");
        exit.write(AppExit::error());
    }
}

/// Encode an RGBA screenshot as PNG (alpha dropped), written atomically.
fn save_png(img: &Image, path: &std::path::Path) -> Result<(), String> {
    let dynimg = img.clone().try_into_dynamic().map_err(|e| format!("screenshot has an unexpected format: {e:?}"))?;
    let rgb = dynimg.to_rgb8();
    let (w, h) = rgb.dimensions();
    let tmp = path.with_extension("png.tmp");
    let write = || -> std::io::Result<()> {
        let file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let mut enc = png::Encoder::new(file, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(std::io::Error::other)?;
        writer.write_image_data(rgb.as_raw()).map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("{}: cannot write the screenshot: {e}", path.display()))
}
