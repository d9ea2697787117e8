"""Reference packages that cannot share the venv, imported from their own folders.

`make install` puts demucs 4.1.0 in `.refs/demucs4` and audio-separator 0.47.1 (with what its
roformer modules import) in `.refs/audio_separator`. The venv holds demucs 2.0.3 under the same
top-level name `demucs`, so a reference is imported with its folder first on `sys.path` and the
clashing modules swapped out, then the clashing names are put back: the returned module objects
keep working, and the v2 parity tests in the same worker still see demucs 2.0.3. Packages the
venv lacks (einops, librosa, ...) stay imported and the folder stays at the end of `sys.path`,
because they import their own submodules lazily.
"""

import contextlib
import importlib
import sys
import types
from pathlib import Path

REFS = Path(__file__).resolve().parent.parent / ".refs"


@contextlib.contextmanager
def reference_folder(folder: str, *top_level: str):
    """Import from `.refs/<folder>` inside the block; `top_level` names the packages it owns."""
    path = REFS / folder
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is missing: `make install` creates it")

    def owned(name: str) -> bool:
        return any(name == top or name.startswith(top + ".") for top in top_level)

    saved = {name: module for name, module in sys.modules.items() if owned(name)}
    clashing = {name.split(".")[0] for name in saved}
    for name in saved:
        del sys.modules[name]
    if str(path) in sys.path:
        sys.path.remove(str(path))
    sys.path.insert(0, str(path))
    try:
        yield
    finally:
        sys.path.remove(str(path))
        sys.path.append(str(path))
        for name in [name for name in sys.modules if name.split(".")[0] in clashing]:
            del sys.modules[name]
        sys.modules.update(saved)


def demucs4(*modules: str) -> list[types.ModuleType]:
    """demucs 4.1.0's modules, e.g. `demucs4("htdemucs", "apply")`."""
    with reference_folder("demucs4", "demucs", "einops"):
        return [importlib.import_module(f"demucs.{name}") for name in modules]


def audio_separator_roformer(*modules: str) -> list[types.ModuleType]:
    """audio-separator 0.47.1's roformer modules, e.g. `("bs_roformer", "mel_band_roformer")`.

    The package's `__init__` imports its whole separator stack (onnxruntime, pydub, ...), so the
    parent packages are registered as bare namespaces and only the roformer modules and
    `device_utils` run.
    """
    parents = [
        "audio_separator",
        "audio_separator.separator",
        "audio_separator.separator.uvr_lib_v5",
    ]
    tops = ("audio_separator", "einops", "beartype", "rotary_embedding_torch", "librosa")
    with reference_folder("audio_separator", *tops):
        for name in parents:
            package = types.ModuleType(name)
            package.__path__ = [str(REFS / "audio_separator" / name.replace(".", "/"))]
            sys.modules[name] = package
        return [
            importlib.import_module(f"audio_separator.separator.uvr_lib_v5.roformer.{name}")
            for name in modules
        ]
