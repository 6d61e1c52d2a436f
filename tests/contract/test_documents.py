"""DocumentStore contract: the same answers from SQLite, from FerretDB and from memory."""

import pytest

from shared.runtime.ports import DuplicateKeyError, UnsupportedFilter

PEOPLE = [
    {"id": "a", "name": "Alice", "age": 34, "dept": "56", "geo": {"dept": "56", "km": 4.5}, "tag": "x"},
    {"id": "b", "name": "Bruno", "age": 71, "dept": "29", "geo": {"dept": "29", "km": 12.0}},
    {"id": "c", "name": "Chloé", "age": 16, "dept": "2A", "geo": {"dept": "2A", "km": 0.5}, "tag": None},
    {"id": "d", "name": "David", "age": 45, "dept": "56", "geo": {"dept": "56", "km": 30.0}, "tag": "y"},
    {"id": "e", "name": "Emma", "age": 29, "dept": "971", "geo": {"dept": "971", "km": 8.0}, "active": True},
]


@pytest.fixture
async def docs(storage):
    for person in PEOPLE:
        await storage.documents.put("people", person["id"], person)
    return storage.documents


async def ids(docs, where=None, **kwargs) -> list[str]:
    return [d["id"] for d in await docs.find("people", where, **kwargs)]


async def test_get_put_replace_delete(docs):
    assert await docs.get("people", "a") == PEOPLE[0]
    assert await docs.get("people", "zz") is None
    await docs.put("people", "a", {"id": "a", "name": "Alice B."})
    assert await docs.get("people", "a") == {"id": "a", "name": "Alice B."}
    assert await docs.delete("people", "a") is True
    assert await docs.delete("people", "a") is False
    assert await docs.get("people", "a") is None


async def test_insert_refuses_an_existing_id(docs):
    with pytest.raises(DuplicateKeyError):
        await docs.insert("people", "a", {"id": "a"})
    await docs.insert("people", "f", {"id": "f", "name": "Fanny"})
    assert (await docs.get("people", "f"))["name"] == "Fanny"


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({}, ["a", "b", "c", "d", "e"]),
        ({"dept": "56"}, ["a", "d"]),
        ({"geo.dept": "29"}, ["b"]),
        ({"dept": {"$in": ["29", "2A"]}}, ["b", "c"]),
        ({"dept": {"$nin": ["56", "971"]}}, ["b", "c"]),
        ({"age": {"$gte": 45}}, ["b", "d"]),
        ({"age": {"$gt": 16, "$lt": 45}}, ["a", "e"]),
        ({"geo.km": {"$lte": 4.5}}, ["a", "c"]),
        ({"dept": {"$ne": "56"}}, ["b", "c", "e"]),
        ({"tag": {"$ne": "x"}}, ["b", "c", "d", "e"]),
        ({"tag": {"$exists": True}}, ["a", "c", "d"]),
        ({"tag": {"$exists": False}}, ["b", "e"]),
        ({"geo.km": {"$exists": True}, "dept": "56"}, ["a", "d"]),
        ({"tag": None}, ["b", "c", "e"]),
        ({"active": True}, ["e"]),
        ({"name": "Chloé"}, ["c"]),
    ],
)
async def test_find_and_count_answer_the_filter_subset(docs, where, expected):
    assert await ids(docs, where) == expected
    assert await docs.count("people", where) == len(expected)


async def test_sort_limit_skip(docs):
    assert await ids(docs, sort=[("age", -1)]) == ["b", "d", "a", "e", "c"]
    assert await ids(docs, sort=[("dept", 1), ("age", -1)]) == ["b", "c", "d", "a", "e"]
    assert await ids(docs, sort=[("geo.km", 1)], limit=2) == ["c", "a"]
    assert await ids(docs, sort=[("geo.km", 1)], skip=2, limit=2) == ["e", "b"]
    assert await ids(docs, {"dept": "56"}, sort=[("age", 1)], skip=1) == ["d"]


async def test_a_unique_index_refuses_a_second_document_with_the_same_value(docs):
    await docs.ensure_index("people", ["name"], unique=True)
    await docs.ensure_index("people", ["name"], unique=True)  # idempotent
    with pytest.raises(DuplicateKeyError):
        await docs.put("people", "z", {"id": "z", "name": "Alice"})
    with pytest.raises(DuplicateKeyError):
        await docs.insert("people", "z", {"id": "z", "name": "Bruno"})
    assert await docs.get("people", "z") is None
    assert (await docs.get("people", "a"))["name"] == "Alice"  # the holder of the value is untouched
    await docs.put("people", "a", {**PEOPLE[0], "age": 35})  # replacing itself is fine
    assert (await docs.get("people", "a"))["age"] == 35


async def test_a_compound_index_is_accepted_and_queries_still_answer(docs):
    await docs.ensure_index("people", ["dept", "age"])
    assert await ids(docs, {"dept": "56", "age": {"$gt": 40}}) == ["d"]


@pytest.mark.parametrize(
    "where",
    [
        {"name": {"$regex": "A"}},
        {"$or": [{"a": 1}]},
        {"age": {"$in": "56"}},
        {"geo": {"dept": "56"}},
        {"bad field": 1},
        {"tag": {"$exists": 1}},
    ],
)
async def test_filters_outside_the_subset_are_refused_alike(docs, where):
    with pytest.raises(UnsupportedFilter):
        await docs.find("people", where)
