"""headlab_torch: the headlab particle transformer in plain PyTorch.

Loads any checkpoint written by `headlab train` (h5py only, no headlab
install) and reproduces the Rust forward pass, hooks included:

    import sys; sys.path.insert(0, "tools")
    import headlab_torch as ht
    model = ht.load("checkpoints/demo/ckpt/step_00001000.h5")
    x = model.features(pos, vel, radii, masses)   # pos/vel [B,N,D], radii/masses [B,N]
    y, cache = model.forward(x, record=True)      # y: normalized (dpos, dvel) [B,N,2D]
    cache["blocks.1.attn.hook_pattern"]           # [batch, head, query, key]
    y2, _ = model.forward(x, hooks={"blocks.0.attn.hook_z": ht.zero_head(1)})  # ablate head 0.1
    dstate = model.denormalize(y)                 # physical (dpos, dvel)

Checkpoint layout: /params/<TransformerLens name> (e.g. "blocks.0.attn.W_Q",
[n_heads, d_model, d_head]), /norm/{input_mean,input_std,target_mean,
target_std,box_size,wall_range}, root attribute `config` (the run's TOML,
architecture under [model]), `step`.

Hooks follow TransformerLens: `hooks` maps a hook name to a function whose
return value replaces the activation (Model.hook_names() lists them).

Command line (used by the Rust parity test):
    python tools/headlab_torch.py parity CKPT.h5 INPUT.h5 OUTPUT.h5 [LAYER HEAD]
reads /pos /vel /radii /masses from INPUT.h5 and writes the features, the
output and every hook to OUTPUT.h5; with LAYER HEAD also /output_zero_z, the
output with that head's blocks.LAYER.attn.hook_z zeroed.
"""

import math
import sys
import tomllib

import h5py
import numpy as np
import torch
import torch.nn.functional as F

MODEL_DEFAULTS = dict(n_layers=2, n_heads=4, d_model=64, d_head=0, d_mlp=0, activation="gelu",
                      attention=dict(kind="softmax", scale="inv-sqrt-d-head"), dropout=0.0,
                      ln_eps=1e-5, wall_features=True, init_scale=1.0, mlp=True, layer_norm=True)


def model_config(cfg_toml: str) -> dict:
    """The [model] table of a run config, with headlab's defaults filled in."""
    m = {**MODEL_DEFAULTS, **tomllib.loads(cfg_toml).get("model", {})}
    m["attention"] = {**MODEL_DEFAULTS["attention"], **m.get("attention", {})}
    m["d_head"] = m["d_head"] or m["d_model"] // m["n_heads"]
    m["d_mlp"] = m["d_mlp"] or 4 * m["d_model"]
    return m


def param_shapes(c: dict, dim: int):
    """Names and shapes in model order (same as headlab_model::param_shapes)."""
    d, h, dh, dm = c["d_model"], c["n_heads"], c["d_head"], c["d_mlp"]
    f = 2 * dim + 2 + (2 * dim if c["wall_features"] else 0)
    ln, mlp = c["layer_norm"], c["mlp"]                      # switched-off parts have no parameters
    out = [("embed.W_in", (f, d)), ("embed.b_in", (d,))]
    for l in range(c["n_layers"]):
        b = f"blocks.{l}."
        out += [(b + "ln1.w", (d,)), (b + "ln1.b", (d,))] if ln else []
        out += [(b + f"attn.W_{x}", (h, d, dh)) for x in "QKV"]
        out += [(b + f"attn.b_{x}", (h, dh)) for x in "QKV"]
        out += [(b + "attn.W_O", (h, dh, d)), (b + "attn.b_O", (d,))]
        out += [(b + "ln2.w", (d,)), (b + "ln2.b", (d,))] if ln and mlp else []
        out += [(b + "mlp.W_in", (d, dm)), (b + "mlp.b_in", (dm,)), (b + "mlp.W_out", (dm, d)), (b + "mlp.b_out", (d,))] if mlp else []
    out += [("ln_final.w", (d,)), ("ln_final.b", (d,))] if ln else []
    return out + [("unembed.W_out", (d, 2 * dim)), ("unembed.b_out", (2 * dim,))]


class Model:
    def __init__(self, cfg: dict, params: dict, norm: dict):
        self.cfg, self.P, self.norm = cfg, params, norm

    def parameters(self):
        return list(self.P.values())

    # --- inputs and outputs -------------------------------------------------
    def features(self, pos, vel, radii, masses):
        """Normalized features [B,N,F]: pos, vel, radius, mass, clipped wall gaps."""
        n = self.norm
        r = radii.unsqueeze(-1)
        parts = [pos, vel, r, masses.unsqueeze(-1)]
        if self.cfg["wall_features"]:
            parts += [((pos - r) / n["wall_range"]).clamp(-1, 1), ((n["box_size"] - pos - r) / n["wall_range"]).clamp(-1, 1)]
        return (torch.cat(parts, -1) - n["input_mean"]) / n["input_std"]

    def denormalize(self, y):
        return y * self.norm["target_std"] + self.norm["target_mean"]

    # --- the transformer ----------------------------------------------------
    def forward(self, x, record=False, hooks=None):
        """Normalized prediction [B,N,2D] and, if `record`, every hook activation.

        `hooks` maps a TransformerLens hook name (self.hook_names(); the table
        in crates/model/src/hooks.rs) to a function (tensor, name) -> tensor
        whose return value replaces the activation; recording keeps the
        replaced value.
        Per-head tensors are [batch, pos, head, d_head]; scores and patterns
        [batch, head, query, key]."""
        c, P = self.cfg, self.P
        d, dh, eps = c["d_model"], c["d_head"], c["ln_eps"]
        n = x.shape[1]
        kind = c["attention"]["scale"]           # see AttentionScale in crates/model
        scale = {"inv-sqrt-d-head": 1 / math.sqrt(dh), "inv-d-head": 1 / dh, "none": 1.0, "inv-key-norm-sum": 1.0,
                 "inv-n": 1 / n, "inv-sqrt-n": 1 / math.sqrt(n), "inv-log-n": 1 / math.log(n) if n >= 2 else 1.0}[kind]
        act = {"gelu": F.gelu, "gelu-tanh": lambda t: F.gelu(t, approximate="tanh"), "relu": F.relu, "silu": F.silu}[c["activation"]]
        def ln(t, w):                                                      # identity when layer_norm = false
            return F.layer_norm(t, (d,), P[w + ".w"], P[w + ".b"], eps) if c["layer_norm"] else t
        hooks, cache = hooks or {}, {}
        unknown = set(hooks) - set(self.hook_names())
        if unknown:
            raise KeyError(f"no such hook point: {sorted(unknown)}")
        def hook(name, t):
            if name in hooks:
                r = hooks[name](t, name)
                assert r.shape == t.shape, f"hook {name} returned {tuple(r.shape)}, the activation is {tuple(t.shape)}"
                t = r
            if record:
                cache[name] = t.detach()
            return t
        resid = hook("hook_embed", x @ P["embed.W_in"] + P["embed.b_in"])  # [B,N,d]
        for l in range(c["n_layers"]):
            p = lambda s: P[f"blocks.{l}.{s}"]
            b = f"blocks.{l}."
            resid = hook(b + "hook_resid_pre", resid)
            a = hook(b + "ln1.hook_normalized", ln(resid, f"blocks.{l}.ln1"))
            q = hook(b + "attn.hook_q", torch.einsum("bnd,hde->bnhe", a, p("attn.W_Q")) + p("attn.b_Q"))   # [B,N,H,dh]
            k = hook(b + "attn.hook_k", torch.einsum("bnd,hde->bnhe", a, p("attn.W_K")) + p("attn.b_K"))
            v = hook(b + "attn.hook_v", torch.einsum("bnd,hde->bnhe", a, p("attn.W_V")) + p("attn.b_V"))
            scores = torch.einsum("bqhe,bkhe->bhqk", q, k) * scale         # [B,H,query,key]
            if kind == "inv-key-norm-sum":                                 # Bernhard 2023: divide by sum_j |k_j|
                scores = scores / k.norm(dim=-1).clamp_min(1e-30).sum(1)[:, :, None, None].clamp_min(1e-12)
            scores = hook(b + "attn.hook_attn_scores", scores)
            pattern = hook(b + "attn.hook_pattern", scores.softmax(-1) if c["attention"]["kind"] == "softmax" else scores / n)
            z = hook(b + "attn.hook_z", torch.einsum("bhqk,bkhe->bqhe", pattern, v))           # [B,N,H,dh]
            attn_out = hook(b + "hook_attn_out", torch.einsum("bnhe,hed->bnd", z, p("attn.W_O")) + p("attn.b_O"))
            resid = resid + attn_out
            if c["mlp"]:
                resid = hook(b + "hook_resid_mid", resid)
                m = hook(b + "ln2.hook_normalized", ln(resid, f"blocks.{l}.ln2"))
                pre = hook(b + "mlp.hook_pre", m @ p("mlp.W_in") + p("mlp.b_in"))
                post = hook(b + "mlp.hook_post", act(pre))
                resid = resid + hook(b + "hook_mlp_out", post @ p("mlp.W_out") + p("mlp.b_out"))
            resid = hook(b + "hook_resid_post", resid)
        out = hook("ln_final.hook_normalized", ln(resid, "ln_final")) @ P["unembed.W_out"] + P["unembed.b_out"]
        return out, cache

    def hook_names(self):
        """Every hook name, in forward order (same as Model::hook_names)."""
        block = ["hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v",
                 "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "hook_attn_out"]
        block += ["hook_resid_mid", "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out"] if self.cfg["mlp"] else []
        block += ["hook_resid_post"]
        return ["hook_embed"] + [f"blocks.{l}.{h}" for l in range(self.cfg["n_layers"]) for h in block] + ["ln_final.hook_normalized"]

    __call__ = forward


def load(path, device="cpu") -> Model:
    """Rebuild the model of a headlab checkpoint."""
    with h5py.File(path, "r") as f:
        cfg = model_config(f.attrs["config"])
        params = {k: torch.tensor(f["params"][k][...], device=device) for k in f["params"]}
        norm = {k: torch.tensor(f["norm"][k][...], device=device) for k in f["norm"]}
    norm["wall_range"] = float(norm["wall_range"][0])
    dim = len(norm["box_size"])
    for name, shape in param_shapes(cfg, dim):
        assert tuple(params[name].shape) == shape, f"{path}: {name} has shape {tuple(params[name].shape)}, expected {shape}"
        params[name].requires_grad_(True)
    return Model(cfg, {name: params[name] for name, _ in param_shapes(cfg, dim)}, norm)


def init(cfg: dict, norm: dict, dim: int, seed=0, device="cpu") -> Model:
    """A fresh model (PyTorch RNG; same distributions as headlab, not the same numbers)."""
    g = torch.Generator().manual_seed(seed)
    params = {}
    for name, shape in param_shapes(cfg, dim):
        leaf = name.rsplit(".", 1)[1]
        if leaf.startswith("b"):
            t = torch.zeros(shape)
        elif leaf == "w":
            t = torch.ones(shape)
        else:
            fan_in = shape[1] if leaf in ("W_Q", "W_K", "W_V") else shape[0] * shape[1] if leaf == "W_O" else shape[0]
            std = cfg["init_scale"] / math.sqrt(3 * fan_in)
            if leaf == "W_O" or name.endswith("mlp.W_out"):
                std /= math.sqrt(2 * cfg["n_layers"])
            t = torch.randn(shape, generator=g) * std
        params[name] = t.to(device).requires_grad_(True)
    return Model(cfg, params, norm)


def zero_head(head):
    """A hook on hook_z (or hook_q/k/v) that zeroes one head: [batch, pos, head, d_head]."""
    def f(t, name):
        t = t.clone()
        t[:, :, head] = 0
        return t
    return f


def _parity(ckpt, inp, out, zero_z_layer=None, zero_z_head=None):
    torch.set_num_threads(1)
    model = load(ckpt)
    with h5py.File(inp, "r") as f:
        s = {k: torch.tensor(f[k][...]) for k in ("pos", "vel", "radii", "masses")}
    with torch.no_grad():
        x = model.features(s["pos"], s["vel"], s["radii"], s["masses"])
        y, cache = model.forward(x, record=True)
        if zero_z_layer is not None:
            hooks = {f"blocks.{int(zero_z_layer)}.attn.hook_z": zero_head(int(zero_z_head))}
            y_zero, _ = model.forward(x, hooks=hooks)
    with h5py.File(out, "w") as f:
        f["features"] = x.numpy()
        f["output"] = y.numpy()
        for k, v in cache.items():
            f[k] = v.numpy()
        if zero_z_layer is not None:
            f["output_zero_z"] = y_zero.numpy()


if __name__ == "__main__":
    if len(sys.argv) in (5, 7) and sys.argv[1] == "parity":
        _parity(*sys.argv[2:])
    else:
        sys.exit(__doc__)
