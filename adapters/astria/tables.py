"""Astria's vocabulary (seeds/000 and the newer seeds/001), as data the conversion reads."""

from __future__ import annotations

from typing import NamedTuple

from adapters.normalized import AspectRatio, ColorGrading, ControlNetType, Scheduler, Style


class SchedulerChoice(NamedTuple):
    name: str  # Astria's scheduler enum value
    approximation: str | None = None  # why it is not exact, when it is not


# Every scheduler name seeds/001 lists; the simulator accepts exactly these.
SCHEDULER_NAMES = (
    "euler",
    "euler_a",
    "dpm++2m_karras",
    "dpm++sde_karras",
    "dpm++2m",
    "dpm++sde",
    "lcm",
    "tcd",
)

# Astria offers eight samplers; each other normalized one goes to the sampler of the same
# family (deterministic or ancestral/stochastic, multistep or not). The reason is shown in
# the warning as "scheduler heun → euler (astria has no heun; <reason>)".
SCHEDULERS: dict[Scheduler, SchedulerChoice] = {
    Scheduler.EULER: SchedulerChoice("euler"),
    Scheduler.EULER_A: SchedulerChoice("euler_a"),
    Scheduler.HEUN: SchedulerChoice("euler", "Heun is Euler plus a correction step"),
    Scheduler.LMS: SchedulerChoice("dpm++2m", "nearest deterministic multistep sampler"),
    Scheduler.DPM2: SchedulerChoice("dpm++2m", "DPM++ 2M is its deterministic successor"),
    Scheduler.DPM2_A: SchedulerChoice("euler_a", "nearest ancestral sampler"),
    Scheduler.DPMPP_2M: SchedulerChoice("dpm++2m"),
    Scheduler.DPMPP_2M_KARRAS: SchedulerChoice("dpm++2m_karras"),
    Scheduler.DPMPP_SDE: SchedulerChoice("dpm++sde"),
    Scheduler.DPMPP_SDE_KARRAS: SchedulerChoice("dpm++sde_karras"),
    Scheduler.DPMPP_2M_SDE: SchedulerChoice("dpm++sde", "nearest stochastic DPM++ sampler"),
    Scheduler.DDIM: SchedulerChoice("euler", "deterministic DDIM is a first-order Euler step"),
    Scheduler.DDPM: SchedulerChoice("euler_a", "nearest ancestral sampler"),
    Scheduler.PNDM: SchedulerChoice("dpm++2m", "nearest deterministic multistep sampler"),
    Scheduler.UNIPC: SchedulerChoice("dpm++2m", "nearest deterministic multistep sampler"),
    Scheduler.DEIS: SchedulerChoice("dpm++2m", "nearest exponential-integrator multistep"),
    Scheduler.LCM: SchedulerChoice("lcm"),
    Scheduler.TCD: SchedulerChoice("tcd"),
}

ASPECT_RATIOS: dict[AspectRatio, str] = {
    AspectRatio.R1_1: "1:1",
    AspectRatio.R16_9: "16:9",
    AspectRatio.R9_16: "9:16",
    AspectRatio.R21_9: "21:9",
    AspectRatio.R9_21: "9:21",
    AspectRatio.R3_2: "3:2",
    AspectRatio.R2_3: "2:3",
    AspectRatio.R5_4: "5:4",
    AspectRatio.R4_5: "4:5",
    AspectRatio.R4_3: "4:3",
    AspectRatio.R3_4: "3:4",
}

STYLES: dict[Style, str] = {
    Style.CINEMATIC: "Cinematic",
    Style.ANIMATED: "Animated",
    Style.DIGITAL_ART: "Digital Art",
    Style.PHOTOGRAPHIC: "Photographic",
    Style.FANTASY_ART: "Fantasy art",
    Style.NEONPUNK: "Neonpunk",
    Style.ENHANCE: "Enhance",
    Style.COMIC_BOOK: "Comic book",
    Style.LOWPOLY: "Lowpoly",
    Style.LINE_ART: "Line art",
}

COLOR_GRADINGS: dict[ColorGrading, str] = {
    ColorGrading.FILM_VELVIA: "Film Velvia",
    ColorGrading.FILM_PORTRA: "Film Portra",
    ColorGrading.EKTAR: "Ektar",
}

# seeds/001 dropped seeds/000's pose_with_hand, pose_with_face and pose_face_and_hand.
CONTROLNETS: dict[ControlNetType, str] = {
    ControlNetType.COMPOSITION: "composition",
    ControlNetType.REFERENCE: "reference",
    ControlNetType.SEGROOM: "segroom",
    ControlNetType.IPADAPTER: "ipadapter",
    ControlNetType.LINEART: "lineart",
    ControlNetType.CANNY: "canny",
    ControlNetType.DEPTH: "depth",
    ControlNetType.MLSD: "mlsd",
    ControlNetType.HED: "hed",
    ControlNetType.POSE: "pose",
    ControlNetType.TILE: "tile",
    ControlNetType.QR: "qr",
}

BACKEND_VERSIONS = (1,)

NUM_IMAGES = (1, 8)
CFG_SCALE = (0.0, 15.0)
STEPS = (0, 50)
DENOISING_STRENGTH = (0.0, 1.0)
CONDITIONING_SCALE = (0.0, 1.0)
SEED = (0, 2**32)  # the docs say "0 to 2^32"
SIDE_MULTIPLE = 8

# Enhancements sent as plain booleans; the two below need super_resolution.
ENHANCE_FLAGS = ("super_resolution", "face_correct", "face_swap", "film_grain")
NEEDS_SUPER_RESOLUTION = ("inpaint_faces", "hires_fix")

# What Astria renders when neither w/h nor aspect_ratio is sent (used for load estimates).
DEFAULT_SIDE = 512
DEFAULT_STEPS = 30

# Binary multipart fields and the URL fields they stand in for.
FILE_FIELDS = {"input_image": "input_image_url", "mask_image": "mask_image_url"}


def aspect_size(ratio: str, long_side: int = DEFAULT_SIDE) -> tuple[int, int]:
    """A (w, h) for an aspect_ratio value, for load estimates only."""
    w, h = (int(part) for part in ratio.split(":"))
    if w >= h:
        return long_side, max(SIDE_MULTIPLE, round(long_side * h / w / 8) * 8)
    return max(SIDE_MULTIPLE, round(long_side * w / h / 8) * 8), long_side
