"""Plain PyTorch SGLD loop on a headlab checkpoint (the reference for tools/bench-llc).

    python tools/bench_llc.py CKPT FRAMES.h5 CHAINS DRAWS BATCH "1 2" [DEVICE]

FRAMES.h5 holds the training frames' features x [R,N,F] and targets y [R,N,2D]
(written by the Rust side of the benchmark). Same update as headlab llc:
w <- w - eps/2 (gamma (w - w*) + n beta grad L_B(w)) + N(0, eps), loss MSE,
chains one after the other; whole model, head 0 of the first layer and
head 0 of the last layer (masked: only that layer's attention weights are
differentiated). DEVICE: cpu (default), cuda or cuda:N.

"whole-paired" is the whole-model loop doing what headlab's estimator does
besides sampling: a fixed partition of the frames into batches, a random
batch per draw, and the loss at w* of each batch the first time it is drawn
(no_grad, cached), for the paired estimate nβ(L_B(w) − L_B(w*)). The same
work as headlab's "whole" row (which starts with an empty cache).
"""
import math
import sys
import time

import h5py
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import headlab_torch  # noqa: E402


def run(model, x, y, chains, draws, batch, head, device, paired=False):
    names = list(model.P.keys())
    star = {k: v.detach().clone() for k, v in model.P.items()}
    masks = None
    if head:
        masks = {}
        for p in ["W_Q", "W_K", "W_V", "b_Q", "b_K", "b_V", "W_O"]:
            k = f"blocks.{head - 1}.attn.{p}"
            m = torch.zeros_like(star[k])
            m[0] = 1.0
            masks[k] = m
    moving = [k for k in names if masks is None or k in masks]
    n = x.shape[0]
    nbeta = n / math.log(n)
    eps, gamma = 1e-5, 1000.0
    g = torch.Generator(device=device).manual_seed(0)
    total = 0.0
    if paired:
        nb = n // batch
        parts = torch.randperm(n, generator=g, device=device)[: nb * batch].view(nb, batch)
        at_star = {}
    for _ in range(chains):
        for k in names:
            model.P[k] = star[k].clone().requires_grad_(k in moving)
        for _ in range(draws):
            if paired:
                b = int(torch.randint(0, nb, (1,), generator=g, device=device))
                idx = parts[b]
                if b not in at_star:
                    with torch.no_grad():
                        saved = dict(model.P)
                        model.P.update(star)
                        at_star[b] = torch.nn.functional.mse_loss(model.forward(x[idx])[0], y[idx]).item()
                        model.P.update(saved)
                total -= at_star[b]
            else:
                idx = torch.randint(0, n, (batch,), generator=g, device=device)
            out, _ = model.forward(x[idx])
            loss = torch.nn.functional.mse_loss(out, y[idx])
            grads = torch.autograd.grad(loss, [model.P[k] for k in moving])
            with torch.no_grad():
                for k, gr in zip(moving, grads):
                    w = model.P[k]
                    step = -0.5 * eps * (gamma * (w - star[k]) + nbeta * gr) + math.sqrt(eps) * torch.randn(w.shape, generator=g, device=device)
                    if masks is not None:
                        step = step * masks[k]
                    w.add_(step)
            total += loss.item()
    return total


def main():
    ckpt, frames, chains, draws, batch, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
    device = sys.argv[7] if len(sys.argv) > 7 else "cpu"
    with h5py.File(frames, "r") as f:
        x = torch.tensor(f["x"][...]).to(device)
        y = torch.tensor(f["y"][...]).to(device)
    model = headlab_torch.load(ckpt, device=device)
    last = model.cfg["n_layers"]
    for t in threads.split():
        torch.set_num_threads(int(t))
        for head in (0, "paired", 1, last) if last > 1 else (0, "paired", 1):  # 0: whole model; l: head 0 of layer l-1
            sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            if head == "paired":
                run(model, x, y, chains, draws, batch, 0, device, paired=True)
            else:
                run(model, x, y, chains, draws, batch, head, device)
            sync()
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            mode = "whole-paired" if head == "paired" else f"head{head - 1}.0" if head else "whole"
            print(f"torch {mode:8} threads {t}: {chains * draws / dt:8.1f} draws/s  {chains * draws / cpu:8.1f} draws/cpu-s")


if __name__ == "__main__":
    main()
