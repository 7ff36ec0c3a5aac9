"""FIR-filtered resampling as StyleGAN2 does it (``upfirdn2d``), in plain torch.

Why a filter at all: a stride-2 convolution or a zero-inserting transposed one aliases; StyleGAN2
low-passes every resampling step with the binomial filter [1, 3, 3, 1] (``resample_filter`` in
NVlabs/stylegan2-ada-pytorch ``training/networks.py:132, 264, 338, 515``). Written from that
repository's ``torch_utils/ops/upfirdn2d.py`` (commit d72cc7d): ``setup_filter`` (:72-116) and the
reference implementation ``_upfirdn2d_ref`` (:169-208), which is what it runs off CUDA, and from
``torch_utils/ops/conv2d_resample.py`` (:94-142) for how a convolution is combined with it. The
filter is a constant: modules keep it as a buffer (never a parameter), so it is neither trained
nor counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["down_conv2d", "fir_kernel", "up_conv_transpose2d", "upfirdn2d"]

Padding = tuple[int, int, int, int]  # x before, x after, y before, y after (the reference's order)


def fir_kernel(taps: Sequence[float]) -> torch.Tensor:
    """The 2-D filter of 1-D ``taps``: their outer product normalised to sum 1 (``setup_filter``).

    The reference makes a 1-D filter of fewer than 8 taps non-separable (``upfirdn2d.py:103-106``)
    and normalises it by its sum (:110-111); [1, 3, 3, 1] becomes a 4×4 kernel summing to 1.
    """
    f = torch.as_tensor(list(taps), dtype=torch.float32)
    if f.ndim != 1 or f.numel() == 0:
        raise ValueError(f"a resample filter is a non-empty list of taps, got {list(taps)!r}")
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, *, up: int = 1, down: int = 1, padding: Padding = (0, 0, 0, 0),
              gain: float = 1.0) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative: crop), convolve each channel with ``kernel``, keep every
    ``down``-th pixel: ``_upfirdn2d_ref`` (``upfirdn2d.py:169-208``). ``gain`` scales the kernel by
    gain^(ndim/2) = gain for a 2-D one (:193)."""
    batch, channels, height, width = x.shape
    px0, px1, py0, py1 = padding
    if up > 1:  # :184-186, zeros after every pixel
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch, channels, height * up, width * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])  # :188-190
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    f = (kernel * gain).to(x.dtype).flip([0, 1])  # :193-196, a convolution, not a correlation
    f = f[None, None].repeat(channels, 1, 1, 1)  # :199-201, one copy per channel (a depthwise conv)
    x = F.conv2d(x, f, groups=channels)
    return x[:, :, ::down, ::down]  # :207


def up_conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """×2 up-sampling convolution (odd k×k ``weight`` (O, I, k, k), 'same' padding), then the FIR low-pass.

    ``conv2d_resample(up=2, padding=k//2, flip_weight=False)`` as the synthesis layer calls it
    (``networks.py:298-300``): a stride-2 transposed convolution with the weight's in/out axes
    swapped (``conv2d_resample.py:125-138``), then ``upfirdn2d`` with the filter's gain 4 and the
    padding that gives exactly twice the input size (:95-99, 132-139).
    """
    kh, kw = weight.shape[2:]
    fh, fw = kernel.shape
    pad = kw // 2
    px0 = pad + (fw + 1) // 2 - (kw - 1)  # :96, :132
    px1 = pad + (fw - 2) // 2 - (kw - 2)  # :97, :133
    py0 = kh // 2 + (fh + 1) // 2 - (kh - 1)
    py1 = kh // 2 + (fh - 2) // 2 - (kh - 2)
    pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)  # :136-137
    x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2, padding=[pyt, pxt])
    return upfirdn2d(x, kernel, padding=(px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain=4.0)


def down_conv2d(x: torch.Tensor, weight: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """FIR low-pass, then a ×2 down-sampling convolution with 'same' padding (odd k×k ``weight``).

    ``conv2d_resample(down=2, padding=k//2)`` (``conv2d_resample.py:100-122``): a 1×1 weight
    filters and keeps every second pixel first, then convolves (:107-110); a larger one filters
    with the padding folded in, then runs a stride-2 convolution (:119-122).
    """
    kh, kw = weight.shape[2:]
    fh, fw = kernel.shape
    px0, px1 = kw // 2 + (fw - 1) // 2, kw // 2 + (fw - 2) // 2  # :101-102
    py0, py1 = kh // 2 + (fh - 1) // 2, kh // 2 + (fh - 2) // 2  # :103-104
    if kh == 1 and kw == 1:
        return F.conv2d(upfirdn2d(x, kernel, down=2, padding=(px0, px1, py0, py1)), weight)
    return F.conv2d(upfirdn2d(x, kernel, padding=(px0, px1, py0, py1)), weight, stride=2)
