"""Default vocabularies: input modalities, diseases and FFA phases.

These are only the defaults used when a *new* model is built. A trained checkpoint
carries its own copy in its config (``condition_encoder.config.modalities``,
``disease_embedding.config.diseases`` and ``disease_embedding.config.phases``), and
the pipeline, the trainer and the app read the vocabulary from there, so a model
always speaks the labels it was trained with.
"""

from __future__ import annotations

MODALITIES: tuple[str, ...] = ("cfp", "oct", "uwf_slo")

MODALITY_LABELS: dict[str, str] = {
    "cfp": "Colour fundus photo",
    "oct": "OCT en-face / OCTA",
    "uwf_slo": "Ultra-widefield SLO (Optos)",
}

# "unknown" comes first: it is also the label used when labels are dropped for
# classifier-free guidance, so it must exist in every vocabulary.
DISEASES: tuple[str, ...] = (
    "unknown",
    "normal",
    "diabetic_retinopathy",
    "amd",
    "vein_occlusion",
    "glaucoma",
)

DISEASE_LABELS: dict[str, str] = {
    "unknown": "Unknown / not specified",
    "normal": "Normal",
    "diabetic_retinopathy": "Diabetic retinopathy",
    "amd": "Age-related macular degeneration",
    "vein_occlusion": "Retinal vein occlusion",
    "glaucoma": "Glaucoma",
}

# Named FFA phases -> seconds after dye injection. The model is conditioned on the
# (continuous) time, so any number of seconds in PHASE_SECONDS_RANGE is also accepted.
PHASES: dict[str, float] = {
    "choroidal": 10.0,
    "arterial": 14.0,
    "early": 30.0,
    "mid": 180.0,
    "late": 600.0,
}

PHASE_LABELS: dict[str, str] = {
    "choroidal": "Choroidal flush (~10 s)",
    "arterial": "Arterial (~14 s)",
    "early": "Early / venous (~30 s)",
    "mid": "Mid / recirculation (~3 min)",
    "late": "Late (~10 min)",
}

PHASE_SECONDS_RANGE: tuple[float, float] = (0.0, 1800.0)


def display_label(name: str) -> str:
    """Human-readable label for a modality, disease or phase name (falls back to the name)."""
    for labels in (MODALITY_LABELS, DISEASE_LABELS, PHASE_LABELS):
        if name in labels:
            return labels[name]
    return name.replace("_", " ").capitalize()


def phase_to_seconds(phase: str | float | int, phases: dict[str, float] | None = None) -> float:
    """Resolve a phase name or a number of seconds to seconds after injection.

    Raises ``ValueError`` naming the bad value and the allowed ones.
    """
    phases = PHASES if phases is None else phases
    low, high = PHASE_SECONDS_RANGE
    if isinstance(phase, bool):
        raise TypeError(f"phase must be a phase name or seconds after injection, got bool {phase!r}")
    if isinstance(phase, str):
        if phase in phases:
            return float(phases[phase])
        try:
            seconds = float(phase)
        except ValueError:
            raise ValueError(
                f"Unknown FFA phase {phase!r}; allowed: {sorted(phases)} or seconds in [{low:g}, {high:g}]"
            ) from None
    elif isinstance(phase, (int, float)):
        seconds = float(phase)
    else:
        raise TypeError(
            f"phase must be a phase name {sorted(phases)} or seconds after injection, got {type(phase).__name__}"
        )
    if not low <= seconds <= high:
        raise ValueError(f"FFA phase {phase!r} seconds out of range; allowed: [{low:g}, {high:g}] or {sorted(phases)}")
    return seconds
