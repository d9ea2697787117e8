"""Published models by name (``pretrained=umxhq``), and Open-Unmix model folders on disk.

``hub``: the torch hub cache that weights are downloaded to and read from. One module per
family: ``open_unmix`` (umxhq, umx, umxl and Open-Unmix model folders), ``demucs`` (demucs
2.0.3's demucs and tasnet models), ``demucs4`` (demucs 4.1.0's htdemucs, htdemucs_ft,
htdemucs_6s, hdemucs_mmi, read by ``unpickle``'s allowlisting unpickler). ``msst``: the
band-split RoFormer checkpoints of the Music-Source-Separation-Training project, with their
YAML. ``registry``: ``PRETRAINED``, every published model by name, ``load_pretrained``, the
one lookup, and ``load_trained`` for checkpoints on disk. A new family is a module here and a
line in ``registry.PRETRAINED``.

Imported on first use, so that importing one of them does not import all.
"""

from sepkit._exports import lazy_exports

_MODULES = {
    "DEMUCS": "demucs",
    "OPEN_UNMIX": "open_unmix",
    "PRETRAINED": "registry",
    "PretrainedModel": "registry",
    "hub_cache_path": "hub",
    "is_open_unmix_folder": "open_unmix",
    "load_hub_state_dict": "hub",
    "load_open_unmix": "open_unmix",
    "load_open_unmix_folder": "open_unmix",
    "load_pretrained": "registry",
    "load_msst": "msst",
    "load_pretrained_demucs": "demucs",
    "load_trained": "registry",
    "load_published_weights": "hub",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _MODULES)
