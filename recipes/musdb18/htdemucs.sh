#!/usr/bin/env bash
# HTDemucs (Demucs v4) on MUSDB18 (configs/experiment/htdemucs_musdb.yaml; numbers in README.md).
#
#   recipes/musdb18/htdemucs.sh dataset.root=/data/musdb18 [key=value ...]   the published recipe
#   recipes/musdb18/htdemucs.sh --toy [key=value ...]     a small model on the toy set
#   recipes/musdb18/htdemucs.sh --smoke [key=value ...]   a tiny run that checks the recipe works
#
# Any Hydra override may follow (hydra.run.dir=..., trainer.device=cuda, init=<weights>, ...).
# SEPKIT names the command (default: sepkit).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../smoke.sh"
overrides=(experiment=htdemucs_musdb)
case "${1:-}" in
  --toy) shift; overrides=(experiment=htdemucs_toy) ;;
  --smoke) shift; overrides=(experiment=htdemucs_toy "${SMOKE_MUSIC[@]}" model.channels=8 model.depth=3 model.nfft=512 model.t_layers=1 model.t_heads=2 model.segment=0.5) ;;
esac
exec ${SEPKIT:-sepkit} train "${overrides[@]}" "$@"
