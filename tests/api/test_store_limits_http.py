"""Hostile values and runaway queries through real HTTP on both databases (issue 13, 4-7).

Long indexed strings, control characters, values beyond the search limits and
queries past the statement timeout must each answer a FHIR OperationOutcome
with a 4xx or a 503, never a 500, identically on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import random
import sqlite3
import string
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import psycopg
import pytest

from hygeia.store.search_sql import SqlBuilder
from tests.api.test_bulk_http import KICK_OFF, poll
from tests.conftest import ServerProcess

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def random_text(length: int) -> str:
    """Letters that do not compress, so PostgreSQL cannot squeeze an index entry small."""
    return "".join(random.choices(string.ascii_lowercase, k=length))


def found_ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {entry["resource"]["id"] for entry in response.json().get("entry", [])
            if entry["search"]["mode"] == "match"}


def assert_outcome(response: httpx.Response, status: int, expression: str | None = None,
                   code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    if expression is not None:
        assert expression in issue.get("expression", []), issue
    if code is not None:
        assert issue["code"] == code, issue
    return issue


# --- item 4: long indexed strings ----------------------------------------------------------

def test_long_family_name_stores_and_every_string_search_finds_it(client: httpx.Client) -> None:
    family = random_text(2700)
    created = client.post("Patient", json={"resourceType": "Patient",
                                           "name": [{"family": family}]})
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    for name, value in [("family", family), ("family", family[:300]),
                        ("family", family[:40]), ("family:exact", family),
                        ("family:contains", family[2500:2560]), ("name", family)]:
        assert pid in found_ids(client.get("Patient", params={name: value})), name
    # exact stays exact beyond the indexed prefix: same first 2,000 letters, other end
    assert found_ids(client.get("Patient", params={"family:exact": family[:2000] + "zz"})) \
        == set()
    assert pid not in found_ids(client.get("Patient", params={"family": family + "a"}))


def test_long_value_string_uri_and_code_text_store_and_stay_searchable(
        client: httpx.Client) -> None:
    value, url, text, code = random_text(9900), "http://example.org/" + random_text(5000), \
        random_text(4000), random_text(3000)
    observation = client.post("Observation", json={
        "resourceType": "Observation", "status": "final",
        "code": {"text": text, "coding": [{"system": "http://example.org", "code": code}]},
        "valueString": value})
    assert observation.status_code == 201, observation.text
    oid = observation.json()["id"]
    value_set = client.post("ValueSet", json={"resourceType": "ValueSet", "status": "active",
                                              "url": url})
    assert value_set.status_code == 201, value_set.text
    vid = value_set.json()["id"]
    assert oid in found_ids(client.get("Observation", params={"value-string": value}))
    assert oid in found_ids(client.get("Observation", params={"value-string": value[:500]}))
    assert oid in found_ids(client.get("Observation", params={"code:text": text}))
    assert found_ids(client.get("Observation", params={"code": f"http://example.org|{code}"})) \
        == {oid}
    # a composite whose first component (the code) is longer than the indexed prefix
    assert found_ids(client.get("Observation", params={
        "code-value-string": f"http://example.org|{code}${value[:3000]}"})) == {oid}
    assert found_ids(client.get("Observation", params={
        "code-value-string": f"http://example.org|{code[:-1]}${value[:30]}"})) == set()
    assert found_ids(client.get("ValueSet", params={"url": url})) == {vid}
    assert found_ids(client.get("ValueSet", params={"url": url[:-1]})) == set()
    assert vid in found_ids(client.get("ValueSet", params={"url:below": url[:400]}))


# --- item 5: control characters ------------------------------------------------------------

@pytest.mark.parametrize("character", ["\u0000", "\u0007", "\u001b"])
def test_control_character_in_a_resource_is_refused_at_the_element(
        client: httpx.Client, character: str) -> None:
    body = orjson.dumps({"resourceType": "Patient", "name": [{"family": f"a{character}b"}]})
    response = client.post("Patient", content=body, headers=FHIR_JSON)
    assert_outcome(response, 422)
    issue = next(issue for issue in response.json()["issue"]
                 if issue.get("expression") == ["Patient.name[0].family"])
    assert f"U+{ord(character):04X}" in issue["diagnostics"]
    put = client.put("Patient/ctl-1", content=orjson.dumps(
        {"resourceType": "Patient", "id": "ctl-1", "gender": f"male{character}"}),
        headers=FHIR_JSON)
    assert put.status_code in (400, 422), put.text


def test_tab_carriage_return_and_line_feed_are_kept(client: httpx.Client) -> None:
    family = f"tab\there\r\nline-{random_text(8)}"
    created = client.post("Patient", json={"resourceType": "Patient",
                                           "name": [{"family": family}]})
    assert created.status_code == 201, created.text
    assert client.get(f"Patient/{created.json()['id']}").json()["name"][0]["family"] == family


@pytest.mark.parametrize("query, parameter", [
    ("Patient?_id=%00", "_id"), ("Patient?family=a%00b", "family"),
    ("Patient?name:exact=%07", "name:exact"), ("Patient?_has:Observation:subject:code=%00",
                                                "_has:Observation:subject:code"),
    ("Patient?general-practitioner.name=%1f", "general-practitioner.name"),
    ("Observation?code=http://loinc.org|%00", "code"), ("Patient?_sort=%00", "_sort"),
    ("Patient?_count=%00", "_count")])
def test_control_character_in_a_search_parameter_is_400(client: httpx.Client, query: str,
                                                        parameter: str) -> None:
    assert_outcome(client.get(query), 400, expression=parameter)


def test_control_character_in_conditional_criteria_and_history_is_400(
        client: httpx.Client) -> None:
    response = client.post("Patient", json={"resourceType": "Patient"},
                           headers={"If-None-Exist": "identifier=a%00b"})
    assert_outcome(response, 400, expression="identifier")
    assert_outcome(client.get("Patient/_history?_since=%00"), 400)
    assert_outcome(client.get("_history?_cursor=%00"), 400, expression="_cursor")


@pytest.mark.parametrize("path", ["Patient/a%00b", "Patient/a%00b/_history/1",
                                  "Patient/a%00b/_history", "Patient/a%00b/$everything"])
def test_control_character_in_a_resource_id_is_400(client: httpx.Client, path: str) -> None:
    assert_outcome(client.get(path), 400)
    if path == "Patient/a%00b":
        assert_outcome(client.put(path, json={"resourceType": "Patient", "id": "a\u0000b"}),
                       400)
        assert_outcome(client.delete(path), 400)


# --- item 6: explicit limits ---------------------------------------------------------------

def test_values_per_parameter_limit(client: httpx.Client) -> None:
    hundred = ",".join(f"v{i}" for i in range(100))
    assert client.get("Patient", params={"family": hundred}).status_code == 200
    assert client.get("Patient", params={"_id": hundred}).status_code == 200
    for name in ("family", "_id", "identifier", "birthdate"):
        values = ",".join(f"2020-01-{i % 28 + 1:02d}" for i in range(600))
        issue = assert_outcome(client.get("Patient", params={name: values}), 400,
                               expression=name, code="too-costly")
        assert "100" in issue["diagnostics"]


def test_chain_depth_limit_and_the_deepest_allowed_chain_answers(client: httpx.Client) -> None:
    tag = random_text(12)
    ids: list[str] = []
    for index in range(4):  # p0 -> p1 -> p2 -> p3 (named tag)
        name = [{"family": tag}] if index == 3 else [{"family": f"other-{index}"}]
        ids.append(client.post("Patient", json={"resourceType": "Patient", "name": name}
                               ).json()["id"])
    for source, target in itertools.pairwise(ids):
        resource = client.get(f"Patient/{source}").json()
        resource["link"] = [{"other": {"reference": f"Patient/{target}"}, "type": "seealso"}]
        assert client.put(f"Patient/{source}", json=resource).status_code == 200
    started = time.monotonic()
    assert found_ids(client.get(f"Patient?link.link.link.family={tag}")) == {ids[0]}
    assert found_ids(client.get(f"Patient?link:Patient.link.link.name={tag}")) == {ids[0]}
    assert time.monotonic() - started < 5
    assert_outcome(client.get(f"Patient?link.link.link.link.family={tag}"), 400,
                   expression="link.link.link.link.family", code="too-costly")
    deep_has = "_has:Patient:link:" * 4 + "family"
    assert_outcome(client.get(f"Patient?{deep_has}={tag}"), 400, expression=deep_has)
    fifty = ".".join(["link"] * 50) + ".name"
    assert_outcome(client.get(f"Patient?{fifty}=x"), 400, expression=fifty)


def test_three_step_chains_fanning_out_answer_and_oversized_ones_are_refused(
        client: httpx.Client) -> None:
    """Three steps whose references may each point at many types still answer on both
    databases (SQLite's parser stack overflowed on some); a chain whose first step
    may point at 65 types, with 100 values, would bind over 32,766 values: 400."""
    for query in ("Procedure?based-on.encounter.patient.name=x",
                  "Provenance?target.patient.link.name=x",
                  "Observation?encounter.patient.general-practitioner.address-country=x",
                  "Encounter?based-on.based-on.performer.name=x"):
        assert client.get(query).status_code == 200, query
    values = ",".join(f"v{i}" for i in range(100))
    issue = assert_outcome(client.get(f"Provenance?target.patient.link.name={values}"), 400,
                           code="too-costly")
    assert "32,766" in issue["diagnostics"]


def test_parameter_count_limit(client: httpx.Client) -> None:
    query = "&".join(f"family=n{i}" for i in range(101))
    assert_outcome(client.get(f"Patient?{query}"), 400, code="too-costly")
    assert client.get("Patient?" + "&".join(f"family=n{i}" for i in range(100))
                      ).status_code == 200


@pytest.mark.parametrize("query, parameter", [
    ("_history?_cursor=99999999999999999999999", "_cursor"),
    ("Patient/_history?_count=" + "9" * 5000, "_count"),
    ("Patient?_count=" + "9" * 5000, "_count"), ("Patient?_count=%C2%B2", "_count"),
    ("_history?_cursor=%C2%B2", "_cursor"), ("_history?_count=-1", "_count")])
def test_integer_parameters_are_bounded(client: httpx.Client, query: str,
                                        parameter: str) -> None:
    assert_outcome(client.get(query), 400, expression=parameter)


def test_forged_search_cursors_are_400(client: httpx.Client) -> None:
    for raw in (b'["n", "x"]', b'["n", 99999999999999999999999]', b'["n", [1]]',
                b'["n", null]', b'["n", 1.5, "x", "y"]', b'["n", true]'):
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        assert_outcome(client.get("Patient", params={"_cursor": cursor}), 400,
                       expression="_cursor")
    # sorted by family: the first key is text, so a number there is not a cursor we issued
    sorted_cursor = base64.urlsafe_b64encode(orjson.dumps(["n", 5, "Patient", "a"])).decode()
    assert_outcome(client.get("Patient", params={"_sort": "family",
                                                 "_cursor": sorted_cursor.rstrip("=")}),
                   400, expression="_cursor")


def test_version_ids_are_bounded(client: httpx.Client) -> None:
    pid = client.post("Patient", json={"resourceType": "Patient"}).json()["id"]
    nines = "9" * 5000
    assert_outcome(client.put(f"Patient/{pid}", json={"resourceType": "Patient", "id": pid},
                              headers={"If-Match": f'W/"{nines}"'}), 400)
    assert_outcome(client.delete(f"Patient/{pid}", headers={"If-Match": f'W/"{nines}"'}), 400)
    assert client.put(f"Patient/{pid}", json={"resourceType": "Patient", "id": pid},
                      headers={"If-Match": 'W/"99999999999"'}).status_code == 412
    for version in (nines, "99999999999999999999", "%C2%B2", "1a"):
        assert_outcome(client.get(f"Patient/{pid}/_history/{version}"), 400)
    assert client.get(f"Patient/{pid}/_history/999999999").status_code == 404
    assert client.get(f"Patient/{pid}/_history/1").status_code == 200


# --- item 7: runaway queries ---------------------------------------------------------------

SLOW_ROWS = 40_000  # long names a :contains search with 100 values scans for seconds
SLOW_QUERY = {"family:contains": ",".join(f"zq{i}x" for i in range(100))}


def _fill_names(server: ServerProcess) -> None:
    """Index rows enough to make ``SLOW_QUERY`` run for many seconds without a limit.

    Patients with long family names, written straight into the tables (a setup
    shortcut: the search that then runs is the real one, through HTTP, the server's
    SQL and its database).
    """
    server.client.post("Patient", json={"resourceType": "Patient",
                                        "name": [{"family": "seed"}]})
    url = server.db_url
    rows = ("INSERT INTO resource (pk, res_type, res_id, seq, version, deleted, last_updated) "
            "SELECT {key}, 'Patient', 'slow-' || ({key}), 0, 1, {false}, 0 FROM {source}")
    family = SqlBuilder().param_hashes(("Patient",), "family")[0]
    names = ("INSERT INTO string_index (res_pk, h_param, norm, exact) SELECT {key}, "
             f"{family}, {{text}}, 'x' FROM {{source}}")
    if url.startswith("sqlite:///"):
        source = (f"(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s "
                  f"WHERE g < {SLOW_ROWS}) SELECT g FROM s)")
        with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30) as connection:
            connection.execute(rows.format(key="g + 1000000", false="0", source=source))
            connection.execute(names.format(key="g + 1000000", source=source,
                                            text="substr(hex(randomblob(600)), 1, 1000)"))
        return
    source = f"generate_series(1, {SLOW_ROWS}) g"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(rows.format(key="g + 1000000", false="false", source=source))
        connection.execute(names.format(key="g + 1000000", source=source,
                                        text="repeat(md5(g::text), 31)"))
        connection.execute("ANALYZE")


def test_a_query_past_the_statement_timeout_answers_503(database_url: str) -> None:
    server = ServerProcess(database_url, "--statement-timeout", "0.5")
    try:
        _fill_names(server)
        started = time.monotonic()
        response = server.client.get("Patient", params=SLOW_QUERY)
        elapsed = time.monotonic() - started
        issue = assert_outcome(response, 503, code="timeout")
        assert "0.5 s" in issue["diagnostics"]
        assert elapsed < 3, elapsed
        # the server is fine afterwards, and quick queries are not affected
        assert server.client.get("Patient", params={"family": "seed"}).status_code == 200
    finally:
        server.stop()


def test_jobs_get_the_longer_job_statement_timeout(database_url: str, tmp_path: Path) -> None:
    """A bulk export runs its searches under ``--job-statement-timeout``, not the
    interactive ``--statement-timeout``: the search that a request may not finish within
    0.5 s completes inside an export job allowed 600 s."""
    server = ServerProcess(database_url, "--statement-timeout", "0.5",
                           "--job-statement-timeout", "600", "--files", str(tmp_path))
    try:
        _fill_names(server)
        issue = assert_outcome(server.client.get("Patient", params=SLOW_QUERY), 503,
                               code="timeout")
        assert "raise --statement-timeout" in issue["diagnostics"], issue
        started = time.monotonic()
        done = poll(server.client, _export_slow_query(server), timeout=300)
        assert done.status_code == 200, done.text
        assert done.json()["output"] == []
        assert done.json()["error"] == []
        assert time.monotonic() - started > 0.5
    finally:
        server.stop()


def test_a_job_past_the_job_statement_timeout_fails_and_requests_still_work(
        database_url: str, tmp_path: Path) -> None:
    """The other way round: a job limit shorter than the search stops the export job's
    query (its status names the timeout), while requests, under their own limit, go on."""
    server = ServerProcess(database_url, "--statement-timeout", "600",
                           "--job-statement-timeout", "0.5", "--files", str(tmp_path))
    try:
        _fill_names(server)
        status_url = _export_slow_query(server)
        deadline = time.monotonic() + 60
        while "took longer than 0.5 s" not in (note := _job_note(server, status_url)):
            assert time.monotonic() < deadline, note
            time.sleep(0.2)
        assert "--job-statement-timeout" in note, note
        assert found_ids(server.client.get("Patient", params={"family": "seed"}))
    finally:
        server.stop()


def _export_slow_query(server: ServerProcess) -> str:
    """Kick off a Patient export filtered by ``SLOW_QUERY``; its status URL."""
    started = server.client.get("$export", headers=KICK_OFF, params={
        "_type": "Patient", "_typeFilter": f"Patient?{urlencode(SLOW_QUERY)}"})
    assert started.status_code == 202, started.text
    return started.headers["Content-Location"]


def _job_note(server: ServerProcess, status_url: str) -> str:
    """What the job's status says now: its progress note, or its failure."""
    response = server.client.get(status_url)
    assert response.status_code in (202, 500), response.text
    return str(response.json()["issue"][0]["diagnostics"])


@pytest.mark.postgres
def test_a_disconnected_clients_query_stops_within_the_timeout(postgres_url: str) -> None:
    base = postgres_url.rsplit("/", 1)[0]
    url = f"{base}/hygeia_slow_{random_text(8)}"
    timeout = 2.0
    server = ServerProcess(url, "--statement-timeout", str(timeout))
    try:
        _fill_names(server)
        gone = threading.Event()

        def search_and_hang_up() -> None:
            with contextlib.suppress(httpx.TimeoutException):
                httpx.get(f"{server.base}/Patient", params=SLOW_QUERY, timeout=0.3)
            gone.set()

        threading.Thread(target=search_and_hang_up, daemon=True).start()
        with psycopg.connect(base + "/postgres", autocommit=True) as watcher:
            seen = False
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not (seen and gone.is_set()):
                seen = seen or _running_like(watcher, url)
                time.sleep(0.05)
            assert seen, "the slow search never showed up in pg_stat_activity"
            assert gone.wait(5)
            disconnected = time.monotonic()
            while _running_like(watcher, url):
                assert time.monotonic() - disconnected < timeout + 1, \
                    "the query kept running after the client had gone"
                time.sleep(0.05)
    finally:
        server.stop()
        with psycopg.connect(base + "/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def _running_like(watcher: psycopg.Connection, url: str) -> bool:
    row = watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND "
                          "state = 'active' AND query LIKE '%%LIKE%%'",
                          (url.rsplit("/", 1)[1],)).fetchone()
    return bool(row and row[0])
