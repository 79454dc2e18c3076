"""``bench query``'s arithmetic (the ratios' keys and nulls, the Zipf replay's shape; pure) and its
load (``ops/query_load.py``) against a real HTTP server; the benchmark itself prints figures, it is
not a test."""

import subprocess
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psutil
import pytest

from shopsearch.ops.bench_query import RATIOS, cpu_bounds, judged_counts, ratios, replay_shape, zipf_replay
from shopsearch.ops.cpu import CpuMeter, cpu_per_request
from shopsearch.ops.query_load import run_in_turn, run_mode
from shopsearch.settings import load_settings


def phases(rerank):
    many = {"direct_bm25": {"qps": 200.0}, "proxy_hybrid": {"qps": 100.0}, "proxy_hybrid_personalised": {"qps": 80.0},
            "proxy_hybrid_rerank": rerank}
    one = {"direct_bm25": {"p50_ms": 8.0}, "proxy_passthrough": {"p50_ms": 8.8}, "proxy_hybrid": {"p50_ms": 12.5},
           "proxy_learned": {"p50_ms": 14.0}}
    return {"no_repeat": many, "one_client": one}


def test_the_ratios_are_exactly_the_issues_figures_from_one_run():
    found, skipped = ratios(phases({"qps": 60.0}))
    assert tuple(found) == RATIOS
    assert found == {"passthrough_p50_vs_direct": 1.1, "hybrid_qps_vs_direct": 0.5, "personalised_qps_vs_direct": 0.4,
                     "rerank_qps_vs_hybrid": 0.6, "hybrid_p50_minus_direct_ms_1client": 4.5,
                     "learned_p50_minus_hybrid_ms_1client": 1.5}
    assert skipped == {}


def test_a_skipped_mode_keeps_its_ratio_key_with_null_and_the_reason():
    found, skipped = ratios(phases({"skipped": "no re-ranker for model m"}))
    assert tuple(found) == RATIOS and found["rerank_qps_vs_hybrid"] is None
    assert skipped == {"rerank_qps_vs_hybrid": "no re-ranker for model m"}


def test_the_zipf_replay_repeats_a_head_of_real_queries():
    counts = judged_counts(load_settings())
    replay = zipf_replay(counts, 20_000)
    shape = replay_shape(replay)
    assert set(replay) <= set(counts) and len(counts) > 8000
    assert 0.3 < shape["top100_share"] < 0.7 and shape["distinct"] < len(counts)
    most = [q for q, _ in Counter(replay).most_common(20)]
    assert sum(counts[q] for q in most) / 20 > sum(counts.values()) / len(counts)  # the head is the much-judged queries


@pytest.fixture
def recording_server():
    """A real HTTP server that answers like the proxy (``/broken``: 500) and records what arrived."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urlsplit(self.path)
            seen.append((url.path, parse_qs(url.query)["q"][0]))
            status = 500 if url.path == "/broken" else 200
            body = b'{"cached": false, "stage_ms": {"Retrieve": 5.0, "LearnedRank": 1.5}}'
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    send = lambda path: lambda s, q: s.get(f"{base}/{path}", params={"q": q}, timeout=10)  # noqa: E731
    yield send, seen
    server.shutdown()


def test_the_one_client_phase_sends_each_modes_next_query_in_turn(recording_server):
    """Paired one-client figures: mode after mode, round after round, each mode its own queries."""
    send, seen = recording_server
    queries = {"a": ["a1", "a2", "a3"], "b": ["b1", "b2"], "broken": ["x1", "x2", "x3"]}
    out = run_in_turn({m: send(m) for m in queries}, queries, seconds=30)
    assert seen == [("/a", "a1"), ("/b", "b1"), ("/broken", "x1"), ("/a", "a2"), ("/b", "b2"), ("/broken", "x2"),
                    ("/a", "a3"), ("/broken", "x3")]
    assert (out["a"]["requests"], out["a"]["errors"], out["b"]["requests"]) == (3, 0, 2)
    assert out["broken"]["errors"] == 3 and out["broken"]["error_kinds"] == {"HTTP 500": 3}
    assert out["a"]["cache_hit_rate"]["results"] == 0.0 and out["a"]["qps"] > 0
    assert out["a"]["stage_ms_p50"] == {"Retrieve": 5.0, "LearnedRank": 1.5}  # the answers' own stage times


def test_many_clients_send_each_query_of_a_mode_once(recording_server):
    send, seen = recording_server
    texts = [f"q{i}" for i in range(40)]
    out = run_mode(send("a"), texts, clients=4, seconds=30)
    assert sorted(q for _, q in seen) == sorted(texts) and out["requests"] == 40 and out["errors"] == 0
    assert out["p50_ms"] > 0 and out["stage_ms_p50"]["Retrieve"] == 5.0


BUSY = """
import sys, time
while time.process_time() < 0.6:
    pass
print("done", flush=True)
sys.stdin.read()
"""


def test_the_cpu_meter_charges_a_busy_process_to_its_group_and_the_rest_to_other():
    """A real process that burns 0.6 s of CPU: its group is charged at least that, the machine at
    least as much as all groups, and the idle group nothing."""
    busy = subprocess.Popen([sys.executable, "-c", BUSY], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    idle = subprocess.Popen([sys.executable, "-c", "import sys; print('ready', flush=True); sys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        meter = CpuMeter({"busy": lambda: [psutil.Process(busy.pid)], "idle": lambda: [psutil.Process(idle.pid)]})
        assert idle.stdout.readline().strip() == "ready"  # started: from here on it waits
        before = meter.read()
        assert busy.stdout.readline().strip() == "done"
        after = meter.read()
    finally:
        for p in (busy, idle):
            p.communicate("", timeout=10)
    per = cpu_per_request(before, after, requests=100, wall_s=1.0)
    # 0.6 s over 100 requests is 6 ms a request (the kernel counts CPU in 10 ms ticks)
    assert per["busy"] >= 5.8 - before["busy"] * 10
    assert per["idle"] < 0.5
    # the machine's counters and a process's are read apart, each in 10 ms ticks: 0.02 s over 100 requests
    assert per["total"] >= per["busy"] - 0.2 and per["other"] >= 0
    assert set(per) == {"busy", "idle", "other", "total", "cores_in_use"}


def test_a_process_that_is_gone_counts_no_cpu():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    process = psutil.Process(child.pid)
    child.wait(timeout=10)
    assert CpuMeter({"gone": lambda: [process]}).read()["gone"] == 0.0


def test_the_cpu_bounds_are_the_inverse_ratios_of_cpu_a_request_and_null_for_a_mode_not_measured():
    many = {"direct_bm25": {"cpu_ms": {"proxy": 0.0, "opensearch": 1.5, "client": 0.8, "other": 0.0, "total": 2.3}},
            "proxy_hybrid_personalised": {"cpu_ms": {"proxy": 5.8, "opensearch": 6.1, "client": 1.1, "other": 0.5,
                                                     "total": 13.5}},
            "proxy_hybrid": {"skipped": "not run"}}
    bounds = cpu_bounds(many)
    assert bounds["personalised_qps_vs_direct"] == {"with_client": 0.17, "servers_only": 0.126, "free_proxy": 0.299}
    assert bounds["hybrid_qps_vs_direct"] is None and bounds["rerank_qps_vs_hybrid"] is None
