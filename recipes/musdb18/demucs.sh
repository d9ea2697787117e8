#!/usr/bin/env bash
# Demucs v2 on MUSDB18 (configs/experiment/demucs_musdb.yaml; numbers in README.md).
#
#   recipes/musdb18/demucs.sh dataset.root=/data/musdb18 [key=value ...]   the paper's recipe
#   recipes/musdb18/demucs.sh --toy [key=value ...]     a small Demucs on the toy set, minutes
#   recipes/musdb18/demucs.sh --smoke [key=value ...]   a tiny run that checks the recipe works
#
# Any Hydra override may follow (hydra.run.dir=..., trainer.device=cuda, ...). SEPKIT names
# the command (default: sepkit).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../smoke.sh"
overrides=(experiment=demucs_musdb)
case "${1:-}" in
  --toy) shift; overrides=(experiment=demucs_toy) ;;
  --smoke) shift; overrides=(experiment=demucs_toy "${SMOKE_MUSIC[@]}" model.channels=4 model.depth=3) ;;
esac
exec ${SEPKIT:-sepkit} train "${overrides[@]}" "$@"
