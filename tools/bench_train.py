"""PyTorch eager reference for tools/bench-train: the same model
(tools/headlab_torch.py), data, batch, optimizer (Adam, warm-up + cosine,
gradient clipping at 1.0) and threads as `headlab train`, as a plain loop.

    python tools/bench_train.py DATA.h5 D_MODEL N_LAYERS N_HEADS BATCH THREADS STEPS DEVICE [fused]

Prints one JSON line with steps per second. `fused` uses torch.optim.Adam(fused=True)
instead of the default implementation.
"""
import json
import math
import os
import sys
import time

import h5py
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import headlab_torch as ht  # noqa: E402


def main():
    path, d_model, n_layers, n_heads, batch, threads, steps, device = sys.argv[1:9]
    fused = len(sys.argv) > 9 and sys.argv[9] == "fused"
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
    params = model.parameters()
    opt = torch.optim.Adam(params, lr=1e-3, fused=True) if fused else torch.optim.Adam(params, lr=1e-3)
    total, warm = steps + 20, 50
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else
                                              0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm)))))

    def step():
        idx = torch.randint(0, x_all.shape[0], (batch,), device=device)
        pred, _ = model.forward(x_all[idx])
        loss = torch.nn.functional.mse_loss(pred, y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        return loss.item()

    for _ in range(20):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        last = step()
    dt = time.perf_counter() - t
    print(json.dumps({"impl": "pytorch-eager" + ("-fused-adam" if fused else ""), "d_model": d_model, "n_layers": n_layers,
                      "batch": batch, "threads": threads, "params": sum(p.numel() for p in params), "steps": steps,
                      "steps_per_s": round(steps / dt, 2), "final_loss": round(last, 5)}))


if __name__ == "__main__":
    main()
