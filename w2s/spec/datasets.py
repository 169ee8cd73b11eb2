"""`DataSpec`: one dataset of an experiment, checked against the dataset registry (`w2s.data.registry`,
which imports nothing of the spec layer, so there is no cycle)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from w2s.data.registry import DATASETS, local_copy
from w2s.spec.base import Strict


def dataset_label(fields: dict) -> str:
    """A dataset's label from its spec fields (a DataSpec's, or a dumped one): its `id`, else its name."""
    return fields.get("id") or fields.get("name")


class DataSpec(Strict):
    """One dataset: a registered name, optionally read from local files instead of the hub."""

    name: str = Field(description="Registered dataset (see `w2s list datasets`).")
    id: str | None = Field(None, description="Name used in results and folders; defaults to `name`.")
    data_files: dict[str, str | list[str]] | None = Field(
        None,
        description="Local files per split, e.g. {train: a.tsv, test: [b.tsv, c.tsv]} (a list is read as one "
        "split; csv/tsv/json/jsonl, .gz, parquet).",
    )
    column_names: list[str] | None = Field(None, description="Column names for header-less csv/tsv files.")
    text_columns: list[str] | None = Field(None, description="`local` dataset: columns joined into the text.")
    label_column: str | None = Field(
        None, description="`local` dataset: the label column (class indices 0..classes-1)."
    )
    classes: int | None = Field(
        None, ge=2, description="`local` dataset: the number of classes (default 2); other datasets declare their own."
    )
    n_train: int | None = Field(None, gt=1, description="Cap on the training pool (halves A and B together).")
    n_test: int | None = Field(None, gt=0, description="Cap on the test split.")
    sample: Literal["random", "first"] = Field(
        "random",
        description="Which rows n_train and n_test keep: a seeded random draw, or the first rows of "
        "each split in file order (the reference's; the pool is then shuffled).",
    )
    test_frac: float = Field(
        0.2, gt=0, lt=1, description="Share of the pool held out as test when there is no test split."
    )
    data_dir: str | None = Field(None, description="imagenet, imagenet1k: your local copy in ImageFolder layout.")
    halves: Literal["disjoint", "same"] = Field(
        "disjoint",
        description="disjoint: half A trains the weak model and the ceiling, half B gets weak labels. "
        "same: both are the whole pool, for zero-shot weak models (`train: false`), which "
        "need no half A: the ceiling and the students then train on the same rows.",
    )
    max_ctx: int = Field(512, gt=1, description="Maximum tokens per example.")
    ctx_policy: Literal["truncate", "drop"] = Field(
        "truncate",
        description="Longer examples: truncate (shorten, keeping the part that decides the label "
        "whole) or drop (the reference code's choice).",
    )
    truncate: Literal["left", "right"] | None = Field(
        None,
        description="Which side of a too-long text is cut (before its decisive part, where the dataset "
        "names one): right keeps the beginning, left the end (dialogues). Default: the "
        "dataset's own (anthropic_hh: left; others: right).",
    )

    @property
    def label(self) -> str:
        return dataset_label(self.model_dump(include={"id", "name"}))

    @model_validator(mode="before")
    @classmethod
    def _local_copy(cls, data: Any) -> Any:
        """With W2S_DATA_DIR set, a dataset named without files or a folder reads its local copy there
        ($W2S_DATA_DIR/<name>/, w2s.data.registry.local_copy): as if the spec named those files."""
        if not isinstance(data, dict) or data.get("data_files") or data.get("data_dir"):
            return data
        found = local_copy(data.get("name"))
        if found is None:
            return data
        return {
            **data,
            "data_files": found["data_files"],
            "column_names": data.get("column_names") or found.get("column_names"),
        }

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(sorted(DATASETS))}")
        return name

    @field_validator("data_files", mode="before")
    @classmethod
    def _files_per_split(cls, value: Any) -> Any:
        # checked before the str | list union, so a bad value gives one clear message
        for split, paths in (value or {}).items() if isinstance(value, dict) else ():
            if not (
                isinstance(paths, str) or (isinstance(paths, list) and paths and all(isinstance(p, str) for p in paths))
            ):
                raise ValueError(f"split {split!r}: give a file path or a non-empty list of paths, got {paths!r}")
        return value

    @model_validator(mode="after")
    def _local_needs_columns(self) -> DataSpec:
        if self.name == "local":
            if not self.data_files:
                raise ValueError("the `local` dataset needs `data_files`")
            if not self.text_columns or not self.label_column:
                raise ValueError("the `local` dataset needs `text_columns` and `label_column`")
        elif self.text_columns or self.label_column or self.classes:
            raise ValueError("`text_columns`/`label_column`/`classes` only apply to the `local` dataset")
        layout = DATASETS[self.name].data_dir
        if layout and not self.data_dir:
            raise ValueError(f"{self.name} needs `data_dir`: your local copy with {layout}")
        if not layout and self.data_dir:
            raise ValueError("`data_dir` only applies to the imagenet and imagenet1k datasets")
        return self

    @property
    def num_classes(self) -> int:
        """k: labels are 0..k-1, heads have k outputs, labels are (n, k) class probabilities."""
        return self.classes or DATASETS[self.name].classes

    @property
    def truncate_side(self) -> str:
        return self.truncate or DATASETS[self.name].truncate

    @property
    def is_image(self) -> bool:
        return DATASETS[self.name].modality == "image"
