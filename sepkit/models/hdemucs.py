"""Hybrid Demucs, Demucs v3 (Défossez, "Hybrid Spectrogram and Waveform Source Separation",
2021): two U-Nets side by side, one on the complex spectrogram (real and imaginary parts as
channels), one on the waveform, which meet where both have the same frame rate and part
again in the decoder; the output is the sum of the spectrogram branch's iSTFT and the
waveform branch's signal.

``HybridDemucs`` holds what Demucs v3 and v4 (``sepkit.models.htdemucs``) share: building
the two branches and running them. Constructor arguments, state-dict keys and outputs match
demucs 4.1.0's ``HDemucs`` (with ``targets`` for its ``sources``), so its published weights
load with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from sepkit.blocks.hybrid import FrequencyEmbedding, HDecLayer, HEncLayer
from sepkit.blocks.hybrid_stft import HybridSTFT
from sepkit.blocks.strided_conv import rescale_conv_weights
from sepkit.blocks.wiener import wiener
from sepkit.models.base import SeparationModel


def _layer_plan(
    audio_channels: int, sources: int, channels: int, channels_time: int | None, growth: float,
    nfft: int, cac: bool, depth: int, kernel_size: int, time_stride: int, stride: int,
) -> list[dict[str, Any]]:  # fmt: skip
    """Per layer: the spectrogram branch's convolution (``shape``) and the channels of both
    branches (``_z`` the spectrogram's): encoder in and out, decoder out.

    Frequencies are divided by ``stride`` until no more than ``kernel_size`` are left; that
    layer's kernel covers them all (``last_freq``) and the waveform branch, which has the
    same frame rate by then, is injected there. Later layers work on time only.
    """
    complex_channels = 2 if cac else 1
    chin, chin_z = audio_channels, audio_channels * complex_channels
    chout, chout_z = channels_time or channels, channels
    freqs = nfft // 2
    plan = []
    for index in range(depth):
        freq = freqs > 1
        last_freq = freq and freqs <= kernel_size
        if last_freq:
            chout_z = chout = max(chout, chout_z)
        if index == 0:  # the decoder's last layer outputs every source
            dec_out, dec_out_z = (
                audio_channels * sources,
                audio_channels * sources * complex_channels,
            )
        else:
            dec_out, dec_out_z = chin, chin_z
        kernel = freqs if last_freq else (kernel_size if freq else 2 * time_stride)
        shape = dict(kernel_size=kernel, stride=stride if freq else time_stride, freq=freq)
        plan.append(dict(
            index=index, freq=freq, last_freq=last_freq, shape=dict(shape, pad=not last_freq),
            chin=chin, chout=chout, chin_z=chin_z, chout_z=chout_z, dec_out=dec_out,
            dec_out_z=dec_out_z,
        ))  # fmt: skip
        chin, chin_z = chout, chout_z
        chout, chout_z = int(growth * chout), int(growth * chout_z)
        if freq:
            freqs = 1 if freqs <= kernel_size else freqs // stride
        plan[-1]["freqs_after"] = freqs
    return plan


# what a model puts between encoders and decoders: (spectrogram features, waveform features)
# -> the same shapes
Bottleneck = Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor | None]]


class HybridDemucs(SeparationModel):
    """The two branches of Demucs v3/v4 and how they run; subclasses build them with
    ``_build_branches`` and run ``_separate`` (with their bottleneck) in ``forward``."""

    segment_weighting = "triangle"  # demucs 4's apply_model, as the published weights ran

    def _build_hybrid(self, arguments: dict[str, Any]) -> None:
        """Everything but a bottleneck, from the constructor's ``arguments`` (demucs's
        names; without ``hybrid``, a hybrid model; without ``dconv_lstm``/``dconv_attn``,
        DConv has neither)."""
        a = arguments
        check_multi_freqs(a["multi_freqs"])
        self.hybrid = a.get("hybrid", True)
        self._set_output(a["cac"], a["wiener_iters"], a["end_iters"], a["wiener_residual"])
        self.samplerate, self.segment = a["samplerate"], a["segment"]
        self.segment_seconds = float(a["segment"])
        framing = "hybrid_old" if a.get("hybrid_old") else "hybrid"
        self.spectrogram = HybridSTFT(a["nfft"], framing if self.hybrid else "plain")
        plan = _layer_plan(
            a["audio_channels"], len(self.targets), a["channels"], a["channels_time"],
            a["growth"], a["nfft"], a["cac"], a["depth"], a["kernel_size"], a["time_stride"],
            a["stride"],
        )  # fmt: skip
        self._build_branches(
            plan, hybrid=self.hybrid, dconv_mode=a["dconv_mode"], context=a["context"],
            context_enc=a["context_enc"], norm_starts=a["norm_starts"],
            time_shape=dict(kernel_size=a["kernel_size"], stride=a["stride"]),
            dconv_attn=a.get("dconv_attn", a["depth"]), dconv_lstm=a.get("dconv_lstm", a["depth"]),
            rewrite=a["rewrite"], norm_groups=a["norm_groups"],
            dconv_kw=dict(depth=a["dconv_depth"], compress=a["dconv_comp"], init=a["dconv_init"]),
        )  # fmt: skip
        self._build_frequency_embedding(plan, a["freq_emb"], a["emb_scale"], a["emb_smooth"])
        if a["rescale"]:
            rescale_conv_weights(self, reference=a["rescale"])

    def _build_branches(
        self, plan: list[dict[str, Any]], *, hybrid: bool, dconv_mode: int, context: int,
        context_enc: int, time_shape: dict[str, Any], norm_starts: int, dconv_attn: int,
        dconv_lstm: int, **options: Any,
    ) -> None:  # fmt: skip
        """Encoders (``encoder``, ``tencoder``) from the first layer, decoders (``decoder``,
        ``tdecoder``) from the last; the waveform branch (``hybrid``) has layers only where
        the spectrogram branch still has frequencies, with convolutions of ``time_shape``.
        ``options`` (rewrite, norm_groups, dconv_kw) go to every layer."""
        self.encoder, self.decoder = nn.ModuleList(), nn.ModuleList()
        if hybrid:
            self.tencoder, self.tdecoder = nn.ModuleList(), nn.ModuleList()
        encoding = dict(dconv=bool(dconv_mode & 1), context=context_enc)
        decoding = dict(dconv=bool(dconv_mode & 2), context=context)
        for layer in plan:
            index = layer["index"]
            dconv_kw = dict(options["dconv_kw"], lstm=index >= dconv_lstm, attn=index >= dconv_attn)
            common = dict(options, norm=index >= norm_starts, dconv_kw=dconv_kw)
            spectral = dict(common, **layer["shape"])
            self.encoder.append(
                HEncLayer(layer["chin_z"], layer["chout_z"], **encoding, **spectral)
            )
            decoder = HDecLayer(
                layer["chout_z"], layer["dec_out_z"], last=index == 0, **decoding, **spectral
            )
            self.decoder.insert(0, decoder)
            if hybrid and layer["freq"]:
                temporal = dict(
                    common, **time_shape, freq=False, pad=True, empty=layer["last_freq"]
                )
                self.tencoder.append(
                    HEncLayer(layer["chin"], layer["chout"], **encoding, **temporal)
                )
                decoder = HDecLayer(
                    layer["chout"], layer["dec_out"], last=index == 0, **decoding, **temporal
                )
                self.tdecoder.insert(0, decoder)

    def _build_frequency_embedding(
        self, plan: list[dict[str, Any]], freq_emb: float, emb_scale: float, emb_smooth: bool
    ) -> None:
        """With ``freq_emb`` > 0, a learnt embedding of the frequency rows after the first
        layer, added with that weight."""
        self.freq_emb = None
        if freq_emb:
            first = plan[0]
            self.freq_emb = FrequencyEmbedding(
                first["freqs_after"], first["chout_z"], scale=emb_scale, smooth=emb_smooth
            )
            self.freq_emb_scale = freq_emb

    # -- running the branches ------------------------------------------------------------

    def _encode(self, x: Tensor, xt: Tensor | None) -> tuple[Tensor, Tensor | None, dict]:
        """Spectrogram features (batch, C, freqs, frames) and waveform (batch, channels,
        time) -> the bottom of both branches and what the decoders need (skips, lengths)."""
        skips: dict[str, list] = {"saved": [], "saved_t": [], "lengths": [], "lengths_t": []}
        tencoder = getattr(self, "tencoder", [])
        for index, encode in enumerate(self.encoder):
            skips["lengths"].append(x.shape[-1])
            inject = None
            if xt is not None and index < len(tencoder):
                skips["lengths_t"].append(xt.shape[-1])
                xt = tencoder[index](xt)
                if tencoder[index].empty:  # same frames as the spectrogram branch: merge
                    inject = xt
                else:
                    skips["saved_t"].append(xt)
            x = encode(x, inject)
            if index == 0 and self.freq_emb is not None:
                # lets the convolutions over frequency tell frequencies apart
                embedding = self.freq_emb(torch.arange(x.shape[-2], device=x.device))
                x = x + self.freq_emb_scale * embedding.t()[None, :, :, None].expand_as(x)
            skips["saved"].append(x)
        return x, xt, skips

    def _decode(self, x: Tensor, xt: Tensor | None, skips: dict) -> tuple[Tensor, Tensor | None]:
        """The decoders, from the bottom up: spectrogram (batch, sources * C, freqs,
        frames) and waveform (batch, sources * channels, time) estimates."""
        tdecoder = getattr(self, "tdecoder", [])
        offset = len(self.decoder) - len(tdecoder)
        for index, decode in enumerate(self.decoder):
            x, pre = decode(x, skips["saved"].pop(), skips["lengths"].pop())
            if xt is None or index < offset:
                continue
            tdec = tdecoder[index - offset]
            length_t = skips["lengths_t"].pop()
            if tdec.empty:  # the branches part: the spectrogram's single frequency row
                xt, _ = tdec(pre[:, :, 0], None, length_t)
            else:
                xt, _ = tdec(xt, skips["saved_t"].pop(), length_t)
        return x, xt

    def _separate(self, mixture: Tensor, bottleneck: Bottleneck) -> Tensor:
        """mixture (batch, channels, time) -> sources (batch, sources, channels, time);
        ``bottleneck(x, xt)`` transforms the bottom of the branches."""
        batch, _, length = mixture.shape
        spectrogram = self.spectrogram(mixture)
        x = self._as_channels(spectrogram)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) / (1e-5 + std)
        xt, mean_t, std_t = None, None, None
        if self.hybrid:
            mean_t = mixture.mean(dim=(1, 2), keepdim=True)
            std_t = mixture.std(dim=(1, 2), keepdim=True)
            xt = (mixture - mean_t) / (1e-5 + std_t)

        x, xt, skips = self._encode(x, xt)
        x, xt = bottleneck(x, xt)
        x, xt = self._decode(x, xt, skips)

        sources = len(self.targets)
        x = x.view(batch, sources, -1, *x.shape[-2:]) * std[:, None] + mean[:, None]
        estimate = self.spectrogram.inverse(self._to_spectrogram(spectrogram, x), length)
        if self.hybrid:
            estimate = (
                estimate + xt.view(batch, sources, -1, length) * std_t[:, None] + mean_t[:, None]
            )
        return estimate

    # -- spectrograms --------------------------------------------------------------------

    def _as_channels(self, spectrogram: Tensor) -> Tensor:
        """complex (batch, channels, freqs, frames) -> real (batch, 2 channels, freqs,
        frames) with ``cac`` (each channel's real then imaginary part), else magnitudes."""
        if not self.cac:
            return spectrogram.abs()
        batch, channels, freqs, frames = spectrogram.shape
        parts = torch.view_as_real(spectrogram).permute(0, 1, 4, 2, 3)
        return parts.reshape(batch, 2 * channels, freqs, frames)

    def _to_spectrogram(self, mixture_spectrogram: Tensor, estimate: Tensor) -> Tensor:
        """The decoder's (batch, sources, C, freqs, frames) -> complex source spectrograms:
        read as real and imaginary parts with ``cac``; else magnitudes given the mixture's
        phase (``wiener_iters`` < 0) or Wiener-filtered."""
        if self.cac:
            batch, sources, channels, freqs, frames = estimate.shape
            parts = estimate.view(batch, sources, -1, 2, freqs, frames).permute(0, 1, 2, 4, 5, 3)
            return torch.view_as_complex(parts.contiguous())
        iterations = self.end_iters if self.training else self.wiener_iters
        if iterations < 0:
            mixture_spectrogram = mixture_spectrogram[:, None]
            return mixture_spectrogram / (1e-8 + mixture_spectrogram.abs()) * estimate
        spectrograms = wiener(
            estimate,
            mixture_spectrogram,
            iterations=iterations,
            residual=self.wiener_residual,
            window_frames=300,
        )
        return spectrograms[:, : estimate.shape[1]].to(mixture_spectrogram.dtype)

    def _set_output(
        self, cac: bool, wiener_iters: int, end_iters: int, wiener_residual: bool
    ) -> None:
        """How the spectrogram branch's output becomes spectrograms (``_to_spectrogram``);
        a hybrid model must filter alike in training and separation."""
        self.cac, self.wiener_residual = cac, wiener_residual
        self.wiener_iters, self.end_iters = wiener_iters, end_iters
        if self.hybrid and wiener_iters != end_iters:
            raise ValueError(
                f"wiener_iters={wiener_iters}, end_iters={end_iters}: a hybrid model must "
                "filter alike in training and separation (the waveform branch cannot follow)"
            )
        if not cac and end_iters >= 0:
            raise ValueError(
                f"cac=False with end_iters={end_iters}: sepkit's Wiener filter is not "
                "differentiable; use cac=True (every published model) or -1 (mixture phase)"
            )


def check_multi_freqs(multi_freqs: Any) -> None:
    """Splitting frequency bands across layer copies (demucs's ``MultiWrap``) is not
    implemented: no published model uses it."""
    if multi_freqs:
        raise ValueError(f"multi_freqs={multi_freqs!r} is not supported: use [] or null")


def _check_branches_meet(nfft: int, depth: int, kernel_size: int, stride: int) -> None:
    """Demucs v3's two branches join where the spectrogram branch is one frequency high;
    there its frames (one per nfft // 4 samples) must be the waveform branch's (one per
    stride ** layers). A ValueError naming the settings that miss, as demucs itself only
    fails at the first forward pass."""
    freqs, layers = nfft // 2, 0
    while freqs > kernel_size and layers < depth:
        freqs //= stride
        layers += 1
    if layers == depth:
        raise ValueError(
            f"nfft={nfft}, depth={depth}: the spectrogram branch is still {freqs} frequencies "
            f"high after depth layers, so the two branches never join; raise depth or lower "
            "nfft (demucs's hdemucs: nfft 4096, depth 6)"
        )
    if stride ** (layers + 1) != nfft // 4:
        raise ValueError(
            f"nfft={nfft}, stride={stride}: the branches join at layer {layers + 1}, where the "
            f"waveform branch has one frame per {stride ** (layers + 1)} samples and the "
            f"spectrogram one per nfft // 4 = {nfft // 4}; use an nfft of 4 * stride ** k "
            "(1024 or 4096 for stride 4)"
        )


class HDemucs(HybridDemucs):
    """Hybrid Demucs (v3): mixture waveform in, one waveform per target out.

    The spectrogram branch (STFT of ``nfft`` points, hop ``nfft / 4``) has ``depth``
    encoder layers of ``channels`` growing by ``growth``, convolving over frequency with
    ``kernel_size`` and ``stride`` until one frequency is left, then over time with
    ``time_stride``; the waveform branch (``hybrid``) runs beside it and merges into it at
    that point. Layers from ``norm_starts`` on use GroupNorm; ``dconv_mode`` adds DConv
    residual branches to encoders (1), decoders (2) or both (3), with a BLSTM from layer
    ``dconv_lstm`` and local attention from ``dconv_attn``. With ``cac`` the network reads
    and writes real and imaginary parts; otherwise magnitudes, given the mixture's phase
    (``wiener_iters`` -1) or Wiener-filtered at separation. ``segment`` (seconds) is the
    length separation cuts long inputs into. The defaults are demucs 4.1.0's; the published
    hdemucs_mmi sets ``dconv_init`` 1e-3.
    """

    def __init__(
        self, targets: list[str], audio_channels: int = 2, channels: int = 48,
        channels_time: int | None = None, growth: float = 2, nfft: int = 4096,
        wiener_iters: int = 0, end_iters: int = 0, wiener_residual: bool = False,
        cac: bool = True, depth: int = 6, rewrite: bool = True, hybrid: bool = True,
        hybrid_old: bool = False, multi_freqs: list[float] | None = None,
        multi_freqs_depth: int = 2, freq_emb: float = 0.2, emb_scale: float = 10,
        emb_smooth: bool = True, kernel_size: int = 8, time_stride: int = 2, stride: int = 4,
        context: int = 1, context_enc: int = 0, norm_starts: int = 4, norm_groups: int = 4,
        dconv_mode: int = 1, dconv_depth: int = 2, dconv_comp: float = 4, dconv_attn: int = 4,
        dconv_lstm: int = 4, dconv_init: float = 1e-4, rescale: float = 0.1,
        samplerate: int = 44100, segment: float = 4 * 10,
    ) -> None:  # fmt: skip
        super().__init__(targets, samplerate, audio_channels)
        if hybrid_old and not hybrid:
            raise ValueError("hybrid_old=True needs hybrid=True")
        if hybrid:
            _check_branches_meet(nfft, depth, kernel_size, stride)
        self._build_hybrid(locals())

    def forward(self, mixture: Tensor) -> dict[str, Tensor]:
        """mixture (batch, channels, time) -> waveforms (batch, sources, channels, time)."""
        return {"waveforms": self._separate(mixture, self._silent_bottom)}

    @staticmethod
    def _silent_bottom(x: Tensor, xt: Tensor | None) -> tuple[Tensor, Tensor | None]:
        # Demucs v3 has no bottleneck: the decoders start from zeros and get the signal
        # through the U-Net skips
        return torch.zeros_like(x), None if xt is None else torch.zeros_like(x)
