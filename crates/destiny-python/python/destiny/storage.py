"""Object storage for destiny.spark: datasets, definitions and models at ``s3://`` (or any
URI that ``pyarrow.fs`` opens: ``gs://``, ``hdfs://``, ``file://``) as well as local paths.

Destiny itself reads and writes local files (memory-mapped models and datasets); these
helpers stage what a job needs from object storage into a local cache and publish what it
writes back. They go through Arrow's file systems, so credentials and endpoints are
configured as for pyarrow: the usual AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``) or options in the
URI's query (``s3://bucket/data?endpoint_override=host:9000&scheme=http``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from typing import Tuple

import pyarrow.fs as pafs

__all__ = ["is_remote", "join", "localize", "publish"]


def is_remote(location: str) -> bool:
    """Whether ``location`` is a URI of an object store rather than a local path."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def join(location: str, name: str) -> str:
    """``name`` inside the folder ``location``, keeping a URI's query after the path."""
    text = str(location)
    if not is_remote(text):
        return os.path.join(text, name)
    base, question, query = text.partition("?")
    return f"{base.rstrip('/')}/{name}{question}{query}"


def _open(uri: str) -> Tuple[pafs.FileSystem, str]:
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError...
        raise OSError(f"{uri}: cannot open this location: {error}") from error


def _cache_root() -> str:
    return os.environ.get("DESTINY_CACHE") or os.path.join(tempfile.gettempdir(), "destiny-cache")


def localize(location: str, *, beside: Tuple[str, ...] = ()) -> str:
    """A local path holding the file at ``location``: the path itself when it is local, else
    a copy in the cache (``DESTINY_CACHE``, or a folder in the temporary directory), fetched
    once for each version of the object (its size and modification time). Files named in
    ``beside`` that sit next to it (a model's ``features.idx``) come into the same folder
    when they exist. A missing object is an error that names it."""
    if not is_remote(location):
        return str(location)
    filesystem, path = _open(location)
    info = filesystem.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"{location}: no such object")
    version = f"{location}\0{info.size}\0{info.mtime_ns}".encode()
    folder = os.path.join(_cache_root(), hashlib.sha256(version).hexdigest()[:32])
    name = os.path.basename(path)
    local = os.path.join(folder, name)
    if not os.path.exists(local):
        os.makedirs(folder, exist_ok=True)
        wanted = [(path, name)] + [(path.rsplit("/", 1)[0] + "/" + extra, extra) for extra in beside]
        for remote, file_name in wanted:
            if remote != path and filesystem.get_file_info(remote).type != pafs.FileType.File:
                continue
            # Into a temporary name first, so that a task killed midway leaves no partial copy.
            partial = tempfile.NamedTemporaryFile(dir=folder, prefix=f".{file_name}.", delete=False)
            with partial, filesystem.open_input_stream(remote) as source:
                shutil.copyfileobj(source, partial, 1 << 22)
            os.replace(partial.name, os.path.join(folder, file_name))
    return local


def publish(local: str, location: str) -> None:
    """Copies the local file or folder ``local`` to ``location`` (a folder's files go under
    it, each written whole: an object store never shows a partial object). Nothing is done when ``location`` is the local path itself."""
    if not is_remote(location):
        if os.path.abspath(local) != os.path.abspath(location):
            raise ValueError(f"publish: {location} is local; write there directly")
        return
    filesystem, path = _open(location)
    if os.path.isdir(local):
        names = sorted(n for n in os.listdir(local) if os.path.isfile(os.path.join(local, n)))
        sources = [(os.path.join(local, n), f"{path.rstrip('/')}/{n}") for n in names]
    else:
        sources = [(local, path)]
    for source, target in sources:
        with open(source, "rb") as data, filesystem.open_output_stream(target) as sink:
            shutil.copyfileobj(data, sink, 1 << 22)
