"""Hostile input to every sepkit command: files, datasets and checkpoints from strangers,
settings of the wrong type, folders that cannot be written.

One table, one row per input (``ROWS``). A row that cannot be done must end with exactly
one line ``error: ...`` that names the file or key at fault (and the fix, where there is
one), exit status 2, and a workspace byte for byte as it was: no stems folder, no run
directory, nothing existing overwritten, no payload run. A row that can be done (odd rates,
bit depths, names) must succeed and write what a user expects, leaving what was there.

Each test's workspace holds the hostile input, earlier stems and an earlier run beside
where the command writes. Commands run in this process through ``sepkit.cli.main`` (the
code the ``sepkit`` command runs, without an interpreter start per row); the read-only
folder rows start the real command, because giving up write permission (as root: the
capability that ignores it) takes a process of its own.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from sepkit.checkpoint import load_checkpoint
from sepkit.cli import main as sepkit_main
from sepkit.models.convtasnet import ConvTasNet
from tests.conftest import REPOSITORY, TINY_MODEL, TINY_TRAINER, TINY_TRAINING
from tests.helpers import MUSIC_TARGETS, RATE, save_run, song, tiny_model

# One step of one epoch: the trained run only has to exist.
ONE_STEP = ["trainer.epochs=1", "trainer.steps_per_epoch=1"]
# One thread: on tensors this small a second costs more than it gives, and on a busy machine
# two spinning OpenMP threads can make a step take seconds.
TRAINER = [o for o in TINY_TRAINER if not o.startswith("trainer.steps_per_epoch")]
TRAINER.append("trainer.threads=1")
MODEL_NAME = "tiny"  # the separation model's run folder, hence its stems folder


# -- the workspace ------------------------------------------------------------------------


@dataclass
class Workspace:
    """Where one row runs. ``path`` is the hostile file or folder the row wrote, named by
    its error; ``out`` is the stems folder of ``sepkit separate``, ``run`` the run
    directory of ``sepkit train``."""

    root: Path
    model: Path  # a run directory holding a small separation model
    trained: Path  # a run directory left by ``sepkit train`` (copied before resuming)
    path: Path | None = None

    @property
    def inputs(self) -> Path:
        return self.root / "in"

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def run(self) -> Path:
        return self.runs / "new"

    @property
    def marker(self) -> Path:
        """A file a pickled or configured payload would create if it ran."""
        return self.root / "payload-ran"


def snapshot(*folders: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for folder in folders for p in folder.rglob("*") if p.is_file()}


def fill_workspace(workspace: Workspace) -> None:
    """What a user already has beside the outputs: stems of an earlier track, notes, an
    earlier run. None of it may change."""
    workspace.inputs.mkdir(parents=True)
    earlier_stems = workspace.out / MODEL_NAME / "earlier"
    earlier_stems.mkdir(parents=True)
    soundfile.write(earlier_stems / "vocals.wav", song(0.1), RATE)
    (workspace.out / "notes.txt").write_text("my notes\n")
    earlier_run = workspace.runs / "earlier" / "checkpoints"
    earlier_run.mkdir(parents=True)
    (earlier_run / "last.pt").write_bytes(b"an earlier run's checkpoint")


# -- running a command -------------------------------------------------------------------


def run_here(arguments: list[str]) -> int:
    """``sepkit <arguments>`` in this process; its exit status. Puts back what the command
    changes for the process: argv, torch threads, and the log handlers Hydra installs."""
    argv, threads = sys.argv[:], torch.get_num_threads()
    try:
        sepkit_main(arguments)
        return 0
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 1
    finally:
        sys.argv = argv
        torch.set_num_threads(threads)
        root = logging.getLogger()
        for handler in root.handlers[:]:
            if not type(handler).__module__.startswith("_pytest"):
                handler.close()
                root.removeHandler(handler)


def run_without_write_permission(arguments: list[str], read_only: Path) -> tuple[int, str, str]:
    """The real ``sepkit`` command, unable to write into ``read_only``.

    The folder's mode is 0o555; root ignores modes, so as root the process runs without the
    capabilities that let it (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), through util-linux's
    setpriv.
    """
    command = [sys.executable, "-m", "sepkit", *arguments]
    if os.geteuid() == 0:
        dropped = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--inh-caps={dropped}", f"--bounding-set={dropped}", *command]
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": "1"}
    read_only.chmod(0o555)
    try:
        result = subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=300
        )
    finally:
        read_only.chmod(0o755)
    return result.returncode, result.stdout, result.stderr


# -- hostile files ---------------------------------------------------------------------------


def wav(workspace: Workspace, name: str, audio: np.ndarray, rate: int = RATE, **options) -> Path:
    workspace.path = workspace.inputs / name
    soundfile.write(workspace.path, audio, rate, **options)
    return workspace.path


def write_bytes(workspace: Workspace, name: str, content: bytes) -> Path:
    workspace.path = workspace.inputs / name
    workspace.path.write_bytes(content)
    return workspace.path


def truncated_wav(workspace: Workspace) -> Path:
    whole = wav(workspace, "whole.wav", song(2.0), subtype="PCM_16")
    content = whole.read_bytes()
    whole.unlink()
    return write_bytes(workspace, "truncated.wav", content[: len(content) // 2])


def with_bad_sample(value: float, seconds: float, at: float) -> np.ndarray:
    audio = song(seconds)
    audio[round(at * RATE), 1] = value
    return audio


# -- hostile checkpoints -----------------------------------------------------------------


class Payload:
    """Pickles as a call that creates ``marker``: what a malicious checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def small_convtasnet() -> ConvTasNet:
    return ConvTasNet(
        MUSIC_TARGETS, sample_rate=RATE, nb_channels=2, filters=16, bottleneck_channels=8,
        skip_channels=8, hidden_channels=16, layers=2, repeats=1,
    )  # fmt: skip


def checkpoint_file(workspace: Workspace, name: str, content: dict) -> Path:
    """A checkpoint in the workspace, written with torch.save (no sepkit checks)."""
    workspace.path = workspace.inputs / name
    torch.save(content, workspace.path)
    return workspace.path


def model_entry(model) -> dict:
    return {"config": model.config, "state_dict": model.state_dict()}


def truncated_checkpoint(workspace: Workspace) -> Path:
    model = tiny_model()
    whole = checkpoint_file(workspace, "whole.pt", {"model": model_entry(model)})
    content = whole.read_bytes()
    whole.unlink()
    return write_bytes(workspace, "truncated.pt", content[: len(content) // 2])


# -- hostile datasets --------------------------------------------------------------------

STEMS = ["vocals", "drums", "bass", "other"]


def write_stem_tracks(root: Path) -> Path:
    """A folder dataset (``dataset=folder``) of three 1-second tracks in ``root``."""
    for number in range(3):
        track = root / "train" / f"track {number}"
        track.mkdir(parents=True)
        for index, stem in enumerate(STEMS):
            audio = song(1.0, seed=10 * number + index) * 0.5
            soundfile.write(track / f"{stem}.wav", audio, RATE, subtype="FLOAT")
    return root


def stem_folder(workspace: Workspace, tweak: Callable[[Path], object] | None = None) -> Path:
    """``write_stem_tracks`` in the workspace; ``tweak`` spoils the second track's folder."""
    root = write_stem_tracks(workspace.inputs / "stems")
    workspace.path = root / "train" / "track 1"
    if tweak is not None:
        tweak(workspace.path)
    return root


# A waveform model: no input statistics, so the main process reads no audio before the
# DataLoader's workers start.
TINY_CONVTASNET = [
    "model=convtasnet", "loss=waveform_l1", "model.filters=8", "model.bottleneck_channels=8",
    "model.skip_channels=null", "model.hidden_channels=8", "model.layers=1", "model.repeats=1",
]  # fmt: skip


def nan_vocals_in_every_track(track: Path) -> None:
    for folder in track.parent.iterdir():
        audio = with_bad_sample(np.nan, 1.0, 0.2)
        soundfile.write(folder / "vocals.wav", audio, RATE, subtype="FLOAT")


def train_on(root: Path, run: Path, *extra: str, model: list[str] = TINY_MODEL) -> list[str]:
    """``sepkit train`` of a tiny model for one step on the folder dataset ``root``."""
    return [
        "train", *model, *TRAINER, *ONE_STEP, "dataset=folder", f"dataset.root={root}",
        "dataset.segment=0.5", "dataset.samples_per_track=1", "dataset.valid_fraction=0.34",
        f"hydra.run.dir={run}", *extra,
    ]  # fmt: skip


def odd_but_valid_dataset(workspace: Workspace) -> Path:
    """Tracks at 8 kHz in 24 bits, at 192 kHz in float64, and with spaces and non-ASCII
    characters in their names: all must be read (resampled to the model's 44.1 kHz)."""
    root = workspace.inputs / "odd"
    layouts = {
        "8 kHz 24-bit": (8000, "PCM_24"),
        "192 kHz float64": (192000, "DOUBLE"),
        "Sigur Rós – Hoppípolla ü": (RATE, "FLOAT"),
    }
    for number, (name, (rate, subtype)) in enumerate(layouts.items()):
        (root / "train" / name).mkdir(parents=True)
        for index, stem in enumerate(STEMS):
            audio = song(0.75, rate=rate, seed=10 * number + index) * 0.5
            soundfile.write(root / "train" / name / f"{stem}.wav", audio, rate, subtype=subtype)
    workspace.path = root
    return root


def resume_copy(workspace: Workspace, spoil: Callable[[Path], object] | None = None) -> Path:
    """A copy of the trained run in the workspace (``run``), its last.pt spoilt."""
    shutil.copytree(workspace.trained, workspace.run)
    workspace.path = workspace.run / "checkpoints" / "last.pt"
    if spoil is not None:
        spoil(workspace.path)
    return workspace.run


def resume(workspace: Workspace, spoil: Callable[[Path], object] | None, *extra: str) -> list[str]:
    return ["train", f"resume={resume_copy(workspace, spoil)}", *extra]


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:2000])


def resave(path: Path, change: Callable[[dict], object]) -> None:
    content = load_checkpoint(path)
    change(content)
    torch.save(content, path)


# -- what a success wrote ------------------------------------------------------------------


def stems_like_input(workspace: Workspace, track: str | None = None) -> None:
    """Every stem at the input's rate, length and channel count, finite."""
    info = soundfile.info(workspace.path)
    folder = workspace.out / MODEL_NAME / (track or workspace.path.stem)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{t}.wav" for t in MUSIC_TARGETS)
    for target in MUSIC_TARGETS:
        stem, rate = soundfile.read(folder / f"{target}.wav", always_2d=True)
        assert (rate, stem.shape) == (info.samplerate, (info.frames, info.channels)), target
        assert np.isfinite(stem).all()


def trained_run(workspace: Workspace) -> None:
    assert (workspace.run / "checkpoints" / "best.pt").is_file()
    rows = (workspace.run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and "nan" not in rows[1]


# -- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One hostile input. ``prepare`` writes it into the workspace and returns the command
    line (``["separate", ...]``). ``error``: phrases the error line must hold, formatted
    with the workspace (``{w.path}``); empty for a row that must succeed, and ``check``
    then says what it wrote. ``own_process``: the folder the command writes into is made
    read-only and the real command runs."""

    name: str
    prepare: Callable[[Workspace], list[str]]
    error: tuple[str, ...] = ()
    check: Callable[[Workspace], None] | None = None
    own_process: bool = False

    @property
    def command(self) -> str:
        return self.name.split(":")[0]


def separate(workspace: Workspace, *inputs: Path | str, model: bool = True) -> list[str]:
    checkpoint = [f"checkpoint={workspace.model}"] if model else []
    return ["separate", *map(str, inputs), *checkpoint, f"out_dir={workspace.out}",
            "progress=false", "threads=1"]  # fmt: skip


SEPARATE_ROWS = [
    # audio files
    Row("separate: missing file",
        lambda w: separate(w, w.inputs / "nowhere.wav"),
        error=("nowhere.wav: no such file",)),
    Row("separate: empty file",
        lambda w: separate(w, write_bytes(w, "empty.wav", b"")),
        error=("{w.path}: empty file",)),
    Row("separate: truncated WAV",
        lambda w: separate(w, truncated_wav(w)),
        error=("{w.path}: truncated", "header announces 2.00 s")),
    Row("separate: text named .wav",
        lambda w: separate(w, write_bytes(w, "lyrics.wav", b"la la la, not audio\n" * 40)),
        error=("{w.path}: not audio", "ffmpeg")),
    # late: after the first blocks were separated and written to scratch files
    Row("separate: NaN sample",
        lambda w: separate(w, wav(w, "nan.wav", with_bad_sample(np.nan, 5.0, 4.0),
                                  subtype="FLOAT")),
        error=("{w.path}: holds NaN or infinite samples", "at 4.00 s")),
    Row("separate: infinite sample",
        lambda w: separate(w, wav(w, "inf.wav", with_bad_sample(np.inf, 1.0, 0.5),
                                  subtype="FLOAT")),
        error=("{w.path}: holds NaN or infinite samples", "at 0.50 s")),
    Row("separate: zero samples",
        lambda w: separate(w, wav(w, "zero.wav", np.zeros((0, 2), np.float32))),
        error=("{w.path}: no audio in the file (0 samples)",)),
    Row("separate: one sample",
        lambda w: separate(w, wav(w, "one.wav", np.full((1, 2), 0.25, np.float32))),
        check=stems_like_input),
    Row("separate: seven channels",
        lambda w: separate(w, wav(w, "seven.wav", np.tile(song(0.5), (1, 4))[:, :7])),
        error=("{w.path}: 7 channels", "downmix it first")),
    Row("separate: 8 kHz",
        lambda w: separate(w, wav(w, "low.wav", song(1.5, rate=8000), 8000)),
        check=stems_like_input),
    Row("separate: 192 kHz",
        lambda w: separate(w, wav(w, "high.wav", song(1.0, rate=192000), 192000)),
        check=stems_like_input),
    Row("separate: 24-bit",
        lambda w: separate(w, wav(w, "deep.wav", song(1.0), subtype="PCM_24")),
        check=stems_like_input),
    Row("separate: float64",
        lambda w: separate(w, wav(w, "double.wav", song(1.0).astype(np.float64),
                                  subtype="DOUBLE")),
        check=stems_like_input),
    Row("separate: spaces and non-ASCII in the name",
        lambda w: separate(w, wav(w, "Sigur Rós – Hoppípolla (ライブ).flac", song(1.0))),
        check=stems_like_input),
    Row("separate: read-only output folder",
        lambda w: separate(w, wav(w, "song.wav", song(0.5))),
        error=("{w.path}: {w.out}/tiny", "Permission denied", "out_dir="),
        own_process=True),
    # settings
    Row("separate: unknown model",
        lambda w: [*separate(w, wav(w, "song.wav", song(0.5)), model=False), "pretrained=umxx"],
        error=("pretrained=umxx: unknown model", "umxhq")),
    Row("separate: override of the wrong type",
        lambda w: [*separate(w, wav(w, "song.wav", song(0.5))), "niter=many"],
        error=("niter=many: Value 'many'", "Integer")),
    # checkpoints
    Row("separate: checkpoint of another architecture",
        lambda w: separate(w, wav(w, "song.wav", song(0.5)), model=False) + [
            "checkpoint=" + str(checkpoint_file(w, "other.pt", {"model": {
                "config": tiny_model().config, "state_dict": small_convtasnet().state_dict()}}))],
        error=("{w.path}: its weights do not fit OpenUnmixSeparator", "missing",
               "another architecture")),
    Row("separate: truncated checkpoint",
        lambda w: [*separate(w, wav(w, "song.wav", song(0.5)), model=False),
                   f"checkpoint={truncated_checkpoint(w)}"],
        error=("{w.path}: not a readable checkpoint (truncated or corrupt?)",)),
    Row("separate: empty checkpoint",
        lambda w: [*separate(w, wav(w, "song.wav", song(0.5)), model=False),
                   f"checkpoint={write_bytes(w, 'empty.pt', b'')}"],
        error=("{w.path}: empty file",)),
    Row("separate: pickled payload in a checkpoint",
        lambda w: [*separate(w, wav(w, "song.wav", song(0.5)), model=False),
                   "checkpoint=" + str(checkpoint_file(w, "payload.pt", {
                       "model": model_entry(tiny_model()), "extra": Payload(w.marker)}))],
        error=("{w.path}: refused to load", "pickled Python objects", "GLOBAL")),
    Row("separate: _target_ os.system in a checkpoint's config",
        lambda w: [*separate(w, wav(w, "song.wav", song(0.5)), model=False),
                   "checkpoint=" + str(checkpoint_file(w, "system.pt", {"model": {
                       "config": {"_target_": "os.system", "command": f"touch {w.marker}"},
                       "state_dict": {}}}))],
        error=("{w.path}: refused to build 'os.system'", "only sepkit's own classes")),
    Row("separate: os.system nested in a checkpoint's config",
        lambda w: [*separate(w, wav(w, "song.wav", song(0.5)), model=False),
                   "checkpoint=" + str(checkpoint_file(w, "nested.pt", {"model": {
                       "config": {**tiny_model().config, "targets": {
                           "_target_": "os.system", "command": f"touch {w.marker}"}},
                       "state_dict": tiny_model().state_dict()}}))],
        error=("{w.path}: refused to build 'os.system'",)),
    Row("separate: stored argument of the wrong type",
        lambda w: [*separate(w, wav(w, "song.wav", song(0.5)), model=False),
                   "checkpoint=" + str(checkpoint_file(w, "edited.pt", {"model": {
                       "config": {**tiny_model().config, "hidden_size": "big"},
                       "state_dict": tiny_model().state_dict()}}))],
        error=("{w.path}: cannot rebuild", "OpenUnmixSeparator from the stored config")),
]  # fmt: skip

TRAIN_ROWS = [
    # datasets
    Row("train: dataset track missing a stem",
        lambda w: train_on(stem_folder(w, lambda t: (t / "bass.wav").unlink()), w.run),
        error=("{w.path}: missing bass.wav",)),
    Row("train: stems of unequal length",
        lambda w: train_on(stem_folder(w, lambda t: soundfile.write(
            t / "drums.wav", song(0.6), RATE)), w.run),
        error=("{w.path}: stems of unequal lengths", "drums.wav 26460", "trim them")),
    Row("train: text named .wav in a dataset",
        lambda w: train_on(stem_folder(w, lambda t: (t / "other.wav").write_text("x" * 99)),
                           w.run),
        error=("{w.path}/other.wav: not readable as audio",)),
    Row("train: empty file in a dataset",
        lambda w: train_on(stem_folder(w, lambda t: (t / "other.wav").write_bytes(b"")), w.run),
        error=("{w.path}/other.wav: empty file",)),
    Row("train: NaN samples in a dataset",
        lambda w: train_on(stem_folder(w, lambda t: soundfile.write(
            t / "vocals.wav", with_bad_sample(np.nan, 1.0, 0.2), RATE, subtype="FLOAT")), w.run),
        error=("{w.path}/vocals.wav: NaN or infinite samples",)),
    # read first in a DataLoader worker, which sends errors back inside its traceback
    Row("train: NaN samples read in a DataLoader worker",
        lambda w: train_on(stem_folder(w, nan_vocals_in_every_track), w.run,
                           "trainer.num_workers=1", model=TINY_CONVTASNET),
        error=("/vocals.wav: NaN or infinite samples", "replace it")),
    Row("train: zero samples in a dataset",
        lambda w: train_on(stem_folder(w, lambda t: [soundfile.write(
            t / f"{s}.wav", np.zeros((0, 2), np.float32), RATE) for s in STEMS]), w.run),
        error=("{w.path}: its stems hold no audio (0 samples)",)),
    Row("train: seven channels in a dataset",
        lambda w: train_on(stem_folder(w, lambda t: soundfile.write(
            t / "bass.wav", np.zeros((RATE, 7), np.float32), RATE)), w.run),
        error=("{w.path}/bass.wav: 7 channels", "dataset.nb_channels")),
    Row("train: 8 kHz, 192 kHz, 24-bit, float64 and non-ASCII tracks",
        lambda w: train_on(odd_but_valid_dataset(w), w.run),
        check=trained_run),
    Row("train: read-only runs folder",
        lambda w: train_on(stem_folder(w), w.run),
        error=("{w.run}: Permission denied", "hydra.run.dir="),
        own_process=True),
    # settings
    Row("train: unknown model",
        lambda w: ["train", "model=umx_large", f"hydra.run.dir={w.run}"],
        error=("Could not find 'model/umx_large'", "openunmix, tasnet")),
    Row("train: override of the wrong type",
        lambda w: ["train", *TINY_TRAINING, "trainer.batch_size=two", f"hydra.run.dir={w.run}"],
        error=("trainer.batch_size=two: Value 'two'", "Integer")),
    Row("train: misspelt key",
        lambda w: ["train", *TINY_TRAINING, "trainer.epoch=3", f"hydra.run.dir={w.run}"],
        error=("trainer.epoch", "not in 'TrainerConfig'", "spelling")),
    # checkpoints, by resuming a run whose last.pt was spoilt
    Row("train: resume from a truncated checkpoint",
        lambda w: resume(w, cut_short),
        error=("{w.path}: not a readable checkpoint (truncated or corrupt?)",)),
    Row("train: resume from a checkpoint of another architecture",
        lambda w: resume(w, lambda path: resave(path, lambda content: content.update(
            model=model_entry(small_convtasnet())))),
        error=("{w.path}: its weights do not fit OpenUnmixSeparator", "missing")),
    Row("train: resume with another model size",
        lambda w: resume(w, None, "model.hidden_size=24"),
        error=("{w.path}: its weights do not fit", "of another shape",
               "drop the model overrides")),
    Row("train: resume from a checkpoint with a pickled payload",
        lambda w: resume(w, lambda path: resave(path, lambda content: content.update(
            extra=Payload(w.marker)))),
        error=("{w.path}: refused to load", "pickled Python objects")),
    Row("train: resume from a checkpoint without training state",
        lambda w: resume(w, lambda path: resave(path, lambda content: content.pop(
            "train_state"))),
        error=("{w.path}: holds no training state",)),
]  # fmt: skip


def eval_test_set(workspace: Workspace) -> Path:
    """A folder dataset whose test split holds three 1-second tracks (made once)."""
    root = workspace.inputs / "eval_stems"
    if not root.exists():
        write_stem_tracks(root)
        (root / "train").rename(root / "test")
    return root


def estimates_folder(workspace: Workspace, missing: str | None = None) -> Path:
    """Estimates of ``test_tracks`` (the references, quieter), without ``missing`` of the
    second track."""
    root = workspace.inputs / "estimates"
    for track in sorted((eval_test_set(workspace) / "test").iterdir()):
        (root / track.name).mkdir(parents=True)
        for stem in STEMS:
            if track.name == "track 1" and stem == missing:
                workspace.path = root / track.name / f"{stem}.wav"
                continue
            audio, rate = soundfile.read(track / f"{stem}.wav")
            soundfile.write(root / track.name / f"{stem}.wav", 0.9 * audio, rate)
    return root


def evaluate(workspace: Workspace, *extra: str) -> list[str]:
    return ["eval", "dataset=folder", f"dataset.root={eval_test_set(workspace)}",
            f"out_dir={workspace.root / 'evaluation'}", "progress=false", *extra]  # fmt: skip


EVAL_ROWS = [
    Row("eval: estimates folder missing",
        lambda w: evaluate(w, f"estimates={w.inputs / 'nowhere'}"),
        error=("nowhere: no such folder",)),
    Row("eval: estimates missing a stem",
        lambda w: evaluate(w, f"estimates={estimates_folder(w, missing='bass')}"),
        error=("{w.path}: missing", "dataset.targets")),
    Row("eval: override of the wrong type",
        lambda w: evaluate(w, "workers=abc"),
        error=("workers=abc", "Integer")),
    Row("eval: unknown backend",
        lambda w: evaluate(w, "backend=fastest"),
        error=("backend=fastest", "fast, museval")),
    Row("eval: checkpoint that does not exist",
        lambda w: evaluate(w, f"checkpoint={w.inputs / 'none.pt'}"),
        error=("none.pt: no such checkpoint",)),
    Row("eval: truncated checkpoint",
        lambda w: evaluate(w, f"checkpoint={truncated_checkpoint(w)}"),
        error=("{w.path}: not a readable checkpoint",)),
    Row("eval: no MUSDB18 given",
        lambda w: ["eval", f"out_dir={w.root / 'evaluation'}", "progress=false"],
        error=("no MUSDB18 folder given", "MUSDB_PATH", "dataset=toy")),
]  # fmt: skip

ROWS = SEPARATE_ROWS + TRAIN_ROWS + EVAL_ROWS


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_run(tmp_path_factory.mktemp("models") / MODEL_NAME, tiny_model())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of ``sepkit train``: the tiny model, one step, on three short tracks."""
    folder = tmp_path_factory.mktemp("trained")
    status = run_here(train_on(write_stem_tracks(folder / "stems"), folder / "run"))
    run = folder / "run"
    assert status == 0 and (run / "checkpoints" / "last.pt").is_file()
    return run


@pytest.fixture
def workspace(tmp_path: Path, model_run: Path, trained: Path) -> Workspace:
    workspace = Workspace(tmp_path / "work", model_run, trained)
    fill_workspace(workspace)
    return workspace


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_hostile_input(row: Row, workspace: Workspace, capsys: pytest.CaptureFixture):
    arguments = row.prepare(workspace)
    watched = (workspace.root, workspace.model, workspace.trained)
    before = snapshot(*watched)

    if row.own_process:
        # the folder the command makes its output in
        read_only = workspace.runs if row.command == "train" else workspace.out / MODEL_NAME
        status, stdout, stderr = run_without_write_permission(arguments, read_only)
    else:
        status = run_here(arguments)
        stdout, stderr = capsys.readouterr()

    after = snapshot(*watched)
    assert "Traceback" not in stdout + stderr, stderr
    assert not workspace.marker.exists(), "the payload ran"
    if row.error:
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr
        for phrase in row.error:
            assert phrase.format(w=workspace) in lines[0], lines[0]
        assert status == 2
        assert after == before, sorted(set(after) ^ set(before))  # nothing written or changed
    else:
        assert status == 0, stderr
        assert all(after.get(path) == content for path, content in before.items())
        assert row.check is not None
        row.check(workspace)


def test_every_command_has_hostile_rows():
    assert {"train", "separate", "eval"} <= {row.command for row in ROWS}
    assert len(ROWS) >= 20
