"""Audio of any length and channel count through a model, block by block, in bounded memory.

- Channels (``ChannelLayout``): as many as the model takes are separated as they are; a
  mono input is duplicated for a multichannel model and its stems are the channels' mean
  (mono again); a mono model separates each channel of a multichannel input on its own;
  any other count is an error (downmix first). This is separation's rule, where the
  stems must keep the input's channels; reading a file into a dataset's fixed channel
  count is ``sepkit.audio.convert_channels``.
- Sample rate: resampled to the model's rate and back with soxr, streaming.
- Length: segments sharing an overlap with the next, so memory does not grow with the
  input's length. How the segments are weighed and padded is the model's
  ``segment_weighting``: ``"cross_fade"`` (linear ramps summing to one over at most half a
  segment), ``"triangle"`` (demucs 4's ``apply_model``) or ``"edge_fade"`` (the
  Music-Source-Separation-Training project's ``demix``); the last two are weighted
  overlap-adds normalised by the summed weights (``WeightedSegmentedSeparation``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import soxr
import torch
from torch import Tensor

from sepkit.errors import SepkitError

__all__ = [
    "ChannelLayout",
    "SegmentedSeparation",
    "SeparationStream",
    "StreamResampler",
    "WeightedSegmentedSeparation",
    "fade_weights",
    "segment_stride",
    "segmented_separation",
]

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


# -- weighted overlap-add ---------------------------------------------------------------

SEGMENT_WEIGHTINGS = ("cross_fade", "triangle", "edge_fade")


def segment_stride(weighting: str, segment_length: int, overlap: float) -> int:
    """Samples between segment starts for a share ``overlap`` of ``segment_length`` shared
    with the next, rounded as the scheme's reference rounds it (demucs: the int of
    (1 - overlap) * length; MSST: length // num_overlap, num_overlap = 1 / (1 - overlap))."""
    if weighting not in SEGMENT_WEIGHTINGS:
        raise ValueError(f"segment_weighting={weighting!r}: use one of {SEGMENT_WEIGHTINGS}")
    if weighting == "triangle":
        return max(1, int((1 - overlap) * segment_length))
    if weighting == "edge_fade":
        return max(1, segment_length // max(1, round(1 / (1 - overlap))))
    return segment_length - min(round(overlap * segment_length), segment_length // 2)


def segmented_separation(
    weighting: str,
    separate_segment: Callable[[Tensor], Tensor],
    segment_length: int,
    overlap_length: int,
) -> SegmentedSeparation | WeightedSegmentedSeparation:
    """The streaming segmenter of a model's ``segment_weighting``."""
    if weighting == "cross_fade":
        return SegmentedSeparation(separate_segment, segment_length, overlap_length)
    return WeightedSegmentedSeparation(separate_segment, segment_length, overlap_length, weighting)


def triangle_weights(length: int) -> Tensor:
    """(length,) demucs 4's segment weights: a triangle peaking at one in the middle."""
    weights = torch.cat(
        [torch.arange(1, length // 2 + 1), torch.arange(length - length // 2, 0, -1)]
    )
    return weights / weights.max()


def edge_fade_weights(length: int, fade: int, fade_in: bool, fade_out: bool) -> Tensor:
    """(length,) MSST's window: ones, with a linear fade from 0 to 1 over the first
    ``fade`` samples and from 1 to 0 over the last (each only if asked)."""
    weights = torch.ones(length)
    if fade and fade_out:
        weights[-fade:] = torch.linspace(1, 0, fade)
    if fade and fade_in:
        weights[:fade] = torch.linspace(0, 1, fade)
    return weights


class WeightedSegmentedSeparation:
    """Separate audio of any length in overlapping segments, as it arrives, by a weighted
    overlap-add: each sample is the weighted sum of the segments' stems over it divided by
    the sum of their weights.

    Segments of ``segment_length`` samples start every ``segment_length - overlap_length``
    (any overlap below a segment). ``weighting`` sets the rest, as the reference does:

    - ``"triangle"`` (demucs 4's ``apply_model``): triangle weights over the whole segment;
      a short segment at the end takes real audio before it as context, centred, with
      zeros past the input's end, and its stems are the centre of the model's output.
    - ``"edge_fade"`` (MSST's ``demix``): weights one but a linear fade over a tenth of a
      segment at each end (none at the first segment's start and the last's end); the
      input is reflect-padded by ``segment_length - stride`` at both ends when longer than
      twice that; a short last segment is reflect-padded when longer than half a segment,
      else zero-padded, and its stems are the output's start. An input of at most one
      segment is separated whole, as it is. Segments that start in the trailing padding,
      which ``demix`` separates and discards, are skipped.

    Memory holds about one segment of input and one of output, whatever the length.
    """

    def __init__(
        self,
        separate_segment: Callable[[Tensor], Tensor],
        segment_length: int,
        overlap_length: int,
        weighting: str,
    ) -> None:
        if not 0 <= overlap_length < segment_length or weighting not in SEGMENT_WEIGHTINGS[1:]:
            raise ValueError(
                f"overlap_length must be in [0, segment_length) and weighting one of "
                f"{SEGMENT_WEIGHTINGS[1:]}, got {overlap_length}, {segment_length}, {weighting!r}"
            )
        self.separate_segment = separate_segment
        self.segment_length = segment_length
        self.stride = segment_length - overlap_length
        self.weighting = weighting
        border = overlap_length if weighting == "edge_fade" else 0
        self._border = border  # reflect padding at each end of long inputs
        self._context = segment_length // 2 if weighting == "triangle" else 0
        self._lead: int | None = None  # padding put before the input, once decided
        self._input = torch.zeros(0, 0)  # (channels, time) from self._input_start on
        self._input_start = 0  # positions count the leading padding
        self._received = 0
        self._offset = 0  # the next segment's start
        self._sum: Tensor | None = None  # weighted stems (stems, channels, time) from _sum_start
        self._weight = torch.zeros(0)
        self._sum_start = 0

    def push(self, audio: Tensor) -> list[Tensor]:
        """Add (channels, time) input; return the stems finished so far, each
        (stems, channels, time), in order."""
        self._input = torch.cat([self._input, audio], dim=-1) if self._received else audio
        self._received += audio.shape[-1]
        if self._lead is None:
            if self._received <= 2 * self._border:
                return []  # not yet known whether the input is long enough to pad
            self._lead = self._border
            if self._lead:
                reflection = self._input[:, 1 : self._lead + 1].flip(-1)
                self._input = torch.cat([reflection, self._input], dim=-1)
        end = self._input_start + self._input.shape[-1]
        # a segment is separated once input follows it: only then is it known not to be
        # the last one
        while end > self._offset + self.segment_length:
            self._add_segment(end, last=False)
        keep_from = max(self._input_start, self._offset - self._context)
        self._input = self._input[:, keep_from - self._input_start :]
        self._input_start = keep_from
        return self._emit(self._offset)

    def finish(self) -> list[Tensor]:
        """Separate what is left; return the remaining stems."""
        if self._received == 0:
            return []
        if self._lead is None:
            self._lead = 0
        if self.weighting == "edge_fade" and self._received <= self.segment_length:
            # one segment: the model on the input as it is (it takes any length)
            self._received = 0
            return [self.separate_segment(self._input)]
        if self._lead:
            reflection = self._input[:, -self._lead - 1 : -1].flip(-1)
            self._input = torch.cat([self._input, reflection], dim=-1)
        end = self._input_start + self._input.shape[-1]
        # a segment starting past the input's last sample holds only the trailing padding,
        # which is cut from the output: the reference separates it, sepkit does not
        output_end = self._lead + self._received
        while self._offset < min(end, output_end):
            self._add_segment(end, last=self._offset + self.stride >= end)
        return self._emit(end)

    def _add_segment(self, end: int, last: bool) -> None:
        """Separate the segment at ``self._offset`` (input ends at ``end`` so far) and add
        its weighted stems."""
        length = min(self.segment_length, end - self._offset)
        model_input, crop = self._model_input(length, end)
        stems = self.separate_segment(model_input)[..., crop : crop + length]
        if self.weighting == "triangle":
            weights = triangle_weights(self.segment_length)[:length]
        else:
            fade = self.segment_length // 10
            weights = edge_fade_weights(self.segment_length, fade, self._offset > 0, not last)
            weights = weights[:length]
        if self._sum is None:
            self._sum = torch.zeros(*stems.shape[:-1], 0)
            self._sum_start = self._offset
        grow = self._offset + length - (self._sum_start + self._sum.shape[-1])
        if grow > 0:
            self._sum = torch.nn.functional.pad(self._sum, (0, grow))
            self._weight = torch.nn.functional.pad(self._weight, (0, grow))
        at = self._offset - self._sum_start
        self._sum[..., at : at + length] += stems * weights
        self._weight[at : at + length] += weights
        self._offset += self.stride

    def _model_input(self, length: int, end: int) -> tuple[Tensor, int]:
        """(channels, segment_length) input for the segment at ``self._offset`` with
        ``length`` samples of its own, and where its stems start in the model's output."""
        start = self._offset - self._input_start
        if length == self.segment_length:
            return self._input[:, start : start + length], 0
        missing = self.segment_length - length
        if self.weighting == "triangle":
            first = self._offset - missing // 2  # centred on the segment's own samples
            real_from = max(first, self._input_start)
            real_to = min(end, first + self.segment_length)
            real = self._input[:, real_from - self._input_start : real_to - self._input_start]
            padding = (real_from - first, first + self.segment_length - real_to)
            return torch.nn.functional.pad(real, padding), missing // 2
        own = self._input[:, start : start + length]
        mode = "reflect" if length > self.segment_length // 2 else "constant"
        return torch.nn.functional.pad(own[None], (0, missing), mode=mode)[0], 0

    def _emit(self, upto: int) -> list[Tensor]:
        """The finished stems before position ``upto``, without the leading padding and
        nothing past the input's end."""
        if self._sum is None or upto <= self._sum_start:
            return []
        count = upto - self._sum_start
        weight = self._weight[:count]
        done = self._sum[..., :count] / torch.where(weight > 0, weight, 1)
        self._sum = self._sum[..., count:].clone()
        self._weight = self._weight[count:].clone()
        first, self._sum_start = self._sum_start, upto
        lead = self._lead or 0
        done = done[..., max(0, lead - first) : max(0, lead + self._received - first)]
        return [done] if done.shape[-1] else []


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


class SeparationStream:
    """Audio at any sample rate and channel count in, stems at the same out, block by block.

    Input blocks are (channels, time) float32 at ``sample_rate``; output blocks are
    (stems, channels, time) at the same rate. In total exactly as many samples come out
    as went in, each aligned with its input sample. Memory is bounded by one segment.

    ``separate_segment`` maps (input channels, time) at ``model_rate`` to (stems, input
    channels, time) (``layout`` tells it how to meet the model's channels); segments are
    ``segment_length`` samples at the model's rate, ``overlap_length`` of them shared with
    the next, weighed as ``segment_weighting`` says. ``label`` names the input in errors.
    """

    def __init__(
        self,
        separate_segment: Callable[[Tensor], Tensor],
        layout: ChannelLayout,
        *,
        sample_rate: int,
        model_rate: int,
        stems: int,
        segment_length: int,
        overlap_length: int,
        label: str,
        segment_weighting: str = "cross_fade",
    ) -> None:
        channels = layout.input_channels
        self.label = label
        self.sample_rate = sample_rate
        self.layout = layout
        self.stems = stems
        self.to_model_rate = StreamResampler(sample_rate, model_rate, channels)
        self.from_model_rate = StreamResampler(model_rate, sample_rate, channels * stems)
        self.segments = segmented_separation(
            segment_weighting, separate_segment, segment_length, overlap_length
        )
        self.frames_in = 0
        self.frames_out = 0
        self._held_back: Tensor | None = None  # output ahead of the input (rounding)

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
        stems, channels = self.stems, self.layout.input_channels
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
