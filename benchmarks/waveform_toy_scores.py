"""How much a trained model improves on the unprocessed mixture, on its dataset's test set.

    PYTHONPATH=. python benchmarks/waveform_toy_scores.py RUN_DIR [RUN_DIR ...]

For each run directory, the best checkpoint's model separates every test track of the
run's dataset (the toy sets: generated, so this runs anywhere) in one piece. Per target:
the plain SDR over the whole track (Demucs's and the MDX challenge's "new SDR") and the
SI-SDR per channel, of the estimate and of the mixture taken as the estimate, and their
difference (SDRi, SI-SDRi). Plain SDR also rewards a mere rescaling, so the SDR of the
mixture divided by the number of targets (a separation that does nothing but scale) is
given too: a model separates only where it beats that, or where its SI-SDRi is positive.
For speech (targets s1, s2, ...) estimates are first matched to
speakers by the permutation of best SI-SDR, as in permutation-invariant training. Prints
a Markdown table: the mean over test tracks per target, and the mean over targets.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sepkit.checkpoint import build_model, find_checkpoint, load_checkpoint
from sepkit.data.base import read_track
from sepkit.losses.pit import apply_permutation, best_permutation
from sepkit.metrics.ratios import sdr, si_sdr
from sepkit.models.base import InferenceOptions


def score_run(
    run_dir: Path, options: InferenceOptions | None = None
) -> tuple[str, dict[str, dict[str, float]], float]:
    """(model name, {target: {metric: mean over tracks}}, seconds of separation), separating
    with ``options`` (default: ``InferenceOptions()``)."""
    checkpoint = load_checkpoint(find_checkpoint(run_dir))
    model = build_model(checkpoint).eval()
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    data = instantiate(config.dataset, _convert_="all")
    speech = all(target.startswith("s") and target[1:].isdigit() for target in model.targets)
    scores: dict[str, dict[str, list[float]]] = {
        target: {"SDR": [], "SDR mixture": [], "SDR scaled": [], "SI-SDR": [], "SI-SDR mixture": []}
        for target in model.targets
    }
    seconds = 0.0
    for track in data.test_tracks():
        mixture, sources = read_track(track, nb_channels=model.nb_channels)
        started = time.perf_counter()
        with torch.no_grad():
            estimates = model.separate(mixture.unsqueeze(0), options)[0]
        seconds += time.perf_counter() - started
        if speech:
            pairwise = -si_sdr(estimates.unsqueeze(1), sources.unsqueeze(0)).mean(-1)
            estimates = apply_permutation(estimates[None], best_permutation(pairwise[None]))[0]
        unprocessed = mixture.unsqueeze(0).expand_as(sources)
        for index, target in enumerate(model.targets):
            reference = sources[index]
            if float(reference.abs().max()) == 0:
                continue  # a silent stem has no SDR
            scores[target]["SDR"].append(float(sdr(estimates[index], reference)))
            scores[target]["SDR mixture"].append(float(sdr(unprocessed[index], reference)))
            scaled = unprocessed[index] / len(model.targets)
            scores[target]["SDR scaled"].append(float(sdr(scaled, reference)))
            scores[target]["SI-SDR"].append(float(si_sdr(estimates[index], reference).mean()))
            scores[target]["SI-SDR mixture"].append(
                float(si_sdr(unprocessed[index], reference).mean())
            )
    means = {
        target: {name: statistics.fmean(values) for name, values in metrics.items()}
        for target, metrics in scores.items()
    }
    return model.name, means, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument(
        "--niter",
        type=int,
        default=InferenceOptions.niter,
        help="Wiener filter iterations of spectrogram models (0: their masks on the mixture)",
    )
    arguments = parser.parse_args()
    options = InferenceOptions(niter=arguments.niter)
    print(
        "| run | model | target | SDR | SDR of mixture | SDRi | SDR of mixture / sources "
        "| SI-SDR | SI-SDRi |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for run_dir in arguments.run_dirs:
        name, means, _ = score_run(run_dir, options)
        rows = list(means.items())
        averaged = {
            metric: statistics.fmean(values[metric] for _, values in rows) for metric in rows[0][1]
        }
        for target, values in [*rows, ("mean", averaged)]:
            print(
                f"| {run_dir.name} | {name} | {target} | {values['SDR']:.2f} | "
                f"{values['SDR mixture']:.2f} | {values['SDR'] - values['SDR mixture']:+.2f} | "
                f"{values['SDR scaled']:.2f} | {values['SI-SDR']:.2f} | "
                f"{values['SI-SDR'] - values['SI-SDR mixture']:+.2f} |"
            )


if __name__ == "__main__":
    main()
