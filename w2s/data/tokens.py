"""Tokenization: one batched call, then examples over max_ctx tokens dropped or truncated."""

from __future__ import annotations

from typing import NamedTuple

from w2s.errors import SpecError


class Tokenized(NamedTuple):
    input_ids: list[list[int]]
    kept: list[int]  # positions in `rows` of the examples kept (all of them under "truncate")
    n_dropped: int
    n_truncated: int


def tokenize(rows: list[dict], tokenizer, max_ctx: int, policy: str, where: str = "dataset") -> Tokenized:
    """Tokenize the rows' "txt" in one batched call, then drop or truncate examples over max_ctx tokens.

    Truncation re-tokenizes only the long examples with the tokenizer's own truncation, so special
    tokens (e.g. BERT's final [SEP]) survive. The caller logs the counts, e.g.
    "dropped 12 of 2000 examples longer than max_ctx=512".
    """
    if policy not in ("drop", "truncate"):
        raise ValueError(f"policy must be 'drop' or 'truncate', got {policy!r}")
    texts = [r["txt"] for r in rows]
    ids = tokenizer(texts, truncation=False, verbose=False)["input_ids"] if texts else []
    long = [i for i, x in enumerate(ids) if len(x) > max_ctx]
    if policy == "drop":
        skip = set(long)
        kept = [i for i in range(len(ids)) if i not in skip]
        ids, n_dropped, n_truncated = [ids[i] for i in kept], len(long), 0
    else:
        if long:
            cut = tokenizer([texts[i] for i in long], truncation=True, max_length=max_ctx)["input_ids"]
            for i, x in zip(long, cut):
                ids[i] = x
        kept, n_dropped, n_truncated = list(range(len(ids))), 0, len(long)
    if not kept:
        raise SpecError(
            f"{where}: no examples left: all {len(rows)} are longer than max_ctx={max_ctx} tokens "
            "(raise max_ctx or use ctx_policy: truncate)"
            if rows else f"{where}: the split is empty"
        )
    return Tokenized(ids, kept, n_dropped, n_truncated)
