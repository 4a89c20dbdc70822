"""Fuzzing the loading path with mutated example documents: whatever the mutation, the input either loads (and
the model and engine work on it) or is refused with InvalidInput, one short line per problem. Never another
exception, never a line break inside a problem. The live path (lenient load) never raises at all."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.engine import Engine
from contracts.loader import documents, load_cluster, load_cluster_lenient
from contracts.model import Model
from controller.snapshot import parse_text
from epg.errors import InvalidInput

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "cluster"
BASE = [doc for path in sorted(EXAMPLES.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values that broke parsers before, or look almost right: wrong types, control characters, zone ids, numbers
# where names go and names where numbers go, and keys that are not strings.
TRICKY = st.sampled_from([
    "", " ", "\n", "a\nb", "\x1b[2J", "\u202e", "\x00", "fe80::1%eth0", "10.0.0.1/8", "10.0.0.0/255.0.0.0",
    "010.0.0.1", "::ffff:10.0.0.1", "0", "-1", "65536", "²", "８０", "TCP", "tcp", "Ingress", "Egress", "List",
    "http", "80-", "-", "a|b", "kube/kubernetes/x", '{"name": "x"}', '{"tenant": 5}', "null", "true", "x" * 300,
])
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                   st.text(max_size=12), TRICKY)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.text(max_size=8), st.integers(0, 9), TRICKY), inner,
                                            max_size=4)),
    max_leaves=8)


def _slots(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in a document, the document's top level included."""
    out: list[tuple[Any, Any]] = []
    stack = [node]
    while stack:
        current = stack.pop()
        pairs = current.items() if isinstance(current, dict) else enumerate(current) if isinstance(current, list) \
            else ()
        for key, value in pairs:
            out.append((current, key))
            stack.append(value)
    return out


@st.composite
def mutated_cluster(draw: st.DrawFn) -> list[Any]:
    docs = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        doc = docs[draw(st.integers(0, len(docs) - 1))]
        slots = _slots(doc)
        container, key = slots[draw(st.integers(0, len(slots) - 1))]
        action = draw(st.sampled_from(["replace", "delete", "add", "wrap", "duplicate"]))
        if action == "replace":
            container[key] = draw(VALUES)
        elif action == "delete":
            del container[key]
        elif action == "add" and isinstance(container, dict):
            container[draw(st.one_of(st.text(max_size=8), st.integers(0, 9), TRICKY))] = draw(VALUES)
        elif action == "wrap":
            container[key] = draw(st.sampled_from([[container[key]], {"x": container[key]}]))
        elif action == "duplicate" and isinstance(container, list):
            container.append(copy.deepcopy(container[key]))
    return docs


def _problems_are_lines(exc: InvalidInput) -> None:
    assert exc.problems
    for p in exc.problems:
        line = str(p)
        assert "\n" not in line and "\x1b" not in line and len(line) < 1000, line


def _use(cluster: Any) -> None:
    model = Model(cluster)
    for notice in (*model.errors, *model.warnings):
        assert "\n" not in str(notice)
    Engine(model).compile()


@FUZZ
@given(mutated_cluster())
def test_mutated_documents_load_or_fail_with_one_line_problems(docs: list[Any]) -> None:
    try:
        load_cluster(documents("fuzz.yaml", docs))
    except InvalidInput as exc:
        _problems_are_lines(exc)
    cluster, rejected = load_cluster_lenient(documents("fuzz.yaml", docs))
    assert all("\n" not in str(r.problem) for r in rejected)
    _use(cluster)


TEXT = yaml.safe_dump_all(BASE, sort_keys=False)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(TEXT)), st.integers(0, 8),
                          st.sampled_from(["", ":", "-", " ", "\n", "&a ", "*a", "[", "]", "{", "}", "'", '"', "\t",
                                           "!!python/object:os.system", "%", "x", "0"])),
                min_size=1, max_size=6))
def test_mutated_text_parses_or_fails_with_one_line_problems(edits: list[tuple[int, int, str]]) -> None:
    text = TEXT
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut:]
    try:
        cluster = load_cluster(parse_text("fuzz.yaml", text))
    except InvalidInput as exc:
        _problems_are_lines(exc)
    else:
        _use(cluster)
