//! End-to-end tests of the viewer binary: screenshots rendered headless
//! (Xvfb + Mesa's software Vulkan), read back and measured, and the errors a
//! user gets for bad input.
//!
//! The scene (tests/common) is five disks in a row; two heads differ only in
//! where query 0 looks (head 0 at particle 1, head 1 at particle 4).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;

use common::{write_scene, N};

/// One viewer at a time: `xvfb-run -a` picks displays racily when started in parallel.
static SERIAL: Mutex<()> = Mutex::new(());

/// The viewer, started without DISPLAY so that it runs itself under
/// `xvfb-run`; `None` (skip) when Xvfb is missing outside CI.
fn viewer() -> Option<Command> {
    let have_xvfb =
        Command::new("sh").arg("-c").arg("command -v xvfb-run").output().map(|o| o.status.success()).unwrap_or(false);
    if !have_xvfb {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("xvfb-run is missing; tools/setup.sh installs it (CI may not skip the viewer tests)");
        }
        eprintln!("skipping: xvfb-run not installed (tools/setup.sh installs it)");
        return None;
    }
    let mut c = Command::new(env!("CARGO_BIN_EXE_headlab-viewer"));
    c.env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY").env_remove("HEADLAB_VIEWER_NO_XVFB");
    Some(c)
}

fn run(mut c: Command) -> Output {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = c.output().expect("start headlab-viewer");
    if !out.status.success() {
        eprintln!(
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

struct Png {
    w: usize,
    h: usize,
    rgb: Vec<u8>,
}

fn read_png(p: &Path) -> Png {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(p).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb, "screenshot should be RGB");
    buf.truncate(info.buffer_size());
    Png { w: info.width as usize, h: info.height as usize, rgb: buf }
}

/// A connected region of foreground pixels.
#[derive(Debug)]
struct Blob {
    area: usize,
    cx: f64,
    /// Mean color.
    mean: [f64; 3],
}

/// Foreground = differs from the background color (top-left pixel) by more
/// than 40 in some channel. Returns compact blobs of at least `min_area`
/// pixels, left to right; long thin parts (the box edges) are dropped.
fn blobs(img: &Png, min_area: usize) -> Vec<Blob> {
    let bg = [img.rgb[0], img.rgb[1], img.rgb[2]];
    let fg = |k: usize| (0..3).any(|c| (img.rgb[3 * k + c] as i32 - bg[c] as i32).abs() > 40);
    let mut seen = vec![false; img.w * img.h];
    let mut out = Vec::new();
    for start in 0..img.w * img.h {
        if seen[start] || !fg(start) {
            continue;
        }
        let mut stack = vec![start];
        seen[start] = true;
        let (mut area, mut sx, mut sum) = (0usize, 0f64, [0f64; 3]);
        let (mut x0, mut x1, mut y0, mut y1) = (usize::MAX, 0, usize::MAX, 0);
        while let Some(k) = stack.pop() {
            let (x, y) = (k % img.w, k / img.w);
            area += 1;
            sx += x as f64;
            for c in 0..3 {
                sum[c] += img.rgb[3 * k + c] as f64;
            }
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
            let mut push = |nk: usize| {
                if !seen[nk] && fg(nk) {
                    seen[nk] = true;
                    stack.push(nk);
                }
            };
            if x > 0 {
                push(k - 1);
            }
            if x + 1 < img.w {
                push(k + 1);
            }
            if y > 0 {
                push(k - img.w);
            }
            if y + 1 < img.h {
                push(k + img.w);
            }
        }
        let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
        // Compact: a disk fills about π/4 of its bounding box; box edges fill almost nothing.
        let fill = area as f64 / (bw * bh) as f64;
        if area >= min_area && fill > 0.4 && bw < img.w / 3 && bh < img.h / 3 {
            out.push(Blob { area, cx: sx / area as f64, mean: sum.map(|s| s / area as f64) });
        }
    }
    out.sort_by(|a, b| a.cx.total_cmp(&b.cx));
    out
}

fn lum(c: [f64; 3]) -> f64 {
    0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]
}

#[test]
fn screenshots_show_each_particle_and_follow_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let (_, run_dir) = write_scene(dir.path());
    let shot = |head: &str, name: &str| -> Option<Png> {
        let mut c = viewer()?;
        let png = dir.path().join(name);
        c.arg(&run_dir)
            .args([
                "--no-ui",
                "--size",
                "640x400",
                "--color",
                "attention",
                "--query",
                "0",
                "--frame",
                "0",
                "--head",
                head,
                "--screenshot",
            ])
            .arg(&png);
        let out = run(c);
        assert!(out.status.success(), "viewer failed for head {head}");
        Some(read_png(&png))
    };
    let Some(a) = shot("0.0", "head0.png") else { return };
    let b = shot("0.1", "head1.png").unwrap();
    assert_eq!((a.w, a.h), (640, 400));

    // Non-blank, and one blob per particle.
    let ba = blobs(&a, 30);
    let bb = blobs(&b, 30);
    assert_eq!(ba.len(), N, "expected {N} particle blobs, found {}: {ba:?}", ba.len());
    assert_eq!(bb.len(), N, "expected {N} particle blobs, found {}: {bb:?}", bb.len());
    // Equal radii: the blobs are about the same size (the outlined query a bit larger).
    let amax = ba.iter().map(|b| b.area).max().unwrap() as f64;
    let amin = ba.iter().map(|b| b.area).min().unwrap() as f64;
    assert!(amax / amin < 1.6, "blob areas {amin}..{amax}: {ba:?}");

    // Head 0 sends query 0's attention to particle 1, head 1 to particle 4:
    // the brighter end of viridis must move with it.
    assert!(lum(ba[1].mean) > lum(ba[4].mean) + 30.0, "head 0: blob 1 {:?} should outshine blob 4 {:?}", ba[1], ba[4]);
    assert!(lum(bb[4].mean) > lum(bb[1].mean) + 30.0, "head 1: blob 4 {:?} should outshine blob 1 {:?}", bb[4], bb[1]);
    let differing = a
        .rgb
        .chunks(3)
        .zip(b.rgb.chunks(3))
        .filter(|(p, q)| p.iter().zip(*q).any(|(x, y)| x.abs_diff(*y) > 30))
        .count();
    assert!(differing > 500, "only {differing} pixels differ between the two heads");
}

#[test]
fn screenshot_with_panel_and_speed_colors() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run_dir) = write_scene(dir.path());
    // The side panel, on a probed run.
    let Some(mut c) = viewer() else { return };
    let png = dir.path().join("panel.png");
    c.arg(&run_dir).args(["--size", "900x600", "--screenshot"]).arg(&png);
    assert!(run(c).status.success());
    let img = read_png(&png);
    // The panel (left 300 px) holds text and widgets: many distinct colors.
    let mut colors = std::collections::HashSet::new();
    for y in 0..img.h {
        for x in 0..300 {
            let k = 3 * (y * img.w + x);
            colors.insert((img.rgb[k], img.rgb[k + 1], img.rgb[k + 2]));
        }
    }
    assert!(colors.len() > 50, "the panel looks empty: {} colors", colors.len());
    // The 3D view beside it still shows all particles.
    let view = Png {
        w: img.w - 300,
        h: img.h,
        rgb: (0..img.h).flat_map(|y| img.rgb[3 * (y * img.w + 300)..3 * (y + 1) * img.w].to_vec()).collect(),
    };
    assert_eq!(blobs(&view, 20).len(), N);

    // A plain dataset colored by speed: speeds grow with the particle index here.
    let Some(mut c) = viewer() else { return };
    let png = dir.path().join("speed.png");
    c.arg(&data).args(["--no-ui", "--size", "640x400", "--screenshot"]).arg(&png);
    assert!(run(c).status.success());
    let bl = blobs(&read_png(&png), 30);
    assert_eq!(bl.len(), N);
    assert!(lum(bl[4].mean) > lum(bl[0].mean) + 30.0, "fastest particle should be brightest: {bl:?}");
}

fn viewer_plain() -> Command {
    Command::new(env!("CARGO_BIN_EXE_headlab-viewer"))
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_input_is_a_clear_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run_dir) = write_scene(dir.path());
    let check = |args: &[&std::ffi::OsStr], needles: &[&str]| {
        let out = viewer_plain().args(args).env("DISPLAY", ":9999").output().unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "args {args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        for n in needles {
            assert!(err.contains(n), "args {args:?}: stderr lacks `{n}`:\n{err}");
        }
    };
    let missing = dir.path().join("nope.h5");
    check(&[missing.as_os_str()], &["nope.h5", "no such file"]);
    let text = dir.path().join("notes.h5");
    std::fs::write(&text, "not hdf5").unwrap();
    check(&[text.as_os_str()], &["notes.h5", "cannot open as HDF5"]);
    check(&[run_dir.as_os_str(), "--head".as_ref(), "3.0".as_ref()], &["--head 3.0", "layers 0..0"]);
    check(&[data.as_os_str(), "--traj".as_ref(), "7".as_ref()], &["--traj 7", "0..0"]);
    check(&[data.as_os_str(), "--color".as_ref(), "attention".as_ref()], &["no attention cache"]);
    // A run whose analysis points at a dataset that is gone.
    std::fs::remove_file(&data).unwrap();
    check(&[run_dir.as_os_str()], &["analysis.h5", "--dataset"]);
}
