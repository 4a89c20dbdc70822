"""Read snapshot files (YAML, JSON, directories, standard input) into the model. The only file I/O of
the loading path; the CLI, tests and benchmarks all load through here."""

from __future__ import annotations

import argparse
import collections
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from contracts.loader import Document, documents, load_cluster
from contracts.model import Cluster, Model, Skipped
from epg.errors import InvalidInput, Problem

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


def parse_text(origin: str, text: str, is_json: bool = False) -> list[Document]:
    try:
        if is_json:
            return documents(origin, [json.loads(text)])
        return documents(origin, yaml.load_all(text, Loader=_YamlLoader))
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
    lines = [f"warning: {s.where}: {s.kind} {s.name} is not evaluated (epgbridge reads NetworkPolicy of "
             "networking.k8s.io/v1, EndpointGroups and Contracts): the traffic it decides is not in this answer"
             for s in skipped if s.policy]
    rest = [s for s in skipped if not s.policy]
    if verbose:
        lines += [f"note: skipped {s.where}: {s.kind} {s.name} (this kind does not affect policy)" for s in rest]
    elif rest:
        counts = collections.Counter(s.kind for s in rest)
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        lines.append(f"note: skipped {len(rest)} object{'s' if len(rest) != 1 else ''} of kinds that do not affect "
                     f"policy ({kinds}); -v lists them")
    return lines


def snapshot_files(path: str) -> list[Path]:
    """The files a `-f` path stands for: itself, or every *.yaml, *.yml and *.json under a directory."""
    return _files(path)
