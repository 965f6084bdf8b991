"""Writes gpu/check.sh's Markdown report from what its steps left in the
output folder: `status/<step>` ("exit-code seconds limit", or "skip"),
`logs/<step>.log` (the `key=value` lines the scripts print), `sae/*.csv`
(benches/sae_throughput.{rhai,py}) and `model.json`
(benches/model_throughput.py). Only the standard library; a step that failed
or left nothing becomes a FAIL row with the last lines of its log.

    python3 gpu/report.py OUT_DIR > OUT_DIR/gpu-check.md

Reads DEVICE, QUICK, SAELAB and PYTHON from the environment, as check.sh sets them.
"""
import datetime
import importlib.util
import json
import os
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(sys.argv[1])
DEVICE = os.environ.get("DEVICE", "cuda")
QUICK = os.environ.get("QUICK", "0") == "1"
HEADER = "| work | saelab | peer | ratio | goal | result |\n|---|---|---|---|---|---|"

# Agreement tolerances, as max |device − cpu| / max |cpu|. With TF32 off, f32
# products differ only in summation order; Adam divides by √v, which
# magnifies relative differences where a gradient is small (an H200 gave
# 1.3e-4 after three steps whose gradients agreed to 7e-7); 15 blocks of
# products compound them in the model's residual stream.
TOLERANCE = {"matmul_rel": 1e-5, "grad_rel": 1e-5, "adam_rel": 1e-3, "activations_rel": 1e-4, "logits_rel": 1e-4}


def sae_bench():
    spec = importlib.util.spec_from_file_location("sae_throughput", ROOT / "benches/sae_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- what the steps left ---------------------------------------------------------


def status(step):
    """(exit code or None when skipped/missing, seconds, limit)."""
    path = OUT / "status" / step
    if not path.exists():
        return None, 0, 0
    fields = path.read_text().split()
    if fields[0] == "skip":
        return None, 0, 0
    return int(fields[0]), int(fields[1]), int(fields[2])


def log(step):
    path = OUT / "logs" / f"{step}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def values(step):
    """The `key=value` lines of a step's log."""
    return dict(re.findall(r"^(\w+)=(.*)$", log(step), re.M))


def steps_like(prefix):
    return sorted(p.name for p in (OUT / "status").glob(prefix + "*")) if (OUT / "status").exists() else []


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", "<br>")


def tail(step, lines=3):
    text = [l for l in log(step).splitlines() if l.strip()]
    return "<br>".join(cell(l.strip())[:200] for l in text[-lines:]) or "(no output)"


def failure(step):
    """Why a step gave no result, for a FAIL row; None when it succeeded."""
    rc, secs, limit = status(step)
    if rc is None:
        reason = "not run" + (" (time budget spent)" if "budget" in log(step) else "")
        return f"{step}: {reason}"
    if rc == 0:
        return None
    if rc in (124, 137):
        return f"{step}: timed out after {limit} s: {tail(step)}"
    return f"{step}: exit {rc}: {tail(step)}"


# --- formatting ----------------------------------------------------------------


def number(x, digits=3):
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e6):
        return f"{x:.2e}"
    return f"{x:,.{digits}g}" if abs(x) < 1000 else f"{x:,.0f}"


def row(work, saelab, peer, ratio, goal, result):
    return "| " + " | ".join(cell(c) for c in (work, saelab, peer, ratio, goal, result)) + " |"


def fail_row(work, why):
    return row(work, "—", "—", "—", "", f"FAIL ({why})")


def verdict(ok):
    if ok is None:
        return "info"
    return "PASS" if ok else "FAIL"


# --- sections ------------------------------------------------------------------


def environment():
    v = values("environment")
    torch = values("torch")
    rows = []
    why = failure("environment")
    if why:
        rows.append(fail_row("saelab `device()`", why))
    else:
        want_cuda = DEVICE != "cpu"
        rows.append(row("`device()`", v.get("device"), f"torch: {torch.get('device', '?')}", "",
                        DEVICE, verdict(v.get("device") == DEVICE)))
        rows.append(row("`cuda_available()`", v.get("cuda_available"), torch.get("cuda_available", "?"), "",
                        str(want_cuda).lower(),
                        verdict(v.get("cuda_available") == str(want_cuda).lower())))
        if "cuda_runtime_loaded" in v:
            rows.append(row("libtorch CUDA backend loaded", v["cuda_runtime_loaded"], "", "",
                            "", f"info: {v.get('libtorch_cuda')}; no GPU because: {v.get('cuda_reason', '')[:90]}"
                            if v.get("cuda_reason", "none") != "none" else f"info: {v.get('libtorch_cuda')}"))
    return rows


def agreement():
    why = failure("agreement")
    v = values("agreement")
    if why and not v:
        return [fail_row(f"saelab on {DEVICE} vs saelab on cpu", why)]
    rows = []
    labels = {
        "matmul_rel": "[256,512]·[512,384] matmul",
        "grad_rel": "autograd: ∂ mean(tanh(xW)²)/∂W",
        "adam_rel": "adam: W after 3 steps (update)",
        "activations_rel": f"SmolLM2 layer-15 residual, {v.get('activations_tokens', '?')} tokens",
        "logits_rel": "SmolLM2 logits, 5 tokens",
    }
    for key, label in labels.items():
        if key not in v:
            rows.append(fail_row(label, why or "no value printed"))
            continue
        rel = float(v[key])
        tol = TOLERANCE[key]
        rows.append(row(label, f"saelab on {DEVICE}", "saelab on cpu", f"max rel diff {number(rel)}", f"≤ {tol:g}", verdict(rel <= tol)))
    if "randn_device" in v:
        std = float(v.get("randn_std", "nan"))
        ok = v["randn_device"] == DEVICE and abs(std - 1) < 0.05
        rows.append(row(f"`randn(shape, #{{device: \"{DEVICE}\"}})`", f"on {v['randn_device']}, std {number(std)}",
                        "", "", f"on {DEVICE}, std ≈ 1", verdict(ok)))
    if "generate_same" in v:
        rows.append(row("greedy `generate`, 8 tokens", v.get("generate_text_device"), v.get("generate_text_cpu"),
                        "identical" if v["generate_same"] == "true" else "differ", "identical",
                        verdict(v["generate_same"] == "true")))
    elif "activations_rel" not in v:
        rows.append(fail_row("the model on both devices", why or "no value printed"))
    return rows


def sae_throughput():
    rows, notes = [], []
    failures = {step: failure(step) for step in steps_like("sae-")}
    failed = [f for f in failures.values() if f]

    def why_missing(run, precision):
        """The first failure of the side and precision that should have given `run`."""
        side = "pytorch" if run.startswith("pytorch") else "saelab"
        for step, why in failures.items():
            if why and step.startswith(f"sae-{side}-{precision}-"):
                return why
        return "no failed step"
    csvs = sorted((OUT / "sae").glob("*.csv"))
    if not csvs:
        return [fail_row("SAE training throughput", "; ".join(failed) or "no rows")], notes
    bench = sae_bench()
    runs, peaks = bench.read_runs(csvs)

    def median(precision, n, run):
        v = runs.get((precision, n, run))
        return statistics.median(v) if v else None

    def ratio_row(label, precision, n, top, bottom, goal):
        a, b = median(precision, n, top), median(precision, n, bottom)
        if a is None or b is None:
            missing = top if a is None else bottom
            return fail_row(label, f"no '{missing}' rows; {why_missing(missing, precision)}")
        r = a / b
        return row(label, f"{number(a)} tok/s", f"{number(b)} tok/s", f"{r:.2f}×",
                   f"≥ {goal:g}" if goal else "", verdict(r >= goal if goal else None))

    widths = sorted({n for p, n, _ in runs if p == "f32"})
    for n in widths:
        rows.append(ratio_row(f"ReLU F={n}, f32: native / PyTorch", "f32", n, "native relu", "pytorch relu", 1.0))
        rows.append(ratio_row(f"TopK F={n}, f32: native / PyTorch", "f32", n, "native topk", "pytorch topk", 2.0))
    for n in widths:
        rows.append(ratio_row(f"ReLU F={n}, f32: scripted / native", "f32", n, "scripted relu", "native relu", None))
        rows.append(ratio_row(f"TopK F={n}, f32: native / dense Rhai", "f32", n, "native topk", "dense topk", None))
    for n in sorted({n for p, n, _ in runs if p == "bf16"}):
        rows.append(ratio_row(f"ReLU F={n}, bf16: native / PyTorch autocast", "bf16", n,
                              "native relu", "pytorch relu", None))
        rows.append(ratio_row(f"TopK F={n}, bf16: native / PyTorch autocast", "bf16", n,
                              "native topk", "pytorch topk", None))
        peak = peaks.get("bf16")
        ours, theirs = median("bf16", n, "native relu"), median("bf16", n, "pytorch relu")
        if peak and ours:
            share = 100 * ours * bench.flops_per_token("native relu", n) / 1e9 / peak
            peer = f"{100 * theirs * bench.flops_per_token('pytorch relu', n) / 1e9 / peak:.0f}%" if theirs else "—"
            rows.append(row(f"ReLU F={n}, bf16: % of bf16 matmul peak", f"{share:.0f}%", peer, "",
                            "≥ 40%", verdict(share >= 40)))
        else:
            rows.append(fail_row(f"ReLU F={n}, bf16: % of bf16 matmul peak", why_missing("native relu", "bf16")))
    for precision, peak in sorted(peaks.items()):
        rows.append(row(f"matmul peak, {precision} (saelab)", f"{number(peak / 1000)} TFLOP/s", "", "", "", "info"))
    notes.extend(f"- {f}" for f in failed)
    return rows, notes


def model_throughput():
    why = failure("model")
    path = OUT / "model.json"
    if not path.exists():
        return [fail_row("harvest and generation", why or "no model.json")], []
    data = json.loads(path.read_text())
    med = data["medians"]
    rows = []
    rows_n = data.get("rows")

    def ratio_row(label, ours, theirs, goal, unit="tok/s"):
        a, b = med.get(ours), med.get(theirs)
        if a is None or b is None:
            return fail_row(label, "no transformers side (see logs/model.log)" if a else "no saelab side")
        r = a / b
        return row(label, f"{number(a)} {unit}", f"{number(b)} {unit}", f"{r:.2f}×",
                   f"≥ {goal:g}" if goal else "", verdict(r >= goal if goal else None))

    rows.append(ratio_row(f"harvest layer 15, {rows_n} rows: saelab / transformers 15 blocks", "saelab", "truncated", 1.2))
    rows.append(ratio_row("harvest: saelab / transformers whole model", "saelab", "full", None))
    rows.append(ratio_row("greedy generation: saelab / `generate`", "gen_saelab", "gen_torch", 2.0))
    check = re.search(r"check: window 0, (\d+) rows, max \|saelab - transformers\| = (\S+) \(max \|x\| = (\S+)\)",
                      log("model"))
    if check:
        diff, scale = float(check.group(2)), float(check.group(3))
        rel = diff / scale if scale else float("nan")
        rows.append(row(f"same rows (window 0, {check.group(1)} rows, f16)", "", "",
                        f"max rel diff {number(rel)}", "≤ 1e-2", verdict(rel <= 1e-2)))
    notes = [f"- {why}"] if why else []
    return rows, notes


def ce_loss():
    why = failure("ce_loss")
    v = values("ce_loss")
    if "ce_loss_recovered_device" not in v:
        return [fail_row("CE loss recovered", why or "no value printed")]
    dev = float(v["ce_loss_recovered_device"])
    cpu = float(v["ce_loss_recovered_cpu"]) if "ce_loss_recovered_cpu" in v else None
    sane = 0 < dev <= 1
    if cpu is None:
        rows = [row("CE loss recovered (TopK SAE trained on the device)", number(dev), "—", "",
                    "0 < r ≤ 1", verdict(sane) + (f"; cpu side failed: {why}" if why else ""))]
    else:
        delta = abs(dev - cpu)
        rows = [row(f"CE loss recovered, {v.get('ce_tokens')} tokens: on {DEVICE} / on cpu (same SAE)",
                    number(dev), number(cpu), f"|Δ| {number(delta)}", "0 < r ≤ 1, |Δ| ≤ 0.01",
                    verdict(sane and 0 < cpu <= 1 and delta <= 0.01))]
    rows.append(row("the SAE: explained variance, L0", f"{number(float(v.get('explained_variance', 'nan')))}, "
                    f"{number(float(v.get('l0', 'nan')))}", "", "", "",
                    f"info: {v.get('harvest_rows')} rows harvested in {number(float(v.get('harvest_seconds', 'nan')))} s, "
                    f"trained in {number(float(v.get('train_seconds', 'nan')))} s"))
    return rows


# --- the report -------------------------------------------------------------------


def header():
    smi = [l.strip() for l in log("nvidia-smi").splitlines() if l.count(",") >= 2]
    card, memory, driver = (smi[0].split(",") + ["", "", ""])[:3] if smi else ("none (no nvidia-smi)", "", "")
    torch = values("torch")
    seconds = sum(status(s)[1] for s in steps_like(""))
    lines = [
        "# saelab GPU check",
        "",
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- card: {card.strip()}, {memory.strip()}; driver {driver.strip()}" if smi else f"- card: {card}",
        f"- torch {torch.get('torch', '?')} (CUDA {torch.get('cuda', '?')}), transformers "
        f"{torch.get('transformers', '?')}, gguf {torch.get('gguf', '?')}, accelerate {torch.get('accelerate', '?')}; "
        f"Python {torch.get('python', '?')}",
        f"- saelab: {log('version').strip() or '?'} ({os.environ.get('SAELAB', '?')}), libtorch from {torch.get('lib', '?')}",
        f"- model and corpus from {os.environ.get('SAELAB_CACHE', '?')}",
        f"- device {DEVICE}{', QUICK sizes (a dry run)' if QUICK else ''}; {os.cpu_count()} CPU cores; "
        f"steps took {seconds} s in all",
    ]
    if QUICK:
        lines += ["", "QUICK sizes: the goals are set for a GPU at full sizes, so a goal missed here "
                  "says nothing; what counts is that every step ran."]
    return lines


def section(title, intro, rows, notes=()):
    lines = ["", f"## {title}", "", intro, "", HEADER, *rows]
    if notes:
        lines += ["", *notes]
    return lines


def details():
    """The last lines of every failed step's log."""
    lines = []
    for step in steps_like(""):
        rc, _, _ = status(step)
        if rc not in (None, 0):
            text = "\n".join(log(step).rstrip().splitlines()[-15:])
            lines += ["", f"<details><summary>{step}: exit {rc}</summary>", "", "```", text, "```", "", "</details>"]
    return ["", "## Failed steps", *lines] if lines else []


def main():
    lines = header()
    lines += section("a. Environment", "What saelab's own process sees (`gpu/environment.rhai`) next to torch.",
                     environment())
    lines += section(f"b. saelab on {DEVICE} vs saelab on cpu",
                     "`gpu/agreement.rhai`: the same inputs on both devices; relative difference = "
                     "max |device − cpu| / max |cpu|. TF32 off.", agreement())
    rows, notes = sae_throughput()
    lines += section("c. SAE training throughput",
                     "`benches/sae_throughput.{rhai,py}`, d_in 576, TopK k = 32, saelab and PyTorch interleaved; "
                     "medians over the repetitions. bf16: saelab's `precision: \"bf16\"`, PyTorch "
                     "`torch.autocast(bfloat16)` with f32 weights and Adam.", rows, notes)
    rows, notes = model_throughput()
    lines += section("d. Model throughput",
                     "`benches/model_throughput.py`: SmolLM2-135M on the device, context 128; saelab's "
                     "`m.harvest` (f16 shards written) against transformers on the same windows; medians.",
                     rows, notes)
    lines += section("e. CE loss recovered",
                     "`gpu/ce_loss.rhai`: harvest, train a TopK SAE and splice it into the model, on the device; "
                     "the saved SAE measured again with the model on the CPU.", ce_loss())
    lines += details()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
