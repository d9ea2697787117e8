#!/usr/bin/env bash
# Mask inference on wsj0-2mix (configs/experiment/mask_inference_wsj0mix.yaml; numbers in README.md).
#
#   recipes/wsj0-2mix/mask_inference.sh dataset.root=/data/wsj0-mix/2speakers [key=value ...]
#   recipes/wsj0-2mix/mask_inference.sh --toy [key=value ...]     a small model on toy speech
#   recipes/wsj0-2mix/mask_inference.sh --smoke [key=value ...]   a tiny run: the recipe works
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../smoke.sh"
overrides=(experiment=mask_inference_wsj0mix)
case "${1:-}" in
  --toy) shift; overrides=(experiment=mask_inference_toy_speech) ;;
  --smoke) shift; overrides=(experiment=mask_inference_toy_speech "${SMOKE_SPEECH[@]}" model.hidden_size=8
                             model.nb_layers=1) ;;
esac
exec ${SEPKIT:-sepkit} train "${overrides[@]}" "$@"
