"""PyTorch eager references for tools/bench-train: the same model, data,
batch, optimizer (Adam, warm-up + cosine, gradient clipping at 1.0) and
threads as `headlab train`, as a loop written three ways:

    python tools/bench_train.py DATA.h5 D_MODEL N_LAYERS N_HEADS BATCH THREADS STEPS DEVICE [VARIANT]

- plain: the model of tools/headlab_torch.py (einsum per projection, the
  TransformerLens parameter layout) and torch.optim.Adam's default code;
- fused: the same with torch.optim.Adam(fused=True);
- lean: the best-written eager PyTorch we know for this model: one fused QKV
  projection (F.linear on a [3d, d] weight), F.layer_norm, F.gelu,
  F.scaled_dot_product_attention (the model's softmax(q·k/sqrt(d_head))
  attention, no mask, no dropout: the same function), Adam(fused=True),
  clip_grad_norm_(foreach=True), zero_grad(set_to_none=True);
- lean-tl: lean with headlab's (TransformerLens's) [in, out] weight layout,
  each projection `torch.addmm(b, x, W)` as in crates/model: autograd then
  computes x·W, g·Wᵀ and xᵀ·g where lean's [out, in] weights give x·Wᵀ,
  g·W and gᵀ·x. Everything else is lean's: the pair measures what the
  layout alone costs or saves.
- lean-manual: lean with a hand-written backward pass instead of autograd,
  calling the same libtorch kernels (the flash-attention, layer-norm and
  GELU backward functions, the same matrix products): what autograd's
  bookkeeping costs (checked against autograd's gradients at start-up);
- lean-compiled: lean's loss compiled by torch.compile (Inductor: fused
  C++ kernels generated for this model, forward and backward; compiled in
  the warm-up steps): what PyTorch's own compiler makes of the same loop.

Prints one JSON line: steps per second of wall-clock time and per second of
CPU time of the process (all its threads; on a shared machine the second is
the steadier measure of the work done, the first what a user waits for).
"""
import json
import math
import os
import sys
import time

import h5py
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import headlab_torch as ht  # noqa: E402


class Lean:
    """The headlab model written the lean way (same function, same parameter
    count): QKV as one [3d, d] weight, W_O and the MLP as F.linear weights,
    F.layer_norm, F.gelu, F.scaled_dot_product_attention. Initialised from a
    headlab_torch model (same numbers, other layout). `tl`: the weights of
    the projections stored [in, out] (headlab's layout) and applied by addmm."""

    def __init__(self, m, tl=False):
        c, P = m.cfg, m.P
        assert c["attention"]["kind"] == "softmax" and c["attention"]["scale"] == "inv-sqrt-d-head"
        assert c["activation"] == "gelu" and c["mlp"] and c["layer_norm"] and c["dropout"] == 0
        self.c, self.tl = c, tl
        d, h, dh = c["d_model"], c["n_heads"], c["d_head"]
        leaf = lambda t: t.detach().clone().contiguous().requires_grad_(True)
        # A weight given in lean's [out, in] layout, stored as the variant wants it.
        wleaf = (lambda t: leaf(t.t())) if tl else leaf
        self.P = {"embed.W": wleaf(P["embed.W_in"].t()), "embed.b": leaf(P["embed.b_in"])}
        for l in range(c["n_layers"]):
            p = lambda s: P[f"blocks.{l}.{s}"]
            b = f"blocks.{l}."
            w_qkv = torch.cat([p(f"attn.W_{x}") for x in "QKV"], 0)          # [3H, d, dh]
            self.P.update({
                b + "ln1.w": leaf(p("ln1.w")), b + "ln1.b": leaf(p("ln1.b")),
                b + "qkv.W": wleaf(w_qkv.permute(0, 2, 1).reshape(3 * h * dh, d)),
                b + "qkv.b": leaf(torch.cat([p(f"attn.b_{x}") for x in "QKV"], 0).reshape(-1)),
                b + "o.W": wleaf(p("attn.W_O").reshape(h * dh, d).t()), b + "o.b": leaf(p("attn.b_O")),
                b + "ln2.w": leaf(p("ln2.w")), b + "ln2.b": leaf(p("ln2.b")),
                b + "fc.W": wleaf(p("mlp.W_in").t()), b + "fc.b": leaf(p("mlp.b_in")),
                b + "proj.W": wleaf(p("mlp.W_out").t()), b + "proj.b": leaf(p("mlp.b_out")),
            })
        self.P.update({"lnf.w": leaf(P["ln_final.w"]), "lnf.b": leaf(P["ln_final.b"]),
                       "unembed.W": wleaf(P["unembed.W_out"].t()), "unembed.b": leaf(P["unembed.b_out"])})

    def parameters(self):
        return list(self.P.values())

    def linear(self, x, name):
        W, b = self.P[name + ".W"], self.P[name + ".b"]
        if not self.tl:
            return F.linear(x, W, b)
        return torch.addmm(b, x.reshape(-1, x.shape[-1]), W).view(*x.shape[:-1], W.shape[1])

    def loss_and_grads(self, x, y):
        """The MSE loss of the batch, with every parameter's .grad set by a
        hand-written backward pass (no autograd) through the same libtorch
        kernels forward() calls."""
        c, P = self.c, {k: v.detach() for k, v in self.P.items()}
        assert not self.tl
        d, h, dh, eps = c["d_model"], c["n_heads"], c["d_head"], c["ln_eps"]
        B, N, Fi = x.shape
        T = B * N
        G = {}
        aten = torch.ops.aten

        def lin_back(g, inp, name):  # y = inp·Wᵀ + b: dW = gᵀ·inp, db = Σg, returns d inp
            G[name + ".W"], G[name + ".b"] = g.t().mm(inp), g.sum(0)
            return g.mm(P[name + ".W"])

        def ln_back(g, inp, mean, rstd, name):
            dx, G[name + ".w"], G[name + ".b"] = aten.native_layer_norm_backward(
                g, inp, (d,), mean, rstd, P[name + ".w"], P[name + ".b"], [True, True, True])
            return dx

        lin = lambda t, name: F.linear(t, P[name + ".W"], P[name + ".b"])
        with torch.no_grad():
            xs = x.reshape(T, Fi)
            r = lin(xs, "embed")
            saved = []
            for l in range(c["n_layers"]):
                b = f"blocks.{l}."
                a, mu1, rs1 = aten.native_layer_norm(r, (d,), P[b + "ln1.w"], P[b + "ln1.b"], eps)
                q, k, v = lin(a, b + "qkv").view(B, N, 3, h, dh).permute(2, 0, 3, 1, 4)
                o, lse = aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False)
                z = o.transpose(1, 2).reshape(T, h * dh)
                r1 = r + lin(z, b + "o")
                m, mu2, rs2 = aten.native_layer_norm(r1, (d,), P[b + "ln2.w"], P[b + "ln2.b"], eps)
                pre = lin(m, b + "fc")
                post = F.gelu(pre)
                saved.append((r, a, mu1, rs1, q, k, v, o, lse, z, r1, m, mu2, rs2, pre, post))
                r = r1 + lin(post, b + "proj")
            fin, muf, rsf = aten.native_layer_norm(r, (d,), P["lnf.w"], P["lnf.b"], eps)
            diff = lin(fin, "unembed") - y.reshape(T, -1)
            loss = diff.square().mean()
            g = lin_back(diff * (2.0 / diff.numel()), fin, "unembed")
            g = ln_back(g, r, muf, rsf, "lnf")
            for l in reversed(range(c["n_layers"])):
                b = f"blocks.{l}."
                r0, a, mu1, rs1, q, k, v, o, lse, z, r1, m, mu2, rs2, pre, post = saved[l]
                gm = lin_back(aten.gelu_backward(lin_back(g, post, b + "proj"), pre), m, b + "fc")
                g = g + ln_back(gm, r1, mu2, rs2, b + "ln2")
                gz = lin_back(g, z, b + "o").view(B, N, h, dh).transpose(1, 2)
                gq, gk, gv = aten._scaled_dot_product_flash_attention_for_cpu_backward(gz, q, k, v, o, lse, 0.0, False)
                gqkv = torch.stack([gq, gk, gv], 0).permute(1, 3, 0, 2, 4).reshape(T, 3 * h * dh)
                g = g + ln_back(lin_back(gqkv, a, b + "qkv"), r0, mu1, rs1, b + "ln1")
            lin_back(g, xs, "embed")
        for name, p in self.P.items():
            p.grad = G[name]
        return loss

    def forward(self, x):
        c, P = self.c, self.P
        d, h, dh, eps = c["d_model"], c["n_heads"], c["d_head"], c["ln_eps"]
        B, N, _ = x.shape
        r = self.linear(x, "embed")
        for l in range(c["n_layers"]):
            b = f"blocks.{l}."
            a = F.layer_norm(r, (d,), P[b + "ln1.w"], P[b + "ln1.b"], eps)
            q, k, v = self.linear(a, b + "qkv").view(B, N, 3, h, dh).permute(2, 0, 3, 1, 4)
            z = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, h * dh)
            r = r + self.linear(z, b + "o")
            m = F.layer_norm(r, (d,), P[b + "ln2.w"], P[b + "ln2.b"], eps)
            r = r + self.linear(F.gelu(self.linear(m, b + "fc")), b + "proj")
        r = F.layer_norm(r, (d,), P["lnf.w"], P["lnf.b"], eps)
        return self.linear(r, "unembed"), {}


def main():
    path, d_model, n_layers, n_heads, batch, threads, steps, device = sys.argv[1:9]
    variant = sys.argv[9] if len(sys.argv) > 9 else "plain"
    variants = ("plain", "fused", "lean", "lean-tl", "lean-manual", "lean-compiled")
    if variant not in variants:
        sys.exit(f"unknown variant {variant}: use one of {', '.join(variants)}")
    if variant == "lean-manual" and device != "cpu":
        sys.exit("lean-manual calls the CPU flash-attention kernels: run it with DEVICE cpu")
    lean = variant.startswith("lean")
    fused = variant == "fused" or lean
    d_model, n_layers, n_heads, batch, threads, steps = map(int, (d_model, n_layers, n_heads, batch, threads, steps))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with h5py.File(path, "r") as f:
        pos, vel = torch.tensor(f["positions"][...]), torch.tensor(f["velocities"][...])
        radii, masses = torch.tensor(f["radii"][...]), torch.tensor(f["masses"][...])
        box = [float(x) for x in f.attrs["box"]] if "box" in f.attrs else [float(x) for x in f.attrs["box_size"]]
    T, Fr, N, D = pos.shape
    cfg = ht.model_config(f"[model]\nd_model = {d_model}\nn_layers = {n_layers}\nn_heads = {n_heads}\n")
    # Normalization over the whole data (speed does not depend on it).
    r = radii[:, None, :].expand(T, Fr, N)
    m = masses[:, None, :].expand(T, Fr, N)
    norm = {"box_size": torch.tensor(box), "wall_range": 3 * float(radii.max()),
            "input_mean": torch.zeros(4 * D + 2), "input_std": torch.ones(4 * D + 2)}
    model = ht.Model(cfg, {}, norm)
    raw = model.features(pos, vel, r, m).reshape(T * Fr, N, -1)
    norm["input_mean"], norm["input_std"] = raw.mean((0, 1)), raw.std((0, 1)).clamp_min(1e-6)
    tgt = torch.cat([pos[:, 1:] - pos[:, :-1], vel[:, 1:] - vel[:, :-1]], -1).reshape(-1, N, 2 * D)
    tmean, tstd = tgt.mean((0, 1)), tgt.std((0, 1))
    norm.update(target_mean=tmean, target_std=tstd)
    x_all = model.features(pos[:, :-1], vel[:, :-1], r[:, :-1], m[:, :-1]).reshape(-1, N, 4 * D + 2).to(device)
    y_all = ((tgt - tmean) / tstd).to(device)
    model = ht.init(cfg, {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in norm.items()}, D, seed=0, device=device)
    if lean:
        ref, model = model, Lean(model, tl=variant == "lean-tl")
        with torch.no_grad():                         # the same function as the reference model
            xb = x_all[:8]
            err = (ref.forward(xb)[0] - model.forward(xb)[0]).abs().max().item()
        assert err < 1e-4, f"lean model differs from headlab_torch by {err}"
        if variant == "lean-manual":                  # the hand-written backward against autograd's
            yb = y_all[:8]
            torch.nn.functional.mse_loss(model.forward(xb)[0], yb).backward()
            auto = {k: p.grad.clone() for k, p in model.P.items()}
            model.loss_and_grads(xb, yb)
            for k, p in model.P.items():
                gerr = (p.grad - auto[k]).abs().max().item() / max(auto[k].abs().max().item(), 1e-12)
                assert gerr < 1e-4, f"hand-written gradient of {k} differs from autograd's by {gerr} (relative)"
                p.grad = None
    params = model.parameters()
    opt = torch.optim.Adam(params, lr=1e-3, fused=True) if fused else torch.optim.Adam(params, lr=1e-3)
    total, warm = steps + 20, 50
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else
                                              0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm)))))

    def autograd_loss(xb, yb):
        return torch.nn.functional.mse_loss(model.forward(xb)[0], yb)

    compiled_loss = torch.compile(autograd_loss) if variant == "lean-compiled" else None

    def step():
        idx = torch.randint(0, x_all.shape[0], (batch,), device=device)
        if variant == "lean-manual":
            loss = model.loss_and_grads(x_all[idx], y_all[idx])
        else:
            loss = (compiled_loss or autograd_loss)(x_all[idx], y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True if lean else None)
        opt.step()
        sched.step()
        return loss.item()

    for _ in range(20):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t, c = time.perf_counter(), time.process_time()
    for _ in range(steps):
        last = step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt, dc = time.perf_counter() - t, time.process_time() - c
    if os.environ.get("HEADLAB_BENCH_PROFILE"):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(20):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30), file=sys.stderr)
    print(json.dumps({"impl": ("pytorch-" if compiled_loss else "pytorch-eager-") + variant, "d_model": d_model, "n_layers": n_layers,
                      "batch": batch, "threads": threads, "params": sum(p.numel() for p in params), "steps": steps,
                      "steps_per_s": round(steps / dt, 2), "steps_per_cpu_s": round(steps / max(dc, 1e-9), 2),
                      "final_loss": round(last, 5)}))


if __name__ == "__main__":
    main()
