"""Cost of speaker attention alignment at prefill, measured side by side in one run.

    python benchmarks/alignment.py [--layers 8 --hidden 1024 --tokens 3000 --repeats 3]

A randomly initialised Qwen2.5-VL-shaped model (the language model is what the alignment
touches; the prompt carries no pixels) prefills about 3,000 tokens, of which 1,200 stand for
visual tokens (8 frames) and 800 for transcript lines (4 speakers), three ways:
plain SDPA, the efficient alignment, and the dense reference. Prints the median prefill time,
the peak memory above the resident size before the prefill (sampled every 2 ms) and the time
inside the aligned layers' attention modules, and the ratios: aligned / plain (goals: time <=
1.15x, memory <= 1.10x) and dense / aligned (goal: the efficient path at least 3x faster).
Random weights spread attention evenly, so every head passes lambda: the worst case for cost
(trained models activate about 9% of heads).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np
import psutil
import torch

from socialpipe.pipeline.config import AnswerConfig
from socialpipe.stages.answer.attention import enable, language_layers, speaker_alignment
from socialpipe.stages.answer.plan import SequencePlan, SpeakerGroup
from tests.stages.dense_reference import dense_attention


def build_model(layers: int, hidden: int, heads: int, kv_heads: int):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    half = hidden // heads // 2  # rotary frequencies per head, split over (time, height, width) as Qwen's 16/24/24 of 64
    section = [half // 4, 3 * half // 8, half - half // 4 - 3 * half // 8]
    config = Qwen2_5_VLConfig(
        text_config={"vocab_size": 32000, "hidden_size": hidden, "intermediate_size": 2 * hidden,
                     "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
                     "max_position_embeddings": 8192, "rope_scaling": {"type": "mrope", "mrope_section": section}},
        vision_config={"depth": 1, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2,
                       "out_hidden_size": hidden},
        attn_implementation="sdpa")
    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


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


def measure(run, repeats: int, clock: LayerClock) -> tuple[float, float, float]:
    """Median seconds, peak resident memory (MB) above the level before each run, and median seconds
    inside the aligned layers' attention."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = build_model(args.layers, args.hidden, args.heads, args.kv_heads)
    ids = torch.randint(100, 32000, (1, args.tokens))
    plan = make_plan(args.tokens, visual=1200, transcript=800)
    settings = AnswerConfig()  # the defaults: middle layers, lambda 5e-5, alpha 1, logit source

    def prefill():
        with torch.no_grad():
            model(input_ids=ids, use_cache=False)

    attention = language_layers(model)
    clock = LayerClock([attention[i] for i in settings.layers(len(attention))])
    prefill()  # warm-up
    plain = measure(prefill, args.repeats, clock)
    enable(model)

    def aligned():
        with speaker_alignment(model, [plan], settings) as report:
            prefill()
        aligned.report = report

    def dense():
        with speaker_alignment(model, [plan], settings, reference=dense_attention):
            prefill()

    efficient = measure(aligned, args.repeats, clock)
    reference = measure(dense, args.repeats, clock)
    report = aligned.report
    layers = sorted(report.active_head_ratio)
    print(f"model: {args.layers} layers, hidden {args.hidden}, {args.heads} heads ({args.kv_heads} kv), "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters; aligned layers {layers}")
    print(f"prompt: {args.tokens} tokens, |V_all| {len(plan.cols)}, |U| {len(plan.rows)}, {len(plan.groups)} groups")
    for name, (seconds, megabytes, inside) in (("plain SDPA", plain), ("aligned", efficient),
                                               ("dense reference", reference)):
        print(f"  {name:<16} {seconds:7.3f} s   peak +{megabytes:8.1f} MB   attention in aligned layers {inside:6.3f} s")
    print(f"aligned / plain:  time {efficient[0] / plain[0]:.3f}x (goal <= 1.15x), "
          f"memory {efficient[1] / max(plain[1], 1e-9):.3f}x (goal <= 1.10x)")
    print(f"dense / aligned:  prefill time {reference[0] / efficient[0]:.2f}x, attention time in the aligned layers "
          f"{reference[2] / efficient[2]:.2f}x (goal >= 3x), memory {reference[1] / max(efficient[1], 1e-9):.2f}x")
    print(f"active heads: {', '.join(f'layer {k} {v:.0%}' for k, v in report.active_head_ratio.items())}; "
          f"AttnMax {report.attn_max_before:.4f} -> {report.attn_max_after:.4f}, "
          f"AttnMean {report.attn_mean_before:.5f} -> {report.attn_mean_after:.5f}")


if __name__ == "__main__":
    main()
