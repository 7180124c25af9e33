"""Speaker attention alignment on tiny Qwen2.5-VL, LLaVA-NeXT-Video and InternVL models, each saved to
a folder and loaded back through ``from_pretrained``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from socialpipe.pipeline.contracts.boxes import Boxes
from socialpipe.pipeline.contracts.config import AnswerConfig
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.stages.answer.attention import enable, language_layers, speaker_alignment
from socialpipe.stages.answer.plan import SequencePlan, SpeakerGroup
from socialpipe.stages.answer.families import family_of, frame_grids, visual_token_id
from socialpipe.stages.answer.layout import FrameGrid, LayoutError, frames_covered, line_token_spans, speaker_plan
from tests.stages.dense_reference import dense_attention
from tests.tiny_models import internvl, llava_next_video, qwen2_5_vl

BUILDERS = {"qwen2_5_vl": qwen2_5_vl, "llava_next_video": llava_next_video, "internvl": internvl}

LINES = ["Alice [00:00-00:02]: Good morning everyone.", "Bob [00:01-00:03]: Happy to be here.",
         "Alice [00:03-00:04]: Shall we start?"]
SPEAKERS = ["Alice", "Bob", "Alice"]
SPANS_S = [(0.0, 2.0), (1.0, 3.0), (3.0, 4.0)]
ALL_LAYERS = AnswerConfig(head_threshold=0.0, layer_range=(0.0, 1.0))


@pytest.fixture(scope="module", params=list(BUILDERS))
def tiny(request, tmp_path_factory):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = BUILDERS[request.param](tmp_path_factory.mktemp("models") / request.param)
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder, attn_implementation="sdpa").eval()
    return processor, model


def encode(processor, frame_count: int, size=(333, 197), lines=LINES, seed=0, batch=1, padding_side="left"):
    frames = [list(np.random.default_rng(seed + b).integers(0, 255, (frame_count, size[1], size[0], 3),
                                                            dtype=np.uint8)) for b in range(batch)]
    texts = []
    for b in range(batch):
        body = "\n".join(lines[: len(lines) - b]) + "\nQuestion: who is talking to whom?"
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": body}]}]
        texts.append(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    processor.tokenizer.padding_side = padding_side
    inputs = processor(text=texts, videos=frames, return_tensors="pt", padding=True, return_offsets_mapping=True)
    offsets = inputs.pop("offset_mapping")
    return texts, inputs, offsets


def plans_for(processor, model, texts, inputs, offsets, frame_count, size=(333, 197), boxes=None):
    grids = frame_grids(processor, inputs, size, frame_count, model.config)
    times = np.linspace(0.25, 3.75, frame_count)
    boxes = boxes if boxes is not None else {(s, f): ((10, 10, 150, 180) if s == "Alice" else (180, 10, 320, 180))
                                             for s in ("Alice", "Bob") for f in range(frame_count)}
    plans = []
    for b, text in enumerate(texts):
        present = [line for line in LINES if line in text]
        spans = line_token_spans(text, present, offsets[b], inputs["attention_mask"][b])
        frames = [frames_covered(s, e, times) for s, e in SPANS_S[:len(present)]]
        plans.append(speaker_plan(grids[b], SPEAKERS[:len(present)], spans, frames, Boxes.from_labelled(boxes)))
    return grids, plans


@pytest.mark.parametrize("frame_count, size", [(2, (333, 197)), (4, (640, 360)), (6, (250, 411))])
def test_grids_match_the_processor_output(tiny, frame_count, size):
    processor, model = tiny
    texts, inputs, offsets = encode(processor, frame_count, size)
    (grids,) = frame_grids(processor, inputs, size, frame_count, model.config)
    visual = np.flatnonzero(inputs["input_ids"][0].numpy() == visual_token_id(model.config))
    covered = np.concatenate([g.first_token + np.arange(g.token_count) for g in grids])
    assert np.array_equal(covered, visual)
    assert sorted(f for g in grids for f in g.frames) == list(range(frame_count))
    if model.config.model_type == "qwen2_5_vl":
        t, h, w = inputs["video_grid_thw"][0].tolist()
        assert len(grids) == t == frame_count // 2 and (grids[0].rows, grids[0].cols) == (h // 2, w // 2)
    whole = grids[0].tokens_in_box((0, 0, size[0], size[1]))
    assert np.array_equal(whole, grids[0].first_token + np.arange(grids[0].token_count))


@pytest.mark.parametrize("box", [(40, 30, 140, 120), (250, 100, 330, 190)])
def test_box_transform_matches_the_processed_pixels(tiny, box):
    """A white box drawn on black frames lands where the grid's transform puts it."""
    processor, model = tiny
    if model.config.model_type == "qwen2_5_vl":
        pytest.skip("Qwen2.5-VL hands back flattened patches; its transform is a plain resize checked above")
    size = (333, 197)
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    frame[box[1]:box[3], box[0]:box[2]] = 255
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "video"}, {"type": "text",
                                                                                            "text": "hi"}]}],
                                         add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], videos=[[frame, frame]], return_tensors="pt")
    pixels = inputs["pixel_values_videos"][0, 0] if "pixel_values_videos" in inputs else inputs["pixel_values"][0]
    bright = np.argwhere(pixels.mean(dim=0).numpy() > 0.5)  # (y, x) in processed pixels
    (grid, *_), = frame_grids(processor, inputs, size, 2, model.config)
    expected = [box[0] * grid.scale_x - grid.offset_x, box[1] * grid.scale_y - grid.offset_y,
                box[2] * grid.scale_x - grid.offset_x, box[3] * grid.scale_y - grid.offset_y]
    found = [bright[:, 1].min(), bright[:, 0].min(), bright[:, 1].max() + 1, bright[:, 0].max() + 1]
    limit = [pixels.shape[-1], pixels.shape[-2]] * 2
    expected = [min(max(v, 0), lim) for v, lim in zip(expected, limit)]
    assert np.allclose(found, expected, atol=3), (found, expected)


def test_box_cells_follow_the_resize():
    grid = FrameGrid(first_token=100, rows=4, cols=6, frames=(0, 1), scale_x=168 / 333, scale_y=112 / 197)
    left_half = grid.tokens_in_box((0, 0, 333 / 2, 197))  # processed: x 0..84 -> cell centres 14, 42, 70
    assert sorted(set((left_half - 100) % 6)) == [0, 1, 2] and len(left_half) == 12
    tiny_box = grid.tokens_in_box((200, 100, 201, 101))  # covers no centre: the cell holding its centre
    assert tiny_box.tolist() == [100 + int(100 * 112 / 197 // 28) * 6 + int(200 * 168 / 333 // 28)]
    assert grid.tokens_in_box((900, 900, 950, 950)).size == 0


def test_line_spans_decode_to_the_lines(tiny):
    processor, _ = tiny
    texts, inputs, offsets = encode(processor, 4)
    spans = line_token_spans(texts[0], LINES, offsets[0])
    for line, span in zip(LINES, spans):
        assert processor.tokenizer.decode(inputs["input_ids"][0][span]).strip() == line
    with pytest.raises(LayoutError, match="not in the prompt"):
        line_token_spans(texts[0], ["Zed: never said"], offsets[0])


def test_frames_covered_uses_the_nearest_frame_when_none_falls_inside():
    assert frames_covered(0.0, 2.0, [0.5, 1.5, 2.5]) == [0, 1]
    assert frames_covered(1.7, 1.9, [0.5, 1.5, 2.5]) == [1]


def test_unsupported_family_is_a_clear_error():
    class Config:
        model_type = "llama"

    with pytest.raises(LayoutError, match="'llama' is not supported by the alignment yet"):
        family_of(Config())


def logits(model, inputs, **kwargs):
    with torch.no_grad():
        return model(**inputs, **kwargs).logits


def test_alpha_zero_and_empty_plans_change_nothing(tiny):
    processor, model = tiny
    texts, inputs, offsets = encode(processor, 4)
    baseline = logits(model, inputs)
    enable(model)
    try:
        _, plans = plans_for(processor, model, texts, inputs, offsets, 4)
        assert torch.equal(logits(model, inputs), baseline)  # enabled, no plan active
        with speaker_alignment(model, plans, AnswerConfig(alpha=0.0, head_threshold=0.0)):
            assert torch.equal(logits(model, inputs), baseline)
        with speaker_alignment(model, [SequencePlan()], ALL_LAYERS, chunk_rows=16):
            assert torch.equal(logits(model, inputs), baseline)
        _, no_boxes = plans_for(processor, model, texts, inputs, offsets, 4, boxes={})
        assert no_boxes[0].empty
        with speaker_alignment(model, no_boxes, ALL_LAYERS, chunk_rows=16):
            assert torch.equal(logits(model, inputs), baseline)
    finally:
        model.set_attn_implementation("sdpa")


def test_efficient_path_matches_the_dense_reference(tiny):
    processor, model = tiny
    texts, inputs, offsets = encode(processor, 4)
    baseline = logits(model, inputs)
    enable(model)
    try:
        _, plans = plans_for(processor, model, texts, inputs, offsets, 4)
        settings = AnswerConfig(alpha=2.0, head_threshold=0.0, layer_range=(0.25, 0.75))
        with speaker_alignment(model, plans, settings, chunk_rows=7) as fast:
            efficient = logits(model, inputs)
        with speaker_alignment(model, plans, settings, reference=dense_attention) as slow:
            dense = logits(model, inputs)
        prob = AnswerConfig(alpha=50.0, bias_source="prob", head_threshold=0.0, layer_range=(0.25, 0.75))
        with speaker_alignment(model, plans, prob):
            prob_efficient = logits(model, inputs)
        with speaker_alignment(model, plans, prob, reference=dense_attention):
            prob_dense = logits(model, inputs)
    finally:
        model.set_attn_implementation("sdpa")
    assert (efficient - dense).abs().max() < 1e-4
    assert (efficient - baseline).abs().max() > 1e-4  # the bias did something
    first_row = int(plans[0].rows.min())
    assert (efficient[0, :first_row] - baseline[0, :first_row]).abs().max() < 1e-5  # causal: earlier rows untouched
    for name in ("attn_max_before", "attn_mean_before", "attn_max_after", "attn_mean_after"):
        assert getattr(fast, name) == pytest.approx(getattr(slow, name), rel=1e-4)
    assert fast.attn_max_after > fast.attn_max_before and fast.attn_mean_after > fast.attn_mean_before
    assert set(fast.active_head_ratio) == {1, 2}  # the middle half of 4 layers
    assert (prob_efficient - prob_dense).abs().max() < 1e-4
    assert (prob_efficient - efficient).abs().max() > 1e-5  # a different bias source gives a different bias


def test_only_active_heads_and_rows_in_u_change(tiny):
    """At the attention function: the outputs of inactive heads and of rows outside U equal SDPA's."""
    processor, model = tiny
    texts, inputs, offsets = encode(processor, 4)
    enable(model)
    captured = {}
    attention = language_layers(model)

    def keep(name):
        def hook(module, args, kwargs, output):
            captured.setdefault(name, []).append(output[0].detach().clone())
        return hook

    handle = attention[1].register_forward_hook(keep("layer1"), with_kwargs=True)
    try:
        _, plans = plans_for(processor, model, texts, inputs, offsets, 4)
        logits(model, inputs)
        # a threshold that only some heads pass
        with speaker_alignment(model, plans, AnswerConfig(alpha=3.0, head_threshold=0.0, layer_range=(0.25, 0.5))):
            logits(model, inputs)
    finally:
        handle.remove()
        model.set_attn_implementation("sdpa")
    plain, aligned = captured["layer1"]  # (1, N, hidden) after o_proj: compare the rows
    outside = np.setdiff1d(np.arange(plain.shape[1]), plans[0].rows)
    # the aligned layer takes SDPA's output from torch's fused kernel with its normalisers: the same
    # attention, possibly another kernel than the plain call's, so equal to float rounding
    assert torch.allclose(plain[0, outside], aligned[0, outside], rtol=0, atol=1e-6)
    assert not torch.allclose(plain[0, plans[0].rows], aligned[0, plans[0].rows], rtol=0, atol=1e-4)


def test_generate_with_cache_biases_only_the_prefill(tiny):
    processor, model = tiny
    texts, inputs, offsets = encode(processor, 4)
    enable(model)
    try:
        _, plans = plans_for(processor, model, texts, inputs, offsets, 4)
        with speaker_alignment(model, plans, ALL_LAYERS, chunk_rows=16) as report:
            generated = model.generate(**inputs, max_new_tokens=4, do_sample=False, use_cache=True)
    finally:
        model.set_attn_implementation("sdpa")
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 4
    assert set(report.aligned_calls.values()) == {1}  # the prefill only, not the 3 decoding steps
    assert all(ratio == 1.0 for ratio in report.active_head_ratio.values())
    assert report.attn_max_after > report.attn_max_before


def test_batch_of_two_with_padding(tiny):
    processor, model = tiny
    texts, inputs, offsets = encode(processor, 4, batch=2)
    assert (inputs["attention_mask"][1] == 0).any()  # the second prompt is shorter: left padding
    enable(model)
    try:
        _, plans = plans_for(processor, model, texts, inputs, offsets, 4)
        settings = AnswerConfig(alpha=1.5, head_threshold=0.0, layer_range=(0.0, 1.0))
        with speaker_alignment(model, plans, settings):
            batched = logits(model, inputs)
        with speaker_alignment(model, plans, settings, reference=dense_attention):
            dense = logits(model, inputs)
        single_texts, single_inputs, single_offsets = encode(processor, 4, batch=1)
        _, single_plans = plans_for(processor, model, single_texts, single_inputs, single_offsets, 4)
        with speaker_alignment(model, single_plans, settings):
            alone = logits(model, single_inputs)
        short_texts, short_inputs, short_offsets = encode(processor, 4, lines=LINES[:2], seed=1)
        _, short_plans = plans_for(processor, model, short_texts, short_inputs, short_offsets, 4)
        with speaker_alignment(model, short_plans, settings):
            short_alone = logits(model, short_inputs)
    finally:
        model.set_attn_implementation("sdpa")
    real = inputs["attention_mask"].bool()  # padding positions have no meaningful logits
    assert (batched - dense)[real].abs().max() < 1e-4
    assert (batched[0, -1] - alone[0, -1]).abs().max() < 1e-4
    assert (batched[1, -1] - short_alone[0, -1]).abs().max() < 1e-4  # the padded row, aligned as if alone


def test_settings_validate_their_values():
    """The alignment reads the answer settings themselves: there is no second copy to drift."""
    with pytest.raises(InputError, match="bias_source"):
        AnswerConfig(bias_source="both")
    with pytest.raises(InputError, match="layer_range"):
        AnswerConfig(layer_range=(0.6, 0.4))
    with pytest.raises(InputError, match="answer.alpha: -1.0 is outside the allowed range >= 0"):
        AnswerConfig(alpha=-1.0)
    assert AnswerConfig().layers(28) == list(range(10, 20))
    with pytest.raises(ValueError, match="chunk_rows"):
        with speaker_alignment(None, [], AnswerConfig(), chunk_rows=0):
            pass


def test_a_group_without_rows_or_columns_is_ignored():
    plan = SequencePlan((SpeakerGroup("A", 0, np.array([5, 6]), np.zeros(0, np.int64)),))
    assert plan.empty and plan.rows.size == 0


def test_heatmaps_show_attention_moving_onto_the_speaker(tiny, tmp_path):
    import cv2

    from socialpipe.stages.answer.diagnostics import box_share, render_heatmaps

    processor, model = tiny
    size = (333, 197)
    texts, inputs, offsets = encode(processor, 4, size)
    enable(model)
    try:
        grids, plans = plans_for(processor, model, texts, inputs, offsets, 4, size)
        settings = AnswerConfig(alpha=2.0, head_threshold=0.0, layer_range=(0.25, 0.75))
        with speaker_alignment(model, plans, settings, heatmap_speaker="Alice") as report:
            logits(model, inputs)
    finally:
        model.set_attn_implementation("sdpa")
    boxes = Boxes.from_labelled({(s, f): ((10, 10, 150, 180) if s == "Alice" else (180, 10, 320, 180))
                                 for s in ("Alice", "Bob") for f in range(4)})
    visual = plans[0].visual
    assert report.heatmap_before.shape == report.heatmap_after.shape == (len(visual),)
    assert box_share(grids[0], report.heatmap_after, visual, boxes, "Alice") > \
        box_share(grids[0], report.heatmap_before, visual, boxes, "Alice")
    frames = [np.full((size[1], size[0], 3), 120, np.uint8)] * 4
    path = render_heatmaps(tmp_path / "alice.png", frames, grids[0], visual, report.heatmap_before,
                           report.heatmap_after, boxes, "Alice")
    picture = cv2.imread(str(path))
    assert picture is not None and picture.shape[0] > 300 and picture.shape[1] == 4 * 320


def test_inactive_heads_keep_their_sdpa_output():
    """Directly on the attention function: a head whose speaker-text -> box attention stays under
    lambda is left exactly as SDPA computed it; the active head's U rows change, other rows do not."""
    from socialpipe.stages.answer.attention import _STATE_ATTRIBUTE, _State, aligned_attention
    from socialpipe.stages.answer.diagnostics import LayerStats

    torch.manual_seed(0)
    heads, n, dim = 2, 24, 8
    query, key, value = torch.randn(1, heads, n, dim), torch.randn(1, heads, n, dim), torch.randn(1, heads, n, dim)
    key[0, 0, 2:6] = query[0, 0, 16:20].mean(dim=0) * 4  # head 0's transcript rows look hard at the box keys
    key[0, 1, 2:6] = -query[0, 1, 16:20].mean(dim=0) * 4  # head 1's look away from them
    plan = SequencePlan((SpeakerGroup("A", 0, np.arange(16, 20), np.arange(2, 6)),))

    class Attention(torch.nn.Module):
        pass

    module = Attention()
    plain, _ = aligned_attention(module, query, key, value, None, scaling=dim ** -0.5)
    state = _State((plan,), AnswerConfig(alpha=1.0, head_threshold=0.05), {id(module): 0}, None,
                   {0: LayerStats()})
    setattr(module, _STATE_ATTRIBUTE, state)
    aligned, _ = aligned_attention(module, query, key, value, None, scaling=dim ** -0.5)
    assert state.stats[0].active == [1]
    assert torch.equal(aligned[0, :, 1], plain[0, :, 1])  # (B, N, H, D): head 1 inactive, untouched
    assert torch.equal(aligned[0, :16, 0], plain[0, :16, 0]) and torch.equal(aligned[0, 20:, 0], plain[0, 20:, 0])
    assert not torch.allclose(aligned[0, 16:20, 0], plain[0, 16:20, 0])
