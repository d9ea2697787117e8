"""Datasets: MUSDB18, folders of stems, speech mixtures, generated toy sets, augmentation.

Every dataset class subclasses ``SeparationData`` and serves (mixture (channels, time),
sources (targets, channels, time)) float32 items; see ``sepkit.data.base``.
"""

from sepkit.data.base import SeparationData, Track, read_track
from sepkit.data.folder import FolderData
from sepkit.data.musdb import MUSDBData
from sepkit.data.speech import LibriMix, WSJ0Mix
from sepkit.data.toy import ToyMUSDB, generate_toy_musdb
from sepkit.data.toy_speech import ToySpeech, generate_toy_speech

__all__ = [
    "FolderData",
    "LibriMix",
    "MUSDBData",
    "SeparationData",
    "ToyMUSDB",
    "ToySpeech",
    "Track",
    "WSJ0Mix",
    "generate_toy_musdb",
    "generate_toy_speech",
    "read_track",
]
