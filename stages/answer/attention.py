"""Speaker attention alignment as a transformers attention function (docs/method.md, section 2).

For one sequence, layer and head: ``S = q k^T / sqrt(d)``, ``A = softmax(S + causal mask)``.
``U`` are the transcript tokens, grouped by (speaker s, frame t); ``V_{s,t}`` the visual tokens
inside speaker s's box on frame t; ``V_all`` their union.

- head selection: head h is active iff ``mean_{i in U, j in V_all} A[h,i,j] > lambda``;
- bias, active heads and rows in U only: ``S'[h,i,j] = S[h,i,j] + alpha * m[h,i]`` for j in the
  speaker's own ``V_{s,t}``, with ``m[h,i] = max_{j in V_all} S[h,i,j]`` ("logit") or the same max
  of ``A`` ("prob"), clamped at 0; ``A' = softmax(S' + mask)``.

The efficient path lets every row go through the model's ordinary fused attention (SDPA) and
recomputes only the ``|U| x N`` block, in chunks of rows, for the active heads. A dense
reference that builds ``S``, ``A`` and the bias matrix for the whole sequence lives beside the
tests (``tests/stages/dense_reference.py``) and plugs in through ``speaker_alignment(reference=...)``.

It is installed as a transformers attention function (``AttentionInterface`` plus the matching
``AttentionMaskInterface`` entry, without which the mask would silently be dropped). A model set
to it behaves exactly like SDPA unless a plan is active (``with speaker_alignment(model, plan):``),
and then only in the chosen decoder layers of the language model, during prefill.

Training: the bias (``m``, head selection) is computed from detached scores and carries no gradient;
the attention itself stays differentiable in queries, keys and values. With gradients on, the
efficient path writes nothing in place: the biased rows replace SDPA's by one out-of-place
``index_put``. The active plan is held by the aligned attention modules themselves (not a context
variable), so a backward pass inside the ``with`` block, which may run on autograd's own threads and
recompute checkpointed layers there, sees the same plan as the forward pass.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from socialpipe.pipeline.contracts.config import AnswerConfig
from socialpipe.stages.answer.families import decoder_layer_paths
from socialpipe.stages.answer.diagnostics import AlignmentReport, LayerStats, record_layer
from socialpipe.stages.answer.plan import SequencePlan

ATTENTION_NAME = "socialpipe_speaker_alignment"
CHUNK_BYTES = 128 << 20  # by default, rows of U are taken in chunks whose float32 scores fill about this much


@dataclass
class _State:
    plans: tuple[SequencePlan, ...]
    settings: AnswerConfig  # alpha, head_threshold, bias_source, layer_range
    layer_of: dict[int, int]  # id(attention module) -> decoder layer index
    reference: Callable | None  # a per-sequence attention that replaces the efficient path (tests)
    stats: dict[int, LayerStats]
    chunk_rows: int | None = None  # None: sized by CHUNK_BYTES
    heatmap_speaker: str | None = None
    indexes: dict[tuple, PlanIndex] = field(default_factory=dict)  # (plan, keys, device) -> its index tensors
    heatmap: dict[str, list[torch.Tensor]] = field(default_factory=lambda: {"before": [], "after": []})


_STATE_ATTRIBUTE = "_socialpipe_alignment"  # set on each aligned attention module while a plan is active


# ----------------------------------------------------------------------------- registration


def register() -> str:
    """Register the attention function and its mask function with transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, aligned_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    return ATTENTION_NAME


def decoder_layers(model) -> tuple[str, torch.nn.ModuleList]:
    """The dotted name of the language model's decoder layers in ``model`` and the layers themselves
    (never the vision tower's)."""
    for path in decoder_layer_paths():
        node = model
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if isinstance(node, torch.nn.ModuleList) and len(node) and hasattr(node[0], "self_attn"):
            return path, node
    raise ValueError(f"cannot find the language model's decoder layers in {type(model).__name__}")


def language_layers(model) -> list[torch.nn.Module]:
    """The self-attention modules of the language model's decoder layers, in order (never the vision tower)."""
    return [layer.self_attn for layer in decoder_layers(model)[1]]


def enable(model) -> None:
    """Make ``model`` use the alignment-capable attention (plain SDPA while no plan is active)."""
    register()
    model.set_attn_implementation(ATTENTION_NAME)


@contextmanager
def speaker_alignment(model, plans: list[SequencePlan], settings: AnswerConfig, reference: Callable | None = None,
                      heatmap_speaker: str | None = None, chunk_rows: int | None = None):
    """Within the block, forward passes of ``model`` (set up by :func:`enable`) apply the alignment
    to the chosen language layers during prefill, with the answer settings' alpha, lambda, bias
    source and layer range. Yields an :class:`AlignmentReport` filled in when the block ends. With
    ``heatmap_speaker``, the report also holds that speaker's attention (first sequence, mean over
    heads, rows and chosen layers) over every visual token of ``plans[0].visual``, without and with
    the bias. ``reference(query, keys, values, mask_rows, plan, state, layer, scale) -> (H, N, D)``
    replaces the efficient path for every sequence (the tests' dense reference); ``chunk_rows`` rows
    of ``U`` have their scores held at once."""
    if chunk_rows is not None and chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if model.config._attn_implementation != ATTENTION_NAME and getattr(
            getattr(model.config, "text_config", None), "_attn_implementation", None) != ATTENTION_NAME:
        raise ValueError("call socialpipe.stages.answer.attention.enable(model) before aligning it")
    attention = language_layers(model)
    chosen = settings.layers(len(attention))
    state = _State(tuple(plans), settings, {id(attention[i]): i for i in chosen}, reference,
                   {i: LayerStats() for i in chosen}, chunk_rows, heatmap_speaker)
    report = AlignmentReport(math.nan, math.nan, math.nan, math.nan, {})
    if any(hasattr(attention[i], _STATE_ATTRIBUTE) for i in chosen):
        raise RuntimeError("speaker_alignment blocks on one model cannot be nested or run at the same time")
    for i in chosen:
        setattr(attention[i], _STATE_ATTRIBUTE, state)
    try:
        yield report
    finally:
        for i in chosen:
            delattr(attention[i], _STATE_ATTRIBUTE)
        for stats in state.stats.values():
            stats.settle()  # device sums -> numbers, once per block
        pairs = sum(s.pairs for s in state.stats.values())
        if pairs:
            report.attn_max_before = sum(s.max_before for s in state.stats.values()) / pairs
            report.attn_mean_before = sum(s.mean_before for s in state.stats.values()) / pairs
            report.attn_max_after = sum(s.max_after for s in state.stats.values()) / pairs
            report.attn_mean_after = sum(s.mean_after for s in state.stats.values()) / pairs
        report.aligned_calls = {layer: len(s.active) for layer, s in state.stats.items()}
        report.active_head_ratio = {layer: (sum(s.active) / (s.heads * len(s.active)) if s.active and s.heads else 0.0)
                                    for layer, s in state.stats.items()}
        if state.heatmap["before"]:
            report.heatmap_before = torch.stack(state.heatmap["before"]).mean(dim=0).numpy()
            report.heatmap_after = torch.stack(state.heatmap["after"]).mean(dim=0).numpy()


# ----------------------------------------------------------------------------- the attention function


def aligned_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                      **kwargs):
    """transformers attention function: SDPA, plus the alignment where a plan applies."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    state = getattr(module, _STATE_ATTRIBUTE, None)
    layer = None if state is None else state.layer_of.get(id(module))
    prefill = query.shape[2] == key.shape[2]
    if layer is None or not prefill or state.settings.alpha == 0 and state.reference is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    mask = _additive_mask(attention_mask, query, key)  # (B, 1, N, N), or None meaning causal
    groups = getattr(module, "num_key_value_groups", 1)
    if state.reference is not None:
        keys, values = repeat_kv(key, groups), repeat_kv(value, groups)  # (B, H, N, D)
        out = torch.stack([state.reference(query[b], keys[b], values[b],
                                           mask_rows(mask, b, query.shape[2], None, query),
                                           state.plans[b] if b < len(state.plans) else SequencePlan(), state, layer,
                                           scale)
                           for b in range(query.shape[0])])  # (B, H, N, D)
        return out.transpose(1, 2).contiguous(), None
    if all(plan.empty for plan in state.plans[:query.shape[0]]):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    keys, values = repeat_kv(key, groups), repeat_kv(value, groups)  # (B, H, N, D)
    differentiable = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    fused = None if differentiable else _attention_with_lse(query, keys, values, mask, scale)
    if fused is not None:
        out, lse = fused  # (B, N, H, D), (B, H, N): the fused kernel's own row normalisers
    else:
        out, _ = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                        is_causal=is_causal, **kwargs)  # (B, N, H, D)
        lse = None
    replaced = []  # (sequence, rows, heads, values) of the biased rows, when they cannot be written in place
    for b, plan in enumerate(state.plans[:query.shape[0]]):
        if not plan.empty:
            replaced += _align_rows(out[b], query[b], keys[b], values[b], mask, b, plan, state, layer, scale,
                                    differentiable, None if lse is None else lse[b])
    if replaced:  # one out-of-place write that autograd follows (gradients flow to SDPA's other rows too)
        index = [torch.cat([torch.full_like(r, b) for b, r, _, _ in replaced]),
                 torch.cat([r for _, r, _, _ in replaced]), torch.cat([h for _, _, h, _ in replaced])]
        out = out.index_put(index, torch.cat([v for _, _, _, v in replaced]).to(out.dtype))
    return out, None


def _attention_with_lse(query, keys, values, mask, scale):
    """SDPA's output (B, N, H, D) and its log-normalisers (B, H, N) from torch's fused kernels, which
    compute both anyway (inference only: these kernels give no gradient for the normalisers). None where
    no kernel serves this device and input; the caller then runs SDPA and computes the transcript rows'
    normalisers itself."""
    causal = mask is None
    try:
        if query.device.type == "cpu":
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                query, keys, values, 0.0, causal, attn_mask=None if causal else mask, scale=scale)
        elif query.device.type == "cuda":
            bias = None if causal else mask.expand(query.shape[0], query.shape[1], -1, -1)
            out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
                query, keys, values, bias, True, 0.0, causal, scale=scale)[:2]
        else:
            return None
    except (RuntimeError, AttributeError, NotImplementedError):
        return None
    return out.transpose(1, 2).contiguous(), lse[..., :query.shape[2]].float()


def _additive_mask(attention_mask, query, key):
    if attention_mask is None:
        return None
    mask = attention_mask[:, :, :, : key.shape[-2]]
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=query.dtype, device=query.device).masked_fill(~mask, float("-inf"))
    return mask.to(query.dtype)


def mask_rows(mask, b: int, n: int, rows: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Additive mask rows (R, n) for sequence b: the given mask, or causal when there is none
    (prefill: as many keys as queries)."""
    if mask is not None:
        selected = mask[b if mask.shape[0] > 1 else 0, 0]
        return selected if rows is None else selected[rows]
    positions = torch.arange(n, device=like.device) if rows is None else rows
    keys = torch.arange(n, device=like.device)
    allowed = keys[None, :] <= positions[:, None]
    return torch.zeros(allowed.shape, dtype=like.dtype, device=like.device).masked_fill(~allowed, float("-inf"))


def group_masks(plan: SequencePlan, n_keys: int, device):
    """(rows U, (|U|, G) row-in-group, (G, N) key-in-group) as tensors, G over the usable groups."""
    groups = plan.usable_groups
    rows = torch.as_tensor(plan.rows, device=device)
    position = {int(r): i for i, r in enumerate(plan.rows)}
    row_in = torch.zeros(len(rows), len(groups), dtype=torch.bool, device=device)
    key_in = torch.zeros(len(groups), n_keys, dtype=torch.bool, device=device)
    for g, group in enumerate(groups):
        row_in[[position[int(r)] for r in group.rows], g] = True
        key_in[g, torch.as_tensor(group.cols, device=device)] = True
    return rows, row_in, key_in


@dataclass
class PlanIndex:
    """One plan's index tensors on one device, made once and shared by every aligned layer: U, V_all,
    each row's own keys, and the (row, group) pairs of each chunk of rows with each group's keys (as
    positions in V_all), so the diagnostics are gathered without a loop over groups or a host sync."""

    rows: torch.Tensor  # (|U|,) token indices
    cols: torch.Tensor  # (|V_all|,) token indices
    row_in: torch.Tensor  # (|U|, G) bool
    key_in: torch.Tensor  # (G, N) bool
    own_cols: torch.Tensor  # (|U|, |V_all|) bool: each row's own V_{s,t}, union over its groups
    chunk_pairs: list[tuple[torch.Tensor, torch.Tensor]]  # per chunk: (row within the chunk, group) of each pair
    group_cols: torch.Tensor  # (G, C) positions in V_all of each group's keys, padded
    group_valid: torch.Tensor  # (G, C) bool: not padding
    pairs: int

    @classmethod
    def build(cls, plan: SequencePlan, n_keys: int, device, chunk: int) -> PlanIndex:
        rows, row_in, key_in = group_masks(plan, n_keys, device)
        cols = torch.as_tensor(plan.cols, device=device)
        key_in_cols = key_in[:, cols]  # (G, |V_all|)
        own_cols = (row_in.float() @ key_in_cols.float()) > 0
        chunk_pairs = []
        for start in range(0, len(rows), chunk):
            local, group = torch.nonzero(row_in[start:start + chunk], as_tuple=True)
            chunk_pairs.append((local, group))
        sizes = key_in_cols.sum(dim=1)
        width = int(sizes.max()) if len(sizes) else 0
        order = torch.argsort((~key_in_cols).to(torch.uint8), dim=1, stable=True)[:, :width]  # member positions first
        valid = torch.arange(width, device=device)[None, :] < sizes[:, None]
        return cls(rows, cols, row_in, key_in, own_cols, chunk_pairs, order, valid, int(row_in.sum()))

    def group_sums(self, weights: torch.Tensor, chunk: int):
        """Per head, sums over the chunk's (row, group) pairs of the max and the mean of ``weights``
        (h, R, |V_all|) over the group's keys, as device tensors (h,)."""
        local, group = self.chunk_pairs[chunk]
        block = weights[:, local[:, None], self.group_cols[group]]  # (h, P, C)
        valid = self.group_valid[group]  # (P, C)
        largest = block.masked_fill(~valid, float("-inf")).amax(dim=-1)  # (h, P)
        mean = (block * valid).sum(dim=-1) / valid.sum(dim=-1)
        return largest.sum(dim=-1), mean.sum(dim=-1)


def _align_rows(out, query, key, value, mask, b, plan, state: _State, layer: int, scale: float,
                differentiable: bool = False, row_lse: torch.Tensor | None = None) -> list[tuple]:
    """Efficient path for one sequence: the biased U rows of the active heads. Without gradients they
    are written into ``out`` (N, H, D) in place and nothing is returned; with gradients ``out`` is left
    alone and the rows come back as ``[(b, row index, head index, values)]`` for one out-of-place write.

    The bias adds ``beta = alpha * m`` to a row's own speaker keys only, so the biased row follows
    from the unbiased one (SDPA's output ``O``, its log-normaliser ``lse``) and the row's scores on
    V_all alone. With ``P`` the row's unbiased attention mass on its own keys, ``X`` that attention
    times their values, ``d = exp(-beta)`` and ``c = 1 - d``:
    ``O' = (d O + c X) / (d + c P)`` and ``A'_j = A_j (own_j ? 1 : d) / (d + c P)``.
    Only ``lse`` needs the full ``|U| x N`` scores (``row_lse`` (H, N) gives it when the fused kernel
    already did); everything else lives on the ``|U| x |V_all|`` block.
    ``beta`` and the head selection come from detached scores: the bias carries no gradient.

    On a GPU nothing here waits for the device: the head selection is a mask applied with ``where``
    (every head's biased rows are computed; inactive heads keep SDPA's), and the diagnostics stay
    on the device until the alignment block ends. On the CPU, where waiting is free, only the
    active heads' rows are computed.
    """
    settings = state.settings
    heads = query.shape[0]
    width = len(plan.cols) if row_lse is not None else key.shape[1]  # the widest scores a chunk holds
    chunk = state.chunk_rows or max(16, CHUNK_BYTES // (4 * heads * width))
    cache_key = (id(plan), key.shape[1], str(query.device), chunk)
    index = state.indexes.get(cache_key)
    if index is None:
        index = state.indexes[cache_key] = PlanIndex.build(plan, key.shape[1], query.device, chunk)
    q_all, k_all = query.float(), key.float()
    block = _SpeakerBlock(index, chunk, q_all, k_all[:, index.cols], value.float()[:, index.cols], scale,
                          [mask_rows(mask, b, key.shape[1], index.rows[start:start + chunk], query).float()
                           for start in range(0, len(index.rows), chunk)])
    if row_lse is not None:
        lse = row_lse[:, index.rows]  # (H, |U|)
    else:
        lse = RowLogSumExp.apply(q_all[:, index.rows], k_all, block.row_masks, scale, chunk)  # memory O(chunk x N)
    # pass 1, every head: the statistic for head selection, m, diagnostics before
    every_head = torch.arange(heads, device=query.device)
    with torch.no_grad():
        magnitude, activity, before_max, before_mean = _unbiased_pass(block, every_head, lse, settings.bias_source)
    active_mask = activity / (len(index.rows) * len(index.cols)) > settings.head_threshold  # (H,) bool, on the device
    # the heads whose rows are recomputed: all of them on a GPU (no sync), the active ones on the CPU
    biased_heads = every_head if query.device.type != "cpu" else torch.nonzero(active_mask).flatten()
    after_max, after_mean = torch.zeros_like(before_max), torch.zeros_like(before_mean)
    replaced = []
    if len(biased_heads):  # pass 2 on the |U| x |V_all| block: the biased rows replace SDPA's
        replaced = _biased_pass(block, out, b, biased_heads, active_mask, lse, settings.alpha * magnitude[biased_heads],
                                differentiable, after_max, after_mean)
    after_max = torch.where(active_mask, after_max, before_max)
    after_mean = torch.where(active_mask, after_mean, before_mean)
    record_layer(state.stats[layer], heads, active_mask.sum(), before_max, before_mean, after_max, after_mean,
                 index.pairs)
    if b == 0 and state.heatmap_speaker is not None and plan.visual is not None:
        with torch.no_grad():
            _heatmap(state, plan, q_all, k_all, index.rows, index.row_in, index.key_in, index.cols, mask, b, lse,
                     magnitude, torch.nonzero(active_mask).flatten(), scale)
    return replaced


@dataclass
class _SpeakerBlock:
    """One sequence's U rows against its speaker keys V_all, cut into chunks of rows."""

    index: PlanIndex
    chunk: int
    q_all: torch.Tensor  # (H, N, D) float
    k_speakers: torch.Tensor  # (H, |V_all|, D)
    v_speakers: torch.Tensor  # (H, |V_all|, D)
    scale: float
    row_masks: list[torch.Tensor]  # per chunk, its rows' additive mask over every key

    def chunks(self):
        """(chunk number, first row's position in U, the rows' indices in the sequence)."""
        for k, start in enumerate(range(0, len(self.index.rows), self.chunk)):
            yield k, start, self.index.rows[start:start + self.chunk]

    def scores(self, head_index: torch.Tensor, k: int, r: torch.Tensor) -> torch.Tensor:
        """(h, R, |V_all|) scores of rows r (chunk k) on the speaker keys, masked."""
        return torch.baddbmm(self.row_masks[k][:, self.index.cols].expand(len(head_index), -1, -1),
                             self.q_all[head_index][:, r], self.k_speakers[head_index].transpose(-1, -2),
                             alpha=self.scale)


def _unbiased_pass(block: _SpeakerBlock, heads: torch.Tensor, lse: torch.Tensor, bias_source: str):
    """Every head's rows unbiased: per row the bias magnitude m (its largest score, or weight, on the speaker
    keys), per head the attention mass on speaker keys (for head selection) and AttnMax / AttnMean before."""
    magnitude = torch.empty(len(heads), len(block.index.rows), device=lse.device)
    activity, before_max, before_mean = (torch.zeros(len(heads), device=lse.device) for _ in range(3))
    for k, start, r in block.chunks():
        on_speakers = block.scores(heads, k, r)  # (H, R, |V_all|)
        weights = (on_speakers - lse[:, start:start + len(r), None]).exp()
        activity += weights.sum(dim=(1, 2))
        source = on_speakers if bias_source == "logit" else weights
        magnitude[:, start:start + len(r)] = source.amax(dim=-1).clamp_min(0.0)
        mx, mn = block.index.group_sums(weights, k)
        before_max += mx
        before_mean += mn
    return magnitude, activity, before_max, before_mean


def _biased_pass(block: _SpeakerBlock, out, b: int, heads: torch.Tensor, active_mask: torch.Tensor, lse: torch.Tensor,
                 beta: torch.Tensor, differentiable: bool, after_max: torch.Tensor, after_mean: torch.Tensor) -> list:
    """The biased rows of ``heads`` (``beta`` (A, |U|) each row's bias) written into ``out``, or returned for
    one out-of-place write when ``differentiable``; AttnMax / AttnMean after are added into ``after_*``."""
    keep_bias = active_mask[heads][:, None, None]  # (A, 1, 1)
    replaced = []
    for k, start, r in block.chunks():
        own = block.index.own_cols[start:start + block.chunk].float()  # (R, |V_all|)
        weights = (block.scores(heads, k, r) - lse[heads, start:start + len(r), None]).exp()  # (A, R, |V_all|)
        d, c, denominator = _bias_factors(beta[:, start:start + len(r)],
                                          (weights * own).sum(dim=-1))  # (A, R), (A, R), (A, R, 1)
        own_values = (weights * own) @ block.v_speakers[heads]  # (A, R, D)
        plain = out[r[:, None], heads[None, :]].transpose(0, 1)  # (A, R, D)
        biased_rows = (d[..., None] * plain.float() + c[..., None] * own_values) / denominator
        biased_rows = torch.where(keep_bias, biased_rows.to(out.dtype), plain).transpose(0, 1)  # (R, A, D)
        if differentiable:
            row_index, head_index = torch.broadcast_tensors(r[:, None], heads[None, :])
            replaced.append((b, row_index.reshape(-1), head_index.reshape(-1),
                             biased_rows.reshape(-1, biased_rows.shape[-1])))
        else:
            out[r[:, None], heads[None, :]] = biased_rows
        with torch.no_grad():
            biased = weights * torch.where(own.bool(), 1.0, d[..., None]) / denominator
            mx, mn = block.index.group_sums(biased, k)
            after_max.index_add_(0, heads, mx)
            after_mean.index_add_(0, heads, mn)
    return replaced


def _heatmap(state: _State, plan: SequencePlan, q_all, k_all, rows, row_in, key_in, cols, mask, b, lse, magnitude,
             active, scale) -> None:
    """The heatmap speaker's attention over every visual token, mean over heads and rows: (visual,)."""
    speaker_groups = [g for g, group in enumerate(plan.usable_groups) if group.speaker == state.heatmap_speaker]
    picked = torch.nonzero(row_in[:, speaker_groups].any(dim=1)).flatten() if speaker_groups else torch.zeros(0)
    if len(picked) == 0:
        return
    r, visual = rows[picked], torch.as_tensor(plan.visual)
    row_mask = mask_rows(mask, b, k_all.shape[1], r, q_all).float()

    def attention(head_index, keys):
        """(h, R, keys) unbiased attention of the picked rows."""
        scores = torch.baddbmm(row_mask[:, keys].expand(len(head_index), -1, -1), q_all[head_index][:, r],
                               k_all[head_index][:, keys].transpose(-1, -2), alpha=scale)
        return (scores - lse[head_index][:, picked, None]).exp()

    weights = attention(torch.arange(q_all.shape[0]), visual)  # (H, R, visual)
    biased = weights.clone()
    if len(active) and state.settings.alpha != 0:
        own_keys = (row_in[picked].float() @ key_in.float()) > 0  # (R, N)
        d, _, denominator = _bias_factors(state.settings.alpha * magnitude[active][:, picked],
                                          (attention(active, cols) * own_keys[:, cols].float()).sum(dim=-1))
        biased[active] = weights[active] * torch.where(own_keys[:, visual], 1.0, d[..., None]) / denominator
    state.heatmap["before"].append(weights.mean(dim=(0, 1)).cpu())
    state.heatmap["after"].append(biased.mean(dim=(0, 1)).cpu())


class RowLogSumExp(torch.autograd.Function):
    """``lse[h, i] = logsumexp_j(scale * q[h, i] . k[h, j] + mask[i, j])`` for the transcript rows, in
    chunks of rows, holding one chunk's ``(H, chunk, N)`` scores at a time, forward and backward: the
    backward recomputes each chunk's scores instead of keeping all ``|U| x N`` of them (what autograd's
    own logsumexp would keep, in every aligned layer), with ``d lse_i / d s_ij = softmax_ij``."""

    @staticmethod
    def forward(ctx, q_rows, keys, row_masks, scale, chunk):
        heads, n_rows = q_rows.shape[:2]
        lse = torch.empty(heads, n_rows, device=q_rows.device, dtype=q_rows.dtype)
        buffer = torch.empty(heads, min(chunk, n_rows), keys.shape[1], device=q_rows.device, dtype=q_rows.dtype)
        for k, start in enumerate(range(0, n_rows, chunk)):
            size = min(chunk, n_rows - start)
            scores = torch.baddbmm(row_masks[k].expand(heads, -1, -1), q_rows[:, start:start + size],
                                   keys.transpose(-1, -2), alpha=scale, out=buffer[:, :size])
            torch.logsumexp(scores, dim=-1, out=lse[:, start:start + size])
        ctx.save_for_backward(q_rows, keys, lse)
        ctx.row_masks, ctx.scale, ctx.chunk = row_masks, scale, chunk
        return lse

    @staticmethod
    def backward(ctx, grad):
        q_rows, keys, lse = ctx.saved_tensors
        heads, n_rows = q_rows.shape[:2]
        grad_q, grad_k = torch.zeros_like(q_rows), torch.zeros_like(keys)
        for k, start in enumerate(range(0, n_rows, ctx.chunk)):
            size = min(ctx.chunk, n_rows - start)
            weights = torch.baddbmm(ctx.row_masks[k].expand(heads, -1, -1), q_rows[:, start:start + size],
                                    keys.transpose(-1, -2), alpha=ctx.scale)
            weights.sub_(lse[:, start:start + size, None]).exp_().mul_(grad[:, start:start + size, None] * ctx.scale)
            grad_q[:, start:start + size] = weights @ keys
            grad_k.baddbmm_(weights.transpose(-1, -2), q_rows[:, start:start + size])
        return grad_q, grad_k, None, None, None


def _bias_factors(beta: torch.Tensor, own_mass: torch.Tensor):
    """For bias ``beta`` (A, R) on keys holding unbiased attention ``own_mass`` (A, R): ``d = exp(-beta)``,
    ``c = 1 - d`` and the renormaliser ``d + c * own_mass`` as (A, R, 1), stable for any beta >= 0."""
    d, c = torch.exp(-beta), -torch.expm1(-beta)
    return d, c, (d + c * own_mass)[..., None]


