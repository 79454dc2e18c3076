"""Fine-tuning from click-log examples: a bi-encoder (retrieval) and a cross-encoder (re-ranking).

Input: :class:`shopsearch.learn.training_data.Example` rows (query, clicked item text, texts of the
items skipped above it, an inverse-propensity weight). Output: model directories.

**Bi-encoder** (:func:`train_bi_encoder`): sentence-transformers' ``MultipleNegativesRankingLoss``
(InfoNCE with in-batch negatives, scale 20) on ``(query, positive[, hard negative])``, starting
from the current model. Hard negatives are the skipped items (the shopper saw them above the
click and passed them by) and/or items mined from the current index (:func:`mine_negatives`:
BM25 ranks ``skip``..``depth`` that were never clicked for the query; the very top is skipped
because unlabelled top hits are often relevant, and a false negative hurts more than an easy one).
*IPS weights are applied by weighted repetition:* each epoch draws as many rows as there are
examples by systematic resampling (an example of weight share ``p`` appears ``floor(n p)`` or
``ceil(n p)`` times; with equal weights, each exactly once), then shuffles them. The expected
gradient equals that of the weighted loss, while the stock loss stays unchanged and every row of
a batch still serves as an in-batch negative for the others (a weight inside the softmax would
not do that cleanly), and systematic resampling adds far less noise than drawing with
replacement. Batches are packed so no query and no positive text repeats within one (a repeat
would be a false in-batch negative).

**Cross-encoder** (:func:`train_cross_encoder`): ``AutoModelForSequenceClassification`` with
one logit on the packaged MiniLM (no pretrained cross-encoder ships here; the classification
head starts random), binary cross-entropy on ``(query, item text)``: clicked = 1, skipped or mined
= 0, plus ``random_negatives`` positives of other queries (easy negatives keep the scale
calibrated); an example with a ``label`` (a graded human judgment, ``learn/judged_examples.py``)
is trained towards that soft target instead of 1. *Here the IPS weights go into the loss* (a
per-row weight is natural for a pointwise loss): positives carry their weight normalised to mean
1, negatives weight 1. The directory is saved with ``save_pretrained`` and loads with
``sentence_transformers.CrossEncoder`` (sigmoid score in [0, 1]).

**LoRA** (``lora=LoraOptions(...)``, :mod:`shopsearch.learn.lora`): either trainer trains low-rank
adapters instead of every weight, at ``lora.lr``; the adapter is saved beside ``out_dir``
(``<out_dir>-adapter``) and merged, so ``out_dir`` holds a plain model as without LoRA.

**Both:** CPU by default; CUDA with fp16 autocast and a gradient scaler when
``torch.cuda.is_available()``. AdamW, linear warm-up (10 %) and decay. A tqdm progress bar.
The loop, checkpoints and resume are in :mod:`shopsearch.learn.train_loop`.
Checkpoints (weights, optimiser, scheduler, scaler, RNG state) every ``checkpoint_every`` steps
under ``out_dir/checkpoints``; a rerun with ``resume=True`` continues from the last one (the
batch plan is a pure function of the data and ``seed``, so a resumed run sees the same batches).
A checkpoint of different data or parameters is refused, not silently mixed. The finished model
is written to ``checkpoints/final`` and then moved into ``out_dir``, and the checkpoints are
removed: ``out_dir`` then holds the model files only, so its fingerprint names the weights.
``shuffle_labels`` deranges query-positive assignments (a deliberately worse model, for tests of
the evaluation gate).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from shopsearch.errors import InputError
from shopsearch.learn import lora as lora_adapters
from shopsearch.learn.lora import LoraOptions
from shopsearch.learn.train_loop import TrainingLoop, already_done, pick_device, seed_everything
from shopsearch.learn.training_data import Example, item_texts
from shopsearch.query.build import bm25_body

NegativeSource = str | Callable[[Example], Sequence[str]] | Sequence[Sequence[str]] | None


@dataclass
class TrainResult:
    path: str
    kind: str
    device: str
    examples: int
    steps: int
    rows: int  # (query, item[, negative]) rows trained on in this run
    seconds: float  # the whole call: loading, training, saving
    training_seconds: float  # the optimisation steps only
    pairs_per_second: float  # rows / training_seconds
    resumed_from: int | str | None
    losses: list[float]
    lora: dict | None = None  # the LoRA options and the trainable share, when the run trained adapters

    def as_dict(self) -> dict:
        return asdict(self)


# --- pure parts --------------------------------------------------------------------------------

def derange_positives(examples: Sequence[Example], seed: int = 0) -> list[Example]:
    """Examples whose positives are rotated among a shuffled order: no example keeps its own (n >= 2)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    out = list(examples)
    for j, i in enumerate(order):
        donor = examples[order[(j + 1) % len(order)]]
        out[i] = replace(examples[i], positive_id=donor.positive_id, positive=donor.positive)
    return out


def negative_pools(examples: Sequence[Example], hard_negatives: NegativeSource) -> list[list[str]]:
    """Per example: its hard-negative texts. ``"skipped"``: skipped items; ``None``/``"none"``: none;
    a callable ``(example) -> texts`` or a list aligned with the examples: mined texts *added* to the skipped ones."""
    if hard_negatives in (None, "none"):
        return [[] for _ in examples]
    pools = [list(e.negatives) for e in examples]
    if hard_negatives == "skipped":
        return pools
    if callable(hard_negatives):
        mined = [list(hard_negatives(e)) for e in examples]
    else:
        mined = [list(m) for m in hard_negatives]
        if len(mined) != len(examples):
            raise ValueError(f"{len(mined)} mined negative lists for {len(examples)} examples")
    return [[t for t in dict.fromkeys(p + m) if t != e.positive] for p, m, e in zip(pools, mined, examples)]


def plan_batches(weights: Sequence[float], keys: Sequence[tuple], batch_size: int, epochs: int, seed: int) -> list[list[int]]:
    """Weighted repetition (systematic resampling), shuffled, packed into batches with no repeated key (pure, seeded).

    >>> keys = [("a",), ("a",), ("b",), ("c",)]
    >>> plan = plan_batches([1, 1, 1, 1], keys, batch_size=4, epochs=1, seed=0)
    >>> all(len({k for i in b for k in keys[i]}) == len(b) for b in plan), sum(map(len, plan))
    (True, 4)
    """
    w = np.asarray(weights, dtype=np.float64)
    if len(w) == 0 or w.sum() <= 0:
        raise InputError("no examples with a positive weight to train on")
    rng = np.random.default_rng(seed)
    batches: list[list[int]] = []
    for _ in range(epochs):
        cumulative = np.cumsum(w) / w.sum()
        drawn = np.minimum(np.searchsorted(cumulative, (rng.random() + np.arange(len(w))) / len(w), side="right"), len(w) - 1)
        rng.shuffle(drawn)
        pending = deque(int(i) for i in drawn)
        while pending:
            batch, seen, deferred, looked = [], set(), [], 0
            while pending and len(batch) < batch_size and looked < 8 * batch_size:  # bounded look-ahead
                i = pending.popleft()
                looked += 1
                if seen.isdisjoint(keys[i]):
                    batch.append(i)
                    seen.update(keys[i])
                else:
                    deferred.append(i)
            pending.extendleft(reversed(deferred))
            batches.append(batch)
    return batches


def pick_negative(pool: list[str], positives: list[tuple[str, str]], avoid: set[str], step: int, row: int,
                  seed: int) -> str:
    """One hard negative for a row: its pool in turn; an empty pool borrows the positive of a query not in the batch.

    >>> pick_negative(["x", "y"], [], set(), 0, 1, 0), pick_negative([], [("q1", "t1"), ("q2", "t2")], {"q1"}, 0, 0, 0)
    ('y', 't2')
    """
    if pool:
        return pool[(step + row) % len(pool)]
    rng = random.Random(f"{seed}:{step}:{row}")
    for _ in range(20):
        query, text = positives[rng.randrange(len(positives))]
        if query not in avoid:
            return text
    return text


def run_fingerprint(kind: str, base_model_dir, params: dict, rows: Sequence) -> str:
    """A short hash of the run's kind, base model, parameters and rows: a checkpoint of another run is refused."""
    h = hashlib.sha256(json.dumps([kind, str(base_model_dir), params], sort_keys=True, default=str).encode())
    for r in rows:
        h.update(json.dumps(r, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _result(kind, out_dir, device, examples, loop, rows, started, training_seconds) -> TrainResult:
    seconds = time.perf_counter() - started
    return TrainResult(str(out_dir), kind, device, len(examples), len(loop.losses) - (loop.resumed_from or 0),
                       rows, round(seconds, 3), round(training_seconds, 3),
                       round(rows / training_seconds, 2) if training_seconds > 0 else 0.0, loop.resumed_from, loop.losses)


def _with_lora(result: TrainResult, lora: LoraOptions | None, share: dict | None) -> TrainResult:
    if lora:
        result.lora = {**lora.as_dict(), **(share or {}), "adapter": str(lora_adapters.adapter_dir(result.path))}
    return result


# --- the two trainers --------------------------------------------------------------------------

def train_bi_encoder(base_model_dir, examples: Sequence[Example], out_dir, *, epochs: int = 1, batch_size: int = 32,
                     lr: float = 2e-5, hard_negatives: NegativeSource = "skipped", device: str | None = None,
                     resume: bool = True, progress: bool = True, seed: int = 0, shuffle_labels: bool = False,
                     max_seq_length: int = 64, checkpoint_every: int = 200, max_steps: int | None = None,
                     on_step: Callable[[int, float], None] | None = None, lora: LoraOptions | None = None) -> TrainResult:
    """Fine-tune a sentence-transformers model with MultipleNegativesRankingLoss (see the module docstring).

    ``examples``: :class:`~shopsearch.learn.training_data.Example` rows with texts. ``hard_negatives``:
    ``"skipped"``, ``None``, or mined texts (a callable or a list aligned with ``examples``, see
    :func:`mine_negatives`) added to the skipped ones. An ``out_dir`` that already holds a
    finished model is returned as is (``resumed_from="done"``); ``resume=False`` trains afresh.
    ``max_steps`` caps the run; ``on_step(step, loss)`` is called after every step. ``lora``: train
    LoRA adapters at ``lora.lr`` instead of every weight at ``lr`` (see the module docstring).
    """
    # why: sentence-transformers and torch are heavy; loaded only when training
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.util import batch_to_device

    out_dir, device, started = Path(out_dir), pick_device(device), time.perf_counter()
    examples = derange_positives(examples, seed) if shuffle_labels else list(examples)
    done = already_done(out_dir, "modules.json") if resume else None
    if done:
        return TrainResult(str(out_dir), "bi-encoder", device, len(examples), 0, 0, 0.0, 0.0, 0.0, done, [])
    pools = negative_pools(examples, hard_negatives)
    use_negatives = any(pools)
    keys = [(("q", e.query), ("p", e.positive)) for e in examples]
    plan = plan_batches([e.weight for e in examples], keys, batch_size, epochs, seed)[:max_steps]
    params = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "shuffle": shuffle_labels,
              "max_seq_length": max_seq_length, "max_steps": max_steps, "lora": lora.as_dict() if lora else None}
    fingerprint = run_fingerprint("bi-encoder", base_model_dir, params,
                                  [(e.query, e.positive, p, e.weight) for e, p in zip(examples, pools)])
    seed_everything(seed)
    model = SentenceTransformer(str(base_model_dir), device=device)
    model.max_seq_length = max_seq_length
    if lora:
        model[0].model = lora_adapters.wrap(model[0].model, lora)
    loss_fn = MultipleNegativesRankingLoss(model)
    loop = TrainingLoop("bi-encoder", model, out_dir, device, lora.lr if lora else lr, len(plan), fingerprint,
                        checkpoint_every, resume, progress, on_step)
    positives = [(e.query, e.positive) for e in examples]
    model.train()
    rows, loop_started = 0, time.perf_counter()
    for step in range(loop.start, len(plan)):
        batch = plan[step]
        columns = [[examples[i].query for i in batch], [examples[i].positive for i in batch]]
        if use_negatives:
            avoid = {examples[i].query for i in batch}
            columns.append([pick_negative(pools[i], positives, avoid, step, r, seed) for r, i in enumerate(batch)])
        features = [batch_to_device(model.preprocess(c), model.device) for c in columns]
        with loop.autocast():
            loss = loss_fn(features, None)
        loop.step(step, loss)
        rows += len(batch)
    training_seconds = time.perf_counter() - loop_started
    model.eval()
    share = lora_adapters.trainable_share(model) if lora else None

    def save(path: Path) -> None:
        if lora:  # the adapter beside the model, then the plain merged model as the one served
            lora_adapters.save_adapter(model[0].model, lora_adapters.adapter_dir(out_dir))
            model[0].model = lora_adapters.merge(model[0].model)
        model.save(str(path), create_model_card=False)
    loop.finish(save)
    return _with_lora(_result("bi-encoder", out_dir, device, examples, loop, rows, started, training_seconds), lora, share)


def cross_encoder_rows(examples: Sequence[Example], pools: list[list[str]], random_negatives: int,
                       max_negatives: int, seed: int) -> list[tuple[str, str, float, float]]:
    """``(query, text, label, weight)`` rows: positives (weight normalised to mean 1) and negatives (weight 1).

    A positive's label is its example's ``label`` when it has one (a graded judgment), else 1.
    """
    rng = random.Random(seed)
    mean = sum(e.weight for e in examples) / len(examples)
    population = list(examples)
    rows = []
    for e, pool in zip(examples, pools):
        rows.append((e.query, e.positive, 1.0 if e.label is None else float(e.label), e.weight / mean))
        rows += [(e.query, t, 0.0, 1.0) for t in pool[:max_negatives]]
        others = [x.positive for x in rng.sample(population, min(len(population), random_negatives + 3)) if x.query != e.query]
        rows += [(e.query, t, 0.0, 1.0) for t in others[:random_negatives]]
    return rows


def train_cross_encoder(base_model_dir, examples: Sequence[Example], out_dir, *, epochs: int = 1, batch_size: int = 16,
                        lr: float = 3e-5, head_lr: float = 1e-3, hard_negatives: NegativeSource = "skipped", random_negatives: int = 1,
                        max_negatives: int = 3, device: str | None = None, resume: bool = True, progress: bool = True,
                        seed: int = 0, shuffle_labels: bool = False, max_length: int = 128, checkpoint_every: int = 200,
                        max_steps: int | None = None, on_step: Callable[[int, float], None] | None = None,
                        lora: LoraOptions | None = None) -> TrainResult:
    """Train a one-logit sequence-classification re-ranker with weighted BCE (see the module docstring).

    Rows: each positive, up to ``max_negatives`` of its hard negatives (as for the bi-encoder) and
    ``random_negatives`` positives of other queries. ``head_lr``: the learning rate of the freshly
    initialised classification head (its logits start near 0 and move slowly at the body's rate).
    Resume, ``max_steps``, ``on_step`` and ``lora`` as in :func:`train_bi_encoder` (with LoRA the
    head is trained whole at ``head_lr``, the body through its adapters at ``lora.lr``).
    """
    import torch  # why: torch and transformers are heavy; loaded only when training
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    out_dir, device, started = Path(out_dir), pick_device(device), time.perf_counter()
    examples = derange_positives(examples, seed) if shuffle_labels else list(examples)
    done = already_done(out_dir, "config.json") if resume else None
    if done:
        return TrainResult(str(out_dir), "cross-encoder", device, len(examples), 0, 0, 0.0, 0.0, 0.0, done, [])
    rows = cross_encoder_rows(examples, negative_pools(examples, hard_negatives), random_negatives, max_negatives, seed)
    order_rng = np.random.default_rng(seed)
    plan = [b.tolist() for _ in range(epochs) for b in np.array_split(order_rng.permutation(len(rows)),
                                                                     max(1, -(-len(rows) // batch_size)))][:max_steps]
    params = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "head_lr": head_lr, "seed": seed,
              "shuffle": shuffle_labels, "max_length": max_length, "max_steps": max_steps, "random_negatives": random_negatives,
              "lora": lora.as_dict() if lora else None}
    fingerprint = run_fingerprint("cross-encoder", base_model_dir, params, rows)
    seed_everything(seed)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the new head's "newly initialised" report is expected, not a warning
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(base_model_dir), num_labels=1).to(device)
    finally:
        hf_logging.set_verbosity(verbosity)
    tokenizer = AutoTokenizer.from_pretrained(str(base_model_dir))
    if lora:
        model = lora_adapters.wrap(model, lora, classifier=True)
    loop = TrainingLoop("cross-encoder", model, out_dir, device, lora.lr if lora else lr, len(plan), fingerprint,
                        checkpoint_every, resume, progress, on_step,
                        head="base_model.model.classifier." if lora else "classifier.", head_lr=head_lr)
    bce = torch.nn.BCEWithLogitsLoss(reduction="none")
    model.train()
    seen, loop_started = 0, time.perf_counter()
    for step in range(loop.start, len(plan)):
        batch = [rows[i] for i in plan[step]]
        enc = tokenizer([r[0] for r in batch], [r[1] for r in batch], padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt").to(device)
        labels = torch.tensor([r[2] for r in batch], device=device)
        weights = torch.tensor([r[3] for r in batch], device=device)
        with loop.autocast():
            logits = model(**enc).logits.view(-1)
        loss = (bce(logits.float(), labels) * weights).sum() / weights.sum()
        loop.step(step, loss)
        seen += len(batch)
    training_seconds = time.perf_counter() - loop_started
    model.eval()
    share = lora_adapters.trainable_share(model) if lora else None

    def save(path: Path) -> None:
        served = model
        if lora:  # the adapter (and head) beside the model, then the plain merged model as the one served
            lora_adapters.save_adapter(model, lora_adapters.adapter_dir(out_dir))
            served = lora_adapters.merge(model)
        served.save_pretrained(str(path))
        tokenizer.save_pretrained(str(path))
    loop.finish(save)
    return _with_lora(_result("cross-encoder", out_dir, device, examples, loop, seen, started, training_seconds), lora, share)


# --- I/O: hard negatives mined from the current index ----------------------------------------

BY_SCORE_THEN_ID = [{"_score": "desc"}, {"id": "asc"}]


def mine_negatives(client, index: str, examples: Sequence[Example], *, depth: int = 30, skip: int = 5,
                   per_example: int = 3, chunk: int = 50) -> list[list[str]]:
    """Per example, up to ``per_example`` texts of items BM25 ranks ``skip``..``depth`` for its query, never
    clicked for that query (aligned with ``examples``; pass as ``hard_negatives``). Equal scores are
    ordered by product id, so the same catalogue mines the same negatives in every index version
    (whatever order its documents were written in: ``train_encoders.training_inputs`` hashes them)."""

    positives: dict[str, set[str]] = {}
    for e in examples:
        positives.setdefault(e.query, set()).add(e.positive_id)
    queries = sorted(positives)
    ranked: dict[str, list[str]] = {}
    for start in range(0, len(queries), chunk):
        part = queries[start:start + chunk]
        body = []
        for q in part:
            body += [{"index": index}, {**bm25_body(q, depth), "_source": False, "sort": BY_SCORE_THEN_ID}]
        for q, res in zip(part, client.msearch(body=body)["responses"]):
            ids = [h["_id"] for h in res.get("hits", {}).get("hits", [])][skip:]
            ranked[q] = [d for d in ids if d not in positives[q]]
    texts = item_texts(client, index, {d for ids in ranked.values() for d in ids})
    return [[texts[d] for d in ranked.get(e.query, []) if texts.get(d)][:per_example] for e in examples]
