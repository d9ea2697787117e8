"""The one interface every sepkit model has, so train, separate and eval treat all alike.

A model declares its sample rate, its targets, its audio channels and the names of the
tensors its ``forward`` returns (``outputs``); a loss declares the names it reads. These
names are shared across the house:

``waveforms``            (batch, sources, channels, time) estimated source signals
``magnitudes``           (batch, sources, channels, freq, frames) estimated magnitudes
``masks``                (batch, sources, channels, freq, frames) time-frequency masks
``embeddings``           (batch, channels * freq * frames, dim) unit-norm bin embeddings
``mixture_spectrogram``  (batch, channels, freq, frames) complex STFT of the input

``references(sources, mixture)`` gives what a loss compares against, in the model's own
domain (``waveforms`` always, ``spectrograms`` complex for STFT models). ``separate``
always ends in waveforms (batch, sources, channels, time).
"""

from __future__ import annotations

import abc
import functools
import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from sepkit.blocks.stft import ISTFT, STFT


@dataclass
class InferenceOptions:
    """Choices made at separation time rather than at training time.

    ``niter``: expectation-maximisation iterations of the multichannel Wiener filter
    (spectrogram models; 0 keeps each estimate's magnitude with the mixture's phase).
    ``softmask``: start the filter from ratio masks instead of magnitudes.
    ``residual``: add a source holding what the targets leave of the mixture.
    ``wiener_win_len``: frames per independent block of the Wiener filter (None: all).
    (Demucs's shift trick wraps ``separate`` from outside: ``Separator(shifts=...)``.)
    """

    niter: int = 1
    softmask: bool = False
    residual: bool = False
    wiener_win_len: int | None = 300


class SeparationModel(nn.Module, abc.ABC):
    """Base of every sepkit model.

    Subclasses pass their ``targets``, ``sample_rate`` (Hz) and ``nb_channels`` (audio
    channels in and out) to this constructor and list in ``outputs`` the names their
    ``forward`` returns. The constructor's arguments are recorded when the model is built,
    so ``model.config`` (with its ``_target_``) rebuilds the same architecture; a checkpoint
    stores it with the weights.
    """

    outputs: ClassVar[tuple[str, ...]] = ("waveforms",)
    # whether estimate i is always target i; False for a model whose sources come out in no
    # fixed order (clusters), which can separate speakers but cannot name stems
    ordered_outputs: ClassVar[bool] = True
    # Seconds of audio separation gives the model at once unless told otherwise: longer
    # inputs are cut into overlapping segments of this length and cross-faded, so memory
    # does not grow with the input (sepkit.separate). Models that gain from long context
    # and whose memory per second is small may set more. ``segment_overlap`` is the share
    # of a segment cross-faded with the next: enough for the model's context at the edges
    # (a long segment needs a smaller share).
    segment_seconds: ClassVar[float] = 10.0
    segment_overlap: ClassVar[float] = 0.25
    # How the segments are weighed and padded (sepkit.separate.streaming): "cross_fade"
    # (linear ramps over at most half a segment), or the scheme of the tool a model's
    # published weights were run with: "triangle" (demucs 4) or "edge_fade" (MSST).
    segment_weighting: ClassVar[str] = "cross_fade"
    # Seconds of audio in a training item when the dataset sets no ``segment`` (the music
    # sets; a speech set's utterance excerpt is its own): the paper's excerpt where it fits
    # one GPU, so that ``sepkit train model=X`` trains with the model's recipe.
    training_segment: ClassVar[float] = 6.0
    sample_rate: int
    targets: list[str]
    nb_channels: int

    def __init__(self, targets: list[str], sample_rate: int, nb_channels: int) -> None:
        super().__init__()
        self.targets = list(targets)
        self.sample_rate = sample_rate
        self.nb_channels = nb_channels

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        original_init = cls.__dict__["__init__"]
        signature = inspect.signature(original_init)

        @functools.wraps(original_init)
        def recording_init(self: SeparationModel, *args: Any, **kw: Any) -> None:
            if "_constructor_arguments" not in self.__dict__:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                arguments = dict(bound.arguments)
                arguments.pop("self")
                # only the outermost constructor of a class hierarchy records
                object.__setattr__(self, "_constructor_arguments", arguments)
            original_init(self, *args, **kw)

        cls.__init__ = recording_init

    @property
    def config(self) -> dict[str, Any]:
        """The constructor call that rebuilds this architecture, as a plain dict."""
        target = f"{type(self).__module__}.{type(self).__qualname__}"
        return {"_target_": target, **self.__dict__.get("_constructor_arguments", {})}

    @property
    def name(self) -> str:
        """A short name for folders and reports: the class name."""
        return type(self).__name__

    # -- training --------------------------------------------------------------------

    @abc.abstractmethod
    def forward(self, mixture: Tensor) -> dict[str, Tensor]:
        """mixture (batch, channels, time) -> the tensors named in ``outputs``."""

    def references(self, sources: Tensor, mixture: Tensor) -> dict[str, Tensor]:
        """True sources (batch, sources, channels, time) in the model's domain."""
        return {"waveforms": sources}

    def fit_sources(self, ordered: bool) -> None:
        """Prepare for the dataset's sources before the first step: ``ordered`` for named
        stems, not for speakers. A ValueError saying why when the model cannot name stems."""
        if ordered and not self.ordered_outputs:
            raise ValueError(
                "the model's estimates come in no fixed order, so they cannot be the named "
                "stems; train it on a speech dataset"
            )

    # -- normalisation statistics from the training data -------------------------------

    def statistics_key(self) -> dict[str, Any] | None:
        """What statistics this model learns from the training data before training,
        described so that a cache can tell two kinds apart; None when it needs none."""
        return None

    def compute_statistics(self, mixtures: Iterable[Tensor]) -> dict[str, Tensor]:
        """Statistics from training mixtures, each (channels, time)."""
        return {}

    def load_statistics(self, statistics: dict[str, Tensor]) -> None:
        """Put statistics from ``compute_statistics`` into the model."""

    # -- inference -------------------------------------------------------------------

    def valid_length(self, length: int) -> int:
        """The smallest input length >= ``length`` that the model accepts whole."""
        return length

    @torch.no_grad()
    def separate(self, mixture: Tensor, options: InferenceOptions | None = None) -> Tensor:
        """mixture (batch, channels, time) -> sources (batch, sources, channels, time).

        With ``options.residual`` a last source holds the mixture minus the targets.
        """
        options = options or InferenceOptions()
        estimates = self(mixture)["waveforms"]
        if options.residual:
            residual = mixture - estimates.sum(1)
            estimates = torch.cat([estimates, residual.unsqueeze(1)], dim=1)
        return estimates


class SpectrogramModel(SeparationModel):
    """A model that works on the mixture's STFT and estimates source magnitudes.

    Subclasses implement ``estimate(mixture_spectrogram) -> dict`` returning at least
    ``magnitudes`` (batch, sources, channels, freq, frames), freq being ``self.stft.nb_bins``.
    Separation turns the magnitudes into complex spectrograms with the multichannel Wiener
    filter (or the mixture's phase when ``niter`` is 0) and inverts the STFT.
    """

    outputs = ("magnitudes", "mixture_spectrogram")

    def __init__(
        self,
        targets: list[str],
        sample_rate: int,
        nb_channels: int,
        n_fft: int,
        hop_length: int,
        window: str = "hann",
    ) -> None:
        super().__init__(targets, sample_rate, nb_channels)
        self.stft = STFT(n_fft, hop_length, window=window, center=True)
        self.istft = ISTFT(n_fft, hop_length, window=window, center=True)

    @abc.abstractmethod
    def estimate(self, mixture_spectrogram: Tensor) -> dict[str, Tensor]:
        """complex (batch, channels, freq, frames) -> at least ``magnitudes``."""

    def forward(self, mixture: Tensor) -> dict[str, Tensor]:
        mixture_spectrogram = self.stft(mixture)
        outputs = self.estimate(mixture_spectrogram)
        outputs["mixture_spectrogram"] = mixture_spectrogram
        return outputs

    def references(self, sources: Tensor, mixture: Tensor) -> dict[str, Tensor]:
        return {"waveforms": sources, "spectrograms": self.stft(sources)}

    def separation_magnitudes(
        self, mixture_spectrogram: Tensor, options: InferenceOptions
    ) -> Tensor:
        """Source magnitudes (batch, sources, channels, freq, frames) that separation turns
        into spectrograms: ``estimate``'s ``magnitudes``, unless a model separates otherwise
        (e.g. by clustering embeddings, which training never does)."""
        return self.estimate(mixture_spectrogram)["magnitudes"]

    @torch.no_grad()
    def separate(self, mixture: Tensor, options: InferenceOptions | None = None) -> Tensor:
        from sepkit.blocks.wiener import wiener

        options = options or InferenceOptions()
        mixture_spectrogram = self.stft(mixture)
        magnitudes = self.separation_magnitudes(mixture_spectrogram, options).float()
        spectrograms = wiener(
            magnitudes,
            mixture_spectrogram,
            iterations=options.niter,
            softmask=options.softmask,
            residual=options.residual,
            window_frames=options.wiener_win_len,
        )
        del magnitudes, mixture_spectrogram  # a third of the memory, freed before the iSTFT
        return self.istft(spectrograms, length=mixture.shape[-1])


def alias_state_dict_keys(module: nn.Module, aliases: dict[str, str]) -> None:
    """Give some of ``module``'s state-dict entries published names.

    ``aliases`` maps the internal name (relative to ``module``) to the name a reference
    implementation uses, so the module saves under the published name and loads either.
    """

    def rename_on_save(module: nn.Module, state_dict: dict, prefix: str, metadata: Any) -> None:
        for internal, published in aliases.items():
            if prefix + internal in state_dict:
                state_dict[prefix + published] = state_dict.pop(prefix + internal)

    def rename_on_load(
        module: nn.Module, state_dict: dict, prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        for internal, published in aliases.items():
            if prefix + published in state_dict:
                state_dict[prefix + internal] = state_dict.pop(prefix + published)

    module.register_state_dict_post_hook(rename_on_save)
    module.register_load_state_dict_pre_hook(rename_on_load)
