"""Training throughput (images/s) and peak training memory of our SNN in full precision and as a
Q-SNN (1w-8u, 1w-4u, 1w-2u) beside SpikingJelly and snnTorch on the same networks, in one run.

    python benchmarks/train_throughput.py [--device cpu|cuda] [--quick] [--json FILE]

Workloads: ResNet19 at T = 2 on 3x32x32 images (CIFAR) and VGGSNN at T = 10 on 2x48x48 event
frames (DVS-CIFAR10), random data, 10 classes. A training step is forward, loss (Eq. 16's cross
entropy; plus its spike term with lambda = 1e-3 for our Q-SNNs, as they train), backward and an
SGD step (momentum 0.9, weight decay 5e-4) for every implementation.

Throughput: every implementation is built and trained in its own worker process (so none runs
in memory another one has fragmented: in one process, the model built first ran VGGSNN up to a
quarter faster than the same model built last), and one worker runs at a time. After warm-up
steps (where compilation happens), ``--rounds`` rounds run ``--iters`` steps of every
implementation in turn, starting one implementation later each round; each implementation's
best round counts, so load from other processes on the machine (which only ever slows a round
down) penalizes none of them for long.

Allocator: by default the timing process keeps freed host memory for reuse
(:func:`qsnn_lightning.training.host_memory.reuse_freed_memory`, what ``qsnn train`` does), for every
implementation alike; ``--no-reuse-freed-memory`` leaves glibc's defaults, under which every
step faults its temporaries back in.

Peak memory, after the timing, each implementation in a fresh process of this script that
builds and trains it twice (the first time untimed and unmeasured, to leave out one-time
allocations such as library caches and thread pools): on CUDA the peak of
``torch.cuda.max_memory_allocated`` over two steps, less what was allocated before the model was
built. On CPU the growth of the process's peak resident set (Linux ``VmHWM``, reset through
``/proc/self/clear_refs``) over two steps from before the model was built, with glibc told to
serve every allocation above 64 KiB by its own mmap, so that freed tensors leave the resident set
at once. Both count parameters, gradients, optimizer state, activations kept for the backward
pass and temporaries. Our implementations are measured with eager neuron kernels there (the
compiled kernels create fewer temporaries, never more).
"""

import argparse
import ctypes
import gc
import json
import multiprocessing
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import AFTER_STEP, PEERS, MissingPeer, build_peer  # noqa: E402

from qsnn_lightning.snn.backbones import build_model  # noqa: E402
from qsnn_lightning.snn.losses import WSDRLoss  # noqa: E402
from qsnn_lightning.snn.neurons import reset_states, spiking_layers  # noqa: E402
from qsnn_lightning.snn.spec import ModelSpec  # noqa: E402
from qsnn_lightning.training.host_memory import reuse_freed_memory  # noqa: E402

OURS = {"qsnn_fp": "32w32u", "qsnn_1w8u": "1w8u", "qsnn_1w4u": "1w4u", "qsnn_1w2u": "1w2u"}
IMPLS = (*OURS, *PEERS)
BASELINE = "spikingjelly"
LAMBDA = 1e-3  # the spike term of our Q-SNN experiments (experiments/base.yaml)


@dataclass(frozen=True)
class Workload:
    arch: str
    input_shape: tuple[int, int, int]
    timesteps: int
    event_frames: bool
    batch: dict  # device -> batch size
    tiny_shape: tuple[int, int, int]  # --tiny (tests): same network, small images


WORKLOADS = {
    "resnet19_cifar": Workload("resnet19", (3, 32, 32), 2, False, {"cpu": 8, "cuda": 256}, (3, 8, 8)),
    "vggsnn_dvs": Workload("vggsnn", (2, 48, 48), 10, True, {"cpu": 2, "cuda": 64}, (2, 16, 16)),
}
QUICK_BATCH = {"cpu": {"resnet19_cifar": 4, "vggsnn_dvs": 1}}


def build(impl: str, workload: Workload, shape, compile: bool) -> nn.Module:
    if impl in OURS:
        bits = OURS[impl]
        standardize = "none" if bits == "32w32u" else "layer"
        spec = ModelSpec(arch=workload.arch, timesteps=workload.timesteps, bits=bits, standardize=standardize)
        return build_model(spec, input_shape=shape, compile=compile)
    return build_peer(impl, workload.arch, shape, workload.timesteps)


class Trainer:
    """One implementation's model, optimizer, loss and batch; ``step()`` is one training step."""

    def __init__(self, impl: str, workload: Workload, shape, batch: int, device: torch.device, compile: bool,
                 options: argparse.Namespace):
        self.impl, self.device, self.bf16 = impl, device, options.bf16
        self.model = build(impl, workload, shape, compile).to(device).train()
        memory_format = torch.channels_last if options.channels_last else torch.contiguous_format
        self.model.to(memory_format=memory_format)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        self.loss = WSDRLoss(LAMBDA if impl in OURS and impl != "qsnn_fp" else 0.0)
        generator = torch.Generator().manual_seed(0)
        if workload.event_frames:
            self.inputs = (torch.rand(batch, workload.timesteps, *shape, generator=generator) < 0.2).float()
        else:
            self.inputs = torch.rand(batch, *shape, generator=generator)
        self.inputs = self.inputs.to(device)
        if self.inputs.dim() == 4:
            self.inputs = self.inputs.contiguous(memory_format=memory_format)
        self.targets = torch.randint(0, 10, (batch,), generator=generator).to(device)
        self.after_step = AFTER_STEP.get(impl, reset_states)

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(self.inputs)
            rates = [layer.firing_rate for layer in spiking_layers(self.model)]
            loss = self.loss(logits.float(), self.targets, rates).total
        loss.backward()
        self.optimizer.step()
        self.after_step(self.model)

    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_worker(impl: str, name: str, shape, batch: int, device: str, compile: bool, options, connection) -> None:
    """One implementation in its own process: builds it, reports its parameter count (or why it
    is missing), then runs as many training steps as it is sent and answers with their wall time,
    until it is sent None."""
    if options.reuse_freed_memory:
        reuse_freed_memory()
    try:
        trainer = Trainer(impl, WORKLOADS[name], shape, batch, torch.device(device), compile, options)
    except MissingPeer as error:
        connection.send(str(error))
        return
    connection.send(trainer.parameters())
    while (steps := connection.recv()) is not None:
        synchronize(trainer.device)
        start = time.perf_counter()
        for _ in range(steps):
            trainer.step()
        synchronize(trainer.device)
        connection.send(time.perf_counter() - start)


def best_throughput(workers: dict, batch: int, iters: int, rounds: int, warmup: int) -> dict:
    """images/s of each worker's best round; one worker runs at a time, starting one later each round."""
    for connection in workers.values():
        connection.send(warmup)
        connection.recv()
    best = {impl: 0.0 for impl in workers}
    order = list(workers.items())
    for index in range(rounds):
        for impl, connection in order[index % len(order):] + order[:index % len(order)]:
            connection.send(iters)
            best[impl] = max(best[impl], iters * batch / connection.recv())
    return best


def start_workers(impls: list[str], name: str, shape, batch: int, compile: bool, args) -> "tuple[dict, dict, list]":
    """A :func:`train_worker` per implementation: ``(connections, parameter counts, processes)``."""
    context = multiprocessing.get_context("spawn")
    connections, counts, processes = {}, {}, []
    for impl in impls:
        parent, child = context.Pipe()
        process = context.Process(target=train_worker, args=(impl, name, shape, batch, args.device, compile, args, child))
        process.start()
        processes.append(process)
        answer = parent.recv()
        if isinstance(answer, str):
            print(f"{name}: skipping {impl}: {answer}")
            continue
        connections[impl], counts[impl] = parent, answer
    return connections, counts, processes


def _status_kib(key: str) -> int:
    return int(re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def _libc():
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD: big blocks by mmap, returned to the OS on free
    libc.mallopt(-1, 0)  # M_TRIM_THRESHOLD: give back the top of the heap at once
    return libc


def peak_memory_mb(impl: str, workload: Workload, shape, batch: int, device: torch.device, options) -> float:
    """Peak training memory of ``impl`` over two steps, from before its model was built (MB), in
    this process; the same is done once before, untimed, so that one-time allocations (library
    caches, thread pools) are not counted."""
    for _ in range(2):
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        else:
            _libc().malloc_trim(0)
            before = _status_kib("VmRSS") * 1024
            Path("/proc/self/clear_refs").write_text("5")  # peak resident set := current
        trainer = Trainer(impl, workload, shape, batch, device, False, options)
        for _ in range(2):
            trainer.step()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _status_kib("VmHWM") * 1024
        del trainer
    return (peak - before) / 2**20


def peak_memories(impls: list[str], name: str, batch: int, args) -> dict:
    """:func:`peak_memory_mb` of each implementation, each in a fresh process of this script."""
    memory = {}
    for impl in impls:
        command = [sys.executable, __file__, "--memory-of", impl, "--workloads", name, "--batch", str(batch),
                   "--device", args.device, *(["--tiny"] if args.tiny else []), *(["--bf16"] if args.bf16 else []),
                   *(["--channels-last"] if args.channels_last else [])]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        memory[impl] = float(result.stdout.split()[-1])
    return memory


def compiler_available(device: torch.device) -> bool:
    """torch.compile's inductor needs a C++ compiler on CPU and Triton on CUDA."""
    if device.type == "cuda":
        return True
    from torch._inductor import cpp_builder

    try:
        return bool(cpp_builder.get_cpp_compiler())
    except Exception:
        return False


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="small batches, three rounds: a few minutes on a CPU")
    parser.add_argument("--json", type=Path, help="write the rows to this file")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset of " + ", ".join(WORKLOADS))
    parser.add_argument("--impls", default=",".join(IMPLS), help="comma-separated subset of " + ", ".join(IMPLS))
    parser.add_argument("--batch", type=int, help="batch size for every workload (default: per workload and device)")
    parser.add_argument("--iters", type=int, default=1, help="timed steps per round (default 1)")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 8, --quick 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per implementation first")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="compile our neuron kernels (speed.compile=true); default on where a compiler is found")
    parser.add_argument("--reuse-freed-memory", action=argparse.BooleanOptionalAction, default=True,
                        help="glibc keeps freed blocks for the next step, for every implementation alike "
                             "(speed.reuse_freed_memory=true); default on")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for every implementation (trainer.precision=bf16-mixed)")
    parser.add_argument("--channels-last", action="store_true", help="NHWC weights and images for every implementation")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests: small images
    parser.add_argument("--memory-of", choices=IMPLS, help=argparse.SUPPRESS)  # the child process of peak_memories
    args = parser.parse_args(argv)
    args.workloads = [name.strip() for name in args.workloads.split(",")]
    args.impls = [name.strip() for name in args.impls.split(",")]
    for name in args.workloads:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
    for name in args.impls:
        if name not in IMPLS:
            parser.error(f"unknown implementation {name!r}; choose from {', '.join(IMPLS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to PyTorch; use --device cpu")
    args.rounds = args.rounds or (3 if args.quick else 8)
    return args


def batch_size(args, name: str) -> int:
    if args.batch:
        return args.batch
    if args.quick and args.device in QUICK_BATCH:
        return QUICK_BATCH[args.device][name]
    return WORKLOADS[name].batch[args.device]


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.memory_of:
        name = args.workloads[0]
        workload = WORKLOADS[name]
        shape = workload.tiny_shape if args.tiny else workload.input_shape
        print(peak_memory_mb(args.memory_of, workload, shape, batch_size(args, name), device, args))
        return 0
    compile = args.compile and compiler_available(device)
    reused = args.reuse_freed_memory and reuse_freed_memory()  # here only to report it: the workers set it
    rows = []
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
          f"our neuron kernels {'compiled' if compile else 'eager'}, {'bf16 autocast' if args.bf16 else 'fp32'}"
          f"{', channels_last' if args.channels_last else ''}, freed host memory {'reused' if reused else 'returned'}")
    for name in args.workloads:
        workload = WORKLOADS[name]
        shape = workload.tiny_shape if args.tiny else workload.input_shape
        batch = batch_size(args, name)
        workers, counts, processes = start_workers(args.impls, name, shape, batch, compile, args)
        print(f"{name}: {workload.arch}, T = {workload.timesteps}, input {'x'.join(map(str, shape))}, batch {batch}; "
              "parameters: " + ", ".join(f"{impl} {count:,}" for impl, count in counts.items()))
        speed = best_throughput(workers, batch, args.iters, args.rounds, args.warmup)
        for connection in workers.values():
            connection.send(None)
        for process in processes:
            process.join()
        memory = peak_memories(list(speed), name, batch, args)
        for impl in speed:
            rows.append({
                "impl": impl, "workload": name, "device": args.device, "batch": batch,
                "images_per_s": speed[impl], "peak_mem_mb": memory[impl],
            })
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def print_table(rows: list[dict]) -> None:
    print(f"\n{'workload':<16}{'impl':<14}{'batch':>6}{'images/s':>12}{'vs SJ':>8}{'peak MB':>10}{'vs SJ':>8}")
    for row in rows:
        peer = next((r for r in rows if r["workload"] == row["workload"] and r["impl"] == BASELINE), None)
        speed = f"{row['images_per_s'] / peer['images_per_s']:.2f}x" if peer else "-"
        memory = f"{row['peak_mem_mb'] / peer['peak_mem_mb']:.2f}x" if peer else "-"
        print(f"{row['workload']:<16}{row['impl']:<14}{row['batch']:>6}{row['images_per_s']:>12.2f}{speed:>8}"
              f"{row['peak_mem_mb']:>10.0f}{memory:>8}")


if __name__ == "__main__":
    sys.exit(main())
