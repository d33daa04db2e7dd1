"""Destiny: a deep-learning engine for sparse data, built for recommendations.

The same work as the ``destiny`` command, from Python, with the same options and defaults:

- :func:`convert` turns raw interactions into datasets (``destiny convert``);
- :func:`train` trains a network defined in DSSTNE's JSON language (``destiny train``);
- :meth:`Model.load` and :meth:`Model.predict` give the top-K items of users passed as
  Arrow data (``destiny predict``);
- :func:`evaluate` scores recommendations against held-out items (``destiny evaluate``).

Failures raise :class:`DestinyError` with the message the command prints.
:mod:`destiny.spark` runs the same steps as Spark jobs.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence, Union

from ._destiny import DestinyError, Model, __version__, convert
from ._destiny import evaluate as _evaluate

__all__ = ["DestinyError", "Model", "convert", "evaluate", "train", "__version__"]

PathLike = Union[str, "os.PathLike[str]"]


def _long_form(recs: Any) -> Any:
    """Arrow recommendations with string ``user`` and ``item`` columns (ids may be numbers)."""
    import pyarrow as pa

    table = recs if isinstance(recs, pa.Table) else pa.table(recs)
    for name in ("user", "item"):
        if name in table.column_names and not pa.types.is_string(table.schema.field(name).type):
            table = table.set_column(
                table.schema.get_field_index(name), name, table.column(name).cast(pa.string())
            )
    return table


def evaluate(
    truth: PathLike,
    recs: Union[PathLike, Any, Sequence[Union[PathLike, Any]]],
    *,
    labels: Sequence[str] | None = None,
    features: PathLike | None = None,
    k: Sequence[int] = (10, 20, 50, 100),
    plot: PathLike | None = None,
) -> List[Dict[str, Any]]:
    """Scores recommendations against held-out interactions, as ``destiny evaluate``.

    ``truth`` is a dataset file (with ``features.idx`` beside it, or ``features``) or DSSTNE
    text. ``recs`` is one system or a list of them: recommendation files in DSSTNE's recs
    format, or Arrow tables in long form (``user``, ``item`` and ``rank`` or ``score``, as
    :meth:`Model.predict` and :func:`destiny.spark.predict` return them). Returns one dict per
    system and K: ``system``, ``k``, ``precision``, ``recall``, ``ndcg``, ``map``, ``users``;
    ``plot`` names a PNG to draw the metrics against K into.
    """
    systems = list(recs) if isinstance(recs, (list, tuple)) else [recs]
    systems = [s if isinstance(s, (str, os.PathLike)) else _long_form(s) for s in systems]
    return _evaluate(
        truth,
        systems,
        labels=list(labels) if labels is not None else None,
        features=features,
        k=list(k),
        plot=plot,
    )
