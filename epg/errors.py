"""The one error hierarchy of epgbridge, and the Problem record every validator reports.

Every error a user can cause derives from EpgbridgeError and carries the exit status the command ends with
(`exit_code`, as click's ClickException does): the CLI's `main` catches the root once, shows the message and
exits with that status, so no mistake of the user's ends in a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from epg.text import printable


class EpgbridgeError(Exception):
    """Base of every error epgbridge reports to a user; its message is written for that user."""

    exit_code = 1

    def lines(self) -> tuple[str, ...]:
        """What the CLI prints, one `error:` line each."""
        return (str(self),)


class UsageError(EpgbridgeError):
    """The command line itself is wrong: a flag's value, or flags that do not go together (exit status 2)."""

    exit_code = 2


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the input: where it is (file and object) and what is wrong."""

    where: str
    message: str

    def __str__(self) -> str:
        return printable(f"{self.where}: {self.message}" if self.where else self.message)


class InvalidInput(EpgbridgeError):
    """Input that cannot be loaded: one Problem per line, each naming its file and object."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def lines(self) -> tuple[str, ...]:
        return tuple(str(p) for p in self.problems)


class Disagreement(EpgbridgeError):
    """Real packets did not do what the engine decided (`matrix --dataplane`, `lab probe`): exit status 3, so a
    CI job can tell a wrong dataplane from a command that could not run."""

    exit_code = 3
