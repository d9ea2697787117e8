"""2-D convolutions with TensorFlow/Keras geometry, for networks published in Keras.

Keras's ``padding="same"`` pads asymmetrically when the total padding is odd (the extra row
and column go at the end), and its ``Conv2DTranspose(padding="same")`` crops the full
transposed output the same way; torch's ``padding=`` is symmetric. These layers reproduce
Keras's output sizes and alignment, so that a network ported from Keras has the same
shapes, and the transposed layer is exactly the adjoint of the strided one.
"""

from __future__ import annotations

from torch import Tensor, nn


def _same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of Keras's "same": output size ceil(size / stride)."""
    effective = (kernel - 1) * dilation + 1
    output = -(-size // stride)
    total = max((output - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with Keras's "same" padding: (batch, in, H, W) -> (batch, out,
    ceil(H / stride), ceil(W / stride)), any stride and dilation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding=0, dilation=dilation
        )

    def forward(self, x: Tensor) -> Tensor:
        kernel, stride, dilation = self.kernel_size[0], self.stride[0], self.dilation[0]
        top, bottom = _same_padding(x.shape[-2], kernel, stride, dilation)
        left, right = _same_padding(x.shape[-1], kernel, stride, dilation)
        return super().forward(nn.functional.pad(x, (left, right, top, bottom)))


class SameConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with Keras's "same" cropping: (batch, in, H, W) -> (batch, out,
    H * stride, W * stride).

    The full transposed output has ``(H - 1) * stride + kernel`` rows; Keras keeps the rows
    that a "same" strided convolution of an ``H * stride`` input would have read without
    padding, dropping ``before`` rows at the start and ``after`` at the end (1 and 2 for a
    5x5 kernel at stride 2).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 2):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        full = super().forward(x)
        kernel, stride = self.kernel_size[0], self.stride[0]
        height, width = x.shape[-2] * stride, x.shape[-1] * stride
        top, _ = _same_padding(height, kernel, stride)
        left, _ = _same_padding(width, kernel, stride)
        return full[..., top : top + height, left : left + width]


def keras_batch_norm(channels: int) -> nn.BatchNorm2d:
    """``BatchNorm2d`` with Keras's ``BatchNormalization`` defaults: epsilon 1e-3 and a
    moving average that keeps 0.99 of the old statistics per step (Keras momentum 0.99),
    which is torch's ``momentum=0.01`` (torch weighs the new batch by its momentum)."""
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)
