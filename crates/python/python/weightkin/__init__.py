"""weightkin: audit neural-network weights for provenance.

Was model B, or a component of it, derived from model A — fine-tuned, quantized, pruned,
copied — or trained independently? This package is the ``weightkin`` command-line tool's
engine with a Python front::

    import weightkin
    report = weightkin.compare("base.safetensors", "candidate.safetensors")
    print(report.verdict, report.sentence)
    report.to_pandas()           # one row per compared tensor pair
    report                       # in a notebook: the HTML report

* :func:`compare` is ``weightkin compare A B``, :func:`audit` is ``weightkin audit RECIPE``,
  :func:`inspect` is ``weightkin inspect --json MODEL``; :func:`demo_models` writes the demo's
  model family and recipe.
* A :class:`Report` is the same report the CLI writes, byte for byte: :meth:`Report.to_json`
  is ``report.json``, :meth:`Report.to_markdown` ``report.md``, :meth:`Report.to_html`
  ``report.html``.
* Errors are :class:`WeightkinError` and its subclasses, with the CLI's message chain.
* Runs release the GIL and stop cleanly on Ctrl-C (:class:`KeyboardInterrupt`).
"""

from __future__ import annotations

import enum
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union, cast

from . import _weightkin
from ._errors import (
    Diagnostic,
    HubError,
    ModelChangedError,
    ModelFileError,
    ModelNotFoundError,
    RecipeError,
    WeightkinError,
)

if TYPE_CHECKING:  # optional dependencies, imported when a table is asked for
    import pandas  # type: ignore[import-untyped,import-not-found,unused-ignore]
    import pyarrow  # type: ignore[import-untyped,import-not-found,unused-ignore]

__all__ = [
    "Comparison",
    "Component",
    "Diagnostic",
    "FileInfo",
    "HubError",
    "ModelChangedError",
    "ModelFileError",
    "ModelInfo",
    "ModelNotFoundError",
    "RecipeError",
    "Report",
    "TensorInfo",
    "Verdict",
    "WeightkinError",
    "audit",
    "compare",
    "demo_models",
    "inspect",
]

__version__: str = _weightkin.version()

#: A path to a model or recipe: ``str`` or :class:`os.PathLike` (``pathlib.Path``). A model
#: may also be ``"hf://org/name[@revision][/subpath]"``.
PathArg = Union[str, "os.PathLike[str]"]


class Verdict(str, enum.Enum):
    """A verdict on a comparison or a component; compares equal to its name."""

    DERIVED = "derived"
    """B (or this component of B) shares ancestry with A."""
    INDEPENDENT = "independent"
    """Nothing in B's weights shows shared ancestry with A."""
    INCONCLUSIVE = "inconclusive"
    """The evidence does not settle it."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Component:
    """The verdict on one component of B (embeddings, vision tower, language model, …)."""

    comparison: str
    """The comparison it belongs to."""
    name: str
    """Component name."""
    verdict: Verdict
    """Its verdict."""
    sentence: str
    """The verdict in a sentence a journalist can quote."""
    tensors: int
    """Compared tensors in the component."""
    evidence: int
    """Of which evidence."""
    supporting: int
    """Evidence tensors supporting derivation."""
    median_pearson: Optional[float]
    """Median Pearson over evidence tensors."""
    median_z: Optional[float]
    """Median z against the null."""
    data: Dict[str, Any] = field(repr=False, compare=False)
    """The component as the JSON report has it (deciding and counter evidence, exclusions)."""


#: Per-tensor columns after the metric values, taken from the row's ``evidence`` object.
_EVIDENCE_COLUMNS = (
    "component",
    "role",
    "role_reason",
    "equal_fraction",
    "relative_l2",
    "null",
    "null_mean",
    "null_sd",
    "z",
    "p",
    "p_adjusted",
)

#: Per-tensor columns before the metric values.
_ROW_COLUMNS = ("comparison", "tensor", "class", "layer", "shape", "dtype_a", "dtype_b", "a_name", "b_name")


@dataclass(frozen=True)
class Comparison:
    """One comparison of a report: model A against model B."""

    name: str
    """Display name."""
    a: str
    """Model on side A (its name in the recipe)."""
    b: str
    """Model on side B."""
    metrics: List[str]
    """Metrics computed, in recipe order."""
    verdict: Verdict
    """Overall verdict: derived if any component is, independent if all are."""
    sentence: str
    """The overall verdict in a sentence."""
    components: List[Component]
    """Verdict per component, sorted by name."""
    tensors: List[Dict[str, Any]] = field(repr=False)
    """Every compared pair as the JSON report has it, sorted by name."""
    not_compared: List[Dict[str, Any]] = field(repr=False)
    """Every tensor not compared, with its reason."""
    data: Dict[str, Any] = field(repr=False, compare=False)
    """The whole comparison as the JSON report has it."""

    def rows(self) -> List[Dict[str, Any]]:
        """One flat row per compared tensor pair (the columns of :meth:`Report.to_pandas`)."""
        return _rows([self])


def _rows(comparisons: Sequence[Comparison]) -> List[Dict[str, Any]]:
    metrics: List[str] = []
    for c in comparisons:
        metrics.extend(m for m in c.metrics if m not in metrics)
    # Evidence carries Pearson and cosine whatever the metrics: a column if none holds them.
    extra = [m for m in ("pearson", "cosine") if m not in metrics]
    columns = [*_ROW_COLUMNS, *metrics, *extra, *_EVIDENCE_COLUMNS]
    rows = []
    for c in comparisons:
        for t in c.tensors:
            ev = t.get("evidence") or {}
            row: Dict[str, Any] = dict.fromkeys(columns)
            row.update(
                comparison=c.name,
                tensor=t["name"],
                **{k: t.get(k) for k in _ROW_COLUMNS[2:]},
            )
            row.update({m: v for m, v in t["values"].items() if m in row})
            for m in extra:
                row[m] = ev.get(m)
            row.update({k: ev.get(k) for k in _EVIDENCE_COLUMNS if k != "role_reason"})
            row["role_reason"] = ev.get("reason")
            rows.append(row)
    return rows


def _comparison(c: Dict[str, Any]) -> Comparison:
    v = c["verdicts"]
    return Comparison(
        name=c["name"],
        a=c["a"],
        b=c["b"],
        metrics=list(c["metrics"]),
        verdict=Verdict(v["overall"]),
        sentence=v["sentence"],
        components=[
            Component(
                comparison=c["name"],
                name=k["name"],
                verdict=Verdict(k["verdict"]),
                sentence=k["sentence"],
                tensors=k["tensors"],
                evidence=k["evidence"],
                supporting=k["supporting"],
                median_pearson=k.get("median_pearson"),
                median_z=k.get("median_z"),
                data=k,
            )
            for k in v["components"]
        ],
        tensors=c["tensors"],
        not_compared=c["not_compared"],
        data=c,
    )


def _need(module: str, extra: str) -> Any:
    try:
        return __import__(module)
    except ImportError as e:
        raise ImportError(
            f"this needs {module}, an optional dependency: pip install 'weightkin[{extra}]'"
        ) from e


class Report:
    """An audit's report: verdicts, components, per-tensor rows, and its renderings.

    The same report the CLI writes, byte for byte: :meth:`to_json` is ``report.json``,
    :meth:`to_markdown` ``report.md``, :meth:`to_html` ``report.html``. Made by
    :func:`compare` and :func:`audit`.
    """

    def __init__(self, native: _weightkin.NativeReport) -> None:
        self._native = native
        self._json: Optional[str] = None
        self._parsed: Optional[Dict[str, Any]] = None
        self._comparisons: Optional[List[Comparison]] = None

    def to_json(self) -> str:
        """The canonical JSON report (``report.json``): pretty-printed, trailing newline."""
        if self._json is None:
            self._json = self._native.render("json")
        return self._json

    def to_dict(self) -> Dict[str, Any]:
        """The JSON report as Python objects (a fresh copy on each call)."""
        return cast(Dict[str, Any], json.loads(self.to_json()))

    def to_markdown(self) -> str:
        """The Markdown report (``report.md``)."""
        return self._native.render("md")

    def to_html(self) -> str:
        """The self-contained HTML report (``report.html``): no scripts, no network."""
        return self._native.render("html")

    def _repr_html_(self) -> str:
        # The page in an iframe: its stylesheet styles `body`, `table`, `h1`…, which inline
        # would restyle the whole notebook. `srcdoc` holds the page exactly (escaped).
        return (
            '<iframe class="weightkin-report" style="width:100%;height:640px;border:1px solid #ddd"'
            f' sandbox="" srcdoc="{html.escape(self.to_html(), quote=True)}"></iframe>'
        )

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def write(self, dir: PathArg, formats: Optional[Iterable[str]] = None) -> List[Path]:
        """Writes the report's files into ``dir`` (created if missing), as ``weightkin audit
        --out DIR`` does: ``formats`` among ``"json"``, ``"md"``, ``"html"`` (default: the
        recipe's ``[report] formats``). Returns the paths written."""
        names = None if formats is None else _strings(formats, "formats")
        return [Path(p) for p in self._native.write(os.fspath(dir), names)]

    @property
    def formats(self) -> List[str]:
        """The formats the recipe asks for (``[report] formats``)."""
        return list(self._native.formats())

    def _data(self) -> Dict[str, Any]:
        if self._parsed is None:
            self._parsed = cast(Dict[str, Any], json.loads(self.to_json()))
        return self._parsed

    @property
    def name(self) -> str:
        """The audit's name (``[audit] name``)."""
        return cast(str, self._data()["audit"]["name"])

    @property
    def recipe(self) -> str:
        """The recipe that ran, as text (what ``weightkin verify`` runs again)."""
        return cast(str, self._data()["audit"]["recipe"])

    @property
    def models(self) -> List[Dict[str, Any]]:
        """Every model of the recipe: path, format, files with their BLAKE3, tensor counts."""
        return cast(List[Dict[str, Any]], self._data()["models"])

    @property
    def comparisons(self) -> List[Comparison]:
        """The comparisons, in recipe order."""
        if self._comparisons is None:
            self._comparisons = [_comparison(c) for c in self._data()["comparisons"]]
        return self._comparisons

    @property
    def verdicts(self) -> Dict[str, Verdict]:
        """Overall verdict per comparison, by comparison name."""
        return {c.name: c.verdict for c in self.comparisons}

    def _single(self) -> Comparison:
        if len(self.comparisons) != 1:
            raise ValueError(
                f"this report has {len(self.comparisons)} comparisons: use report.verdicts "
                "or report.comparisons"
            )
        return self.comparisons[0]

    @property
    def verdict(self) -> Verdict:
        """The overall verdict of a one-comparison report (:func:`compare`'s)."""
        return self._single().verdict

    @property
    def sentence(self) -> str:
        """The overall verdict of a one-comparison report, in a sentence."""
        return self._single().sentence

    @property
    def components(self) -> List[Component]:
        """Every comparison's verdicts per component."""
        return [k for c in self.comparisons for k in c.components]

    @property
    def tensors(self) -> List[Dict[str, Any]]:
        """Every compared tensor pair as a flat row (see :meth:`to_pandas` for the columns)."""
        return self.rows()

    def rows(self) -> List[Dict[str, Any]]:
        """One flat row per compared tensor pair over every comparison: ``comparison``,
        ``tensor``, ``class``, ``layer``, ``shape``, the dtypes and original names, one
        column per metric, then the evidence: ``component``, ``role`` (and ``role_reason``),
        ``equal_fraction``, ``relative_l2``, ``null`` (and its mean and s.d.), ``z``, ``p``,
        ``p_adjusted``."""
        return _rows(self.comparisons)

    def to_pandas(self) -> "pandas.DataFrame":
        """The per-tensor rows (:meth:`rows`) as a pandas DataFrame (needs pandas)."""
        pd = _need("pandas", "pandas")
        rows = self.rows()
        columns = list(rows[0]) if rows else list(_ROW_COLUMNS)
        return pd.DataFrame(rows, columns=columns)

    def to_arrow(self) -> "pyarrow.Table":
        """The per-tensor rows (:meth:`rows`) as a pyarrow Table (needs pyarrow)."""
        pa = _need("pyarrow", "arrow")
        rows = self.rows()
        if not rows:
            return pa.table({c: pa.array([], pa.null()) for c in _ROW_COLUMNS})
        return pa.Table.from_pylist(rows)

    def __repr__(self) -> str:
        parts = ", ".join(f"{c.name!r}: {c.verdict.value}" for c in self.comparisons)
        return f"<weightkin.Report {self.name!r} {{{parts}}}>"


@dataclass(frozen=True)
class FileInfo:
    """One file of a model."""

    path: str
    """Its path."""
    bytes: int
    """Its size."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the file's header describes it."""

    name: str
    """Name (as presented: GGUF tensors under their Hugging Face names)."""
    shape: Tuple[int, ...]
    """Shape, row-major."""
    dtype: str
    """Element type (``F32``, ``BF16``, ``Q4_K``, …)."""
    numel: int
    """Number of elements."""
    byte_len: int
    """Bytes it occupies in its file."""
    file: int
    """Index into :attr:`ModelInfo.files` of the file holding it."""
    stored_name: Optional[str] = None
    """The name exactly as stored, when it is presented under another."""


@dataclass(frozen=True)
class ModelInfo:
    """What :func:`inspect` shows of a model (``weightkin inspect --json``)."""

    format: str
    """The format that opened it."""
    files: List[FileInfo]
    """Its files."""
    parameters: int
    """Total elements over all tensors."""
    metadata: Dict[str, str]
    """The format's metadata."""
    transforms: List[Dict[str, Any]]
    """What the format did to present the tensors (renaming, undone converter conventions)."""
    tensors: List[TensorInfo] = field(repr=False)
    """Every tensor."""
    _json: str = field(repr=False, compare=False)

    def to_json(self) -> str:
        """Exactly what ``weightkin inspect --json`` prints."""
        return self._json

    def to_dict(self) -> Dict[str, Any]:
        """The JSON as Python objects."""
        return cast(Dict[str, Any], json.loads(self._json))


def _strings(value: Union[str, Iterable[str], None], what: str) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    out = list(value)
    if not all(isinstance(v, str) for v in out):
        raise TypeError(f"{what} must be a string or an iterable of strings")
    return out


def _path(value: PathArg, what: str) -> str:
    try:
        return os.fspath(value)
    except TypeError:
        raise TypeError(f"{what} must be a str or os.PathLike, not {type(value).__name__}") from None


def compare(
    a: PathArg,
    b: PathArg,
    *,
    metrics: Union[str, Iterable[str], None] = None,
    include: Union[str, Iterable[str], None] = None,
    exclude: Union[str, Iterable[str], None] = None,
    threads: Optional[int] = None,
    align_units: bool = False,
    hash_cache: bool = True,
    offline: bool = False,
) -> Report:
    """Compares model ``b`` with model ``a``: ``weightkin compare A B``.

    ``a`` and ``b`` are a file, a directory of shards, or ``"hf://org/name[@rev]"``; relative
    paths are relative to the current directory and are recorded in the report as given.
    ``metrics`` (default: cosine and Pearson), ``include`` and ``exclude`` (tensor-name globs)
    are the CLI's ``--metric``, ``--include`` and ``--exclude``; each takes a string or a list.
    ``threads`` (default: one per core) changes speed only, never the report.
    ``align_units`` aligns B's MLP hidden units to A's first (``--align-units``);
    ``hash_cache=False`` hashes every file without the hash cache (``--no-hash-cache``);
    ``offline`` never uses the network for ``hf://`` models (``--offline``).

    Raises :class:`ModelFileError` (:class:`ModelNotFoundError` for a missing file) for a
    model that cannot be read, :class:`RecipeError` for an unknown metric or a bad glob, and
    :class:`KeyboardInterrupt` on Ctrl-C.
    """
    native = _weightkin.compare(
        _path(a, "a"),
        _path(b, "b"),
        _strings(metrics, "metrics"),
        _strings(include, "include"),
        _strings(exclude, "exclude"),
        align_units,
        threads,
        hash_cache,
        offline,
    )
    return Report(native)


def audit(
    recipe: PathArg,
    *,
    out: Optional[PathArg] = None,
    threads: Optional[int] = None,
    hash_cache: bool = True,
    offline: bool = False,
) -> Report:
    """Runs an audit recipe: ``weightkin audit RECIPE [--out DIR]``.

    ``recipe`` is the recipe file (a ``pathlib.Path``, or a ``str`` without a newline), or the
    recipe's TOML text (a ``str`` with a newline; its relative model paths are relative to the
    current directory, and errors name it ``<string>``). With ``out``, the report files the
    recipe asks for are written there, as the CLI writes them. ``threads``, ``hash_cache`` and
    ``offline`` are as for :func:`compare`.

    Raises :class:`RecipeError` (with :attr:`RecipeError.line` and ``column``) for a recipe
    that cannot be read or is invalid, :class:`ModelFileError` for a model that cannot be
    read, and :class:`KeyboardInterrupt` on Ctrl-C (no report is written then).
    """
    out_dir = None if out is None else _path(out, "out")
    if isinstance(recipe, str) and "\n" in recipe:
        native = _weightkin.audit_text(recipe, out_dir, threads, hash_cache, offline)
    else:
        native = _weightkin.audit_file(_path(recipe, "recipe"), out_dir, threads, hash_cache, offline)
    return Report(native)


def inspect(path: PathArg, *, format: Optional[str] = None, offline: bool = False) -> ModelInfo:
    """Describes a model from its headers alone: ``weightkin inspect --json MODEL``.

    ``path`` is a file, a directory or ``"hf://org/name[@rev]"`` (only headers are fetched);
    ``format`` names the format instead of detecting it from the file's first bytes (the
    CLI's ``--as``). Raises :class:`ModelFileError` for a file that cannot be read.
    """
    text = _weightkin.inspect(_path(path, "path"), format, offline)
    d = json.loads(text)
    return ModelInfo(
        format=d["format"],
        files=[FileInfo(path=f["path"], bytes=f["bytes"]) for f in d["files"]],
        parameters=d["parameters"],
        metadata=d["metadata"],
        transforms=d["transforms"],
        tensors=[
            TensorInfo(
                name=t["name"],
                shape=tuple(t["shape"]),
                dtype=t["dtype"],
                numel=t["numel"],
                byte_len=t["byte_len"],
                file=t["file"],
                stored_name=t.get("stored_name"),
            )
            for t in d["tensors"]
        ],
        _json=text,
    )


def demo_models(dir: PathArg) -> Path:
    """Writes the demo's model family (six small synthetic models: a base, a fine-tuned copy,
    an independent model, a layer subset, a vision encoder and a VLM reusing it) and its
    recipe into ``dir``, as ``weightkin demo --keep DIR`` does; returns the recipe's path.
    ``weightkin.audit(weightkin.demo_models(dir))`` is the demo's audit."""
    return Path(_weightkin.demo(_path(dir, "dir")))
