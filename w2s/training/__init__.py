"""Training and inference on one stage's data, the same on a laptop CPU and under `accelerate launch`.

- loop.py: the one training loop (`train`), optimizer batches and micro-batches, evaluation points;
- launch.py: the process group, a stage's `Accelerator`, seeding, devices;
- inference.py: a model's outputs over a split (`batch_outputs`), class probabilities (`predict`);
- settings.py: `TrainSettings`, one stage's resolved settings;
- batches.py: the one interface the loop reads a split through (tokens, cached activations, images);
- losses.py: the transfer losses; probes.py: label probes that clean weak labels;
- activations.py: cached activations (what `features` stages compute and write);
- generative.py: language-modelling finetuning;
- precision.py, compiling.py, attention.py: what `mixed_precision`, `compile` and `attention: auto`
  decide on this machine (attention.py: the kernels themselves too).

Importing this package imports nothing; its modules import torch where they need it.
"""
