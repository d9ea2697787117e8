"""``sepkit eval``: score a model, or stems on disk, on a dataset's test split, and report.

For each test track the estimates (the model's stems, separated here, or files from an
``estimates`` folder), the references and the mixture are read, scored, and the scores
written as ``<out>/test/<track>.json`` in museval's format. At the end ``results.csv``,
``summary.md``, ``boxplot.png`` and ``evaluation.json`` are written and the summary table
printed.

Music (``metrics=bsseval``) is scored as museval's ``eval_mus_track`` scores MUSDB18:
BSSEval v4 on 1 s windows, vocals again against the accompaniment when an accompaniment is
estimated, NaN windows where a reference or an estimate is silent, a silent stem NaN with a
warning instead of museval's ValueError. References are read as museval's caller reads
them: MUSDB18 and sets in its layout (the toy set) through musdb's reader, 16-bit PCM from
ffmpeg; other folders as soundfile reads them. Each target also gets SI-SDR and nSDR over
the whole track, and their improvement over the mixture. Speech (``metrics=speech``) gets
SI-SDR and SDR per utterance under the best speaker permutation.

With ``baseline`` the mixture is also scored as the estimate of every target. ``workers=N``
scores N tracks at once in processes of one thread each, while this process separates the
next track; the model's stems travel to them as float WAVs under ``<out>/estimates/``,
deleted once scored unless ``save_estimates``.

The modules:

- ``audio``: where a track's signals are (``AudioSource``) and reading them (``read_signal``).
- ``scoring``: scoring one track (``TrackJob`` -> ``score_track`` -> ``TrackResult``).
- ``pool``: the worker processes (``ScoringPool``).
- ``device``: where the fast backend computes (the CPU with numpy, or a GPU).
- ``estimates``: finding estimates on disk (``find_estimate_files``).
- ``plan``: what an evaluation scores, checked before anything is scored.
- ``reports``: the score rows, tables, box plot, and earlier evaluations read back.
- ``run``: the command (``run_evaluation``).

Names are imported from their modules on first use: a scoring process loads only what
scoring needs.
"""

from sepkit._exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AudioSource": "audio",
        "ScoringPool": "pool",
        "TrackJob": "scoring",
        "TrackResult": "scoring",
        "find_estimate_files": "estimates",
        "read_signal": "audio",
        "reference_sources": "audio",
        "run_evaluation": "run",
        "score_track": "scoring",
    },
)
