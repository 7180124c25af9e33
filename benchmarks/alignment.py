"""Cost of speaker attention alignment at prefill and in a LoRA training step, side by side in one run.

    python benchmarks/alignment.py [--layers 8 --hidden 1024 --tokens 3000 --repeats 3] [--no-train]
    python benchmarks/alignment.py --preset qwen2.5-vl-7b --device cuda --dtype bfloat16   # on a GPU

A randomly initialised Qwen2.5-VL-shaped model (the language model is what the alignment
touches; the prompt carries no pixels) prefills about 3,000 tokens, of which 1,200 stand for
visual tokens (8 frames) and 800 for transcript lines (4 speakers), three ways:
plain SDPA, the efficient alignment, and the dense reference. Prints the median prefill time,
the peak memory above the resident size before the prefill (sampled every 2 ms) and the time
inside the aligned layers' attention modules, and the ratios: aligned / plain (goals: time <=
1.15x, memory <= 1.10x) and dense / aligned (goal: the efficient path at least 3x faster).
Random weights spread attention evenly, so every head passes lambda: the worst case for cost
(trained models activate about 9% of heads).

The training step is ``socialpipe finetune``'s: LoRA (rank 128 on every linear layer of the language
model) with gradient checkpointing, forward and backward of a loss on the last 16 tokens, aligned
against plain (goals: time <= 1.15x, memory <= 1.10x). On a GPU, memory is the CUDA allocator's peak
above what was allocated before the step; on the CPU, the resident size sampled every 2 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import threading
import time

import numpy as np
import psutil
import torch

from socialpipe.pipeline.contracts.config import AnswerConfig
from socialpipe.stages.answer.attention import enable, language_layers, speaker_alignment
from socialpipe.stages.answer.plan import SequencePlan, SpeakerGroup
from tests.stages.dense_reference import dense_attention


# Qwen2.5-VL-7B-Instruct's language model (its config.json): the real-size shape for a GPU run
PRESETS = {"qwen2.5-vl-7b": {"layers": 28, "hidden": 3584, "heads": 28, "kv_heads": 4, "intermediate": 18944,
                             "vocab": 152064}}


def build_model(layers: int, hidden: int, heads: int, kv_heads: int, intermediate: int | None = None,
                vocab: int = 32000, device: str = "cpu", dtype=torch.float32):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    half = hidden // heads // 2  # rotary frequencies per head, split over (time, height, width) as Qwen's 16/24/24 of 64
    section = [half // 4, 3 * half // 8, half - half // 4 - 3 * half // 8]
    config = Qwen2_5_VLConfig(
        text_config={"vocab_size": vocab, "hidden_size": hidden, "intermediate_size": intermediate or 2 * hidden,
                     "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
                     "max_position_embeddings": 8192, "rope_scaling": {"type": "mrope", "mrope_section": section}},
        vision_config={"depth": 1, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2,
                       "out_hidden_size": hidden},
        attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(device):  # weights made where they run (a 7B model never passes through CPU memory)
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    return model.eval()


def make_plan(tokens: int, visual: int, transcript: int, frames: int = 8, speakers: int = 4) -> SequencePlan:
    """Visual tokens from 200, transcript lines after them; each speaker owns a quarter of each frame."""
    per_frame = visual // frames
    first_line = 200 + visual + 100
    lines = 20
    per_line = transcript // lines
    assert first_line + transcript < tokens
    groups = []
    for s in range(speakers):
        for f in range(frames):
            frame_start = 200 + f * per_frame
            cols = np.arange(frame_start + s * per_frame // speakers, frame_start + (s + 1) * per_frame // speakers)
            rows = [np.arange(first_line + i * per_line, first_line + (i + 1) * per_line)
                    for i in range(lines) if i % speakers == s and i * frames // lines == f]
            if rows:
                groups.append(SpeakerGroup(f"S{s}", f, np.concatenate(rows), cols))
    return SequencePlan(tuple(groups))


class LayerClock:
    """Seconds spent inside chosen attention modules (forward hooks)."""

    def __init__(self, modules):
        self.seconds, self.started = 0.0, 0.0
        for module in modules:
            module.register_forward_pre_hook(self.start)
            module.register_forward_hook(self.stop)

    def start(self, *_):
        self.started = time.perf_counter()

    def stop(self, *_):
        self.seconds += time.perf_counter() - self.started


def measure(run, repeats: int, clock: LayerClock, device: str = "cpu") -> tuple[float, float, float]:
    """Median seconds, peak memory (MB) above the level before each run, and median seconds inside
    the aligned layers' attention. CUDA: the allocator's peak; CPU: resident size sampled every 2 ms."""
    if device.startswith("cuda"):
        return _measure_cuda(run, repeats, clock)
    process = psutil.Process()
    times, peaks, inside = [], [], []
    for _ in range(repeats):
        clock.seconds = 0.0
        base = process.memory_info().rss
        peak = [base]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.002)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
        done.set()
        sampler.join()
        peaks.append((peak[0] - base) / 2**20)
        inside.append(clock.seconds)
    return statistics.median(times), max(peaks), statistics.median(inside)


def _measure_cuda(run, repeats: int, clock: LayerClock) -> tuple[float, float, float]:
    times, peaks, inside = [], [], []
    for _ in range(repeats):
        clock.seconds = 0.0
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        run()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
        peaks.append((torch.cuda.max_memory_allocated() - base) / 2**20)
        inside.append(clock.seconds)
    return statistics.median(times), max(peaks), statistics.median(inside)


class CudaLayerClock(LayerClock):
    """LayerClock that waits for the GPU at each boundary (kernels run asynchronously)."""

    def start(self, *_):
        torch.cuda.synchronize()
        super().start()

    def stop(self, *_):
        torch.cuda.synchronize()
        super().stop()


def training_step(model, ids, plan, settings, aligned: bool, answer_tokens: int = 16):
    """One LoRA forward + backward: mean next-token loss on the last ``answer_tokens`` tokens."""
    model.zero_grad(set_to_none=True)
    block = speaker_alignment(model.get_base_model(), [plan], settings) if aligned else contextlib.nullcontext()
    with block:
        logits = model(input_ids=ids, use_cache=False, logits_to_keep=answer_tokens + 1).logits.float()
        targets = ids[:, -answer_tokens:]
        loss = -logits[:, :-1].log_softmax(dim=-1).gather(2, targets[..., None]).mean()
        loss.backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), help="A real model's shape (overrides the sizes below).")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--no-train", dest="train", action="store_false", help="Prefill only.")
    parser.add_argument("--no-dense", dest="dense", action="store_false", help="Skip the dense reference.")
    parser.add_argument("--rank", type=int, default=128, help="LoRA rank of the training step.")
    args = parser.parse_args()
    sizes = PRESETS[args.preset] if args.preset else {"layers": args.layers, "hidden": args.hidden,
                                                      "heads": args.heads, "kv_heads": args.kv_heads}
    dtype = getattr(torch, args.dtype)
    model = build_model(**sizes, device=args.device, dtype=dtype)
    vocab = model.config.text_config.vocab_size
    ids = torch.randint(100, vocab, (1, args.tokens), device=args.device)
    plan = make_plan(args.tokens, visual=1200, transcript=800)
    settings = AnswerConfig()  # the defaults: middle layers, lambda 5e-5, alpha 1, logit source

    def prefill():
        with torch.no_grad():
            model(input_ids=ids, use_cache=False, logits_to_keep=1)

    attention = language_layers(model)
    cuda = args.device.startswith("cuda")
    clock = (CudaLayerClock if cuda else LayerClock)([attention[i] for i in settings.layers(len(attention))])
    prefill()  # warm-up
    plain = measure(prefill, args.repeats, clock, args.device)
    enable(model)

    def aligned():
        with speaker_alignment(model, [plan], settings) as report:
            prefill()
        aligned.report = report

    def dense():
        with speaker_alignment(model, [plan], settings, reference=dense_attention):
            prefill()

    aligned()  # warm-up
    efficient = measure(aligned, args.repeats, clock, args.device)
    reference = measure(dense, args.repeats, clock, args.device) if args.dense else None
    report = aligned.report
    layers = sorted(report.active_head_ratio)
    print(f"model: {sizes['layers']} layers, hidden {sizes['hidden']}, {sizes['heads']} heads ({sizes['kv_heads']} kv), "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters, {args.dtype} on {args.device}"
          f"{' (' + torch.cuda.get_device_name() + ')' if cuda else ''}; aligned layers {layers}")
    print(f"prompt: {args.tokens} tokens, |V_all| {len(plan.cols)}, |U| {len(plan.rows)}, {len(plan.groups)} groups")
    print("prefill:")
    rows = [("plain SDPA", plain), ("aligned", efficient)] + ([("dense reference", reference)] if reference else [])
    for name, (seconds, megabytes, inside) in rows:
        print(f"  {name:<16} {seconds:7.3f} s   peak +{megabytes:8.1f} MB   attention in aligned layers {inside:6.3f} s")
    print(f"aligned / plain:  time {efficient[0] / plain[0]:.3f}x (goal <= 1.05x), "
          f"memory {efficient[1] / max(plain[1], 1e-9):.3f}x (goal <= 1.10x)")
    if reference:
        print(f"dense / aligned:  prefill time {reference[0] / efficient[0]:.2f}x, attention time in the aligned "
              f"layers {reference[2] / efficient[2]:.2f}x (goal >= 3x), memory "
              f"{reference[1] / max(efficient[1], 1e-9):.2f}x")
    print(f"active heads: {', '.join(f'layer {k} {v:.0%}' for k, v in report.active_head_ratio.items())}; "
          f"AttnMax {report.attn_max_before:.4f} -> {report.attn_max_after:.4f}, "
          f"AttnMean {report.attn_mean_before:.5f} -> {report.attn_mean_after:.5f}")
    if args.train:
        from socialpipe.pipeline.contracts.config import FinetuneConfig
        from socialpipe.stages.answer.lora import add_lora

        lora = add_lora(model, FinetuneConfig(rank=args.rank, lora_alpha=2.0 * args.rank, lora_dropout=0.0))
        lora.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        lora.train()
        trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
        training_step(lora, ids, plan, settings, aligned=False)  # warm-up: gradients allocated once
        plain_step = measure(lambda: training_step(lora, ids, plan, settings, aligned=False), args.repeats, clock,
                             args.device)
        training_step(lora, ids, plan, settings, aligned=True)
        aligned_step = measure(lambda: training_step(lora, ids, plan, settings, aligned=True), args.repeats, clock,
                               args.device)
        print(f"training step (LoRA rank {args.rank}, {trainable / 1e6:.0f}M trainable, gradient checkpointing, "
              "forward + backward):")
        for name, (seconds, megabytes, inside) in (("plain", plain_step), ("aligned", aligned_step)):
            print(f"  {name:<16} {seconds:7.3f} s   peak +{megabytes:8.1f} MB   attention in aligned layers "
                  f"{inside:6.3f} s")
        print(f"aligned / plain:  time {aligned_step[0] / plain_step[0]:.3f}x (goal <= 1.15x), "
              f"memory {aligned_step[1] / max(plain_step[1], 1e-9):.3f}x (goal <= 1.10x)")


if __name__ == "__main__":
    main()
