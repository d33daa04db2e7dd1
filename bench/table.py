"""Prints the benchmark table (Markdown) from the JSON lines of destiny-bench and of
pytorch_autoencoder.py taken in the same run: each workload's time in both, the speed-up,
the ratio of a Destiny epoch to the fp32 floor, and peak device memory.

Usage: python3 table.py DESTINY.jsonl PYTORCH.jsonl
"""

import json
import sys


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def megabytes(row):
    peak = row.get("peak_memory_bytes") if row else None
    return f"{peak / 1e6:.0f}" if peak else "-"


def main():
    destiny, pytorch = rows(sys.argv[1]), rows(sys.argv[2])
    floor = next((d for d in destiny if d["workload"].startswith("fp32 floor")), None)
    if floor:
        print(f"{floor['device']}: {floor['workload']} = {floor['seconds']:.3f} s\n")
    print("| workload | Destiny (s) | PyTorch (s) | speed-up | Destiny / fp32 floor | peak MB Destiny | peak MB PyTorch |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for d in destiny:
        workload = d["workload"]
        if workload.startswith(("fp32 floor", "op ")):
            continue
        p = next((p for p in pytorch if p["workload"] == workload), None)
        speedup = f"{p['seconds'] / d['seconds']:.2f}x" if p else "-"
        pytorch_time = f"{p['seconds']:.3f}" if p else "-"
        versus_floor = f"{d['seconds'] / floor['seconds']:.1f}x" if floor and workload.startswith("epoch") else ""
        print(f"| {workload} | {d['seconds']:.3f} | {pytorch_time} | {speedup} | {versus_floor} | {megabytes(d)} | {megabytes(p)} |")
    operations = [d for d in destiny if d["workload"].startswith("op ")]
    if operations:
        print("\nPer operation, one batch (ms): " + ", ".join(
            f"{d['workload'][3:].replace(' (ms)', '')} {d['seconds']:.3f}" for d in operations))


if __name__ == "__main__":
    main()
