"""PyTorch reference for Destiny's benchmark of DSSTNE's CIFAR-10 network
(samples/cifar-10/config.json): six linear same-padded convolutions (7x7, 7x7, 5x5 in pairs)
with max pools of 4/2, 4/2 and 2/2 between them (32 -> 15 -> 6 -> 3), a 1024-unit layer with
batch normalization, ReLU and dropout 0.5, and a 10-way softmax cross entropy, trained with
plain SGD. It times one training epoch, NCHW and fp32, written as fast as PyTorch honestly gets
for the same work: synthetic images and labels generated and kept on the device, shuffled there
every epoch (randperm on the device) and gathered by index without a host sync, cuDNN's
autotuned algorithms, fused SGD, and the loss summed on the device and read once an epoch.
Two variants, both reported: `eager`, and `compiled` (the model and its loss under
torch.compile). One warm-up epoch (which compiles and autotunes), then the median of the timed
epochs.

Usage: python3 bench/pytorch_cifar.py --device cuda --batch 128 --epochs 3
       [--batch 128,256] [--images 50000] [--variants eager,compiled] [--precision fp32|tf32]
Prints one JSON object per (variant, batch) line.
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


class CumulativeBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d(momentum=None) (the running statistics a cumulative average, DSSTNE's rule)
    without its host read per batch: PyTorch's own takes 1 / float(num_batches_tracked), a
    device-to-host sync in eager and a graph break under torch.compile. Here the batch's
    statistics come from the same batch_norm call (momentum 1 into scratch buffers) and the
    running ones follow them with the factor 1 / batches as a device tensor."""

    def __init__(self, features, eps=1e-5):
        super().__init__(features, eps=eps, momentum=None)
        self.register_buffer("batch_mean", torch.zeros(features), persistent=False)
        self.register_buffer("batch_var", torch.ones(features), persistent=False)

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        y = F.batch_norm(x, self.batch_mean, self.batch_var, self.weight, self.bias, True, 1.0, self.eps)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = self.num_batches_tracked.reciprocal()
            self.running_mean.lerp_(self.batch_mean, factor)
            self.running_var.lerp_(self.batch_var, factor)
        return y


class Cifar(nn.Module):
    """DSSTNE's CIFAR-10 network; the forward pass returns the summed loss of the batch."""

    def __init__(self):
        super().__init__()

        def conv(c_in, c_out, k):
            layer = nn.Conv2d(c_in, c_out, k, stride=1, padding=k // 2)
            nn.init.normal_(layer.weight, std=0.02)  # DSSTNE's WeightInit: Gaussian 0.02, bias 0
            nn.init.zeros_(layer.bias)
            return layer

        # The convolutions are linear (no activation) as in DSSTNE's definition.
        self.features = nn.Sequential(
            conv(3, 128, 7), conv(128, 128, 7), nn.MaxPool2d(4, stride=2),  # 32 -> 15
            conv(128, 128, 7), conv(128, 128, 7), nn.MaxPool2d(4, stride=2),  # 15 -> 6
            conv(128, 96, 5), conv(96, 96, 5), nn.MaxPool2d(2, stride=2),  # 6 -> 3
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, 3, 32, 32)).shape[1]
        assert flat == 96 * 3 * 3 == 864, flat
        output = nn.Linear(1024, 10)
        nn.init.normal_(output.weight, std=0.01)
        nn.init.zeros_(output.bias)
        self.classifier = nn.Sequential(
            nn.Linear(flat, 1024), CumulativeBatchNorm1d(1024, eps=1e-5), nn.ReLU(),
            nn.Dropout(0.5), output,
        )

    def forward(self, images, labels):
        logits = self.classifier(self.features(images))
        # Softmax + cross entropy of one-hot targets, summed over the batch (DSSTNE's error);
        # the step below uses the mean, as DSSTNE's gradient does.
        return F.cross_entropy(logits, labels, reduction="sum")


def train_epoch(step, optimizer, images, labels, batch, generator):
    n = images.shape[0]
    order = torch.randperm(n, device=images.device, generator=generator)
    total = torch.zeros((), device=images.device)
    for first in range(0, n, batch):  # the last, partial batch is kept, as in Destiny
        index = order[first:first + batch]
        error = step(images.index_select(0, index), labels.index_select(0, index))
        optimizer.zero_grad(set_to_none=True)
        (error / index.shape[0]).backward()
        optimizer.step()
        total += error.detach()
    return total.item() / n  # the one host read of the epoch


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args, device, images, labels, variant, batch):
    torch.manual_seed(1)
    model = Cifar().to(device).train()
    step = model
    if variant == "compiled":
        torch._dynamo.reset()  # a fresh cache for every batch size (its compile is in the warm-up)
        # The default mode: a batch of 128 is some 0.9 TFLOP of convolutions (milliseconds of
        # cuDNN), so the launches that "reduce-overhead" (CUDA graphs) would save are already
        # hidden behind the GPU's work, and CUDA graphs would add doubts about BatchNorm's buffer
        # updates and dropout's RNG; "max-autotune" compiles for long. dynamic=False
        # specializes the full and the last, partial batch (two graphs, both in the warm-up).
        step = torch.compile(model, mode=args.compile_mode, dynamic=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.learning_rate,
                                **({"fused": True} if device.type == "cuda" else {"foreach": True}))
    generator = torch.Generator(device=device).manual_seed(2)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for epoch in range(args.epochs + 1):  # the first epoch warms up (compiles, autotunes)
        sync(device)
        start = time.perf_counter()
        loss = train_epoch(step, optimizer, images, labels, batch, generator)
        sync(device)
        if epoch > 0:
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"seconds": seconds, "loss": loss,
            "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
            "images_per_second": images.shape[0] / seconds}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", default="128", help="comma-separated batch sizes")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs, after one warm-up")
    parser.add_argument("--images", type=int, default=50000)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--variants", default="eager,compiled",
                        help="comma-separated: eager, compiled (torch.compile of the model and loss)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "tf32"])
    parser.add_argument("--compile-mode", default="default",
                        help="torch.compile mode: default, reduce-overhead, max-autotune-no-cudagraphs")
    args = parser.parse_args()
    device = torch.device(args.device)
    tf32 = args.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    # Time every cuDNN engine, not the first 10 the heuristics rank (PyTorch's default), so
    # that the FFT and Winograd ones Destiny's measurement may pick are PyTorch's too.
    torch.backends.cudnn.benchmark_limit = 0
    name = f"cpu ({torch.get_num_threads()} threads)" if device.type == "cpu" else torch.cuda.get_device_name(device)
    generator = torch.Generator(device=device).manual_seed(1)
    images = torch.rand(args.images, 3, 32, 32, device=device, generator=generator)
    labels = torch.randint(0, 10, (args.images,), device=device, generator=generator)
    suffix = ", tf32" if tf32 else ""
    for variant in args.variants.split(","):
        for batch in (int(b) for b in args.batch.split(",")):
            result = {"system": "pytorch", "variant": variant, "device": name,
                      "workload": f"cifar-10 epoch, batch {batch}{suffix}"}
            try:
                result.update(run(args, device, images, labels, variant, batch))
            except Exception as error:  # e.g. torch.compile without a compiler on the CPU
                if variant == "eager":
                    raise
                result["error"] = f"{type(error).__name__}: {error}"[:500]
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
