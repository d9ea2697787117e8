#!/usr/bin/env bash
# Mel-Band RoFormer on MUSDB18 (configs/experiment/mel_roformer_musdb.yaml; numbers in README.md).
#
#   recipes/musdb18/mel_roformer.sh dataset.root=/data/musdb18 [key=value ...]   the published recipe
#   recipes/musdb18/mel_roformer.sh --toy [key=value ...]     a small model on the toy set
#   recipes/musdb18/mel_roformer.sh --smoke [key=value ...]   a tiny run that checks the recipe works
#
# Any Hydra override may follow (hydra.run.dir=..., trainer.device=cuda, init=<weights>, ...).
# SEPKIT names the command (default: sepkit).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../smoke.sh"
overrides=(experiment=mel_roformer_musdb)
case "${1:-}" in
  --toy) shift; overrides=(experiment=mel_roformer_toy) ;;
  --smoke) shift; overrides=(experiment=mel_roformer_toy "${SMOKE_MUSIC[@]}" model.dim=16 model.depth=1 model.heads=2 model.dim_head=8 model.num_bands=8) ;;
esac
exec ${SEPKIT:-sepkit} train "${overrides[@]}" "$@"
