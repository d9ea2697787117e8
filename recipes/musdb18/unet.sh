#!/usr/bin/env bash
# The Spleeter U-Net, 4 stems, on MUSDB18 (configs/experiment/unet_musdb.yaml; numbers in
# README.md).
#
#   recipes/musdb18/unet.sh dataset.root=/data/musdb18 [key=value ...]   Spleeter's recipe
#   recipes/musdb18/unet.sh --toy [key=value ...]     a small U-Net on the toy set, minutes
#   recipes/musdb18/unet.sh --smoke [key=value ...]   a tiny run that checks the recipe works
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../smoke.sh"
overrides=(experiment=unet_musdb)
case "${1:-}" in
  --toy) shift; overrides=(experiment=unet_toy) ;;
  --smoke) shift; overrides=(experiment=unet_toy "${SMOKE_MUSIC[@]}" model.n_fft=512
                             model.hop_length=128 model.max_bin=128 model.patch_frames=64
                             "model.channels=[4,4,4,4,4,4]") ;;
esac
exec ${SEPKIT:-sepkit} train "${overrides[@]}" "$@"
