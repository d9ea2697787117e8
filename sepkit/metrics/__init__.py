"""Separation metrics: BSSEval v4 (museval's numbers, much faster), SI-SDR, plain SDR.

The names are imported from their modules on first use: MUSDB_TARGET_SOURCES without torch.
"""

from sepkit._exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "MUSDB_TARGET_SOURCES": "targets",
        "best_permutation": "permutation",
        "bss_eval_v4": "bsseval",
        "evaluate_track": "track",
        "improvement": "ratios",
        "number_of_windows": "bsseval",
        "sdr": "ratios",
        "sdr_improvement": "ratios",
        "si_sdr": "ratios",
        "si_sdr_improvement": "ratios",
        "silent_sources": "bsseval",
    },
)
