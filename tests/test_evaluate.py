"""``sepkit eval`` on the generated toy sets: museval's numbers, the reports, the errors.

Estimates are generated from the toy references (filtered, leaking the other stems, plus
noise) and written as a user's separation would be; one run scores a small real sepkit
checkpoint through the ``sepkit`` command with two worker processes. The other runs call
``run_evaluation`` in this process with a config composed exactly as the command composes it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import museval
import numpy as np
import pytest
import soundfile
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf.errors import OmegaConfBaseException
from scipy import signal

from sepkit.checkpoint import save_checkpoint
from sepkit.cli import _register_resolvers, main
from sepkit.config import config_dir, register_schemas
from sepkit.evaluate import run_evaluation
from sepkit.metrics import si_sdr_improvement
from sepkit.models.openunmix import OpenUnmixSeparator
from tests.conftest import TINY_TOY, run_sepkit

TOY = ["dataset=toy", *TINY_TOY]  # two test tracks of 3 s
TOY_SPEECH = [
    "dataset=toy_speech",
    "dataset.nb_train=2",
    "dataset.nb_valid=1",
    "dataset.nb_test=3",
    "dataset.min_duration=1.0",
    "dataset.max_duration=1.5",
]
MUSIC_TARGETS = ["vocals", "drums", "bass", "other"]
BSSEVAL = ("SDR", "SIR", "ISR", "SAR")
TOLERANCE_DB = 1e-3


def compose_eval(*overrides: str):
    """The config ``sepkit eval <overrides>`` runs with."""
    register_schemas()
    _register_resolvers()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("eval", overrides=["progress=false", *overrides])


def evaluate(out_dir: Path, *overrides: str) -> Path:
    """``sepkit eval`` in this process; its output folder."""
    return run_evaluation(compose_eval(*overrides), out_dir)


def track_scores(run: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in (run / "test").glob("*.json")}


def read_results(run: Path) -> list[dict]:
    with open(run / "results.csv", newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(autouse=True)
def one_thread():
    """Short signals: a second torch thread costs more than it saves on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy_tracks():
    return instantiate(compose_eval(*TOY).dataset, _convert_="all").test_tracks()


@pytest.fixture(scope="module")
def estimates_dir(tmp_path_factory, toy_tracks) -> Path:
    """Imperfect estimates of every toy test track in museval's layout
    (``<dir>/test/<track>/<target>.wav``, with the accompaniment); the vocals of the first
    track are silent in its second window (NaN there, as museval scores it)."""
    root = tmp_path_factory.mktemp("estimates") / "imperfect"
    for number, track in enumerate(toy_tracks):
        stems = {name: soundfile.read(path)[0] for name, path in track.sources.items()}
        total = sum(stems.values())
        rng = np.random.default_rng(number)
        folder = root / "test" / track.name
        folder.mkdir(parents=True)
        estimates = {}
        for index, (name, stem) in enumerate(stems.items()):
            estimate = signal.lfilter([0.8, 0.25, -0.1], [1.0], stem, axis=0)
            estimate += 0.05 * (index + 1) * (total - stem)
            estimates[name] = estimate + 0.002 * rng.standard_normal(stem.shape)
        if number == 0:
            estimates["vocals"][44100:88200] = 0
        estimates["accompaniment"] = estimates["drums"] + estimates["bass"] + estimates["other"]
        for name, estimate in estimates.items():
            soundfile.write(folder / f"{name}.wav", estimate, 44100, subtype="FLOAT")
    return root


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory, estimates_dir) -> Path:
    out = tmp_path_factory.mktemp("runs") / "fast"
    return evaluate(out, *TOY, f"estimates={estimates_dir}")


def test_fast_backend_equals_museval_for_every_frame_and_metric(tmp_path, estimates_dir):
    # mono (channels averaged) keeps museval's filter systems 8 times cheaper than stereo
    options = [*TOY, "dataset.nb_channels=1", f"estimates={estimates_dir}", "baseline=false"]
    fast = track_scores(evaluate(tmp_path / "fast", *options, "backend=fast"))
    reference = track_scores(evaluate(tmp_path / "museval", *options, "backend=museval"))

    assert sorted(fast) == sorted(reference) and len(fast) == 2
    largest, compared, nan_frames = 0.0, 0, 0
    for track, scores in reference.items():
        # vocals scored again against the accompaniment, as eval_mus_track does
        names = [target["name"] for target in scores["targets"]]
        assert names == ["drums", "bass", "other", "vocals", "accompaniment"]
        assert [t["name"] for t in fast[track]["targets"]] == names
        for ours, theirs in zip(fast[track]["targets"], scores["targets"]):
            assert len(ours["frames"]) == len(theirs["frames"]) == 3
            for frame, expected in zip(ours["frames"], theirs["frames"]):
                assert (frame["time"], frame["duration"]) == (expected["time"], 1.0)
                for metric in BSSEVAL:
                    value, wanted = frame["metrics"][metric], expected["metrics"][metric]
                    assert math.isnan(value) == math.isnan(wanted), (track, metric)
                    if math.isnan(wanted):
                        nan_frames += 1
                        continue
                    largest = max(largest, abs(value - wanted))
                    compared += 1
    print(f"backend=fast vs backend=museval: largest difference {largest:.2e} dB over {compared}")
    # windows where a toy stem pauses, or the estimated vocals do, are NaN in both
    assert nan_frames > 0 and compared > 40
    assert largest < TOLERANCE_DB


def test_block_levinson_scores_as_the_dense_solution_on_mono_mixdowns(
    estimates_dir, toy_tracks, monkeypatch
):
    # the mono mixdowns' four-source systems (2048 unknowns, conditions ~1e11) are solved by
    # the block Levinson recursion; with its refinement steps it lands where a dense
    # factorisation does (one step alone left SAR 1.2e-4 dB away on one of these tracks)
    from sepkit.metrics import bsseval
    from sepkit.metrics.bsseval import filters

    kept = []
    levinson_filters = filters.levinson_filters

    def recorded(*arguments):
        filters, condition = levinson_filters(*arguments)
        kept.append(filters is not None)
        return filters, condition

    monkeypatch.setattr(filters, "levinson_filters", recorded)
    total = 0
    for track in toy_tracks:
        # read as musdb reads the references (16 bits), the estimates as written
        references = [
            np.rint(soundfile.read(path)[0] * 32768) / 32768 for path in track.sources.values()
        ]
        folder = estimates_dir / "test" / track.name
        estimates = [soundfile.read(folder / f"{name}.wav")[0] for name in track.sources]
        references, estimates = (np.stack(x).mean(axis=2) for x in (references, estimates))
        levinson = bsseval.bss_eval_v4(references, estimates)
        with monkeypatch.context() as dense_only:
            dense_only.setattr(filters, "DENSE_MAX_UNKNOWNS", 10**9)
            dense = bsseval.bss_eval_v4(references, estimates)
        largest, compared = 0.0, 0
        for metric in BSSEVAL:
            finite = np.isfinite(dense[metric])
            np.testing.assert_array_equal(np.isfinite(levinson[metric]), finite)
            difference = np.abs(levinson[metric] - dense[metric])[finite]
            largest = max(largest, difference.max(initial=0.0))
            compared += difference.size
        print(f"{track.name}: block Levinson against dense, {compared} values (the others NaN")
        print(f"  in both: a silent reference or estimate), largest difference {largest:.1e} dB")
        assert largest < 1e-5
        total += compared
    assert kept == [True] * len(toy_tracks) and total > 0


def test_reports_are_museval_json_csv_markdown_and_a_box_plot(fast_run, toy_tracks):
    names = [track.name for track in toy_tracks]
    targets = [*MUSIC_TARGETS, "accompaniment"]
    # museval reads the JSON files back and aggregates them to the summary's numbers
    store = museval.EvalStore()
    store.add_eval_dir(str(fast_run))
    museval_table = store.agg_frames_tracks_scores()
    assert sorted(store.df["track"].unique()) == sorted(names)

    rows = read_results(fast_run)
    methods = sorted({row["method"] for row in rows})
    assert methods == ["imperfect", "mixture"]
    for method, metrics in [("imperfect", 8), ("mixture", 8)]:
        ours = [row for row in rows if row["method"] == method]
        assert {(row["track"], row["target"]) for row in ours} == {
            (name, target) for name in names for target in targets
        }
        assert len(ours) == len(names) * len(targets) * metrics

    summary = (fast_run / "summary.md").read_text()
    assert "| target | estimates | SDR | SIR | ISR | SAR | SI-SDR | SI-SDRi | nSDR | nSDRi |" in (
        summary
    )
    for target in targets:
        cells = {}
        for line in summary.splitlines():
            parts = [part.strip() for part in line.strip("|").split("|")]
            if parts[:1] == [target]:
                cells[parts[1]] = parts[2:]
        assert set(cells) == {"imperfect", "mixture"}, target
        for index, metric in enumerate(BSSEVAL):
            # the SiSEC table: median over windows, then over tracks, as museval aggregates
            assert float(cells["imperfect"][index]) == pytest.approx(
                museval_table[target][metric], abs=0.006
            )
        # the generated estimates are better than the mixture
        assert float(cells["imperfect"][0]) > float(cells["mixture"][0])
    assert "SDR of imperfect above the mixture's (medians): vocals +" in summary

    image = (fast_run / "boxplot.png").read_bytes()
    assert image.startswith(b"\x89PNG") and len(image) > 10_000
    description = json.loads((fast_run / "evaluation.json").read_text())
    assert description["tracks"] == names and description["metrics"] == "bsseval"
    scores = track_scores(fast_run)[names[0]]
    assert scores["museval_version"] == "0.4.1"
    assert set(scores["targets"][0]["track_metrics"]) == {"SI-SDR", "SI-SDRi", "nSDR", "nSDRi"}


def test_separate_layout_gives_the_same_scores_and_runs_compare(
    tmp_path, estimates_dir, fast_run, checkpoint_run, toy_tracks
):
    # sepkit separate writes <out_dir>/<name>/<track>/<stem>.wav; estimates= may name either
    name = toy_tracks[0].name
    separated = tmp_path / "separated"
    shutil.copytree(estimates_dir / "test" / name, separated / "my_model" / name)
    compared = [str(fast_run), str(checkpoint_run)]
    with pytest.warns(UserWarning, match="aggregates are over different tracks"):
        run = evaluate(
            tmp_path / "layout",
            *TOY,
            f"estimates={separated}",
            f"tracks=[{name}]",
            "baseline=false",
            f"compare=[{','.join(compared)}]",
        )
    assert track_scores(run)[name]["targets"] == track_scores(fast_run)[name]["targets"]

    summary = (run / "summary.md").read_text()
    methods = {row.split("|")[2].strip() for row in summary.splitlines() if "| vocals |" in row}
    assert methods == {"separated", "imperfect", "my-run"}
    assert {row["method"] for row in read_results(run)} == {"separated", "imperfect", "my-run"}
    assert (run / "boxplot.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def checkpoint_run(tmp_path_factory) -> Path:
    """``sepkit eval checkpoint=<run> dataset=toy workers=2`` with a small real checkpoint
    (the mixture baseline, tested above, left out to keep the test short)."""
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    model = OpenUnmixSeparator(
        targets=MUSIC_TARGETS, sample_rate=44100, nb_channels=2, n_fft=512, hop_length=128,
        hidden_size=16, nb_layers=1, bandwidth=None,
    )  # fmt: skip
    save_checkpoint(
        folder / "my-run" / "checkpoints" / "best.pt",
        {"model": {"config": model.config, "state_dict": model.state_dict()}},
    )
    out = folder / "eval"
    result = run_sepkit(
        "eval",
        f"checkpoint={folder / 'my-run'}",
        *TOY,
        "workers=2",
        "baseline=false",
        f"out_dir={out}",
    )
    assert result.returncode == 0, result.stderr
    (out / "stdout.txt").write_text(result.stdout)
    (out / "stderr.txt").write_text(result.stderr)
    return out


def test_two_workers_give_the_same_reports_as_one(tmp_path, estimates_dir):
    # each track scored in a worker process: the same targets in museval's order, the same
    # numbers, and the same rows (estimates and mixture baseline) as scoring here
    options = [*TOY, "dataset.nb_channels=1", f"estimates={estimates_dir}"]
    here = evaluate(tmp_path / "here", *options)
    there = evaluate(tmp_path / "there", *options, "workers=2")

    here_scores, there_scores = track_scores(here), track_scores(there)
    assert sorted(there_scores) == sorted(here_scores) and len(there_scores) == 2
    for track, scores in here_scores.items():
        names = [t["name"] for t in there_scores[track]["targets"]]
        assert names == ["drums", "bass", "other", "vocals", "accompaniment"]
        for ours, theirs in zip(there_scores[track]["targets"], scores["targets"], strict=True):
            assert ours["track_metrics"] == pytest.approx(theirs["track_metrics"], abs=1e-6)
            for frame, expected in zip(ours["frames"], theirs["frames"], strict=True):
                for metric in BSSEVAL:
                    value, wanted = frame["metrics"][metric], expected["metrics"][metric]
                    assert value == pytest.approx(wanted, abs=TOLERANCE_DB, nan_ok=True)
    # the same rows (estimates and mixture) in the same order
    here_rows = list(csv.reader((here / "results.csv").open()))
    there_rows = list(csv.reader((there / "results.csv").open()))
    assert [row[:4] for row in there_rows] == [row[:4] for row in here_rows]
    assert any(row[0] == "mixture" for row in there_rows)


def test_scoring_estimates_on_the_cpu_does_not_import_torch(tmp_path, estimates_dir):
    # importing torch takes longer than scoring a short track: the command's process and
    # the scoring processes compute on the CPU with numpy alone
    out = tmp_path / "run"
    arguments = [*TOY, f"estimates={estimates_dir}", f"out_dir={out}", "device=cpu"]
    script = (
        "import runpy, sys\n"
        f"sys.argv = ['sepkit', 'eval', *{arguments!r}, 'workers=' + sys.argv[1]]\n"
        "try:\n"
        "    runpy.run_module('sepkit', run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    assert stop.code in (0, None), stop.code\n"
        "print('torch imported:', 'torch' in sys.modules)\n"
    )
    for workers in (1, 2):
        shutil.rmtree(out, ignore_errors=True)
        result = subprocess.run(
            [sys.executable, "-c", script, str(workers)],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert "torch imported: False" in result.stdout, f"workers={workers}"
        assert (out / "summary.md").is_file()


def test_command_separates_and_scores_a_checkpoint_in_two_workers(
    tmp_path, checkpoint_run, toy_tracks
):
    stdout = (checkpoint_run / "stdout.txt").read_text()
    stderr = (checkpoint_run / "stderr.txt").read_text()
    # the summary table at the end, and a progress bar over the tracks
    assert "| target | estimates | SDR |" in stdout
    assert "| vocals | my-run |" in stdout and "| other | my-run |" in stdout
    assert "2/2" in stderr and "track" in stderr
    assert sorted(track_scores(checkpoint_run)) == sorted(t.name for t in toy_tracks)
    assert not (checkpoint_run / "estimates").exists()  # the workers' stems are deleted
    for name in ("results.csv", "summary.md", "boxplot.png", ".hydra/config.yaml"):
        assert (checkpoint_run / name).is_file(), name
    evaluated = json.loads((checkpoint_run / "evaluation.json").read_text())["evaluated"]
    assert evaluated.startswith("checkpoint ")
    # the same model separated and scored in this process gives the same numbers
    name = toy_tracks[0].name
    checkpoint = evaluated.split(" ", 1)[1]
    run = evaluate(tmp_path, *TOY, f"checkpoint={checkpoint}", f"tracks=[{name}]", "baseline=false")
    here, there = track_scores(run)[name], track_scores(checkpoint_run)[name]
    for ours, theirs in zip(here["targets"], there["targets"], strict=True):
        for frame, expected in zip(ours["frames"], theirs["frames"], strict=True):
            for metric in BSSEVAL:
                value, wanted = frame["metrics"][metric], expected["metrics"][metric]
                assert value == pytest.approx(wanted, abs=1e-3, nan_ok=True)


def test_silent_stem_is_nan_with_a_warning(tmp_path, estimates_dir, toy_tracks):
    name = toy_tracks[0].name
    silent = tmp_path / "silent"
    shutil.copytree(estimates_dir, silent)
    bass = silent / "test" / name / "bass.wav"
    soundfile.write(bass, np.zeros_like(soundfile.read(bass)[0]), 44100, subtype="FLOAT")

    with pytest.warns(UserWarning, match=f"{name}: bass: the estimate is silent"):
        run = evaluate(tmp_path / "run", *TOY, f"estimates={silent}", f"tracks=[{name}]")

    targets = {t["name"]: t for t in track_scores(run)[name]["targets"]}
    assert all(
        math.isnan(value)
        for frame in targets["bass"]["frames"]
        for value in frame["metrics"].values()
    )
    assert any(math.isfinite(frame["metrics"]["SDR"]) for frame in targets["drums"]["frames"])
    values = {(r["method"], r["target"], r["metric"]): float(r["value"]) for r in read_results(run)}
    assert math.isnan(values[("silent", "bass", "SDR")])
    assert math.isnan(values[("silent", "bass", "SI-SDR")])
    assert math.isfinite(values[("mixture", "bass", "SDR")])


def test_speech_si_sdri_after_the_best_permutation(tmp_path):
    tracks = instantiate(compose_eval(*TOY_SPEECH).dataset, _convert_="all").test_tracks()
    estimates = tmp_path / "speech"
    expected = {}
    for track in tracks:
        first, second = (soundfile.read(track.sources[s])[0] for s in ("s1", "s2"))
        mixture = soundfile.read(track.mixture)[0]
        # the estimates come out in the other order, each with some of the other speaker
        (estimates / track.name).mkdir(parents=True)
        swapped = {"s1": second + 0.2 * first, "s2": first + 0.1 * second}
        for speaker, audio in swapped.items():
            soundfile.write(estimates / track.name / f"{speaker}.wav", audio, 8000, "FLOAT")
        estimate = torch.from_numpy(np.stack([swapped["s2"], swapped["s1"]]))
        reference = torch.from_numpy(np.stack([first, second]))
        improvement = si_sdr_improvement(estimate, reference, torch.from_numpy(mixture)[None])
        expected[track.name] = dict(zip(["s1", "s2"], improvement.tolist()))

    run = evaluate(tmp_path / "run", *TOY_SPEECH, f"estimates={estimates}")

    rows = read_results(run)
    for track, by_speaker in expected.items():
        for speaker, value in by_speaker.items():
            (row,) = [
                r for r in rows
                if (r["method"], r["track"], r["target"], r["metric"])
                == ("speech", track, speaker, "SI-SDRi")
            ]  # fmt: skip
            assert float(row["value"]) == pytest.approx(value, abs=1e-4)
        scores = track_scores(run)[track]["targets"]
        assert [(t["name"], t["estimate"]) for t in scores] == [("s1", "s2"), ("s2", "s1")]
    summary = (run / "summary.md").read_text()
    assert "| target | estimates | SI-SDR | SI-SDRi | SDR | SDRi |" in summary
    mean = np.mean([v for by_speaker in expected.values() for v in by_speaker.values()])
    (line,) = [line for line in summary.splitlines() if line.startswith("| all | speech |")]
    assert float(line.split("|")[4]) == pytest.approx(mean, abs=0.006)


def test_references_are_read_as_musdb_reads_them(tmp_path, toy_tracks):
    # museval's caller reads MUSDB18 through musdb: 16-bit PCM from ffmpeg, for the
    # .stem.mp4 release and for WAV folders (the toy set) alike
    import musdb
    import stempeg

    from sepkit.data import MUSDBData
    from sepkit.data.toy import synthesise_song
    from sepkit.evaluate import read_signal, reference_sources

    song = synthesise_song(np.random.default_rng(5), 44100, 44100)
    streams = ["mixture", "drums", "bass", "other", "vocals"]
    (tmp_path / "test").mkdir()
    stempeg.write_stems(
        str(tmp_path / "test" / "Band - Song.stem.mp4"),
        np.stack([song[stream] for stream in streams]),
        sample_rate=44100,
        writer=stempeg.StreamsWriter(codec="aac", stem_names=streams),
    )
    stem_files = MUSDBData(root=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    toy = instantiate(compose_eval(*TOY).dataset, _convert_="all")
    for data, tracks, is_wav in [(stem_files, None, False), (toy, toy_tracks[:1], True)]:
        tracks = tracks or data.test_tracks()
        sources = reference_sources(data, tracks)
        database = musdb.DB(root=str(data.root), subsets="test", is_wav=is_wav)
        for track in database.tracks[: len(tracks)]:
            stems, mixture = sources[track.name]
            for name in ("vocals", "bass"):  # (each stream is one more ffmpeg run)
                expected = track.sources[name].audio
                np.testing.assert_array_equal(read_signal(stems[name], 2), expected)
            np.testing.assert_array_equal(read_signal(mixture, 2), track.audio)


def run_main(*arguments: str) -> int:
    """``sepkit eval ...`` in this process; its exit status."""
    try:
        main(["eval", *arguments])
    except SystemExit as exit:
        return int(exit.code or 0)
    return 0


def test_bad_input_is_one_line_error_and_leaves_no_folder(
    tmp_path, capsys, estimates_dir, toy_tracks, monkeypatch
):
    broken = tmp_path / "broken"
    shutil.copytree(estimates_dir, broken)
    missing = broken / "test" / toy_tracks[1].name / "drums.wav"
    missing.unlink()
    monkeypatch.delenv("MUSDB_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    # no arguments: htdemucs on MUSDB18's test set at $MUSDB_PATH, into runs/eval/<date>/<time>
    assert run_main() == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        "error: no MUSDB18 folder given: set dataset.root=<folder> or the MUSDB_PATH "
        "environment variable (or use dataset=toy)"
    )
    assert not (tmp_path / "runs").exists()
    cases = [
        (["dataset=musdb"], "no MUSDB18 folder given: set dataset.root=<folder> or the MUSDB_PATH"),
        ([*TOY, f"estimates={tmp_path / 'nowhere'}"], f"estimates={tmp_path / 'nowhere'}: no such"),
        ([*TOY, f"estimates={broken}"], f"{missing}: missing"),
        ([*TOY, f"estimates={broken}", "checkpoint=x"], "choose one thing to evaluate"),
    ]
    for number, (arguments, message) in enumerate(cases):
        out = tmp_path / f"out{number}"
        assert run_main(*arguments, f"out_dir={out}") == 2, arguments
        error = capsys.readouterr().err.strip()
        assert error.startswith("error: ") and message in error, error
        assert "\n" not in error and not out.exists()


@pytest.mark.parametrize("override", ["backend=slow", "workers=two", "windw=2.0", "metric=sdr"])
def test_bad_keys_and_values_fail_while_composing(override):
    with pytest.raises((ConfigCompositionException, OmegaConfBaseException)):
        compose_eval(override)


def test_scoring_device_keeps_float64_off_mps(monkeypatch):
    import sepkit.devices
    from sepkit.evaluate import device
    from sepkit.evaluate.device import scoring_device

    # without a GPU's device files "auto" is the CPU, told without torch
    monkeypatch.setattr(device, "no_gpu_here", lambda: True)
    assert scoring_device("auto", here=False) is None
    assert scoring_device("auto", here=True) is None
    monkeypatch.setattr(device, "no_gpu_here", lambda: False)
    # the main process hands "auto" on unresolved (it has not imported torch)
    assert scoring_device("auto", here=False) == "auto"
    assert scoring_device("cpu", here=False) is None
    for name, expected in (("mps", None), ("cuda:1", "cuda:1"), ("cpu", None)):
        resolved = torch.device(name)
        monkeypatch.setattr(sepkit.devices, "select_device", lambda *a, d=resolved, **k: d)
        # BSSEval solves in float64, which MPS lacks: the CPU scores instead
        assert scoring_device("auto", here=True) == expected, name
