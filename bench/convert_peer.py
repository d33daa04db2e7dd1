#!/usr/bin/env python3
"""The peer of `destiny convert` in bench/e2e.py: the same work in pandas and pyarrow.

Reads the interactions (user, item, rating) from Parquet, numbers users and items by first
appearance, merges a user's repeated items into one (the highest rating), and writes the
users' rows as an Arrow IPC file (`sample`, `indices` as large_list<uint32>) with the two
index files, as `destiny convert -i INPUT --out-dir FOLDER` does.

    python3 bench/convert_peer.py ratings.parquet folder
"""

import os
import sys

import numpy as np
import pandas as pd
import pyarrow as pa


def write_index(path, ids):
    """DSSTNE's index text: `id<TAB>position` per line."""
    with open(path, "w") as out:
        out.writelines(f"{id}\t{n}\n" for n, id in enumerate(ids))


def main(source, folder):
    os.makedirs(folder, exist_ok=True)
    frame = pd.read_parquet(source, columns=["user", "item", "rating"])
    users, user_ids = pd.factorize(frame["user"], sort=False)
    items, item_ids = pd.factorize(frame["item"], sort=False)
    numbered = pd.DataFrame({"user": users, "item": items, "rating": frame["rating"].to_numpy()})
    # One entry per (user, item), sorted by user and then item: the rows' order.
    merged = numbered.groupby(["user", "item"], sort=True)["rating"].max().reset_index()
    offsets = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(merged["user"], minlength=len(user_ids)), out=offsets[1:])
    indices = pa.array(merged["item"].to_numpy(dtype=np.uint32))
    rows = pa.LargeListArray.from_arrays(pa.array(offsets), indices)
    samples = [str(u) for u in user_ids]
    table = pa.table({"sample": pa.array(samples), "indices": rows})
    with pa.OSFile(os.path.join(folder, "data.arrow"), "wb") as out:
        with pa.ipc.new_file(out, table.schema) as writer:
            writer.write_table(table)
    write_index(os.path.join(folder, "features.idx"), [str(i) for i in item_ids])
    write_index(os.path.join(folder, "data.samples.idx"), samples)


if __name__ == "__main__":
    main(*sys.argv[1:3])
