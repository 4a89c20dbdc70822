"""The one error hierarchy of epgbridge, and the Problem record every validator reports."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class EpgbridgeError(Exception):
    """Base of every error epgbridge reports to a user; its message is written for that user."""


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the input: where it is (file and object) and what is wrong."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class InvalidInput(EpgbridgeError):
    """Input that cannot be loaded: one Problem per line, each naming its file and object."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
