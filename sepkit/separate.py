"""Files in, stems out: ``sepkit separate`` and the ``Separator`` API behind it.

Everything about running a model on real audio, rather than about the model, lives here
and is the same for every model: models are driven only through
``SeparationModel.separate(mixture (batch, channels, time), options)`` and
``valid_length``.

- Reading: any file libsndfile reads (WAV, FLAC, OGG, MP3, AIFF, ...), block by block;
  a file that is missing, empty, not audio, truncated or holds NaN is a one-line error.
- Sample rate: resampled to the model's rate and back with soxr, streaming.
- Channels (``ChannelLayout``): as many as the model takes are separated as they are; a
  mono input is duplicated for a multichannel model and its stems are the channels'
  mean (mono again); a mono model separates each channel of a multichannel input on its
  own; any other count is an error (downmix first).
- Length: inputs longer than one segment (``segment`` seconds, the model's
  ``segment_seconds`` by default) are separated in segments sharing ``overlap`` of their
  length with the next (the model's ``segment_overlap`` by default), cross-faded with
  linear ramps that sum to one, so memory does not grow with the input's length. An
  input shorter than one segment is separated whole, exactly as ``model.separate`` would.
- Writing: stems go to float32 scratch files beside their final place while separating,
  then to the requested format and subtype (integer subtypes: stems rescaled or clamped
  to full scale, with a warning saying how much), under temporary names renamed into
  place when every stem is complete. A failure leaves nothing behind; existing stems are
  kept unless ``overwrite``.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import soxr
import torch
from torch import Tensor

from sepkit.devices import autocast
from sepkit.errors import SepkitError
from sepkit.files import atomic_path
from sepkit.models.base import InferenceOptions, SeparationModel

DEFAULT_PRETRAINED = "umxhq"
# File name endings walked in folders (a file named on the command line may have any).
AUDIO_SUFFIXES = (
    ".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au",
    ".caf", ".w64", ".rf64",
)  # fmt: skip
# Frames read from a file at once: small against a segment, large against per-call costs.
READ_BLOCK_FRAMES = 1 << 17
SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")
FORMATS = {"wav": "WAV", "flac": "FLAC"}
CLIP_MODES = ("rescale", "clamp")


# -- channels ------------------------------------------------------------------------------


class ChannelLayout:
    """How an input's channels meet a model's.

    - equal counts: the input as it is;
    - a mono input and a multichannel model: the channel is duplicated, and each stem is
      the mean of the model's output channels, so stems are mono like the input;
    - a mono model and a multichannel input: each channel is separated on its own (as a
      batch) and the stems keep the input's channels;
    - anything else (5.1 into a stereo model): an error asking for a downmix.
    """

    def __init__(self, input_channels: int, model_channels: int, label: str) -> None:
        self.input_channels = input_channels
        self.model_channels = model_channels
        if input_channels < 1 or not (
            input_channels == model_channels or input_channels == 1 or model_channels == 1
        ):
            raise SepkitError(
                f"{label}: {input_channels} channels, but the model separates "
                f"{model_channels} (mono is duplicated, a mono model takes each channel "
                f"alone); downmix it first, e.g. ffmpeg -i <in> -ac {model_channels} <out>.wav"
            )

    def to_model(self, audio: Tensor) -> Tensor:
        """(input channels, time) -> (batch, model channels, time)."""
        if self.input_channels == self.model_channels:
            return audio[None]
        if self.model_channels == 1:
            return audio[:, None]
        return audio.repeat(self.model_channels, 1)[None]

    def from_model(self, sources: Tensor) -> Tensor:
        """(batch, sources, model channels, time) -> (sources, input channels, time)."""
        if self.input_channels == self.model_channels:
            return sources[0]
        if self.model_channels == 1:
            return sources[:, :, 0].transpose(0, 1)
        return sources[0].mean(dim=1, keepdim=True)


# -- overlapping segments -----------------------------------------------------------------


def fade_weights(length: int, fade_in: int, fade_out: int) -> Tensor:
    """(length,) weights: a linear ramp up over the first ``fade_in`` samples, ones, and a
    linear ramp down over the last ``fade_out``.

    The ramp values are (i + 0.5) / n, so a ramp down and the next segment's ramp up over
    the same n samples add up to one, and no sample gets a zero weight.
    """
    weights = torch.ones(length)
    if fade_in:
        weights[:fade_in] = (torch.arange(fade_in) + 0.5) / fade_in
    if fade_out:
        weights[length - fade_out :] = (torch.arange(fade_out, 0, -1) - 0.5) / fade_out
    return weights


class SegmentedSeparation:
    """Separate audio of any length in overlapping segments, as it arrives.

    ``separate_segment`` maps (channels, time) to (stems, channels, time). Segments are
    ``segment_length`` samples and start every ``segment_length - overlap_length``; in
    the ``overlap_length`` samples two segments share (at most half a segment), the first
    fades out and the second fades in. The input's first and last samples are not faded,
    and an input of at most one segment is separated in one piece, untouched. Memory holds
    one segment of input and one overlap of output, whatever the length.
    """

    def __init__(
        self,
        separate_segment: Callable[[Tensor], Tensor],
        segment_length: int,
        overlap_length: int,
    ) -> None:
        if not 0 <= overlap_length <= segment_length // 2:
            raise ValueError(
                f"overlap_length must be in [0, segment_length // 2] (a sample is in at most "
                f"two segments), got {overlap_length} for segment_length {segment_length}"
            )
        self.separate_segment = separate_segment
        self.segment_length = segment_length
        self.overlap_length = overlap_length
        self._pending: list[Tensor] = []  # input not yet separated, (channels, time) each
        self._pending_length = 0
        self._carry: Tensor | None = None  # the previous segment's faded-out overlap

    @property
    def stride(self) -> int:
        return self.segment_length - self.overlap_length

    def push(self, audio: Tensor) -> list[Tensor]:
        """Add (channels, time) input; return the stems finished so far, each
        (stems, channels, time), in order."""
        self._pending.append(audio)
        self._pending_length += audio.shape[-1]
        finished: list[Tensor] = []
        # A segment is separated once input follows it: only then is it known not to be
        # the last one (which is not faded out).
        if self._pending_length <= self.segment_length:
            return finished
        pending = torch.cat(self._pending, dim=-1) if len(self._pending) > 1 else audio
        start = 0
        while pending.shape[-1] - start > self.segment_length:
            segment = pending[:, start : start + self.segment_length]
            finished.append(self._separate(segment, last=False))
            start += self.stride
        self._pending = [pending[:, start:]]
        self._pending_length = pending.shape[-1] - start
        return finished

    def finish(self) -> list[Tensor]:
        """Separate what is left (the last segment, unfaded at its end)."""
        if self._pending_length == 0:
            return []
        pending = torch.cat(self._pending, dim=-1)
        self._pending, self._pending_length = [], 0
        return [self._separate(pending, last=True)]

    def _separate(self, segment: Tensor, last: bool) -> Tensor:
        stems = self.separate_segment(segment)
        first = self._carry is None
        fade_in = 0 if first else self.overlap_length
        fade_out = 0 if last else self.overlap_length
        if fade_in or fade_out:
            stems = stems * fade_weights(segment.shape[-1], fade_in, fade_out)
        if fade_in:
            stems[..., :fade_in] += self._carry
        if last:
            self._carry = None
            return stems
        self._carry = stems[..., self.stride :].clone()  # not a view: frees the segment
        return stems[..., : self.stride]


# -- resampling ----------------------------------------------------------------------------


class StreamResampler:
    """soxr's streaming resampler on (channels, time) float32 tensors; a pass-through when
    the rates are equal. Chunks resampled one after the other give what resampling the
    whole signal at once gives."""

    def __init__(self, from_rate: int, to_rate: int, channels: int) -> None:
        self.stream = None
        if from_rate != to_rate:
            self.stream = soxr.ResampleStream(
                from_rate, to_rate, channels, dtype="float32", quality="HQ"
            )

    def __call__(self, audio: Tensor, last: bool = False) -> Tensor:
        if self.stream is None:
            return audio
        frames = np.ascontiguousarray(audio.numpy().T)
        resampled = self.stream.resample_chunk(frames, last=last)
        return torch.from_numpy(resampled.reshape(-1, audio.shape[0]).T)


# -- one stream: audio in, stems out --------------------------------------------------------


def separate_with_shifts(
    model: SeparationModel,
    mixture: Tensor,
    options: InferenceOptions,
    shifts: int,
    generator: torch.Generator,
) -> Tensor:
    """``model.separate(mixture, options)``; with ``shifts`` > 0 the mean of that many
    separations of randomly delayed copies (Demucs's shift trick, up to half a second).

    mixture (batch, channels, time) -> (batch, sources, channels, time).
    """
    if shifts <= 0:
        return model.separate(mixture, options)
    from sepkit.models.shifts import DEFAULT_MAX_SHIFT_SECONDS, apply_shifts

    max_shift = int(DEFAULT_MAX_SHIFT_SECONDS * model.sample_rate)
    return apply_shifts(
        lambda delayed: model.separate(delayed, options), mixture, shifts, max_shift, generator
    )


def _check_shifts_available(shifts: int) -> None:
    """Hook: the shift trick lives in sepkit.models.shifts (branch waveform)."""
    if shifts <= 0:
        return
    try:
        import sepkit.models.shifts  # noqa: F401
    except ImportError:
        raise SepkitError(
            f"shifts={shifts}: this sepkit has no sepkit.models.shifts yet; use shifts=0"
        ) from None


class SeparationStream:
    """Audio at any sample rate and channel count in, stems at the same out, block by block.

    Input blocks are (channels, time) float32 at ``sample_rate``; output blocks are
    (stems, channels, time) at the same rate. In total exactly as many samples come out
    as went in, each aligned with its input sample. Memory is bounded by one segment.
    """

    def __init__(self, separator: Separator, sample_rate: int, channels: int, label: str) -> None:
        model = separator.model
        self.separator = separator
        self.label = label
        self.sample_rate = sample_rate
        self.layout = ChannelLayout(channels, model.nb_channels, label)
        self.to_model_rate = StreamResampler(sample_rate, model.sample_rate, channels)
        self.from_model_rate = StreamResampler(
            model.sample_rate, sample_rate, channels * len(separator.stems)
        )
        self.generator = torch.Generator().manual_seed(separator.seed)
        segment_length, overlap_length = separator.segment_geometry()
        self.segments = SegmentedSeparation(self._separate_segment, segment_length, overlap_length)
        self.frames_in = 0
        self.frames_out = 0
        self._held_back: Tensor | None = None  # output ahead of the input (rounding)

    def _separate_segment(self, segment: Tensor) -> Tensor:
        """(channels, time) at the model's rate -> (stems, channels, time)."""
        separator = self.separator
        batch = self.layout.to_model(segment).to(separator.device)
        with torch.inference_mode(), separator.autocast():
            sources = separate_with_shifts(
                separator.model, batch, separator.options, separator.shifts, self.generator
            )
        sources = self.layout.from_model(sources.float().cpu())
        return separator.select_stems(sources)

    def push(self, audio: Tensor) -> Tensor:
        """(channels, time) in; the stems finished so far out, (stems, channels, time)."""
        if not torch.isfinite(audio).all():
            where = int((~torch.isfinite(audio)).any(0).nonzero()[0]) + self.frames_in
            raise SepkitError(
                f"{self.label}: holds NaN or infinite samples (the first at "
                f"{where / self.sample_rate:.2f} s); the file is damaged or was written from "
                "invalid data"
            )
        self.frames_in += audio.shape[-1]
        finished = self.segments.push(self.to_model_rate(audio))
        return self._to_input_rate(finished, last=False)

    def finish(self) -> Tensor:
        """The remaining stems; afterwards exactly ``frames_in`` samples have come out."""
        tail = self.to_model_rate(torch.zeros(self.layout.input_channels, 0), last=True)
        finished = self.segments.push(tail) if tail.shape[-1] else []
        finished += self.segments.finish()
        out = self._to_input_rate(finished, last=True)
        missing = self.frames_in - self.frames_out
        if missing > 0:  # the resampler's rounding: pad the last sample or two
            out = torch.nn.functional.pad(out, (0, missing))
            self.frames_out += missing
        return out

    def _to_input_rate(self, finished: list[Tensor], last: bool) -> Tensor:
        stems, channels = len(self.separator.stems), self.layout.input_channels
        if finished:
            block = torch.cat(finished, dim=-1) if len(finished) > 1 else finished[0]
        else:
            block = torch.zeros(stems, channels, 0)
        if block.shape[-1] or last:
            flat = self.from_model_rate(block.reshape(stems * channels, -1), last=last)
            block = flat.reshape(stems, channels, -1)
        # Never more out than in so far: the resampler could round a sample up. Output
        # held back here goes out with the next block; past the input's end it is dropped.
        if self._held_back is not None:
            block = torch.cat([self._held_back, block], dim=-1)
        allowed = self.frames_in - self.frames_out
        self._held_back = block[..., allowed:] if block.shape[-1] > allowed else None
        block = block[..., :allowed]
        self.frames_out += block.shape[-1]
        return block


# -- the API ---------------------------------------------------------------------------------


class Separator:
    """A model ready to separate: options, segments, device; stems as tensors or files.

        separator = Separator.from_pretrained("umxhq")
        stems = separator.separate(audio, sample_rate)   # {"vocals": (channels, time), ...}
        separator.separate_file("song.wav", "separated/umxhq")

    ``stems`` names what comes out, in order: the model's targets (and ``residual``
    with ``residual=True``), only ``targets`` of them if given, or ``<two_stems>`` and
    ``no_<two_stems>`` (the sum of all other sources). Every target of the model is always
    separated (they share the Wiener filter); ``targets`` only chooses what is returned.
    """

    def __init__(
        self,
        model: SeparationModel,
        *,
        targets: Sequence[str] | None = None,
        two_stems: str | None = None,
        residual: bool = False,
        niter: int = 1,
        softmask: bool = False,
        wiener_win_len: int | None = 300,
        segment: float | None = None,
        overlap: float | None = None,
        shifts: int = 0,
        seed: int = 0,
        device: str | torch.device = "auto",
        amp: bool = False,
    ) -> None:
        from sepkit.devices import select_device

        if niter < 0:
            raise SepkitError(f"niter={niter}: use 0 or more EM iterations")
        if wiener_win_len is not None and wiener_win_len < 1:
            raise SepkitError(f"wiener_win_len={wiener_win_len}: use a positive number or null")
        if overlap is not None and not 0 <= overlap <= 0.5:
            raise SepkitError(f"overlap={overlap}: use a fraction of a segment in [0, 0.5]")
        if segment is not None and segment <= 0:
            raise SepkitError(f"segment={segment}: use a positive number of seconds or null")
        _check_shifts_available(shifts)
        sources = [*model.targets, *(["residual"] if residual else [])]
        self.stems, self._stem_sources = _stem_plan(sources, targets, two_stems)
        self._stems_are_sources = self._stem_sources == [[i] for i in range(len(sources))]
        self.options = InferenceOptions(
            niter=niter, softmask=softmask, residual=residual, wiener_win_len=wiener_win_len
        )
        self.segment = model.segment_seconds if segment is None else segment
        self.overlap = model.segment_overlap if overlap is None else overlap
        self.shifts = shifts
        self.seed = seed
        self.amp = amp
        if not isinstance(device, torch.device):
            device = select_device(str(device), setting="device")
        self.device = device
        self.model = model.to(device).eval()

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name: str = DEFAULT_PRETRAINED, **options: Any) -> Separator:
        """A published model (``umxhq``, ``umx``, ``umxl``, ...) or an Open-Unmix folder."""
        from sepkit.models.pretrained import load_pretrained

        return cls(load_pretrained(name), **options)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **options: Any) -> Separator:
        """A model trained by ``sepkit train``: a checkpoint file or a run directory."""
        from sepkit.checkpoint import build_model, find_checkpoint, load_checkpoint

        file = find_checkpoint(Path(path).expanduser())
        return cls(build_model(load_checkpoint(file), source=str(file)), **options)

    # -- separation ----------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        """The model's sample rate (inputs at any rate are resampled to it and back)."""
        return self.model.sample_rate

    def segment_geometry(self) -> tuple[int, int]:
        """Segment and overlap lengths in samples at the model's rate."""
        segment_length = self.model.valid_length(max(1, round(self.segment * self.sample_rate)))
        overlap_length = min(round(self.overlap * segment_length), segment_length // 2)
        return segment_length, overlap_length

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.amp)

    def select_stems(self, sources: Tensor) -> Tensor:
        """(sources, channels, time) of the model -> (stems, channels, time) to write."""
        if self._stems_are_sources:
            return sources
        return torch.stack([sources[indices].sum(0) for indices in self._stem_sources])

    def stream(self, sample_rate: int, channels: int, label: str = "audio") -> SeparationStream:
        """A ``SeparationStream`` for audio at ``sample_rate`` with ``channels`` channels."""
        return SeparationStream(self, sample_rate, channels, label)

    def separate(self, audio: Tensor | np.ndarray, sample_rate: int) -> dict[str, Tensor]:
        """Stems of ``audio`` (channels, time) or (time,), float, at ``sample_rate`` Hz.

        Returns {stem: tensor} on the CPU, each shaped like ``audio`` (float32, same
        channels, length and rate), in ``stems`` order.
        """
        if not torch.is_tensor(audio):
            audio = torch.from_numpy(np.asarray(audio, dtype=np.float32))
        if audio.dim() not in (1, 2) or audio.shape[-1] == 0:
            raise SepkitError(
                f"audio must be (channels, time) or (time,) with samples, got shape "
                f"{tuple(audio.shape)}"
            )
        one_dimensional = audio.dim() == 1
        audio = audio.detach().float().cpu().reshape(-1, audio.shape[-1])
        stream = self.stream(int(sample_rate), audio.shape[0])
        stems = torch.cat([stream.push(audio), stream.finish()], dim=-1)
        if one_dimensional:
            stems = stems[:, 0]
        return dict(zip(self.stems, stems, strict=True))

    def separate_file(
        self,
        path: str | os.PathLike,
        out_dir: str | os.PathLike,
        *,
        track: str | None = None,
        format: str = "wav",
        subtype: str = "PCM_16",
        clip: str = "rescale",
        overwrite: bool = False,
        progress: bool = False,
    ) -> dict[str, Path]:
        """Separate one file into ``<out_dir>/<track>/<stem>.<format>``.

        ``track`` defaults to the file's name without its suffix (for ``.../<track>/
        mixture.wav``, the folder's name). Reads and writes block by block; raises
        ``SepkitError`` (nothing written) for a bad file and ``StemsExist`` when stems are
        already there and ``overwrite`` is false. Returns {stem: path written}. Clipping
        warnings are printed to stderr.
        """
        path = Path(path)
        track = track or track_name(path)
        folder = Path(out_dir) / track
        check_output_settings(format, subtype, clip)
        with AudioReader(path) as reader:
            stream = self.stream(reader.sample_rate, reader.channels, str(path))
            writer = StemWriter(
                folder, self.stems, reader.sample_rate, reader.channels, format, subtype
            )
            writer.check_free(overwrite)
            with writer.open(), _progress_bar(reader, track, progress) as bar:
                for block in reader.blocks():
                    writer.write(stream.push(block))
                    bar.update(block.shape[-1] / reader.sample_rate)
                writer.write(stream.finish())
                reader.check_complete()
                written = writer.commit(clip)
        for warning in writer.warnings:
            print(f"warning: {path}: {warning}", file=sys.stderr)
        return written


class StemsExist(SepkitError):
    """The stems of a track are already on disk and overwriting was not asked for."""


def _stem_plan(
    sources: list[str], targets: Sequence[str] | None, two_stems: str | None
) -> tuple[list[str], list[list[int]]]:
    """Names of the stems to write, and for each the model sources it sums."""
    if targets is not None and two_stems is not None:
        raise SepkitError(
            "targets and two_stems both given: use targets=[...] for a subset or "
            "two_stems=<target> for <target> and no_<target>"
        )
    if two_stems is not None:
        if two_stems not in sources:
            raise SepkitError(f"two_stems={two_stems}: the model's stems are {sources}")
        index = sources.index(two_stems)
        others = [i for i in range(len(sources)) if i != index]
        return [two_stems, f"no_{two_stems}"], [[index], others]
    if targets is None:
        return list(sources), [[i] for i in range(len(sources))]
    targets = list(targets)
    unknown = [t for t in targets if t not in sources]
    if unknown or not targets:
        raise SepkitError(f"targets={targets}: choose among the model's stems {sources}")
    return targets, [[sources.index(t)] for t in targets]


# -- reading files ---------------------------------------------------------------------------


class AudioReader:
    """One input file, checked when opened, read as (channels, time) float32 blocks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            raise SepkitError(f"{path}: no such file or folder")
        if path.is_dir():
            raise SepkitError(f"{path}: is a folder; folders are walked only as inputs")
        if path.stat().st_size == 0:
            raise SepkitError(f"{path}: empty file (0 bytes)")
        try:
            self.file = soundfile.SoundFile(str(path))
        except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
            reason = str(error).split(": ", 1)[-1].strip() or type(error).__name__
            raise SepkitError(
                f"{path}: not audio that libsndfile can read ({reason}); sepkit reads WAV, "
                "FLAC, OGG, MP3, AIFF and more: convert others with ffmpeg -i <in> <out>.wav"
            ) from None
        self.sample_rate = self.file.samplerate
        self.channels = self.file.channels
        self.frames = self.file.frames
        self.frames_read = 0
        try:
            self._check_header()
        except SepkitError:
            self.file.close()
            raise

    def _check_header(self) -> None:
        if self.frames == 0:
            raise SepkitError(f"{self.path}: no audio in the file (0 samples)")
        declared = _declared_data_bytes(self.file.extra_info)
        if declared is not None:
            declared_frames = declared / (self.channels * _bytes_per_sample(self.file))
            raise SepkitError(
                f"{self.path}: truncated: its header announces "
                f"{declared_frames / self.sample_rate:.2f} s but the file holds "
                f"{self.frames / self.sample_rate:.2f} s (an incomplete download or copy?)"
            )

    def blocks(self) -> Iterator[Tensor]:
        while True:
            try:
                block = self.file.read(READ_BLOCK_FRAMES, dtype="float32", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError) as error:
                raise SepkitError(
                    f"{self.path}: unreadable after {self.frames_read / self.sample_rate:.2f} s "
                    f"({error}); the file is damaged"
                ) from None
            if len(block) == 0:
                return
            self.frames_read += len(block)
            yield torch.from_numpy(block.T)

    def check_complete(self) -> None:
        if self.frames_read < self.frames:
            raise SepkitError(
                f"{self.path}: ends after {self.frames_read} of the {self.frames} samples its "
                "header announces (truncated?)"
            )

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def _declared_data_bytes(header_log: str) -> int | None:
    """The audio data size a WAV/AIFF header announces when the file is shorter (libsndfile
    logs ``data : <declared> (should be <actual>)``); None when the file is complete or its
    header leaves the size open (streamed WAVs announce 0 or 0xFFFFFFFF)."""
    for line in header_log.splitlines():
        name, _, value = line.partition(":")
        if name.strip() not in ("data", "SSND") or "should be" not in value:
            continue
        declared_text, _, actual_text = value.partition("(should be")
        try:
            declared, actual = int(declared_text.strip()), int(actual_text.strip(" )"))
        except ValueError:
            continue
        if declared in (0, 0xFFFFFFFF) or declared <= actual:
            return None
        return declared
    return None


def _bytes_per_sample(file: soundfile.SoundFile) -> int:
    sizes = {"PCM_U8": 1, "PCM_S8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4,
             "DOUBLE": 8, "ULAW": 1, "ALAW": 1}  # fmt: skip
    return sizes.get(file.subtype, 2)


@contextlib.contextmanager
def _progress_bar(reader: AudioReader, track: str, enabled: bool) -> Iterator[Any]:
    from tqdm import tqdm

    bar = tqdm(
        total=round(reader.frames / reader.sample_rate, 1),
        desc=track,
        unit="s",
        disable=not enabled,
        file=sys.stderr,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
        "[{elapsed}<{remaining}]",
    )
    try:
        yield bar
    except BaseException:
        bar.leave = False  # the error message, not a half-full bar, is what remains
        raise
    finally:
        bar.close()


# -- writing stems ---------------------------------------------------------------------------


def check_output_settings(format: str, subtype: str, clip: str) -> None:
    if format not in FORMATS:
        raise SepkitError(f"format={format}: use one of {', '.join(FORMATS)}")
    if subtype not in SUBTYPES:
        raise SepkitError(f"subtype={subtype}: use one of {', '.join(SUBTYPES)}")
    if clip not in CLIP_MODES:
        raise SepkitError(f"clip={clip}: use one of {', '.join(CLIP_MODES)}")
    if not soundfile.check_format(FORMATS[format], subtype):
        raise SepkitError(f"format={format} cannot hold subtype={subtype}: use PCM_16 or PCM_24")


class StemWriter:
    """The stems of one track: float32 scratch files while separating, then the final
    files, renamed into place together once all are complete.

    Integer subtypes hold [-1, 1]: where the stems exceed it, ``commit`` scales all of the
    track's stems by one factor (``rescale``, so they still add up to the scaled mixture)
    or clamps the excess (``clamp``), and records a warning saying how much. FLOAT keeps
    every value as it is.
    """

    def __init__(
        self,
        folder: Path,
        stems: list[str],
        sample_rate: int,
        channels: int,
        format: str,
        subtype: str,
    ) -> None:
        self.folder = folder
        self.stems = stems
        self.sample_rate = sample_rate
        self.channels = channels
        self.format = format
        self.subtype = subtype
        self.paths = {stem: folder / f"{stem}.{format}" for stem in stems}
        self.warnings: list[str] = []
        self._scratch: dict[str, soundfile.SoundFile] = {}
        self._peak = 0.0
        self._over_full_scale = 0
        self._samples = 0

    def check_free(self, overwrite: bool) -> None:
        existing = [p.name for p in self.paths.values() if p.exists()]
        if existing and not overwrite:
            raise StemsExist(
                f"{self.folder} already holds {', '.join(existing)}; skipped "
                "(overwrite=true replaces them)"
            )

    def _scratch_path(self, stem: str) -> Path:
        return self.folder / f".{stem}.separating-{os.getpid()}.raw"

    @contextlib.contextmanager
    def open(self) -> Iterator[StemWriter]:
        """Create the folder and the scratch files; on leaving, remove the scratch files,
        and on an error the folders made here if they are still empty."""
        created = [f for f in (self.folder, *self.folder.parents) if not f.exists()]
        self.folder.mkdir(parents=True, exist_ok=True)
        succeeded = False
        try:
            for stem in self.stems:
                self._scratch[stem] = soundfile.SoundFile(
                    str(self._scratch_path(stem)), "w+", self.sample_rate, self.channels,
                    subtype="FLOAT", format="RAW",
                )  # fmt: skip
            yield self
            succeeded = True
        finally:
            for stem, file in self._scratch.items():
                file.close()
                self._scratch_path(stem).unlink(missing_ok=True)
            self._scratch.clear()
            if not succeeded:
                for folder in created:  # innermost first
                    with contextlib.suppress(OSError):
                        folder.rmdir()

    def write(self, stems: Tensor) -> None:
        """(stems, channels, time) float32."""
        if stems.shape[-1] == 0:
            return
        lowest, highest = torch.aminmax(stems)
        self._peak = max(self._peak, float(highest), -float(lowest))
        self._over_full_scale += int((stems > 1).sum() + (stems < -1).sum())
        self._samples += stems.numel()
        for stem, audio in zip(self.stems, stems, strict=True):
            self._scratch[stem].write(np.ascontiguousarray(audio.numpy().T))

    def commit(self, clip: str) -> dict[str, Path]:
        """Write the final files from the scratch files and rename them into place."""
        gain = self._gain(clip)
        with contextlib.ExitStack() as renames:
            for stem, scratch in self._scratch.items():
                final = renames.enter_context(atomic_path(self.paths[stem]))
                scratch.seek(0)
                with soundfile.SoundFile(
                    str(final), "w", self.sample_rate, self.channels,
                    subtype=self.subtype, format=FORMATS[self.format],
                ) as output:  # fmt: skip
                    for block in scratch.blocks(READ_BLOCK_FRAMES, dtype="float32"):
                        if gain != 1.0:
                            block *= gain
                        if self.subtype != "FLOAT":
                            np.clip(block, -1.0, 1.0, out=block)
                        output.write(block)
        return dict(self.paths)

    def _gain(self, clip: str) -> float:
        if self.subtype == "FLOAT" or self._peak <= 1.0:
            return 1.0
        over_db = 20 * math.log10(self._peak)
        if clip == "rescale":
            gain = 1.0 / self._peak
            self.warnings.append(
                f"stems peak at {self._peak:.3f} ({over_db:.1f} dB over full scale): all "
                f"stems scaled by {gain:.3f} to fit {self.subtype} (clip=clamp cuts the "
                "peaks instead, subtype=FLOAT keeps them)"
            )
            return gain
        share = 100 * self._over_full_scale / max(self._samples, 1)
        self.warnings.append(
            f"{self._over_full_scale} samples ({share:.3f} %) over full scale clamped, peak "
            f"{self._peak:.3f} ({over_db:.1f} dB over) (clip=rescale scales the stems "
            "instead, subtype=FLOAT keeps them)"
        )
        return 1.0


# -- inputs ------------------------------------------------------------------------------


def track_name(path: Path) -> str:
    """A file's track name: its name without suffix, or for ``<track>/mixture.<ext>`` (the
    MUSDB18 layout) its folder's name."""
    if path.stem == "mixture":
        return path.resolve().parent.name or path.stem
    return path.stem


def find_inputs(
    arguments: Sequence[str], skip: Path | None = None
) -> list[tuple[Path, str | None, str | None]]:
    """(file, track name, error) for every input: files as given, folders walked.

    A folder contributes its audio files (by suffix, in sorted order, hidden files and
    ``skip`` (the output folder) left out); a folder holding a ``mixture`` file (MUSDB18
    layout) contributes that file only, named after the folder. Tracks found in a folder
    keep their path below it (``test/Song/mixture.wav`` -> ``test/Song``). A missing path
    or a folder without audio is an entry with an error; so is a second input with an
    earlier one's track name.
    """
    found: list[tuple[Path, str | None, str | None]] = []
    skip = skip.resolve() if skip is not None else None
    for argument in arguments:
        path = Path(argument).expanduser()
        if not path.exists():
            found.append((path, None, f"{path}: no such file or folder"))
        elif path.is_dir():
            files = list(_walk_audio(path, skip))
            if not files:
                found.append((path, None, f"{path}: no audio files in this folder"))
            found += [(file, _track_in_folder(file, path), None) for file in files]
        else:
            found.append((path, track_name(path), None))
    seen: dict[str, Path] = {}
    checked = []
    for file, name, error in found:
        if error is None and name in seen:
            error = (
                f"{file}: its track name {name!r} is the same as {seen[name]}'s; rename one or "
                "separate them into different out_dir"
            )
        elif error is None:
            seen[name] = file
        checked.append((file, name, error))
    return checked


def _track_in_folder(file: Path, folder: Path) -> str:
    """The track name of a file found in ``folder``: its path below it, without suffix."""
    relative = file.relative_to(folder)
    if file.stem == "mixture":
        return relative.parent.as_posix() if relative.parent.parts else track_name(file)
    return relative.with_suffix("").as_posix()


def _walk_audio(folder: Path, skip: Path | None) -> Iterator[Path]:
    for root, folders, files in os.walk(folder):
        here = Path(root)
        folders[:] = sorted(
            f for f in folders
            if not f.startswith(".") and (skip is None or (here / f).resolve() != skip)
        )  # fmt: skip
        audio = sorted(
            f for f in files if not f.startswith(".") and f.lower().endswith(AUDIO_SUFFIXES)
        )
        mixtures = [f for f in audio if Path(f).stem == "mixture"]
        for name in mixtures[:1] or audio:
            yield here / name


# -- the command line --------------------------------------------------------------------------

USAGE = """\
usage: sepkit separate FILE|FOLDER ... [key=value ...]

Writes <out_dir>/<name>/<track>/<stem>.<format> for every audio file given or found in
the folders given, at the input's sample rate, length and channel count.

  sepkit separate song.mp3                          umxhq: separated/umxhq/song/<stem>.wav
  sepkit separate a.wav b.flac pretrained=umxl      another published model
  sepkit separate musdb18/test checkpoint=runs/2026-01-01/12-00-00 format=flac
  sepkit separate song.wav two_stems=vocals         vocals.wav and no_vocals.wav

keys (configs/separate.yaml): checkpoint, pretrained, name, out_dir, targets, two_stems,
residual, niter, softmask, wiener_win_len, segment, overlap, shifts, seed, device, amp,
threads, progress, format, subtype, clip, overwrite
"""


def compose_config(overrides: Sequence[str]) -> Any:
    """configs/separate.yaml with ``overrides``, checked against ``SeparateConfig``."""
    from hydra import compose, initialize_config_dir

    from sepkit.config import COMMAND_GROUPS, config_dir, register_schemas

    register_schemas(COMMAND_GROUPS["separate"])
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("separate", overrides=list(overrides))


def model_name(cfg: Any) -> str:
    """The ``<name>`` folder: ``name``, else the pretrained model's name, else the
    checkpoint's run directory (with its parent's name when it is only a time stamp)."""
    if cfg.name:
        return str(cfg.name)
    if cfg.checkpoint:
        path = Path(cfg.checkpoint).expanduser().resolve()
        if path.is_file():
            run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
            if run_dir is None:
                return path.stem
            path = run_dir
        name = path.name
        if not any(character.isalpha() for character in name) and path.parent.name:
            name = f"{path.parent.name}_{name}"
        return name
    return Path(str(cfg.pretrained or DEFAULT_PRETRAINED)).name


# the keys of configs/separate.yaml and configs/eval.yaml that set how a model separates
SEPARATION_KEYS = (
    "niter", "softmask", "wiener_win_len", "segment", "overlap", "shifts", "seed", "device", "amp",
)  # fmt: skip


def separator_from_config(cfg: Any, **options: Any) -> Separator:
    """The ``Separator`` of ``cfg.checkpoint`` or ``cfg.pretrained`` (default umxhq) with the
    separation keys of ``cfg``, plus ``options``; shared by separate and eval."""
    options = {key: cfg[key] for key in SEPARATION_KEYS} | options
    if cfg.checkpoint and cfg.pretrained:
        raise SepkitError(
            f"checkpoint={cfg.checkpoint} and pretrained={cfg.pretrained}: choose one model"
        )
    if cfg.checkpoint:
        return Separator.from_checkpoint(cfg.checkpoint, **options)
    return Separator.from_pretrained(cfg.pretrained or DEFAULT_PRETRAINED, **options)


def _separator_from_config(cfg: Any) -> Separator:
    return separator_from_config(
        cfg,
        targets=list(cfg.targets) if cfg.targets is not None else None,
        two_stems=cfg.two_stems,
        residual=cfg.residual,
    )


def _split_arguments(arguments: Sequence[str]) -> tuple[list[str], list[str]]:
    """Inputs (no ``=``, or an existing path) and Hydra overrides (``key=value``)."""
    inputs, overrides = [], []
    for argument in arguments:
        if "=" in argument and not Path(argument).expanduser().exists():
            overrides.append(argument)
        else:
            inputs.append(argument)
    return inputs, overrides


def _describe_write_error(error: Exception) -> str:
    """An I/O error while writing stems, with the folder to change when it is the cause."""
    if not isinstance(error, OSError) or not error.filename:
        return str(error)
    message = f"{error.filename}: {error.strerror or error}"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT):
        message += " (write the stems elsewhere with out_dir=<folder>)"
    return message


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> None:
    """``sepkit separate FILE|FOLDER ... [key=value ...]``."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from sepkit.config import describe_config_error

    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or any(a in ("-h", "--help") for a in arguments):
        print(USAGE, end="")
        return
    inputs, overrides = _split_arguments(arguments)
    try:
        cfg = compose_config(overrides)
    except (HydraException, OmegaConfBaseException) as error:
        _fail(describe_config_error(error))
    if not inputs:
        _fail("no input: sepkit separate FILE|FOLDER ... [key=value ...]")
    found = find_inputs(inputs, skip=Path(cfg.out_dir).expanduser())
    if all(error is not None for _, _, error in found):
        for _, _, error in found:
            print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2)
    try:
        check_output_settings(cfg.format.name, cfg.subtype.name, cfg.clip.name)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        separator = _separator_from_config(cfg)
    except SepkitError as error:
        _fail(str(error))
    out_dir = Path(cfg.out_dir).expanduser() / model_name(cfg)
    failures = 0
    for file, track, error in found:
        if error is not None:
            print(f"error: {error}", file=sys.stderr)
            failures += 1
            continue
        try:
            written = separator.separate_file(
                file,
                out_dir,
                track=track,
                format=cfg.format.name,
                subtype=cfg.subtype.name,
                clip=cfg.clip.name,
                overwrite=cfg.overwrite,
                progress=cfg.progress,
            )
        except StemsExist as skipped:
            print(f"{file}: {skipped}", file=sys.stderr)
            continue
        except SepkitError as failure:
            print(f"error: {failure}", file=sys.stderr)
            failures += 1
            continue
        except (OSError, soundfile.LibsndfileError) as failure:  # disk full, no permission
            print(f"error: {file}: {_describe_write_error(failure)}", file=sys.stderr)
            failures += 1
            continue
        folder = next(iter(written.values())).parent
        print(f"{file} -> {folder}/ ({', '.join(p.name for p in written.values())})")
    if failures:
        raise SystemExit(2)
