"""The plain-PyTorch side of benches/sae_throughput.rhai: the same SAE
training steps (d_in 576, batch 4096, n_features 4096 and 16384, TopK k = 32)
written as a researcher would in PyTorch, timed the same way, on the same
thread count. Needs `torch` in the active Python.

    python3 benches/sae_throughput.py [--steps 6] [--threads 2] [--width 4096] [--csv rows.csv]
        [--device cuda] [--precision f32|tf32|bf16] [--batch 4096]

On a GPU the data and parameters live there and each step's `loss.item()`
waits for its kernels. Precisions are what a PyTorch user writes: tf32 sets
`torch.backends.cuda.matmul.allow_tf32`; bf16 wraps the forward in
`torch.autocast(dtype=torch.bfloat16)` and keeps f32 weights and Adam.

`--summarize A.csv B.csv ...` (no torch needed) reads the rows both sides
wrote over interleaved repetitions (benches/sae_throughput.sh) and prints
medians and the ratios the SAE issue sets as goals.
"""
import argparse
import contextlib
import csv
import statistics
import sys
import time

D, BATCH, K = 576, 4096, 32


def sae(torch, n, norm, device):
    w_dec = torch.randn(n, D, device=device)
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True) * norm
    params = [
        w_dec.clone().requires_grad_(),  # W_enc as [n, d]
        torch.zeros(n, device=device, requires_grad=True),
        w_dec.requires_grad_(),
        torch.zeros(D, device=device, requires_grad=True),
    ]
    return params, torch.optim.Adam(params, lr=5e-5, betas=(0.9, 0.999))


def relu_step(torch, params, opt, x, autocast):
    w_enc, b_enc, w_dec, b_dec = params
    with autocast():
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


def topk_step(torch, params, opt, x, autocast):
    w_enc, b_enc, w_dec, b_dec = params
    with autocast():
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


def tokens_per_sec(torch, step, params, opt, data, steps, autocast):
    step(torch, params, opt, data[0], autocast)
    start = time.perf_counter()
    for i in range(1, steps + 1):
        step(torch, params, opt, data[i % len(data)], autocast)
    return steps * data.shape[1] / (time.perf_counter() - start)


def precision_context(torch, precision, device):
    """Sets the matmul precision; returns what wraps a forward pass."""
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    if precision == "bf16":
        return lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def bench(args):
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    autocast = precision_context(torch, args.precision, args.device)
    data = torch.randn(4, args.batch, D, device=args.device)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.device}, {args.precision}")
    print(f"{'run':<14} {'n_features':>10} {'tokens_per_sec':>15} {'gflops':>8}")
    rows = []
    for n in args.width or [4096, 16384]:
        for name, step, norm in [("pytorch relu", relu_step, 0.1), ("pytorch topk", topk_step, 1.0)]:
            params, opt = sae(torch, n, norm, args.device)
            tps = tokens_per_sec(torch, step, params, opt, data, args.steps, autocast)
            gflops = tps * 10 * D * n / 1e9
            print(f"{name:<14} {n:>10} {tps:>15.1f} {gflops:>8.2f}")
            rows.append({"run": name, "n_features": n, "tokens_per_sec": tps, "gflops": gflops,
                         "device": args.device, "precision": args.precision})
            del params, opt
            if args.csv:  # after every loop, so that one that fails leaves the rows before it
                with open(args.csv, "w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(rows)


# (numerator, denominator, goal): ratios of median tokens/s the issue asks for.
RATIOS = [
    ("native relu", "pytorch relu", 1.0),
    ("native topk", "pytorch topk", 2.0),
    ("scripted relu", "native relu", 0.95),
    ("native topk", "dense topk", None),
]


def read_runs(paths):
    """Tokens/s per (precision, n_features, run) and saelab's matmul peaks per
    precision, over the CSVs of both sides (rows without a precision are f32)."""
    runs, peaks = {}, {}
    for path in paths:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                precision = row.get("precision") or "f32"
                key = (precision, int(float(row["n_features"])), row["run"])
                runs.setdefault(key, []).append(float(row["tokens_per_sec"]))
                if row.get("peak_gflops"):
                    peaks.setdefault(precision, []).append(float(row["peak_gflops"]))
    return runs, {p: statistics.median(v) for p, v in peaks.items()}


# (run, numerator precision, denominator precision, goal): the bf16 issue's
# ratios across precisions, printed when both precisions ran.
CROSS_RATIOS = [
    ("native relu", "bf16", "f32", 2.0),
    ("native topk", "bf16", "f32", 2.0),
    ("pytorch relu", "bf16", "f32", None),
    ("pytorch topk", "bf16", "f32", None),
]


def flops_per_token(run, n):
    return 2 * D * n + 8 * D * K if run == "native topk" else 10 * D * n


def summarize(paths):
    runs, peaks = read_runs(paths)
    for precision in sorted({p for p, _, _ in runs}):
        peak = peaks.get(precision, float("nan"))
        label = "" if precision == "f32" else f", {precision}"
        print(f"\nmatmul peak (saelab, median{label}): {peak:.1f} GFLOP/s")
        print(f"{'run':<14} {'n_features':>10} {'median tok/s':>13} {'min':>8} {'max':>8} {'reps':>4} {'GFLOP/s':>8} {'% peak':>7}")
        for (p, n, run), values in sorted(runs.items()):
            if p != precision:
                continue
            median = statistics.median(values)
            gflops = median * flops_per_token(run, n) / 1e9
            print(
                f"{run:<14} {n:>10} {median:>13.1f} {min(values):>8.1f} {max(values):>8.1f} "
                f"{len(values):>4} {gflops:>8.2f} {100 * gflops / peak:>6.1f}%"
            )
        print(f"\n{'ratio (median tok/s)' + label:<30} {'n_features':>10} {'ratio':>7} {'goal':>6}")
        for top, bottom, goal in RATIOS:
            for n in sorted({n for p, n, _ in runs if p == precision}):
                if (precision, n, top) in runs and (precision, n, bottom) in runs:
                    ratio = statistics.median(runs[(precision, n, top)]) / statistics.median(runs[(precision, n, bottom)])
                    shown = f"≥{goal:g}" if goal else ""
                    print(f"{top + ' / ' + bottom:<30} {n:>10} {ratio:>7.2f} {shown:>6}")
    print_cross_ratios(runs)


def print_cross_ratios(runs):
    """The same loop in two precisions (bf16 against f32), where both ran."""
    lines = []
    for run, top, bottom, goal in CROSS_RATIOS:
        for n in sorted({n for _, n, r in runs if r == run}):
            if (top, n, run) in runs and (bottom, n, run) in runs:
                ratio = statistics.median(runs[(top, n, run)]) / statistics.median(runs[(bottom, n, run)])
                shown = f"≥{goal:g}" if goal else ""
                lines.append(f"{run + ' ' + top + ' / ' + bottom:<30} {n:>10} {ratio:>7.2f} {shown:>6}")
    if lines:
        print(f"\n{'ratio across precisions':<30} {'n_features':>10} {'ratio':>7} {'goal':>6}")
        print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--width", type=int, action="append")
    parser.add_argument("--csv")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="f32", choices=["f32", "tf32", "bf16"])
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--summarize", nargs="+", metavar="CSV")
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return
    if args.threads is None:
        import torch

        args.threads = torch.get_num_threads()
    bench(args)


if __name__ == "__main__":
    sys.exit(main())
