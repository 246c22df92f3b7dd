"""Bodia's vocabulary (seeds/003 and PRODUCT.md), as data the conversion and simulator read."""

from __future__ import annotations

from enum import StrEnum

from adapters.normalized import AspectRatio


class BodiaAspect(StrEnum):
    SQUARE = "square"
    PORTRAIT = "portrait"
    LANDSCAPE = "landscape"


CFG = (1.0, 20.0)
STEPS = (1, 50)

# What Bodia uses when a field is left out: the doc's second example prompt sends neither
# cfg nor steps and is answered with "cfg": "7.50", "steps": 45, "aspect_ratio": "square".
DEFAULT_CFG = 7.5
DEFAULT_STEPS = 45
DEFAULT_ASPECT = BodiaAspect.SQUARE

# Bodia picks the pixel size itself; only the orientation can be asked for, so every
# ratio lands on the class its orientation belongs to.
ASPECTS: dict[AspectRatio, BodiaAspect] = {
    AspectRatio.R1_1: BodiaAspect.SQUARE,
    AspectRatio.R16_9: BodiaAspect.LANDSCAPE,
    AspectRatio.R9_16: BodiaAspect.PORTRAIT,
    AspectRatio.R21_9: BodiaAspect.LANDSCAPE,
    AspectRatio.R9_21: BodiaAspect.PORTRAIT,
    AspectRatio.R3_2: BodiaAspect.LANDSCAPE,
    AspectRatio.R2_3: BodiaAspect.PORTRAIT,
    AspectRatio.R5_4: BodiaAspect.LANDSCAPE,
    AspectRatio.R4_5: BodiaAspect.PORTRAIT,
    AspectRatio.R4_3: BodiaAspect.LANDSCAPE,
    AspectRatio.R3_4: BodiaAspect.PORTRAIT,
}

# The fields of one prompt object in a create call (seeds/003, "Add Prompts to Fine-Tune").
PROMPT_FIELDS = frozenset(
    {"prompt", "negative_prompt", "cfg", "steps", "seed", "high_resolution", "aspect_ratio",
     "metadata"}
)  # fmt: skip

# Normalized features a fine-tune prompt has no field for at all: the request cannot be
# served without them, so the backend is not eligible.
UNSUPPORTED_FEATURES = {
    "init_image": "bodia generates from a prompt only (no img2img)",
    "mask_image": "bodia has no inpainting",
    "controlnet": "bodia has no controlnet",
    "loras": "bodia runs the fine-tune itself and takes no loras",
}

# Enhancements with no Bodia field; super_resolution maps to high_resolution instead.
DROPPED_ENHANCE = ("face_correct", "hires_fix", "inpaint_faces", "face_swap", "film_grain")

# Load estimates only: Bodia does not say what it renders. One megapixel is what SDXL-class
# fine-tunes produce, and the 4K pass is assumed to cost about one more generation.
NOMINAL_PIXELS = 1024 * 1024
HIGH_RESOLUTION_COST = 2.0
