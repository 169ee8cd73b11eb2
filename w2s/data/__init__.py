"""Datasets: a registry of classification tasks, loading, deterministic splits, tokenization.

Every task is reduced to rows {"id", "txt" (or "image"), "hard_label"} with hard_label a class index
0..k-1 (each entry declares k; most are binary, as in Burns et al. (2023): multiple-choice and
preference datasets become "is this answer right?"). The training pool is cut into two disjoint
halves: A trains the weak supervisor (and the ceiling), B is what the weak model labels for the
strong student (`halves: same` makes both the whole pool, for zero-shot supervisors). Everything is a pure
function of the seed, so a rerun reproduces the same split and the same random formatting.

- registry.py: DatasetInfo, DATASETS, register, describe_datasets, the formatters
- contents.py: what the data is, for stage keys: fingerprint(s), file_digest, hub_revision
- files.py: reading the raw splits: generated, local files (csv, tsv, json, jsonl, parquet), the hub
- splits.py: Splits, load_splits, load_dataset_rows: seeded samples, halves A and B, formatted rows
- tokens.py: Tokenized, tokenize: drop or truncate examples over max_ctx tokens

- synthetic.py: the generated review task of the quickstart

`spec` in these modules is a dataset's entry of the experiment spec (a `w2s.spec.DataSpec`): the data
layer sits under the spec layer (which checks names against the registry), so it reads the entry's
fields and does not import its class. Importing this package imports no torch, transformers or
datasets (`datasets` loads inside functions).
"""

from w2s.data.contents import file_digest, fingerprint, fingerprints, hub_revision
from w2s.data.files import quiet_datasets
from w2s.data.registry import (
    DATASETS,
    DatasetInfo,
    Formatter,
    describe_datasets,
    format_amazon_polarity,
    format_anthropic_hh,
    format_boolq,
    format_cosmos_qa,
    format_sciq,
    format_sst2,
    format_synthetic,
    register,
)
from w2s.data.splits import Splits, load_dataset_rows, load_splits
from w2s.data.tokens import Tokenized, tokenize

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "Formatter",
    "Splits",
    "Tokenized",
    "describe_datasets",
    "file_digest",
    "fingerprint",
    "fingerprints",
    "format_amazon_polarity",
    "format_anthropic_hh",
    "format_boolq",
    "format_cosmos_qa",
    "format_sciq",
    "format_sst2",
    "format_synthetic",
    "hub_revision",
    "load_dataset_rows",
    "load_splits",
    "quiet_datasets",
    "register",
    "tokenize",
]
