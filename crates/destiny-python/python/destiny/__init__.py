"""Destiny: a deep-learning engine for sparse data, built for recommendations.

The same work as the ``destiny`` command, from Python, with the same options and defaults:

- :func:`convert` turns raw interactions into datasets (``destiny convert``);
- :func:`train` trains a network defined in DSSTNE's JSON language (``destiny train``);
- :meth:`Model.load` and :meth:`Model.predict` give the top-K items of users passed as
  Arrow data (``destiny predict``);
- :func:`evaluate` scores recommendations against held-out items (``destiny evaluate``).

Every path may also be an object in S3-compatible storage, ``"s3://bucket/key"`` (a string),
as in the command. Failures raise :class:`DestinyError` with the message the command prints.
:mod:`destiny.spark` runs the same steps as Spark jobs.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Dict, List, Mapping, Sequence, Union

from ._destiny import DestinyError, Model, __version__, convert
from ._destiny import evaluate as _evaluate
from ._destiny import train as _train

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


def _print_epochs(event: Dict[str, Any]) -> None:
    """The default progress: a line per epoch on stderr, as the command prints."""
    if event["event"] == "start" and event.get("resumed_after") is not None:
        print(f"destiny: resuming after epoch {int(event['resumed_after'])}", file=sys.stderr)
    elif event["event"] == "epoch":
        validation = event.get("validation_loss")
        extra = f"  validation loss {validation:.4f}" if validation is not None else ""
        if event.get("ndcg_at_100") is not None:
            best = " (best)" if event.get("best") else ""
            extra += f"  NDCG@100 {event['ndcg_at_100']:.4f}  Recall@20 {event['recall_at_20']:.4f}{best}"
        if event.get("skipped_batches"):
            extra += f"  ({int(event['skipped_batches'])} batches skipped: loss not finite)"
        print(
            f"epoch {int(event['epoch']) + 1}: loss {event['loss']:.4f}{extra}"
            f"  {event['seconds']:.1f} s  {event['samples'] / event['seconds']:.0f} samples/s"
            f"  ({event['device']})",
            file=sys.stderr,
        )


def train(
    config: PathLike,
    data: PathLike | None = None,
    *,
    model: PathLike,
    output: PathLike | None = None,
    datasets: Mapping[str, PathLike] | None = None,
    batch_size: int = 256,
    epochs: int = 60,
    optimizer: str = "adam",
    learning_rate: float = 0.01,
    momentum: float = 0.9,
    l2: float = 0.0,
    l1: float = 0.0,
    seed: int = 1,
    shuffle: bool | None = None,
    denoising: float | None = None,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int | str = 1,
    validation: PathLike | None = None,
    patience: int | None = None,
    on_nonfinite: str = "stop",
    device: str = "auto",
    parallel: str = "auto",
    precision: str = "fp32",
    progress: Callable[[Dict[str, Any]], Any] | bool | None = None,
) -> Dict[str, Any]:
    """Trains the network ``config`` defines (DSSTNE's JSON language), as ``destiny train``.

    ``data`` is the input layer's dataset (and the output layer's too unless ``output`` names
    one: an autoencoder); ``datasets`` binds datasets by the names the layers' ``DataSet``
    keys use, for networks with several. The model is written to ``model`` every
    ``checkpoint_every`` epochs (or, given as "10m", at the first epoch's end ten minutes
    after the last checkpoint) and after the last, in the background while training goes
    on; ``resume`` continues a killed run from it (the file must exist), and an existing
    model file is replaced only with ``overwrite``. ``shuffle`` and ``denoising`` default
    to the definition's ShuffleIndices and Denoising. ``device`` is auto, cpu, cuda, cuda:N,
    several GPUs (cuda:0,1) or cuda:all, and ``parallel`` how several ranks share the network
    (model, data or auto), as in the command. In a process that a launcher started
    (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, as :func:`destiny.spark.train`
    sets them) this trains that process's rank of the job, on its GPU or on the CPU; rank 0
    writes the model.
    ``validation`` is a folder from ``convert(..., validation_users=N)`` (each epoch is
    judged by NDCG@100 and Recall@20 on those users, the model file keeps the best, and
    ``patience`` epochs without a better one stop the run) or a dataset to report the loss
    on. ``on_nonfinite`` is what a batch whose loss is NaN or infinite does: "stop" the run
    (the model file keeps the last good checkpoint) or "skip-batch" (the weights stay as
    before it; ``skipped_batches`` of the epoch counts them).

    ``progress`` is called with a dict per event: ``event`` "start", "progress" (within an
    epoch: ``samples_done``, ``samples``, ``loss``, ``samples_per_second``) or "epoch"
    (``epoch``, ``loss``, ``validation_loss``, ``ndcg_at_100``, ``recall_at_20``, ``best``,
    ``samples``, ``skipped_batches``, ``seconds``); returning False
    for an "epoch" event stops the run there. By default a line per epoch is printed on
    stderr; ``progress=False`` prints nothing. Returns the run's summary: ``model``,
    ``device``, ``first_epoch``, ``epochs_done``, ``stopped_early``, ``best`` (the epoch kept,
    with validation users) and ``epochs`` (a dict per epoch trained).
    """
    if progress is None or progress is True:
        callback: Callable[[Dict[str, Any]], Any] | None = _print_epochs
    elif progress is False:
        callback = None
    else:
        callback = progress
    return _train(
        config,
        data,
        model=model,
        output=output,
        datasets=list(datasets.items()) if datasets else None,
        batch_size=batch_size,
        epochs=epochs,
        optimizer=optimizer,
        learning_rate=learning_rate,
        momentum=momentum,
        l2=l2,
        l1=l1,
        seed=seed,
        shuffle=shuffle,
        denoising=denoising,
        resume=resume,
        overwrite=overwrite,
        checkpoint_every=str(checkpoint_every),
        validation=validation,
        patience=patience,
        on_nonfinite=on_nonfinite,
        device=device,
        parallel=parallel,
        precision=precision,
        progress=callback,
    )
