"""Generative finetuning (Burns et al. 2023, sec. 4.3.1): before a causal LM learns the task from
labels, fine-tune it with the language-modelling loss on the task's texts, labels unseen.

The paper found this makes the strong model's representation of the task more salient, which
raises PGR. It is its own stage (`lm_finetune`): trained once per (dataset, model, seed), its
weights saved in the stage folder, where the model's ground-truth, transfer and features stages
start from. Only the training pool's texts (halves A and B) are used; the test texts only
measure the language-modelling loss before and after.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from w2s.errors import SpecError
from w2s.models.loading import is_causal, load_backbone, read_config
from w2s.training.batches import Encoded
from w2s.training.inference import batch_outputs
from w2s.training.launch import make_accelerator
from w2s.training.loop import language_modelling, train


def check_causal(model_spec, key: str) -> None:
    """One clear error before anything trains: generative finetuning needs a causal LM."""
    config = read_config(model_spec)
    if config is None:
        return  # loading reports its own, clearer error when the stage starts
    if not is_causal(config):
        raise SpecError(
            f"{key}.generative_finetune: {model_spec.name!r} is not a causal language model "
            f"({', '.join(config.architectures or [config.model_type])}); use it with e.g. gpt2 or Qwen models"
        )


@torch.no_grad()
def lm_loss(model, data: Encoded, accelerator, batch_size: int) -> float:
    """Mean next-token cross-entropy over all tokens of `data` (nats per token)."""
    model.eval()

    def summed(inputs: dict) -> torch.Tensor:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        with accelerator.autocast():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        per_token = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none", ignore_index=-100)
        return torch.stack([per_token.sum(dim=1), (targets != -100).sum(dim=1).float()], dim=1)

    totals = batch_outputs(summed, data, accelerator, batch_size, desc="LM loss").sum(axis=0)
    model.train()
    return float(totals[0] / max(totals[1], 1.0))


def finetune(stage, texts: Encoded, test: Encoded, key: str, log, log_every: int, out: Path | None) -> dict:
    """Train the causal LM of `stage.model` on `texts`; save it under `out` (main process); return metrics."""
    model = load_backbone(stage.model, key, auto=AutoModelForCausalLM)
    if not is_causal(model.config):
        raise SpecError(f"{key}.generative_finetune: {stage.model.name!r} is not a causal language model")
    accelerator = make_accelerator(stage.settings)
    before = lm_loss(model.to(accelerator.device), test, accelerator, stage.settings.eval_batch_size)
    start = time.perf_counter()
    model, accelerator = train(
        model, texts, language_modelling, stage.settings, stage.seed, log=log, log_every=log_every, desc=stage.name
    )
    seconds = time.perf_counter() - start
    after = lm_loss(model, test, accelerator, stage.settings.eval_batch_size)
    state = accelerator.get_state_dict(model)  # collective under FSDP / ZeRO-3: every process calls it
    if out is not None:
        accelerator.unwrap_model(model).save_pretrained(out, state_dict=state, safe_serialization=True)
    accelerator.wait_for_everyone()
    return {
        "lm_loss_test_before": before,
        "lm_loss_test": after,
        "n_train": len(texts),
        "n_test": len(test),
        "train_seconds": round(seconds, 2),
        "tokens_train": int(np.sum(texts.lengths())),
    }
