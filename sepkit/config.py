"""Typed Hydra schemas for sepkit's configs.

Every option of a config group (``configs/<group>/<name>.yaml``) that builds an object
with ``_target_`` starts its defaults list with ``/schema/<group>/<ClassName>@_here_``.
That schema is a dataclass derived here from the target's constructor signature, so a
wrong type (``optimizer.lr=abc``) or a misspelt key fails while Hydra composes the config,
before any run directory exists. Plain settings (trainer, separation, evaluation) have
hand-written dataclasses below.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import textwrap
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.config_store import ConfigStore
from hydra.utils import get_object
from omegaconf import MISSING

CONFIG_GROUPS_WITH_TARGETS = ("model", "loss", "dataset", "optimizer", "scheduler")


def config_dir() -> Path:
    """The folder of sepkit's YAML configs: ``sepkit.configs`` in an installed wheel,
    the repository's ``configs/`` when running from a source checkout."""
    try:
        import sepkit.configs as package

        return Path(next(iter(package.__path__)))
    except ImportError:
        return Path(__file__).resolve().parent.parent / "configs"


@dataclass
class EMAConfig:
    """An exponential moving average of the weights (``trainer.ema.*``)."""

    # averaged = decay * averaged + (1 - decay) * weights after every step (e.g. 0.999);
    # null: no average
    decay: float | None = None
    use_for_validation: bool = True  # validation and best.pt's weights are the average


@dataclass
class TrainerConfig:
    """How training runs (``trainer.*``)."""

    epochs: int = 1000  # at most; early stopping (patience) usually ends a run first
    batch_size: int = 16
    steps_per_epoch: int | None = None  # null: a whole pass over the training set
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    amp: bool = (
        False  # sepkit.devices.autocast_dtype: float16 (+ GradScaler) on CUDA/MPS, else bfloat16
    )
    seed: int = 42
    num_workers: int = 0
    grad_clip: float | None = None  # max global gradient norm; null: no clipping
    patience: int | None = 140  # epochs without a better validation loss before stopping
    threads: int | None = None  # torch CPU threads; null: torch's default
    statistics_tracks: int | None = None  # tracks used for input statistics; null: all
    progress: bool = True  # a tqdm bar per epoch when stderr is a terminal
    max_nonfinite_steps: int = 10  # NaN/inf losses in a row (each skipped) before stopping
    # wall-clock budget of this invocation ("90s", "10m", "2h", "1h30m" or seconds): stop
    # after the step that reaches it, position saved in last.pt for resume=; null: none
    max_time: str | None = None
    # gradient accumulation: batches per optimizer step (steps_per_epoch counts optimizer
    # steps, each of accumulate * batch_size items)
    accumulate: int = 1
    # an exponential moving average of the weights, in checkpoints (train state) and resumed;
    # off until trainer.ema.decay is set
    ema: EMAConfig = field(default_factory=EMAConfig)


@dataclass
class TrainConfig:
    defaults: list[Any] = field(default_factory=list)
    model: Any = MISSING
    loss: Any = MISSING
    dataset: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    resume: str | None = None
    # fine-tuning: start from these weights (a checkpoint of sepkit train, its run directory,
    # or a published model's name such as htdemucs); the config must build its architecture
    init: str | None = None
    freeze: list[str] = field(default_factory=list)  # parameter name patterns kept fixed


class AudioFormat(enum.Enum):
    wav = "WAV"
    flac = "FLAC"


class AudioSubtype(enum.Enum):
    PCM_16 = "PCM_16"
    PCM_24 = "PCM_24"
    FLOAT = "FLOAT"


class ClipMode(enum.Enum):
    rescale = "rescale"  # scale all stems of a track by one factor so the peak fits
    clamp = "clamp"  # cut what exceeds full scale


@dataclass
class SeparationSettings:
    """Which model separates and how: the keys ``sepkit separate`` and ``sepkit eval`` share.

    Neither ``checkpoint`` nor ``pretrained`` given: ``pretrained=htdemucs``.
    """

    # a checkpoint file of sepkit train or its run directory; or a Music-Source-Separation-
    # Training checkpoint (<file>.ckpt, a band-split RoFormer) with its YAML beside it or in
    # config=<file>.yaml
    checkpoint: str | None = None
    config: str | None = None
    # htdemucs (default), htdemucs_ft, htdemucs_6s, hdemucs_mmi (demucs 4.1.0), umxhq, umx,
    # umxl (Open-Unmix), demucs, demucs_extra, demucs48_hq, tasnet, tasnet_extra (demucs
    # 2.0.3), or an Open-Unmix model folder
    pretrained: str | None = None
    name: str | None = None  # what the output calls the model; null: its pretrained or run name
    # spectrogram models: Open-Unmix's multichannel Wiener filter
    niter: int = 1  # expectation-maximisation iterations; 0: mixture phase only
    softmask: bool = False  # start from ratio masks instead of magnitudes
    wiener_win_len: int | None = 300  # frames filtered together; null: a whole segment at once
    # long inputs: overlapping segments, cross-faded
    segment: float | None = None  # seconds; null: the model's own default
    overlap: float | None = None  # share of a segment cross-faded with the next, at most 0.5
    shifts: int = 0  # Demucs's shift trick: average of this many randomly shifted passes
    seed: int = 0  # random shifts are drawn from this seed, per file
    # where and how it runs
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    amp: bool = False  # mixed precision (sepkit.devices.autocast_dtype)
    threads: int | None = None  # torch CPU threads; null: torch's default
    progress: bool = True  # a progress bar (per file; over the tracks in eval)


@dataclass
class SeparateConfig(SeparationSettings):
    """``sepkit separate``: which model, how to separate, how to write the stems
    (``<out_dir>/<name>/<track>/<stem>.<format>``, at the input's rate, length, channels)."""

    defaults: list[Any] = field(default_factory=list)
    out_dir: str = "separated"
    targets: list[str] | None = None  # a subset of the model's stems to write; null: all
    two_stems: str | None = None  # e.g. vocals: write vocals and no_vocals (the others' sum)
    residual: bool = False  # add a stem "residual": what the targets leave of the mixture
    format: AudioFormat = AudioFormat.wav
    subtype: AudioSubtype = AudioSubtype.PCM_16  # PCM_16, PCM_24 or FLOAT (wav only)
    clip: ClipMode = ClipMode.rescale  # integer subtypes: what to do with full-scale overs
    overwrite: bool = False  # false: a track whose stems exist is skipped


class EvalBackend(enum.Enum):
    fast = "fast"  # sepkit.metrics.bss_eval_v4 (torch)
    museval = "museval"  # museval.evaluate itself


class EvalMetrics(enum.Enum):
    auto = "auto"  # speech: for speech mixture datasets (speakers unordered), else bsseval
    bsseval = "bsseval"  # BSSEval v4 per window (museval), SI-SDR and SDR per track
    speech = "speech"  # SI-SDR(i), SDR(i) per utterance under the best speaker permutation


@dataclass
class EvalConfig(SeparationSettings):
    """``sepkit eval``: what to score (a model, or stems on disk), against which test set,
    how, and where the reports go (configs/eval.yaml names the files)."""

    defaults: list[Any] = field(default_factory=list)
    dataset: Any = MISSING
    # a folder of stems already separated: <dir>/<track>/<target>.wav (sepkit separate's
    # layout) or <dir>/test/<track>/<target>.wav (museval's)
    estimates: str | None = None
    # sigsep's oracle estimates from the true stems instead of a model: irm1, irm2 (ideal
    # ratio masks of magnitudes, of power), ibm (ideal binary mask) or mixture
    oracle: str | None = None
    # the oracle also estimates musdb's accompaniment, and vocals is scored against it as
    # museval scores sigsep's published oracles; false: vocals among the four stems, as a
    # four-stem model's vocals are scored (the ceiling to hold such a model against)
    oracle_accompaniment: bool = True
    tracks: list[str] | None = None  # test tracks to score, e.g. ["Song A"]; null: all
    out_dir: str = "runs/eval"
    overwrite: bool = False  # false: refuse an out_dir that already holds an evaluation
    metrics: EvalMetrics = EvalMetrics.auto
    backend: EvalBackend = EvalBackend.fast
    window: float = 1.0  # BSSEval window, seconds (museval, SiSEC 2018: 1.0)
    hop: float = 1.0  # BSSEval hop, seconds (museval, SiSEC 2018: 1.0)
    baseline: bool = True  # also score the mixture as the estimate of every target
    compare: list[str] = field(default_factory=list)  # earlier eval folders to put beside
    workers: int = 1  # tracks scored in parallel processes (one thread each); 1: here
    save_estimates: bool = False  # keep the stems in <out_dir>/estimates/test/<track>/


_SIMPLE_TYPES = (int, float, str, bool)


def _annotation_is_supported(annotation: Any) -> bool:
    """True when OmegaConf can validate values against ``annotation``."""
    if annotation in _SIMPLE_TYPES or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in arguments if a is not type(None)]
        return len(rest) == 1 and _annotation_is_supported(rest[0])
    if origin in (list, typing.List):  # noqa: UP006
        return len(arguments) == 1 and arguments[0] in (*_SIMPLE_TYPES, Any)
    if origin in (dict, typing.Dict):  # noqa: UP006
        return len(arguments) == 2 and arguments[0] is str
    return False


def _annotation_from_default(annotation: Any, default: Any) -> Any:
    """A type OmegaConf can check for a parameter whose annotation it cannot: a list for a
    sequence of one simple type (``Sequence[int]``, ``tuple[int, ...]``), the widest simple
    type in a union (``float | Tensor`` -> float), else the default's type."""
    origin = typing.get_origin(annotation)
    arguments = [a for a in typing.get_args(annotation) if a is not Ellipsis]
    if origin in (tuple, Sequence) and len(set(arguments)) == 1:
        if arguments[0] in _SIMPLE_TYPES:
            return list[arguments[0]]
    members = (
        set(typing.get_args(annotation)) if origin in (typing.Union, types.UnionType) else set()
    )
    for kind in (float, int, str, bool):
        if kind in members:
            return kind
    if isinstance(default, bool):
        return bool
    if isinstance(default, int | float):
        return float if isinstance(default, float) else int
    if isinstance(default, str):
        return str
    if isinstance(default, list | tuple) and default:
        kinds = {type(x) for x in default}
        if len(kinds) == 1 and next(iter(kinds)) in _SIMPLE_TYPES:
            return list[next(iter(kinds))]
    return Any


def _settings_schema(settings: Any) -> type:
    """A schema for a parameter whose default is a dataclass of settings (a dataset's
    ``augmentation``): one typed field per field of its class, defaulting to ``settings``'
    values, so the config takes it as a nested node (``dataset.augmentation.shift=1.0``)."""
    hints = typing.get_type_hints(type(settings))
    fields = [
        (item.name, hints[item.name], field(default=getattr(settings, item.name)))
        for item in dataclasses.fields(settings)
    ]
    return dataclasses.make_dataclass(type(settings).__name__ + "Schema", fields)


def _hints(function: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:
        return {}


def _set_for_base(constructor: Any) -> set[str]:
    """The keyword arguments ``constructor`` gives its ``super().__init__`` call itself."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(constructor)))
    for node in ast.walk(tree):
        call = node.func if isinstance(node, ast.Call) else None
        if (
            isinstance(call, ast.Attribute)
            and call.attr == "__init__"
            and isinstance(call.value, ast.Call)
            and getattr(call.value.func, "id", None) == "super"
        ):
            return {keyword.arg for keyword in node.keywords if keyword.arg is not None}
    return set()


def configurable_parameters(obj: Any) -> list[tuple[inspect.Parameter, dict[str, Any]]]:
    """The arguments a config may give ``obj`` (a class or function), each with the type
    hints of the function that declares it.

    A sepkit class whose constructor ends in ``**options``, passed on to its base class,
    takes the base's arguments too (and so on up), except those it names itself or sets in
    its ``super().__init__`` call: ``ToyMUSDB`` offers ``MUSDBData``'s arguments but
    ``is_wav``, which it sets.
    """
    if not inspect.isclass(obj):
        hints = _hints(obj)
        return [(parameter, hints) for parameter in inspect.signature(obj).parameters.values()]
    found: dict[str, tuple[inspect.Parameter, dict[str, Any]]] = {}
    excluded: set[str] = set()
    for cls in obj.__mro__:
        constructor = vars(cls).get("__init__")
        if constructor is None:
            continue
        hints = _hints(constructor)
        parameters = list(inspect.signature(constructor).parameters.values())
        for parameter in parameters:
            if parameter.name not in found and parameter.name not in excluded:
                found[parameter.name] = (parameter, hints)
        forwards = any(parameter.kind == parameter.VAR_KEYWORD for parameter in parameters)
        if not (forwards and cls.__module__.startswith("sepkit.")):
            break
        excluded |= _set_for_base(constructor) - set(found)
    return list(found.values())


def schema_from_signature(target: str) -> type:
    """A dataclass with ``_target_``, ``_partial_`` and one typed field per constructor
    argument of ``target`` (a dotted path to a class or function; see
    ``configurable_parameters``)."""
    fields: list[tuple[str, Any, Any]] = [
        ("_target_", str, field(default=target)),
        ("_partial_", bool, field(default=False)),
    ]
    for parameter, hints in configurable_parameters(get_object(target)):
        name = parameter.name
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name in ("params", "optimizer"):  # given by the trainer, not by the config
            continue
        default = parameter.default
        annotation = hints.get(name, Any)
        if not _annotation_is_supported(annotation):
            annotation = _annotation_from_default(annotation, default)
        if dataclasses.is_dataclass(default) and not isinstance(default, type):
            nested = _settings_schema(default)
            fields.append((name, nested, field(default_factory=nested)))
        elif default is parameter.empty:
            fields.append((name, annotation, field(default=MISSING)))
        elif isinstance(default, list | tuple):
            fields.append((name, annotation, field(default_factory=lambda d=default: list(d))))
        elif isinstance(default, dict):
            fields.append((name, annotation, field(default_factory=lambda d=default: dict(d))))
        else:
            fields.append((name, annotation, field(default=default)))
    class_name = target.rsplit(".", 1)[-1] + "Schema"
    return dataclasses.make_dataclass(class_name, fields)


def _targets_in_group(group: str) -> dict[str, str]:
    """Class name -> dotted target, for each YAML option of a group that has a target."""
    found: dict[str, str] = {}
    for path in sorted((config_dir() / group).glob("*.yaml")):
        content = yaml.safe_load(path.read_text()) or {}
        if isinstance(content, dict) and "_target_" not in content:
            content = content.get(group)  # a `# @package _global_` option (a model's loss)
        target = content.get("_target_") if isinstance(content, dict) else None
        if target:
            found[target.rsplit(".", 1)[-1]] = target
    return found


# the groups of typed options each command composes (eval and separate load a model from a
# checkpoint, not from the model group)
COMMAND_GROUPS: dict[str, tuple[str, ...]] = {
    "train": CONFIG_GROUPS_WITH_TARGETS,
    "eval": ("dataset",),
    "separate": (),
}
_registered: set[str] = set()


def register_schemas(groups: Sequence[str] = CONFIG_GROUPS_WITH_TARGETS) -> None:
    """Put the commands' schemas, and those of the options of ``groups``, in Hydra's
    ConfigStore (once per process). A group's schemas are typed from its classes'
    signatures, which imports them: only the groups a command composes are registered
    (importing every model costs each command a second)."""
    store = ConfigStore.instance()
    if "commands" not in _registered:
        store.store(name="train_schema", node=TrainConfig)
        store.store(name="separate_schema", node=SeparateConfig)
        store.store(name="eval_schema", node=EvalConfig)
        _registered.add("commands")
    for group in groups:
        if group in _registered:
            continue
        for class_name, target in _targets_in_group(group).items():
            schema = schema_from_signature(target)
            store.store(group=f"schema/{group}", name=class_name, node=schema)
        _registered.add(group)


def describe_config_error(error: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line composition errors as one line.

    ``Error merging override niter=many`` + ``Value 'many' ... could not be converted to
    Integer`` becomes ``niter=many: Value 'many' ... Integer``; lists of available options
    are joined with commas; OmegaConf's ``full_key:``/``object_type=`` details and Hydra's
    config search path are left out.
    """
    lines: list[str] = []
    for line in str(error).splitlines():
        if line.startswith("Config search path"):
            break
        if line.startswith("\t") and lines:  # an item of "Available options in 'model':"
            separator = " " if lines[-1].endswith(":") else ", "
            lines[-1] += separator + line.strip()
        elif line.strip():
            lines.append(line.strip())
    first, rest = (lines[0], lines[1:]) if lines else (type(error).__name__, [])
    first = first.removeprefix("Error merging override ").rstrip(".")
    override = getattr(error, "override", None)  # OverrideParseException
    if override:
        first = f"{override}: {first}"
    cause = error.__cause__
    if cause is not None and str(cause).strip():
        first = f"{first}: {str(cause).strip().splitlines()[0]}"
    rest = [
        "check the key's spelling (a new key needs +key=value)"
        if line.startswith("To append to your config use")
        else line
        for line in rest
    ]
    return "; ".join([first, *rest])
