"""``python -m sepkit``: the same as the ``sepkit`` command (torchrun uses this form)."""

from sepkit.cli import run

run()
