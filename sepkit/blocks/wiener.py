"""Multichannel Wiener filter refined by expectation-maximisation (EM).

This is the post-processing Open-Unmix applies to its magnitude estimates
(`openunmix/filtering.py` `wiener` and `expectation_maximization` in 1.3.0, called by
`Separator.forward` on consecutive windows of `wiener_win_len` frames). Each source j is modelled
per time-frequency bin as a zero-mean complex Gaussian with covariance v_j(f, t) R_j(f): v_j is its
power spectral density (channel mean of |y_j|^2) and R_j its spatial covariance. One EM iteration
re-estimates v_j and R_j from the current estimates y_j, then separates the mixture x again:

    y_j = v_j R_j C^-1 x,    C = sqrt(eps) I + sum_j v_j R_j.

The results are Open-Unmix's for mono and stereo mixtures, up to rounding. What differs is how
they are computed:

- complex tensors instead of a trailing real/imaginary axis, in the input's precision (float32
  stays float32, as in Open-Unmix's Separator; pass complex128 for double precision);
- C^-1 x in closed form for one or two channels, and y_j = v_j R_j (C^-1 x) instead of one gain
  matrix per source;
- the initial estimates are a real gain per source times one complex spectrogram per channel, so
  the first iteration's v_j and R_j come from real products without forming the estimates;
- everything in Open-Unmix's EM is independent per frequency bin except the scale factor, which
  is computed per window first; the work then runs on blocks of a few hundred bins x one window
  in scratch buffers reused from block to block, so memory beyond the output stays near 15 MB.

Rounding: where one source dominates a stereo bin, C is nearly singular and EM amplifies float32
rounding. On music-like test signals Open-Unmix's own float32 result strays from its float64
result by ~1e-5 of the peak after one iteration and up to ~1e-3 after two; this implementation
stays about as close to the float64 result, usually closer, but cannot match Open-Unmix's float32
rounding closer than that. In bins of exactly rank one (a source alone in a bin with a fixed
pan), float32 EM in either implementation can be off by the order of the peak; here the
determinant is kept above its lower bound so that such bins stay finite. Pass complex128 when
they matter (at the cost of double-precision arithmetic).

One deliberate difference: Open-Unmix's `atan2` helper writes 1 into the real part of exactly-zero
mixture bins (digital silence) in place, so its residual source holds 1 + 0j there and EM takes
that into account. Here silent mixture bins stay zero.
"""

import math

import torch
from torch import Tensor

# Open-Unmix divides mixture and estimates by max(1, max|x| / 10) per window before EM, "for
# numerical stability", and multiplies the result back.
_SCALE_FACTOR = 10.0

# Time-frequency points per block (bins x frames): keeps every per-block tensor within a few MB,
# small enough for CPU caches, large enough that per-operation overhead stays negligible.
_POINTS_PER_BLOCK = 1 << 16


@torch.no_grad()
def wiener(
    source_magnitudes: Tensor,
    mixture_spectrogram: Tensor,
    iterations: int = 1,
    softmask: bool = False,
    residual: bool = False,
    window_frames: int | None = 300,
    eps: float = 1e-10,
) -> Tensor:
    """Separate a complex mixture spectrogram given magnitude estimates of its sources.

    Args:
        source_magnitudes: (batch, sources, channels, freq, frames) real, >= 0: the models'
            magnitude estimates. channels may be 1 with a multichannel mixture (broadcast).
        mixture_spectrogram: (batch, channels, freq, frames) complex, channels 1 or 2.
        iterations: EM iterations (Open-Unmix's `niter`); 0 returns the initial estimates.
        softmask: initial estimates from ratio masks (magnitude / sum of magnitudes, times the
            mixture) instead of magnitude x mixture phase.
        residual: add one source, the mixture minus the sum of initial estimates, before EM.
        window_frames: EM runs independently on consecutive windows of this many frames
            (Open-Unmix's `wiener_win_len`); None runs it on the whole signal at once.
        eps: regularisation: sqrt(eps) is added to the mixture covariance, eps to the ratio-mask
            denominator and to the spatial covariance normaliser.

    Returns:
        (batch, sources (+1 with residual), channels, freq, frames) complex, in the mixture's
        dtype. Not differentiable: it runs under torch.no_grad.
    """
    _check_arguments(source_magnitudes, mixture_spectrogram, iterations, residual, window_frames)
    batch, num_sources, _, num_bins, num_frames = source_magnitudes.shape
    num_channels = mixture_spectrogram.shape[1]
    separated = mixture_spectrogram.new_empty(
        (batch, num_sources + residual, num_channels, num_bins, num_frames)
    )
    if separated.numel() == 0:
        return separated
    frames_per_window = window_frames or num_frames
    bins_per_block = max(1, _POINTS_PER_BLOCK // min(frames_per_window, num_frames))
    blocks = [slice(first, first + bins_per_block) for first in range(0, num_bins, bins_per_block)]
    scratch = _Scratch(mixture_spectrogram.device)
    for item in range(batch):
        for first_frame in range(0, num_frames, frames_per_window):
            frames = slice(first_frame, first_frame + frames_per_window)
            window = mixture_spectrogram[item, :, :, frames]
            scale = _window_scale(window, blocks, scratch) if iterations else None
            for bins in blocks:
                _separate_block(
                    source_magnitudes[item, :, :, bins, frames],
                    window[:, bins],
                    separated[item, :, :, bins, frames],
                    scale,
                    iterations,
                    softmask,
                    residual,
                    eps,
                    scratch,
                )
    return separated


def _check_arguments(
    source_magnitudes: Tensor,
    mixture_spectrogram: Tensor,
    iterations: int,
    residual: bool,
    window_frames: int | None,
) -> None:
    if source_magnitudes.dim() != 5 or source_magnitudes.is_complex():
        raise ValueError(
            "wiener: source_magnitudes must be real (batch, sources, channels, freq, frames), "
            f"got {source_magnitudes.dtype} of shape {tuple(source_magnitudes.shape)}"
        )
    if mixture_spectrogram.dim() != 4 or not mixture_spectrogram.is_complex():
        raise ValueError(
            "wiener: mixture_spectrogram must be complex (batch, channels, freq, frames), "
            f"got {mixture_spectrogram.dtype} of shape {tuple(mixture_spectrogram.shape)}"
        )
    batch, _, magnitude_channels, num_bins, num_frames = source_magnitudes.shape
    mixture_batch, num_channels, mixture_bins, mixture_frames = mixture_spectrogram.shape
    if num_channels not in (1, 2):
        raise ValueError(
            f"wiener: the mixture has {num_channels} channels; the filter supports mono or "
            "stereo (downmix or separate channel pairs)"
        )
    same_grid = (batch, num_bins, num_frames) == (mixture_batch, mixture_bins, mixture_frames)
    if not same_grid or magnitude_channels not in (1, num_channels):
        raise ValueError(
            f"wiener: source_magnitudes {tuple(source_magnitudes.shape)} do not match "
            f"mixture_spectrogram {tuple(mixture_spectrogram.shape)}: batch, freq and frames must "
            "be equal, channels equal or 1"
        )
    if iterations < 0:
        raise ValueError(f"wiener: iterations must be >= 0, got {iterations}")
    if iterations > 0 and source_magnitudes.shape[1] + residual < 2:
        raise ValueError(
            f"wiener: EM (iterations={iterations}) needs at least two sources but there is one; "
            "add residual=true, estimate more targets, or set iterations=0"
        )
    if window_frames is not None and window_frames < 1:
        raise ValueError(
            f"wiener: window_frames must be a positive number of frames or None for the whole "
            f"signal, got {window_frames}"
        )


class _Scratch:
    """Named flat buffers reused from block to block: fresh allocations of a few MB cost page
    faults on every block, which would take as long as the arithmetic."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.buffers: dict[str, Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """A contiguous tensor of `shape` (uninitialised) backed by the buffer called `name`."""
        size = math.prod(shape)
        buffer = self.buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.dtype != dtype:
            buffer = torch.empty(size, dtype=dtype, device=self.device)
            self.buffers[name] = buffer
        return buffer[:size].view(shape)


def _squared_magnitude(spectrogram: Tensor, out: Tensor) -> Tensor:
    """|spectrogram|^2 into `out` (real, same shape): cheaper than abs(), which takes a hypot."""
    parts = torch.view_as_real(spectrogram)
    real, imag = parts[..., 0], parts[..., 1]
    return torch.mul(real, real, out=out).addcmul_(imag, imag)


def _window_scale(window: Tensor, blocks: list[slice], scratch: _Scratch) -> Tensor:
    """Open-Unmix's EM scale for one window (channels, freq, frames): max(1, max|x| / 10)."""
    peak_power = torch.stack(
        [
            _squared_magnitude(
                window[:, bins], scratch.take("peak", window[:, bins].shape, window.real.dtype)
            ).amax()
            for bins in blocks
        ]
    ).amax()
    return torch.clamp(peak_power.sqrt() / _SCALE_FACTOR, min=1.0)


def _separate_block(
    magnitudes: Tensor,
    mixture: Tensor,
    separated: Tensor,
    scale: Tensor | None,
    iterations: int,
    softmask: bool,
    residual: bool,
    eps: float,
    scratch: _Scratch,
) -> None:
    """Filter one block of bins x frames of one window.

    Args:
        magnitudes: (sources, channels or 1, bins, frames) real view, any float dtype.
        mixture: (channels, bins, frames) complex view.
        separated: (sources (+1), channels, bins, frames) complex view of the output, written.
        scale: the window's EM scale (0-dim), None without EM.
    """
    # Work bin-major, (bins, sources, channels, frames): the batched matrix products below
    # take the bins as their batch.
    magnitudes = magnitudes.to(mixture.real.dtype).permute(2, 0, 1, 3)
    mixture = mixture.permute(1, 0, 2)
    gains, carrier = _initial_estimates(
        magnitudes, mixture, scale, softmask, residual, eps, scratch
    )
    estimates = scratch.take("estimates", gains.shape, mixture.dtype)
    if iterations:
        _expectation_maximization(
            gains, carrier, mixture, scale, iterations, eps, estimates, scratch
        )
    else:
        torch.mul(gains, carrier[:, None], out=estimates)
    separated.copy_(estimates.permute(1, 2, 0, 3))


def _initial_estimates(
    magnitudes: Tensor,
    mixture: Tensor,
    scale: Tensor | None,
    softmask: bool,
    residual: bool,
    eps: float,
    scratch: _Scratch,
) -> tuple[Tensor, Tensor]:
    """Open-Unmix's initial estimates, divided by `scale` if given, in factored form: source j is
    gains_j x carrier, a real gain per source and channel times one complex spectrogram per
    channel. With magnitudes x mixture phase the carrier is the phase; with ratio masks it is
    the mixture. The residual, mixture - sum of estimates, factors the same way.

    Args:
        magnitudes: (bins, sources, channels or 1, frames) real.
        mixture: (bins, channels, frames) complex.

    Returns:
        gains: (bins, sources (+1), channels, frames) real.
        carrier: (bins, channels, frames) complex.
    """
    num_bins, num_sources, _, num_frames = magnitudes.shape
    num_channels = mixture.shape[1]
    real_dtype = magnitudes.dtype
    gains = scratch.take(
        "gains", (num_bins, num_sources + residual, num_channels, num_frames), real_dtype
    )
    carrier = scratch.take("carrier", mixture.shape, mixture.dtype)
    if softmask:
        total = torch.sum(magnitudes, 1, keepdim=True).add_(eps)
        gains[:, :num_sources] = magnitudes  # broadcasts mono estimates over channels
        gains[:, :num_sources].div_(total)
        if residual:
            # x - sum_j ratio_j x = (1 - sum_j ratio_j) x
            torch.sub(1, gains[:, :num_sources].sum(1), out=gains[:, num_sources])
        _divide(mixture, scale, out=carrier)
    else:
        # Mixture phase as a unit phasor, angle 0 where the mixture is exactly zero as
        # Open-Unmix's atan2 gives.
        power = _squared_magnitude(
            mixture, scratch.take("mixture power", mixture.shape, real_dtype)
        )
        silent = power == 0
        gains[:, :num_sources] = magnitudes
        if residual:
            # x - sum_j |y_j| phase(x) = (|x| - sum_j |y_j|) phase(x)
            torch.sub(power.sqrt(), gains[:, :num_sources].sum(1), out=gains[:, num_sources])
        unit = 1.0
        inverse_magnitude = power.rsqrt_()
        if scale is not None:
            unit = 1 / scale
            inverse_magnitude.div_(scale)
        torch.mul(mixture, inverse_magnitude, out=carrier).masked_fill_(silent, unit)
    return gains, carrier


def _divide(spectrogram: Tensor, scale: Tensor | None, out: Tensor) -> Tensor:
    """spectrogram / scale into `out`; real and imaginary parts divided separately, as Open-Unmix
    does (complex / real promotes the divisor to complex and rounds differently)."""
    if scale is None:
        return out.copy_(spectrogram)
    torch.div(torch.view_as_real(spectrogram), scale, out=torch.view_as_real(out))
    return out


def _expectation_maximization(
    gains: Tensor,
    carrier: Tensor,
    mixture: Tensor,
    scale: Tensor,
    iterations: int,
    eps: float,
    estimates: Tensor,
    scratch: _Scratch,
) -> None:
    """Refine the initial estimates gains_j x carrier (divided by the window's scale) and write
    the result, at the mixture's scale, to `estimates`.

    Args:
        gains: (bins, sources, channels, frames) real; carrier: (bins, channels, frames) complex.
        mixture: (bins, channels, frames) complex, original scale.
        estimates: (bins, sources, channels, frames) complex, written.
    """
    if iterations > 1:
        scaled_mixture = scratch.take("scaled mixture", mixture.shape, mixture.dtype)
        _divide(mixture, scale, out=scaled_mixture)
    for iteration in range(iterations):
        if iteration == 0:
            model = _source_model_of_factored(gains, carrier, eps, scratch)
        else:
            model = _source_model(estimates, eps, scratch)
        # Open-Unmix separates the scaled mixture and scales the result back up; separating the
        # unscaled mixture in the last iteration gives the same (the filter is linear in x).
        target = mixture if iteration == iterations - 1 else scaled_mixture
        _separate(*model, target, eps, estimates, scratch)


def _source_model(estimates: Tensor, eps: float, scratch: _Scratch) -> tuple[Tensor, ...]:
    """Each source's power spectral density v_j (channel mean of |y_j|^2) and spatial
    covariance R_j = sum_t y_j y_j^H / (eps + sum_t v_j).

    Args:
        estimates: (bins, sources, channels, frames) complex.

    Returns:
        psd: (bins, sources, frames) real.
        diagonal: (bins, sources, channels) real: R_j's diagonal.
        cross: (bins, sources) complex: R_j[0, 1], None for mono.
    """
    channel_power = _squared_magnitude(
        estimates, scratch.take("channel power", estimates.shape, estimates.real.dtype)
    )
    psd, diagonal, normaliser = _power_model(channel_power, eps, scratch)
    cross = None
    if estimates.shape[2] == 2:
        cross = torch.linalg.vecdot(estimates[:, :, 1], estimates[:, :, 0]).div_(normaliser)
    return psd, diagonal, cross


def _source_model_of_factored(
    gains: Tensor, carrier: Tensor, eps: float, scratch: _Scratch
) -> tuple[Tensor, ...]:
    """`_source_model` of the estimates gains_j x carrier, without forming them: |y_j|^2 is
    gains_j^2 |carrier|^2, and sum_t y_j0 conj(y_j1) = sum_t g_j0 g_j1 carrier_0 conj(carrier_1),
    one real matrix product over frames."""
    num_channels = gains.shape[2]
    carrier_power = _squared_magnitude(
        carrier, scratch.take("carrier power", carrier.shape, gains.dtype)
    )
    channel_power = scratch.take("channel power", gains.shape, gains.dtype)
    torch.mul(gains, gains, out=channel_power).mul_(carrier_power[:, None])
    psd, diagonal, normaliser = _power_model(channel_power, eps, scratch)
    cross = None
    if num_channels == 2:
        gain_products = gains[:, :, 0] * gains[:, :, 1]  # (bins, sources, frames)
        carrier_products = carrier[:, 0] * carrier[:, 1].conj()  # (bins, frames)
        cross = torch.bmm(gain_products, torch.view_as_real(carrier_products))
        cross = torch.view_as_complex(cross).div_(normaliser)
    return psd, diagonal, cross


def _power_model(channel_power: Tensor, eps: float, scratch: _Scratch) -> tuple[Tensor, ...]:
    """From |y_j|^2 (bins, sources, channels, frames): the power spectral densities v_j
    (bins, sources, frames), R_j's diagonal (bins, sources, channels) and R_j's normaliser
    eps + sum_t v_j (bins, sources)."""
    num_bins, num_sources, _, num_frames = channel_power.shape
    psd = scratch.take("psd", (num_bins, num_sources, num_frames), channel_power.dtype)
    torch.mean(channel_power, 2, out=psd)
    normaliser = psd.sum(-1).add_(eps)
    diagonal = channel_power.sum(-1).div_(normaliser[..., None])
    return psd, diagonal, normaliser


def _separate(
    psd: Tensor,
    diagonal: Tensor,
    cross: Tensor | None,
    mixture: Tensor,
    eps: float,
    estimates: Tensor,
    scratch: _Scratch,
) -> None:
    """y_j = v_j R_j C^-1 x with C = sqrt(eps) I + sum_j v_j R_j, written to `estimates`.

    Args:
        psd: (bins, sources, frames) real v_j.
        diagonal, cross: R_j's diagonal (bins, sources, channels) and R_j[0, 1] (bins, sources)
            (None for mono).
        mixture: (bins, channels, frames) complex x.
        estimates: (bins, sources, channels, frames) complex, written.
    """
    num_bins, num_sources, num_channels, num_frames = estimates.shape
    regularization = math.sqrt(eps)
    filtered = scratch.take("filtered mixture", mixture.shape, mixture.dtype)  # C^-1 x
    if num_channels == 1:
        spatial = diagonal.to(estimates.dtype)[..., None]  # (bins, sources, 1, 1)
        covariance = torch.bmm(diagonal.mT, psd).add_(regularization)  # (bins, 1, frames)
        torch.div(mixture, covariance, out=filtered)
    else:
        r00, r11 = diagonal.to(estimates.dtype).unbind(-1)
        spatial = torch.stack(
            [torch.stack([r00, cross], -1), torch.stack([cross.conj(), r11], -1)], -2
        )  # (bins, sources, 2, 2)
        # The four real numbers of the Hermitian C, summed over sources as one product.
        parts = torch.stack([diagonal[..., 0], diagonal[..., 1], cross.real, cross.imag], 1)
        c00, c11, c01_real, c01_imag = torch.bmm(parts, psd).unbind(1)
        c00.add_(regularization)
        c11.add_(regularization)
        c01 = torch.complex(c01_real, c01_imag)
        determinant = (c00 * c11).sub_(c01_real.square()).sub_(c01_imag.square())
        # With M = sum_j v_j R_j (positive semi-definite), det(C) = eps + sqrt(eps) tr(M) +
        # det(M) >= sqrt(eps) (c00 + c11) - eps. Where one source dominates, M is nearly rank
        # one, and c00 c11 - |c01|^2 cancels to rounding noise that can fall below this bound,
        # to zero or below (inf or NaN): the bound, free of cancellation, takes over there.
        lower_bound = (c00 + c11).mul_(regularization).sub_(eps)
        inverse_determinant = torch.maximum(determinant, lower_bound).reciprocal_()
        x0, x1 = mixture[:, 0], mixture[:, 1]
        torch.mul(x0, c11, out=filtered[:, 0]).sub_(c01 * x1).mul_(inverse_determinant)
        torch.mul(x1, c00, out=filtered[:, 1]).sub_(c01.conj() * x0).mul_(inverse_determinant)
    torch.bmm(
        spatial.reshape(num_bins, num_sources * num_channels, num_channels),
        filtered,
        out=estimates.view(num_bins, num_sources * num_channels, num_frames),
    )
    # On the real view: a real x complex product would first copy psd to complex.
    torch.view_as_real(estimates).mul_(psd[:, :, None, :, None])
