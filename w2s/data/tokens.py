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


def tokenize(
    rows: list[dict], tokenizer, max_ctx: int, policy: str, side: str = "right", where: str = "dataset"
) -> Tokenized:
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
        n_cut = _shorten(rows, ids, long, tokenizer, max_ctx, side)
        kept, n_dropped, n_shortened = list(range(len(ids))), 0, len(long)
    if not kept:
        raise SpecError(
            f"{where}: no examples left: all {len(rows)} are longer than max_ctx={max_ctx} tokens "
            "(raise max_ctx or use ctx_policy: truncate)"
            if rows
            else f"{where}: the split is empty"
        )
    return Tokenized(ids, kept, n_dropped, n_shortened, n_cut)


def _shorten(rows: list[dict], ids: list[list[int]], long: list[int], tokenizer, max_ctx: int, side: str) -> int:
    """Shorten `ids[i]` for every i in `long` to max_ctx tokens, in place; return how many lost part of
    their decisive part. A text without one is cut from its batch ids; texts with one are split into
    the part before it and itself, each tokenized in one batched call."""
    prefix, suffix = _special_tokens(tokenizer)
    budget = max(0, max_ctx - len(prefix) - len(suffix))
    parts = {i: (ids[i][len(prefix) : len(ids[i]) - len(suffix)], []) for i in long}  # (cuttable, decisive)
    decisive = [i for i in long if rows[i].get("keep_chars")]
    if decisive:
        cuts = [len(rows[i]["txt"]) - rows[i]["keep_chars"] for i in decisive]
        heads = _encode(tokenizer, [rows[i]["txt"][:cut] for i, cut in zip(decisive, cuts)])
        tails = _encode(tokenizer, [rows[i]["txt"][cut:] for i, cut in zip(decisive, cuts)])
        parts.update(zip(decisive, zip(heads, tails)))
    n_cut = 0
    for i, (head, tail) in parts.items():
        if len(tail) > budget:  # the decisive part alone is too long: it is all that is kept, cut on the same side
            head, tail = [], _clip(tail, budget, side)
            n_cut += 1
        else:
            head = _clip(head, budget - len(tail), side)
        ids[i] = prefix + head + tail + suffix
    return n_cut


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]


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
