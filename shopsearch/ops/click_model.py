"""A position-based click model: simulated shoppers for training and tests, never evaluation.

The position-based model (PBM; Craswell et al., "An experimental comparison of click
position-bias models", WSDM 2008; Joachims et al., "Unbiased learning-to-rank with biased
feedback", WSDM 2017) factors a click on the product at rank r into two independent events::

    P(click at r) = P(examined | r) * P(click | examined, relevance)

- examination: ``1 / r ** eta`` with ``eta = 1.0`` (Joachims et al.'s choice), so rank 1 is
  always seen, rank 2 half the time, rank 10 a tenth of the time;
- attraction, from the human grade (1 irrelevant, 2 partly, 3 relevant): 1 -> 0.05,
  2 -> 0.3, 3 -> 0.8, linear in between for averaged grades (2.5 -> 0.55), clamped outside;
  unrated products 0.02 (mostly off-topic, but shoppers do click the odd stray);
- follow-ups after a click: add-to-cart with ``cart_prob * rel_factor`` (0.3 for a grade-3
  product), where ``rel_factor`` is the product's attraction divided by the top grade's, and
  purchase with ``purchase_prob`` (0.5) of the carts.

Clicks drawn from it carry the model's assumptions, so scoring a ranker on them would grade
the model, not the ranker: evaluation uses the human judgments only.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

PROPENSITY_CLIP = (0.01, 1.0)


def _default_click_prob() -> dict[float, float]:
    return {1.0: 0.05, 2.0: 0.3, 3.0: 0.8}


@dataclass(frozen=True)
class ClickModel:
    """Parameters of the simulated shopper (defaults documented in the module docstring).

    >>> m = ClickModel()
    >>> m.examination(1), m.examination(4), m.click_probability(2.5), m.click_probability(None)
    (1.0, 0.25, 0.55, 0.02)
    """

    examination_decay: float = 1.0  # eta in 1 / rank ** eta
    click_prob: dict[float, float] = field(default_factory=_default_click_prob)  # grade -> P(click | examined)
    unrated_prob: float = 0.02
    cart_prob: float = 0.3  # P(add-to-cart | click) for a top-grade product
    purchase_prob: float = 0.5  # P(purchase | add-to-cart)

    def __post_init__(self):
        if self.examination_decay < 0:
            raise ValueError(f"examination_decay must be >= 0, got {self.examination_decay}")
        if not self.click_prob:
            raise ValueError("click_prob needs at least one grade")
        for name, p in [("unrated_prob", self.unrated_prob), ("cart_prob", self.cart_prob),
                        ("purchase_prob", self.purchase_prob), *(("click_prob", v) for v in self.click_prob.values())]:
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")

    def examination(self, rank: int) -> float:
        """P(the shopper looks at the product at 1-based ``rank``) = 1 / rank ** eta."""
        if rank < 1:
            raise ValueError(f"rank is 1-based, got {rank}")
        return 1.0 / rank ** self.examination_decay

    def click_probability(self, grade: float | None) -> float:
        """P(click | examined) for a grade (None: unrated), interpolated between the anchors."""
        if grade is None:
            return self.unrated_prob
        anchors = sorted(self.click_prob.items())
        if grade <= anchors[0][0]:
            return anchors[0][1]
        for (g0, p0), (g1, p1) in zip(anchors, anchors[1:]):
            if grade <= g1:
                return p0 + (p1 - p0) * (grade - g0) / (g1 - g0)
        return anchors[-1][1]

    def relevance_factor(self, grade: float | None) -> float:
        """How much a click on this product leads to a cart: attraction / top attraction."""
        top = max(self.click_prob.values())
        return self.click_probability(grade) / top if top > 0 else 0.0


def simulate_session(ranked_ids: list[str], judgments: dict[str, float], rng: random.Random,
                     model: ClickModel | None = None) -> list[tuple[str, int, str]]:
    """One simulated shopper on one result list: ``(object_id, position, action)`` in rank order.

    Every position draws exactly four numbers from ``rng`` (examine, click, cart, purchase),
    whether or not they are used, so a seed gives the same session, and two models run on the
    same seed differ only where their probabilities do.

    >>> simulate_session(["a", "b"], {"a": 3}, random.Random(0))[0]
    ('a', 1, 'click')
    """
    model = model or ClickModel()
    actions: list[tuple[str, int, str]] = []
    for position, object_id in enumerate(ranked_ids, start=1):
        u_examine, u_click, u_cart, u_purchase = (rng.random() for _ in range(4))
        grade = judgments.get(object_id)
        if u_examine >= model.examination(position) or u_click >= model.click_probability(grade):
            continue
        actions.append((object_id, position, "click"))
        if u_cart < model.cart_prob * model.relevance_factor(grade):
            actions.append((object_id, position, "add_to_cart"))
            if u_purchase < model.purchase_prob:
                actions.append((object_id, position, "purchase"))
    return actions


def estimate_propensities(impressions_clicks: Iterable[tuple]) -> dict[int, float]:
    """Examination propensity per position from logs: CTR at the position / CTR at position 1.

    Input: ``(position, clicked)`` per impression; a third element (relevance known or not)
    is accepted and ignored by this estimator. The simple documented choice: it is unbiased
    only when relevance does not depend on position (randomised or swapped rankings); on logs
    of a ranker that puts relevant products first it overstates the drop with rank. Results
    are clipped to [0.01, 1]; positions never shown are absent.

    >>> estimate_propensities([(1, True), (1, False), (2, True), (2, False), (2, False), (2, False)])
    {1: 1.0, 2: 0.5}
    """
    shown: dict[int, int] = defaultdict(int)
    clicked: dict[int, int] = defaultdict(int)
    for record in impressions_clicks:
        position, click = record[0], record[1]
        if position < 1:
            raise ValueError(f"positions are 1-based, got {position}")
        shown[position] += 1
        clicked[position] += bool(click)
    if not clicked.get(1):
        raise ValueError("no clicks at position 1: the estimator normalises by its click-through rate")
    top = clicked[1] / shown[1]
    low, high = PROPENSITY_CLIP
    return {p: min(high, max(low, clicked[p] / shown[p] / top)) for p in sorted(shown)}


def as_ubi_events(actions: list[tuple[str, int, str]], query_id: str, user_id: str, timestamp: str) -> list[dict]:
    """Simulated actions as ``POST /events`` bodies (``events.validate_event`` shape).

    >>> as_ubi_events([("a", 1, "click")], "q1", "sim-1", "2024-05-01T12:00:00Z")[0]["action_name"]
    'click'
    """
    return [{"query_id": query_id, "user_id": user_id, "action_name": action, "object_id": object_id,
             "position": position, "timestamp": timestamp} for object_id, position, action in actions]
