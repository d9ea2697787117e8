"""Files in, stems out: the ``Separator`` API behind ``sepkit separate`` and ``sepkit eval``.

- ``streaming``: segments with cross-fades, channel layouts, resampling: any length, rate
  and channel count through a model in bounded memory.
- ``audio_io``: reading input files block by block, writing stems atomically.
- ``inputs``: the files named or found in folders, and their track names.
- ``separator``: ``Separator`` (from_pretrained, from_checkpoint, separate,
  separate_file) and how a command's config builds one.

The command line is ``sepkit.cli``.
"""

from sepkit.separate.audio_io import (
    CLIP_MODES,
    FORMATS,
    SUBTYPES,
    AudioReader,
    StemsExist,
    StemWriter,
    check_output_settings,
)
from sepkit.separate.inputs import AUDIO_SUFFIXES, find_inputs, track_name
from sepkit.separate.separator import (
    DEFAULT_PRETRAINED,
    SEPARATION_KEYS,
    Separator,
    model_name,
    separator_from_config,
)
from sepkit.separate.streaming import (
    ChannelLayout,
    SegmentedSeparation,
    SeparationStream,
    StreamResampler,
    fade_weights,
)

__all__ = [
    "AUDIO_SUFFIXES",
    "CLIP_MODES",
    "DEFAULT_PRETRAINED",
    "FORMATS",
    "SEPARATION_KEYS",
    "SUBTYPES",
    "AudioReader",
    "ChannelLayout",
    "SegmentedSeparation",
    "SeparationStream",
    "Separator",
    "StemWriter",
    "StemsExist",
    "StreamResampler",
    "check_output_settings",
    "fade_weights",
    "find_inputs",
    "model_name",
    "separator_from_config",
    "track_name",
]
