"""Tokenization: one batched call, then examples over max_ctx tokens shortened or dropped.

Shortening keeps what decides the label. A formatter may name the decisive part of its text (the
question and answer after a long passage, the final response after a dialogue history): that part
is kept whole and only the text before it is cut, from the side `truncate` says (`right` keeps its
beginning, `left` its end). A text without a decisive part is cut as a whole from that side. Only
when the decisive part alone exceeds max_ctx is it cut too, and that is counted (`decisive_cut`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from w2s.errors import SpecError


class Tokenized(NamedTuple):
    input_ids: list[list[int]]
    kept: list[int]  # positions in `rows` of the examples kept (all of them unless dropping)
    n_dropped: int
    n_shortened: int
    n_decisive_cut: int  # shortened examples whose decisive part itself did not fit


def tokenize(rows: list[dict], tokenizer, max_ctx: int, policy: str, side: str = "right",
             where: str = "dataset") -> Tokenized:
    """Tokenize the rows' "txt" in one batched call; examples over max_ctx tokens are dropped
    (policy "drop", the reference code's choice) or shortened (policy "truncate") keeping their
    decisive part ("keep_chars": the length of the suffix of "txt" that decides the label)."""
    if policy not in ("drop", "truncate"):
        raise ValueError(f"policy must be 'drop' or 'truncate', got {policy!r}")
    texts = [r["txt"] for r in rows]
    ids = tokenizer(texts, truncation=False, verbose=False)["input_ids"] if texts else []
    long = [i for i, x in enumerate(ids) if len(x) > max_ctx]
    n_cut = 0
    if policy == "drop":
        skip = set(long)
        kept = [i for i in range(len(ids)) if i not in skip]
        ids, n_dropped, n_shortened = [ids[i] for i in kept], len(long), 0
    else:
        for i in long:
            ids[i], cut = _shorten(rows[i], tokenizer, max_ctx, side)
            n_cut += cut
        kept, n_dropped, n_shortened = list(range(len(ids))), 0, len(long)
    if not kept:
        raise SpecError(
            f"{where}: no examples left: all {len(rows)} are longer than max_ctx={max_ctx} tokens "
            "(raise max_ctx or use ctx_policy: truncate)"
            if rows else f"{where}: the split is empty"
        )
    return Tokenized(ids, kept, n_dropped, n_shortened, n_cut)


def _shorten(row: dict, tokenizer, max_ctx: int, side: str) -> tuple[list[int], bool]:
    """(ids of at most max_ctx tokens, whether the decisive part was cut)."""
    prefix, suffix = _special_tokens(tokenizer)
    budget = max(0, max_ctx - len(prefix) - len(suffix))
    text, keep = row["txt"], row.get("keep_chars", 0)
    head, tail = (text[: len(text) - keep], text[len(text) - keep :]) if keep else (text, "")

    def encode(part: str) -> list[int]:
        return tokenizer(part, add_special_tokens=False, verbose=False)["input_ids"] if part else []

    head_ids, tail_ids = encode(head), encode(tail)
    cut = len(tail_ids) > budget
    if cut:  # the decisive part alone is too long: it is all that is kept, cut on the same side
        head_ids, tail_ids = [], _clip(tail_ids, budget, side)
    else:
        head_ids = _clip(head_ids, budget - len(tail_ids), side)
    return prefix + head_ids + tail_ids + suffix, cut


def _clip(ids: list[int], n: int, side: str) -> list[int]:
    """The first n ids (side "right": the end is cut) or the last n (side "left")."""
    if n <= 0:
        return []
    return ids[-n:] if side == "left" else ids[:n]


@functools.lru_cache(maxsize=16)
def _special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after one text (BERT: [CLS] / [SEP]; GPT-2:
    none), read off a probe: transformers 5 has no public call that wraps ids in them."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    raise ValueError(f"cannot tell where {type(tokenizer).__name__} puts its special tokens")
