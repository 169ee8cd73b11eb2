"""Frozen image models as `ImageEncoder`s: `load_image_encoder` wraps a torchvision model, a torch.hub
entry point or a Hugging Face vision model (the name's kind: w2s/models/names.py, `parse_model_name`)
so that `embed` maps images to one vector each, preprocessing included: features for probes, or
(`head=True`) the model's own class logits for a zero-shot supervisor.

`ImageEncoder.embed` accepts decoded images and file paths alike (w2s/vision/images.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch import nn

from w2s.errors import first_line
from w2s.models.loading import quiet_transformers
from w2s.models.names import ModelName, parse_model_name
from w2s.vision.images import ImageLike, imagenet_eval_preprocess, to_rgb


class ImageEncoder:
    """A frozen image model that maps images to one `dim`-sized feature vector each.

    `preprocess` turns a list of RGB PIL images into a pixel batch; `features(model, pixels)` runs the
    model and reduces its output to (batch, dim) features. The model is kept in eval mode and run
    without gradients, since the vision setting only probes frozen features.
    """

    def __init__(
        self, name: str, model: nn.Module, preprocess: Callable, features: Callable, dtype: torch.dtype
    ) -> None:
        self.name = name
        self.model = model.eval().requires_grad_(False)
        self.preprocess = preprocess
        self.features = features
        self.dtype = dtype
        self.dim = int(self.embed([Image.new("RGB", (32, 32))]).shape[1])  # one dummy image: any architecture

    @property
    def device(self) -> torch.device:
        tensors = [*self.model.parameters(), *self.model.buffers()]  # a model may hold buffers only
        return tensors[0].device if tensors else torch.device("cpu")

    def to(self, device: str | torch.device) -> ImageEncoder:
        """Move the model (e.g. to `accelerator.device`); inputs follow it automatically."""
        self.model.to(device)
        return self

    @torch.inference_mode()
    def embed(self, images: Sequence[ImageLike], batch_size: int = 64) -> torch.Tensor:
        """(len(images), dim) float32 features on the CPU; images may be PIL images or file paths.

        Batches of `batch_size` bound the accelerator memory; the result is on the CPU in float32
        whatever the model's device and dtype, ready to cache or to fit a probe on.
        """
        if not images:
            raise ValueError("embed() needs at least one image")
        out = []
        for start in range(0, len(images), batch_size):
            batch = [to_rgb(image) for image in images[start : start + batch_size]]
            pixels = self.preprocess(batch).to(device=self.device, dtype=self.dtype)
            out.append(self.features(self.model, pixels).float().cpu())
        return torch.cat(out)


def load_image_encoder(
    name: str,
    *,
    random_init: bool = False,
    config_overrides: dict | None = None,
    dtype: torch.dtype = torch.float32,
    head: bool = False,
    trust_remote_code: bool = False,
) -> ImageEncoder:
    """An `ImageEncoder` for `name`: "torchvision:<arch>", "torchhub:<repo>/<entry>", or a Hugging Face
    hub id / local folder. `head=False` gives features (for probes), `head=True` the model's own class
    logits (a zero-shot supervisor).

    * torchvision:<arch> (alexnet, resnet50, vit_b_16, ...): the ImageNet classifier; for features its
      last linear layer is replaced by the identity, so features are that layer's input (AlexNet: the
      4096-d penultimate layer; ResNet-50: 2048-d). `config_overrides` go to the torchvision builder.
    * torchhub:<owner>/<repo>[:<ref>]/<entry> (or a local folder with a hubconf.py for the repo):
      `torch.hub.load`, whose output is used as it is (DINO's entries give the embedding the
      reference probes; a classifier's entry gives logits), on the ImageNet evaluation transform.
      It runs the repository's code, so it needs `trust_remote_code`. `config_overrides` are the
      entry point's keyword arguments; `random_init` passes pretrained=False.
    * otherwise AutoModel (head: AutoModelForImageClassification, its logits) + AutoImageProcessor;
      features are `pooler_output` when the model has a parameter-free pooler (ResNet's average
      pool, DINOv2's normalised CLS), else the CLS token of `last_hidden_state` (DINO's linear-probe
      convention; a ViT's dense+tanh pooler is not in DINO checkpoints, it would be random).
      `config_overrides` update the AutoConfig.

    `random_init` builds the architecture with fresh weights (from the global torch RNG: seed it
    for reproducible features). A model that cannot be loaded raises ValueError whose first line
    names it and the reason.
    """
    overrides = dict(config_overrides or {})
    try:
        parsed = parse_model_name(name)
        if parsed.kind == "torchvision":
            return _torchvision_encoder(name, parsed.arch, random_init, overrides, dtype, head)
        if parsed.kind == "torchhub":
            return _torch_hub_encoder(parsed, random_init, overrides, dtype, trust_remote_code)
        return _hf_encoder(parsed, random_init, overrides, dtype, head)
    except Exception as err:  # noqa: BLE001 - OSError, ValueError, KeyError, ImportError, ... all mean "cannot load"
        raise ValueError(f"cannot load image model {name!r}: {first_line(err)}") from None


def _torchvision_encoder(
    name: str, arch: str, random_init: bool, overrides: dict, dtype: torch.dtype, head: bool
) -> ImageEncoder:
    try:
        import torchvision
    except ImportError:
        raise ImportError("needs torchvision (pip install torchvision matching your torch)") from None
    try:
        default = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError, AttributeError):
        default = None  # an unknown arch, or one without weights
    if default is None and not random_init:
        raise ValueError(f"torchvision has no pretrained weights for {arch!r} (an unknown arch?)")
    model = torchvision.models.get_model(arch, weights=None if random_init else default, **overrides)
    transform = default.transforms() if default is not None else _plain_imagenet_transform()
    if not head:
        _drop_last_linear(model, arch)
    model.to(dtype)

    def preprocess(images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([transform(image) for image in images])

    def features(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        return model(pixels).flatten(1)

    return ImageEncoder(name, model, preprocess, features, dtype)


def _torch_hub_encoder(
    parsed: ModelName, random_init: bool, overrides: dict, dtype: torch.dtype, trust_remote_code: bool
) -> ImageEncoder:
    if not trust_remote_code:
        raise ValueError("torch.hub runs the repository's hubconf.py; set trust_remote_code: true if you trust it")
    folder = parsed.folder  # a local folder with a hubconf.py, or None: a GitHub repository
    if folder is not None and not (folder / "hubconf.py").is_file():
        raise ValueError(f"{parsed.repo} has no hubconf.py")
    kwargs = {**overrides, **({"pretrained": False} if random_init else {})}
    if folder is not None:
        model = torch.hub.load(str(folder), parsed.entry, source="local", **kwargs)
    else:
        model = torch.hub.load(parsed.hub_repo, parsed.entry, trust_repo=True, **kwargs)
    model.to(dtype)

    def features(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        return model(pixels).flatten(1)

    return ImageEncoder(parsed.name, model, imagenet_eval_preprocess, features, dtype)


def _plain_imagenet_transform() -> Callable:
    """Resize to 224x224 and ImageNet-normalise: for architectures that ship no pretrained weights."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize((224, 224)),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )


def _drop_last_linear(model: nn.Module, arch: str) -> None:
    """Replace the classifier's final nn.Linear (the last one registered) by nn.Identity."""
    linears = [qualname for qualname, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError(f"torchvision model {arch!r} has no nn.Linear classification layer to strip")
    parent_name, _, child = linears[-1].rpartition(".")
    setattr(model.get_submodule(parent_name), child, nn.Identity())


def _hf_encoder(parsed: ModelName, random_init: bool, overrides: dict, dtype: torch.dtype, head: bool) -> ImageEncoder:
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

    name = parsed.name
    auto = AutoModelForImageClassification if head else AutoModel
    if parsed.folder is not None and not parsed.folder.exists():
        raise ValueError("no such folder (and not a hub id)")  # transformers would say "Repo id must be ..."
    with quiet_transformers():  # also hushes the unused ViT pooler that loading lists as missing
        path = str(parsed.folder) if parsed.folder is not None else name  # a hub id, or a folder here spelled as one
        processor = AutoImageProcessor.from_pretrained(path)
        config = AutoConfig.from_pretrained(path, **overrides)
        if random_init:
            model = auto.from_config(config, dtype=dtype)
        else:
            model = auto.from_pretrained(path, config=config, dtype=dtype)
    pooler = getattr(model, "pooler", None)
    pooler_has_weights = isinstance(pooler, nn.Module) and any(True for _ in pooler.parameters())

    def features(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        output = model(pixel_values=pixels)  # by keyword: some models (CLIP) take input_ids first
        if head:
            return output.logits
        pooled = getattr(output, "pooler_output", None)
        if pooled is not None and not pooler_has_weights:
            pooled = pooled.flatten(1)  # ResNet: (b, d, 1, 1)
            if pooled.dim() == 2:
                return pooled
        hidden = output.last_hidden_state
        if hidden.dim() != 3:
            raise ValueError(f"{name}: no (batch, dim) pooler_output and no (batch, tokens, dim) last_hidden_state")
        return hidden[:, 0]  # the CLS token

    def preprocess(images: list[Image.Image]) -> torch.Tensor:
        return processor(images=images, return_tensors="pt")["pixel_values"]

    return ImageEncoder(name, model, preprocess, features, dtype)
