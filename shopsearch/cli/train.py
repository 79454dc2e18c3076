"""``shopsearch train`` and ``shopsearch ranker``: the learned ranker from human judgments (and clicks).

``train`` runs ``learn/train_ranker.py`` (split -> [encoders -> reindex ->] features -> fit ->
gate -> promote) in this process, the candidate index encoded through the Celery workers, and
prints each step's time; ``ranker show`` prints a ranker's model card, ``ranker
withdraw`` stops serving the live index's ranker (``learned`` answers in hybrid order again).
Errors are translated by ``cli/errors.py``'s :func:`fail_cleanly`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from shopsearch.cli.errors import fail_cleanly
from shopsearch.cli.output import print_json
from shopsearch.cluster import connect
from shopsearch.evaluation.run import load_judgments
from shopsearch.index.versions import live_index
from shopsearch.learn.ranker import read_card, withdraw_ranker
from shopsearch.learn.registry import ModelRegistry
from shopsearch.learn.train_encoders import BI_ENCODER_MAX_STEPS, CROSS_ENCODER_MAX_STEPS
from shopsearch.learn.train_ranker import run_training
from shopsearch.settings import Settings
from shopsearch.workers.dispatch import runner as celery_runner


@click.command("train")
@click.option("--catalogue", required=True, help="Catalogue whose live index the ranker is trained on and served for.")
@click.option("--judgments", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Human judgments (query, product_uid, relevance 1-3); split by query into train / tune / validation.")
@click.option("--clicks-since", help="Also learn from the click logs of searches from this ISO date-time on.")
@click.option("--valid-fraction", default=0.3, show_default=True, type=click.FloatRange(0.05, 0.9),
              help="Share of the judged queries kept for the gate and the evaluation (the `eval split` rule).")
@click.option("--seed", default=0, show_default=True, help="Seed of the validation split.")
@click.option("--limit-queries", type=int, help="Only a deterministic sample of N judged queries (a quick run).")
@click.option("--gate-queries", type=int, help="Gate on a deterministic sample of N validation queries.")
@click.option("--encoders/--no-encoders", default=True, show_default=True,
              help="Also fine-tune the bi-encoder and the cross-encoder on the training judgments and reindex the "
                   "catalogue with the new bi-encoder (a candidate index: the ranker is fitted and gated on it); "
                   "live encoders trained from the same examples and parameters are kept instead. "
                   "--no-encoders trains the ranker alone on the live index (Home Depot on 2 CPU cores: about 5 "
                   "minutes against 23-35).")
@click.option("--lora-rank", type=int, help="Train the encoders as LoRA adapters of this rank (the setting lora_rank; "
              "0: every weight); alpha, dropout, target modules and rate from the lora_* settings; merged for serving.")
@click.option("--bi-encoder-max-steps", type=int, default=BI_ENCODER_MAX_STEPS, show_default=True,
              help="At most this many bi-encoder steps (32 rows each).")
@click.option("--cross-encoder-max-steps", type=int, default=CROSS_ENCODER_MAX_STEPS, show_default=True,
              help="At most this many cross-encoder steps (16 rows each).")
@click.option("--no-promote", is_flag=True, help="Stop after the gate; the ranker stays registered, unserved.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Write the report (steps, times, split, gate).")
@click.pass_obj
@fail_cleanly
def train_cmd(settings: Settings, catalogue: str, judgments: str, clicks_since: str | None, valid_fraction: float,
              seed: int, limit_queries: int | None, gate_queries: int | None, encoders: bool, lora_rank: int | None,
              bi_encoder_max_steps: int, cross_encoder_max_steps: int, no_promote: bool,
              json_file: str | None) -> None:
    """Train the learned ranker (and the encoders) from judgments (and clicks), gate on validation queries, serve if passed."""
    report = run_training(settings, connect(settings, timeout=120), catalogue, load_judgments(judgments),
                          echo=click.echo, runner=celery_runner(settings) if encoders else None,
                          valid_fraction=valid_fraction, seed=seed, limit_queries=limit_queries,
                          gate_queries=gate_queries, clicks_since=clicks_since, promote=not no_promote,
                          encoders=encoders, lora_rank=lora_rank, bi_encoder_max_steps=bi_encoder_max_steps,
                          cross_encoder_max_steps=cross_encoder_max_steps)
    gate = report["steps"]["gate"]
    click.echo(f"gate: {gate['live_strategy']} {gate['live_ndcg@10']:.4f} -> learned {gate['candidate_ndcg@10']:.4f} "
               f"(x{gate['ratio']}, needed {gate['needed']:.4f}) on {gate['queries']} validation queries: {gate['decision']}")
    if report.get("encoder_version"):
        click.echo(f"encoders {report['encoder_version']}, candidate index {report['steps']['reindex']['index']}")
    elif (report["steps"].get("encoders") or {}).get("kept"):
        click.echo(f"encoders {report['steps']['encoders']['version']} kept: {report['steps']['encoders']['kept']}")
    click.echo(f"{report['version']}: {'served' if report['steps']['promote']['promoted'] else 'not served'}; "
               f"{report['seconds']:.0f} s in all; model card {report['card']}")
    if json_file:
        Path(json_file).write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")


@click.group("ranker")
def ranker_group() -> None:
    """Learned rankers: their model cards, and which one a catalogue serves."""


@ranker_group.command("show")
@click.argument("version")
@click.pass_obj
@fail_cleanly
def ranker_show(settings: Settings, version: str) -> None:
    """Print a ranker's model card (features, importances, parameters, data, split, figures)."""
    print_json(read_card(ModelRegistry(settings.models_path), version))


@ranker_group.command("withdraw")
@click.option("--catalogue", required=True)
@click.pass_obj
@fail_cleanly
def ranker_withdraw(settings: Settings, catalogue: str) -> None:
    """Stop serving the live index's ranker: strategy learned falls back to hybrid order, hybrid is the default."""
    client = connect(settings)
    index = live_index(client, catalogue)
    if index is None:
        raise click.ClickException(f"catalogue {catalogue!r} has no live index")
    print_json({"index": index, "withdrawn": withdraw_ranker(client, index)})
