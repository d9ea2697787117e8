"""``sepkit separate`` and ``sepkit.Separator``: files in, stems out, for any input a user has.

Models are small real sepkit models saved as ``sepkit train`` saves them; audio is generated.
Most command-line tests call ``sepkit.cli.main`` in this process (the same code the
``sepkit`` command runs, without starting an interpreter each time); one batch runs the
real command.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from sepkit import Separator
from sepkit.cli import main
from sepkit.separate import SegmentedSeparation, fade_weights, model_name
from tests.conftest import run_sepkit
from tests.helpers import MUSIC_TARGETS, RATE, save_run, song, tiny_model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return save_run(tmp_path_factory.mktemp("runs") / "my-run", tiny_model())


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: a second thread costs more than it saves, much more on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def separate(*arguments: str) -> int:
    """``sepkit separate ...`` in this process; its exit status."""
    try:
        main(["separate", *arguments, "progress=false"])
    except SystemExit as exit:
        return int(exit.code or 0)
    return 0


def read(path: Path) -> tuple[np.ndarray, int]:
    return soundfile.read(path, dtype="float32", always_2d=True)


# -- the segment machinery ---------------------------------------------------------------


@pytest.mark.parametrize("overlap", [0, 1, 250, 500])
@pytest.mark.parametrize("block", [13, 777, 5321])
def test_segments_cross_fade_back_to_the_input(overlap: int, block: int):
    """With a 'model' returning its input (and twice it), the overlap-added output is the
    input: the fades sum to one and every sample comes out once, in order."""
    audio = torch.randn(2, 5321)
    segments = SegmentedSeparation(lambda x: torch.stack([x, 2 * x]), 1000, overlap)
    out = []
    for start in range(0, audio.shape[-1], block):
        out += segments.push(audio[:, start : start + block])
    out += segments.finish()
    stems = torch.cat(out, dim=-1)
    assert stems.shape == (2, 2, 5321)
    torch.testing.assert_close(stems[0], audio, rtol=0, atol=1e-6)
    torch.testing.assert_close(stems[1], 2 * audio, rtol=0, atol=1e-6)


def test_fades_of_neighbouring_segments_sum_to_one():
    out_of_first = fade_weights(1000, 0, 250)[-250:]
    into_second = fade_weights(1000, 250, 250)[:250]
    torch.testing.assert_close(out_of_first + into_second, torch.ones(250))
    assert (out_of_first > 0).all() and (into_second > 0).all()


def test_input_of_one_segment_is_separated_whole_as_the_model_does():
    model = tiny_model()
    audio = torch.from_numpy(song(3.0).T.copy())
    stems = Separator(model, device="cpu", segment=5.0).separate(audio, RATE)
    expected = model.separate(audio[None])[0]
    for index, target in enumerate(MUSIC_TARGETS):
        assert torch.equal(stems[target], expected[index])


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_long_input_is_separated_in_segments_of_the_chosen_length(overlap: float):
    """3.7 s in segments of 1 s: full segments, then the rest; overlaps as asked."""
    model = tiny_model()
    lengths = []
    separate_whole = model.separate

    def separate_recording_length(mixture, options=None):
        lengths.append(mixture.shape[-1])
        return separate_whole(mixture, options)

    model.separate = separate_recording_length
    audio = torch.from_numpy(song(3.7).T.copy())

    stems = Separator(model, device="cpu", segment=1.0, overlap=overlap).separate(audio, RATE)

    overlap_length = round(overlap * RATE)
    assert lengths[:-1] == [RATE] * (len(lengths) - 1)
    assert sum(lengths) - (len(lengths) - 1) * overlap_length == audio.shape[-1]
    assert all(stem.shape == audio.shape for stem in stems.values())
    assert all(torch.isfinite(stem).all() for stem in stems.values())


def test_reading_a_file_in_blocks_gives_what_the_array_gives(run_dir: Path, tmp_path: Path):
    """Streaming from disk (blocks of 3 s, segments of 1 s, resampled from 32 kHz) gives
    exactly the in-memory result: segment boundaries depend only on the position."""
    audio = song(7.3, rate=32000)
    soundfile.write(tmp_path / "long.wav", audio, 32000, subtype="FLOAT")
    arguments = [f"checkpoint={run_dir}", "segment=1.0", "subtype=FLOAT"]
    assert separate(str(tmp_path / "long.wav"), f"out_dir={tmp_path / 'out'}", *arguments) == 0

    separator = Separator.from_checkpoint(run_dir, segment=1.0, device="cpu")
    expected = separator.separate(audio.T, 32000)
    for target in MUSIC_TARGETS:
        stem, rate = read(tmp_path / "out" / "my-run" / "long" / f"{target}.wav")
        assert rate == 32000 and stem.shape == audio.shape
        np.testing.assert_allclose(stem.T, expected[target].numpy(), rtol=0, atol=1e-6)


# -- the Python API ------------------------------------------------------------------------


def test_api_separates_arrays_of_any_shape_rate_and_type(run_dir: Path):
    separator = Separator.from_checkpoint(run_dir / "checkpoints" / "best.pt", device="cpu")
    assert separator.stems == MUSIC_TARGETS

    mono = song(2.0, channels=1)[:, 0]
    stems = separator.separate(mono, RATE)  # numpy (time,)
    assert list(stems) == MUSIC_TARGETS
    assert all(s.shape == mono.shape and s.dtype == torch.float32 for s in stems.values())

    stereo = torch.from_numpy(song(2.0, rate=22050).T.copy())
    stems = separator.separate(stereo, 22050)
    assert all(s.shape == stereo.shape for s in stems.values())


def test_api_two_stems_are_a_target_and_the_sum_of_the_others(run_dir: Path):
    audio = torch.from_numpy(song(2.0).T.copy())
    every = Separator.from_checkpoint(run_dir, device="cpu").separate(audio, RATE)
    separator = Separator.from_checkpoint(run_dir, two_stems="vocals", device="cpu")

    stems = separator.separate(audio, RATE)

    assert list(stems) == ["vocals", "no_vocals"]
    assert torch.equal(stems["vocals"], every["vocals"])
    others = every["drums"] + every["bass"] + every["other"]
    torch.testing.assert_close(stems["no_vocals"], others, atol=1e-6, rtol=0)


def test_api_rejects_nan_and_unknown_stems(run_dir: Path):
    separator = Separator.from_checkpoint(run_dir, device="cpu")
    audio = np.zeros((2, 1000), dtype=np.float32)
    audio[1, 500] = np.nan
    with pytest.raises(Exception, match="NaN"):
        separator.separate(audio, RATE)
    with pytest.raises(Exception, match="choose among the model's stems"):
        Separator.from_checkpoint(run_dir, targets=["piano"], device="cpu")


# -- the command line: what gets written -----------------------------------------------------


def test_stems_line_up_with_the_input(run_dir: Path, tmp_path: Path):
    """Mono in, mono out; 22.05 kHz in, 22.05 kHz out; same length, sample for sample."""
    soundfile.write(tmp_path / "mono.wav", song(2.5, channels=1), RATE)
    soundfile.write(tmp_path / "low.wav", song(2.5, rate=22050), 22050, subtype="PCM_24")
    out = tmp_path / "out"

    assert separate(str(tmp_path / "mono.wav"), str(tmp_path / "low.wav"),
                    f"checkpoint={run_dir}", f"out_dir={out}") == 0  # fmt: skip

    for track, rate, shape in [("mono", RATE, (110250, 1)), ("low", 22050, (55125, 2))]:
        for target in MUSIC_TARGETS:
            path = out / "my-run" / track / f"{target}.wav"
            assert soundfile.info(path).subtype == "PCM_16"
            stem, stem_rate = read(path)
            assert (stem_rate, stem.shape) == (rate, shape)
            assert np.abs(stem).max() > 0


def test_flac_ogg_and_mp3_inputs(run_dir: Path, tmp_path: Path):
    audio = song(2.0)
    inputs = {"a": tmp_path / "a.flac", "b": tmp_path / "b.ogg", "c": tmp_path / "c.mp3"}
    soundfile.write(inputs["a"], audio, RATE)
    soundfile.write(inputs["b"], audio, RATE, format="OGG", subtype="VORBIS")
    soundfile.write(inputs["c"], audio, RATE, format="MP3", subtype="MPEG_LAYER_III")
    out = tmp_path / "out"

    status = separate(*map(str, inputs.values()), f"checkpoint={run_dir}", f"out_dir={out}",
                      "format=flac")  # fmt: skip

    assert status == 0
    for track, path in inputs.items():
        frames = soundfile.info(path).frames
        for target in MUSIC_TARGETS:
            info = soundfile.info(out / "my-run" / track / f"{target}.flac")
            assert (info.format, info.samplerate, info.frames) == ("FLAC", RATE, frames)


def test_folders_are_walked_and_musdb_tracks_named_after_their_folder(run_dir, tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "test" / "Song A").mkdir(parents=True)
    soundfile.write(data / "one.wav", song(1.0), RATE)
    soundfile.write(data / "sub" / "two.flac", song(1.0), RATE)
    for name in ("mixture", "vocals", "drums"):  # MUSDB18-HQ: only the mixture is separated
        soundfile.write(data / "test" / "Song A" / f"{name}.wav", song(1.0), RATE)
    (data / "notes.txt").write_text("not audio, not walked")
    out = data / "separated"  # inside the walked folder: never walked itself

    assert separate(str(data), f"checkpoint={run_dir}", f"out_dir={out}", "name=m") == 0
    assert separate(str(data), f"checkpoint={run_dir}", f"out_dir={out}", "name=m") == 0

    tracks = sorted(str(p.parent.relative_to(out / "m")) for p in out.rglob("vocals.wav"))
    assert tracks == ["one", "sub/two", "test/Song A"]


def test_two_stems_residual_and_targets_choose_the_files(run_dir: Path, tmp_path: Path):
    soundfile.write(tmp_path / "s.wav", song(1.0), RATE)
    common = [str(tmp_path / "s.wav"), f"checkpoint={run_dir}"]

    assert separate(*common, f"out_dir={tmp_path / 'a'}", "two_stems=vocals") == 0
    assert separate(*common, f"out_dir={tmp_path / 'b'}", "residual=true") == 0
    assert separate(*common, f"out_dir={tmp_path / 'c'}", "targets=[bass,vocals]") == 0

    def names(out: str) -> list[str]:
        return sorted(p.name for p in (tmp_path / out / "my-run" / "s").iterdir())

    assert names("a") == ["no_vocals.wav", "vocals.wav"]
    assert names("b") == sorted(f"{t}.wav" for t in [*MUSIC_TARGETS, "residual"])
    assert names("c") == ["bass.wav", "vocals.wav"]


def test_existing_stems_are_kept_unless_overwrite(run_dir: Path, tmp_path: Path, capsys):
    soundfile.write(tmp_path / "s.wav", song(1.0), RATE)
    arguments = [str(tmp_path / "s.wav"), f"checkpoint={run_dir}", f"out_dir={tmp_path}"]
    vocals = tmp_path / "my-run" / "s" / "vocals.wav"
    vocals.parent.mkdir(parents=True)
    vocals.write_bytes(b"my own edit")

    assert separate(*arguments) == 0
    assert vocals.read_bytes() == b"my own edit"
    assert not (vocals.parent / "drums.wav").exists()  # the track is skipped as a whole
    assert "overwrite=true" in capsys.readouterr().err

    assert separate(*arguments, "overwrite=true") == 0
    assert soundfile.info(vocals).frames == RATE
    assert sorted(p.name for p in vocals.parent.iterdir()) == sorted(
        f"{t}.wav" for t in MUSIC_TARGETS
    )


@pytest.mark.parametrize("clip,message", [("rescale", "scaled by"), ("clamp", "clamped")])
def test_loud_stems_are_rescaled_or_clamped_with_a_warning(
    run_dir: Path, tmp_path: Path, capsys, clip: str, message: str
):
    soundfile.write(tmp_path / "loud.wav", 6 * song(1.0), RATE, subtype="FLOAT")
    common = [str(tmp_path / "loud.wav"), f"checkpoint={run_dir}", "two_stems=drums"]
    assert separate(*common, f"out_dir={tmp_path / 'float'}", "subtype=FLOAT") == 0
    assert "warning" not in capsys.readouterr().err  # FLOAT keeps every value

    assert separate(*common, f"out_dir={tmp_path / 'pcm'}", f"clip={clip}") == 0

    assert message in capsys.readouterr().err
    names = ("drums", "no_drums")
    exact = [read(tmp_path / "float" / "my-run" / "loud" / f"{n}.wav")[0] for n in names]
    pcm = [read(tmp_path / "pcm" / "my-run" / "loud" / f"{n}.wav")[0] for n in names]
    peak = max(np.abs(stem).max() for stem in exact)
    assert peak > 1
    for written, stem in zip(pcm, exact):
        # rescale: every stem by the same factor, so they still add up to a scaled mixture
        expected = stem / peak if clip == "rescale" else np.clip(stem, -1, 1)
        np.testing.assert_allclose(written, expected, rtol=0, atol=2 / 32768)


def test_mono_model_separates_each_channel_of_a_stereo_file(tmp_path: Path):
    run = save_run(tmp_path / "speech", tiny_model(["s1", "s2"], sample_rate=8000, nb_channels=1))
    soundfile.write(tmp_path / "talk.wav", song(1.5, rate=16000), 16000)

    assert separate(str(tmp_path / "talk.wav"), f"checkpoint={run}", f"out_dir={tmp_path}") == 0

    for speaker in ("s1", "s2"):
        stem, rate = read(tmp_path / "speech" / "talk" / f"{speaker}.wav")
        assert (rate, stem.shape) == (16000, (24000, 2))


# -- the command line: errors --------------------------------------------------------------
# Each bad file alone, an unknown model and a value of the wrong type (one error line, exit
# 2, nothing written) are rows of tests/test_hostile_inputs.py; here, bad files among good
# ones and the other settings.


def _bad_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase its error must hold)."""
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.wav"
    empty.write_bytes(b"")
    text = folder / "text.wav"
    text.write_text("these are my lyrics, not audio\n" * 20)
    full = folder / "full.wav"
    soundfile.write(full, song(2.0), RATE, subtype="PCM_16")
    truncated = folder / "truncated.wav"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    nan = folder / "nan.wav"
    audio = song(5.0)
    audio[4 * RATE, 1] = np.nan  # late, after the first blocks were separated and written
    soundfile.write(nan, audio, RATE, subtype="FLOAT")
    silent = folder / "zero.wav"
    soundfile.write(silent, np.zeros((0, 2), np.float32), RATE)
    return {
        "missing": (folder / "missing.wav", "no such file"),
        "empty": (empty, "empty file"),
        "text": (text, "not audio"),
        "truncated": (truncated, "truncated"),
        "nan": (nan, "NaN"),
        "zero": (silent, "0 samples"),
    }


def test_one_bad_file_in_a_batch_does_not_stop_the_others(run_dir: Path, tmp_path: Path):
    """The real command: the good files are separated, every bad one has its error line,
    and the exit status says something failed."""
    bad = _bad_inputs(tmp_path / "in")
    good = [tmp_path / "in" / "good1.wav", tmp_path / "in" / "good2.wav"]
    for path in good:
        soundfile.write(path, song(1.0), RATE)
    out = tmp_path / "out"
    inputs = [str(good[0]), *(str(path) for path, _ in bad.values()), str(good[1])]

    result = run_sepkit("separate", *inputs, f"checkpoint={run_dir}", f"out_dir={out}", "threads=1")

    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(bad)
    for path, phrase in bad.values():
        assert any(str(path) in line and phrase in line for line in errors), path
    assert sorted(p.name for p in (out / "my-run").iterdir()) == ["good1", "good2"]
    for folder in (out / "my-run").iterdir():
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{t}.wav" for t in MUSIC_TARGETS)


@pytest.mark.parametrize(
    "override,phrase",
    [
        ("nitr=2", "nitr"),
        ("format=mp3", "format"),
        ("format=flac subtype=FLOAT", "subtype=FLOAT"),
        ("checkpoint=/no/such/run", "/no/such/run"),
        ("two_stems=piano", "piano"),
        ("device=tpu", "device"),
    ],
)
def test_bad_settings_fail_before_anything_is_written(
    run_dir: Path, tmp_path: Path, capsys, override: str, phrase: str
):
    soundfile.write(tmp_path / "s.wav", song(0.5), RATE)
    model = [] if override.startswith(("pretrained", "checkpoint")) else [f"checkpoint={run_dir}"]

    status = separate(str(tmp_path / "s.wav"), *model, *override.split(), f"out_dir={tmp_path}/o")

    assert status != 0
    assert phrase in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_help_lists_the_keys(capsys):
    assert separate("--help") == 0
    usage = capsys.readouterr().out
    assert usage.startswith("usage: sepkit separate")
    for key in ("checkpoint", "pretrained", "two_stems", "segment", "overwrite", "subtype"):
        assert key in usage


def test_stems_folder_is_named_after_the_model_or_its_run(tmp_path: Path):
    from omegaconf import OmegaConf

    run = save_run(tmp_path / "runs" / "2026-11-22" / "10-00-00", tiny_model())
    named = save_run(tmp_path / "runs" / "vocals-big", tiny_model())

    def name(**keys) -> str:
        return model_name(OmegaConf.create({"name": None, "checkpoint": None, "pretrained": None,
                                            **keys}))  # fmt: skip

    assert name() == "htdemucs"
    assert name(pretrained="umxl") == "umxl"
    assert name(checkpoint=str(run)) == "2026-11-22_10-00-00"
    assert name(checkpoint=str(run / "checkpoints" / "best.pt")) == "2026-11-22_10-00-00"
    assert name(checkpoint=str(named)) == "vocals-big"
    assert name(checkpoint=str(run), name="mine") == "mine"
