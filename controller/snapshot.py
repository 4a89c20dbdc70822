"""Read snapshot files (YAML, JSON, directories, standard input) into the model. The only file I/O of
the loading path; the CLI, tests and benchmarks all load through here."""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from contracts.loader import Document, documents, load_cluster
from contracts.model import Cluster, Model, Skipped
from epg.errors import InvalidInput, Problem
from epg.text import clipped

SUFFIXES = (".yaml", ".yml", ".json")

try:  # the C loader is several times faster on large snapshots
    _YamlLoader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _YamlLoader = yaml.SafeLoader


def add_files_argument(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The `-f PATH` option every snapshot-reading command takes, and `-v` to list what it skipped."""
    parser.add_argument("-f", "--filename", dest="files", action="append", required=required, metavar="PATH",
                        help="snapshot file, directory or - (stdin); repeat to combine")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="more detail: each object skipped because its kind does not affect policy "
                        "(Service, ConfigMap, ...; without -v they are counted in one line), each APIC retry")


def _files(path: str) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.suffix in SUFFIXES and f.is_file())
    return [p]


# Bounds on what one document may cost, whoever wrote it. A few hundred bytes of YAML aliases (each anchor
# naming the one before it nine times) stand for billions of nodes: PyYAML builds them shared, but anything
# that walks the result (a message quoting a value, the loader's loops) walks every copy. JSON's parser
# recurses per level (RecursionError at about 1000); libyaml refuses more than 1000 levels itself, and nesting
# made of aliases is held to the same. Real objects nest about 20 deep.
MAX_JSON_DEPTH = 200
MAX_YAML_DEPTH = 1000
MIN_EXPANSION = 100_000  # nodes a document may stand for, however small: a few anchors for repeated blocks
EXPANSION_FACTOR = 2  # ... or this many times its own nodes, for a big document


class _TooComplex(Exception):
    pass


def _check_node(root: yaml.Node) -> None:
    """Refuse a composed YAML document that nests deeper than MAX_YAML_DEPTH, refers to itself through an alias, or
    stands for far more nodes than it holds once its aliases are expanded. Iterative (no recursion), and linear
    in the distinct nodes: each collection is measured once (a scalar is one node, one level)."""
    measured: dict[int, tuple[int, int]] = {}  # id(collection) -> (depth, nodes once aliases are expanded)
    open_nodes: set[int] = set()  # collections on the path from the root: meeting one again is a cycle
    stack: list[tuple[yaml.Node, list[yaml.Node] | None]] = [(root, None)]
    scalars = 0
    while stack:
        node, children = stack.pop()
        key = id(node)
        if children is not None:  # all children measured
            open_nodes.discard(key)
            depth, count = 1, 1
            for c in children:
                d, n = measured.get(id(c), (1, 1))
                depth, count = max(depth, d + 1), count + n
            if depth > MAX_YAML_DEPTH:
                raise _TooComplex(f"nested more than {MAX_YAML_DEPTH} levels deep (line {node.start_mark.line + 1})")
            measured[key] = (depth, count)
            continue
        if key in measured:
            continue
        if key in open_nodes:
            raise _TooComplex(f"an alias refers to a node that contains it (line {node.start_mark.line + 1})")
        value = node.value
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = value
        else:
            scalars += 1
            continue
        open_nodes.add(key)
        stack.append((node, children))
        stack.extend((c, None) for c in children if not isinstance(c, yaml.ScalarNode) and id(c) not in measured)
        scalars += sum(1 for c in children if isinstance(c, yaml.ScalarNode))
    expanded = measured[id(root)][1] if id(root) in measured else 1
    distinct = len(measured) + scalars
    limit = max(MIN_EXPANSION, EXPANSION_FACTOR * distinct)
    if expanded > limit:
        raise _TooComplex(f"its aliases expand {distinct} nodes to {expanded} (at most {limit} are read)")


def _yaml_documents(text: str) -> list[Any]:
    loader = _YamlLoader(text)
    anchored = "&" in text  # without an anchor there is no alias: the parser's own depth limit is enough
    try:
        bodies = []
        while loader.check_node():
            node = loader.get_node()
            if node is not None and anchored:
                try:
                    _check_node(node)
                except _TooComplex as exc:
                    raise _TooComplex(f"document {len(bodies) + 1}: {exc}") from None
            bodies.append(loader.construct_document(node) if node is not None else None)
        return bodies
    finally:
        loader.dispose()


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _json_too_deep(text: str) -> bool:
    """Whether arrays and objects nest deeper than MAX_JSON_DEPTH, counted on the brackets outside strings before
    parsing (the parser recurses)."""
    depth = 0
    for c in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        depth += 1 if c in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            return True
    return False


def parse_text(origin: str, text: str, is_json: bool = False) -> list[Document]:
    """The documents of one file's text; raises InvalidInput (one line) for text that is not YAML or JSON or
    that costs more than the bounds above."""
    try:
        if is_json:
            if _json_too_deep(text):
                raise _TooComplex(f"nested more than {MAX_JSON_DEPTH} levels deep")
            return documents(origin, [json.loads(text)])
        return documents(origin, _yaml_documents(text))
    except _TooComplex as exc:
        raise InvalidInput([Problem(origin, f"refused: {exc}")]) from None
    except RecursionError:  # the pure-Python YAML parser (without libyaml) recurses per level
        raise InvalidInput([Problem(origin, "refused: nested too deeply for the YAML parser")]) from None
    except json.JSONDecodeError as exc:
        raise InvalidInput([Problem(origin, f"JSON syntax error at line {exc.lineno}: {exc.msg}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput([Problem(origin, f"YAML syntax error{line}: {problem}")]) from None


def read_documents(paths: Iterable[str]) -> list[Document]:
    """Every document of every path (`-` is standard input); raises InvalidInput for unreadable input."""
    docs: list[Document] = []
    problems: list[Problem] = []
    for path in paths:
        if path == "-":
            docs.extend(parse_text("<stdin>", sys.stdin.read()))
            continue
        if not Path(path).exists():
            problems.append(Problem(path, "no such file or directory"))
            continue
        files = _files(path)
        if not files:
            problems.append(Problem(path, "no *.yaml, *.yml or *.json files in this directory"))
        for f in files:
            try:
                text = f.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(Problem(str(f), f"cannot read: {exc}"))
                continue
            try:
                docs.extend(parse_text(str(f), text, f.suffix == ".json"))
            except InvalidInput as exc:
                problems.extend(exc.problems)
    if problems:
        raise InvalidInput(problems)
    return docs


def load_paths(paths: Iterable[str]) -> Cluster:
    return load_cluster(read_documents(paths))


def load_model(paths: Iterable[str], verbose: bool = False) -> Model:
    """The model of the snapshot files; objects skipped for their kind are reported on stderr."""
    return model_of(read_documents(paths), verbose)


def model_of(docs: Iterable[Document], verbose: bool = False) -> Model:
    """The model of documents from any source (files, a live cluster); skipped objects reported on stderr."""
    cluster = load_cluster(docs)
    for line in skipped_lines(cluster.skipped, verbose):
        print(line, file=sys.stderr)
    return Model(cluster)


def skipped_lines(skipped: Sequence[Skipped], verbose: bool) -> list[str]:
    """What to say about the objects the loader skipped: a warning for each policy of another engine (it may
    decide traffic that the matrix does not show), and one line counting the rest (-v: one line each)."""
    # Kinds and names of skipped objects were never validated: escaped and cut (epg.text).
    lines = [f"warning: {s.where}: {clipped(s.kind, 80)} {clipped(s.name, 80)} is not evaluated (epgbridge reads "
             "NetworkPolicy of networking.k8s.io/v1, EndpointGroups and Contracts): the traffic it decides is not in "
             "this answer" for s in skipped if s.policy]
    rest = [s for s in skipped if not s.policy]
    if verbose:
        lines += [f"note: skipped {s.where}: {clipped(s.kind, 80)} {clipped(s.name, 80)} (this kind does not affect "
                  "policy)" for s in rest]
    elif rest:
        counts = collections.Counter(clipped(s.kind, 80) for s in rest)
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        lines.append(f"note: skipped {len(rest)} object{'s' if len(rest) != 1 else ''} of kinds that do not affect "
                     f"policy ({kinds}); -v lists them")
    return lines


def snapshot_files(path: str) -> list[Path]:
    """The files a `-f` path stands for: itself, or every *.yaml, *.yml and *.json under a directory."""
    return _files(path)
