"""devinterp 1.3.2's SGLD LLC estimate on a headlab checkpoint: the external
reference for `headlab llc`'s speed (`tools/bench-llc --devinterp` runs it beside
headlab's bench_llc; the issue asks headlab >= 2x devinterp's draws/s).

    PYTHONPATH=$HEADLAB_CACHE/devinterp python tools/bench_llc_devinterp.py CKPT FRAMES.h5 CHAINS DRAWS BATCH "1 2" [DEVICE]

Reproduce the figures of the report (installs devinterp into the cache on demand):

    target/debug/examples/bench_probe /tmp/dvi-run 16 2 16 0 1
    tools/bench-llc /tmp/dvi-run/n16/run /tmp/dvi-run/n16/data.h5 --threads 1 --repeats 3 --devinterp

FRAMES.h5 holds the training frames' features x [R,N,F] and targets y [R,N,2D]
(written by crates/probe/examples/bench_llc.rs). Same settings as headlab's
side: MSE loss, batch BATCH, lr (epsilon) 1e-5, localization (gamma) 1000,
nbeta = n / ln n with n = R frames, CHAINS chains one after the other
(cores=1), DRAWS draws, no burn-in, one step between draws. Sampled through
devinterp's public entry point, estimate_learning_coeff_with_summary with its
default sampling_method (devinterp.optim.SGLD) and callbacks=[] (only its own
LLCEstimator, which stores the loss of each draw), verbose=False (no tqdm bar),
online=False. What devinterp still does beyond the update itself, by its
design: it builds the batches with a torch DataLoader (TensorDataset,
shuffle=True: one __getitem__ per frame and a collate per batch), evaluates
the initial loss on CHAINS batches before sampling, deep-copies the model and
cloudpickles the loader per chain, and per step computes p - p0 for every
parameter, draws noise for every parameter and checks the loss for NaN.

Its estimate is llc = nbeta (mean draw loss - init_loss) with init_loss the
mean loss of CHAINS shuffled batches drawn from the unseeded global RNG (seed=
only seeds the chains), so with few chains it moves from run to run by nbeta
times the batch-to-batch noise of the loss (the chains themselves repeat
exactly); headlab's paired estimate compares each draw's batch with the same
batch at w*.

Modes: "whole" (every parameter moves) and "head0.0": devinterp's
optimize_over_per_model_param masks the update (gradient term, localization
and noise) to head 0 of layer 0, i.e. index [0] of blocks.0.attn.W_Q, W_K,
W_V ([H,d,dh]), b_Q, b_K, b_V ([H,dh]) and W_O ([H,dh,d]); b_O and everything
else stay at w*. devinterp still computes the gradient and draws noise for
every parameter (the mask multiplies them), as headlab's per-head estimate
does not need to.

Prints one line per mode and thread count, in tools/bench-llc's format:
    devinterp whole    threads 1:    123.4 draws/s    120.0 draws/cpu-s  (llc 12.345)
draws/s = CHAINS x DRAWS / wall time of the whole estimate call.
"""

import math
import sys
import time
import warnings

import h5py
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import headlab_torch  # noqa: E402

try:
    import devinterp
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary
except ImportError as e:
    sys.exit(f"bench_llc_devinterp.py: cannot import devinterp ({e}); tools/bench-llc-devinterp installs "
             "devinterp==1.3.2 into $HEADLAB_CACHE/devinterp and puts it on PYTHONPATH")

HEAD_PARAMS = ["W_Q", "W_K", "W_V", "b_Q", "b_K", "b_V", "W_O"]


class Wrapped(nn.Module):
    """The headlab model as an nn.Module whose parameters are its tensors
    (devinterp deep-copies it per chain and samples its parameters)."""

    def __init__(self, model):
        super().__init__()
        self.names = list(model.P.keys())
        self.weights = nn.ParameterList([nn.Parameter(model.P[k].detach().clone()) for k in self.names])
        self.cfg, self.norm = model.cfg, model.norm

    def forward(self, x):
        inner = headlab_torch.Model(self.cfg, dict(zip(self.names, self.weights)), self.norm)
        return inner.forward(x)[0]


def evaluate(model, data):
    x, y = data
    return F.mse_loss(model(x), y)


def head_mask(wrapped, layer, head):
    """optimize_over_per_model_param: True on head `head` of layer `layer`'s
    attention weights, False everywhere else (every parameter needs a key)."""
    keys = {f"blocks.{layer}.attn.{p}" for p in HEAD_PARAMS}
    masks = {}
    for (pname, p), name in zip(wrapped.named_parameters(), wrapped.names):
        m = torch.zeros(p.shape, dtype=torch.bool)
        if name in keys:
            m[head] = True
        masks[pname] = m
    return masks


def main():
    if len(sys.argv) not in (7, 8):
        sys.exit(__doc__)
    ckpt, frames = sys.argv[1], sys.argv[2]
    chains, draws, batch, threads = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
    device = torch.device(sys.argv[7] if len(sys.argv) == 8 else "cpu")
    with h5py.File(frames, "r") as f:
        x = torch.tensor(f["x"][...])
        y = torch.tensor(f["y"][...])
    n = x.shape[0]
    nbeta = n / math.log(n)
    wrapped = Wrapped(headlab_torch.load(ckpt))
    # devinterp warns about its deprecated SGLD class, seeded runs, draws > burn-in
    # and draws > batches per epoch: all expected here.
    warnings.filterwarnings("ignore")
    print(f"devinterp {devinterp.__file__.rsplit('/', 2)[0]}: n = {n} frames, nbeta {nbeta:.3f}, "
          f"{sum(p.numel() for p in wrapped.parameters())} parameters, batch {batch}, {chains} chains x {draws} draws, "
          f"device {device}")
    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True)
    for t in threads.split():
        torch.set_num_threads(int(t))
        for mode in ("whole", "head0.0"):
            mask = head_mask(wrapped, 0, 0) if mode == "head0.0" else None
            t0, c0 = time.perf_counter(), time.process_time()
            res = estimate_learning_coeff_with_summary(
                wrapped,
                loader,
                evaluate=evaluate,
                optimizer_kwargs=dict(lr=1e-5, localization=1000.0, nbeta=nbeta),
                num_draws=draws,
                num_chains=chains,
                num_burnin_steps=0,
                num_steps_bw_draws=1,
                cores=1,
                seed=0,
                device=device,
                verbose=False,
                optimize_over_per_model_param=mask,
                online=False,
            )
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(f"devinterp {mode:10} threads {t}: {chains * draws / dt:8.1f} draws/s  "
                  f"{chains * draws / cpu:8.1f} draws/cpu-s  (llc {res['llc/mean']:.3f})", flush=True)


if __name__ == "__main__":
    main()
