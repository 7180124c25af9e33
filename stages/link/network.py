"""The LR-ASD active-speaker network (Liao et al., IJCV 2025), written here from its published
description and the layer shapes of its released checkpoints.

A face track's grey 112x112 crops at 25 fps and its 13 MFCCs at 100 Hz go through two light
encoders (a visual one of factorised spatial/temporal 3D convolutions, an audio one of factorised
frequency/time 2D convolutions) to one 128-d embedding per video frame each; a sigmoid gate mixes
them, a forward and a time-reversed GRU read the sequence, a second gate mixes those, and a linear
head gives two logits per frame. The speaking score is the raw logit of class 1. A second head on
the visual embedding alone gives a visual-only score.

Every convolution has no bias and pads to keep its size; each is followed by batch norm
(eps 1e-3) and ReLU. The parameter names match the released state dicts, so they load as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
GREY_MEAN, GREY_STD = 0.4161, 0.1688  # the visual input is (pixel / 255 - mean) / std


def _norm3d(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=BN_EPS)


def _norm2d(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class VisualBlock(nn.Module):
    """Two spatial convolutions (k1 then k2, per frame) then two temporal ones (k1 then k2 frames)."""

    def __init__(self, channels_in: int, channels_out: int, first_stride: int = 1, k1: int = 5, k2: int = 3):
        super().__init__()
        half = channels_out // 2
        self.s_1 = nn.Conv3d(channels_in, half, (1, k1, k1), stride=(1, first_stride, first_stride),
                             padding=(0, k1 // 2, k1 // 2), bias=False)
        self.s_norm_1 = _norm3d(half)
        self.s_2 = nn.Conv3d(half, channels_out, (1, k2, k2), padding=(0, k2 // 2, k2 // 2), bias=False)
        self.s_norm_2 = _norm3d(channels_out)
        self.t_1 = nn.Conv3d(channels_out, channels_out, (k1, 1, 1), padding=(k1 // 2, 0, 0), bias=False)
        self.t_norm_1 = _norm3d(channels_out)
        self.t_2 = nn.Conv3d(channels_out, channels_out, (k2, 1, 1), padding=(k2 // 2, 0, 0), bias=False)
        self.t_norm_2 = _norm3d(channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm in ((self.s_1, self.s_norm_1), (self.s_2, self.s_norm_2),
                           (self.t_1, self.t_norm_1), (self.t_2, self.t_norm_2)):
            x = torch.relu(norm(conv(x)))
        return x

    def conv_2d(self, name: str) -> tuple[torch.Tensor, torch.Tensor, tuple, tuple]:
        """Convolution ``name`` (``s_1`` ... ``t_2``) with its batch norm folded in, as the 2D convolution
        ``infer`` runs: weight, bias, stride, padding. A spatial (1, k, k) one runs on every frame, a
        temporal (k, 1, 1) one over the (time, pixels) view."""
        conv = getattr(self, name)
        weight, bias = _folded(conv, getattr(self, name.replace("_", "_norm_")))
        if name.startswith("s"):
            return weight[:, :, 0], bias, conv.stride[1:], conv.padding[1:]
        return weight[..., 0], bias, (1, 1), (conv.padding[0], 0)

    def layers(self, index: int) -> list[Layer]:
        """The block in eval mode as layers over frames stacked as (B*T, C, H, W), for speed: each batch norm is
        folded into its convolution, the spatial convolutions run as 2D ones on every frame and the temporal ones
        as 2D ones over (time, pixels). In channels-last memory both views are the same bytes, so switching
        between them copies nothing. Same numbers as ``forward`` up to float rounding. Named like ``0s_1``
        (block ``index``'s first)."""
        found = []
        for name in CONV_NAMES:
            weight, bias, stride, padding = self.conv_2d(name)
            weight = weight.detach().contiguous(memory_format=torch.channels_last)
            if name.startswith("s"):
                run = partial(_spatial, weight=weight, bias=bias.detach(), stride=stride, padding=padding)
                found.append(Layer(f"{index}{name}", 0, run))
            else:
                found.append(Layer(f"{index}{name}", padding[0], partial(_temporal, weight=weight, bias=bias.detach())))
        return found


class Layer(NamedTuple):
    """One step of a visual encoder over frames stacked as (B*T, C, H, W): ``run(frames, batch, pad)``. ``reach``:
    the steps of context it needs each side in time (0: each frame on its own); with ``pad`` False it pads
    nothing in time and gives ``2 reach`` frames fewer per sequence (``Streamed`` gives it the context)."""

    name: str
    reach: int
    run: Callable[[torch.Tensor, int, bool], torch.Tensor]


def _spatial(x: torch.Tensor, batch: int, pad: bool, *, weight, bias, stride, padding) -> torch.Tensor:
    return conv_relu(x, weight, bias, stride, padding)


def _temporal(x: torch.Tensor, batch: int, pad: bool, *, weight, bias) -> torch.Tensor:
    return _over_time(lambda view: conv_relu(view, weight, bias, (1, 1), (weight.shape[2] // 2 if pad else 0, 0)),
                      x, batch)


def _over_time(conv: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int) -> torch.Tensor:
    """A temporal convolution on frames (B*T, C, H, W): run over their (B, C, T, H*W) view and viewed back."""
    height, width = x.shape[2:]
    return _frame_view(conv(_time_view(x, batch)), height, width)


def _pooling(x: torch.Tensor, batch: int, pad: bool) -> torch.Tensor:
    return _pool(x)


def conv_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: tuple, padding: tuple) -> torch.Tensor:
    """ReLU(conv2d(x)) in channels-last memory (the weight too: a one-channel input leaves the layout to the
    weight, and the first block's temporal convolutions ran 6x slower on the default layout). On the CPU one
    oneDNN kernel with the ReLU fused in, the same numbers: a separate ReLU reads and writes every
    activation once more, in bfloat16 as long as the convolution took. Under CPU autocast the kernel gets
    the autocast dtype, as ``F.conv2d`` would. Elsewhere, where this PyTorch lacks the kernel, or where it
    refuses this CPU or dtype (then for that dtype for the rest of the process), the two ops. Together the
    visual encoder runs 2.4x faster (docs/link.md)."""
    weight = weight.contiguous(memory_format=torch.channels_last)
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    if x.device.type == "cpu" and _fused_conv_relu_available(dtype):
        try:
            return torch.ops.mkldnn._convolution_pointwise(x.to(dtype), weight.to(dtype), bias.to(dtype),
                                                           list(padding), list(stride), [1, 1], 1, "relu", [], "")
        except RuntimeError:  # a private kernel: an unsupported CPU, dtype or build says so only here
            _FUSED_REFUSED.append(dtype)
    return torch.relu(F.conv2d(x, weight, bias, stride=stride, padding=padding))


_FUSED_REFUSED: list[torch.dtype] = []  # dtypes the fused kernel failed on in this process: the two ops for them


def _fused_conv_relu_available(dtype: torch.dtype = torch.float32) -> bool:
    """The fused kernel exists here and has not refused ``dtype`` (a CPU without bfloat16 refusing it leaves
    float32 fused: until now one refusal turned the kernel off for every dtype, for the rest of the process)."""
    return dtype not in _FUSED_REFUSED and torch.backends.mkldnn.is_available() and \
        hasattr(torch.ops.mkldnn, "_convolution_pointwise")


CONV_NAMES = ("s_1", "s_2", "t_1", "t_2")  # a block's convolutions in order: two spatial, two temporal


def _time_view(x: torch.Tensor, batch: int) -> torch.Tensor:
    """Frames (B*T, C, H, W) -> (B, C, T, H*W), for the temporal convolutions."""
    frames, channels, height, width = x.shape
    return x.permute(0, 2, 3, 1).reshape(batch, frames // batch, height * width, channels).permute(0, 3, 1, 2)


def _frame_view(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``_time_view`` undone: (B, C, T, H*W) -> (B*T, C, H, W)."""
    batch, channels, steps, _ = x.shape
    return x.permute(0, 2, 3, 1).reshape(batch * steps, height, width, channels).permute(0, 3, 1, 2)


def _pool(x: torch.Tensor) -> torch.Tensor:
    """The (1, 3, 3) stride-2 max pool per frame (in channels-last memory: several times faster on CPU)."""
    return F.max_pool2d(x.contiguous(memory_format=torch.channels_last), 3, 2, 1)


def _folded(conv: nn.Conv3d, norm: nn.BatchNorm3d) -> tuple[torch.Tensor, torch.Tensor]:
    """A bias-free convolution followed by an eval-mode batch norm, as one convolution's weight and bias."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return conv.weight * scale.view(-1, 1, 1, 1, 1), norm.bias - norm.running_mean * scale


class VisualEncoder(nn.Module):
    """(B, 1, T, 112, 112) normalised grey crops -> (B, T, 128)."""

    def __init__(self):
        super().__init__()
        self.block1 = VisualBlock(1, 32, first_stride=2)
        self.pool1 = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.block2 = VisualBlock(32, 64)
        self.pool2 = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.block3 = VisualBlock(64, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reference(x) if self.training else self.infer(x)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The network as published: 3D convolutions, batch norm after each."""
        x = self.block3(self.pool2(self.block2(self.pool1(self.block1(x)))))
        return x.amax(dim=(3, 4)).transpose(1, 2)  # the strongest response per frame and channel

    def infer(self, x: torch.Tensor, observe=None) -> torch.Tensor:
        """``forward`` in eval mode through the blocks' folded 2D layers (see ``VisualBlock.layers``);
        ``observe(name, output)`` sees every convolution's output, named like ``0s_1`` (block 1's first)."""
        batch, _, steps, height, width = x.shape
        x = x.transpose(1, 2).reshape(batch * steps, 1, height, width).contiguous(memory_format=torch.channels_last)
        for layer in self.layers():
            x = layer.run(x, batch, True)
            if observe is not None and layer.name[1:] in CONV_NAMES:  # temporal outputs as (B, C, T, H*W)
                observe(layer.name, _time_view(x, batch) if layer.reach else x)
        return self.finish(x).reshape(batch, steps, -1)

    def layers(self) -> list[Layer]:
        """Every block's layers, with the max pools between."""
        found = []
        for index, block in enumerate(self.blocks):
            if index:
                found.append(Layer(f"{index}pool", 0, _pooling))
            found += block.layers(index)
        return found

    @staticmethod
    def prepare(faces: torch.Tensor) -> torch.Tensor:
        """(T, 112, 112) grey 0-255 crops -> the first layer's input: (T, 1, 112, 112) normalised."""
        normalised = (faces.float() / 255.0 - GREY_MEAN) / GREY_STD
        return normalised.unsqueeze(1).contiguous(memory_format=torch.channels_last)

    @staticmethod
    def finish(x: torch.Tensor) -> torch.Tensor:
        """The last layer's frames -> (frames, 128): the strongest response per frame and channel."""
        return x.amax(dim=(2, 3)).float()

    @property
    def blocks(self) -> tuple[VisualBlock, VisualBlock, VisualBlock]:
        return self.block1, self.block2, self.block3


@torch.inference_mode()
def activation_ranges(encoder: VisualEncoder, crops: list[torch.Tensor], percentile: float = 99.99,
                      sample: int = 200_000) -> dict[str, float]:
    """The calibration ``QuantizedVisualEncoder`` needs: for every convolution (after its ReLU), the largest
    over ``crops`` (each a (T, 112, 112) 0-255 run of one face) of the ``percentile`` of its outputs, taken on
    ``sample`` values per run drawn with a fixed seed (the same ranges every time). A percentile rather than
    the maximum: rare peaks saturate and everything else keeps a finer step (measured on real clips: scores
    closer to float32 than with maxima)."""
    ranges: dict[str, float] = {}

    def note(name: str, values: torch.Tensor) -> None:
        flat = values.reshape(-1)
        picked = flat[torch.randint(flat.numel(), (sample,), generator=torch.Generator().manual_seed(0))].float()
        ranges[name] = max(ranges.get(name, 0.0), float(torch.quantile(picked, percentile / 100)))

    for faces in crops:
        encoder.infer(((faces.float() / 255.0 - GREY_MEAN) / GREY_STD)[None, None], observe=note)
    return ranges


class QuantizedVisualEncoder(nn.Module):
    """``VisualEncoder.infer`` in 8-bit integers: each folded convolution and its ReLU as one quantized kernel
    (per-channel int8 weights, uint8 activations whose step is the layer's calibrated range / 255).

    The input needs no conversion: a 0-255 grey pixel ``p`` normalised is ``(p - 255 mean) / (255 std)``,
    which is a uint8 tensor's own affine quantization with zero point ``round(255 mean)`` = 106 (the true
    106.1 moves every pixel by a tenth of a grey level). About 1.5x faster than the fused bfloat16 path on a
    CPU with VNNI (4x before that was fused); embeddings within about 3% of float32 (see the README for what
    that does to the scores)."""

    def __init__(self, encoder: VisualEncoder, ranges: dict[str, float]):
        super().__init__()
        from torch.ao.nn.intrinsic.quantized import ConvReLU2d

        names = [f"{index}{name}" for index in range(len(encoder.blocks)) for name in CONV_NAMES]
        missing = [name for name in names if name not in ranges]
        if missing:
            raise ValueError(f"int8 ranges lack {missing}")
        self.convs = nn.ModuleDict()  # each convolution as it pads; a temporal one also padding nothing in time
        for name in names:
            weight, bias, stride, padding = encoder.blocks[int(name[0])].conv_2d(name[1:])
            weight, bias = weight.detach(), bias.detach()
            step = weight.abs().amax(dim=(1, 2, 3)).clamp(min=1e-8) / 127
            quantized = torch.quantize_per_channel(weight, step, torch.zeros_like(step, dtype=torch.long), 0,
                                                   torch.qint8)
            for key, pads in ((name, padding), (name + "_unpadded", (0, 0))):
                if key != name and name[1] != "t":
                    continue
                layer = ConvReLU2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), stride=stride,
                                   padding=pads)
                layer.set_weight_bias(quantized, bias)
                layer.scale, layer.zero_point = float(ranges[name]) / 255, 0
                self.convs[key] = layer

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """faces (B, T, 112, 112) uint8 grey -> visual embeddings (B, T, 128) float32."""
        batch, steps, height, width = faces.shape
        x = self.prepare(faces.reshape(batch * steps, height, width))
        for layer in self.layers():
            x = layer.run(x, batch, True)
        return self.finish(x).reshape(batch, steps, -1)

    def layers(self) -> list[Layer]:
        """As ``VisualEncoder.layers``, in 8-bit integers."""
        found = []
        for name in self.convs:
            if name.endswith("_unpadded"):
                continue
            if name[0] != "0" and name[1:] == "s_1":
                found.append(Layer(f"{name[0]}pool", 0, _pooling))
            if name[1] == "s":
                found.append(Layer(name, 0, lambda x, batch, pad, conv=self.convs[name]: conv(x)))
            else:
                found.append(Layer(name, self.convs[name].padding[0], partial(_temporal_int8, padded=self.convs[name],
                                                                             unpadded=self.convs[name + "_unpadded"])))
        return found

    @staticmethod
    def prepare(faces: torch.Tensor) -> torch.Tensor:
        """(T, 112, 112) uint8 grey crops -> the first layer's input, quantized as described above."""
        x = torch._make_per_tensor_quantized_tensor(faces.unsqueeze(1).contiguous(), 1 / (255 * GREY_STD),
                                                    round(255 * GREY_MEAN))
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def finish(x: torch.Tensor) -> torch.Tensor:
        return x.dequantize().amax(dim=(2, 3))


def _temporal_int8(x: torch.Tensor, batch: int, pad: bool, *, padded: nn.Module, unpadded: nn.Module) -> torch.Tensor:
    return _over_time(padded if pad else unpadded, x, batch)


class Streamed:
    """An encoder's layers run over one sequence of frames given a piece at a time, with the same numbers as one
    pass over the whole sequence (``infer``), bit for bit: each temporal layer keeps the last ``2 reach`` frames
    it was given and runs on them and the next piece, padded in time only at the sequence's two ends, as one pass
    pads. Nothing is computed twice, so pieces can be small, where the encoder runs fastest on the CPU
    (docs/link.md); an output frame comes out once the frames it depends on have come in, the last ones with the
    last piece. A sequence given in one piece is one pass."""

    def __init__(self, encoder: VisualEncoder | QuantizedVisualEncoder):
        self.encoder = encoder
        self.layers = encoder.layers()
        self.held: list[torch.Tensor | None] = [None] * len(self.layers)  # input frames kept for the next piece
        self.begin = [0] * len(self.layers)  # the sequence index of each layer's first held frame
        self.emitted = [0] * len(self.layers)  # output frames each layer has given

    def push(self, faces: torch.Tensor, last: bool) -> torch.Tensor:
        """(T, 112, 112) grey crops, the next of the sequence -> the embeddings (t, 128) now complete, in order."""
        x = self.encoder.prepare(faces)
        for index, layer in enumerate(self.layers):
            if layer.reach:
                x = self._temporal(index, layer, x, last)
            elif len(x):
                x = layer.run(x, 1, False)
        return self.encoder.finish(x) if len(x) else torch.zeros((0, 128), device=x.device)

    def _temporal(self, index: int, layer: Layer, x: torch.Tensor, last: bool) -> torch.Tensor:
        """A temporal layer's output frames now complete (none: ``x[:0]``). Its output ``g`` needs input frames
        ``g - reach`` to ``g + reach``, or the padding beyond the sequence's ends."""
        held, begin, reach = self.held[index], self.begin[index], layer.reach
        frames = x if held is None else torch.cat([held, x]) if len(x) else held
        if not len(frames):  # nothing has come this far yet
            return x
        end = begin + len(frames)  # the sequence index one past the last frame in hand
        first, ready = self.emitted[index], end if last else end - reach  # outputs [first, ready) can be given
        if ready <= first:
            self.held[index] = frames
            return x[:0]
        if begin == 0 or last:  # padding stands for the frames before the first or after the last
            out = layer.run(frames, 1, True)[first - begin:ready - begin]
        else:  # the held frames give the context before, the piece's last frames the context after
            out = layer.run(frames, 1, False)[first - begin - reach:ready - begin - reach]
        keep = max(ready - reach, 0)
        self.held[index], self.begin[index], self.emitted[index] = None if last else frames[keep - begin:], keep, ready
        return out


def int8_available() -> bool:
    """Whether this PyTorch has the x86 quantized kernels (fbgemm/oneDNN) the int8 encoder is measured on."""
    return any(engine in torch.backends.quantized.supported_engines for engine in ("x86", "fbgemm"))


class AudioBlock(nn.Module):
    """Two convolutions along the MFCC axis (k1 then k2) then two along time."""

    def __init__(self, channels_in: int, channels_out: int, k1: int = 5, k2: int = 3):
        super().__init__()
        half = channels_out // 2
        self.m_1 = nn.Conv2d(channels_in, half, (k1, 1), padding=(k1 // 2, 0), bias=False)
        self.m_norm_1 = _norm2d(half)
        self.m_2 = nn.Conv2d(half, channels_out, (k2, 1), padding=(k2 // 2, 0), bias=False)
        self.m_norm_2 = _norm2d(channels_out)
        self.t_1 = nn.Conv2d(channels_out, channels_out, (1, k1), padding=(0, k1 // 2), bias=False)
        self.t_norm_1 = _norm2d(channels_out)
        self.t_2 = nn.Conv2d(channels_out, channels_out, (1, k2), padding=(0, k2 // 2), bias=False)
        self.t_norm_2 = _norm2d(channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm in ((self.m_1, self.m_norm_1), (self.m_2, self.m_norm_2),
                           (self.t_1, self.t_norm_1), (self.t_2, self.t_norm_2)):
            x = torch.relu(norm(conv(x)))
        return x


class AudioEncoder(nn.Module):
    """(B, 1, 13, 4T) MFCCs -> (B, T, 128): two stride-2 pools along time bring 100 Hz to 25 Hz."""

    def __init__(self):
        super().__init__()
        self.block1 = AudioBlock(1, 32)
        self.pool1 = nn.MaxPool2d((1, 3), stride=(1, 2), padding=(0, 1))
        self.block2 = AudioBlock(32, 64)
        self.pool2 = nn.MaxPool2d((1, 3), stride=(1, 2), padding=(0, 1))
        self.block3 = AudioBlock(64, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.pool2(self.block2(self.pool1(self.block1(x)))))
        return x.mean(dim=2).transpose(1, 2)  # averaged over the MFCC axis


class Gate(nn.Module):
    """x * sigmoid(bn(conv1x1(x))) over the channels of a (B, T, C) sequence."""

    def __init__(self, channels: int):
        super().__init__()
        self.attention = nn.Conv1d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm1d(channels, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.bn(self.attention(x.transpose(1, 2)))).transpose(1, 2)
        return x * gate


class Detector(nn.Module):
    """A forward GRU and a GRU over the reversed sequence (its output reversed back), gated together."""

    def __init__(self, channels: int = 256, hidden: int = 64):
        super().__init__()
        self.dropout = nn.Dropout(0.5)
        self.gru_forward = nn.GRU(channels, hidden, num_layers=1, batch_first=True)
        self.gru_backward = nn.GRU(channels, hidden, num_layers=1, batch_first=True)
        self.attention = Gate(2 * hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        forward, _ = self.gru_forward(self.dropout(x))
        backward, _ = self.gru_backward(self.dropout(torch.flip(x, dims=[1])))
        return self.attention(torch.cat([forward, torch.flip(backward, dims=[1])], dim=2))


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.visualEncoder = VisualEncoder()  # noqa: N815 (the checkpoints' names)
        self.audioEncoder = AudioEncoder()  # noqa: N815
        self.fusion = Gate(256)
        self.detector = Detector()


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.FC = nn.Linear(128, 2)  # noqa: N815


class LRASD(nn.Module):
    """The whole network; ``forward`` gives per-frame speaking logits and the embeddings."""

    def __init__(self):
        super().__init__()
        self.model = Backbone()
        self.lossAV = Head()  # noqa: N815
        self.lossV = Head()  # noqa: N815

    def embed_visual(self, faces: torch.Tensor) -> torch.Tensor:
        """faces (B, T, 112, 112) grey 0-255 -> visual embeddings (B, T, 128)."""
        return self.model.visualEncoder(((faces / 255.0 - GREY_MEAN) / GREY_STD).unsqueeze(1))

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """mfcc (B, 4T, 13) -> audio embeddings (B, T, 128)."""
        return self.model.audioEncoder(mfcc.unsqueeze(1).transpose(2, 3))

    def classify(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """Audio and visual embeddings (B, T, 128) -> speaking logits (B*T, 2)."""
        fused = self.model.detector(self.model.fusion(torch.cat([audio, visual], dim=2)))
        return self.lossAV.FC(fused.reshape(-1, 128))

    def forward(self, faces: torch.Tensor, mfcc: torch.Tensor) -> dict[str, torch.Tensor]:
        audio, visual = self.embed_audio(mfcc), self.embed_visual(faces)
        return {"av_logits": self.classify(audio, visual), "v_logits": self.lossV.FC(visual.reshape(-1, 128)),
                "audio_embed": audio, "visual_embed": visual}


def load_lr_asd(path: str | Path) -> LRASD:
    """The network in eval mode with a released checkpoint's weights (read as tensors only, nothing executed)."""
    path = Path(path)
    if not path.is_file():
        from socialpipe.pipeline.contracts.errors import InputError

        raise InputError(f"active-speaker weights {path}: no such file; expected an LR-ASD checkpoint "
                         "(finetuning_TalkSet.model or pretrain_AVA.model from github.com/Junhua-Liao/LR-ASD, weight/)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (any unreadable file is one kind of input error)
        from socialpipe.pipeline.contracts.errors import InputError

        raise InputError(f"active-speaker weights {path}: not a readable PyTorch state dict ({exc.__class__.__name__}); "
                         "expected an LR-ASD checkpoint") from None
    network = LRASD()
    missing, unexpected = network.load_state_dict(state, strict=False)
    if missing or unexpected:
        from socialpipe.pipeline.contracts.errors import InputError

        raise InputError(f"active-speaker weights {path}: not an LR-ASD checkpoint (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    return network.eval()
