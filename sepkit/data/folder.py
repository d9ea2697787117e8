"""Any folder of stems: ``<root>/<split>/<track>/<stem>.<wav|flac>``."""

from pathlib import Path
from typing import Any

from sepkit.data.base import SeparationData
from sepkit.data.tracks import AUDIO_EXTENSIONS, Track, find_stem_file
from sepkit.errors import SepkitError


class FolderData(SeparationData):
    """Tracks stored as one audio file per stem, one folder per track, one folder per split.

    Each track folder holds ``<target>.wav`` (or ``.flac``) for every target, optionally
    ``mixture.wav``, and any other stems of the mixture (every other audio file in the folder
    counts as a non-target stem: training mixes it in). Without a mixture file the mixture is
    the sum of all stems. Every track of a split must have the same stems. Files are checked
    and converted as in ``sepkit.data.tracks`` (mono duplicated, other rates resampled into the
    cache, unequal lengths refused).

    Args:
        root: the folder holding the split folders.
        targets: the stems the model separates.
        train_split, valid_split, test_split: split folder names under ``root``. Without a
            ``valid_split`` folder a seeded ``valid_fraction`` of the training tracks is held
            out.
        options: ``SeparationData``'s (segment, sample_rate, augmentation, ...), with its
            defaults: Open-Unmix's.
    """

    def __init__(
        self,
        root: str | None = None,
        targets: list[str] = ["vocals", "drums", "bass", "other"],  # noqa: B006 (copied)
        train_split: str = "train",
        valid_split: str = "valid",
        test_split: str = "test",
        **options: Any,
    ):
        super().__init__(targets=targets, **options)
        if root is None:
            raise SepkitError("no dataset folder given: set dataset.root=<folder>")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise SepkitError(
                f"dataset folder {self.root} not found: set dataset.root=<folder holding "
                f"{train_split}/ and {test_split}/>"
            )
        self.split_folders = {"train": train_split, "valid": valid_split, "test": test_split}

    def _split_location(self, split: str) -> str:
        return str(self.root / self.split_folders[split])

    def _split_tracks(self, split: str) -> list[Track] | None:
        folder = self.root / self.split_folders[split]
        if split == "valid" and not folder.is_dir():
            return None
        return self._tracks_in(folder)

    def _tracks_in(self, split_folder: Path) -> list[Track]:
        if not split_folder.is_dir():
            raise SepkitError(
                f"{split_folder} not found: create it or name the split folders with "
                "dataset.train_split / valid_split / test_split"
            )
        folders = sorted(
            path for path in split_folder.iterdir() if path.is_dir() and path.name[0] != "."
        )
        if not folders:
            raise SepkitError(f"{split_folder}: no track folders (expected <track>/<stem>.wav)")
        return [self._checked(folder) for folder in folders]

    def _checked(self, folder: Path) -> Track:
        stems = {
            path.stem: path
            for path in sorted(folder.iterdir())
            if path.suffix.lower() in AUDIO_EXTENSIONS and path.stem != "mixture"
        }
        for target in self.targets:
            if target not in stems:
                raise SepkitError(
                    f"{folder}: missing {target}.wav or {target}.flac "
                    f"(dataset.targets={self.targets})"
                )
        mixture = find_stem_file(folder, "mixture")
        return self._track(folder.name, folder, stems, mixture)
