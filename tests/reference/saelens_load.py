"""Opens SAEs saved by saelab with SAELens itself and checks that SAELens
encodes and decodes as saelab does.

    python tests/reference/saelens_load.py DIR...

Each DIR holds an SAE or transcoder saved by `s.save(DIR)` and a
`check.safetensors` with an input `x`, saelab's codes `f = s.encode(x)` and
output `x_hat` (the reconstruction; a transcoder's prediction of its output
site, W_skip's term included), compared with SAELens's `encode(x)` and
`forward(x)`. Prints one line per SAE (SAELens's class, cfg.json's
architecture, the largest differences) and exits 1 if any differs by more
than 1e-5. tests/saelens.rs runs it through the peer venv.
"""
import json
import sys

from safetensors.torch import load_file
from sae_lens import SAE


def check(directory):
    sae = SAE.load_from_disk(directory)
    expected = load_file(f"{directory}/check.safetensors")
    codes = sae.encode(expected["x"])
    reconstruction = sae(expected["x"])
    code_gap = (codes - expected["f"]).abs().max().item()
    reconstruction_gap = (reconstruction - expected["x_hat"]).abs().max().item()
    with open(f"{directory}/cfg.json") as cfg:
        architecture = json.load(cfg)["architecture"]
    print(
        f"{directory}: {type(sae).__name__} ({architecture}), "
        f"max |codes - saelab's| {code_gap:.2e}, max |x_hat - saelab's| {reconstruction_gap:.2e}"
    )
    return code_gap <= 1e-5 and reconstruction_gap <= 1e-5


def main():
    results = [check(directory) for directory in sys.argv[1:]]
    sys.exit(0 if results and all(results) else 1)


if __name__ == "__main__":
    main()
