"""Encode overlapped with the bulk write, on both runners (Celery workers, in process): chunks come
back in order, a failure in the write stage is reported item by item, nothing is lost, and the
encoder runs at most ``ingest_window`` chunks ahead. Real OpenSearch, Redis, Celery and encoder."""

import csv
import json
import time

import pytest

from shopsearch.cluster import connect
from shopsearch.index.catalogue import create_catalogue_version, live_meta
from shopsearch.ingest.in_process import InProcessRunner
from shopsearch.ingest.pipeline import chunk_payloads, run_ingest
from shopsearch.workers.dispatch import runner as celery_runner

from .conftest import DATA

RUNNERS = ["celery", "in-process"]


def _runner(kind, settings, client):
    return celery_runner(settings) if kind == "celery" else InProcessRunner(settings, client)


def _homedepot_rows(n: int) -> list[dict]:
    with open(DATA / "homedepot" / "products.tsv", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        return [{"id": row["product_uid"], "title": row["title"]} for _, row in zip(range(n), reader)]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


class CountingPayloads(list):
    """A payload list that records how far the runner has read it."""

    def __init__(self, payloads):
        super().__init__(payloads)
        self.taken = 0

    def __iter__(self):
        for payload in super().__iter__():
            self.taken += 1
            yield payload


@pytest.fixture
def index(client, settings, catalogue):
    create_catalogue_version(client, settings, catalogue)
    return live_meta(client, catalogue)[0]


@pytest.mark.parametrize("kind", RUNNERS)
def test_every_chunk_comes_back_in_order_and_every_item_is_indexed_once(kind, client, settings, catalogue, tmp_path):
    rows = _homedepot_rows(300)
    progress = []
    summary = run_ingest(settings, _jsonl(tmp_path / "p.jsonl", rows), catalogue, mapping="generic_jsonl",
                         chunk_size=40, on_progress=lambda done, total: progress.append((done, total)),
                         runner=_runner(kind, settings, client))
    assert summary.complete and summary.indexed == summary.accepted == len(rows) and not summary.failed
    assert progress == [(min(40 * (n + 1), 300), 300) for n in range(8)]  # one step per chunk, in order
    ids = {h["_id"] for h in client.search(index=catalogue, body={"size": 400, "_source": False})["hits"]["hits"]}
    assert ids == {r["id"] for r in rows} and client.count(index=catalogue)["count"] == len(rows)


@pytest.mark.parametrize("kind", RUNNERS)
def test_a_document_opensearch_refuses_is_reported_with_its_reason_and_the_rest_are_indexed(kind, client, settings,
                                                                                           catalogue, tmp_path):
    rows = _homedepot_rows(60)
    refused = {"id": "x" * 600, "title": "Simpson Strong-Tie 12-Gauge Angle, with an id OpenSearch refuses"}
    summary = run_ingest(settings, _jsonl(tmp_path / "p.jsonl", rows[:30] + [refused] + rows[30:]), catalogue,
                         mapping="generic_jsonl", chunk_size=16, runner=_runner(kind, settings, client))
    assert summary.accepted == 61 and summary.indexed == 60 and not summary.complete
    assert [f["id"] for f in summary.failed] == [refused["id"]] and summary.failed[0]["status"] == 400
    assert "too long" in json.dumps(summary.failed[0]["error"])
    dead = [json.loads(line) for line in open(summary.dead_letters, encoding="utf-8")]
    assert [(d["reason"], d["id"]) for d in dead] == [("index_failed", refused["id"])]
    assert client.count(index=catalogue)["count"] == 60


@pytest.mark.parametrize("kind", RUNNERS)
def test_a_chunk_that_fails_as_a_whole_is_reported_item_by_item_and_the_next_chunks_still_run(kind, client, settings,
                                                                                            index, encoder):
    payloads = chunk_payloads(_homedepot_rows(90), index, settings.text_model, None, 30)
    payloads[1]["model"] = "no-such-model-package"  # the encoder of this chunk cannot load
    outcomes = list(_runner(kind, settings, client).encode_and_write(payloads))
    assert [o["chunk"] for o in outcomes] == [0, 1, 2]
    assert [o["indexed"] for o in outcomes] == [30, 0, 30]
    assert [f["id"] for f in outcomes[1]["failures"]] == [i["id"] for i in payloads[1]["items"]]
    assert all("no-such-model-package" in f["error"] for f in outcomes[1]["failures"])
    client.indices.refresh(index=index)
    assert client.count(index=index)["count"] == 60


def test_in_process_bulk_writes_to_an_unreachable_cluster_report_every_item_failed(settings, index, encoder):
    gone = connect(settings.replace(opensearch_url="http://127.0.0.1:9"), timeout=2)  # nothing listens on port 9
    payloads = chunk_payloads(_homedepot_rows(50), index, settings.text_model, None, 20)
    outcomes = list(InProcessRunner(settings, gone).encode_and_write(payloads))
    assert [o["chunk"] for o in outcomes] == [0, 1, 2] and sum(o["indexed"] for o in outcomes) == 0
    assert [f["id"] for o in outcomes for f in o["failures"]] == [i["id"] for p in payloads for i in p["items"]]
    assert all(f["error"].startswith("ConnectionError") for o in outcomes for f in o["failures"])


@pytest.mark.parametrize("kind", RUNNERS)
def test_the_encoder_runs_at_most_a_window_of_chunks_ahead_of_the_writer(kind, client, settings, index, encoder):
    window = 3
    payloads = CountingPayloads(chunk_payloads(_homedepot_rows(200), index, settings.text_model, None, 10))
    chunks = (celery_runner(settings.replace(ingest_window=window)) if kind == "celery"
              else InProcessRunner(settings, client, window=window))
    outcomes = chunks.encode_and_write(payloads)
    first = next(outcomes)
    time.sleep(3)  # the writer holds still; the encoder may only fill the window
    # celery: the window of chains plus the one sent as the first outcome was taken; in process: the
    # queue's places, the chunk being put and the one the writer holds
    assert first["chunk"] == 0 and payloads.taken <= window + 2
    rest = list(outcomes)
    assert [o["chunk"] for o in rest] == list(range(1, 20)) and payloads.taken == 20
