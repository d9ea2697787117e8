#!/usr/bin/env bash
# Wave-U-Net on MUSDB18 (configs/experiment/waveunet_musdb.yaml; numbers in README.md).
#
#   recipes/musdb18/waveunet.sh dataset.root=/data/musdb18 [key=value ...]
#   recipes/musdb18/waveunet.sh --toy [key=value ...]     a small model on the toy set
#   recipes/musdb18/waveunet.sh --smoke [key=value ...]   a tiny run: the recipe works
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../smoke.sh"
overrides=(experiment=waveunet_musdb)
case "${1:-}" in
  --toy) shift; overrides=(experiment=waveunet_toy) ;;
  --smoke) shift; overrides=(experiment=waveunet_toy "${SMOKE_MUSIC[@]}" model.levels=3
                             model.extra_filters=4) ;;
esac
exec ${SEPKIT:-sepkit} train "${overrides[@]}" "$@"
