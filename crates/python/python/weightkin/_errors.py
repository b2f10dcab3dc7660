"""The exceptions weightkin raises: one hierarchy under :class:`WeightkinError`.

Every exception carries the message chain the command-line tool prints: ``str(e)`` is
exactly what ``weightkin`` writes after ``error:`` (the error, then one ``caused by:`` line
per cause), and :attr:`WeightkinError.messages` is the same chain as a list. The subclasses
add what the error names: the recipe's line and column, the model file and tensor.

The native module raises them (``weightkin._weightkin`` imports this module); Ctrl-C during a
run raises Python's own :class:`KeyboardInterrupt`, not one of these.
"""

from __future__ import annotations

import errno
import os
from typing import List, NamedTuple, Optional, Sequence, Tuple

__all__ = [
    "Diagnostic",
    "HubError",
    "ModelChangedError",
    "ModelFileError",
    "ModelNotFoundError",
    "RecipeError",
    "WeightkinError",
]

#: What the CLI prints between two messages of a chain.
_CAUSED_BY = "\n  caused by: "


class WeightkinError(Exception):
    """An audit, comparison or inspection could not be completed.

    ``str(e)`` is the command-line tool's error text without its ``error:`` prefix: the
    error, then one ``caused by:`` line per cause.
    """

    messages: List[str]
    """The message chain: the error first, then each cause."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages = list(messages)
        super().__init__(self.messages[0] if self.messages else "")

    def __str__(self) -> str:
        return _CAUSED_BY.join(self.messages)


class Diagnostic(NamedTuple):
    """One problem in a recipe, at a 1-based line and column."""

    line: int
    column: int
    message: str


class RecipeError(WeightkinError):
    """A recipe could not be read, or is invalid: every problem with its line and column."""

    path: str
    """The recipe file (``<string>`` for a recipe given as text)."""
    diagnostics: List[Diagnostic]
    """Every problem found, in source order (empty when the file could not be read)."""

    def __init__(
        self,
        messages: Sequence[str],
        *,
        path: str,
        diagnostics: Sequence[Tuple[int, int, str]] = (),
    ) -> None:
        super().__init__(messages)
        self.path = path
        self.diagnostics = [Diagnostic(*d) for d in diagnostics]

    @property
    def line(self) -> Optional[int]:
        """Line of the first problem, if the recipe was read."""
        return self.diagnostics[0].line if self.diagnostics else None

    @property
    def column(self) -> Optional[int]:
        """Column of the first problem, if the recipe was read."""
        return self.diagnostics[0].column if self.diagnostics else None


class ModelFileError(WeightkinError):
    """A model file could not be opened or read: missing, malformed, hostile."""

    model: Optional[str]
    """The model's name in the recipe (``a`` or ``b`` for :func:`weightkin.compare`)."""
    file: Optional[str]
    """The file at fault, where the error names one."""
    tensor: Optional[str]
    """The tensor at fault, where the error names one."""

    def __init__(
        self,
        messages: Sequence[str],
        *,
        model: Optional[str] = None,
        file: Optional[str] = None,
        tensor: Optional[str] = None,
    ) -> None:
        super().__init__(messages)
        self.model = model
        self.file = file
        self.tensor = tensor


class ModelNotFoundError(ModelFileError, FileNotFoundError):
    """A model file does not exist (also a :class:`FileNotFoundError`)."""

    def __init__(
        self,
        messages: Sequence[str],
        *,
        model: Optional[str] = None,
        file: Optional[str] = None,
        tensor: Optional[str] = None,
    ) -> None:
        super().__init__(messages, model=model, file=file, tensor=tensor)
        self.errno = errno.ENOENT
        self.strerror = os.strerror(errno.ENOENT)
        self.filename = file


class ModelChangedError(ModelFileError):
    """A model file changed while it was read (truncated, rewritten, replaced): no report."""


class HubError(WeightkinError):
    """An ``hf://`` model could not be located or its bytes fetched."""

    model: Optional[str]
    """The model's name in the recipe, if the error arose in an audit."""

    def __init__(self, messages: Sequence[str], *, model: Optional[str] = None) -> None:
        super().__init__(messages)
        self.model = model
