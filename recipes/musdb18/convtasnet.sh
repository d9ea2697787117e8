#!/usr/bin/env bash
# Conv-TasNet for music as Demucs trains it, on MUSDB18
# (configs/experiment/convtasnet_musdb.yaml; numbers in README.md).
#
#   recipes/musdb18/convtasnet.sh dataset.root=/data/musdb18 [key=value ...]
#   recipes/musdb18/convtasnet.sh --toy [key=value ...]     a small model on the toy set
#   recipes/musdb18/convtasnet.sh --smoke [key=value ...]   a tiny run: the recipe works
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../smoke.sh"
overrides=(experiment=convtasnet_musdb)
case "${1:-}" in
  --toy) shift; overrides=(experiment=convtasnet_toy) ;;
  --smoke) shift; overrides=(experiment=convtasnet_toy "${SMOKE_MUSIC[@]}" model.filters=16
                             model.bottleneck_channels=8 model.hidden_channels=16 model.layers=2
                             model.repeats=1) ;;
esac
exec ${SEPKIT:-sepkit} train "${overrides[@]}" "$@"
