"""``sepkit train | separate | eval [overrides]``: the three commands' command lines.

Each is a thin layer over its package (``sepkit.train``, ``sepkit.separate``,
``sepkit.evaluate``): ``train`` and ``eval`` are Hydra applications (multirun ``-m``,
``--cfg job``, ``--help``, shell completion); ``separate`` composes ``separate.yaml`` with
the same override syntax and takes audio files and folders as plain arguments. A problem
the user can fix is one line ``error: ...`` and exit status 2. The packages are imported
when a command runs, so ``sepkit --help`` and shell completion start without torch.
"""

from __future__ import annotations

import datetime
import errno
import functools
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sepkit import __version__

USAGE = """\
usage: sepkit <command> [key=value ...]

commands:
  train      train a model (Hydra app: sepkit train --help lists the config groups)
  separate   write one audio file per stem: sepkit separate song.wav [key=value ...]
  eval       BSSEval v4 / SI-SDR of a model or of stems on disk (Hydra app)
  completion print a bash completion script: eval "$(sepkit completion bash)"

Examples:
  sepkit train model=openunmix dataset=musdb dataset.root=~/data/musdb18
  sepkit separate song.wav checkpoint=runs/2026-01-01/12-00-00
  sepkit eval checkpoint=runs/2026-01-01/12-00-00/checkpoints/best.pt

Configs and options: README.md, or `sepkit train --cfg job` to see one resolved.
"""

BASH_COMPLETION = """\
_sepkit_complete() {
    local word="${COMP_WORDS[COMP_CWORD]}"
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "train separate eval completion" -- "$word"))
        return
    fi
    local command="${COMP_WORDS[1]}"
    case "$command" in
        train|eval)
            local choices
            choices=$(COMP_LINE="$COMP_LINE" COMP_POINT="$COMP_POINT" \\
                sepkit "$command" -sc query=bash 2>/dev/null)
            local words=($COMP_LINE)
            local last="${words[${#words[@]}-1]}"
            [[ "$COMP_LINE" == *" " ]] && last=""
            COMPREPLY=($(compgen -o nospace -W "$choices" -- "$last"))
            ;;
        *) COMPREPLY=() ;;
    esac
}
complete -o nospace -o default -F _sepkit_complete sepkit
"""


def _run_started() -> datetime.datetime:
    """When this run started, the same in every process of a torchrun job.

    Hydra names run directories by time; ranks that start a second apart would each make
    their own. Rank 0 publishes its start time in torchrun's rendezvous store and the
    other ranks read it from there.
    """
    now = datetime.datetime.now()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "MASTER_ADDR" not in os.environ:
        return now
    from torch.distributed import PrefixStore, TCPStore

    store = TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        is_master=False,
        timeout=datetime.timedelta(seconds=300),
    )
    prefix = f"sepkit/{os.environ.get('TORCHELASTIC_RUN_ID', 'run')}/"
    store = PrefixStore(prefix, store)
    if int(os.environ.get("RANK", "0")) == 0:
        store.set("started", now.isoformat())
    return datetime.datetime.fromisoformat(store.get("started").decode())


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    started = _run_started()
    OmegaConf.register_new_resolver(
        "run_started", lambda pattern: started.strftime(pattern), replace=True
    )


def _resume_arguments(arguments: list[str]) -> list[str]:
    """``resume=<run dir>``: replay that run's overrides, then the new ones, into the same
    directory."""
    resume = [a for a in arguments if a.startswith("resume=")]
    if not resume:
        return arguments
    run_dir = Path(resume[-1].split("=", 1)[1]).expanduser()
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    if not overrides_file.is_file():
        _fail(f"resume={run_dir}: not a sepkit run directory (no .hydra/overrides.yaml)")
    import yaml

    global _resumed_run
    _resumed_run = _RunSnapshot(run_dir)
    original = [o for o in yaml.safe_load(overrides_file.read_text()) or []]
    given_keys = {a.split("=", 1)[0].lstrip("+~") for a in arguments if "=" in a}
    kept = [
        o
        for o in original
        if o.split("=", 1)[0].lstrip("+~") not in given_keys | {"resume", "hydra.run.dir"}
    ]
    given = [a for a in arguments if not a.startswith("resume=")]
    return [*kept, *given, f"resume={run_dir.resolve()}", f"hydra.run.dir={run_dir}"]


class _RunSnapshot:
    """A resumed run directory's Hydra files as they were before Hydra rewrote them with
    the new overrides, and its last checkpoint's size and time: a resume that fails before
    saving a checkpoint puts the files back, so that the next ``resume=`` replays the
    settings the run was trained with, not the ones that failed."""

    def __init__(self, run_dir: Path) -> None:
        self.hydra_files = {
            path: path.read_bytes() for path in (run_dir / ".hydra").glob("*") if path.is_file()
        }
        self.last = self._stat(run_dir / "checkpoints" / "last.pt")
        self.run_dir = run_dir

    @staticmethod
    def _stat(path: Path) -> tuple[int, int] | None:
        return (path.stat().st_size, path.stat().st_mtime_ns) if path.is_file() else None

    def restore(self) -> None:
        if self._stat(self.run_dir / "checkpoints" / "last.pt") != self.last:
            return  # the resumed run got on: its checkpoint goes with the new settings
        from sepkit.files import atomic_path

        for path, content in self.hydra_files.items():
            if not path.is_file() or path.read_bytes() != content:
                with atomic_path(path) as temporary:
                    temporary.write_bytes(content)


_resumed_run: _RunSnapshot | None = None


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _remove_partial_run(run_dir: Path, job_name: str) -> None:
    """Remove what Hydra wrote into a run directory for a run that failed before writing
    anything of its own, so bad input leaves nothing behind."""
    if (run_dir / "checkpoints").exists():
        return
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)  # opened before epoch 1
    (run_dir / f"{job_name}.log").unlink(missing_ok=True)
    # up to runs/ of runs/<date>/<time> (train) and of runs/eval/<date>/<time> (eval)
    for folder in (run_dir, *run_dir.parents[:3]):
        try:
            folder.rmdir()  # only when empty
        except OSError:
            break


def _report_user_errors(task: Callable[[], object], clean_up: Callable[[], None]) -> object:
    """Run ``task``; a problem the user can fix is printed as one line (exit status 2)
    after ``clean_up`` has undone what the failed run wrote."""
    from hydra.errors import InstantiationException

    from sepkit.errors import Interrupted, SepkitError

    try:
        return task()
    except Interrupted as interrupted:
        print(f"stopped: {interrupted}", file=sys.stderr)
        raise SystemExit(interrupted.exit_code) from None
    except (SepkitError, InstantiationException, FileNotFoundError) as error:
        cause = error
        if isinstance(error, InstantiationException) and isinstance(
            error.__cause__, SepkitError | ValueError | TypeError | FileNotFoundError
        ):
            cause = error.__cause__
        clean_up()
        _fail(_one_line(str(cause)))
    return None


def _describe_os_error(error: OSError, fix: str, errors: tuple[int, ...]) -> str:
    """An OSError as ``<file>: <reason>``, with ``fix`` when its errno is one of ``errors``
    (what the user can change: permissions, a full disk)."""
    where = f"{error.filename}: " if error.filename else ""
    message = f"{where}{error.strerror or error}"
    if error.errno in errors:
        message += f" ({fix})"
    return message


NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _one_line(message: str) -> str:
    """A user error's message on one line. An error raised in a DataLoader worker comes
    back wrapped in the worker's traceback: its own message is the traceback's last line."""
    if "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        message = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(message.split())


def _hydra_app(config_name: str, task: Callable, arguments: Sequence[str], program: str) -> None:
    """Run ``task`` as a Hydra application, with Hydra's errors (a bad override, a run
    directory that cannot be made) as one line and exit status 2."""
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from sepkit.config import COMMAND_GROUPS, config_dir, describe_config_error, register_schemas

    register_schemas(COMMAND_GROUPS[config_name])
    _register_resolvers()
    sys.argv = [program, *arguments]
    application = hydra.main(
        config_path=str(config_dir()), config_name=config_name, version_base="1.3"
    )(task)
    if os.environ.get("HYDRA_FULL_ERROR"):  # the user asked for Hydra's own report
        application()
        return
    # Hydra reports an exception over several lines and exits with status 1; this makes it
    # pass the exception on instead, so that it is reported here in one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        application()
    except (HydraException, OmegaConfBaseException) as error:
        _fail(describe_config_error(error))
    except OSError as error:  # the run directory cannot be made: read-only, disk full
        fix = "check the folder's permissions, or write elsewhere with hydra.run.dir=..."
        _fail(_describe_os_error(error, fix, NOT_WRITABLE))
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)


def train_task(cfg) -> None:  # noqa: ANN001  (Hydra passes a DictConfig)
    from hydra.core.hydra_config import HydraConfig

    from sepkit.train import run_training

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.resume and _resumed_run is not None:
        clean_up = _resumed_run.restore
    else:
        clean_up = functools.partial(_remove_partial_run, run_dir, "train")
    _report_user_errors(lambda: run_training(cfg, run_dir), clean_up)


def eval_task(cfg) -> None:  # noqa: ANN001
    from hydra.core.hydra_config import HydraConfig

    from sepkit.evaluate import run_evaluation

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    # bad input leaves no folder behind, unless it holds an earlier evaluation
    if (run_dir / "results.csv").exists():
        clean_up = lambda: None  # noqa: E731
    else:
        clean_up = functools.partial(_remove_partial_run, run_dir, "eval")
    _report_user_errors(lambda: run_evaluation(cfg, run_dir), clean_up)


# -- sepkit separate ----------------------------------------------------------------------

SEPARATE_USAGE = """\
usage: sepkit separate FILE|FOLDER ... [key=value ...]

Writes <out_dir>/<name>/<track>/<stem>.<format> for every audio file given or found in
the folders given, at the input's sample rate, length and channel count.

  sepkit separate song.mp3                          htdemucs: separated/htdemucs/song/<stem>.wav
  sepkit separate a.wav b.flac pretrained=umxhq     another published model
  sepkit separate musdb18/test checkpoint=runs/2026-01-01/12-00-00 format=flac
  sepkit separate song.wav two_stems=vocals         vocals.wav and no_vocals.wav
  sepkit separate song.wav checkpoint=model.ckpt config=model.yaml
                                                    a community band-split RoFormer (MSST)

keys (configs/separate.yaml): checkpoint, config, pretrained, name, out_dir, targets,
two_stems, residual, niter, softmask, wiener_win_len, segment, overlap, shifts, seed, device,
amp, threads, progress, format, subtype, clip, overwrite
"""
# what the user can change when stems cannot be written: permissions, a full disk
STEMS_NOT_WRITTEN = (*NOT_WRITABLE, errno.ENOSPC, errno.EDQUOT)


def _split_arguments(arguments: Sequence[str]) -> tuple[list[str], list[str]]:
    """Inputs (no ``=``, or an existing path) and Hydra overrides (``key=value``)."""
    inputs, overrides = [], []
    for argument in arguments:
        if "=" in argument and not Path(argument).expanduser().exists():
            overrides.append(argument)
        else:
            inputs.append(argument)
    return inputs, overrides


def _compose_separate_config(overrides: Sequence[str]) -> Any:
    """configs/separate.yaml with ``overrides``, checked against ``SeparateConfig``; a bad
    override is one error line."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from sepkit.config import COMMAND_GROUPS, config_dir, describe_config_error, register_schemas

    register_schemas(COMMAND_GROUPS["separate"])
    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            return compose("separate", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        _fail(describe_config_error(error))


def separate_command(arguments: Sequence[str]) -> None:
    """``sepkit separate FILE|FOLDER ... [key=value ...]``: every input separated, a bad
    one reported on its own line without stopping the others; exit status 2 if any failed."""
    import torch

    from sepkit.errors import SepkitError
    from sepkit.separate import (
        check_output_settings,
        find_inputs,
        model_name,
        separator_from_config,
    )

    if not arguments or any(a in ("-h", "--help") for a in arguments):
        print(SEPARATE_USAGE, end="")
        return
    inputs, overrides = _split_arguments(arguments)
    cfg = _compose_separate_config(overrides)
    if not inputs:
        _fail("no input: sepkit separate FILE|FOLDER ... [key=value ...]")
    found = find_inputs(inputs, skip=Path(cfg.out_dir).expanduser())
    if all(error is not None for _, _, error in found):
        for _, _, error in found:
            print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2)
    try:
        check_output_settings(cfg.format.name, cfg.subtype.name, cfg.clip.name)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        separator = separator_from_config(
            cfg,
            targets=list(cfg.targets) if cfg.targets is not None else None,
            two_stems=cfg.two_stems,
            residual=cfg.residual,
        )
    except SepkitError as error:
        _fail(str(error))
    out_dir = Path(cfg.out_dir).expanduser() / model_name(cfg)
    failed = False
    for file, track, error in found:
        if error is not None:
            print(f"error: {error}", file=sys.stderr)
            failed = True
        elif not _separate_track(separator, cfg, file, out_dir, track):
            failed = True
    if failed:
        raise SystemExit(2)


def _separate_track(separator: Any, cfg: Any, file: Path, out_dir: Path, track: str) -> bool:
    """``file``'s stems into ``<out_dir>/<track>/``; False when it failed (its error is
    printed), True when written or skipped because its stems exist."""
    import soundfile

    from sepkit.errors import SepkitError
    from sepkit.separate import StemsExist

    try:
        written = separator.separate_file(
            file,
            out_dir,
            track=track,
            format=cfg.format.name,
            subtype=cfg.subtype.name,
            clip=cfg.clip.name,
            overwrite=cfg.overwrite,
            progress=cfg.progress,
        )
    except StemsExist as skipped:
        print(f"{file}: {skipped}", file=sys.stderr)
        return True
    except SepkitError as failure:
        print(f"error: {failure}", file=sys.stderr)
        return False
    except (OSError, soundfile.LibsndfileError) as failure:  # disk full, no permission
        message = str(failure)
        if isinstance(failure, OSError) and failure.filename:
            fix = "write the stems elsewhere with out_dir=<folder>"
            message = _describe_os_error(failure, fix, STEMS_NOT_WRITTEN)
        print(f"error: {file}: {message}", file=sys.stderr)
        return False
    folder = next(iter(written.values())).parent
    print(f"{file} -> {folder}/ ({', '.join(p.name for p in written.values())})")
    return True


# -- the dispatcher --------------------------------------------------------------------------


def _adjust_completion_line(command: str) -> None:
    """Hydra's completion strips the program name from COMP_LINE; drop the command word
    too so ``sepkit train model=<TAB>`` completes like ``app.py model=<TAB>``."""
    line = os.environ.get("COMP_LINE")
    if line is None:
        return
    words = line.split(" ")
    if len(words) > 1 and words[1] == command:
        os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]])
        if "COMP_POINT" in os.environ:
            point = int(os.environ["COMP_POINT"]) - len(command) - 1
            os.environ["COMP_POINT"] = str(max(point, 0))


def run() -> None:
    """The ``sepkit`` program (console script, ``python -m sepkit``)."""
    main()


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return
    if arguments[0] == "--version":
        print(f"sepkit {__version__}")
        return
    command, rest = arguments[0], arguments[1:]
    global _resumed_run
    _resumed_run = None
    if command == "train":
        if any(a in ("-sc", "--shell-completion") for a in rest):
            _adjust_completion_line(command)
        _hydra_app("train", train_task, _resume_arguments(rest), "sepkit-train")
    elif command == "eval":
        if any(a in ("-sc", "--shell-completion") for a in rest):
            _adjust_completion_line(command)
        _hydra_app("eval", eval_task, rest, "sepkit-eval")
    elif command == "separate":
        separate_command(rest)
    elif command == "completion":
        if rest != ["bash"]:
            _fail("usage: sepkit completion bash")
        print(BASH_COMPLETION, end="")
    else:
        _fail(f"unknown command {command!r}: use train, separate or eval (sepkit --help)")


if __name__ == "__main__":
    run()
