"""Copy a finished run folder with only what `w2s report` and `w2s.results` read, small enough to commit.

    python docs/notebooks/compact_run.py runs/sst2-ladder docs/notebooks/runs/sst2-ladder

What the report reads, and so what is kept, per stage folder: config.json (what the stage is: its kind,
models, loss, seed and the keys of its weak model and ceiling), metrics.json (its scores, sizes and
diagnostics) and the test rows of predictions.jsonl (the intervals resample test examples), gzipped
(predictions.jsonl.gz: the report reads either; 27 SST-2 stages take 1.0 MB on disk instead of 6.7). Left out:
log.jsonl (the training curve of losses), the predictions on half B (used only to recompute the
diagnostics of stage folders older than metrics.json's record of them) and the digits of p_pos past
the sixth (AUROC's intervals read it: on the SST-2 run they move by 3e-5 at most; the scores themselves
are metrics.json's, and the accuracy intervals read `predicted`, kept whole). results.jsonl
is kept (it ranks superseded stages); the rest of the run folder (plan, environment, locks) is not read.
"""

import gzip
import io
import json
import shutil
import sys
from pathlib import Path


def compact(run: Path, out: Path) -> None:
    out.mkdir(parents=True)
    shutil.copy2(run / "results.jsonl", out / "results.jsonl")
    for stage in sorted((run / "stages").iterdir()):
        if not (stage / "metrics.json").is_file():
            continue  # not finished: the report does not read it either
        target = out / "stages" / stage.name
        target.mkdir(parents=True)
        for name in ("config.json", "metrics.json"):
            shutil.copy2(stage / name, target / name)
        packed = gzip.GzipFile(target / "predictions.jsonl.gz", "wb", mtime=0)  # mtime 0: the same bytes each time
        with open(stage / "predictions.jsonl") as rows, io.TextIOWrapper(packed) as kept:
            for line in rows:
                row = json.loads(line)
                if row["split"] == "test":
                    row["p_pos"] = round(row["p_pos"], 6)
                    kept.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    compact(Path(sys.argv[1]), Path(sys.argv[2]))
