"""The naive reference of the speaker attention alignment, for tests and the benchmark: explicit
``S``, ``A`` and bias matrix over the whole sequence (docs/method.md, section 2). The efficient
path in ``socialpipe.stages.answer.attention`` must match it to float tolerance.

Plug it in with ``speaker_alignment(model, plans, settings, reference=dense_attention)``.
"""

from __future__ import annotations

import torch

from socialpipe.stages.answer.attention import group_masks
from socialpipe.stages.answer.diagnostics import record_layer
from socialpipe.stages.answer.plan import SequencePlan


def dense_attention(query, key, value, mask_rows, plan: SequencePlan, state, layer: int, scale: float):
    """One sequence's aligned attention output (H, N, D), computed the slow, obvious way. Like the efficient
    path, the bias comes from detached scores; the attention is differentiable in query, key and value."""
    settings = state.settings
    scores = (query.float() @ key.float().transpose(-1, -2)) * scale + mask_rows.float()  # (H, N, N)
    scores = torch.where(torch.isinf(scores).all(dim=-1, keepdim=True), 0.0, scores)  # padding rows: nothing to see
    weights = scores.softmax(dim=-1)
    bias = torch.zeros_like(scores)  # (H, N, N)
    if not plan.empty:
        rows, row_in, key_in = group_masks(plan, scores.shape[-1], query.device)
        cols = torch.as_tensor(plan.cols, device=query.device)
        activity = weights[:, rows][:, :, cols].mean(dim=(1, 2))  # (H,)
        active = activity > settings.head_threshold
        source = scores if settings.bias_source == "logit" else weights
        magnitude = source[:, rows][:, :, cols].detach().max(dim=-1).values.clamp_min(0.0)  # (H, |U|), no gradient
        own_keys = (row_in.float() @ key_in.float()) > 0  # (|U|, N)
        for i, row in enumerate(rows.tolist()):
            bias[:, row] = settings.alpha * magnitude[:, i, None] * own_keys[i][None] * active[:, None]
        biased = (scores + bias).softmax(dim=-1)
        with torch.no_grad():
            before_max, before_mean, pairs = group_sums(weights[:, rows], row_in, key_in)
            after_max, after_mean, _ = group_sums(biased[:, rows], row_in, key_in)
        record_layer(state.stats[layer], scores.shape[0], int(active.sum()), before_max, before_mean, after_max,
                     after_mean, pairs)
    return (scores + bias).softmax(dim=-1).to(value.dtype) @ value  # (H, N, D)


def group_sums(weights: torch.Tensor, row_in: torch.Tensor, key_in: torch.Tensor):
    """Per head, sums over (row, group) of the max and the mean attention to the group's keys;
    and the number of (row, group) pairs summed. ``weights`` (H, R, N); only the (row, key) pairs
    of each group are gathered. A loop over groups, plain to read; the efficient path gathers the
    same sums at once (``attention.PlanIndex.group_sums``)."""
    total_max = torch.zeros(weights.shape[0], dtype=torch.float64)
    total_mean = torch.zeros(weights.shape[0], dtype=torch.float64)
    count = 0
    for g in range(key_in.shape[0]):
        rows = torch.nonzero(row_in[:, g]).flatten()
        if rows.numel() == 0:
            continue
        cols = torch.nonzero(key_in[g]).flatten()
        block = weights[:, rows[:, None], cols[None, :]]  # (H, r, c)
        total_max += block.amax(dim=-1).sum(dim=-1).double().cpu()
        total_mean += block.mean(dim=-1).sum(dim=-1).double().cpu()
        count += rows.numel()
    return total_max, total_mean, count
