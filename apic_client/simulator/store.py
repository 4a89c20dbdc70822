"""The simulator's management information tree: objects in memory, written through to SQLite.

Every object is stored with its class, DN and attributes. Changes arrive as a `Transaction` (one POST) and are
committed to memory and to the SQLite file together, so a crash or restart keeps either all of a POST or none
of it, as on an APIC.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..meta import parent_dn


@dataclass
class StoredMo:
    """One object of the tree; `attributes` hold configured values plus uid, modTs and friends."""

    cls: str
    dn: str
    attributes: dict[str, str] = field(default_factory=dict)


class MoStore:
    """All objects by DN, with indexes by parent and by class."""

    def __init__(self, path: Path) -> None:
        self.lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS mo (dn TEXT PRIMARY KEY, cls TEXT NOT NULL, attrs TEXT NOT NULL)"
        )
        self._objects: dict[str, StoredMo] = {}
        self._children: dict[str, set[str]] = {}
        self._by_class: dict[str, set[str]] = {}
        for dn, cls, attrs in self._db.execute("SELECT dn, cls, attrs FROM mo"):
            self._put(StoredMo(cls, dn, json.loads(attrs)))

    def close(self) -> None:
        with self.lock:
            self._db.close()

    def __len__(self) -> int:
        return len(self._objects)

    def get(self, dn: str) -> StoredMo | None:
        return self._objects.get(dn)

    def children(self, dn: str) -> list[StoredMo]:
        return [self._objects[c] for c in sorted(self._children.get(dn, ()))]

    def descendants(self, dn: str) -> Iterator[StoredMo]:
        """Every object below `dn`, parents before children, in DN order."""
        for child in self.children(dn):
            yield child
            yield from self.descendants(child.dn)

    def of_class(self, cls: str) -> list[StoredMo]:
        return [self._objects[dn] for dn in sorted(self._by_class.get(cls, ()))]

    def commit(self, changes: dict[str, StoredMo | None]) -> None:
        """Apply a transaction's changes (None deletes that one DN) to memory and disk at once."""
        with self.lock:
            self._db.execute("BEGIN")
            try:
                for dn, mo in changes.items():
                    if mo is None:
                        self._db.execute("DELETE FROM mo WHERE dn = ?", (dn,))
                    else:
                        self._db.execute(
                            "INSERT OR REPLACE INTO mo (dn, cls, attrs) VALUES (?, ?, ?)",
                            (dn, mo.cls, json.dumps(mo.attributes, sort_keys=True)),
                        )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            for dn, mo in changes.items():
                self._remove(dn)
                if mo is not None:
                    self._put(mo)

    def _put(self, mo: StoredMo) -> None:
        self._objects[mo.dn] = mo
        self._children.setdefault(parent_dn(mo.dn), set()).add(mo.dn)
        self._by_class.setdefault(mo.cls, set()).add(mo.dn)

    def _remove(self, dn: str) -> None:
        old = self._objects.pop(dn, None)
        if old is None:
            return
        self._children.get(parent_dn(dn), set()).discard(dn)
        self._by_class.get(old.cls, set()).discard(dn)


class Transaction:
    """Pending changes of one POST, seen through by lookups until they are committed."""

    def __init__(self, store: MoStore) -> None:
        self.store = store
        self.changes: dict[str, StoredMo | None] = {}

    def get(self, dn: str) -> StoredMo | None:
        if dn in self.changes:
            return self.changes[dn]
        return self.store.get(dn)

    def put(self, mo: StoredMo) -> None:
        self.changes[mo.dn] = mo

    def delete_subtree(self, dn: str) -> None:
        prefix = dn + "/"
        doomed = [dn, *(mo.dn for mo in self.store.descendants(dn))]
        doomed += [d for d in self.changes if d.startswith(prefix)]
        for d in doomed:
            self.changes[d] = None
