"""Human judgments -> training examples for the two encoders (the bi-encoder and the cross-encoder).

Input: graded judgments (query -> product -> relevance on Home Depot's 1-3 scale; click examples
already joined as judgments by ``train_ranker.click_judgments``: clicked 2.5, skipped 1) of the
*training* queries only (``train_ranker``'s split: never tuning or validation queries), and item
texts built as the encoder sees them (``training_data.item_texts``).

**Bi-encoder** (:func:`bi_encoder_examples`): one :class:`Example` per product judged at least
``positive_at`` (default 2.5: "exact" or nearly, the rating a click stands for), its hard
negatives the query's products judged below ``negative_below`` (default 2: "irrelevant" to
"partly") and up to three unjudged products BM25 ranks 5..30 for the query (``train.mine_negatives``,
where every judged product of the query counts as known, so a product judged 2.33 is never
mined as a negative). Products judged in between are neither: a "relevant but not exact" item
is a poor in-batch negative and a noisy positive.

**Cross-encoder** (:func:`cross_encoder_examples`): every judged product with the graded target
``(relevance - 1) / 2`` (0..1, the evaluation's linear gain scaled), plus the mined unjudged
products at 0 (nDCG counts an unjudged product as irrelevant, and the ranker's labels do the
same); the trainer adds random positives of other queries as easy negatives. Its pointwise BCE
takes the soft targets as they are.

>>> j = {"drill": {"a": 3.0, "b": 1.0, "c": 2.33}}
>>> [(e.positive_id, e.negative_ids) for e in bi_encoder_examples(j, ["drill"], {"a": "A", "b": "B", "c": "C"})]
[('a', ['b'])]
>>> [(e.positive_id, e.label) for e in cross_encoder_examples(j, ["drill"], {"a": "A", "b": "B", "c": "C"})]
[('a', 1.0), ('b', 0.0), ('c', 0.665)]
"""

from __future__ import annotations

from shopsearch.learn.train import mine_negatives
from shopsearch.learn.training_data import Example, item_texts

Judgments = dict[str, dict[str, float]]
POSITIVE_AT = 2.5     # judged at least this: a positive for the bi-encoder
NEGATIVE_BELOW = 2.0  # judged below this: a hard negative for the bi-encoder


def graded_target(relevance: float) -> float:
    """The cross-encoder's target for a judged relevance on the 1-3 scale: ``(relevance - 1) / 2`` in [0, 1].

    >>> graded_target(1), graded_target(2), graded_target(3), graded_target(3.5)
    (0.0, 0.5, 1.0, 1.0)
    """
    return round(min(1.0, max(0.0, (float(relevance) - 1.0) / 2.0)), 4)


def bi_encoder_examples(judgments: Judgments, queries, texts: dict[str, str], positive_at: float = POSITIVE_AT,
                        negative_below: float = NEGATIVE_BELOW, max_negatives: int = 5) -> list[Example]:
    """Examples of ``queries`` only: each product judged >= ``positive_at``, with the query's low-judged products (pure)."""
    out = []
    for q in sorted(set(queries)):
        rated = {d: r for d, r in judgments.get(q, {}).items() if texts.get(d)}
        low = sorted((d for d, r in rated.items() if r < negative_below), key=lambda d: (rated[d], d))[:max_negatives]
        for d in sorted(d for d, r in rated.items() if r >= positive_at):
            out.append(Example(q, d, texts[d], list(low), [texts[x] for x in low]))
    return out


def cross_encoder_examples(judgments: Judgments, queries, texts: dict[str, str],
                           mined: dict[str, list[str]] | None = None) -> list[Example]:
    """Every judged product of ``queries`` with its graded target, and the mined unjudged texts at 0 (pure)."""
    out = []
    for q in sorted(set(queries)):
        out += [Example(q, d, texts[d], label=graded_target(r)) for d, r in sorted(judgments.get(q, {}).items())
                if texts.get(d)]
        out += [Example(q, f"mined-{n}", t, label=0.0) for n, t in enumerate((mined or {}).get(q, []))]
    return out


def judged_examples(client, index: str, judgments: Judgments, queries, *, positive_at: float = POSITIVE_AT,
                    negative_below: float = NEGATIVE_BELOW) -> dict:
    """Both encoders' examples for ``queries`` from ``index`` (texts, BM25-mined negatives); with counts.

    Returns ``{"bi_encoder": [...], "bi_encoder_negatives": [...], "cross_encoder": [...], "summary": {...}}``,
    the negatives aligned with the bi-encoder examples (pass them as ``hard_negatives``).
    """
    queries = sorted(set(queries))
    texts = item_texts(client, index, {d for q in queries for d in judgments.get(q, {})})
    bi = bi_encoder_examples(judgments, queries, texts, positive_at, negative_below)
    # Every judged product is known to the miner (pseudo-examples after the real ones), so no judged
    # product is mined as a negative; one BM25 pass serves both encoders.
    known = [Example(q, d) for q in queries for d in sorted(judgments.get(q, {}))]
    mined = mine_negatives(client, index, bi + known)
    first: dict[str, list[str]] = {}
    for e, m in zip(bi + known, mined):
        first.setdefault(e.query, m)
    ce = cross_encoder_examples(judgments, queries, texts, first)
    summary = {"queries": len(queries), "judged_pairs": sum(len(judgments.get(q, {})) for q in queries),
               "pairs_without_text": sum(1 for q in queries for d in judgments.get(q, {}) if not texts.get(d)),
               "bi_encoder_pairs": len(bi), "bi_encoder_queries": len({e.query for e in bi}),
               "bi_encoder_judged_negatives": sum(len(e.negative_ids) for e in bi),
               "bi_encoder_mined_negatives": sum(len(m) for m in mined[:len(bi)]),
               "cross_encoder_rows": len(ce), "cross_encoder_mined_rows": sum(len(m) for m in first.values()),
               "positive_at": positive_at, "negative_below": negative_below, "index": index}
    return {"bi_encoder": bi, "bi_encoder_negatives": mined[:len(bi)], "cross_encoder": ce, "summary": summary}
