#!/usr/bin/env bash
# Conv-TasNet on wsj0-2mix (configs/experiment/convtasnet_wsj0mix.yaml; numbers in README.md).
#
#   recipes/wsj0-2mix/convtasnet.sh dataset.root=/data/wsj0-mix/2speakers [key=value ...]
#   recipes/wsj0-2mix/convtasnet.sh --toy [key=value ...]     a small model on toy speech
#   recipes/wsj0-2mix/convtasnet.sh --smoke [key=value ...]   a tiny run: the recipe works
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../smoke.sh"
overrides=(experiment=convtasnet_wsj0mix)
case "${1:-}" in
  --toy) shift; overrides=(experiment=convtasnet_toy_speech) ;;
  --smoke) shift; overrides=(experiment=convtasnet_toy_speech "${SMOKE_SPEECH[@]}" model.filters=16
                             model.bottleneck_channels=8 model.skip_channels=8
                             model.hidden_channels=16 model.layers=2 model.repeats=1) ;;
esac
exec ${SEPKIT:-sepkit} train "${overrides[@]}" "$@"
