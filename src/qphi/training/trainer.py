"""The training loop.

Each step: draw this process's rows of the step's global batch, set the schedules (learning
rate, Gumbel temperature, λ_phi warm-up), run the model with its PHi layer, add the
next-token loss to the PHi layer's weighted terms, back-propagate (accumulating over
micro-batches, averaging over processes), clip the model's and the PHi layer's gradients,
and step AdamW. All randomness of step s is seeded from (seed, s, first row of the
micro-batch), so a resumed run continues exactly where an uninterrupted one would be, and
N processes train exactly like one process accumulating N micro-batches.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from qphi.errors import QPhiError
from qphi.evaluation.codebook_health import health_scalars
from qphi.io import write_json, write_text
from qphi.models import build_model
from qphi.models.pretrained import pinned_spec
from qphi.seeding import mix_seed
from qphi.tasks import Batch
from qphi.training import checkpoint, distributed
from qphi.training.config import RunConfig
from qphi.training.data import Evaluation, build_source, split_rows, training_loader
from qphi.training.logger import MetricsLogger
from qphi.training.run_dir import (
    CONFIG,
    EVAL,
    METRICS,
    RunLock,
    check_resumable,
    clean_leftovers,
    config_text,
    kept_metrics,
    latest,
    prepare,
    save_checkpoint,
    wiring,
)
from qphi.training.schedules import learning_rate


class TrainingDiverged(QPhiError):
    """A loss term became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    evaluation: Evaluation | None = None
    interrupted: bool = False
    is_main: bool = True  # False in the processes of a distributed run that do not write


def train(config: RunConfig, run_dir: str | Path, resume: bool = False, evaluate: bool = True) -> TrainResult:
    """Train (or resume) the run described by `config` in `run_dir`; with `evaluate`, finish with
    the data source's evaluation (eval.json). A pretrained model is recorded as an absolute path
    or a hub repo at its commit, so the run loads it again from anywhere."""
    if config.model.architecture == "pretrained":
        config = config.replace(model=config.model.replace(pretrained=pinned_spec(config.model.pretrained)))
    ctx = distributed.setup(config.train.device)
    try:
        return Trainer(config, Path(run_dir), ctx).fit(resume, evaluate)
    finally:
        distributed.teardown()


@contextlib.contextmanager
def flushing_denormals() -> Iterator[None]:
    """Treat subnormal floats as zero while training. On x86 CPUs arithmetic on them runs ~100×
    slower, and the self-critic's softmax gradients can be full of them (a continuous PHi layer on
    random `cpu`-shape hidden states: 205 ms per step flushed, 273 ms not, on one core)."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)  # PyTorch's default


class Trainer:
    def __init__(self, config: RunConfig, run_dir: Path, ctx: distributed.DistContext):
        self.config = config
        self.run_dir = run_dir
        self.ctx = ctx
        train = config.train
        per_step = ctx.world_size * train.grad_accum
        if train.batch_size % per_step:
            raise QPhiError(
                f"train.batch_size={train.batch_size} must be divisible by processes × grad_accum = {per_step}: "
                f"set train.batch_size to a multiple of {per_step}"
            )
        self.rows_per_rank = train.batch_size // ctx.world_size
        use_bf16 = train.precision == "bf16" or (train.precision == "auto" and ctx.device.type == "cuda")
        self.autocast = torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=use_bf16)
        self._stop_signal: int | None = None

    # ----------------------------------------------------------------- setup
    @contextlib.contextmanager
    def _claim(self) -> Iterator[None]:
        """Hold the run directory's lock (the first process only: the only one that writes) and
        clear a killed write's leftovers. Every process learns whether that worked, so none is left
        waiting for a first process that refused to start."""
        with contextlib.ExitStack() as stack:
            refusal = None
            if self.ctx.is_main:
                try:
                    stack.enter_context(RunLock(self.run_dir))
                    clean_leftovers(self.run_dir)
                except Exception as e:  # raised after every process has heard of it
                    refusal = e
            if distributed.any_across_ranks(refusal is not None, self.ctx):
                raise refusal or QPhiError(
                    "the first process of this run refused to start: see its error, fix that, and start again"
                )
            yield

    def _build(self) -> None:
        self.source = build_source(self.config)  # first: a missing data file stops the run before anything slow
        torch.manual_seed(self.config.train.seed)  # identical initial weights on every process
        self.model = build_model(self.config.model, self.config.phi).to(self.ctx.device)
        trainable = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        decay = [p for n, p in trainable if p.ndim >= 2 and "embed" not in n]
        no_decay = [p for n, p in trainable if not (p.ndim >= 2 and "embed" not in n)]
        optim = self.config.optim
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=optim.lr,
            betas=optim.betas,
            fused=self.ctx.device.type in ("cuda", "cpu"),  # one kernel per step: half the CPU time of foreach
        )
        self.phi_params = [p for p in self.model.phi.parameters() if p.requires_grad]
        phi_ids = {id(p) for p in self.phi_params}
        self.model_params = [p for _, p in trainable if id(p) not in phi_ids]
        self.net: torch.nn.Module = self.model
        if self.config.train.compile:
            self.net = torch.compile(self.net)
        if self.ctx.enabled:
            device_ids = [self.ctx.local_rank] if self.ctx.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.net, device_ids=device_ids)

    def _checkpoint(self) -> checkpoint.Checkpoint | None:
        """The checkpoint to continue from (None: start at step 0), checked whole."""
        path = latest(self.run_dir)
        if path is None:
            return None
        ckpt = checkpoint.load(path)
        check_resumable(ckpt, self.config, self.ctx.world_size)
        return ckpt

    def _restore(self, ckpt: checkpoint.Checkpoint | None) -> None:
        """The checkpoint's weights, optimizer state and unlogged metric sums, each checked
        against the model and optimizer just built."""
        self.window = _Window.restore(ckpt.state.metrics_window if ckpt else None)
        if ckpt is not None:
            checkpoint.load_weights(self.model, ckpt)
            checkpoint.load_optimizer(self.optimizer, ckpt)

    # ----------------------------------------------------------------- loop
    def fit(self, resume: bool, evaluate: bool = True) -> TrainResult:
        with self._claim():
            return self._fit(resume, evaluate)

    def _fit(self, resume: bool, evaluate: bool) -> TrainResult:
        cfg = self.config.train
        # every process checks everything (and so refuses together) before the model is built
        prepare(self.run_dir, self.config, resume)
        ckpt = self._checkpoint() if resume else None
        start = ckpt.step if ckpt else 0
        records = kept_metrics(self.run_dir, start, cfg.steps)
        self._build()
        self._restore(ckpt)
        # nothing was written until here: a refused start leaves the run directory as it was
        if self.ctx.is_main:  # an unwritable run directory fails here, as a QPhiError from write_text
            write_text(self.run_dir / CONFIG, config_text(self.config))
            if records is not None:
                write_text(self.run_dir / METRICS, records)
        logger = MetricsLogger(
            self.run_dir, self.ctx.is_main, cfg.tensorboard, cfg.wandb, self.config.model_dump(mode="json"), start
        )
        dataset = self.source.batches(self.ctx.rank * self.rows_per_rank, self.rows_per_rank)
        batches = iter(training_loader(dataset, start, cfg.num_workers))
        progress = tqdm(
            total=cfg.steps, initial=start, disable=not self.ctx.is_main, desc=self.config.name, dynamic_ncols=True
        )
        result = TrainResult(self.run_dir, start, is_main=self.ctx.is_main)
        step = start
        try:
            with self._signals(), flushing_denormals():
                while step < cfg.steps:
                    batch = next(batches).to(self.ctx.device)
                    metrics = self._train_step(step, batch)
                    step += 1
                    self.window.add(metrics, batch)
                    progress.update(1)
                    if step % cfg.log_every == 0 or step == cfg.steps:
                        result.metrics = distributed.mean_across_ranks(self.window.summary(), self.ctx)
                        result.metrics["tokens_per_s"] *= self.ctx.world_size
                        logger.log(step, "train", result.metrics)
                        progress.set_postfix(
                            loss=f"{result.metrics['loss']:.3f}",
                            nll=f"{result.metrics['nll']:.3f}",
                            phi=f"{result.metrics['phi']:.3f}",
                            tok_s=f"{result.metrics['tokens_per_s']:.0f}",
                        )
                        self.window = _Window()
                    if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
                        self._evaluate(step, logger)
                    # every process stops after the same step, even if the signal reached them apart
                    stop = distributed.any_across_ranks(self._stop_signal is not None, self.ctx)
                    if step % cfg.checkpoint_every == 0 or step == cfg.steps or stop:
                        self._save(step)
                    if stop:
                        result.interrupted = True
                        break
            result.step = step
            if step == cfg.steps and evaluate:
                result.evaluation = self._evaluate(step, logger, final=True)
        finally:
            progress.close()
            logger.close()
        return result

    def _train_step(self, step: int, batch: Batch) -> dict[str, float]:
        cfg, optim = self.config, self.config.optim
        lr = learning_rate(step, cfg.train.steps, optim.lr, optim.warmup_steps, optim.schedule, optim.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.phi.set_progress(step / max(1, cfg.train.steps - 1))
        tau = self.model.phi.bottleneck.temperature
        self.model.train()
        micro_batches = split_rows(batch, cfg.train.grad_accum)
        totals: dict[str, float] = {}
        micro_rows = self.rows_per_rank // cfg.train.grad_accum
        for i, micro in enumerate(micro_batches):
            # sampling noise follows the rows, not the process: the same global batch gets the same
            # noise whether its micro-batches run in one process or in several
            torch.manual_seed(mix_seed(cfg.train.seed, step, self.ctx.rank * self.rows_per_rank + i * micro_rows, 1))
            sync = i == len(micro_batches) - 1 or not self.ctx.enabled
            with contextlib.nullcontext() if sync else self.net.no_sync(), self.autocast:
                packed = self.config.data.pack
                out = self.net(
                    input_ids=micro.input_ids,
                    targets=micro.targets,
                    padding_mask=micro.padding_mask,
                    document_ids=micro.document_ids if packed else None,
                    positions=micro.positions if packed else None,
                    loss_mask=micro.meta.get("loss_mask"),
                )
                terms = {"nll": out.nll_mean, **out.phi.losses}
                loss = sum(terms.values())
            values = torch.stack([t.detach().float() for t in terms.values()]).tolist()
            self._check_finite(step, "loss", dict(zip(terms, values, strict=True)))
            (loss / len(micro_batches)).backward()
            mask = micro.meta.get("is_text", micro.padding_mask)
            phi_mean = (out.phi.phi * mask).sum() / mask.sum().clamp_min(1)
            for key, value in {"loss": loss, **terms, "phi_nats": phi_mean}.items():
                totals[key] = totals.get(key, 0.0) + float(value.detach()) / len(micro_batches)
        norms = self._clip()
        self._check_finite(step, "gradient norm", norms)  # before the optimizer step: never save NaN weights
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {
            "loss": totals.pop("loss"),
            "nll": totals.pop("nll"),
            "phi": totals.pop("phi_nats"),
            **{f"loss_{k}": v for k, v in totals.items()},
            "lr": lr,
            **({"tau": tau} if tau is not None else {}),
            "rate_scale": self.model.phi.rate_scale,
            **norms,
        }

    def _check_finite(self, step: int, what: str, values: dict[str, float]) -> None:
        bad = [f"{k}={v:g}" for k, v in values.items() if not math.isfinite(v)]
        if bad:
            last = latest(self.run_dir)
            kept = f"the last good checkpoint '{last.name}' is kept" if last else "no checkpoint was written"
            raise TrainingDiverged(
                f"training diverged at step {step + 1}: non-finite {what} ({', '.join(bad)}); {kept}: "
                "lower optim.lr, raise phi.loss.rate_warmup, or enable gradient clipping"
            )

    def _clip(self) -> dict[str, float]:
        max_norm = self.config.optim.grad_clip or math.inf
        groups = (
            {"grad_norm_model": self.model_params, "grad_norm_phi": self.phi_params}
            if self.config.optim.clip_phi_separately
            else {"grad_norm": self.model_params + self.phi_params}
        )
        return {
            name: float(torch.nn.utils.clip_grad_norm_(params, max_norm)) for name, params in groups.items() if params
        }

    # ----------------------------------------------------------- evaluation, saving
    def _evaluate(self, step: int, logger: MetricsLogger, final: bool = False) -> Evaluation | None:
        evaluation = None
        if self.ctx.is_main:
            evaluation = self.source.evaluate(self.model, self.ctx.device, step)
            for name, values in evaluation.levels.items():
                logger.log(step, f"eval/{name}", values)
            if evaluation.codebook_health is not None:
                logger.log(step, "eval/codebook_health", health_scalars(evaluation.codebook_health))
            if final:
                write_json(self.run_dir / EVAL, evaluation)
        if self.ctx.enabled:
            torch.distributed.barrier()
        return evaluation

    def _save(self, step: int) -> None:
        # the steps since the last metrics line, so that a resumed run writes the same next line
        window = {"sums": distributed.mean_across_ranks(self.window.sums, self.ctx), "count": self.window.count}
        if self.ctx.is_main:
            save_checkpoint(
                self.run_dir,
                step,
                self.model.trainable_state_dict(),
                self.optimizer.state_dict(),
                keep=self.config.train.keep_checkpoints,
                world_size=self.ctx.world_size,
                metrics_window=window,
                wiring=wiring(self.config),
            )
        if self.ctx.enabled:
            torch.distributed.barrier()

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """Ctrl-C / SIGTERM: finish the step, save a checkpoint, stop. A second Ctrl-C aborts."""

        def handler(signum: int, frame: Any) -> None:
            if self._stop_signal is not None:
                raise KeyboardInterrupt
            self._stop_signal = signum
            if self.ctx.is_main:
                tqdm.write("interrupted: saving a checkpoint after this step (Ctrl-C again to abort)")

        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for s in previous:
                signal.signal(s, handler)
        except ValueError:  # not the main thread: leave signals alone
            previous = {}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


class _Window:
    """Running means of step metrics between two log lines, plus throughput."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.tokens = 0
        self.start = time.perf_counter()

    @classmethod
    def restore(cls, saved: checkpoint.MetricsWindow | None) -> _Window:
        """The metric sums a checkpoint kept (throughput restarts from the resume)."""
        window = cls()
        if saved:
            window.sums, window.count = dict(saved.sums), saved.count
        return window

    def add(self, metrics: dict[str, float], batch: Batch) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1
        self.tokens += int(batch.padding_mask.sum())

    def summary(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        means = {k: v / max(1, self.count) for k, v in self.sums.items()}
        return {**means, "phi_bits": means.get("phi", 0.0) / math.log(2), "tokens_per_s": self.tokens / elapsed}
