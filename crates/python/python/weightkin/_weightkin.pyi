"""Type stubs of the native module ``weightkin._weightkin`` (PyO3); the API is ``weightkin``."""

from typing import List, Optional, Tuple, final

__all__ = [
    "LineageIndex",
    "NativeReport",
    "audit_file",
    "audit_refs",
    "audit_text",
    "compare",
    "demo",
    "inspect",
    "sketch_store",
    "version",
]

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

def sketch_store(
    paths: List[str],
    out: str,
    samples: Optional[int] = None,
    seed: Optional[int] = None,
    threads: Optional[int] = None,
    hash_cache: bool = True,
    offline: bool = False,
) -> int:
    """Sketches ``paths`` into the Parquet file ``out``; returns the models written."""

@final
class LineageIndex:
    """A sketch store read once: the candidate search, audit references, the graph."""

    def __new__(cls, path: str) -> "LineageIndex": ...
    def __len__(self) -> int:
        """Models in the store."""

    def models(self) -> List[Tuple[str, str]]:
        """(name, path) of every model, in store order."""

    def search(self, alpha: Optional[float] = None) -> str:
        """Runs and keeps the candidate search; returns it as JSON."""

    def audit_ref(self, i: int) -> str:
        """What an audit task needs of model ``i``, as JSON."""

    def graph(
        self,
        audited: List[Tuple[int, int, str, Optional[float], str]],
        out: Optional[str] = None,
    ) -> str:
        """The lineage graph from the audits' results; written into ``out`` if given."""

def audit_refs(
    a: str,
    b: str,
    threads: Optional[int] = None,
    hash_cache: bool = True,
    offline: bool = False,
) -> Tuple[str, Optional[float], str]:
    """The exact audit of a candidate pair: (verdict, pearson, sentence)."""
