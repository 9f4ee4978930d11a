"""An HTTP service over `recommend.Recommender` (the optional ``serve`` extra).

```bash
pip install -e '.[serve]'
python -m durgru_jax.serve --workdir runs/default --port 8000 [--host 127.0.0.1] [--max_events N]
curl -s localhost:8000/health
curl -s localhost:8000/recommend -H 'content-type: application/json' \\
  -d '{"events": [{"item": 12, "timestamp": 1.7e9, "duration": 30.0}], "k": 10}'
```

* ``GET /health``: ``{"status": "ok", "n_items", "model" (the cell), "required_columns",
  "max_events", "max_k"}``.
* ``POST /recommend``: ``{"events": [{"item", "timestamp", "duration"?, "behavior"?}, ...],
  "k": 10, "exclude_seen": true, "user"?: id, "candidates"?: [ids]}`` returns what
  `Recommender.recommend` returns for the same arguments: ``{"items", "scores", "n_events",
  "n_unknown_dropped", "resorted", "fallback"}`` (a score that is not finite, such as the log
  popularity of an item never seen in training, is ``null``: JSON has no infinities).

Errors: a malformed body (missing or misspelt field, wrong type, ``k`` not in ``1..max_k``,
events the run cannot read, e.g. no ``duration`` where the model reads durations) gets a 422
whose ``detail`` names the field; more than ``max_events`` events or candidates, or a body over
``max_body_bytes``, a 413. Item and user ids are JSON integers or strings, as in the run's data.

Concurrency: the model call is synchronous numpy/JAX. Every request's call runs on one
dedicated model thread (a one-worker executor), so calls run one at a time, in arrival order,
while the event loop keeps accepting, parsing and refusing requests: `Recommender` keeps a
cache that is not thread-safe, and one call already occupies the CPU's cores through XLA's own
threads, so two calls at once would only share the same cores (and a lock over a thread pool
would park a pool thread per waiting request). Run one process per model (uvicorn
``workers=1``); scale out with processes behind a balancer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

try:
    import uvicorn
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"durgru_jax.serve needs the 'serve' extra ({e.name} is missing): pip install -e '.[serve]'"
    ) from e

from durgru_jax.recommend import Recommendation, Recommender

MAX_EVENTS = 1000  # events per request (a longer history is cut to max_len inputs anyway)
MAX_K = 1000
MAX_BODY_BYTES = 1 << 20

Id = StrictInt | StrictStr  # no floats or booleans: an id is compared by value with the run's
Number = Annotated[float, Field(allow_inf_nan=False)]


class Event(BaseModel):
    """One event, with the columns of the training file."""

    model_config = ConfigDict(extra="forbid")

    item: Id
    timestamp: Number  # Unix seconds
    duration: Number | None = None
    behavior: Id | None = None


class RecommendRequest(BaseModel):
    """The arguments of `Recommender.recommend` for one user."""

    model_config = ConfigDict(extra="forbid")

    events: list[Event]
    k: int = Field(10, gt=0)
    exclude_seen: bool = True
    user: Id | None = None
    candidates: list[Id] | None = None


class RecommendResponse(BaseModel):
    items: list[Any]
    scores: list[float | None]
    n_events: int
    n_unknown_dropped: int
    resorted: bool
    fallback: str | None


def response(rec: Recommendation) -> RecommendResponse:
    """The JSON form of a `Recommendation` (non-finite scores as null)."""
    return RecommendResponse(
        items=list(rec.items),
        scores=[s if math.isfinite(s) else None for s in rec.scores],
        n_events=rec.n_events,
        n_unknown_dropped=rec.n_unknown_dropped,
        resorted=rec.resorted,
        fallback=rec.fallback,
    )


async def _read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be over ``max_bytes`` (by its
    Content-Length, else while it streams in)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(413, f"body: {declared} bytes, at most {max_bytes}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise HTTPException(413, f"body: over {max_bytes} bytes")
    return bytes(body)


def _check_limits(req: RecommendRequest, max_events: int, max_k: int) -> None:
    if len(req.events) > max_events:
        raise HTTPException(413, f"events: {len(req.events)} events, at most {max_events}")
    if req.candidates is not None and len(req.candidates) > max_events:
        raise HTTPException(413, f"candidates: {len(req.candidates)} items, at most {max_events}")
    if req.k > max_k:
        raise HTTPException(422, f"k: {req.k}, at most {max_k}")


def create_app(
    recommender: Recommender,
    max_events: int = MAX_EVENTS,
    max_k: int = MAX_K,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """A FastAPI app serving ``recommender`` (see the module docstring)."""
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        model_thread.shutdown(wait=True)

    app = FastAPI(title="durgru-jax recommender", lifespan=lifespan)

    def call(req: RecommendRequest) -> Recommendation:
        events = [e.model_dump(exclude_none=True) for e in req.events]
        return recommender.recommend(
            events,
            k=req.k,
            exclude_seen=req.exclude_seen,
            candidates=req.candidates,
            user=req.user,
        )

    @app.get("/health")
    def health() -> dict:
        return {
            "status": "ok",
            "n_items": recommender.n_items,
            "model": recommender.rc.model.cell,
            "required_columns": list(recommender.required_columns),
            "max_events": max_events,
            "max_k": max_k,
        }

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(request: Request) -> RecommendResponse:
        body = await _read_body(request, max_body_bytes)
        try:
            req = RecommendRequest.model_validate_json(body)
        except ValidationError as e:  # FastAPI's 422, each error with its field's location
            errors = e.errors(include_url=False, include_context=False, include_input=False)
            raise RequestValidationError(
                [{**err, "loc": ("body", *err["loc"])} for err in errors]
            ) from None
        _check_limits(req, max_events, max_k)
        try:
            rec = await asyncio.get_running_loop().run_in_executor(model_thread, call, req)
        except (ValueError, TypeError) as e:  # events the run cannot read: the message names
            raise HTTPException(422, str(e)) from None  # the column (recommend_inputs)
        return response(rec)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a finished run (results.json, ...)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "latest"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max_events", type=int, default=MAX_EVENTS)
    parser.add_argument("--max_k", type=int, default=MAX_K)
    parser.add_argument("--max_body_bytes", type=int, default=MAX_BODY_BYTES)
    args = parser.parse_args(argv)
    rec = Recommender.load(args.workdir, checkpoint=args.checkpoint)
    app = create_app(rec, args.max_events, args.max_k, args.max_body_bytes)
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="warning")


if __name__ == "__main__":
    main()
