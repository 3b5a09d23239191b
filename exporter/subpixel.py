"""G's last two upsampling layers rewritten for inference as stride-1 convolutions ("sub-pixel" form).

A transposed conv with kernel 4, stride 2, padding 1 computes each of the four output phases
(even/odd row x even/odd column) from a 2x2 window of its input. So it is exactly four 2x2
convolutions, one per phase, with BatchNorm folded into their weights. onnxruntime's CPU
ConvTranspose (a GEMM per image, then col2im) is much slower than its Conv, and interleaving the
phases back into an image costs more than it saves; so the phases stay apart, and the output layer
(also k4 s2 p1, C = 1 or 3 channels) is computed on them directly:
  1. a 1x1 conv gives each phase pixel its 16 kernel-tap contributions per output channel,
  2. a fixed 0/1 3x3 conv adds up, for each of the 4x4 output phases, the four that land on it,
  3. DepthToSpace(4) lays the 16 phases of each channel out as the image.
Same function as the trained G (the exporter's parity check proves it on every export), and faster
in onnxruntime (benchmarks/infer_speed.py, docs/performance.md). Earlier layers stay as they are.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainer.model import Generator


def folded(convt: nn.ConvTranspose2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The transposed conv's weight [C_in, C_out, 4, 4] and bias with an eval-mode BatchNorm folded in."""
    weight = convt.weight.detach().float()
    bias = convt.bias.detach().float() if convt.bias is not None else weight.new_zeros(weight.shape[1])
    if bn is not None:
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        weight = weight * scale[None, :, None, None]
        bias = (bias - bn.running_mean) * scale + bn.bias.detach()
    return weight, bias


def phase_kernel(weight: torch.Tensor, row: int, col: int) -> torch.Tensor:
    """Output phase (row, col) of a k4 s2 p1 transposed conv as a 2x2 conv weight [C_out, C_in, 2, 2].

    Phase 0 reads inputs (m-1, m) with taps (3, 1); phase 1 reads (m, m+1) with taps (2, 0).
    """
    taps = {0: [3, 1], 1: [2, 0]}
    return weight[:, :, taps[row]][:, :, :, taps[col]].transpose(0, 1).contiguous()


def phase_sum_kernel(channels: int = 1) -> torch.Tensor:
    """The fixed [16 C, 64 C, 3, 3] 0/1 kernel that adds tap contributions into the 4x4 output phases.

    Input channel (s * 16 C + c * 16 + k) holds phase s's contribution to channel c through kernel
    tap k; output pixel 4m + r of the final layer receives from input phase pixel 2n + s, n = m + d,
    through tap r + 1 - 2s - 4d (per axis), when that tap is in [0, 4). Channels never mix.
    """
    one = _phase_sum_kernel_one_channel()
    kernel = torch.zeros(16 * channels, 64 * channels, 3, 3)
    for c in range(channels):
        for s in range(4):
            kernel[c * 16 : (c + 1) * 16, s * 16 * channels + c * 16 : s * 16 * channels + (c + 1) * 16] = \
                one[:, s * 16 : (s + 1) * 16]
    return kernel


def _phase_sum_kernel_one_channel() -> torch.Tensor:
    kernel = torch.zeros(16, 64, 3, 3)
    for r_y in range(4):
        for r_x in range(4):
            for s_y in range(2):
                for s_x in range(2):
                    for d_y in (-1, 0, 1):
                        for d_x in (-1, 0, 1):
                            k_y, k_x = r_y + 1 - 2 * s_y - 4 * d_y, r_x + 1 - 2 * s_x - 4 * d_x
                            if 0 <= k_y < 4 and 0 <= k_x < 4:
                                kernel[r_y * 4 + r_x, (s_y * 2 + s_x) * 16 + k_y * 4 + k_x, d_y + 1, d_x + 1] = 1
    return kernel


class SubPixelGenerator(nn.Module):
    """A trained Generator in eval mode, its last up-block and output layer as stride-1 convs."""

    def __init__(self, generator: Generator):
        super().__init__()
        parts = generator.parts
        up, bn, out = parts.last_up, parts.last_norm, parts.output
        for conv in (up, out):
            if (conv.kernel_size, conv.stride, conv.padding) != ((4, 4), (2, 2), (1, 1)):
                raise ValueError(f"expected a k4 s2 p1 transposed conv, got {conv}")
        self.generator = generator.eval()
        self.first, self.middle = parts.first, parts.middle
        weight, bias = folded(up, bn)
        self.phases = [(a, b) for a in (0, 1) for b in (0, 1)]
        for a, b in self.phases:
            self.register_buffer(f"phase_weight_{a}{b}", phase_kernel(weight, a, b))
        self.register_buffer("phase_bias", bias)
        out_weight, out_bias = folded(out, None)  # [C_in, C, 4, 4]
        c_in, channels = out_weight.shape[:2]
        # tap (channel c, kernel position k) -> 1x1 conv output channel c * 16 + k: [16 C, C_in, 1, 1]
        taps = out_weight.permute(1, 2, 3, 0).reshape(channels * 16, c_in)[:, :, None, None].contiguous()
        self.register_buffer("tap_weight", taps)
        self.register_buffer("sum_weight", phase_sum_kernel(channels))
        self.register_buffer("out_bias", out_bias.repeat_interleave(16).contiguous())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.middle(self.first(self.generator.latent(z, labels)))
        taps = []
        for a, b in self.phases:  # phase (a, b) reads rows m-1..m (a = 0) or m..m+1 (a = 1), columns alike
            weight = getattr(self, f"phase_weight_{a}{b}")
            phase = torch.relu(F.conv2d(F.pad(x, (1 - b, b, 1 - a, a)), weight, self.phase_bias))
            taps.append(F.conv2d(phase, self.tap_weight))
        phases = F.conv2d(torch.cat(taps, 1), self.sum_weight, self.out_bias, padding=1)
        return torch.tanh(F.pixel_shuffle(phases, 4))
