"""Building blocks shared by the models: STFT, normalisation, recurrent and convolutional
stacks, masks, embeddings, filterbanks, Wiener filtering.

Imported on first use, so that importing one of them does not import all."""

from sepkit._exports import lazy_exports

_MODULES = {
    "BLSTMBottleneck": "strided_conv",
    "BandSplit": "band_split",
    "BinEmbedding": "embedding",
    "ChannelLayerNorm": "layer_norm",
    "ChunkedBLSTM": "dconv",
    "CrossTransformerEncoder": "cross_transformer",
    "CumulativeLayerNorm": "layer_norm",
    "DConv": "dconv",
    "DownsamplingBlock": "unet1d",
    "FeatureBatchNorm": "normalization",
    "FrequencyEmbedding": "hybrid",
    "GatedEncoder": "filterbank",
    "GlobalLayerNorm": "layer_norm",
    "HDecLayer": "hybrid",
    "HEncLayer": "hybrid",
    "HybridSTFT": "hybrid_stft",
    "ISTFT": "stft",
    "Interpolation": "unet1d",
    "LayerScale": "dconv",
    "LearnedEncoder": "filterbank",
    "LocalAttention": "dconv",
    "LogMagnitude": "log_magnitude",
    "Mask": "masks",
    "MaskEstimator": "band_split",
    "MaskHead": "masks",
    "OverlapAddDecoder": "filterbank",
    "RMSNorm": "roformer",
    "RecurrentTrunk": "trunk",
    "RotaryEmbedding": "roformer",
    "RunningStatistics": "normalization",
    "STFT": "stft",
    "SameConv2d": "convolution",
    "SameConvTranspose2d": "convolution",
    "ShiftScale": "normalization",
    "SincResample": "resample",
    "StridedDecoderLayer": "strided_conv",
    "StridedEncoderLayer": "strided_conv",
    "TemporalBlock": "temporal_conv",
    "TemporalConvNet": "temporal_conv",
    "Transformer": "roformer",
    "flatten_bins": "embedding",
    "frequency_bins": "stft",
    "mel_filter_bank": "mel",
    "UpsamplingBlock": "unet1d",
    "center_trim": "crop",
    "recurrent_stack": "recurrent",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _MODULES)
