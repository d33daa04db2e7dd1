"""Shared fixtures: the destiny command built by cargo, a small ratings file, one Spark,
one S3-compatible server."""

import json
import os
import random
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "examples" / "movielens" / "config.json"
BUCKET = "destiny"


def _destiny_binary() -> Path:
    candidates = [os.environ.get("DESTINY_BIN")]
    target = os.environ.get("CARGO_TARGET_DIR")
    candidates += [str(Path(target) / "release" / "destiny")] if target else []
    candidates += [str(REPO / "target" / "release" / "destiny"), shutil.which("destiny")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise RuntimeError("no destiny binary: run `cargo build --release` or set DESTINY_BIN")


@pytest.fixture(scope="session")
def cli():
    """Runs the destiny command; returns (exit code, stdout, stderr)."""
    binary = _destiny_binary()

    def run(*args):
        done = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True)
        return done.returncode, done.stdout, done.stderr

    return run


@pytest.fixture(scope="session")
def cli_job():
    """Runs the destiny command as `ranks` processes of one job, with the variables torchrun
    and Spark's barrier tasks set; returns each rank's (exit code, stdout, stderr)."""
    binary = _destiny_binary()

    def run(ranks, *args):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        processes = [
            subprocess.Popen(
                [str(binary), *map(str, args)],
                env=dict(os.environ, RANK=str(rank), WORLD_SIZE=str(ranks), MASTER_ADDR="127.0.0.1",
                         MASTER_PORT=str(port), DESTINY_COLLECTIVE_TIMEOUT="120"),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for rank in range(ranks)
        ]
        outputs = [p.communicate() for p in processes]
        return [(p.returncode, out, err) for p, (out, err) in zip(processes, outputs)]

    return run


@pytest.fixture(scope="session")
def ratings(tmp_path_factory) -> Path:
    """A small CSV of ratings with timestamps, repeats and low ratings, in a fixed order."""
    rng = random.Random(7)
    lines = ["user,item,rating,timestamp"]
    for n in range(1500):
        user = f"u{rng.randrange(60)}"
        item = f"i{min(int(rng.expovariate(1 / 12)), 79)}"
        lines.append(f"{user},{item},{rng.randint(1, 5)},{1_000_000 + n * 7 + rng.randrange(5)}")
    path = tmp_path_factory.mktemp("ratings") / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def model_contents(path: Path):
    """A model file's metadata (parsed) and tensors (bytes): its content, whatever the
    order of the metadata keys."""
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])
    metadata = {k: json.loads(v) if v[:1] in "{[" else v for k, v in header.pop("__metadata__").items()}
    return metadata, header, data[8 + size :]


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on the loopback address with one bucket, for the whole session (a
    boto3 client of it), or None where moto is not installed. The AWS variables point the
    command, the package, Spark's workers (started after it) and boto3 at it."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        if os.environ.get("DESTINY_REQUIRE_S3"):
            raise
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    settings = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    client = boto3.client("s3", endpoint_url=settings["AWS_ENDPOINT_URL"])
    client.create_bucket(Bucket=BUCKET)
    yield client
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    server.stop()


@pytest.fixture
def s3(s3_server):
    """The S3 server's client; the test is skipped without one."""
    if s3_server is None:
        pytest.skip("moto[server] and boto3 are not installed")
    return s3_server


def objects(s3, prefix):
    """The objects under `prefix/` in the test bucket, by name relative to it, with their
    bytes."""
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("Contents", [])
    return {
        o["Key"][len(prefix) + 1 :]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
        for o in listed
    }


def local_files(folder):
    """The files of `folder` by name, with their bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="session")
def spark(s3_server):
    """One local Spark for the whole test session (started once the S3 server's variables
    are set, so that its Python workers see them)."""
    pyspark = pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("destiny-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
