"""Training throughput with and without the PHi layer, and model FLOP utilisation.

    PYTHONPATH=src python benchmarks/bench_train.py [--preset cpu-quick --preset paper] [--threads 1]

For each preset's model shape, one training step (forward, backward, gradient clipping, AdamW)
is timed for the base model alone (the same model without the splice) and with the PHi layer
of every bottleneck. Measurements are interleaved: every round times every variant for a few
steps (in alternating order), so machine load hits all of them alike. The table shows the best
round's step time and tokens/s, the step-time ratio to the base model measured in the same round
(median and range over rounds), and the model FLOP utilisation

    MFU = (6 · params · tokens + attention) / step time / GEMM FLOP/s,

with attention = 12 · layers · d · T · tokens (nanoGPT's count; the PHi prior adds one layer of
its width) and the GEMM throughput of a large matmul in the steps' precision (fp32 on a CPU,
bf16 on CUDA) measured in the same run (the best round). 6 · params counts each weight once
per token, which undercounts the residual and FSQ priors (their head runs once per stage with
the same weights), so "MFU (counted)" beside it divides the FLOPs that `FlopCounterMode` counts
in the step instead. Tokens are all B × T positions of a step, padding included (the FLOPs are spent
there too). One batch is drawn beforehand, so data generation is not timed (see
bench_data.py), nor is the trainer's bookkeeping (metrics, checkpoints). Subnormal floats are
flushed to zero, as in the trainer (`flushing_denormals`).

The PHi layer should cost what its arithmetic costs: beside each bottleneck's step-time ratio to
the base model (median over rounds) stands the ratio of the two steps' matrix FLOPs, counted by
`torch.utils.flop_counter.FlopCounterMode` over forward + backward, and their quotient
(target ≤ 1.25).

With --compile every model is timed through `torch.compile`, as the trainer runs it under
train.compile=true (compilation happens in the untimed step).

On a CPU the paper-scale presets are timed at a smaller batch and row length (printed in the
header; --batch-size/--row-length set them for every preset).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from qphi.bottlenecks import registry
from qphi.models import IGNORE_INDEX, ResidualLSTM, build_model, build_transformer
from qphi.tasks import Batch
from qphi.training import RunConfig, load_run_config
from qphi.training.data import build_source
from qphi.training.trainer import flushing_denormals

# The CPU's fused attention kernels are missing from the counter's registry (torch 2.13); they do
# the arithmetic of the registered ones.
for _op, _formula in (
    (torch.ops.aten._scaled_dot_product_flash_attention_for_cpu, flop_counter.sdpa_flop),
    (torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward, flop_counter.sdpa_backward_flop),
):
    if _op not in flop_counter.flop_registry:
        flop_counter.register_flop_formula(_op, get_raw=True)(_formula)  # `_formula` already reads shapes

CPU_SHAPES = {"paper": (4, 128), "paper-lstm": (4, 128)}  # (batch, row length) of big presets on a CPU


@dataclass
class Variant:
    name: str
    config: RunConfig
    with_phi: bool


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def gemm_dtype(device: torch.device) -> torch.dtype:
    """The precision steps run in: bf16 autocast on CUDA, fp32 on a CPU (as the trainer's precision=auto)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def gemm_flops(device: torch.device, n: int, repeats: int = 3) -> float:
    """FLOP/s of an n×n by n×n matmul in the steps' precision (best of `repeats`)."""
    a, b = (torch.randn(n, n, device=device, dtype=gemm_dtype(device)) for _ in range(2))
    a @ b
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def build(variant: Variant, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    model = variant.config.model
    if variant.with_phi:
        return build_model(model, variant.config.phi).to(device).train()
    base = (
        build_transformer(model)
        if model.architecture == "transformer"
        else ResidualLSTM(model.vocab_size, model.d_model, model.n_layers)
    )
    return base.to(device).train()


def loss_of(model: torch.nn.Module, batch: Batch, variant: Variant) -> torch.Tensor:
    """The training loss, with the same inputs the trainer gives `PHiModel` (which gives them to the base)."""
    packed = variant.config.data.pack
    if variant.with_phi:
        out = model(
            input_ids=batch.input_ids,
            targets=batch.targets,
            padding_mask=batch.padding_mask,
            document_ids=batch.document_ids if packed else None,
            positions=batch.positions if packed else None,
        )
        return out.loss
    kwargs = {"input_ids": batch.input_ids, "use_cache": False}
    if packed:
        kwargs["position_ids"] = batch.positions
    else:
        kwargs["attention_mask"] = batch.padding_mask.long()
        kwargs["position_ids"] = (batch.padding_mask.long().cumsum(-1) - 1).clamp_min(0)
    logits = model(**kwargs).logits
    return F.cross_entropy(logits.float().flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE_INDEX)


def time_steps(variant: Variant, batch: Batch, steps: int, device: torch.device, compiled: bool) -> float:
    """Seconds per training step after one untimed step (which also creates the AdamW state and,
    with `compiled`, compiles the model as the trainer's train.compile=true does)."""
    model = build(variant, device)
    if compiled:
        torch._dynamo.reset()  # each variant compiles afresh instead of piling up guards on shared code
        model = torch.compile(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=variant.config.optim.lr, fused=device.type in ("cuda", "cpu"))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> None:
        with autocast:
            loss = loss_of(model, batch, variant)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def counted_flops(variant: Variant, batch: Batch, device: torch.device) -> int:
    """Matrix FLOPs of one forward + backward, as `FlopCounterMode` counts them."""
    model = build(variant, device)
    with FlopCounterMode(display=False) as counter:
        loss_of(model, batch, variant).backward()
    return counter.get_total_flops()


def model_flops(variant: Variant, tokens: int, row_length: int) -> tuple[int, float]:
    """(parameters, training FLOPs per step)."""
    with torch.device("meta"):
        model = build(variant, torch.device("meta"))
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    cfg = variant.config
    attention = 0
    if cfg.model.architecture == "transformer":
        attention += 12 * cfg.model.n_layers * cfg.model.d_model * row_length * tokens
    if variant.with_phi:
        attention += 12 * model.phi.config.prior_width * row_length * tokens
    return params, 6 * params * tokens + attention


def bench_preset(preset: str, args: argparse.Namespace, device: torch.device) -> None:
    batch_size, row_length = args.batch_size, args.row_length
    if device.type == "cpu" and preset in CPU_SHAPES:
        batch_size = batch_size or CPU_SHAPES[preset][0]
        row_length = row_length or CPU_SHAPES[preset][1]
    shape = [f"train.batch_size={batch_size}"] if batch_size else []
    if row_length:
        shape += [f"data.row_length={row_length}"]
    variants = [Variant("no PHi layer", load_run_config(preset, shape), with_phi=False)]
    variants += [Variant(b, load_run_config(preset, shape, b), True) for b in registry.names()]
    config = variants[0].config
    batch = build_source(config).batches(0, config.train.batch_size)[0].to(device)
    rows, length = batch.shape
    model = config.model
    print(
        f"\npreset {preset}: {model.architecture} d={model.d_model} layers={model.n_layers}, PHi after block "
        f"{model.phi_after}; batch {rows} × {length} (fill {batch.fill_ratio:.0%}), packed={config.data.pack}; "
        f"{device.type}, {torch.get_num_threads()} thread(s), {args.rounds} rounds × {args.steps} steps, "
        f"torch.compile {'on' if args.compile else 'off'}"
    )
    counted = {v.name: counted_flops(v, batch, device) for v in variants}
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    gemm: list[float] = []
    for round_ in range(args.rounds):
        gemm.append(gemm_flops(device, args.gemm_size))
        for variant in variants if round_ % 2 == 0 else variants[::-1]:  # no variant always runs first
            times[variant.name].append(time_steps(variant, batch, args.steps, device, args.compile))
            gc.collect()  # the previous variant's model and optimizer state, before the next is built
    peak = max(gemm)
    tokens = rows * length
    base = times["no PHi layer"]
    print(
        f"{'variant':<14} {'params':>8} {'ms/step':>8} {'tokens/s':>9} {'time ÷ base (range)':>20} "
        f"{'FLOP ÷ base':>11} {'time/FLOP':>9} {'GFLOP/step':>10} {'GFLOP/s':>8} {'MFU':>6} {'MFU (counted)':>13}"
    )
    for variant in variants:
        seconds = min(times[variant.name])  # the least disturbed measurement
        ratios = [t / b for b, t in zip(base, times[variant.name], strict=True)]  # step-time ratio, same round
        params, flops = model_flops(variant, tokens, length)
        time_ratio = statistics.median(ratios)
        flop_ratio = counted[variant.name] / counted["no PHi layer"]
        spread = f"{time_ratio:.2f} ({min(ratios):.2f}–{max(ratios):.2f})"
        print(
            f"{variant.name:<14} {params / 1e6:>7.2f}M {seconds * 1e3:>8.1f} {tokens / seconds:>9.0f} {spread:>20} "
            f"{flop_ratio:>11.2f} {time_ratio / flop_ratio:>9.2f} {flops / 1e9:>10.2f} {flops / seconds / 1e9:>8.2f} "
            f"{flops / seconds / peak:>6.1%} {counted[variant.name] / seconds / peak:>13.1%}"
        )
    print("time/FLOP: step-time ratio ÷ counted-FLOP ratio, target ≤ 1.25; MFU target ≥ 0.4 (cpu), ≥ 0.7 (paper)")
    print(
        f"{str(gemm_dtype(device)).removeprefix('torch.')} GEMM {args.gemm_size}³: {peak / 1e9:.1f} GFLOP/s (best round; rounds: "
        f"{', '.join(f'{g / 1e9:.1f}' for g in gemm)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", action="append", help="preset or YAML file (repeatable; default cpu-quick, paper)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, help="rows per step for every preset (default: the preset's)")
    parser.add_argument("--row-length", type=int, help="tokens per row for every preset (default: the preset's)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--gemm-size", type=int, default=2048)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="time torch.compile'd models (train.compile=true)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with flushing_denormals():  # as the trainer runs its steps
        for preset in args.preset or ["cpu-quick", "paper"]:
            bench_preset(preset, args, device)


if __name__ == "__main__":
    main()
