//! The one-layer, single-head transformer of the toy task (tch, CPU) and its
//! SGD training with separate learning rates for attention and decoder.
//!
//! ```text
//! x_t   = E[token_t]                       (fixed embedding, no positions)
//! a     = softmax_t( (x_T W_Q)·(x_t W_K) / sqrt(d_head) )   (query = last token)
//! logit = (Σ_t a_t x_t) W_V W_out + b_out  (next-token class)
//! ```
//!
//! Attention parameters: `W_Q`, `W_K` (learning rate `lr_attention`).
//! Decoder parameters: `W_V`, `W_out`, `b_out` (learning rate `lr_decoder`).
//! Plain SGD with constant rates, as in Tian et al.'s analysis, where the
//! decoder (Y) and attention (Z) rates set when attention snaps: train's
//! [`Optimizer`] with momentum 0, one per parameter tensor.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use tch::{Kind, Tensor};

use super::task::{Batch, Task, TokenKind};
use super::{Embedding, ScanSnapConfig, ScanSnapError, Trace};
use headlab_analysis::freeze;
use headlab_sim::seed::{derive_seed, Stream};
use headlab_train::{Optimizer, OptimizerConfig, OptimizerKind};

pub(crate) struct ToyModel {
    embed: Tensor,
    wq: Tensor,
    wk: Tensor,
    wv: Tensor,
    wout: Tensor,
    bout: Tensor,
    scale: f64,
}

fn randn(rng: &mut ChaCha8Rng, shape: &[i64], std: f64) -> Tensor {
    let n: i64 = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| (rng.sample::<f64, _>(StandardNormal) * std) as f32).collect();
    Tensor::from_slice(&v).reshape(shape)
}

impl ToyModel {
    pub(crate) fn new(cfg: &ScanSnapConfig, vocab: usize, rng: &mut ChaCha8Rng) -> ToyModel {
        let m = &cfg.model;
        let v = vocab as i64;
        let (embed, d) = match m.embedding {
            Embedding::OneHot => (Tensor::eye(v, (Kind::Float, tch::Device::Cpu)), v),
            Embedding::Random => {
                let d = m.d_model as i64;
                (randn(rng, &[v, d], 1.0 / (d as f64).sqrt()), d)
            }
        };
        let dh = m.d_head as i64;
        let k = cfg.task.n_classes as i64;
        let s = 1.0 / (d as f64).sqrt();
        ToyModel {
            embed,
            wq: randn(rng, &[d, dh], s).set_requires_grad(true),
            wk: randn(rng, &[d, dh], s).set_requires_grad(true),
            wv: randn(rng, &[d, d], s).set_requires_grad(true),
            wout: randn(rng, &[d, k], s).set_requires_grad(true),
            bout: Tensor::zeros([k], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true),
            scale: 1.0 / (dh as f64).sqrt(),
        }
    }

    /// Returns (class logits [B, K], attention of the query [B, T]).
    pub(crate) fn forward(&self, batch: &Batch) -> (Tensor, Tensor) {
        let tokens = Tensor::from_slice(&batch.tokens);
        let d = self.embed.size()[1];
        let x = self.embed.index_select(0, &tokens).reshape([batch.n as i64, batch.seq_len as i64, d]);
        let xq = x.select(1, batch.seq_len as i64 - 1);
        let q = xq.matmul(&self.wq);
        let k = x.matmul(&self.wk);
        let scores = k.matmul(&q.unsqueeze(-1)).squeeze_dim(-1) * self.scale;
        let a = scores.softmax(-1, Kind::Float);
        let h = (a.unsqueeze(-1) * &x).sum_dim_intlist(1, false, Kind::Float);
        let logits = h.matmul(&self.wv).matmul(&self.wout) + &self.bout;
        (logits, a)
    }

    /// Attention logits of every query token against every vocabulary token,
    /// centred per query (softmax ignores a shift): `[n_queries, vocab]`.
    pub(crate) fn logit_table(&self, n_queries: usize) -> Result<Vec<f32>, tch::TchError> {
        tch::no_grad(|| {
            let q = self.embed.narrow(0, 0, n_queries as i64).matmul(&self.wq);
            let k = self.embed.matmul(&self.wk);
            let z = q.matmul(&k.transpose(0, 1)) * self.scale;
            let z = &z - z.mean_dim(-1, true, Kind::Float);
            Vec::<f32>::try_from(z.flatten(0, -1))
        })
    }

    /// The trained tensors: attention (`W_Q`, `W_K`) first, then the decoder.
    fn trained(&self) -> [&Tensor; 5] {
        [&self.wq, &self.wk, &self.wv, &self.wout, &self.bout]
    }

    /// Plain SGD (no momentum, no weight decay), one optimizer per trained
    /// tensor, in the order of [`ToyModel::trained`].
    fn sgd(&self) -> Vec<Optimizer> {
        let cfg = OptimizerConfig { kind: OptimizerKind::Sgd, momentum: 0.0, weight_decay: 0.0, ..Default::default() };
        self.trained().iter().map(|p| Optimizer::for_tensor(cfg.clone(), p)).collect()
    }

    fn sgd_step(&self, opts: &mut [Optimizer], loss: &Tensor, lr_attention: f64, lr_decoder: f64) {
        let params = self.trained();
        let grads = Tensor::run_backward(&[loss], &params, false, false);
        for (i, ((p, g), opt)) in params.iter().zip(grads.iter()).zip(opts.iter_mut()).enumerate() {
            let lr = if i < 2 { lr_attention } else { lr_decoder };
            opt.update_tensor(p, g, lr);
        }
    }
}

/// Attention statistics of the query on a batch.
pub(crate) struct AttnStats {
    pub entropy: f32,
    pub mass_distinct: f32,
    pub mass_common: f32,
    pub mass_self: f32,
}

pub(crate) fn attention_stats(task: &Task, batch: &Batch, attn: &[f32]) -> AttnStats {
    let (mut h, mut md, mut mc, mut ms) = (0f64, 0f64, 0f64, 0f64);
    let l = batch.seq_len;
    for i in 0..batch.n {
        let row = batch.row(i);
        let a = &attn[i * l..(i + 1) * l];
        for t in 0..l {
            let p = a[t] as f64;
            if p > 0.0 {
                h -= p * p.ln();
            }
            if t == l - 1 {
                ms += p;
                continue;
            }
            match task.kind(row[t] as usize) {
                TokenKind::Distinct(_) => md += p,
                TokenKind::Common => mc += p,
                TokenKind::Query(_) => ms += p,
            }
        }
    }
    let n = batch.n.max(1) as f64;
    AttnStats {
        entropy: (h / n) as f32,
        mass_distinct: (md / n) as f32,
        mass_common: (mc / n) as f32,
        mass_self: (ms / n) as f32,
    }
}

/// One training run. `train_size` 0 means fresh samples every step.
/// Returns the trace and the training set (None for infinite data).
pub(crate) fn train_run(
    cfg: &ScanSnapConfig,
    lr_attention: f64,
    lr_decoder: f64,
    train_size: usize,
    seed: u64,
    steps: u64,
) -> Result<(Trace, Option<Batch>), ScanSnapError> {
    let task = Task::new(cfg.task.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut eval_rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, Stream::ScanSnapEval));
    let model = ToyModel::new(cfg, task.vocab_size(), &mut rng);
    let mut opts = model.sgd();
    let eval = task.sample(cfg.task.eval_size, &mut eval_rng);
    let train_set = (train_size > 0).then(|| task.sample(train_size, &mut rng));
    let nq = cfg.task.n_queries;
    let dim = nq * task.vocab_size();
    let mut tr = Trace::default();
    let mut last_train_loss = f32::NAN;
    for step in 0..=steps {
        if step % cfg.train.eval_every == 0 || step == steps {
            let (logits, attn) = tch::no_grad(|| model.forward(&eval));
            let labels = Tensor::from_slice(&eval.labels);
            let loss = logits.cross_entropy_for_logits(&labels).double_value(&[]) as f32;
            let acc =
                logits.argmax(-1, false).eq_tensor(&labels).to_kind(Kind::Float).mean(Kind::Float).double_value(&[])
                    as f32;
            let attn: Vec<f32> = Vec::<f32>::try_from(attn.flatten(0, -1))?;
            let st = attention_stats(&task, &eval, &attn);
            tr.steps.push(step);
            tr.train_loss.push(last_train_loss);
            tr.eval_loss.push(loss);
            tr.eval_acc.push(acc);
            tr.entropy.push(st.entropy);
            tr.mass_distinct.push(st.mass_distinct);
            tr.mass_common.push(st.mass_common);
            tr.mass_self.push(st.mass_self);
            tr.logits.extend(model.logit_table(nq)?);
            if !loss.is_finite() {
                return Err(ScanSnapError::Diverged { step, lr_attention, lr_decoder });
            }
        }
        if step == steps {
            break;
        }
        let batch = match &train_set {
            None => task.sample(cfg.train.batch_size, &mut rng),
            Some(ts) if ts.n <= cfg.train.batch_size => ts.clone(),
            Some(ts) => {
                let idx: Vec<usize> = (0..cfg.train.batch_size).map(|_| rng.gen_range(0..ts.n)).collect();
                ts.select(&idx)
            }
        };
        let (logits, _) = model.forward(&batch);
        let loss = logits.cross_entropy_for_logits(&Tensor::from_slice(&batch.labels));
        last_train_loss = loss.double_value(&[]) as f32;
        model.sgd_step(&mut opts, &loss, lr_attention, lr_decoder);
    }
    tr.dim = dim;
    tr.rel_change = freeze::relative_change(&tr.steps, &tr.logits, dim, cfg.freeze.window, cfg.freeze.scale);
    tr.snap_step = freeze::snap_from_changes(&tr.steps, &tr.rel_change, cfg.freeze.window, cfg.freeze.threshold);
    tr.steepest_drop_step = freeze::steepest_drop(&tr.steps, &tr.entropy, cfg.freeze.window);
    Ok((tr, train_set))
}
