"""Type stubs of the native module (``destiny._destiny``); the public API is ``destiny``."""

import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt
import pyarrow as pa

# A local path, or an object in S3-compatible storage as a string "s3://bucket/key" (every path
# argument takes both; credentials from the AWS variables and shared files).
_Path = Union[str, os.PathLike[str]]
_Arrow = Any  # anything exporting Arrow data: pyarrow.Table, RecordBatch, RecordBatchReader, ...

__version__: str

class DestinyError(Exception):
    """A failure inside Destiny, with the message the ``destiny`` command prints."""

class Model:
    """A trained model, loaded once, predicting the top-K items of users given as Arrow rows."""

    @staticmethod
    def load(
        path: _Path,
        *,
        features: Optional[_Path] = None,
        device: str = "auto",
        precision: str = "fp32",
    ) -> "Model":
        """Loads a model file onto ``device`` (auto, cpu, cuda or cuda:N). ``features`` is the
        output feature index (default: ``features.idx`` beside the model, when there is one)."""
    def predict(
        self,
        batch: _Arrow,
        k: int = 10,
        exclude_seen: bool = True,
        *,
        batch_size: int = 1024,
        output: str = "arrow",
    ) -> Union[pa.RecordBatch, Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
        """The ``k`` best items for every row of ``batch`` (columns ``indices``, optional
        ``values``, ``user`` or ``sample``). ``output="arrow"``: a RecordBatch ``user``,
        ``item``, ``score``, ``rank``; ``output="numpy"``: ``(items, scores)`` of shape
        ``(rows, k)``, ``-1`` and ``-inf`` where a row has fewer candidates."""
    @property
    def path(self) -> _Path:
        """The model file: a ``pathlib.Path``, or an ``s3://`` URL as a string."""
    @property
    def input_width(self) -> int: ...
    @property
    def output_width(self) -> int: ...
    @property
    def features(self) -> Optional[List[str]]: ...
    @property
    def device(self) -> str: ...

def convert(
    input: _Path,
    out_dir: _Path,
    *,
    format: str = "auto",
    delimiter: Optional[str] = None,
    header: Optional[bool] = None,
    user_column: Optional[str] = None,
    item_column: Optional[str] = None,
    rating_column: Optional[str] = None,
    timestamp_column: Optional[str] = None,
    dsstne_values: bool = False,
    min_rating: Optional[float] = None,
    min_user_interactions: int = 1,
    min_item_interactions: int = 1,
    keep_ratings: bool = False,
    split: str = "none",
    test_users: int = 0,
    validation_users: int = 0,
    holdout_fraction: float = 0.2,
    seed: int = 1,
) -> List[Dict[str, Any]]:
    """Raw interactions (DSSTNE text, CSV/TSV, Parquet) to datasets and indices in
    ``out_dir``, as ``destiny convert --out-dir``. ``format``: auto, dsstne, csv, tsv or
    parquet; ``split``: none, heldout-users, random or time. Returns a dict per dataset
    written: ``file``, ``samples``, ``features``, ``interactions``."""

def evaluate(
    truth: _Path,
    recs: Sequence[Union[_Path, _Arrow]],
    *,
    labels: Optional[Sequence[str]] = None,
    features: Optional[_Path] = None,
    k: Sequence[int] = (10, 20, 50, 100),
    plot: Optional[_Path] = None,
) -> List[Dict[str, Any]]: ...
def train(
    config: _Path,
    data: Optional[_Path] = None,
    *,
    model: _Path,
    output: Optional[_Path] = None,
    datasets: Optional[Sequence[Tuple[str, _Path]]] = None,
    batch_size: int = 256,
    epochs: int = 60,
    optimizer: str = "adam",
    learning_rate: float = 0.01,
    momentum: float = 0.9,
    l2: float = 0.0,
    l1: float = 0.0,
    seed: int = 1,
    shuffle: Optional[bool] = None,
    denoising: Optional[float] = None,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int = 1,
    validation: Optional[_Path] = None,
    patience: Optional[int] = None,
    device: str = "auto",
    parallel: str = "auto",
    precision: str = "fp32",
    progress: Optional[Callable[[Dict[str, Any]], Any]] = None,
) -> Dict[str, Any]: ...

# Used by destiny.spark.prepare.
def _held_out(
    users: int, test_users: int, validation_users: int, seed: int
) -> Tuple[List[int], List[int]]: ...
def _check_split(fraction: float, by_time: bool, timestamps_complete: bool) -> None: ...
def _fold(batch: _Arrow, fraction: float, seed: int, by_time: bool) -> pa.RecordBatch: ...
def _write_sets(
    out_dir: _Path, features: List[str], sets: List[Tuple[str, _Arrow]]
) -> List[Dict[str, Any]]: ...
