"""``shopsearch check security`` against the real faces over real HTTP, bounded for CI: a
schemathesis fuzz of every route of each face's OpenAPI document (valid and malformed requests)
answers no 5xx and changes no index; path tricks and admin actions without a credential are all
refused; every accepted event is stored; spoofed events are refused."""

import json

import pytest
from click.testing import CliRunner

from shopsearch.cli import main
from shopsearch.ops import security_fuzz as fuzzing
from shopsearch.ops import security_probes as probes
from shopsearch.workers.dispatch import run_ingest

from .conftest import DATA


@pytest.fixture(scope="module")
def shop(services, settings, client):
    """200 real Myntra products, encoded, behind the alias ``test_security``."""
    name = "test_security"
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)
    run_ingest(settings, DATA / "fashion" / "products.tsv", name, mapping="fashion", limit=200)
    yield name
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)


def test_path_tricks_and_admin_actions_without_a_credential_are_all_refused_on_both_faces(public_url, proxy_url, shop):
    for base in (public_url, proxy_url):
        tricks = probes.probe_path_tricks(base)
        assert tricks.tried == len(probes.PATH_TRICKS) and tricks.findings == [], (base, tricks.findings)
        actions = probes.probe_admin_actions(base, shop, "shopsearch-check-test")
        assert actions.tried == actions.refused and actions.findings == [], (base, actions.findings)


@pytest.mark.parametrize("face", ["public", "internal"])
def test_fuzzing_every_route_of_a_face_gives_no_5xx(public_url, proxy_url, shop, face):
    base = public_url if face == "public" else proxy_url
    tally = fuzzing.fuzz(base, 400, catalogue=shop, seed=1)
    assert tally.tried >= 150  # hypothesis stops early on operations with few distinct inputs
    assert tally.findings == [], tally.findings[:3]
    assert tally.as_dict()["server_errors"] == 0
    assert tally.refused > 0 and tally.tried > tally.refused  # malformed ones refused, valid ones answered
    # only malformed variants may have no request to make (every case drawn rejected); each is named
    assert all("(negative" in name for name in tally.skipped), tally.skipped


def test_fuzzing_the_pass_through_with_opensearch_shaped_requests_gives_no_5xx_and_no_write(proxy_url, client, shop):
    before = client.count(index=shop)["count"], client.indices.get_mapping(index=shop)
    tally = fuzzing.fuzz_passthrough(proxy_url, 400, catalogue=shop, seed=2)
    assert tally.tried == 400 and tally.findings == [], tally.findings[:3]
    assert (client.count(index=shop)["count"], client.indices.get_mapping(index=shop)) == before
    assert tally.statuses["200"] > 0 and tally.statuses["403"] > 0  # reads answered, the rest refused


def test_the_whole_check_reports_no_finding_and_no_change_to_the_cluster(public_url, proxy_url, admin_headers, shop,
                                                                         tmp_path):
    out = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["check", "security", "--public", public_url, "--internal", proxy_url,
                                       "--catalogue", shop, "--fuzz", "300", "--events", "60",
                                       "--admin-token", admin_headers["X-Admin-Token"], "--out", str(out)])
    report = json.loads(out.read_text())
    assert result.exit_code == 0, result.output
    totals = report["totals"]
    assert totals["fuzzed"] >= 200 and totals["server_errors"] == 0
    assert totals["admin_actions_without_credential"] == 0 and totals["state_changes"] == 0
    assert report["events"]["accepted"] == 60 and report["events"]["stored"] == 60
    assert totals["accepted_events_lost"] == 0 and totals["spoofed_events_accepted"] == 0
    assert result.output.splitlines()[-1].endswith(tuple(f"OK in {report['seconds']} s" for _ in [0]))


def test_a_finding_fails_the_check(public_url, shop, monkeypatch):
    # a probe list that includes a request the public face rightly answers: it must be reported
    monkeypatch.setattr(probes, "PATH_TRICKS", (("GET", "/healthz"),))
    tally = probes.probe_path_tricks(public_url)
    assert tally.findings and tally.findings[0]["status"] == 200
