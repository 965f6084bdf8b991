"""The plain-PyTorch side of benches/sae_throughput.rhai: the same SAE
training steps (d_in 576, batch 4096, n_features 4096 and 16384, TopK k = 32)
written as a researcher would in PyTorch, timed the same way, on the same
thread count. Needs `torch` in the active Python.

    python3 benches/sae_throughput.py [--steps 4] [--threads 2] [--width 4096]
"""
import argparse
import time

import torch

D, BATCH, K = 576, 4096, 32


def sae(n, norm):
    w_dec = torch.randn(n, D)
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True) * norm
    params = [
        w_dec.clone().requires_grad_(),  # W_enc as [n, d]
        torch.zeros(n, requires_grad=True),
        w_dec.requires_grad_(),
        torch.zeros(D, requires_grad=True),
    ]
    return params, torch.optim.Adam(params, lr=5e-5, betas=(0.9, 0.999))


def relu_step(params, opt, x):
    w_enc, b_enc, w_dec, b_dec = params
    f = torch.relu(x @ w_enc.T + b_enc)
    x_hat = f @ w_dec + b_dec
    mse = (x - x_hat).pow(2).sum(1).mean()
    penalty = (f * w_dec.norm(dim=1)).sum(1).mean()
    loss = mse + 5.0 * penalty
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    return loss.item()


def topk_step(params, opt, x):
    w_enc, b_enc, w_dec, b_dec = params
    pre = (x - b_dec) @ w_enc.T + b_enc
    top = pre.topk(K, dim=-1)
    f = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
    loss = (f @ w_dec + b_dec - x).pow(2).sum(1).mean()
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    with torch.no_grad():
        w_dec /= w_dec.norm(dim=1, keepdim=True)
    return loss.item()


def tokens_per_sec(step, params, opt, data, steps):
    step(params, opt, data[0])
    start = time.perf_counter()
    for i in range(1, steps + 1):
        step(params, opt, data[i % len(data)])
    return steps * BATCH / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--width", type=int, action="append")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = torch.randn(4, BATCH, D)
    print(f"torch {torch.__version__}, {args.threads} threads")
    print(f"{'run':<14} {'n_features':>10} {'tokens_per_sec':>15} {'gflops':>8}")
    for n in args.width or [4096, 16384]:
        for name, step, norm in [("pytorch relu", relu_step, 0.1), ("pytorch topk", topk_step, 1.0)]:
            params, opt = sae(n, norm)
            tps = tokens_per_sec(step, params, opt, data, args.steps)
            print(f"{name:<14} {n:>10} {tps:>15.1f} {tps * 10 * D * n / 1e9:>8.2f}")


if __name__ == "__main__":
    main()
