"""Transfer losses: small callables `loss(logits, soft_labels, step_frac) -> scalar`.

`logits` are the student's (batch, k) outputs, `soft_labels` the supervisor's (batch, k) class
probabilities (one-hot for ground truth), `step_frac` the share of training done, in [0, 1]. Every
loss here is defined for any k but `window`, which needs two classes (the spec says so up front).
A user adds a loss by pointing the spec at any such callable: `{name: custom, path: pkg.mod:Loss}`.

A loss is called on the whole optimizer batch, whatever minibatch_size is (w2s/training/loop.py). A loss
that is a mean of per-example terms sets `per_example = True`: the trainer may then call it on each
micro-batch alone, which gives the same gradient without a no-grad pass over the batch first.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F

from w2s.errors import SpecError, first_line

LossFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), target.float())


class Xent:
    """Plain cross-entropy against the weak supervisor's soft labels."""

    per_example = True

    def __call__(self, logits, soft_labels, step_frac):
        return soft_cross_entropy(logits, soft_labels)


class Logconf:
    """Auxiliary confidence loss (Burns et al. 2023, eq. 1).

    The target mixes the weak labels with the student's own hardened predictions:
    (1 - a) * weak + a * hard(student). Hardening is balanced by the weak labels' class prior in
    the batch, which stops the student from collapsing onto one class. Two classes: the student's
    positive-class probability is thresholded at the quantile that gives the prior's share of
    positives (as the reference code). More classes: each student probability is rescaled by
    prior / the batch's mean student probability of that class (the prior shift of Saerens et al.
    2002), then the top class is taken.

    `schedule="w2s"`: `a` rises linearly from 0 to `aux_coef` over the first `warmup_frac` of
    training. `schedule="reference"`: OpenAI's weak_to_strong/loss.py, `a = aux_coef * step_frac`
    while step_frac <= warmup_frac, then `aux_coef` (a jump from aux_coef * warmup_frac).
    """

    per_example = False  # the hardening threshold and the prior are statistics of the batch

    def __init__(self, aux_coef: float = 0.5, warmup_frac: float = 0.2, schedule: str = "w2s"):
        self.aux_coef, self.warmup_frac, self.schedule = aux_coef, warmup_frac, schedule

    def coef(self, step_frac: float) -> float:
        if self.schedule == "reference":
            return self.aux_coef * (step_frac if step_frac <= self.warmup_frac else 1.0)
        ramp = 1.0 if self.warmup_frac == 0 else min(1.0, step_frac / self.warmup_frac)
        return self.aux_coef * ramp

    def __call__(self, logits, soft_labels, step_frac):
        coef = self.coef(step_frac)
        target = (1 - coef) * soft_labels.float() + coef * self.hardened(logits, soft_labels)
        return soft_cross_entropy(logits, target)

    @staticmethod
    def hardened(logits: torch.Tensor, soft_labels: torch.Tensor) -> torch.Tensor:
        """The student's predictions as one-hot rows, balanced by the weak labels' class prior."""
        probs = torch.softmax(logits.detach().float(), dim=-1)
        if probs.shape[1] == 2:
            p_pos = probs[:, 1]
            hard_pos = (p_pos > torch.quantile(p_pos, 1 - soft_labels.float()[:, 1].mean())).float()
            return torch.stack([1 - hard_pos, hard_pos], dim=1)
        prior = soft_labels.float().mean(dim=0)
        shifted = probs * (prior / probs.mean(dim=0).clamp_min(1e-12))
        return F.one_hot(shifted.argmax(dim=1), probs.shape[1]).float()


class Product:
    """Cross-entropy against weak^alpha * student^beta, renormalised per example.

    The student down-weights weak labels it confidently disagrees with. `schedule="w2s"`: before
    `warmup_frac` of training the student's predictions are near-uniform noise, so plain
    cross-entropy is used. `schedule="reference"`: the product from the first step, as OpenAI's
    weak_to_strong/loss.py (which takes a warmup_frac and never uses it).
    """

    per_example = True

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, warmup_frac: float = 0.1, schedule: str = "w2s"):
        self.alpha, self.beta, self.warmup_frac, self.schedule = alpha, beta, warmup_frac, schedule

    def __call__(self, logits, soft_labels, step_frac):
        weak = soft_labels.float()
        if self.schedule == "w2s" and step_frac < self.warmup_frac:
            return soft_cross_entropy(logits, weak)
        student = torch.softmax(logits.detach().float(), dim=-1)
        target = weak.pow(self.alpha) * student.pow(self.beta)
        total = target.sum(dim=1, keepdim=True)
        target = torch.where(total > 0, target / total.clamp_min(1e-12), weak)
        return soft_cross_entropy(logits, target)


class Window:
    """Cross-entropy only where the student is unsure, |p_student - 0.5| < radius (EleutherAI w2s).

    Examples the student already decides confidently are left out, so it is not pulled back onto
    weak labels it has learned to overrule; it learns from the weak supervisor only near its own
    decision boundary. `radius` is a number in (0, 0.5] or "midweak": the batch's median weak-label
    confidence |p_weak - 0.5|, so the window tracks how sure the supervisor itself is.
    """

    per_example = False  # the median, and the mean over the examples inside the window, are the batch's

    def __init__(self, radius: float | str = 0.15):
        self.radius = radius

    def window(self, soft_labels: torch.Tensor) -> torch.Tensor:
        if self.radius == "midweak":
            return (soft_labels.float()[:, 1] - 0.5).abs().median()
        return torch.tensor(float(self.radius), device=soft_labels.device)  # not a host tensor in a GPU step

    def __call__(self, logits, soft_labels, step_frac):
        if logits.shape[1] != 2:
            raise ValueError(f"the window loss needs two classes, got {logits.shape[1]}")
        p_pos = torch.softmax(logits.detach().float(), dim=-1)[:, 1]
        inside = (p_pos - 0.5).abs() < self.window(soft_labels)
        if not inside.any():
            return logits.sum() * 0  # nothing to learn from here, but backward() must still work
        return soft_cross_entropy(logits[inside], soft_labels[inside])


class Entropy(Logconf):
    """Log-confidence with soft, not hardened, student targets: entropy minimisation (EleutherAI w2s).

    The target is (1 - a) * weak + a * student. Like `logconf` but the student's own probabilities are not hardened, so there is no
    class-balancing threshold. The loss equals cross-entropy against the mixed target; it is
    written as (1 - a) * CE(weak, student) + a * H(student) because with the student's part of
    the target detached the gradient would be (1 - a) times plain cross-entropy's, and the
    confidence term would do nothing. `a` warms up like `logconf`.
    """

    per_example = True

    def __call__(self, logits, soft_labels, step_frac):
        coef = self.coef(step_frac)
        log_p = torch.log_softmax(logits.float(), dim=-1)
        fit = -(soft_labels.float() * log_p).sum(dim=1)
        entropy = -(log_p.exp() * log_p).sum(dim=1)
        return ((1 - coef) * fit + coef * entropy).mean()


class KL:
    """KL(weak || student): cross-entropy minus the weak labels' own entropy, so a perfect fit scores 0.

    Same gradient as `xent`; only the reported value differs. Soft weak labels carry entropy that no
    student can remove, so plain cross-entropy values are not comparable across label sources
    (ground truth vs. a weak model); KL values are.
    """

    per_example = True

    def __call__(self, logits, soft_labels, step_frac):
        target = soft_labels.float()
        own_entropy = -torch.special.xlogy(target, target).sum(dim=1).mean()
        return soft_cross_entropy(logits, target) - own_entropy


# a loss name a spec writes (`name:`, w2s/spec/loss_specs.py) -> the callable it builds; a custom loss
# names its own by `path`
LOSSES: dict[str, type] = {
    "xent": Xent,
    "logconf": Logconf,
    "product": Product,
    "window": Window,
    "entropy": Entropy,
    "kl": KL,
}


def build_loss(spec, key: str = "loss") -> LossFn:
    """Instantiate a loss from its spec entry (a `w2s.spec.LossSpec`); errors name the spec `key`
    (e.g. losses.1.path for a module that does not import, losses.1.smoothng for a misspelt keyword)."""
    params = spec.model_dump(exclude={"name", "label", "path", "probe"})
    if spec.name != "custom":
        return LOSSES[spec.name](**params)
    module_name, _, attr = spec.path.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - whatever the module raises while importing
        raise SpecError(f"{key}.path: cannot import {module_name!r}: {type(err).__name__}: {first_line(err)}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise SpecError(f"{key}.path: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise SpecError(f"{key}.path: {spec.path!r} is not callable")
    # a class (or factory) is called with the spec's extra keys; a plain function is used as is
    if not (isinstance(obj, type) or params):
        return _check_call(obj, spec.path, key)
    _check_keywords(obj, params, spec.path, key)
    try:
        built = obj(**params)
    except Exception as err:  # noqa: BLE001 - the user's constructor rejecting a value
        raise SpecError(f"{key}: {spec.path}(...) failed: {type(err).__name__}: {first_line(err)}") from None
    if not callable(built):
        raise SpecError(f"{key}.path: {spec.path}(...) returned a {type(built).__name__}, not a loss callable")
    return _check_call(built, spec.path, key)


def _check_call(loss, path: str, key: str):
    """The trainer calls loss(logits, soft_labels, step_frac): a callable that cannot take that is
    named now, not at the first training step."""
    try:
        signature = inspect.signature(loss)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return loss
    try:
        signature.bind(None, None, 0.0)
    except TypeError as err:
        raise SpecError(
            f"{key}.path: {path} cannot be called as loss(logits, soft_labels, step_frac) ({err}); "
            "see docs/spec.md, Losses"
        ) from None
    return loss


def _check_keywords(obj, params: dict, path: str, key: str) -> None:
    """A spec key the callable does not take is named as that key, with the ones it does take."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    taken = signature.parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in taken):
        return
    names = [p.name for p in taken if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for name in params:
        if name not in names:
            accepts = ", ".join(names) if names else "no keyword arguments"
            raise SpecError(f"{key}.{name}: unknown keyword for {path}; it accepts {accepts}")
