"""Type stubs of the native module ``weightkin._weightkin`` (PyO3); the API is ``weightkin``."""

from typing import List, Optional, final

__all__ = ["NativeReport", "audit_file", "audit_text", "compare", "demo", "inspect", "version"]

@final
class NativeReport:
    """A report from the runner, with the formats its recipe asks for."""

    def render(self, format: str) -> str:
        """The report as ``"json"``, ``"md"`` or ``"html"``."""

    def formats(self) -> List[str]:
        """The formats the recipe asks for, by name."""

    def write(self, dir: str, formats: Optional[List[str]] = None) -> List[str]:
        """Writes the report into ``dir``; returns the paths written."""

def compare(
    a: str,
    b: str,
    metrics: List[str],
    include: List[str],
    exclude: List[str],
    align_units: bool,
    threads: Optional[int],
    hash_cache: bool,
    offline: bool,
) -> NativeReport:
    """``weightkin compare A B``."""

def audit_file(
    recipe: str,
    out: Optional[str],
    threads: Optional[int],
    hash_cache: bool,
    offline: bool,
) -> NativeReport:
    """``weightkin audit RECIPE``."""

def audit_text(
    text: str,
    out: Optional[str],
    threads: Optional[int],
    hash_cache: bool,
    offline: bool,
) -> NativeReport:
    """``weightkin audit`` of a recipe's text."""

def inspect(path: str, format: Optional[str], offline: bool) -> str:
    """``weightkin inspect --json MODEL``."""

def demo(dir: str) -> str:
    """Writes the demo models and recipe into ``dir``; returns the recipe path."""

def version() -> str:
    """The tool version."""
