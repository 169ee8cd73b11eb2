"""The vision setting of Burns et al. (2023): image datasets as rows, and frozen image models.

In the paper's vision experiments the weak supervisor is AlexNet, used as it is (its own ImageNet
predictions are the weak labels), and the strong student is a linear probe on the embeddings of a
strong self-supervised model (DINO ResNet-50 / ViT-B/8). The backbones are never fine-tuned, so
everything here is inference only. By job:

* images.py: a row's image as an RGB PIL image (decoded, or read from its path), and the ImageNet
  evaluation transform;
* datasets.py: the image datasets (digits, digits10, cifar10, imagenet, imagenet1k) as rows
  {"id", "image", "hard_label"}, and the registry's loaders (w2s/data/registry.py);
* encoders.py: `load_image_encoder` for torchvision:<arch>, torchhub:... and Hugging Face image
  models (the name's kind: w2s/models/names.py), as an `ImageEncoder` whose `embed` maps images to
  one vector each.

This package re-exports what callers outside it use; everything else is imported from its module.
"""

from w2s.vision.datasets import load_digits_rows, load_imagenet_val_rows
from w2s.vision.encoders import load_image_encoder
from w2s.vision.images import imagenet_eval_preprocess

__all__ = [
    "imagenet_eval_preprocess",  # tests/test_classes.py
    "load_digits_rows",  # tests/test_classes.py
    "load_image_encoder",  # w2s/pipeline/stages.py
    "load_imagenet_val_rows",  # tests/test_classes.py
]
