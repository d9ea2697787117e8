"""Deep clustering (Hershey et al., ICASSP 2016; Isik et al., Interspeech 2016).

A recurrent network maps every time-frequency bin of the mixture to a unit-norm embedding,
trained (``loss=deep_clustering``) so that bins dominated by the same source point the same
way. The network never outputs masks: separation clusters the embeddings of the loud bins
with k-means (one cluster per source) and gives every bin a soft or binary membership of
each cluster, which masks the mixture. Which cluster is which speaker is arbitrary, as in
any speaker separation; evaluation resolves the order.

Named stems (music) need clusters that know their stem. Trained on them, the model also
learns one anchor per target, pulled towards the embeddings of the bins that target
dominates (the loss's anchor term), and separates by each bin's membership of the anchors
instead of k-means: the fixed attractor points of the deep attractor network (Chen, Luo and
Mesgarani, ICASSP 2017), so cluster i is target i.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sepkit.blocks.embedding import BinEmbedding, flatten_bins
from sepkit.blocks.kmeans import cluster_memberships, kmeans
from sepkit.blocks.trunk import RecurrentTrunk
from sepkit.models.base import InferenceOptions, SpectrogramModel

MASK_TYPES = ("soft", "binary")


class ClusteringMasks(torch.nn.Module):
    """Masks from bin embeddings by k-means.

    The bins whose mixture magnitude is at or above the ``percentile``-th percentile of
    their example (nussl clusters the loudest bins: percentile 90) seed and fit the
    centroids; every bin then gets its membership of each cluster: ``soft``
    (softmax(-``beta`` x distance)) or ``binary`` (nearest centroid). k-means runs
    ``iterations`` times at most from ``init`` (``kmeans++`` drawn with ``seed``, or the
    deterministic ``farthest``).
    """

    def __init__(
        self,
        nb_sources: int,
        mask_type: str = "soft",
        beta: float = 5.0,
        percentile: float = 90.0,
        iterations: int = 30,
        init: str = "kmeans++",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type={mask_type!r}: use one of {list(MASK_TYPES)}")
        if not 0.0 <= percentile < 100.0:
            raise ValueError(f"cluster percentile={percentile}: use a value in [0, 100)")
        self.nb_sources = nb_sources
        self.mask_type = mask_type
        self.beta = beta
        self.percentile = percentile
        self.iterations = iterations
        self.init = init
        self.seed = seed

    def forward(
        self, embeddings: Tensor, magnitude: Tensor, anchors: Tensor | None = None
    ) -> Tensor:
        """embeddings (batch, channels * bins * frames, dim) and the mixture magnitude
        (batch, channels, bins, frames) -> masks (batch, sources, channels, bins, frames).
        With ``anchors`` (batch, sources, dim) the memberships are of the anchors, in their
        order, and no k-means runs."""
        if anchors is None:
            anchors = self._centroids(embeddings, magnitude)
        memberships = cluster_memberships(
            embeddings, anchors, soft=self.mask_type == "soft", beta=self.beta
        )  # (batch, channels * bins * frames, sources)
        return memberships.transpose(1, 2).reshape(
            magnitude.shape[0], self.nb_sources, *magnitude.shape[1:]
        )

    def _centroids(self, embeddings: Tensor, magnitude: Tensor) -> Tensor:
        """(batch, sources, dim) k-means centroids of the loud bins' embeddings."""
        loudness = magnitude.flatten(1).float()
        threshold = torch.quantile(loudness, self.percentile / 100.0, dim=1, keepdim=True)
        loud = (loudness >= threshold).float()
        centroids, _ = kmeans(
            embeddings,
            self.nb_sources,
            weights=loud,
            iterations=self.iterations,
            init=self.init,
            seed=self.seed,
        )
        return centroids


class DeepClustering(SpectrogramModel):
    """BLSTM embeddings of time-frequency bins, separated by k-means.

    The trunk and STFT are those of ``MaskInference`` (defaults: 8 kHz, 32/8 ms sqrt-Hann,
    4 x 600 BLSTM, dropout 0.3); the head gives ``embedding_dim`` (20) values per bin,
    through ``embedding_activation`` (``sigmoid`` as nussl, ``tanh`` or ``none``), unit
    normalised. ``forward`` returns ``embeddings`` (batch, channels * freq * frames, dim)
    and the ``mixture_spectrogram``, and on named stems the ``anchors`` (batch, sources,
    dim), one learned point per target. Separation options (``mask_type``, ``beta``,
    ``cluster_percentile``, ``kmeans_iterations``, ``kmeans_init``, ``kmeans_seed``) are
    those of ``ClusteringMasks``.
    """

    outputs = ("embeddings", "mixture_spectrogram")  # and ``anchors`` on named stems

    @property
    def ordered_outputs(self) -> bool:
        """k-means numbers its clusters arbitrarily; the anchors name them."""
        return bool(self.named_clusters)

    def fit_sources(self, ordered: bool) -> None:
        """On named stems train and separate with the anchors; on speakers with k-means.
        Kept in the weights (``named_clusters``), so a checkpoint separates as it trained."""
        self.named_clusters.fill_(ordered)
        # unused on speakers: no gradient, so DistributedDataParallel does not wait for one
        self.anchors.requires_grad_(ordered)

    @property
    def training_segment(self) -> float:
        """Seconds of a training item where the dataset sets no segment (the music sets):
        400 frames (3.2 s at 8 kHz), as deep clustering's later recipes (Isik et al. 2016)."""
        return 400 * self.stft.hop_length / self.sample_rate

    def __init__(
        self,
        targets: list[str],
        sample_rate: int = 8000,
        nb_channels: int = 1,
        n_fft: int = 256,
        hop_length: int = 64,
        window: str = "sqrt_hann",
        hidden_size: int = 600,
        nb_layers: int = 4,
        bidirectional: bool = True,
        dropout: float = 0.3,
        log_kind: str = "db",
        embedding_dim: int = 20,
        embedding_activation: str = "sigmoid",
        mask_type: str = "soft",
        beta: float = 5.0,
        cluster_percentile: float = 90.0,
        kmeans_iterations: int = 30,
        kmeans_init: str = "kmeans++",
        kmeans_seed: int = 0,
    ) -> None:
        super().__init__(targets, sample_rate, nb_channels, n_fft, hop_length, window)
        nb_bins = self.stft.nb_bins
        self.trunk = RecurrentTrunk(
            nb_channels, nb_bins, hidden_size, nb_layers, bidirectional, dropout, log_kind
        )
        self.embedding = BinEmbedding(
            self.trunk.output_size, nb_channels * nb_bins, embedding_dim, embedding_activation
        )
        self.clustering = ClusteringMasks(
            len(self.targets),
            mask_type,
            beta,
            cluster_percentile,
            kmeans_iterations,
            kmeans_init,
            kmeans_seed,
        )
        # trained only on named stems (fit_sources)
        self.anchors = torch.nn.Parameter(
            torch.zeros(len(self.targets), embedding_dim), requires_grad=False
        )
        self.register_buffer("named_clusters", torch.tensor(False))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # checkpoints from before the anchors existed trained on speakers: k-means, no anchors
        state_dict.setdefault(prefix + "anchors", torch.zeros_like(self.anchors))
        state_dict.setdefault(prefix + "named_clusters", torch.tensor(False))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def estimate(self, mixture_spectrogram: Tensor) -> dict[str, Tensor]:
        """The embeddings only: masks come from clustering at separation time."""
        features = self.trunk(mixture_spectrogram.abs())  # (batch, frames, features)
        embeddings = self.embedding(features)  # (batch, frames, channels * bins, dim)
        outputs = {"embeddings": flatten_bins(embeddings, self.nb_channels)}
        if self.named_clusters:
            outputs["anchors"] = self.anchors.expand(len(features), -1, -1)
        return outputs

    def separation_magnitudes(
        self, mixture_spectrogram: Tensor, options: InferenceOptions
    ) -> Tensor:
        magnitude = mixture_spectrogram.abs()
        outputs = self.estimate(mixture_spectrogram)
        masks = self.clustering(outputs["embeddings"], magnitude, outputs.get("anchors"))
        return masks * magnitude.unsqueeze(1)
