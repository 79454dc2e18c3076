"""``shopsearch simulate clicks``: simulated shoppers on the real shopper search (training and tests only).

For each session a judged query is drawn (seeded), sent through the shopper search (HTTP to a
running proxy, or the same app in-process), and clicks, add-to-carts and purchases are drawn from
the position-based click model (``click_model.ClickModel``: examination 1/rank, click probability
0.05 / 0.3 / 0.8 for relevance 1 / 2 / 3, 0.02 unrated) and posted to ``/events``. Only the
judgments file given is read. Simulated clicks never serve evaluation: evaluation reads the human
judgments directly.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from shopsearch.evaluation.run import load_judgments
from shopsearch.ops.click_model import ClickModel, as_ubi_events, simulate_session
from shopsearch.ops.middleware_client import middleware
from shopsearch.settings import Settings


def simulate_clicks(settings: Settings, catalogue: str, judgments_path: str, sessions: int = 1000, seed: int = 0,
                    proxy: str | None = None, users: int = 200, size: int = 20, model: ClickModel | None = None,
                    queries: list[str] | None = None, progress=None) -> dict:
    """Run ``sessions`` simulated searches with clicks; returns counts."""
    judged = load_judgments(judgments_path)
    pool = sorted(queries if queries is not None else judged)
    rng = random.Random(seed)
    target = middleware(settings, proxy)
    model = model or ClickModel()
    start = datetime.now(timezone.utc) - timedelta(days=1)
    counts = {"sessions": 0, "events": 0, "click": 0, "add_to_cart": 0, "purchase": 0, "failed_posts": 0}
    try:
        for n in range(sessions):
            q = rng.choice(pool)
            user = f"sim-{rng.randrange(users)}"
            result = target.get(f"/shop/{catalogue}/search", {"q": q, "size": size, "user": user})
            ranked = [h["id"] for h in result.get("hits", [])]
            actions = simulate_session(ranked, judged[q], rng, model)
            when = (start + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%SZ")
            events = as_ubi_events(actions, result.get("query_id"), user, when)
            if events:
                status = target.post("/events", {"events": events})
                counts["failed_posts"] += status != 202
                counts["events"] += len(events)
                for _, _, action in actions:
                    counts[action] += 1
            counts["sessions"] += 1
            if progress:
                progress(n + 1, sessions)
    finally:
        target.close()
    return counts
