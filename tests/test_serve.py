"""The HTTP service (`durgru_jax.serve`) answers as `Recommender.recommend` and refuses bad
requests with a 4xx naming the field."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from durgru_jax.data import synthetic
from durgru_jax.recommend import Recommender
from durgru_jax.train import train_and_evaluate

pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from durgru_jax.serve import create_app  # noqa: E402

MAX_EVENTS = 40


@pytest.fixture(scope="module")
def run(tmp_path_factory, make_tiny):
    """A tiny aGRU run (durations as inputs) trained for one epoch, and its raw events."""
    c = make_tiny()
    c.train.epochs = 1
    workdir = str(tmp_path_factory.mktemp("serve_run"))
    train_and_evaluate(c, workdir)
    events = synthetic.generate_synthetic(**c.data.synthetic.to_dict())
    return Recommender.load(workdir), events[[c for c in events.columns if c[0] != "_"]]


@pytest.fixture(scope="module")
def client(run):
    with TestClient(create_app(run[0], max_events=MAX_EVENTS, max_k=50)) as c:
        yield c


def _events(frame, user: int) -> list[dict]:
    rows = frame[frame["user"] == user][["item", "timestamp", "duration"]]
    return [
        {"item": int(r.item), "timestamp": float(r.timestamp), "duration": float(r.duration)}
        for r in rows.itertuples()
    ]


def _as_json(rec) -> dict:
    return {
        "items": list(rec.items),
        "scores": list(rec.scores),
        "n_events": rec.n_events,
        "n_unknown_dropped": rec.n_unknown_dropped,
        "resorted": rec.resorted,
        "fallback": rec.fallback,
    }


def test_health_names_the_model(client, run) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ok",
        "n_items": run[0].n_items,
        "model": "agru",
        "required_columns": ["item", "timestamp", "duration"],
        "max_events": MAX_EVENTS,
        "max_k": 50,
    }


def test_recommend_equals_the_recommender(client, run) -> None:
    rec, frame = run
    events = _events(frame, 7)
    events.insert(2, {"item": 10**9, "timestamp": events[1]["timestamp"] + 1, "duration": 3.0})
    events[3], events[4] = events[4], events[3]  # out of time order: resorted
    for body, kw in [
        ({"events": events, "k": 7}, {"k": 7}),
        ({"events": events, "k": 5, "exclude_seen": False}, {"k": 5, "exclude_seen": False}),
        ({"events": events, "k": 3, "user": 7}, {"k": 3, "user": 7}),
        ({"events": events, "candidates": [3, 1, 99999, 2]}, {"candidates": [3, 1, 99999, 2]}),
    ]:
        r = client.post("/recommend", json=body)
        assert r.status_code == 200, r.text
        want = _as_json(rec.recommend(events, **kw))
        assert r.json() == want  # scores: float32 values, exact through JSON's doubles
    got = client.post("/recommend", json={"events": events}).json()
    assert len(got["items"]) == 10 and got["resorted"] and got["n_unknown_dropped"] == 1
    assert got["n_events"] == len(events) and got["fallback"] is None


def test_string_item_ids_are_accepted_and_unknown_ones_dropped(client, run) -> None:
    """Ids are compared by value with the run's (integer) ids: an id the run never saw,
    whatever its type, is dropped and counted."""
    rec, frame = run
    events = _events(frame, 3)
    events.append({"item": "not-an-item", "timestamp": events[-1]["timestamp"] + 5})
    r = client.post("/recommend", json={"events": events, "k": 4})
    assert r.status_code == 200, r.text
    assert r.json() == _as_json(rec.recommend(events, k=4))
    assert r.json()["n_unknown_dropped"] == 1


def test_empty_events_get_the_popularity_fallback(client, run) -> None:
    rec = run[0]
    r = client.post("/recommend", json={"events": [], "k": 5})
    assert r.status_code == 200
    pop = np.argsort(-rec.artifacts.log_popularity[1:], kind="stable")[:5]
    assert r.json()["fallback"] == "popularity" and r.json()["n_events"] == 0
    assert r.json()["items"] == rec.item_ids[pop].tolist()


def _error(client, body, status: int) -> str:
    r = client.post("/recommend", content=body if isinstance(body, bytes) else json.dumps(body))
    assert r.status_code == status, r.text
    return json.dumps(r.json()["detail"])


@pytest.mark.parametrize(
    "body, field",
    [
        ({"k": 3}, '"events"'),  # missing
        ({"events": [{"item": 1}]}, '"timestamp"'),  # an event's missing field
        ({"events": [{"item": 1.5, "timestamp": 1.0}]}, '"item"'),
        ({"events": [{"item": True, "timestamp": 1.0}]}, '"item"'),
        ({"events": [{"item": 1, "timestamp": "soon"}]}, '"timestamp"'),
        ({"events": [{"item": 1, "timestamp": 1.0, "duraton": 2.0}]}, '"duraton"'),  # misspelt
        ({"events": "nope"}, '"events"'),
        ({"events": [], "k": 0}, '"k"'),
        ({"events": [], "k": -3}, '"k"'),
        ({"events": [], "k": "ten"}, '"k"'),
        ({"events": [], "exclude_seen": "maybe"}, '"exclude_seen"'),
        ([1, 2], "object"),  # not an object
    ],
)
def test_malformed_requests_get_a_422_naming_the_field(client, body, field) -> None:
    assert field in _error(client, body, 422)


def test_bad_bodies_and_unreadable_events_are_422s(client, run) -> None:
    assert "JSON" in _error(client, b'{"events": [', 422)
    assert '"k"' in _error(client, b'{"events": [], "k": NaN}', 422)  # errors never echo NaN
    nan = b'{"events": [{"item": 1, "timestamp": Infinity}]}'
    assert '"timestamp"' in _error(client, nan, 422)
    assert "k: 51, at most 50" in _error(client, {"events": [], "k": 51}, 422)
    # The run's model reads durations: events without any are refused by the recommender.
    no_dur = [{k: v for k, v in e.items() if k != "duration"} for e in _events(run[1], 3)]
    assert "no 'duration' column" in _error(client, {"events": no_dur}, 422)


def test_oversized_requests_get_a_413(client, run) -> None:
    events = _events(run[1], 5)
    many = (events * 10)[: MAX_EVENTS + 1]
    assert f"events: {MAX_EVENTS + 1} events, at most {MAX_EVENTS}" in _error(
        client, {"events": many}, 413
    )
    assert "candidates" in _error(client, {"events": [], "candidates": list(range(41))}, 413)
    body = json.dumps({"events": events[:2], "k": 3}).encode()
    assert len(body) > 100
    with TestClient(create_app(run[0], max_body_bytes=100)) as small:
        assert "at most 100" in _error(small, body, 413)  # by its Content-Length
        r = small.post("/recommend", content=iter([body[:50], body[50:]]))  # streamed
        assert r.status_code == 413 and "over 100 bytes" in r.json()["detail"]
        assert small.post("/recommend", json={"events": []}).status_code == 200


def test_concurrent_requests_get_their_own_answers(client, run) -> None:
    """Requests from several threads at once each get what the recommender gives alone."""
    rec, frame = run
    users = list(range(1, 9))
    want = {u: _as_json(rec.recommend(_events(frame, u), k=6)) for u in users}
    got = []

    def ask(u: int) -> None:
        r = client.post("/recommend", json={"events": _events(frame, u), "k": 6})
        got.append((u, r.json()))

    threads = [threading.Thread(target=ask, args=(u,)) for u in users * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(threads) and all(r == want[u] for u, r in got)
