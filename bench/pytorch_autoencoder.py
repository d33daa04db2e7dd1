"""PyTorch reference for Destiny's benchmark: DSSTNE's MovieLens autoencoder in plain eager
PyTorch (EmbeddingBag input, dense output layer, BCE with logits, sparseness penalty,
denoising, SGD), timed the same way as `destiny-bench` on the same exported data.

Usage: python pytorch_autoencoder.py DATA_DIR --device cpu|cuda --batch 256,1024 [--threads N]
Prints one JSON object per result line.
"""

import argparse
import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F


def load(folder):
    shape = json.load(open(f"{folder}/shape.json"))
    offsets = np.fromfile(f"{folder}/offsets.i64", dtype=np.int64)
    indices = np.fromfile(f"{folder}/indices.i32", dtype=np.int32).astype(np.int64)
    return shape, torch.from_numpy(offsets), torch.from_numpy(indices)


class Autoencoder(torch.nn.Module):
    def __init__(self, items, hidden):
        super().__init__()
        self.encoder = torch.nn.EmbeddingBag(items, hidden, mode="sum")
        self.hidden_bias = torch.nn.Parameter(torch.zeros(hidden))
        self.decoder = torch.nn.Linear(hidden, items)
        limit = (6.0 / (items + hidden)) ** 0.5
        for weight in (self.encoder.weight, self.decoder.weight):
            torch.nn.init.uniform_(weight, -limit, limit)
        torch.nn.init.zeros_(self.decoder.bias)

    def forward(self, indices, offsets, weights):
        hidden = torch.sigmoid(self.encoder(indices, offsets, per_sample_weights=weights) + self.hidden_bias)
        return hidden, self.decoder(hidden)


def batch_slices(offsets, indices, rows, device):
    """The CSR slice of each batch, already on the device (as Destiny uploads per batch)."""
    start, end = offsets[rows[0]].item(), offsets[rows[-1] + 1].item()
    batch_offsets = (offsets[rows[0]: rows[-1] + 1] - start).to(device, non_blocking=True)
    batch_indices = indices[start:end].to(device, non_blocking=True)
    lengths = (offsets[rows[0] + 1: rows[-1] + 2] - offsets[rows[0]: rows[-1] + 1]).to(device)
    return batch_offsets, batch_indices, lengths


def train_epoch(model, optimizer, offsets, indices, users, items, batch, device, generator):
    order = torch.randperm(users, generator=generator)
    # Reordering rows every epoch, as Destiny shuffles: gather the CSR in the new order.
    lengths = offsets[1:] - offsets[:-1]
    new_lengths = lengths[order]
    new_offsets = torch.zeros(users + 1, dtype=torch.int64)
    new_offsets[1:] = torch.cumsum(new_lengths, 0)
    gather = torch.repeat_interleave(offsets[:-1][order] - new_offsets[:-1], new_lengths) + torch.arange(int(new_offsets[-1]))
    new_indices = indices[gather]
    total = 0.0
    for first in range(0, users, batch):
        rows = list(range(first, min(first + batch, users)))
        b_offsets, b_indices, b_lengths = batch_slices(new_offsets, new_indices, rows, device)
        n = len(rows)
        keep = (torch.rand(b_indices.shape[0], device=device) >= 0.2).float() / 0.8
        hidden, logits = model(b_indices, b_offsets, keep)
        target = torch.zeros(n, items, device=device)
        row_ids = torch.repeat_interleave(torch.arange(n, device=device), b_lengths)
        target[row_ids, b_indices] = 1.0
        error = F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
        rho = hidden.mean(0).clamp(1e-7, 1 - 1e-7)
        p, beta = 0.5, 2.0
        penalty = beta * (p * torch.log(p / rho) + (1 - p) * torch.log((1 - p) / (1 - rho))).sum()
        loss = error / n + penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += error.item() if first // batch % 32 == 31 else 0.0
    return total


@torch.no_grad()
def predict(model, offsets, indices, users, items, k, device, batch=1024):
    results = []
    for first in range(0, users, batch):
        rows = list(range(first, min(first + batch, users)))
        b_offsets, b_indices, b_lengths = batch_slices(offsets, indices, rows, device)
        ones = torch.ones(b_indices.shape[0], device=device)
        _, logits = model(b_indices, b_offsets, ones)
        scores = torch.sigmoid(logits)
        row_ids = torch.repeat_interleave(torch.arange(len(rows), device=device), b_lengths)
        scores[row_ids, b_indices] = -float("inf")
        results.append(torch.topk(scores, k, dim=1).indices.cpu())
    return torch.cat(results)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", default="256")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--precision", default="fp32",
                        help="dense products, comma-separated: fp32, tf32, bf16 (torch.set_float32_matmul_precision)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shape, offsets, indices = load(args.data)
    users, items = shape["rows"], shape["width"]
    name = f"cpu ({torch.get_num_threads()} threads)" if device.type == "cpu" else torch.cuda.get_device_name(device)
    batches = [int(b) for b in args.batch.split(",")]
    for precision in args.precision.split(","):
        torch.set_float32_matmul_precision({"fp32": "highest", "tf32": "high", "bf16": "medium"}[precision])
        suffix = "" if precision == "fp32" else f", {precision}"
        run(args, device, name, offsets, indices, users, items, batches, suffix)


def run(args, device, name, offsets, indices, users, items, batches, suffix):
    for batch in batches:
        torch.manual_seed(1)
        generator = torch.Generator().manual_seed(1)
        model = Autoencoder(items, args.hidden).to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=args.learning_rate)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for epoch in range(args.epochs + 1):
            sync(device)
            start = time.perf_counter()
            train_epoch(model, optimizer, offsets, indices, users, items, batch, device, generator)
            sync(device)
            if epoch > 0:
                times.append(time.perf_counter() - start)
        result = {"system": "pytorch", "device": name, "workload": f"epoch, batch {batch}{suffix}", "seconds": statistics.median(times)}
        if device.type == "cuda":
            result["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
        print(json.dumps(result), flush=True)
        if args.top_k and batch == batches[0]:
            times = []
            for run in range(args.epochs + 1):  # a warm-up pass, then the timed ones
                sync(device)
                start = time.perf_counter()
                top = predict(model, offsets, indices, users, items, args.top_k, device)
                sync(device)
                if run > 0:
                    times.append(time.perf_counter() - start)
            assert top.shape == (users, args.top_k)
            print(json.dumps({"system": "pytorch", "device": name, "workload": f"top-{args.top_k} for all users{suffix}", "seconds": statistics.median(times)}), flush=True)


if __name__ == "__main__":
    main()
