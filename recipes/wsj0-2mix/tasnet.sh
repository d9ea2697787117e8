#!/usr/bin/env bash
# LSTM TasNet on wsj0-2mix (configs/experiment/tasnet_wsj0mix.yaml; numbers in README.md).
#
#   recipes/wsj0-2mix/tasnet.sh dataset.root=/data/wsj0-mix/2speakers [key=value ...]
#   recipes/wsj0-2mix/tasnet.sh --toy [key=value ...]     a small model on the toy speech set
#   recipes/wsj0-2mix/tasnet.sh --smoke [key=value ...]   a tiny run: the recipe works
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../smoke.sh"
overrides=(experiment=tasnet_wsj0mix)
case "${1:-}" in
  --toy) shift; overrides=(experiment=tasnet_toy_speech) ;;
  --smoke) shift; overrides=(experiment=tasnet_toy_speech "${SMOKE_SPEECH[@]}" model.filters=16
                             model.hidden_size=16 model.layers=2) ;;
esac
exec ${SEPKIT:-sepkit} train "${overrides[@]}" "$@"
