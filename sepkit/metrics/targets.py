"""MUSDB18's targets and the sources each is the sum of (no torch: read by sepkit eval's
main process, which hands the tracks to scoring processes)."""

# musdb 0.4.3's targets (musdb/configs/mus.yaml) in its order, which is the order in which
# eval_mus_track scores them; a derived target's reference is the sum of these sources in
# this order (musdb sums them so, and the order decides the last bit of float64).
MUSDB_TARGET_SOURCES: dict[str, tuple[str, ...]] = {
    "vocals": ("vocals",),
    "drums": ("drums",),
    "bass": ("bass",),
    "other": ("other",),
    "accompaniment": ("bass", "drums", "other"),
    "linear_mixture": ("vocals", "bass", "drums", "other"),
}
