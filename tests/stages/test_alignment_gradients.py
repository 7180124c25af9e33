"""The alignment under training: the efficient path supports backward, its gradients match the dense
reference's (directly on the attention function, and on every LoRA parameter of a tiny model of each
family), the bias carries no gradient, and checkpointed layers are aligned again when recomputed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from socialpipe.pipeline.contracts.config import AnswerConfig, FinetuneConfig
from socialpipe.pipeline.contracts.errors import SocialpipeError
from socialpipe.stages.answer.attention import _STATE_ATTRIBUTE, _State, aligned_attention, enable, speaker_alignment
from socialpipe.stages.answer.diagnostics import LayerStats
from socialpipe.stages.answer.lora import add_lora, lora_targets
from socialpipe.stages.answer.plan import SequencePlan, SpeakerGroup
from tests.stages.dense_reference import dense_attention
from tests.stages.test_alignment import encode, plans_for, tiny  # noqa: F401  (tiny: the family fixture)


class _Attention(torch.nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.num_key_value_groups = groups


def _attention(query, key, value, settings, reference=None, chunk_rows=3):
    """aligned_attention on one (B=1) sequence with a two-speaker plan over 24 tokens."""
    plan = SequencePlan((SpeakerGroup("A", 0, np.arange(14, 18), np.arange(2, 6)),
                         SpeakerGroup("B", 0, np.arange(18, 22), np.arange(6, 9))))
    module = _Attention(query.shape[1] // key.shape[1])
    setattr(module, _STATE_ATTRIBUTE, _State((plan,), settings, {id(module): 0}, reference, {0: LayerStats()},
                                            chunk_rows))
    out, _ = aligned_attention(module, query, key, value, None, scaling=query.shape[-1] ** -0.5)
    return out


@pytest.mark.parametrize("bias_source", ["logit", "prob"])
def test_efficient_backward_matches_the_dense_reference(bias_source):
    """Gradients in query, key and value (4 query heads on 2 key-value heads, rows in chunks of 3)."""
    torch.manual_seed(0)
    shapes = [(1, 4, 24, 8), (1, 2, 24, 8), (1, 2, 24, 8)]
    settings = AnswerConfig(alpha=3.0, head_threshold=0.0, bias_source=bias_source)
    weights = torch.randn(1, 24, 4, 8)
    grads = {}
    for name, reference in (("efficient", None), ("dense", dense_attention), ("plain", None)):
        torch.manual_seed(1)
        tensors = [torch.randn(*s, dtype=torch.float64).float().requires_grad_() for s in shapes]
        run = AnswerConfig(alpha=0.0) if name == "plain" else settings
        out = _attention(*tensors, run, reference)
        (out * weights).sum().backward()
        grads[name] = [t.grad for t in tensors]
    for efficient, dense in zip(grads["efficient"], grads["dense"]):
        assert (efficient - dense).abs().max() < 1e-5
    assert max((e - p).abs().max() for e, p in zip(grads["efficient"], grads["plain"])) > 1e-3  # the bias matters


def _bias_from(detached: bool):
    """A dense attention whose bias magnitude m is taken from detached scores or from live ones."""
    def attention(query, key, value, mask_rows, plan, state, layer, scale):
        scores = (query @ key.transpose(-1, -2)) * scale + mask_rows
        rows, cols = torch.as_tensor(plan.rows), torch.as_tensor(plan.cols)
        source = scores.detach() if detached else scores
        magnitude = source[:, rows][:, :, cols].amax(dim=-1).clamp_min(0.0)  # (H, |U|)
        own = torch.zeros(len(rows), scores.shape[-1])
        for g in plan.usable_groups:
            own[torch.as_tensor(np.searchsorted(plan.rows, g.rows))[:, None], torch.as_tensor(g.cols)[None, :]] = 1.0
        bias = torch.zeros_like(scores).index_put((torch.arange(scores.shape[0])[:, None], rows[None, :]),
                                                   state.settings.alpha * magnitude[..., None] * own)
        return (scores + bias).softmax(dim=-1) @ value
    return attention


def test_the_bias_carries_no_gradient():
    """The bias's magnitude m is a maximum of the scores; it enters the gradient as a constant. A bias
    with live m gives the same output and a different gradient, so the check can fail."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 24, 8, requires_grad=True) for _ in range(3))
    settings = AnswerConfig(alpha=2.0, head_threshold=0.0)
    grads = {}
    for name, reference in (("efficient", None), ("constant", _bias_from(True)), ("live", _bias_from(False))):
        out = _attention(q, k, v, settings, reference=reference)
        grads[name] = (out, torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum(),
                                                (q, k)))
    out, (grad_q, grad_k) = grads["efficient"]
    for name in ("constant", "live"):
        assert torch.allclose(out, grads[name][0], atol=1e-5)
    assert (grad_q - grads["constant"][1][0]).abs().max() < 1e-5
    assert (grad_k - grads["constant"][1][1]).abs().max() < 1e-5
    assert (grad_q - grads["live"][1][0]).abs().max() > 1e-4


def _lora_gradients(model, inputs, plans, settings, reference=None):
    """Every LoRA parameter's gradient of a next-token loss over the whole prompt, aligned by ``plans``."""
    model.zero_grad(set_to_none=True)
    with speaker_alignment(model.get_base_model(), plans, settings, reference=reference, chunk_rows=16):
        logits = model(**inputs, use_cache=False).logits.float()
        targets = inputs["input_ids"][:, 1:]
        loss = -logits[:, :-1].log_softmax(dim=-1).gather(2, targets[..., None]).mean()
        loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}


def test_lora_gradients_match_the_dense_reference_on_every_family(tiny):
    """On each family: a LoRA adapter (rank 8) on every linear layer of the language model, then the
    gradient of every LoRA parameter with the efficient path against the dense reference, with the
    alignment on all layers and every head active; and the same again with gradient checkpointing."""
    processor, model = tiny
    texts, inputs, offsets = encode(processor, 4)
    _, plans = plans_for(processor, model, texts, inputs, offsets, 4)
    enable(model)
    torch.manual_seed(0)
    lora = add_lora(model, FinetuneConfig(rank=8, lora_alpha=16.0, lora_dropout=0.0))
    for name, parameter in lora.named_parameters():
        if "lora_B" in name:  # B starts at zero (no gradient reaches A); start it elsewhere
            torch.nn.init.normal_(parameter, std=0.02)
    lora.train()
    settings = AnswerConfig(alpha=2.0, head_threshold=0.0, layer_range=(0.0, 1.0))
    try:
        efficient = _lora_gradients(lora, inputs, plans, settings)
        dense = _lora_gradients(lora, inputs, plans, settings, reference=dense_attention)
        plain = _lora_gradients(lora, inputs, plans, AnswerConfig(alpha=0.0))
        lora.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        checkpointed = _lora_gradients(lora, inputs, plans, settings)
    finally:
        lora.unload()
        model.set_attn_implementation("sdpa")
    assert len(efficient) > 0 and all("lora_" in name for name in efficient)
    assert all(not torch.equal(g, torch.zeros_like(g)) for g in efficient.values())
    worst = max(float((efficient[n] - dense[n]).abs().max() / dense[n].abs().max().clamp_min(1e-12))
                for n in efficient)
    assert worst < 1e-4, worst
    assert max(float((checkpointed[n] - efficient[n]).abs().max()) for n in efficient) < 1e-6
    assert max(float((efficient[n] - plain[n]).abs().max()) for n in efficient) > 1e-6  # alignment reaches the gradient


def test_lora_targets_the_language_model_only(tiny):
    _, model = tiny
    names = lora_targets(model, "all")
    assert names and all(".layers." in n for n in names)
    assert not any(part in n for n in names for part in ("visual", "vision", "multi_modal_projector", "lm_head"))
    attention = lora_targets(model, "attention")
    assert {n.rsplit(".", 1)[-1] for n in attention} == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_a_model_without_language_layers_is_a_clear_error():
    with pytest.raises(SocialpipeError, match="support the Qwen2.5-VL, LLaVA-NeXT-Video and InternVL3 families"):
        lora_targets(torch.nn.Sequential(torch.nn.Linear(2, 2)))


@pytest.mark.parametrize("masked", [False, True])
def test_inference_takes_the_normalisers_from_the_fused_kernel(masked):
    """At inference the fused kernel hands back SDPA's output and the row normalisers the efficient path
    needs; both match the plain computation (and the path does not silently fall back)."""
    from socialpipe.stages.answer.attention import _attention_with_lse, mask_rows

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 24, 8) for _ in range(3))
    causal = mask_rows(None, 0, 24, None, q)
    mask = None
    if masked:  # left padding on the second sequence
        mask = causal.expand(2, 1, 24, 24).clone()
        mask[1, :, :, :3] = float("-inf")
        mask[1, :, :3, :3] = causal[:3, :3]  # padding rows still see themselves (no all -inf rows)
    fused = _attention_with_lse(q, k, v, mask, 8 ** -0.5)
    assert fused is not None
    out, lse = fused
    scores = q @ k.transpose(-1, -2) * 8 ** -0.5 + (causal if mask is None else mask)
    assert torch.allclose(lse, scores.logsumexp(dim=-1), atol=1e-5)
    assert torch.allclose(out, (scores.softmax(dim=-1) @ v).transpose(1, 2), atol=1e-5)
