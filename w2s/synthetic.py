"""Synthetic "mixed review" sentiment task, generated offline and deterministically.

Each example is one or two short clauses from a review of a made-up product, film,
restaurant, etc. ("Velmora bistro: the staff seemed rude, but the menu was superb.").
The label is the reviewer's final verdict: 1 = positive, 0 = negative.  It is decided by

* the *meaning* of an evaluative adjective.  The adjective lists are authored here and
  split per seed into a "seen" part (the only words in the train pool, drawn with
  Zipf-like weights so many are rare in any half of the pool) and a held-out part that
  appears only at test time.  Generalising to held-out words needs the pretrained
  sense of the word, which the full encoder carries much better than its first layer;
* composition: negation ("was not", "was never", "was far from") flips a clause, and
  in two-clause sentences the clauses disagree and a connective decides which one
  counts ("A, but B" / "Although A, B" -> B; "B, even though A" / "B, despite A" -> A
  is the concession).  Resolving this scope is multi-step reasoning a 1-layer
  transformer does worse than a 6-layer one;
* intensifiers ("truly", "rather") and hedges are label-independent noise.

Leakage control: the label is drawn first, then negation, so "not", "never", "but",
"although", every intensifier and every aspect noun occur equally often under both
labels, and two-clause sentences always contain one positive and one negative word.
Only word meaning plus structure predicts the label.
"""

import random

DEFAULT_N_TRAIN = 3000  # pool size (both halves together)
DEFAULT_N_TEST = 1000

POSITIVE = """excellent wonderful superb delightful brilliant charming lovely fantastic
marvelous splendid impressive enjoyable pleasant terrific outstanding gorgeous elegant
flawless satisfying refreshing stunning exquisite remarkable graceful uplifting
heartwarming captivating dazzling sublime exceptional admirable fabulous magnificent
cheerful inviting polished thoughtful reliable sturdy generous spotless inspired
mesmerizing sensational wholesome dependable soothing vibrant masterful engaging glorious
commendable enchanting riveting superlative delicious immaculate exhilarating
breathtaking impeccable lively stellar""".split()

NEGATIVE = """terrible awful dreadful horrible dismal mediocre boring dull tedious
disappointing miserable lousy shoddy clumsy bland tasteless annoying frustrating
unpleasant sloppy flimsy awkward lifeless tiresome pathetic atrocious abysmal appalling
grim stale greasy cramped filthy rude useless unbearable forgettable painful dreary
joyless clunky overpriced subpar shabby wretched insipid lackluster botched grating
sluggish unreliable messy hollow bleak drab underwhelming irritating dismaying
repellent mediocre inept tacky""".split()
NEGATIVE = list(dict.fromkeys(NEGATIVE))  # keep order, drop accidental duplicates

CATEGORIES = {
    "film": ["plot", "acting", "ending", "soundtrack", "pacing", "dialogue", "camera work"],
    "bistro": ["menu", "staff", "dessert", "service", "decor", "soup", "wine list"],
    "blender": ["motor", "design", "lid", "manual", "price", "noise level", "jar"],
    "novel": ["prose", "ending", "hero", "pacing", "cover", "translation", "first chapter"],
    "hotel": ["room", "breakfast", "staff", "pool", "view", "bed", "lobby"],
    "album": ["vocals", "lyrics", "mixing", "opening track", "guitar", "chorus", "artwork"],
    "phone": ["screen", "battery", "camera", "case", "speaker", "charger", "software"],
    "board game": ["rulebook", "artwork", "box", "scoring", "dice", "theme", "setup"],
}
SYLLABLES = "vel mor qua tin bar lo zen ri dak sul fen ora mi tusk pel gar nix ambo cre".split()
VERBS = ["was", "felt", "seemed", "looked", "turned out"]
INTENS = ["", "", "", "truly ", "rather ", "quite ", "really ", "somewhat ", "utterly "]
NEG_VERBS = ["was not", "was never", "was far from", "was hardly", "was in no way",
             "never felt", "did not seem", "never looked", "was not at all"]
OPENERS = ["{name} {cat}: ", "Review of the {name} {cat}. ", "About {name} {cat}: ",
           "My take on the {name} {cat}: ", ""]
# two-clause frames; {d} = clause that decides the label, {c} = conceded clause.
FRAMES = ["{c}, but {d}.", "Although {c}, {d}.", "{d}, even though {c}.",
          "{c}; however, {d}.", "{d}, despite the fact that {c}.", "{c}, yet {d}."]
P_NEG = 0.35  # chance a clause is negated
P_SINGLE = 0.3  # chance of a single-clause example
HELDOUT_FRAC = 0.35  # share of each adjective list reserved for test only
P_HELDOUT_AT_TEST = 0.5  # share of test clauses that use held-out adjectives


def _name(rng):
    return "".join(rng.choice(SYLLABLES) for _ in range(2)).capitalize()


def _split(words, rng):
    words = sorted(words)
    rng.shuffle(words)
    k = int(round(len(words) * HELDOUT_FRAC))
    return words[k:], words[:k]  # seen, held-out


class _Sampler:
    def __init__(self, seen, held, rng):
        self.seen, self.held = seen, held
        # Zipf-like weights over seen words so that many of them are rare in a half-pool
        self.w = [1.0 / (i + 1) ** 0.8 for i in range(len(seen))]
        rng.shuffle(self.w)

    def draw(self, rng, heldout):
        if heldout:
            return rng.choice(self.held)
        return rng.choices(self.seen, weights=self.w, k=1)[0]


def _clause(rng, polarity, aspect, samplers, heldout):
    """A clause about `aspect` whose meaning has the given polarity (1 pos / 0 neg)."""
    negated = rng.random() < P_NEG
    word_pol = polarity ^ int(negated)
    adj = samplers[word_pol].draw(rng, heldout and rng.random() < P_HELDOUT_AT_TEST)
    if negated:
        return f"the {aspect} {rng.choice(NEG_VERBS)} {adj}"
    return f"the {aspect} {rng.choice(VERBS)} {rng.choice(INTENS)}{adj}"


def _example(rng, label, samplers, heldout):
    cat = rng.choice(sorted(CATEGORIES))
    a1, a2 = rng.sample(CATEGORIES[cat], 2)
    opener = rng.choice(OPENERS).format(name=_name(rng), cat=cat)
    if rng.random() < P_SINGLE:  # single clause (possibly negated)
        body = _clause(rng, label, a1, samplers, heldout) + "."
    else:  # two disagreeing clauses, connective decides
        d = _clause(rng, label, a1, samplers, heldout)
        c = _clause(rng, 1 - label, a2, samplers, heldout)
        body = rng.choice(FRAMES).format(d=d, c=c)
    body = body[0].upper() + body[1:]
    return opener + body


def generate(n_train: int, n_test: int, seed: int) -> dict[str, list[dict]]:
    """Return {"train": [...], "test": [...]}; each row {"id", "txt", "hard_label"}.

    Train rows only use "seen" adjectives; about half of the test clauses use held-out
    adjectives that never occur in the train pool.  Deterministic in (n_train, n_test, seed).
    """
    rng = random.Random(f"w2s-synthetic-{seed}")
    pos_seen, pos_held = _split(POSITIVE, rng)
    neg_seen, neg_held = _split(NEGATIVE, rng)
    samplers = {1: _Sampler(pos_seen, pos_held, rng), 0: _Sampler(neg_seen, neg_held, rng)}
    out = {}
    for split, n, heldout in (("train", n_train, False), ("test", n_test, True)):
        labels = [i % 2 for i in range(n)]
        rng.shuffle(labels)
        out[split] = [{"id": f"{split}-{i}", "txt": _example(rng, y, samplers, heldout),
                       "hard_label": y} for i, y in enumerate(labels)]
    return out
