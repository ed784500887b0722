//! The SGLD chains: worker threads, per-chain random streams, the update.
//!
//! Chains are grouped into units: one chain per unit for ordinary problems,
//! or one stack of chains per worker for stacked problems. Workers take units
//! from a shared counter. Each chain has its own ChaCha8 streams (noise, batch
//! choices) derived from the seed and the chain's index, so a chain's draws do
//! not depend on which thread runs it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use tch::{Device, Kind, Tensor};

use super::{ChainStatus, LlcConfig, LlcError, LlcProblem, Movable, Progress, Result, StarCache, MAX_TRACE_LEN};

/// Maximal runs (start, length) of non-zero entries of a 0/1 mask.
fn moving_runs(mask: &[f64]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < mask.len() {
        if mask[i] != 0.0 {
            let start = i;
            while i < mask.len() && mask[i] != 0.0 {
                i += 1;
            }
            runs.push((start, i - start));
        } else {
            i += 1;
        }
    }
    runs
}

/// An element type of the fused update.
trait Elem: Copy + std::ops::Add<Output = Self> + std::ops::Sub<Output = Self> + std::ops::Mul<Output = Self> {
    fn of(x: f64) -> Self;
    /// One standard normal draw, as the tensor path draws it.
    fn normal(r: &mut ChaCha8Rng) -> Self;
}
impl Elem for f32 {
    fn of(x: f64) -> f32 {
        x as f32
    }
    fn normal(r: &mut ChaCha8Rng) -> f32 {
        r.sample::<f32, _>(StandardNormal)
    }
}
impl Elem for f64 {
    fn of(x: f64) -> f64 {
        x
    }
    fn normal(r: &mut ChaCha8Rng) -> f64 {
        r.sample::<f64, _>(StandardNormal)
    }
}

/// w ← w + c_loc·(w − w*) + c_grad·g + c_noise·ξ over the moving `runs` of
/// each of the k chains stacked in `w` (chain i at offset i·numel_one), ξ
/// from chain i's noise stream in element order (the draws the tensor path
/// makes).
fn fused_update<T: Elem>(
    w: &Tensor,
    star: &Tensor,
    g: &Tensor,
    runs: &[(usize, usize)],
    numel_one: usize,
    rngs: &mut [(ChaCha8Rng, ChaCha8Rng)],
    (c_loc, c_grad, c_noise): (f64, f64, f64),
) {
    let k = rngs.len();
    // SAFETY: the caller checked that `w`, `star` and `g` are contiguous CPU
    // tensors of element type T with k·numel_one, numel_one and k·numel_one
    // elements. `w` is this unit's own chain state (a copy no other thread
    // sees, and no autograd graph is alive here: the update runs after
    // loss_and_grad returned); `star` and `g` are only read and do not
    // share storage with `w` (w* is a separate copy, g a fresh gradient).
    let (w, star, g) = unsafe {
        (
            std::slice::from_raw_parts_mut(w.data_ptr() as *mut T, k * numel_one),
            std::slice::from_raw_parts(star.data_ptr() as *const T, numel_one),
            std::slice::from_raw_parts(g.data_ptr() as *const T, k * numel_one),
        )
    };
    let (cl, cg, cn) = (T::of(c_loc), T::of(c_grad), T::of(c_noise));
    for (i, (r, _)) in rngs.iter_mut().enumerate() {
        let (wc, gc) = (&mut w[i * numel_one..(i + 1) * numel_one], &g[i * numel_one..(i + 1) * numel_one]);
        for &(start, len) in runs {
            let range = start..start + len;
            for ((wv, &sv), &gv) in wc[range.clone()].iter_mut().zip(&star[range.clone()]).zip(&gc[range]) {
                let noise = cn * T::normal(r);
                *wv = *wv + (cl * (*wv - sv) + cg * gv + noise);
            }
        }
    }
}

/// What one chain accumulated.
pub(super) struct ChainOut {
    pub status: ChainStatus,
    /// Sums of nβ·ΔL over all draws, the post-burn-in draws, and the first
    /// and second halves of the post-burn-in draws.
    pub sum_all: f64,
    pub sum_post: f64,
    pub sum_first: f64,
    pub sum_second: f64,
    /// Sum of L_Bt(w_t) over the post-burn-in draws (for the unpaired value).
    pub sum_loss_post: f64,
    pub loss_trace: Vec<f64>,
    pub delta_trace: Vec<f64>,
}

pub(super) struct Output {
    pub chains: Vec<ChainOut>,
    pub reference_batch: usize,
    pub reference_loss: f64,
    pub trace_block: usize,
}

const STREAM_REFERENCE: u64 = u64::MAX;

fn chain_rngs(seed: u64, chain: usize) -> (ChaCha8Rng, ChaCha8Rng) {
    let mut noise = ChaCha8Rng::seed_from_u64(seed);
    noise.set_stream(2 * chain as u64);
    let mut batches = ChaCha8Rng::seed_from_u64(seed);
    batches.set_stream(2 * chain as u64 + 1);
    (noise, batches)
}

pub(super) fn run<P: LlcProblem + ?Sized>(
    problem: &P,
    w_star: &[Tensor],
    movable: &[Movable],
    cfg: &LlcConfig,
    n_beta: f64,
    threshold: f64,
    progress: Progress<'_>,
) -> Result<Output> {
    let threads = cfg.resolved_threads();
    let stacked = problem.stacked();
    // Units of work: single chains, or one stack of chains per worker.
    let units: Vec<Vec<usize>> = if stacked {
        let groups = threads.min(cfg.chains).max(1);
        let per = cfg.chains.div_ceil(groups);
        (0..cfg.chains).collect::<Vec<_>>().chunks(per).map(|c| c.to_vec()).collect()
    } else {
        (0..cfg.chains).map(|c| vec![c]).collect()
    };
    let workers = threads.min(units.len()).max(1);
    let device = w_star.first().map(|t| t.device()).unwrap_or(Device::Cpu);
    // Chains in parallel, one libtorch thread each; a lone worker gets them all.
    let _torch_threads = if device == Device::Cpu {
        Some(headlab_model::TorchThreads::set((threads / workers).max(1) as i32))
    } else {
        None
    };

    let n_batches = problem.n_batches();
    // L_B(w*) per batch: the problem's own cache (shared across estimates) or a fresh one.
    let own;
    let cache: &StarCache = match problem.star_cache() {
        Some(c) if c.len() == n_batches => c,
        _ => {
            own = StarCache::new(n_batches);
            &own
        }
    };
    let mut ref_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    ref_rng.set_stream(STREAM_REFERENCE);
    let reference_batch = ref_rng.gen_range(0..n_batches);

    let trace_block = cfg.draws.div_ceil(MAX_TRACE_LEN).max(1);
    // Per-thread copies of w* and the masks (tensors are not shared).
    let copies: Vec<(Vec<Tensor>, Vec<Movable>)> = (0..workers)
        .map(|_| {
            (w_star.iter().map(|t| t.detach().copy()).collect(), movable.iter().map(|m| m.copy_to(device)).collect())
        })
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<ChainOut>>> = Mutex::new((0..cfg.chains).map(|_| None).collect());
    let first_error: Mutex<Option<LlcError>> = Mutex::new(None);
    let ctx = Ctx { problem, cfg, n_beta, threshold, stacked, cache, trace_block, progress };

    std::thread::scope(|s| {
        for (wstar, masks) in copies {
            let (units, next, results, first_error, ctx) = (&units, &next, &results, &first_error, &ctx);
            s.spawn(move || loop {
                if first_error.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                    return;
                }
                let u = next.fetch_add(1, Ordering::SeqCst);
                if u >= units.len() {
                    return;
                }
                match ctx.run_unit(&wstar, &masks, &units[u]) {
                    Ok(outs) => {
                        let mut r = results.lock().unwrap_or_else(|e| e.into_inner());
                        for (c, o) in units[u].iter().zip(outs) {
                            r[*c] = Some(o);
                        }
                    }
                    Err(e) => {
                        first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    // The reference loss of the unpaired diagnostic.
    let reference_loss = match cache.get(reference_batch) {
        Some(v) => v,
        None => {
            let w: Vec<Tensor> = w_star.iter().map(|t| t.detach()).collect();
            ctx.loss_at_star(&w, reference_batch)?
        }
    };
    let chains = results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .enumerate()
        .map(|(c, o)| o.ok_or_else(|| LlcError::Problem(format!("chain {c} produced no result"))))
        .collect::<Result<Vec<_>, LlcError>>()?;
    Ok(Output { chains, reference_batch, reference_loss, trace_block })
}

struct Ctx<'a, P: ?Sized> {
    problem: &'a P,
    cfg: &'a LlcConfig,
    n_beta: f64,
    threshold: f64,
    stacked: bool,
    cache: &'a StarCache,
    trace_block: usize,
    progress: Progress<'a>,
}

/// Running sums and block-averaged traces of one chain.
struct Acc {
    status: ChainStatus,
    out: ChainOut,
    block_loss: f64,
    block_delta: f64,
    block_n: usize,
}

impl Acc {
    fn new() -> Self {
        Acc {
            status: ChainStatus::Ok,
            out: ChainOut {
                status: ChainStatus::Ok,
                sum_all: 0.0,
                sum_post: 0.0,
                sum_first: 0.0,
                sum_second: 0.0,
                sum_loss_post: 0.0,
                loss_trace: Vec::new(),
                delta_trace: Vec::new(),
            },
            block_loss: 0.0,
            block_delta: 0.0,
            block_n: 0,
        }
    }
    fn push_block(&mut self, block: usize, last: bool) {
        if self.block_n == block || (last && self.block_n > 0) {
            let (l, d) = if self.status.is_ok() {
                (self.block_loss / self.block_n as f64, self.block_delta / self.block_n as f64)
            } else {
                (f64::NAN, f64::NAN)
            };
            self.out.loss_trace.push(l);
            self.out.delta_trace.push(d);
            self.block_loss = 0.0;
            self.block_delta = 0.0;
            self.block_n = 0;
        }
    }
}

impl<P: LlcProblem + ?Sized> Ctx<'_, P> {
    /// L_B(w*) for batch b (cached). `w_star` has the parameters' own shapes.
    fn loss_at_star(&self, w_star: &[Tensor], b: usize) -> Result<f64> {
        if let Some(v) = self.cache.get(b) {
            return Ok(v);
        }
        let v = tch::no_grad(|| -> Result<f64> {
            let l = if self.stacked {
                let w: Vec<Tensor> = w_star.iter().map(|t| t.unsqueeze(0)).collect();
                self.problem.loss(&w, &[b])?
            } else {
                self.problem.loss(w_star, &[b])?
            };
            if l.numel() != 1 {
                return Err(LlcError::Problem(format!(
                    "loss for one chain has shape {:?}; expected a scalar",
                    l.size()
                )));
            }
            Ok(l.to_kind(Kind::Double).to_device(Device::Cpu).double_value(&[]))
        })?;
        if !v.is_finite() {
            return Err(LlcError::Problem(format!(
                "the loss at the checkpoint w* is {v} on batch {b}: the checkpoint itself is broken"
            )));
        }
        self.cache.put(b, v);
        Ok(v)
    }

    /// Run the chains of one unit (one chain, or a stack of k chains).
    fn run_unit(&self, w_star: &[Tensor], masks: &[Movable], chains: &[usize]) -> Result<Vec<ChainOut>> {
        let cfg = self.cfg;
        let k = chains.len();
        let mut rngs: Vec<(ChaCha8Rng, ChaCha8Rng)> = chains.iter().map(|&c| chain_rngs(cfg.seed, c)).collect();
        let mut acc: Vec<Acc> = (0..k).map(|_| Acc::new()).collect();
        let burn = cfg.burn_in_steps();
        let half_end = burn + (cfg.draws - burn) / 2;
        let eps = cfg.epsilon;
        let (c_loc, c_grad, c_noise) = (-0.5 * eps * cfg.gamma, -0.5 * eps * self.n_beta, eps.sqrt());

        // Parameters as the problem sees them: with a leading chain dimension
        // when stacked. Moving ones are leaves that require grad.
        let lead = |t: &Tensor| if self.stacked { t.unsqueeze(0) } else { t.shallow_clone() };
        let star: Vec<Tensor> = w_star.iter().map(lead).collect();
        let mut params: Vec<Tensor> = Vec::with_capacity(star.len());
        let mut moving: Vec<usize> = Vec::new();
        for (j, (s, m)) in star.iter().zip(masks).enumerate() {
            let shape = s.size();
            let mut full = shape.clone();
            if self.stacked {
                full[0] = k as i64;
            }
            match m {
                Movable::Frozen => params.push(if self.stacked { s.expand(&full, false) } else { s.shallow_clone() }),
                _ => {
                    let w = if self.stacked { s.expand(&full, false).contiguous() } else { s.copy() };
                    params.push(w.detach());
                    moving.push(j);
                }
            }
        }
        let moving_flags: Vec<bool> = (0..params.len()).map(|j| moving.contains(&j)).collect();
        // Masks: the 0/1 tensor, and the flat indices of the moving elements
        // (noise is drawn for those only).
        let mask_t: Vec<Option<(Tensor, Tensor)>> = masks
            .iter()
            .map(|m| match m {
                Movable::Mask(t) => Some((lead(t), t.reshape([-1]).nonzero().reshape([-1]))),
                _ => None,
            })
            .collect();
        let kinds: Vec<Kind> = params.iter().map(|p| p.kind()).collect();
        // (εγ/2)·w*, the constant part of the localization pull.
        let star_scaled: Vec<Option<Tensor>> = star.iter().map(|s| (c_loc != 0.0).then(|| s * (-c_loc))).collect();
        let device = star.first().map(|t| t.device()).unwrap_or(Device::Cpu);
        // The fused CPU update: one pass over the moving elements, noise drawn
        // in the same loop (no temporaries); the runs of moving elements of
        // each parameter (per chain), or None where the tensor path is used.
        let fused: Vec<Option<Vec<(usize, usize)>>> = (0..params.len())
            .map(|j| -> Result<Option<Vec<(usize, usize)>>> {
                let ok = device == Device::Cpu
                    && matches!(kinds[j], Kind::Float | Kind::Double)
                    && params[j].is_contiguous()
                    && star[j].is_contiguous()
                    && star[j].kind() == kinds[j];
                if !ok || !moving.contains(&j) {
                    return Ok(None);
                }
                let numel = w_star[j].numel();
                Ok(Some(match &masks[j] {
                    Movable::Mask(m) => moving_runs(&Vec::<f64>::try_from(&m.to_kind(Kind::Double).reshape([-1]))?),
                    _ => vec![(0, numel)],
                }))
            })
            .collect::<Result<_>>()?;
        let mut alive = k;
        let mut reported = 0u64;

        for t in 0..cfg.draws {
            let batches: Vec<usize> =
                rngs.iter_mut().map(|(_, br)| br.gen_range(0..self.problem.n_batches())).collect();
            // Reference losses at w* for these batches (cached).
            let mut refs = Vec::with_capacity(k);
            for &b in &batches {
                refs.push(self.loss_at_star(w_star, b)?);
            }
            let (loss, grads) = self.problem.loss_and_grad(&params, &batches, &moving_flags)?;
            if loss.numel() != k {
                return Err(LlcError::Problem(format!(
                    "loss has shape {:?}; expected {} value(s), one per chain",
                    loss.size(),
                    k
                )));
            }
            let lv: Vec<f64> =
                Vec::<f64>::try_from(&loss.detach().to_kind(Kind::Double).to_device(Device::Cpu).reshape([-1]))?;
            for i in 0..k {
                let a = &mut acc[i];
                if !a.status.is_ok() {
                    continue;
                }
                let delta = self.n_beta * (lv[i] - refs[i]);
                if !lv[i].is_finite() {
                    a.status = ChainStatus::NonFinite { step: t };
                } else if delta > self.threshold {
                    a.status = ChainStatus::Diverged { step: t, value: delta, threshold: self.threshold };
                }
                if !a.status.is_ok() {
                    alive -= 1;
                    continue;
                }
                a.out.sum_all += delta;
                if t >= burn {
                    a.out.sum_post += delta;
                    a.out.sum_loss_post += lv[i];
                    if t < half_end {
                        a.out.sum_first += delta;
                    } else {
                        a.out.sum_second += delta;
                    }
                }
                a.block_loss += lv[i];
                a.block_delta += delta;
                a.block_n += 1;
                a.push_block(self.trace_block, t + 1 == cfg.draws);
            }
            if alive == 0 {
                break;
            }
            // The update, without building a graph:
            // w ← w + mask·( −(εγ/2)(w − w*) − (εnβ/2)·g + √ε·ξ ).
            tch::no_grad(|| -> Result<()> {
                for &j in &moving {
                    let g = grads.get(j).and_then(|g| g.as_ref()).ok_or_else(|| {
                        LlcError::Problem(format!("loss_and_grad returned no gradient for moving parameter {j}"))
                    })?;
                    if let Some(runs) = &fused[j] {
                        let numel_one = w_star[j].numel();
                        let g = if g.is_contiguous() && g.kind() == kinds[j] {
                            g.shallow_clone()
                        } else {
                            g.f_contiguous()?.f_to_kind(kinds[j])?
                        };
                        if g.numel() != k * numel_one || params[j].numel() != k * numel_one {
                            return Err(LlcError::Problem(format!(
                                "gradient of parameter {j} has {} elements; expected {}",
                                g.numel(),
                                k * numel_one
                            )));
                        }
                        let coef = (c_loc, c_grad, c_noise);
                        if kinds[j] == Kind::Double {
                            fused_update::<f64>(&params[j], &star[j], &g, runs, numel_one, &mut rngs, coef);
                        } else {
                            fused_update::<f32>(&params[j], &star[j], &g, runs, numel_one, &mut rngs, coef);
                        }
                        continue;
                    }
                    let shape = params[j].size();
                    match &mask_t[j] {
                        None => {
                            // In place: w ← w·(1 − εγ/2) + (εγ/2)·w* − (εnβ/2)·g + √ε·ξ.
                            let noise = self.noise(&mut rngs, w_star[j].numel(), c_noise, kinds[j], &shape, device)?;
                            let _ = params[j].f_mul_scalar_(1.0 + c_loc)?;
                            if let Some(sc) = &star_scaled[j] {
                                let _ = params[j].f_add_(sc)?;
                            }
                            let _ = params[j].f_add_(&(g * c_grad))?;
                            let _ = params[j].f_add_(&noise)?;
                        }
                        Some((m, idx)) => {
                            // Noise on the moving elements only, scattered into zeros.
                            let count = idx.numel();
                            let part =
                                self.noise(&mut rngs, count, c_noise, kinds[j], &[k as i64, count as i64], device)?;
                            let per = w_star[j].numel() as i64;
                            let full = Tensor::f_zeros([k as i64, per], (kinds[j], device))?;
                            let noise = full.f_index_copy(1, idx, &part)?.f_reshape(&shape)?;
                            let step = ((&params[j] - &star[j]) * c_loc + g * c_grad + noise) * m;
                            let _ = params[j].f_add_(&step)?;
                        }
                    }
                }
                Ok(())
            })?;
            if let Some(p) = self.progress {
                let done = ((t + 1) * k) as u64;
                if t + 1 == cfg.draws || done - reported >= 64 {
                    p(done - reported);
                    reported = done;
                }
            }
        }
        if let Some(p) = self.progress {
            let total = (cfg.draws * k) as u64;
            if total > reported {
                p(total - reported);
            }
        }
        Ok(acc
            .into_iter()
            .map(|mut a| {
                // A failed chain's trace is padded with NaN to full length.
                let len = cfg.draws.div_ceil(self.trace_block);
                if a.block_n > 0 {
                    a.push_block(self.trace_block, true);
                }
                a.out.loss_trace.resize(len, f64::NAN);
                a.out.delta_trace.resize(len, f64::NAN);
                a.out.status = a.status;
                a.out
            })
            .collect())
    }

    /// Gaussian noise (standard deviation `scale`) for one parameter, for every chain of the unit,
    /// each from its own stream (so stacking does not change the draws).
    fn noise(
        &self,
        rngs: &mut [(ChaCha8Rng, ChaCha8Rng)],
        numel_one: usize,
        scale: f64,
        kind: Kind,
        shape: &[i64],
        device: Device,
    ) -> Result<Tensor> {
        let t = if kind == Kind::Double {
            let mut v = Vec::with_capacity(numel_one * rngs.len());
            for (r, _) in rngs.iter_mut() {
                v.extend((0..numel_one).map(|_| scale * r.sample::<f64, _>(StandardNormal)));
            }
            Tensor::f_from_slice(&v)?
        } else {
            let scale = scale as f32;
            let mut v = Vec::with_capacity(numel_one * rngs.len());
            for (r, _) in rngs.iter_mut() {
                v.extend((0..numel_one).map(|_| scale * r.sample::<f32, _>(StandardNormal)));
            }
            Tensor::f_from_slice(&v)?.f_to_kind(kind)?
        };
        let t = t.f_reshape(shape)?;
        Ok(if device == Device::Cpu { t } else { t.f_to_device(device)? })
    }
}
