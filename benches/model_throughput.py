"""Harvest and generation throughput of SmolLM2-135M: saelab side by side
with Hugging Face transformers on the same GGUF, the same windows, the same
threads, in one run.

    python3 benches/model_throughput.py [--saelab target/release/saelab] [--threads 2]
        [--tokens 4096] [--reps 5] [--new-tokens 64] [--device cuda] [--batch 64] [--json medians.json]
        [--precisions f32,bf16]

Each repetition runs, in turn (A B C D A B C D ...; medians reported, as the
machine is shared and noisy):

  saelab              benches/model_throughput.rhai in a fresh process: `m.harvest`
                      of layer 15's residual stream (context 128, batches of 8
                      windows or `--batch`,
                      f16 shards written to a temporary folder, tokenisation
                      included), then greedy generation with the KV cache
  transformers, full  what a researcher would write: the whole model with
                      `output_hidden_states=True`, logits included, keeping
                      `hidden_states[15]` as f16 on the CPU
  transformers, 15    the fair peer: only the 15 blocks layer 15 needs and no
                      head (`config.num_hidden_layers = 15` on the base model,
                      the output of block 14 read by a forward hook)
  generate            `model.generate`, greedy, KV cache, same prompt and length

With bf16 among `--precisions` (the default), each repetition also runs
saelab with `load_model(#{precision: "bf16"})` and transformers' 15-block
harvest on a copy of the model in `torch.bfloat16` (what a PyTorch user
writes: `model.to(torch.bfloat16)`; its RMSNorm upcasts to f32 inside, as
saelab's does), and reports bf16 against f32 and against transformers in bf16.

The transformers rows run on the windows saelab harvested (read back from its
store's `.windows.npy`), already tokenised, without `use_cache`, in
`torch.inference_mode()`. Both sides get the same OMP_NUM_THREADS and
OMP_WAIT_POLICY (set before torch loads) and intra-op thread count. Tokens/s
counts the rows saelab stores (every token but position 0 of a window and
document separators) over the same windows. Peak RSS is saelab's whole
process (load, harvest, generation) and this Python process's (the model,
both harvests, generation).

With `--device cuda` both sides put the model on the GPU (saelab's
`load_model(#{device})`, transformers' `model.to`); rows still end as f16 on
the CPU (saelab writes them to its shards), which also waits for the GPU.

Without torch and transformers in this Python, only saelab's rows are run.
"""
import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
LAYER = 15
PROMPT = "The history of the city begins"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--saelab", default=str(ROOT / "target/release/saelab"))
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--tokens", type=int, default=4096, help="rows harvested per repetition")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--device", default="cpu", help="cpu or cuda, for both sides")
    p.add_argument("--batch", type=int, default=8, help="windows per forward pass, both sides")
    p.add_argument("--json", help="also write the medians (tokens/s) to this file")
    p.add_argument("--precisions", default="f32,bf16",
                   help="comma-separated: f32 always runs; bf16 adds saelab and transformers in bf16")
    p.add_argument("--omp-wait-policy", default=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    return p.parse_args()


def cache_dir():
    return Path(
        os.environ.get("SAELAB_CACHE")
        or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "saelab")
    )


def import_peer():
    """torch and transformers, or None with the reason printed."""
    import importlib.util

    # transformers 5.x loads a GGUF file only with accelerate installed.
    modules = ["torch", "transformers", "numpy", "gguf", "accelerate"]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        print(f"transformers side skipped: {sys.executable} lacks {', '.join(missing)} "
              "(`make peer-venv` creates a Python that has them)")
        return None
    import torch
    import transformers

    return torch, transformers


# --- saelab -----------------------------------------------------------------


# Linux starts a forked child's `ru_maxrss` at its parent's peak, so a child
# of this Python (~2 GB with the model) would report at least that. A small
# launcher process forks saelab instead and reports the grandchild's figure.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(f"peak_rss_kb={usage.ru_maxrss}", flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_saelab(args, out, precision="f32"):
    """One repetition in a fresh process: its printed figures, peak RSS in bytes."""
    command = [
        args.saelab, "run", str(ROOT / "benches/model_throughput.rhai"),
        "--set", f"out={out}", "--set", f"tokens={args.tokens}", "--set", f"new_tokens={args.new_tokens}",
        "--set", f"prompt={PROMPT}", "--set", f"device={args.device}", "--set", f"batch_size={args.batch}",
        "--set", f"precision={precision}",
    ]
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *command], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"saelab failed ({done.returncode}): {' '.join(command)}\n{done.stdout}{done.stderr[-2000:]}")
    figures = {k: float(v) for k, v in re.findall(r"^(\w+)=([-0-9.e]+)$", done.stdout, re.M)}
    # With SAELAB_PROFILE=harvest saelab says where the harvest's time went.
    for line in done.stderr.splitlines():
        if line.startswith("harvest timings"):
            print(f"  saelab {line}", flush=True)
    figures["peak_rss"] = figures.pop("peak_rss_kb") * 1024
    return figures


def run_saelab_harvest(args, precision, keep_windows):
    """One saelab repetition into a temporary store: its figures, and the
    store's windows and window-0 rows (`windows_of`) when asked for."""
    out = Path(tempfile.mkdtemp(prefix="saelab-bench-"))
    try:
        figures = run_saelab(args, out / "acts", precision)
        return figures, (windows_of(out / "acts") if keep_windows else None)
    finally:
        shutil.rmtree(out)


def windows_of(store):
    """The windows a harvest ran, as lists of ids, and its rows of window 0 (for a check)."""
    import numpy as np

    windows = []
    for path in sorted(store.glob("shard-*.windows.npy")):
        windows.extend([int(i) for i in row if i >= 0] for row in np.load(path))
    rows = np.load(store / "shard-00000.npy").astype(np.float32)
    meta = np.load(store / "shard-00000.rows.npy")
    in_first = meta[:, 3] == 0
    return windows, (meta[in_first, 4], rows[in_first])


# --- transformers -------------------------------------------------------------


def load_peer(torch, transformers, device):
    path = cache_dir() / "models" / MODEL_NAME
    tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    return tokenizer, model.to(device).eval()


def batches(torch, windows, size, device):
    for i in range(0, len(windows), size):
        chunk = windows[i : i + size]
        longest = max(map(len, chunk))
        if all(len(w) == longest for w in chunk):
            yield torch.tensor(chunk).to(device), None
        else:  # a corpus shorter than the target: right-pad as saelab does
            ids = torch.zeros(len(chunk), longest, dtype=torch.long)
            mask = torch.zeros(len(chunk), longest, dtype=torch.long)
            for b, w in enumerate(chunk):
                ids[b, : len(w)] = torch.tensor(w)
                mask[b, : len(w)] = 1
            yield ids.to(device), mask.to(device)


def f16_rows(torch, hidden):
    """Rows as saelab keeps them: f16, on the CPU, position 0 dropped."""
    return hidden[:, 1:].to(device="cpu", dtype=torch.float16)


def harvest_full(torch, model, windows, size):
    """hidden_states[15] of the whole model, kept as f16 rows (position 0 dropped)."""
    kept = []
    with torch.inference_mode():
        for ids, mask in batches(torch, windows, size, model.device):
            out = model(ids, attention_mask=mask, output_hidden_states=True, use_cache=False)
            kept.append(f16_rows(torch, out.hidden_states[LAYER]))
    return kept


def harvest_truncated(torch, model, windows, size):
    """The same rows from only the blocks they need: the output of block 14."""
    kept = []
    config = model.model.config
    n_layers = config.num_hidden_layers
    hook = model.model.layers[LAYER - 1].register_forward_hook(
        lambda _m, _i, out: kept.append(f16_rows(torch, out[0] if isinstance(out, tuple) else out))
    )
    config.num_hidden_layers = LAYER
    try:
        with torch.inference_mode():
            for ids, mask in batches(torch, windows, size, model.device):
                model.model(ids, attention_mask=mask, use_cache=False)
    finally:
        config.num_hidden_layers = n_layers
        hook.remove()
    return kept


def generate(torch, model, tokenizer, new_tokens):
    ids = torch.tensor([tokenizer(PROMPT, add_special_tokens=False)["input_ids"]]).to(model.device)
    with torch.inference_mode():
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False
        )
    out = out.cpu()  # on a GPU: the last token is there
    return out.shape[1] - ids.shape[1]


def timed(f, *args):
    start = time.perf_counter()
    result = f(*args)
    return result, time.perf_counter() - start


def relative_error(approx, exact):
    """‖approx − exact‖ / ‖exact‖ over all values (numpy arrays)."""
    import numpy as np

    return float(np.linalg.norm(approx - exact) / np.linalg.norm(exact))


def check_same_rows(torch, kept, reference):
    """saelab's stored rows of window 0 against transformers' (f16 both)."""
    positions, rows = reference
    theirs = kept[0][0, positions - 1].float().numpy()
    scale = float(abs(theirs).max())
    diff = float(abs(theirs - rows).max())
    print(f"check: window 0, {len(positions)} rows, max |saelab - transformers| = {diff:.3g} (max |x| = {scale:.3g})")


# --- report --------------------------------------------------------------------


def summary(name, values, unit="tokens/s"):
    med = statistics.median(values)
    print(f"  {name:<34} {med:9.1f} {unit}   (min {min(values):.1f}, max {max(values):.1f}, n={len(values)})")
    return med


def main():
    args = parse_args()
    # Both sides see the same OpenMP settings; torch reads them when it loads.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    peer = import_peer()
    bf16 = "bf16" in args.precisions.split(",")
    keys = ["saelab", "full", "truncated", "gen_saelab", "gen_torch"]
    if bf16:
        keys += ["saelab_bf16", "truncated_bf16", "gen_saelab_bf16"]
    rates = {k: [] for k in keys}
    peak = {}
    if peer:
        torch, transformers = peer
        torch.set_num_threads(args.threads)
        tokenizer, model = load_peer(torch, transformers, args.device)
        print(f"transformers {transformers.__version__}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, {model.config._attn_implementation} attention, "
              f"{args.device}")
        if bf16:
            _, model_bf16 = load_peer(torch, transformers, args.device)
            model_bf16 = model_bf16.to(torch.bfloat16)
    windows = None
    for rep in range(args.reps):
        figures, store = run_saelab_harvest(args, "f32", keep_windows=peer and windows is None)
        if store:
            windows, reference = store
        rows = figures["harvest_rows"]
        rates["saelab"].append(rows / figures["harvest_seconds"])
        rates["gen_saelab"].append(figures["generate_tokens"] / figures["generate_seconds"])
        peak["saelab"] = max(peak.get("saelab", 0), figures["peak_rss"])
        if bf16:
            figures, store = run_saelab_harvest(args, "bf16", keep_windows=peer and rep == 0)
            if store:
                reference_bf16 = store[1]
            rates["saelab_bf16"].append(figures["harvest_rows"] / figures["harvest_seconds"])
            rates["gen_saelab_bf16"].append(figures["generate_tokens"] / figures["generate_seconds"])
        if peer:
            if rep == 0:  # warm-up, and the check that both compute the same rows
                check_same_rows(torch, harvest_truncated(torch, model, windows[:1], 1), reference)
                if args.device != "cpu":  # a GPU's first batch-sized products and decoding steps load kernels
                    harvest_full(torch, model, windows[: args.batch], args.batch)
                    generate(torch, model, tokenizer, 2)
            _, secs = timed(harvest_full, torch, model, windows, args.batch)
            rates["full"].append(rows / secs)
            _, secs = timed(harvest_truncated, torch, model, windows, args.batch)
            rates["truncated"].append(rows / secs)
            n, secs = timed(generate, torch, model, tokenizer, args.new_tokens)
            rates["gen_torch"].append(n / secs)
            if bf16:
                if rep == 0:  # the bf16 kernels' first call, and what bf16 costs each side in accuracy
                    harvest_truncated(torch, model_bf16, windows[: args.batch], args.batch)
                    theirs_f32 = harvest_truncated(torch, model, windows[:1], 1)[0][0].float().numpy()
                    theirs_bf16 = harvest_truncated(torch, model_bf16, windows[:1], 1)[0][0].float().numpy()
                    errors = (relative_error(reference_bf16[1], reference[1]),
                              relative_error(theirs_bf16, theirs_f32))
                    print(f"bf16 against f32, layer {LAYER} rows of window 0 (relative error): "
                          f"saelab {100 * errors[0]:.2f}% (f32 residual stream), "
                          f"transformers {100 * errors[1]:.2f}% (bf16 residual stream)", flush=True)
                _, secs = timed(harvest_truncated, torch, model_bf16, windows, args.batch)
                rates["truncated_bf16"].append(rows / secs)
        print(f"rep {rep + 1}/{args.reps}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items() if v), flush=True)
    print(f"\nSmolLM2-135M layer {LAYER}, context 128, batches of {args.batch}, {int(rows)} rows per harvest, "
          f"{args.device}, {args.threads} threads, OMP_WAIT_POLICY={args.omp_wait_policy}:")
    ours = summary("harvest, saelab", rates["saelab"])
    if peer:
        full = summary("harvest, transformers (30 blocks+head)", rates["full"])
        trunc = summary("harvest, transformers (15 blocks)", rates["truncated"])
        print(f"  ratio saelab / transformers: {ours / full:.2f}x (full), {ours / trunc:.2f}x (15 blocks)")
    if bf16:
        ours_bf16 = summary("harvest, saelab bf16", rates["saelab_bf16"])
        print(f"  ratio saelab bf16 / saelab f32: {ours_bf16 / ours:.2f}x (goal >= 2)")
        if peer:
            trunc_bf16 = summary("harvest, transformers bf16 (15 blocks)", rates["truncated_bf16"])
            print(f"  ratio saelab bf16 / transformers bf16: {ours_bf16 / trunc_bf16:.2f}x (15 blocks; goal >= 1.2)")
    gen = summary(f"generate {args.new_tokens}, saelab", rates["gen_saelab"])
    if peer:
        gen_torch = summary(f"generate {args.new_tokens}, transformers", rates["gen_torch"])
        print(f"  ratio saelab / transformers: {gen / gen_torch:.2f}x")
    if bf16:
        summary(f"generate {args.new_tokens}, saelab bf16", rates["gen_saelab_bf16"])
    print(f"  peak RSS: saelab {peak['saelab'] / 1e9:.2f} GB (whole process)", end="")
    if peer:
        print(f", transformers {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9:.2f} GB (this Python)")
    else:
        print()
    if args.json:
        medians = {k: statistics.median(v) for k, v in rates.items() if v}
        Path(args.json).write_text(json.dumps({"rows": int(rows), "medians": medians, "rates": rates}, indent=1))


if __name__ == "__main__":
    main()
