"""The ``--report DIR`` output of ``shopsearch eval search``: Markdown, PNG plots, error analysis.

Plots are drawn on a bare :class:`matplotlib.figure.Figure` (the Agg canvas), so no display and
no global pyplot state are involved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
from matplotlib.figure import Figure

from shopsearch.evaluation import metrics
from shopsearch.evaluation.run import BASELINE, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, METRICS, EvalResult

WORST = 20  # queries listed for error analysis
SHOW_TOP = 5  # products shown per strategy and query


def _cell(x: float, digits: int = 4) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _interval(r: tuple[float, float, float]) -> str:
    return f"{_cell(r[0], 3)} [{_cell(r[1], 3)}, {_cell(r[2], 3)}]"


def plot_metrics(result: EvalResult, path: Path) -> Path:
    """Grouped bars: each metric's mean per strategy, with 95 % bootstrap error bars."""
    fig = Figure(figsize=(9, 4.5), dpi=100)
    ax = fig.add_subplot()
    width = 0.8 / len(result.strategies)
    x = np.arange(len(METRICS))
    for j, s in enumerate(result.strategies):
        stats = [metrics.bootstrap_mean(result.values(s, m), n=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED)
                 for m in METRICS]
        mean = np.array([st[0] for st in stats])
        err = np.array([[st[0] - st[1] for st in stats], [st[2] - st[0] for st in stats]])
        ax.bar(x + (j - (len(result.strategies) - 1) / 2) * width, np.nan_to_num(mean), width,
               yerr=np.clip(np.nan_to_num(err), 0, None), capsize=3, label=s)
    ax.set_xticks(x, METRICS)
    ax.set_ylim(0, 1)
    ax.set_ylabel("mean over scored queries")
    ax.set_title("Metrics per strategy (95 % bootstrap CI)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_deltas(result: EvalResult, path: Path, baseline: str = BASELINE) -> Path:
    """Per-query nDCG@10 difference to the baseline, sorted, one line per other strategy."""
    fig = Figure(figsize=(9, 4.5), dpi=100)
    ax = fig.add_subplot()
    for s in result.strategies:
        if s == baseline:
            continue
        d = np.sort([delta for _, delta in result.deltas(s, baseline)])
        ax.plot(np.linspace(0, 100, len(d)), d, label=f"{s} − {baseline}")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("queries, sorted by difference (%)")
    ax.set_ylabel("nDCG@10 difference")
    ax.set_title(f"Per-query wins (above 0) and losses (below 0) against {baseline}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _summary_table(result: EvalResult, baseline: str) -> list[str]:
    head = ["strategy", *METRICS, "p50 ms", "p95 ms", *(f"{m} vs {baseline} [95 % CI]" for m in METRICS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in result.strategies:
        row = [_md(s), *(_cell(result.mean(s, m)) for m in METRICS),
               _cell(metrics.percentile(result.latency_ms[s], 50), 1),
               _cell(metrics.percentile(result.latency_ms[s], 95), 1),
               *(_interval(result.ratio(s, m, baseline)) for m in METRICS)]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _win_loss_table(result: EvalResult, baseline: str) -> list[str]:
    lines = [f"| strategy | wins | ties | losses (nDCG@10 against {baseline}) |", "|---|---|---|---|"]
    for s in result.strategies:
        if s != baseline:
            d = np.array([delta for _, delta in result.deltas(s, baseline)])
            lines.append(f"| {_md(s)} | {int((d > 1e-9).sum())} | {int((abs(d) <= 1e-9).sum())} "
                         f"| {int((d < -1e-9).sum())} |")
    return lines


def _products(ids: list[str], judged: Mapping[str, float], titles: Mapping[str, str] | None) -> str:
    if not ids:
        return "(nothing returned)"
    parts = []
    for pid in ids[:SHOW_TOP]:
        rel = judged.get(pid)
        label = f"`{_md(pid)}` ({'unrated' if rel is None else f'{rel:g}'})"
        if titles is not None:
            label += " " + _md(titles.get(pid, "?"))
        parts.append(label)
    return "<br>".join(parts)


def _worst_queries(result: EvalResult, default: str, baseline: str,
                   titles: Mapping[str, str] | None) -> list[str]:
    if default not in result.scores or baseline not in result.scores or default == baseline:
        return [f"_Needs both `{default}` and `{baseline}` in the run; skipped._"]
    index = {q: i for i, q in enumerate(result.queries)}
    losses = sorted((d, q) for q, d in result.deltas(default, baseline) if d < 0)[:WORST]
    if not losses:
        return [f"_`{default}` loses no query to `{baseline}` on nDCG@10._"]
    lines = [f"| query | nDCG@10 {default} | nDCG@10 {baseline} | top {SHOW_TOP} {default} "
             f"| top {SHOW_TOP} {baseline} |", "|---|---|---|---|---|"]
    for _, q in losses:
        i, judged = index[q], result.judgments[q]
        lines.append(f"| {_md(repr(q))} | {_cell(result.scores[default]['ndcg@10'][i])} "
                     f"| {_cell(result.scores[baseline]['ndcg@10'][i])} "
                     f"| {_products(result.top[default][i], judged, titles)} "
                     f"| {_products(result.top[baseline][i], judged, titles)} |")
    return lines


def write_report(result: EvalResult, out_dir: str | Path, catalogue: str,
                 titles: Mapping[str, str] | None = None, default: str = "hybrid",
                 baseline: str = BASELINE) -> Path:
    """Write ``report.md``, ``metrics.png`` and ``deltas.png`` into ``out_dir``; return the ``.md``.

    The report holds the summary table (means, latency, ratios to ``baseline`` with 95 %
    bootstrap intervals), per-metric query counts, wins/ties/losses per strategy, and the
    :data:`WORST` queries where ``default`` loses most nDCG@10 to ``baseline``, each with the
    top products both returned (id, judged relevance, and title when ``titles`` is given).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_metrics(result, out / "metrics.png")
    lines = [f"# Search evaluation: `{_md(catalogue)}`", "",
             f"{len(result.queries)} queries run once per strategy. "
             "Gain = relevance − 1, unrated products count 0; condensed nDCG ranks rated products only "
             "(Sakai 2007); positives are products rated ≥ 2.33. Recall@100 and MRR leave out queries with "
             "no positive; both nDCGs leave out queries whose judgments are all 1. Ratios are paired "
             f"bootstrap intervals over queries ({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}).",
             "", *_summary_table(result, baseline), "",
             "Queries scored per metric: "
             + ", ".join(f"{m} {n}" for m, n in result.counts().items()) + ".", "",
             "![metrics per strategy](metrics.png)", ""]
    if baseline in result.scores and len(result.strategies) > 1:
        plot_deltas(result, out / "deltas.png", baseline)
        lines += [f"## Per query against `{_md(baseline)}`", "", *_win_loss_table(result, baseline), "",
                  "![per-query nDCG@10 differences](deltas.png)", ""]
    lines += [f"## The {WORST} queries where `{_md(default)}` loses most to `{_md(baseline)}`", "",
              *_worst_queries(result, default, baseline, titles), ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
