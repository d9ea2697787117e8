"""`sepkit separate` and `sepkit eval` with a community band-split RoFormer checkpoint in the
Music-Source-Separation-Training layout: `checkpoint=<file>.ckpt config=<file>.yaml`, or the
YAML beside the checkpoint."""

from __future__ import annotations

import numpy as np
import soundfile

from tests.conftest import TINY_TOY, run_sepkit
from tests.test_msst import BS_YAML, MEL_YAML, _write_checkpoint


def test_separate_and_eval_take_an_msst_checkpoint_and_its_yaml(tmp_path):
    _, checkpoint = _write_checkpoint(tmp_path, "bs", ["vocals"])
    config = tmp_path / "config_vocals_bs_roformer.yaml"
    config.write_text(BS_YAML)
    song = tmp_path / "song.wav"
    audio = 0.1 * np.random.default_rng(0).standard_normal((3 * 44100 + 7, 2))
    soundfile.write(song, audio.astype("float32"), 44100)

    out = tmp_path / "separated"
    run_sepkit("separate", str(song), f"checkpoint={checkpoint}", f"config={config}",
               f"out_dir={out}", check=True)  # fmt: skip
    stem, rate = soundfile.read(out / "model_bs" / "song" / "vocals.wav")
    assert rate == 44100 and stem.shape == audio.shape
    assert sorted(p.name for p in (out / "model_bs" / "song").iterdir()) == ["vocals.wav"]

    # BSSEval scores two targets or more together: a two-stem Mel-RoFormer on the toy set
    _, two_stems = _write_checkpoint(tmp_path, "mel", ["vocals", "other"])
    two_stems.with_suffix(".yaml").write_text(MEL_YAML)
    report = tmp_path / "eval"
    result = run_sepkit("eval", f"checkpoint={two_stems}", "dataset=toy",
                        "dataset.targets=[vocals,other]", *TINY_TOY, f"out_dir={report}",
                        check=True)  # fmt: skip
    rows = [line for line in result.stdout.splitlines() if line.startswith("| vocals")]
    assert rows and "model_mel" in rows[0], result.stdout


def test_the_yaml_beside_the_checkpoint_is_found_and_config_alone_is_refused(tmp_path):
    _, checkpoint = _write_checkpoint(tmp_path, "bs", ["vocals"])
    song = tmp_path / "song.wav"
    soundfile.write(song, np.zeros((44100, 2), dtype="float32"), 44100)
    out = tmp_path / "separated"

    missing = run_sepkit("separate", str(song), f"checkpoint={checkpoint}", f"out_dir={out}")
    assert missing.returncode != 0 and "config=<file>.yaml" in missing.stderr, missing.stderr
    assert not out.exists()

    checkpoint.with_suffix(".yaml").write_text(BS_YAML)
    run_sepkit("separate", str(song), f"checkpoint={checkpoint}", f"out_dir={out}", check=True)
    assert (out / "model_bs" / "song" / "vocals.wav").is_file()

    alone = run_sepkit("separate", str(song), f"config={checkpoint.with_suffix('.yaml')}",
                       f"out_dir={tmp_path / 'other'}")  # fmt: skip
    assert alone.returncode == 2 and "give the checkpoint too" in alone.stderr, alone.stderr


def test_a_vocals_model_is_scored_beside_its_accompaniment_as_museval_does(tmp_path):
    # most shared RoFormers separate vocals alone: BSSEval needs two targets, and museval's
    # eval_mus_track scores vocals with the accompaniment; its estimate is the residual
    _, checkpoint = _write_checkpoint(tmp_path, "bs", ["vocals"])
    checkpoint.with_suffix(".yaml").write_text(BS_YAML)
    report = tmp_path / "eval"
    result = run_sepkit("eval", f"checkpoint={checkpoint}", "dataset=toy", *TINY_TOY,
                        f"out_dir={report}", "baseline=false", check=True)  # fmt: skip
    rows = [line.split("|")[1].strip() for line in result.stdout.splitlines()
            if line.startswith("| ") and "model_bs" in line]  # fmt: skip
    assert rows == ["vocals", "accompaniment"], result.stdout
    assert "can be scored" not in result.stderr
