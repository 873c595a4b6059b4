"""Costs of a PHi layer inside a pretrained LLM, measured side by side in one run.

    python benchmarks/bench_llm.py [--model smollm2|PATH] [--tokens 512] [--repeats 3] [--device cpu] [--threads N]

1. scoring: tokens/s of `score_texts` (PHi layer on, base-model pass off) against a plain
   forward of the same model on the same text (target ≥ 0.9×);
2. training: one PHi training step of the frozen model (forward, backward into the PHi
   layer through the frozen top part, AdamW) against a plain forward (target ≤ 2×);
3. generation: tokens/s of the correctness experiment's batched sampling with a KV cache
   (`qphi.models.generation.generate`: 8 samples of one question share the prompt's pass, top-k
   sampling from the k largest logits) at batch 8 against batch 1 (target ≥ 4×), and plain
   `transformers` `generate` at batch 8 beside it.

Timings alternate between the two sides of each comparison and report medians, so a
machine shared with other work affects both sides alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from qphi.evaluation.scoring import score_texts
from qphi.models import PHiModel
from qphi.models.generation import Sampling, generate
from qphi.models.pretrained import load_pretrained, load_tokenizer
from qphi.phi import PHiConfig
from qphi.tasks.natural_language import load_nl_levels


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def side_by_side(fns: Sequence[Callable[[], object]], repeats: int, device) -> list[float]:
    """Median seconds of each of `fns`, taking turns, after one warm-up call each."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times, strict=True):
            spent.append(timed(fn, device))
    return [statistics.median(spent) for spent in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--phi-after", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=512, help="tokens of the scored / trained text")
    parser.add_argument("--new-tokens", type=int, default=32, help="generated tokens per sequence")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    base = load_pretrained(args.model).to(device)
    tokenizer = load_tokenizer(args.model)
    width, heads = base.config.hidden_size, base.config.num_attention_heads
    config = PHiConfig(d_model=width, bottleneck="continuous", prior={"n_heads": heads}, loss={"self_critic": 0.0})
    model = PHiModel(base, config, args.phi_after, freeze_base=True).to(device)
    model.phi.bottleneck.start_as_identity()
    text = next(r.assistant for r in load_nl_levels() if r.level == "literature")
    ids = torch.tensor([tokenizer(text)["input_ids"][: args.tokens]], device=device)
    text = tokenizer.decode(ids[0])
    n = ids.shape[1]
    print(f"model {args.model} ({sum(p.numel() for p in base.parameters()) / 1e6:.0f}M), PHi after block "
          f"{args.phi_after}, {n} tokens, device {device}, {torch.get_num_threads()} threads, median of {args.repeats}")  # fmt: skip

    def plain_forward() -> None:
        with torch.no_grad():
            base(input_ids=ids, use_cache=False)

    def scoring() -> None:
        score_texts(model, tokenizer, [text], base_nll=False)

    t_score, t_plain = side_by_side([scoring, plain_forward], args.repeats, device)
    ratio = t_plain / t_score
    print(f"scoring      {n / t_score:9.0f} tok/s   plain forward {n / t_plain:9.0f} tok/s   "
          f"ratio {ratio:.2f}x (target >= 0.9x)")  # fmt: skip

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def train_step() -> None:
        model.train()
        model(ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    t_train, t_plain = side_by_side([train_step, plain_forward], args.repeats, device)
    print(f"train step   {t_train * 1e3:9.0f} ms      plain forward {t_plain * 1e3:9.0f} ms      "
          f"ratio {t_train / t_plain:.2f}x (target <= 2x)")  # fmt: skip

    model.eval()
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Tell me a story about a lighthouse."}], tokenize=False, add_generation_prompt=True
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def sampling(batch: int, shared: bool = True) -> Callable[[], None]:
        """The correctness experiment's sampling (`generate`, PHi layer bypassed) of `batch` rows of
        one prompt (no stop token, so every row runs `--new-tokens` steps); shared=False is plain
        `transformers` `generate` with the same settings, which passes the prompt once per row and
        samples over the whole vocabulary."""
        options = {"temperature": 0.6, "top_k": 300, "max_new_tokens": args.new_tokens}

        def run() -> None:
            if shared:
                generate(model, [prompt_ids] * batch, pad, Sampling(**options), bottleneck=False, seed=0)
                return
            inputs = torch.tensor([prompt_ids] * batch, device=device)
            with torch.no_grad():
                base.generate(
                    input_ids=inputs,
                    attention_mask=torch.ones_like(inputs),
                    pad_token_id=pad,
                    do_sample=True,
                    min_new_tokens=args.new_tokens,
                    **options,
                )

        return run

    t8, t1, t8_plain = side_by_side([sampling(8), sampling(1), sampling(8, shared=False)], args.repeats, device)
    rate8, rate1, rate8_plain = (k * args.new_tokens / t for k, t in ((8, t8), (1, t1), (8, t8_plain)))
    print(f"generation   {rate8:9.1f} tok/s at batch 8   {rate1:9.1f} tok/s at batch 1   "
          f"ratio {rate8 / rate1:.2f}x (target >= 4x); {len(prompt_ids)}-token prompt, {args.new_tokens} new tokens")  # fmt: skip
    print(f"             {rate8_plain:9.1f} tok/s at batch 8 with plain generate (prompt per row, full-vocabulary sampling): "
          f"ratio {rate8_plain / rate1:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
