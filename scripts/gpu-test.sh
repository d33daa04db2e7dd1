#!/usr/bin/env bash
# Builds, on this machine, what the GPU machine runs (it has no Rust toolchain): the CUDA
# backend's test binaries and the benchmark, copied into .device-bin/ (git-ignored), with
# the command to run there through the device tool, carrying .device-bin:
#
#   cd .device-bin && ./run.sh
#
# which runs the GPU tests against the CPU backend and NCCL's collectives against the
# in-process thread group (SKIP_BENCH=1 stops there), then the benchmark beside PyTorch
# (`./cli.sh` there runs the destiny command end to end on the GPU and the CPU,
# `./cifar.sh` times DSSTNE's CIFAR-10 network beside PyTorch, `./wide.sh` a 1M-item
# catalog beside PyTorch, and `./profile.sh` profiles the main kernels with Nsight Compute).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .device-bin && mkdir -p .device-bin
tests=$(cargo test --release -p destiny-cuda --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])')
while read -r name path; do cp "$path" ".device-bin/$name"; done <<< "$tests"
cargo build --release --quiet -p destiny-bench -p destiny-cli
cp target/release/destiny-bench target/release/destiny .device-bin/
cp bench/pytorch_autoencoder.py bench/pytorch_cifar.py bench/table.py examples/movielens/config.json .device-bin/
cat > .device-bin/run.sh <<'RUN'
#!/usr/bin/env bash
# On the GPU machine: tests, then the benchmark of the MovieLens-20M shape beside PyTorch,
# in fp32 and then in the faster precisions (PRECISION=fp32 for fp32 only).
set -uo pipefail
out=${OUT:-.}
precision=${PRECISION:-fp32,tf32,bf16}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
./kernels_compile 2>&1 | tail -n 2
./gpu --ignored --test-threads=1 2>&1 | tee "$out/gpu-tests.log" | grep -E "^test |test result|panicked|error"
# cudarc opens libnccl.so; where only the runtime's libnccl.so.2 is installed, link it.
if ! ldconfig -p | grep -q 'libnccl\.so '; then
    nccl=$(ldconfig -p | awk '/libnccl\.so\.2 /{print $NF; exit}')
    if [ -n "$nccl" ]; then
        mkdir -p /tmp/nccl-lib && ln -sf "$nccl" /tmp/nccl-lib/libnccl.so
        export LD_LIBRARY_PATH="/tmp/nccl-lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
fi
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
./nccl --ignored --test-threads=1 --nocapture 2>&1 | tee "$out/nccl-tests.log" | grep -E "^test |test result|panicked|error|rank"
[ "${SKIP_BENCH:-0}" = 1 ] && exit 0
./destiny-bench --export /tmp/bench-data
./destiny-bench --device cuda --batch 256,1024 --epochs 3 --top-k 100 --precision "$precision" --operations --json > "$out/destiny.jsonl"
python3 pytorch_autoencoder.py /tmp/bench-data --device cuda --batch 256,1024 --epochs 3 --top-k 100 --precision "$precision" > "$out/pytorch.jsonl"
python3 table.py "$out/destiny.jsonl" "$out/pytorch.jsonl" | tee "$out/table.md"
RUN
cat > .device-bin/cifar.sh <<'CIFAR'
#!/usr/bin/env bash
# On the GPU machine: DSSTNE's CIFAR-10 network on generated images, Destiny beside PyTorch
# (eager and compiled) in each precision of PRECISION (fp32,tf32), IMAGES images an epoch.
out=${OUT:-.}
images=${IMAGES:-50000}
batch=${BATCH:-128}
epochs=${EPOCHS:-3}
: > "$out/cifar-destiny.jsonl"
: > "$out/cifar-pytorch.jsonl"
for precision in $(echo "${PRECISION:-fp32,tf32}" | tr , ' '); do
    ./destiny-bench --workload cifar --device cuda --images "$images" --batch "$batch" \
        --epochs "$epochs" --precision "$precision" --json >> "$out/cifar-destiny.jsonl"
    python3 pytorch_cifar.py --device cuda --images "$images" --batch "$batch" \
        --epochs "$epochs" --precision "$precision" >> "$out/cifar-pytorch.jsonl"
done
python3 table.py "$out/cifar-destiny.jsonl" "$out/cifar-pytorch.jsonl" | tee "$out/cifar-table.md"
CIFAR
cat > .device-bin/profile.sh <<'PROFILE'
#!/usr/bin/env bash
# On the GPU machine: Nsight Compute's summary of the main kernels of a training step at
# batch 1024 (KERNELS="name ..." to choose), one launch each.
out=${OUT:-.}
[ -d /tmp/bench-data ] || ./destiny-bench --export /tmp/bench-data > /dev/null
for kernel in ${KERNELS:-output_delta top_k sparse_transpose_matmul sparse_matmul}; do
    /usr/local/cuda/bin/ncu --section SpeedOfLight --section Occupancy -k "$kernel" -c 1 \
        ./destiny-bench --device cuda --batch 1024 --epochs 1 --top-k 0 --operations > "$out/ncu-$kernel.txt" 2>&1
    grep -E "Duration|Memory Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per" "$out/ncu-$kernel.txt" | sed "s/^/$kernel: /"
done
PROFILE
cat > .device-bin/cli.sh <<'CLI'
#!/usr/bin/env bash
# On the GPU machine: the destiny command end to end on the GPU and on the CPU (convert,
# train, predict, evaluate) over synthetic interactions; both rows of metrics should agree.
set -euo pipefail
python3 - <<'PY'
import random
random.seed(1)
with open('/tmp/ratings.csv', 'w') as f:
    f.write('user,item,rating,timestamp\n')
    for u in range(3000):
        taste = random.randint(0, 9)
        for _ in range(random.randint(5, 60)):
            item = (taste * 300 + int(random.paretovariate(1.1) * 7)) % 3000
            f.write(f'{u},{item},5,{random.randint(0, 10**6)}\n')
PY
./destiny convert -i /tmp/ratings.csv --min-rating 4 --min-user-interactions 5 --split heldout-users \
    --test-users 300 --seed 1 --out-dir /tmp/cli-data > /dev/null
for device in cuda cpu; do
    ./destiny train -c config.json -i /tmp/cli-data/train.arrow -n /tmp/model-$device.safetensors --overwrite -b 256 -e 10 --device $device 2>&1 | tail -1
    ./destiny predict -n /tmp/model-$device.safetensors -r /tmp/cli-data/test_input.arrow -k 20 -s /tmp/recs-$device.txt --device $device
done
./destiny evaluate --truth /tmp/cli-data/test_target.arrow --recs /tmp/recs-cuda.txt --recs /tmp/recs-cpu.txt
CLI
cat > .device-bin/wide.sh <<'WIDE'
#!/usr/bin/env bash
# On the GPU machine: the 1M-item catalog (266,638 users, hidden 256) beside PyTorch
# (VARIANTS=eager,compiled to choose), and with PROFILE=1 first Nsight Compute's summary of
# the top-K kernels on a smaller batch of users.
out=${OUT:-.}
shape="--items 1000000 --hidden 256"
if [ "${PROFILE:-0}" = 1 ]; then
    for kernel in top_k_wide top_k; do
        /usr/local/cuda/bin/ncu --section SpeedOfLight --section Occupancy -k "regex:^${kernel}\$" -c 1 \
            ./destiny-bench --device cuda $shape --users 20480 --interactions 1100000 --batch 256 --epochs 1 \
            --top-k 100 > "$out/ncu-$kernel.txt" 2>&1
        grep -E "Duration|DRAM Throughput|Compute \(SM\) Throughput|Registers Per" "$out/ncu-$kernel.txt" | sed "s/^/$kernel: /"
    done
fi
shape="$shape --users 266638 --interactions 14400000"
./destiny-bench $shape --export /tmp/wide-data > /dev/null
./destiny-bench --device cuda $shape --batch 256 --epochs 1 --top-k 100 --json > "$out/wide-destiny.jsonl"
python3 pytorch_autoencoder.py /tmp/wide-data --device cuda --hidden 256 --batch 256 --epochs 1 --top-k 100 \
    --variants "${VARIANTS:-eager}" > "$out/wide-pytorch.jsonl"
python3 table.py "$out/wide-destiny.jsonl" "$out/wide-pytorch.jsonl" | tee "$out/wide-table.md"
WIDE
chmod +x .device-bin/run.sh .device-bin/profile.sh .device-bin/cli.sh .device-bin/cifar.sh .device-bin/wide.sh
ls -la .device-bin
