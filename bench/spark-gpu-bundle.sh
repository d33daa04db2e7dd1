#!/usr/bin/env bash
# Packs what bench/spark_gpu.py needs on a GPU machine that has no Java, no Spark and no
# network, in pieces that each fit the device tool's 64 MiB carry: a Java 17 runtime cut
# to the modules Spark uses (jlink), pyspark with its jars less those a local cluster never
# loads (Hive, Kubernetes, YARN, MLlib, Spark Connect, RocksDB...; the Spark tests pass on
# what is left), py4j, the destiny wheel, the zstandard wheel to unpack them, a font for the
# plot, MovieLens-100K and the destiny command.
#
#   bench/spark-gpu-bundle.sh        # writes .stage1 ... .stageN (git-ignored)
#
# Then, through the device tool, one call per piece, the machine kept warm between them:
#   carry [".stageI"]:  mkdir -p /tmp/stage && cp .stageI/part* /tmp/stage/    (I < N)
#   carry [".stageN"]:  ./.stageN/go.sh                                        (the run)
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.stage\*/' .git/info/exclude || echo '/.stage*/' >> .git/info/exclude
python3 -c "import zstandard, maturin" 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check zstandard maturin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

jlink --add-modules java.base,java.compiler,java.desktop,java.instrument,java.logging,java.management,java.naming,java.net.http,java.prefs,java.rmi,java.scripting,java.security.jgss,java.security.sasl,java.sql,java.sql.rowset,java.transaction.xa,java.xml,jdk.attach,jdk.charsets,jdk.crypto.cryptoki,jdk.crypto.ec,jdk.httpserver,jdk.incubator.vector,jdk.jdi,jdk.jdwp.agent,jdk.jfr,jdk.localedata,jdk.management,jdk.management.agent,jdk.naming.dns,jdk.net,jdk.sctp,jdk.security.auth,jdk.unsupported,jdk.xml.dom,jdk.zipfs \
    --strip-debug --no-header-files --no-man-pages --compress=2 --output "$work/minjre"

site=$(python3 -c "import os, pyspark; print(os.path.dirname(os.path.dirname(pyspark.__file__)))")
mkdir -p "$work/sparkmin"
tar cf - -C "$site" --exclude=pyspark/jars --exclude=pyspark/examples --exclude=pyspark/pandas \
    --exclude=pyspark/ml --exclude=pyspark/mllib --exclude='pyspark/*/tests' --exclude=pyspark/tests \
    pyspark py4j | tar xf - -C "$work/sparkmin"
mkdir "$work/sparkmin/pyspark/jars"
for jar in "$site"/pyspark/jars/*.jar; do
    case $(basename "$jar") in
        rocksdbjni* | spark-connect* | breeze* | spire* | cats-kernel* | algebra* | spark-mllib* | \
        spark-graphx* | hive-* | datanucleus* | derby* | kubernetes-* | spark-kubernetes* | \
        spark-yarn* | spark-hive* | lapack* | blas* | arpack* | jpmml* | pmml* | zookeeper* | \
        curator* | spark-repl* | scala-compiler* | spark-mesos* | jdo-api* | libthrift* | \
        libfb303* | spark-streaming* | antlr-runtime* | stringtemplate* | javolution* | bonecp* | \
        HikariCP* | transaction-api* | jta* | super-csv* | velocity* | spark-pipelines* | \
        spark-declarative* | grpc-* | protobuf-java-util* | *-osx-* | *-windows-* | *aarch_64*) ;;
        *) cp "$jar" "$work/sparkmin/pyspark/jars/" ;;
    esac
done
tar cf - -C "$work" minjre sparkmin | python3 -c "
import sys, zstandard
zstandard.ZstdCompressor(level=3).copy_stream(sys.stdin.buffer, sys.stdout.buffer)" > "$work/bundle.tar.zst"
(cd "$work" && split -b 58M -d bundle.tar.zst part)

rm -rf .stage[0-9]*
pieces=("$work"/part*)
for i in "${!pieces[@]}"; do
    mkdir -p ".stage$((i + 1))" && mv "${pieces[$i]}" ".stage$((i + 1))/"
done
last=".stage${#pieces[@]}"
(cd crates/destiny-python && maturin build --release --quiet -o "$work/wheel")
cp "$work"/wheel/*.whl "$last/"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 -d "$last" zstandard
cargo build --release --quiet -p destiny-cli
cp target/release/destiny "$(scripts/fetch-movielens.sh)" /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf "$last/"
cat > "$last/go.sh" <<GO
#!/usr/bin/env bash
# On the GPU machine: unpacks the pieces carried before, then runs bench/spark_gpu.py.
set -uo pipefail
mkdir -p /tmp/stage && cp $last/part* /tmp/stage/
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $last/*.whl || exit 1
export PYTHONPATH=/tmp/site
[ -d /tmp/minjre ] || python3 - <<'PY' || exit 1
import glob, tarfile, zstandard
class Joined:
    def __init__(self, names): self.files = [open(n, "rb") for n in names]
    def read(self, n=-1):
        while self.files:
            data = self.files[0].read(n)
            if data: return data
            self.files.pop(0)
        return b""
reader = zstandard.ZstdDecompressor().stream_reader(Joined(sorted(glob.glob("/tmp/stage/part*"))))
tarfile.open(fileobj=reader, mode="r|").extractall("/tmp", filter="tar")
PY
export PYTHONPATH=/tmp/site:/tmp/sparkmin JAVA_HOME=/tmp/minjre PATH=/tmp/minjre/bin:\$PATH SPARK_HOME=/tmp/sparkmin/pyspark
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1 DESTINY_FONT=\$PWD/$last/DejaVuSans.ttf
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/spark_gpu.py --destiny $last/destiny --workdir /tmp/spark-gpu --movielens $last/ml-100k.inter 2>&1 |
    grep -v WARN | tee "\$OUT/spark-gpu.log" | grep -v '^\s*at ' | tail -45
cp /tmp/spark-gpu/movielens/metrics.png "\$OUT/" 2>/dev/null; true
GO
chmod +x "$last/go.sh"
du -sh .stage[0-9]*
