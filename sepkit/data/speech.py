"""Speech mixtures: wsj0-2mix / wsj0-3mix and LibriMix.

Targets are the speakers ``s1``, ``s2`` (, ``s3``); audio is mono (``nb_channels=1``). A
training item is one mixture: a random ``segment``-second excerpt at a random offset, the same
offset for every speaker (no mixing across utterances); utterances shorter than the segment
are zero-padded at the end. Each epoch visits every utterance ``samples_per_track`` times
(default once). An optional ``augmentation`` (e.g. random gains per speaker) remixes the
speakers; the mixture is always the sum of the (augmented) sources plus, in LibriMix's
``mix_both``, the noise. Validation and test items are whole utterances from the mixture files.
"""

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sepkit.data.augment import NO_AUGMENTATION, Augmentation
from sepkit.data.base import SeparationData
from sepkit.data.tracks import Track
from sepkit.errors import SepkitError


class SpeechMixtures(SeparationData):
    """Shared by the speech datasets: speakers ``s1``..``s<n_src>``, mono, one utterance per
    item. Subclasses implement ``_split_tracks`` and find their ``root`` with
    ``_layout_root``.

    Args:
        n_src: speakers per mixture, 2 or 3.
        targets: speakers to separate; None means all of s1..s<n_src>.
        segment: training excerpt length in seconds (shorter utterances are zero-padded).
        sample_rate: 8000 or 16000 Hz (selects wav8k / wav16k under a top folder).
        nb_channels: channels served (the speech sets are mono).
        samples_per_track: training items per utterance per epoch.
        augmentation: how training items are augmented (``sepkit.data.augment``; default
            none; ``{gain_min: 0.5, gain_max: 1.5}`` remixes the speakers at random gains).
        options: the rest of ``SeparationData``'s (valid_fraction, valid_segment, seed,
            cache_dir).
    """

    ordered_sources = False  # which speaker is s1 is arbitrary

    def __init__(
        self,
        *,
        n_src: int,
        targets: list[str] | None,
        segment: float = 4.0,
        sample_rate: int = 8000,
        nb_channels: int = 1,
        samples_per_track: int = 1,
        augmentation: Augmentation | Mapping[str, Any] = NO_AUGMENTATION,
        **options: Any,
    ):
        if n_src not in (2, 3):
            raise SepkitError(f"dataset.n_src={n_src} is not supported: use 2 or 3 speakers")
        self.speakers = [f"s{number}" for number in range(1, n_src + 1)]
        targets = list(targets) if targets is not None else list(self.speakers)
        unknown = [target for target in targets if target not in self.speakers]
        if unknown:
            raise SepkitError(
                f"dataset.targets: {unknown} not among the speakers {self.speakers} (n_src={n_src})"
            )
        super().__init__(
            targets=targets,
            segment=segment,
            sample_rate=sample_rate,
            nb_channels=nb_channels,
            samples_per_track=samples_per_track,
            augmentation=augmentation,
            **options,
        )
        self.n_src = n_src

    def _layout_root(
        self, root: str | None, mode: str, top: str, markers: list[str], dataset: str, hint: str
    ) -> Path:
        """The folder of ``mode`` at the dataset's rate: ``root`` itself, or under it
        ``wav8k/<mode>`` (for 8000 Hz), or ``<top>/wav8k/<mode>``; the first holding one
        of the folders ``markers``."""
        if mode not in ("min", "max"):
            raise SepkitError(f"dataset.mode={mode!r} is not a {dataset} mode: use min or max")
        if root is None:
            raise SepkitError(f"no {dataset} folder given: set dataset.root=<folder>")
        folder = Path(root).expanduser()
        rate_mode = Path(f"wav{self.sample_rate // 1000}k") / mode
        return _find_layout_root(
            folder, [folder, folder / rate_mode, folder / top / rate_mode], markers, dataset, hint
        )


def _find_layout_root(
    root: Path, candidates: list[Path], markers: list[str], dataset: str, hint: str
) -> Path:
    """The first of ``candidates`` holding one of the folders ``markers``; else a SepkitError
    listing where it looked."""
    if not root.is_dir():
        raise SepkitError(f"{dataset} folder {root} not found: set dataset.root=<folder>")
    for candidate in candidates:
        if any((candidate / marker).is_dir() for marker in markers):
            return candidate
    looked = ", ".join(str(candidate) for candidate in candidates)
    raise SepkitError(
        f"{root}: no {dataset} layout found (looked for {'/, '.join(markers)}/ in {looked}); {hint}"
    )


class WSJ0Mix(SpeechMixtures):
    """wsj0-2mix and wsj0-3mix: ``<folder>/{tr,cv,tt}/{mix,s1,s2[,s3]}/<id>.wav``.

    ``root`` may be the folder holding ``tr/``, ``cv/`` and ``tt/`` itself, or a top folder
    from which ``mode`` and ``sample_rate`` select it: ``<root>/wav8k/min``,
    ``<root>/wav16k/max``, or the generation scripts' ``<root>/2speakers/wav8k/min``
    (``3speakers`` for n_src=3). tr trains, cv validates (a seeded ``valid_fraction`` of tr is
    held out when cv is missing), tt tests. Files at another rate than ``sample_rate`` are
    resampled once into the cache.

    Args:
        root: see above.
        n_src: speakers per mixture, 2 or 3.
        mode: "min" (mixtures cut to the shorter utterance) or "max" (zero-padded).
        targets: speakers to separate; None means all of s1..s<n_src>.
        options: ``SpeechMixtures``' (segment, sample_rate, augmentation, ...).
    """

    split_folders = {"train": "tr", "valid": "cv", "test": "tt"}

    def __init__(
        self,
        root: str | None = None,
        n_src: int = 2,
        mode: str = "min",
        targets: list[str] | None = None,
        **options: Any,
    ):
        super().__init__(n_src=n_src, targets=targets, **options)
        self.root = self._layout_root(
            root,
            mode,
            top=f"{n_src}speakers",
            markers=list(self.split_folders.values()),
            dataset="wsj0-mix",
            hint="set dataset.root to the folder holding tr/, cv/ and tt/",
        )

    def _split_location(self, split: str) -> str:
        return str(self.root / self.split_folders[split])

    def _split_tracks(self, split: str) -> list[Track] | None:
        folder = self.root / self.split_folders[split]
        if split == "valid" and not folder.is_dir():
            return None
        mixtures = sorted((folder / "mix").glob("*.wav"))
        if not mixtures:
            raise SepkitError(f"{folder / 'mix'}: no mixtures found (expected mix/<id>.wav)")
        tracks = []
        for mixture in mixtures:
            stems = {speaker: folder / speaker / mixture.name for speaker in self.speakers}
            for speaker, path in stems.items():
                if not path.is_file():
                    raise SepkitError(
                        f"{folder}: {speaker}/{mixture.name} missing for mix/{mixture.name} "
                        f"(n_src={self.n_src})"
                    )
            tracks.append(self._track(mixture.stem, folder, stems, mixture))
        return tracks


class LibriMix(SpeechMixtures):
    """Libri2Mix and Libri3Mix, from their metadata CSV files.

    LibriMix's generation writes ``Libri<n>Mix/wav{8k,16k}/{min,max}/`` holding the split
    folders (train-100, train-360, dev, test) and ``metadata/mixture_<split>_<type>.csv``
    with the columns mixture_ID, mixture_path, source_1_path, source_2_path
    [, source_3_path][, noise_path], length. ``root`` may be that ``{min,max}`` folder, the
    ``Libri<n>Mix`` folder, or the folder holding ``Libri<n>Mix``; ``sample_rate`` and
    ``mode`` pick the subfolders. The CSVs store absolute paths from the machine that
    generated the set; a path that does not exist is looked up in the same place under
    ``root`` (``<split>/<subfolder>/<file name>``), so a moved dataset still loads.

    Args:
        root: see above.
        n_src: speakers per mixture, 2 or 3.
        mode: "min" or "max".
        mixture_type: "mix_clean" (speakers only) or "mix_both" (speakers and WHAM! noise;
            the noise is mixed in training but is not a target).
        train_split: "train-100" or "train-360" (or any split with a metadata file).
        valid_split, test_split: "dev" and "test".
        segment: training excerpt length in seconds.
        options: ``SpeechMixtures``' (sample_rate, augmentation, ...).
    """

    def __init__(
        self,
        root: str | None = None,
        n_src: int = 2,
        mode: str = "min",
        mixture_type: str = "mix_clean",
        train_split: str = "train-360",
        valid_split: str = "dev",
        test_split: str = "test",
        targets: list[str] | None = None,
        segment: float = 3.0,
        **options: Any,
    ):
        super().__init__(n_src=n_src, targets=targets, segment=segment, **options)
        if mixture_type not in ("mix_clean", "mix_both"):
            raise SepkitError(
                f"dataset.mixture_type={mixture_type!r} is not supported: use mix_clean or mix_both"
            )
        self.root = self._layout_root(
            root,
            mode,
            top=f"Libri{n_src}Mix",
            markers=["metadata"],
            dataset="LibriMix",
            hint=f"set dataset.root to the Libri{n_src}Mix folder",
        )
        self.mixture_type = mixture_type
        self.split_names = {"train": train_split, "valid": valid_split, "test": test_split}

    def _metadata_file(self, split: str) -> Path:
        return self.root / "metadata" / f"mixture_{self.split_names[split]}_{self.mixture_type}.csv"

    def _split_location(self, split: str) -> str:
        return str(self._metadata_file(split))

    def _split_tracks(self, split: str) -> list[Track] | None:
        metadata = self._metadata_file(split)
        if not metadata.is_file():
            if split == "valid":
                return None
            available = sorted(path.name for path in (self.root / "metadata").glob("*.csv"))
            raise SepkitError(
                f"{metadata} not found (metadata files there: {available}); check "
                "dataset.train_split / test_split / mixture_type"
            )
        with open(metadata, newline="") as file:
            rows = list(csv.DictReader(file))
        columns = {"mixture_path": self.mixture_type}
        columns.update(
            {f"source_{number}_path": f"s{number}" for number in range(1, 1 + self.n_src)}
        )
        if self.mixture_type == "mix_both":
            columns["noise_path"] = "noise"
        for column in ["mixture_ID", *columns]:
            if rows and column not in rows[0]:
                raise SepkitError(
                    f"{metadata}: no {column} column (n_src={self.n_src}, "
                    f"mixture_type={self.mixture_type})"
                )
        if not rows:
            raise SepkitError(f"{metadata}: no mixtures listed")
        split_folder = self.root / self.split_names[split]
        tracks = []
        for row in rows:
            files = {
                subfolder: self._located(row[column], split_folder / subfolder, metadata)
                for column, subfolder in columns.items()
            }
            mixture = files.pop(self.mixture_type)
            tracks.append(self._track(row["mixture_ID"], split_folder, files, mixture))
        return sorted(tracks, key=lambda track: track.name)

    @staticmethod
    def _located(listed: str, folder: Path, metadata: Path) -> Path:
        """The file a metadata row names: as listed, else by its name in ``folder``."""
        path = Path(listed)
        if path.is_file():
            return path
        moved = folder / path.name
        if moved.is_file():
            return moved
        raise SepkitError(
            f"{metadata}: {listed} not found, nor {moved}; set dataset.root to the LibriMix "
            "folder these files are in"
        )
