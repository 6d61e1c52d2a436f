"""Which query shapes a MongoDB-protocol server answers from an index: latency of each on a big collection.

python benchmarks/ferretdb_pushdown.py [--url mongodb://127.0.0.1:27027/] [--docs 100000] [--seconds 3]
Fills a collection of `--docs` read-model-like documents (indexes declared first, as the services'
`ensure_index` does), then times each shape the adapters use with PyMongo, one operation at a time,
and prints its median and 95th percentile with the plan the server reports for its filter (FerretDB on
PostgreSQL answers `explain` with PostgreSQL's plan; the writes by `_id` first run that same query).
Default server: $MONGODB_URL, else scripts/infra's FerretDB. Drops its database at the end (`--keep` not).
"""

import argparse
import itertools
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, MongoClient
from pymongo.collection import Collection
from pymongo.database import Database

DB, COLL = "bench_pushdown", "volunteers"
DEPARTMENTS = 100  # so an equality on `department` matches docs / 100 documents


def doc(n: int, id_: str | None = None) -> dict[str, Any]:
    return {
        "_id": id_ or f"v{n:07d}",
        "email": f"v{n}@example.org",
        "department": f"{n % DEPARTMENTS:02d}",
        "status": "idle" if n % 10 == 0 else "active",
        "n": n,
        "updated": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n),
        "bio": "bénévole " * 20,
    }


def fill(db: Database, docs: int) -> Collection:
    db.drop_collection(COLL)
    coll = db[COLL]
    for field in ("email", "department", "updated"):  # as MongoDocumentStore.ensure_index names them
        coll.create_index([(field, ASCENDING)], name=field)
    started = time.perf_counter()
    for first in range(0, docs, 1000):
        coll.insert_many([doc(n) for n in range(first, min(first + 1000, docs))], ordered=False)
    print(f"{docs:,} documents inserted in {time.perf_counter() - started:.1f} s (batches of 1,000)")
    return coll


def plan(db: Database, filter_: dict[str, Any]) -> str:
    """The plan the server reports for `filter_`, as the chain of its steps."""
    try:
        answer = db.command("explain", {"find": COLL, "filter": filter_}, verbosity="queryPlanner")
    except Exception as exc:  # a server without explain for this shape
        return f"(no explain: {exc.__class__.__name__})"
    planner, steps = answer.get("queryPlanner", {}), []
    node = planner.get("Plan")
    if isinstance(node, list):  # FerretDB on SQLite: SQLite's EXPLAIN QUERY PLAN rows
        steps = [row.split("detail=", 1)[-1] for row in node]
    elif node is not None:  # FerretDB on PostgreSQL: PostgreSQL's plan
        while node:
            steps.append(f"{node['Node Type']} ({node['Index Name']})" if "Index Name" in node else node["Node Type"])
            node = (node.get("Plans") or [None])[0]
    else:  # MongoDB
        stage = planner.get("winningPlan", {})
        while stage:
            steps.append(f"{stage['stage']} ({stage['indexName']})" if "indexName" in stage else stage["stage"])
            stage = stage.get("inputStage")
    pushed = {True: "; filter pushed down", False: "; filter NOT pushed down"}.get(answer.get("filterPushdown"), "")
    return " > ".join(steps) + pushed


def timed(seconds: float, op: Callable[[int], Any]) -> list[float]:
    """Runs op(i) for i = 0, 1, … for about `seconds` (5 runs at least, 1,000 at most); milliseconds each."""
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < 5 or (time.perf_counter() < deadline and len(times) < 1000):
        started = time.perf_counter()
        op(len(times))
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27027/"))
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="time spent on each shape")
    parser.add_argument("--keep", action="store_true", help="keep the database (and reuse it with --reuse)")
    parser.add_argument("--reuse", action="store_true", help="use the collection a --keep run left")
    args = parser.parse_args()

    client: MongoClient = MongoClient(args.url)
    db = client[DB]
    coll = db[COLL] if args.reuse else fill(db, args.docs)
    docs = coll.estimated_document_count()
    rng = random.Random(7)
    some = lambda: f"v{rng.randrange(docs):07d}"  # noqa: E731 - an existing _id
    fresh, run = itertools.count(), uuid.uuid4().hex[:6]  # _ids of new documents, unlike a --keep run's
    victims = [f"v{n:07d}" for n in rng.sample(range(docs), 2000)]  # deleted one by one, never twice
    outbox = db["outbox"]  # an event outbox's size: a few entries waiting for the relay
    outbox.drop()
    outbox.insert_many([{"_id": f"s{n}:1", "stream_id": f"s{n}", "first": 1} for n in range(50)])

    def renew_outbox(i: int) -> None:
        outbox.delete_many({"_id": {"$in": [f"s{i % 50}:1"]}})
        outbox.insert_one({"_id": f"s{i % 50}:1", "stream_id": f"s{i % 50}", "first": 1})

    def delete_victim(i: int) -> None:
        coll.delete_one({"_id": victims[i % len(victims)]})

    shapes: list[tuple[str, dict[str, Any] | None, Callable[[int], Any]]] = [
        ("find_one({_id})", {"_id": "v0000001"}, lambda i: coll.find_one({"_id": some()})),
        (
            "find_one({email}) - indexed, 1 match",
            {"email": "v1@example.org"},
            lambda i: coll.find_one({"email": f"v{rng.randrange(docs)}@example.org"}),
        ),
        (
            f"find({{department}}) - indexed, {docs // DEPARTMENTS:,} matches",
            {"department": "07"},
            lambda i: coll.find({"department": f"{i % DEPARTMENTS:02d}"}).to_list(),
        ),
        (
            "find({department}).sort(updated, _id).limit(20)",
            {"department": "07"},
            lambda i: (
                coll.find({"department": f"{i % DEPARTMENTS:02d}"})
                .sort([("updated", 1), ("_id", 1)])
                .limit(20)
                .to_list()
            ),
        ),
        (
            "count_documents({department})",
            {"department": "07"},
            lambda i: coll.count_documents({"department": f"{i % DEPARTMENTS:02d}"}),
        ),
        (
            "update_one({_id}, $set)",
            {"_id": "v0000001"},
            lambda i: coll.update_one({"_id": some()}, {"$set": {"status": "active"}}),
        ),
        (
            "replace_one({_id}, upsert) - existing",
            {"_id": "v0000001"},
            lambda i: coll.replace_one({"_id": (k := some())}, {**doc(int(k[1:])), "status": "idle"}, upsert=True),
        ),
        (
            "replace_one({_id}, upsert) - new",
            {"_id": "v0000001"},
            lambda i: coll.replace_one({"_id": (k := f"new-{run}-{next(fresh)}")}, doc(0, k), upsert=True),
        ),
        ("delete_one({_id})", {"_id": "v0000001"}, delete_victim),
        ("insert_one", None, lambda i: coll.insert_one(doc(0, f"new-{run}-{next(fresh)}"))),
        (
            "find({status}) - not indexed, 10% match",
            {"status": "idle"},
            lambda i: coll.find({"status": "idle"}).to_list(),
        ),
        (
            "find({_id: {$in: [3 ids]}})",
            {"_id": {"$in": ["v0000001"]}},
            lambda i: coll.find({"_id": {"$in": [some(), some(), some()]}}).to_list(),
        ),
        (
            "find({n: {$gte, $lt}}) - 10 matches",
            {"n": {"$gte": 1, "$lt": 11}},
            lambda i: coll.find({"n": {"$gte": (k := rng.randrange(docs)), "$lt": k + 10}}).to_list(),
        ),
        ("outbox: delete_many({_id: {$in}}) + insert_one, 50 entries", None, renew_outbox),
    ]
    print(f"{args.url} - {docs:,} documents; milliseconds per operation, one at a time")
    print(f"{'shape':<56} {'median':>8} {'p95':>8} {'runs':>5}  plan of its filter")
    for name, filter_, op in shapes:
        times = timed(args.seconds, op)
        p95 = statistics.quantiles(times, n=20)[-1]
        where = plan(db, filter_) if filter_ is not None else "-"
        print(f"{name:<56} {statistics.median(times):8.1f} {p95:8.1f} {len(times):5d}  {where}", flush=True)
    if not args.keep:
        client.drop_database(DB)


if __name__ == "__main__":
    main()
