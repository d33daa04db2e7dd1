#!/usr/bin/env python3
"""Writes the NetCDF fixtures of destiny-data's tests (`tests/netcdf.rs`) with the netCDF4
package, in the layout DSSTNE's NNDataSet reads: the global attribute `datasets`; for
dataset n the attributes nameN, attributesN (sparse 1, boolean 2, indexed 64, weighted
128), kindN, datatypeN, dimensionsN and widthN, the dimensions uniqueExamplesDimN,
examplesDimN and sparseDataDimN or dataDimN, and the variables sparseStartN, sparseEndN,
sparseIndexN, sparseDataN, dataN and indexN.

    python3 make_fixtures.py FOLDER
"""

import os
import sys

import netCDF4
import numpy as np

SPARSE, BOOLEAN, INDEXED, WEIGHTED = 1, 2, 64, 128
UINT, FLOAT = 0, 4


def header(nc, n, name, attributes, datatype, width, unique, examples, shape=()):
    """shape: the height, or height and length, of a 2D or 3D dataset (images)."""
    nc.setncattr(f"name{n}", name)
    for key, value in [("attributes", attributes), ("kind", 0), ("datatype", datatype),
                       ("dimensions", 1 + len(shape)), ("width", width)]:
        nc.setncattr(f"{key}{n}", np.uint32(value))
    for key, value in zip(["height", "length"], shape):
        nc.setncattr(f"{key}{n}", np.uint32(value))
    nc.createDimension(f"uniqueExamplesDim{n}", unique)
    nc.createDimension(f"examplesDim{n}", examples)


def sparse(nc, n, rows, values=None):
    """rows: the columns of each unique example; values: theirs, or None (boolean)."""
    entries = [c for row in rows for c in row]
    nc.createDimension(f"sparseDataDim{n}", len(entries))
    starts = np.cumsum([0] + [len(r) for r in rows])
    for key, data in [("sparseStart", starts[:-1]), ("sparseEnd", starts[1:])]:
        nc.createVariable(f"{key}{n}", "u4", (f"uniqueExamplesDim{n}",))[:] = data
    nc.createVariable(f"sparseIndex{n}", "u8", (f"sparseDataDim{n}",))[:] = entries
    if values is not None:
        flat = [v for row in values for v in row]
        nc.createVariable(f"sparseData{n}", "f4", (f"sparseDataDim{n}",))[:] = flat


def main(folder):
    os.makedirs(folder, exist_ok=True)
    with netCDF4.Dataset(os.path.join(folder, "dsstne.nc"), "w", format="NETCDF4") as nc:
        nc.setncattr("datasets", np.uint32(3))
        # Boolean and sparse, as generateNetCDF writes MovieLens: 3 users of 5 items.
        header(nc, 0, "gl_input", SPARSE | BOOLEAN, UINT, 5, 3, 3)
        sparse(nc, 0, [[0, 3], [1], [2, 3, 4]])
        # Sparse with values, indexed: 4 examples drawn from 2 unique ones.
        header(nc, 1, "ratings", SPARSE | INDEXED, FLOAT, 4, 2, 4)
        sparse(nc, 1, [[1, 2], [0]], [[4.0, 2.5], [5.0]])
        nc.createVariable("index1", "u4", ("examplesDim1",))[:] = [1, 0, 0, 1]
        # Dense values: 2 examples of 3.
        header(nc, 2, "dense", 0, FLOAT, 3, 2, 2)
        nc.createDimension("dataDim2", 6)
        nc.createVariable("data2", "f4", ("dataDim2",))[:] = [0.5, 0.0, 1.5, 2.0, 1.0, 0.0]
    with netCDF4.Dataset(os.path.join(folder, "images.nc"), "w", format="NETCDF4") as nc:
        # Images as DSSTNE's image samples write them: 6 dense examples of width 5, height 4
        # and 2 channels (x fastest), and a class of 3 for each, sparse and boolean.
        nc.setncattr("datasets", np.uint32(2))
        header(nc, 0, "input", 0, FLOAT, 5, 6, 6, shape=(4, 2))
        nc.createDimension("dataDim0", 6 * 40)
        pixels = np.random.default_rng(7).random(6 * 40, dtype=np.float32)
        nc.createVariable("data0", "f4", ("dataDim0",))[:] = pixels
        header(nc, 1, "output", SPARSE | BOOLEAN, UINT, 3, 6, 6)
        sparse(nc, 1, [[0], [2], [1], [1], [0], [2]])
    with netCDF4.Dataset(os.path.join(folder, "weighted.nc"), "w", format="NETCDF4") as nc:
        nc.setncattr("datasets", np.uint32(1))
        header(nc, 0, "weighted", SPARSE | BOOLEAN | WEIGHTED, UINT, 3, 1, 1)
        sparse(nc, 0, [[2]])
        nc.createVariable("dataWeight0", "f4", ("uniqueExamplesDim0",))[:] = [2.0]


if __name__ == "__main__":
    main(sys.argv[1])
