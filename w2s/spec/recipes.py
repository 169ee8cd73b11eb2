"""Named recipes: `recipe: reference` sets every setting in which OpenAI's weak_to_strong code trains
differently from w2s's defaults, at once. docs/reference.md lists them with what each changes.

A recipe only fills in what the spec leaves unset: a value the spec writes wins (and `w2s run
--dry-run` says which ones differ from the recipe). It is expanded before validation, so the
validated spec, its stage keys, every stage's config.json and its W&B config hold the expanded
values; two specs that end up with the same settings have the same stages, recipe or not.
"""

from __future__ import annotations

from typing import Any

# Read from openai/weak-to-strong (train_simple.py, weak_to_strong/train.py, datasets.py, loss.py).
REFERENCE = {
    "train": {
        "dropout": False,  # model.eval() while training ("for determinism")
        "optimizer": "adam",  # torch.optim.Adam, no weight decay
        "weight_decay": 0.0,
        "lr_schedule": "cosine",  # CosineAnnealingLR(nsteps), stepped per batch, no warm-up
        "warmup_frac": 0.0,
        "max_grad_norm": None,  # no clipping
        "data_order": "fixed",  # shuffled once; the same order every epoch
    },
    "ceiling": "half_a",  # train_simple.py / sweep.py train every ground-truth model on half A
    "datasets": {
        "sample": "first",  # ds.select(range(n_docs)), then shuffled
        "ctx_policy": "drop",  # .filter(len(input_ids) < max_ctx)
    },
    "losses": {  # loss.py's warm-up schedules
        "logconf": {"schedule": "reference"},
        "product": {"schedule": "reference"},
    },
}

RECIPES = {"w2s": {}, "reference": REFERENCE}


def expand_recipe(raw: Any) -> Any:
    """The raw spec with its recipe's settings filled in wherever the spec does not set them."""
    if not isinstance(raw, dict) or not isinstance(raw.get("recipe"), str) or raw["recipe"] not in RECIPES:
        return raw  # no recipe, an unknown name or not a name at all: validation reports it
    recipe, raw = RECIPES[raw["recipe"]], dict(raw)
    if "train" in recipe and isinstance(raw.get("train", {}), dict):
        raw["train"] = {**recipe["train"], **raw.get("train", {})}
    if "ceiling" in recipe:
        raw.setdefault("ceiling", recipe["ceiling"])
    datasets = raw.get("datasets")
    if "datasets" in recipe and isinstance(datasets, (dict, list)):
        fill = lambda d: {**recipe["datasets"], **d} if isinstance(d, dict) else d  # noqa: E731
        raw["datasets"] = fill(datasets) if isinstance(datasets, dict) else [fill(d) for d in datasets]
    if "losses" in recipe and isinstance(raw.get("losses"), list):
        raw["losses"] = [
            {**recipe["losses"].get(loss.get("name"), {}), **loss}
            if isinstance(loss, dict) and isinstance(loss.get("name"), str)  # else validation reports the entry
            else loss
            for loss in raw["losses"]
        ]
    return raw


def recipe_deviations(spec) -> list[str]:
    """`key=value` for every setting of the spec's recipe that the spec sets otherwise."""
    recipe = RECIPES[spec.recipe]
    found = [
        f"train.{k}={getattr(spec.train, k)!r}"
        for k, v in recipe.get("train", {}).items()
        if getattr(spec.train, k) != v
    ]
    if "ceiling" in recipe and spec.ceiling != recipe["ceiling"]:
        found.append(f"ceiling={spec.ceiling!r}")
    for i, dataset in enumerate(spec.datasets):
        found += [
            f"datasets.{i}.{k}={getattr(dataset, k)!r}"
            for k, v in recipe.get("datasets", {}).items()
            if getattr(dataset, k) != v
        ]
    for i, loss in enumerate(spec.losses):
        found += [
            f"losses.{i}.{k}={getattr(loss, k)!r}"
            for k, v in recipe.get("losses", {}).get(loss.name, {}).items()
            if getattr(loss, k) != v
        ]
    return found


def describe_recipe(spec) -> str | None:
    """One line for `--dry-run`: the recipe and what the spec changed of it; None for w2s's own."""
    if spec.recipe == "w2s":
        return None
    changed = recipe_deviations(spec)
    return f"recipe: {spec.recipe}" + (
        f" (the spec sets otherwise: {', '.join(changed)})" if changed else " (every setting as the recipe sets it)"
    )
