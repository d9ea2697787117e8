"""The Spleeter U-Net: its layers against Spleeter's architecture, Keras geometry and
batch norm, patches of any length, ratio masks, checkpoints."""

from __future__ import annotations

import pytest
import torch

from sepkit.blocks.convolution import SameConv2d, SameConvTranspose2d, keras_batch_norm
from sepkit.checkpoint import build_model
from sepkit.models.base import InferenceOptions
from sepkit.models.unet import UNet, UNetSeparator

# Spleeter's apply_unet (spleeter/model/functions/unet.py) on its (batch, T=512, F=1024,
# 2) stereo input, Keras layout (frames, bins, channels) of each layer's output:
SPLEETER_LAYERS = [
    ("conv1", (256, 512, 16)),
    ("conv2", (128, 256, 32)),
    ("conv3", (64, 128, 64)),
    ("conv4", (32, 64, 128)),
    ("conv5", (16, 32, 256)),
    ("conv6", (8, 16, 512)),
    ("up1", (16, 32, 256)),  # then concatenated with conv5: 512 channels
    ("up2", (32, 64, 128)),  # with conv4: 256
    ("up3", (64, 128, 64)),  # with conv3: 128
    ("up4", (128, 256, 32)),  # with conv2: 64
    ("up5", (256, 512, 16)),  # with conv1: 32
    ("up6", (512, 1024, 1)),
    ("up7", (512, 1024, 2)),  # 4x4 dilated convolution, sigmoid: the mask
]


def test_every_layer_has_the_output_shape_of_spleeters_architecture():
    with torch.device("meta"):  # shapes only, no arithmetic
        network = UNet(in_channels=2, out_channels=2)
    layers = [*network.encoder, *network.decoder, network.output_conv]
    shapes = []
    for layer in layers:
        layer.register_forward_hook(
            lambda module, inputs, output: shapes.append(
                tuple((output[0] if isinstance(output, tuple) else output).shape)
            )
        )
    output = network(torch.empty(1, 2, 512, 1024, device="meta"))

    assert len(shapes) == len(SPLEETER_LAYERS)
    for (name, (frames, bins, channels)), shape in zip(SPLEETER_LAYERS, shapes):
        assert shape == (1, channels, frames, bins), name
    assert output.shape == (1, 2, 512, 1024)
    # skip connections double the decoder inputs, as Spleeter's Concatenate
    assert [layer.deconv.in_channels for layer in network.decoder] == [512, 512, 256, 128, 64, 32]
    assert network.output_conv.dilation == (2, 2) and network.output_conv.kernel_size == (4, 4)


def test_dropout_on_the_first_three_decoder_layers_and_spleeters_activations():
    network = UNet()
    assert [layer.dropout.p for layer in network.decoder] == [0.5, 0.5, 0.5, 0.0, 0.0, 0.0]
    assert all(isinstance(layer.activation, torch.nn.LeakyReLU) for layer in network.encoder)
    assert network.encoder[0].activation.negative_slope == 0.2
    assert all(isinstance(layer.activation, torch.nn.ReLU) for layer in network.decoder)
    elu = UNet(encoder_activation="elu", decoder_activation="elu")
    assert all(isinstance(layer.activation, torch.nn.ELU) for layer in [*elu.encoder, *elu.decoder])


def test_batch_norm_follows_keras_moving_average_and_epsilon():
    norm = keras_batch_norm(3)
    assert norm.eps == 1e-3
    batch = torch.randn(4, 3, 5, 5) + torch.tensor([1.0, 2.0, 3.0])[:, None, None]
    norm.train()(batch)
    # Keras: moving = 0.99 * moving + 0.01 * batch statistic (moving mean starts at 0)
    torch.testing.assert_close(norm.running_mean, 0.01 * batch.mean(dim=(0, 2, 3)))


@pytest.mark.parametrize("size", [16, 17, 31])
def test_same_convolutions_have_keras_sizes_and_are_adjoint(size: int):
    torch.manual_seed(0)
    conv = SameConv2d(3, 4, kernel_size=5, stride=2)
    deconv = SameConvTranspose2d(4, 3, kernel_size=5, stride=2)
    with torch.no_grad():
        deconv.weight.copy_(conv.weight)  # both (4, 3, 5, 5)
        conv.bias.zero_()
        deconv.bias.zero_()
    x = torch.randn(2, 3, size, size + 2)
    y = conv(x)
    assert y.shape == (2, 4, -(-size // 2), -(-(size + 2) // 2))  # ceil(size / stride)
    if size % 2 == 0:
        # Keras's transposed "same" convolution is the adjoint of the strided one:
        # <conv(x), z> == <x, deconv(z)>
        z = torch.randn_like(y)
        back = deconv(z)
        assert back.shape == x.shape
        torch.testing.assert_close((y * z).sum(), (x * back).sum(), rtol=1e-4, atol=1e-4)


def _tiny(**overrides) -> UNetSeparator:
    settings = dict(
        targets=["vocals", "drums", "bass"],
        sample_rate=8000,
        nb_channels=2,
        n_fft=256,
        hop_length=64,
        max_bin=64,
        patch_frames=32,
        channels=[4, 4, 8, 8, 8],  # 5 layers: sizes in multiples of 32
    )
    settings.update(overrides)
    torch.manual_seed(0)
    return UNetSeparator(**settings).eval()


def test_any_length_in_patches_and_bins_above_max_bin_zero():
    model = _tiny()
    mixture = torch.randn(1, 2, 5001)  # 79 frames: two whole patches of 32 and a padded one
    spectrogram = model.stft(mixture)
    with torch.no_grad():
        magnitudes = model.estimate(spectrogram)["magnitudes"]
        # in eval mode patches are independent: the first patch alone gives the same
        first_patch = model.estimate(spectrogram[..., :32])["magnitudes"]
    assert magnitudes.shape == (1, 3, 2, 129, 79)
    assert torch.all(magnitudes[:, :, :, 64:] == 0)
    assert magnitudes[:, :, :, :64].abs().sum() > 0
    torch.testing.assert_close(magnitudes[..., :32], first_patch)


def test_whole_input_mode_and_more_bins_than_the_stft_has():
    model = _tiny(patch_frames=None, max_bin=192)  # 129 bins: zero bins are added
    with torch.no_grad():
        outputs = model(torch.randn(2, 2, 3000))
    assert outputs["magnitudes"].shape == (2, 3, 2, 129, 47)


def test_ratio_masks_share_the_mixture_below_max_bin():
    model = _tiny()
    spectrogram = model.stft(torch.randn(1, 2, 4000))
    with torch.no_grad():
        shared = model.separation_magnitudes(spectrogram, InferenceOptions(niter=0))
        raw = model.separation_magnitudes(spectrogram, InferenceOptions(niter=1))
    torch.testing.assert_close(shared.sum(1)[:, :, :64], spectrogram.abs()[:, :, :64])
    assert torch.all(shared[:, :, :, 64:] == 0)
    torch.testing.assert_close(raw, model.estimate(spectrogram)["magnitudes"])


def test_multi_stem_unet_masks_every_target_with_one_network():
    model = _tiny(multi_stem=True)
    assert model.unet.output_conv.out_channels == 3 * 2
    with torch.no_grad():
        assert model(torch.randn(1, 2, 3000))["magnitudes"].shape == (1, 3, 2, 129, 47)


@pytest.mark.parametrize("multi_stem", [False, True])
def test_checkpoint_rebuilds_the_same_model_and_separates_an_odd_length(multi_stem: bool):
    model = _tiny(multi_stem=multi_stem, encoder_activation="elu", decoder_activation="elu")
    model.train()(torch.randn(2, 2, 4000))  # move the batch-norm statistics off their start
    model.eval()
    rebuilt = build_model({"model": {"config": model.config, "state_dict": model.state_dict()}})
    mixture = torch.randn(1, 2, 4001)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(mixture)["magnitudes"], model(mixture)["magnitudes"])
        for niter in (0, 1):
            separated = rebuilt.separate(mixture, InferenceOptions(niter=niter))
            assert separated.shape == (1, 3, 2, 4001)
            assert torch.isfinite(separated).all()


def test_sizes_that_do_not_fit_the_strides_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="model.max_bin=100 is not a multiple of 64"):
        UNetSeparator(targets=["vocals"], max_bin=100)
    with pytest.raises(ValueError, match="model.patch_frames=100 is not a multiple of 32"):
        UNetSeparator(targets=["vocals"], patch_frames=100, channels=[8, 8, 8, 8, 8])
