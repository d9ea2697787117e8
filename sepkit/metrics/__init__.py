"""Separation metrics: BSSEval v4 (museval's numbers, much faster), SI-SDR, plain SDR."""

from sepkit.metrics.bsseval import bss_eval_v4, number_of_windows, silent_sources
from sepkit.metrics.sdr import improvement, sdr, sdr_improvement, si_sdr, si_sdr_improvement
from sepkit.metrics.track import MUSDB_TARGET_SOURCES, evaluate_track

__all__ = [
    "MUSDB_TARGET_SOURCES",
    "bss_eval_v4",
    "evaluate_track",
    "improvement",
    "number_of_windows",
    "sdr",
    "sdr_improvement",
    "si_sdr",
    "si_sdr_improvement",
    "silent_sources",
]
