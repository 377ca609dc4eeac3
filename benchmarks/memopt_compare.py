"""SpikingJelly 2.0's ``memopt`` beside our lean path on the same VGGSNN: peak training memory,
step time and the largest gradient difference from each library's full-memory reference, in one run.

    python benchmarks/memopt_compare.py [--device cpu|cuda] [--quick] [--gesture-batch 4] [--json FILE]

Shapes: ``tutorial``, 2x48x48 event frames at T = 10, batch 8 (the input of SpikingJelly's memopt
tutorial and example, CIFAR10-DVS); ``gesture``, 2x128x128 at T = 16 (DVS-Gesture), batch
``--gesture-batch``. Random binary frames, 10 classes. Variants:

* ``sj_plain``: the throughput benchmark's SpikingJelly peer (``peers.build_peer``: our fp32 VGGSNN
  layers around SpikingJelly's multi-step ``LIFNode``), its layers laid out as SpikingJelly's memopt
  example lays out its VGG (:class:`SpikingJellyVGG`): the same layers in the same order.
* ``sj_memopt``: the same after ``memopt.optimize_memory(model, Block, example_forward, level=L,
  split_fn=lambda b: (b.proj, b.neuron), can_chunk=lambda m: isinstance(m, neuron.BaseNode))`` with
  its defaults ``checkpoint_budget="memory"`` (every block) and ``compress=True`` (bit-packed binary
  inputs): the call of SpikingJelly's ``examples/memopt/train.py``. L (``--memopt-level``) is 4, the
  whole search (checkpoint every block, then spatial and temporal splits and greedy unwrapping,
  each kept only if CUDA's peak memory falls), on CUDA and 1 on CPU: in spikingjelly 2.0.0, levels
  2-4 raise ``RuntimeError("memopt levels 2-4 require CUDA memory profiling.")`` without CUDA, so
  on CPU memopt is layer-wise gradient checkpointing with spike compression, no split. Its setup
  runs the training batch through the unoptimized model once with autograd on (to probe each
  block's input), so it needs a plain forward pass's memory: the process's peak resident set,
  setup and timing included, is ``process_max_rss_mb`` in the JSON rows.
* ``ours_full`` and ``ours_lean``: our VGGSNN at 1w-4u, ``speed.activation_memory=full`` and ``lean``.

Every training step is train_throughput's (:class:`Trainer`: forward, loss, backward, SGD with
momentum; the spike term lambda = 1e-3 for ours), with eager kernels for every variant.

Measured per shape, each in a fresh process of this script: the gradient check (a reference and
its optimized variant with the same weights take one step on the same batch; every parameter's
gradient is compared: the largest absolute difference, and the largest of each parameter's
largest absolute difference over its largest absolute reference gradient), then ``--rounds``
rounds of one process per variant, one variant later each round. Each process first measures the
peak memory of a fresh model's first two steps as train_throughput does: on CPU the growth of the
peak resident set (``VmHWM`` reset through ``/proc/self/clear_refs``; glibc serving every
allocation above 64 KiB by mmap) from before the model was built, on CUDA
``torch.cuda.max_memory_allocated`` less what was allocated before the model was built; both count
parameters, gradients, momentum, activations and temporaries. A batch-1 step of the same variant
runs before, so one-time allocations (thread pools, library caches) are not counted, and memopt's
one-time setup (its probing forward pass; on CUDA its search) is left out of the peak (its seconds
are reported apart). Then, with freed host memory reused (train_throughput's timing default), it
times ``--iters`` steps after ``--warmup`` more. Step time: the mean of a round's timed steps, the
best round counting; peak memory: the largest over rounds.
"""

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import MissingPeer, _import, reset_spikingjelly  # noqa: E402
from train_throughput import Trainer, Workload, _libc, _status_kib, synchronize  # noqa: E402

from qsnn_lightning.training.host_memory import reuse_freed_memory  # noqa: E402

SHAPES = {  # batch: the tutorial's; the gesture batch comes from --gesture-batch
    "tutorial": Workload("vggsnn", (2, 48, 48), 10, True, {"cpu": 8, "cuda": 8}, (2, 16, 16)),
    "gesture": Workload("vggsnn", (2, 128, 128), 16, True, {"cpu": 8, "cuda": 8}, (2, 16, 16)),
}
VARIANTS = ("sj_plain", "sj_memopt", "ours_full", "ours_lean")
PAIRS = {"sj": ("sj_plain", "sj_memopt"), "ours": ("ours_full", "ours_lean")}  # reference, optimized
REFERENCE = {optimized: reference for reference, optimized in PAIRS.values()}
OPTIONS = argparse.Namespace(bf16=False, channels_last=False)  # what Trainer reads of the CLI options


class Block(nn.Module):
    """SpikingJelly's ``VGGBlock`` of its memopt example: ``proj`` (a pooling where the network has
    one, then conv-BN) and ``neuron``; memopt checkpoints blocks and may split one into the two."""

    def __init__(self, proj: nn.Module, neuron: nn.Module):
        super().__init__()
        self.proj, self.neuron = proj, neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(self.proj(x))


class SpikingJellyVGG(nn.Module):
    """The peer VGGSNN's layers (the same modules, in the same order) as SpikingJelly's memopt
    example lays out a VGG: :class:`Block` s in one ``Sequential``, so that every block reads
    spikes, then the pooling after the last LIF and the fc. The forward pass is the backbone's:
    the input quantizer, frames time-major ``[T, B, ...]``, flattened last spike maps into the fc."""

    def __init__(self, peer: nn.Module):
        super().__init__()
        from spikingjelly.activation_based import neuron

        self.input_quant, self.fc = peer.input_quant, peer.fc
        blocks, layers = [], []
        for layer in (peer.stem, peer.stem_lif, *peer.features):
            if isinstance(layer, neuron.BaseNode):
                blocks.append(Block(nn.Sequential(*layers), layer))
                layers = []
            else:
                layers.append(layer)
        self.features = nn.Sequential(*blocks, *layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        reset_spikingjelly(self)  # as SpikingJelly's example does: every batch from a cleared state
        spikes = self.features(self.input_quant(frames).transpose(0, 1))
        return self.fc(spikes.flatten(2))


def apply_memopt(model: nn.Module, inputs: torch.Tensor, level: int) -> None:
    """SpikingJelly's ``memopt.optimize_memory`` on ``model`` in place, as its example calls it."""
    _import("spikingjelly")
    from spikingjelly.activation_based import memopt, neuron

    memopt.optimize_memory(
        model, Block, lambda net: net(inputs), level=level,
        split_fn=lambda block: (block.proj, block.neuron),
        can_chunk=lambda module: isinstance(module, neuron.BaseNode),
    )


def make_trainer(variant: str, workload: Workload, shape, batch: int, device: torch.device, level: int,
                 weights: "dict | None" = None) -> "tuple[Trainer, float]":
    """train_throughput's :class:`Trainer` around ``variant``'s model (``weights``: a state dict
    loaded before memopt or the lean path is applied) and the seconds memopt's setup took."""
    torch.manual_seed(0)
    impl = "spikingjelly" if variant.startswith("sj") else "qsnn_1w4u"
    trainer = Trainer(impl, workload, shape, batch, device, False, OPTIONS)
    if impl == "spikingjelly":
        trainer.model = SpikingJellyVGG(trainer.model)  # the same parameters: the optimizer stands
    if weights is not None:
        trainer.model.load_state_dict(weights)
    synchronize(device)
    start = time.perf_counter()
    if variant == "sj_memopt":
        apply_memopt(trainer.model, trainer.inputs, level)
    elif variant == "ours_lean":
        trainer.model.activation_memory = "lean"  # what build_model(..., activation_memory="lean") sets
        trainer.model.check_recomputable()
    synchronize(device)
    return trainer, time.perf_counter() - start


def gradient_difference(pair: str, workload: Workload, shape, batch: int, device: torch.device, level: int) -> dict:
    """One step of ``pair``'s reference and of its optimized variant from the same weights on the
    same batch: the largest absolute gradient difference and the largest relative one (a
    parameter's largest absolute difference over its largest absolute reference gradient)."""
    reference, _ = make_trainer(PAIRS[pair][0], workload, shape, batch, device, level)
    optimized, _ = make_trainer(PAIRS[pair][1], workload, shape, batch, device, level,
                                weights=reference.model.state_dict())
    grads = []
    for trainer in (reference, optimized):
        trainer.step()  # the gradients stay until the next step's zero_grad
        grads.append([p.grad for p in trainer.model.parameters()])
    if [g.shape for g in grads[0]] != [g.shape for g in grads[1]]:
        raise RuntimeError(f"{pair}: the two models' parameters do not match")
    absolute = [(b - a).abs().max().item() for a, b in zip(*grads)]
    relative = [diff / max(a.abs().max().item(), 1e-30) for diff, a in zip(absolute, grads[0])]
    return {"max_grad_abs_diff": max(absolute), "max_grad_rel_diff": max(relative), "parameters": len(absolute)}


def peak_of(trainer: Trainer, steps: int, before: int) -> float:
    """Peak memory (MB) of ``steps`` steps of ``trainer``, less ``before`` (bytes)."""
    gc.collect()
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    else:
        _libc().malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # peak resident set := current
    for _ in range(steps):
        trainer.step()
    synchronize(trainer.device)
    if trainer.device.type == "cuda":
        return (torch.cuda.max_memory_allocated(trainer.device) - before) / 2**20
    return (_status_kib("VmHWM") * 1024 - before) / 2**20


def allocated(device: torch.device) -> int:
    """Bytes in use now: CUDA's allocated memory, or the resident set after a heap trim."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return torch.cuda.memory_allocated(device)
    _libc().malloc_trim(0)
    return _status_kib("VmRSS") * 1024


def time_steps(trainer: Trainer, warmup: int, iters: int) -> list[float]:
    """Seconds of each of ``iters`` steps of ``trainer`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        trainer.step()
    seconds = []
    for _ in range(iters):
        synchronize(trainer.device)
        start = time.perf_counter()
        trainer.step()
        synchronize(trainer.device)
        seconds.append(time.perf_counter() - start)
    return seconds


def measure(variant: str, workload: Workload, shape, batch: int, device: torch.device, args) -> dict:
    """Setup seconds, peak memory of the first two steps and timed step seconds of ``variant``, in
    this (fresh) process. Memory comes first: a heap grown while freed memory was reused inflates
    the peak resident set even after a trim."""
    if device.type == "cpu":
        _libc()  # every allocation above 64 KiB by mmap, as train_throughput's memory processes
    warm, _ = make_trainer(variant, workload, shape, 1, device, args.memopt_level)
    warm.step()  # one-time allocations, not counted below
    del warm
    before = allocated(device)
    trainer, setup = make_trainer(variant, workload, shape, batch, device, args.memopt_level)
    peak = peak_of(trainer, 2, before)
    if device.type == "cpu":
        reuse_freed_memory()  # train_throughput's timing default, for every variant alike
    seconds = time_steps(trainer, args.warmup, args.iters)
    return {"setup_s": setup, "peak_mem_mb": peak, "step_s": sum(seconds) / len(seconds), "steps_s": seconds,
            "load_1min": os.getloadavg()[0],  # other processes on the machine slow the timed steps down
            "process_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # whole process, timing included


def worker(args) -> dict:
    """What the parent asked this fresh process for (``--measure`` or ``--grads``)."""
    workload = SHAPES[args.shapes[0]]
    shape = workload.tiny_shape if args.tiny else workload.input_shape
    batch, device = batch_size(args, args.shapes[0]), torch.device(args.device)
    if args.measure:
        return measure(args.measure, workload, shape, batch, device, args)
    return gradient_difference(args.grads, workload, shape, batch, device, args.memopt_level)


def run_worker(args, name: str, role: str, target: str) -> dict:
    """:func:`worker` in a fresh process of this script: its JSON answer."""
    command = [sys.executable, __file__, f"--{role}", target, "--shapes", name, "--device", args.device,
               "--gesture-batch", str(args.gesture_batch), "--memopt-level", str(args.memopt_level),
               "--warmup", str(args.warmup), "--iters", str(args.iters), *(["--tiny"] if args.tiny else [])]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{name} {role} {target} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare_shape(args, name: str) -> list[dict]:
    """Gradient checks, then ``--rounds`` rounds of every variant (one later each round): one row per variant."""
    batch = batch_size(args, name)
    workload = SHAPES[name]
    shape = workload.tiny_shape if args.tiny else workload.input_shape
    print(f"{name}: VGGSNN, T = {workload.timesteps}, input {'x'.join(map(str, shape))}, batch {batch}", flush=True)
    checks = {}
    for pair, (_, optimized) in PAIRS.items():
        checks[optimized] = run_worker(args, name, "grads", pair)
        print(f"  {optimized} vs {PAIRS[pair][0]}: max |grad diff| {checks[optimized]['max_grad_abs_diff']:.3g} "
              f"(relative {checks[optimized]['max_grad_rel_diff']:.3g})", flush=True)
    runs: dict = {variant: [] for variant in VARIANTS}
    for index in range(args.rounds):
        for variant in VARIANTS[index % len(VARIANTS):] + VARIANTS[:index % len(VARIANTS)]:
            runs[variant].append(run_worker(args, name, "measure", variant))
            run = runs[variant][-1]
            print(f"  round {index + 1} {variant}: {run['step_s']:.2f} s/step, peak {run['peak_mem_mb']:.0f} MB, "
                  f"setup {run['setup_s']:.1f} s, load average {run['load_1min']:.1f}", flush=True)
    rows = []
    for variant in VARIANTS:
        rows.append({
            "shape": name, "variant": variant, "device": args.device, "batch": batch, "timesteps": workload.timesteps,
            "input": list(shape), "memopt_level": args.memopt_level if variant == "sj_memopt" else None,
            "step_s": min(run["step_s"] for run in runs[variant]),
            "peak_mem_mb": max(run["peak_mem_mb"] for run in runs[variant]),
            "setup_s": runs[variant][0]["setup_s"], "process_max_rss_mb": max(run["process_max_rss_mb"] for run in runs[variant]),
            **checks.get(variant, {}),
        })
    return rows


def print_table(rows: list[dict]) -> None:
    """One table: each optimized variant's memory and time over its own library's reference, beside its gradient difference."""
    print(f"\n{'shape':<10}{'variant':<11}{'batch':>6}{'peak MB':>10}{'mem x':>8}{'s/step':>9}{'time x':>8}"
          f"{'setup s':>9}{'max|dg|':>10}{'max rel':>10}")
    for row in rows:
        reference = next((r for r in rows if r["shape"] == row["shape"] and r["variant"] == REFERENCE.get(row["variant"])), None)
        memory = f"{row['peak_mem_mb'] / reference['peak_mem_mb']:.2f}x" if reference else "-"
        speed = f"{row['step_s'] / reference['step_s']:.2f}x" if reference else "-"
        grads = (f"{row['max_grad_abs_diff']:>10.2e}{row['max_grad_rel_diff']:>10.2e}" if "max_grad_abs_diff" in row
                 else f"{'-':>10}{'-':>10}")
        print(f"{row['shape']:<10}{row['variant']:<11}{row['batch']:>6}{row['peak_mem_mb']:>10.0f}{memory:>8}"
              f"{row['step_s']:>9.2f}{speed:>8}{row['setup_s']:>9.1f}{grads}")
    print("mem x, time x: over the same library's full-memory reference (sj_plain, ours_full); s/step: best round's "
          "mean; peak: largest over rounds; max rel: a parameter's max |grad diff| over its max |grad|, largest over parameters")


def batch_size(args, name: str) -> int:
    if args.tiny:
        return 2
    return args.gesture_batch if name == "gesture" else SHAPES[name].batch[args.device]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="one round, one timed step, no warm-up beyond the memory steps")
    parser.add_argument("--json", type=Path, help="write the rows to this file")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated subset of " + ", ".join(SHAPES))
    parser.add_argument("--gesture-batch", type=int, default=4,
                        help="batch at 2x128x128, T = 16 (default 4: every variant fits in 24 GB of host memory; the "
                             "sj_memopt process, the largest, peaked at 12.0 GB on CPU; 8 was not tried)")
    parser.add_argument("--memopt-level", type=int, choices=range(5), help="optimize_memory's level (default: 4 on CUDA, 1 on CPU)")
    parser.add_argument("--rounds", type=int, help="rounds of every variant (default 3, --quick 1)")
    parser.add_argument("--iters", type=int, help="timed steps per round (default 3, --quick 1)")
    parser.add_argument("--warmup", type=int, help="untimed steps after the memory steps, in every round (default 1, --quick 0)")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests: 2x16x16, batch 2
    parser.add_argument("--measure", choices=VARIANTS, help=argparse.SUPPRESS)  # child process: one variant
    parser.add_argument("--grads", choices=PAIRS, help=argparse.SUPPRESS)  # child process: one gradient check
    args = parser.parse_args(argv)
    args.shapes = [name.strip() for name in args.shapes.split(",")]
    for name in args.shapes:
        if name not in SHAPES:
            parser.error(f"unknown shape {name!r}; choose from {', '.join(SHAPES)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to PyTorch; use --device cpu")
    if args.memopt_level is None:
        args.memopt_level = 4 if args.device == "cuda" else 1
    if args.memopt_level > 1 and args.device == "cpu":
        parser.error("memopt levels 2-4 measure CUDA memory (spikingjelly 2.0.0); on CPU use --memopt-level 0 or 1")
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.iters = args.iters or (1 if args.quick else 3)
    if args.warmup is None:
        args.warmup = 0 if args.quick else 1
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.measure or args.grads:
        print(json.dumps(worker(args)))
        return 0
    try:
        _import("spikingjelly")
    except MissingPeer as error:
        print(error)
        return 1
    print(f"torch {torch.__version__}, spikingjelly {version('spikingjelly')}, device {args.device}, {torch.get_num_threads()} threads, "
          f"memopt level {args.memopt_level}, {args.rounds} round(s) of {args.warmup} warm-up + {args.iters} timed step(s)")
    started = time.perf_counter()
    rows = [row for name in args.shapes for row in compare_shape(args, name)]
    print_table(rows)
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
