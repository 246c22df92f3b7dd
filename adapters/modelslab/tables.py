"""ModelsLab's vocabulary (seeds/004 and PRODUCT.md), as data the conversion reads."""

from __future__ import annotations

from typing import NamedTuple

from adapters.normalized import Scheduler


class SchedulerChoice(NamedTuple):
    name: str  # diffusers class name ModelsLab expects
    karras: bool  # use_karras_sigmas
    algorithm_type: str | None = None
    approximation: str | None = None  # why it is not exact, when it is not


SCHEDULERS: dict[Scheduler, SchedulerChoice] = {
    Scheduler.EULER: SchedulerChoice("EulerDiscreteScheduler", False),
    Scheduler.EULER_A: SchedulerChoice("EulerAncestralDiscreteScheduler", False),
    Scheduler.HEUN: SchedulerChoice("HeunDiscreteScheduler", False),
    Scheduler.LMS: SchedulerChoice("LMSDiscreteScheduler", False),
    Scheduler.DPM2: SchedulerChoice("KDPM2DiscreteScheduler", False),
    Scheduler.DPM2_A: SchedulerChoice("KDPM2AncestralDiscreteScheduler", False),
    Scheduler.DPMPP_2M: SchedulerChoice("DPMSolverMultistepScheduler", False),
    Scheduler.DPMPP_2M_KARRAS: SchedulerChoice("DPMSolverMultistepScheduler", True),
    Scheduler.DPMPP_SDE: SchedulerChoice(
        "DPMSolverSinglestepScheduler", False, None, "no DPM++ SDE class; nearest is singlestep"
    ),
    Scheduler.DPMPP_SDE_KARRAS: SchedulerChoice(
        "DPMSolverSinglestepScheduler", True, None, "no DPM++ SDE class; nearest is singlestep"
    ),
    Scheduler.DPMPP_2M_SDE: SchedulerChoice("DPMSolverMultistepScheduler", False, "dpmsolver+++"),
    Scheduler.DDIM: SchedulerChoice("DDIMScheduler", False),
    Scheduler.DDPM: SchedulerChoice("DDPMScheduler", False),
    Scheduler.PNDM: SchedulerChoice("PNDMScheduler", False),
    Scheduler.UNIPC: SchedulerChoice("UniPCMultistepScheduler", False),
    Scheduler.DEIS: SchedulerChoice("DEISMultistepScheduler", False),
    Scheduler.LCM: SchedulerChoice("LCMScheduler", False),
    Scheduler.TCD: SchedulerChoice("LCMScheduler", False, None, "no TCD class; nearest is LCM"),
}

# Every class name seeds/004 lists; the simulator accepts exactly these.
SCHEDULER_CLASSES = frozenset(
    {
        "DDPMScheduler",
        "DDIMScheduler",
        "PNDMScheduler",
        "LMSDiscreteScheduler",
        "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler",
        "DPMSolverMultistepScheduler",
        "HeunDiscreteScheduler",
        "KDPM2DiscreteScheduler",
        "DPMSolverSinglestepScheduler",
        "KDPM2AncestralDiscreteScheduler",
        "UniPCMultistepScheduler",
        "DDIMInverseScheduler",
        "DEISMultistepScheduler",
        "IPNDMScheduler",
        "KarrasVeScheduler",
        "ScoreSdeVeScheduler",
        "LCMScheduler",
    }
)

ENTERPRISE_STEPS = (21, 31, 41)
CLOUD_STEPS = (1, 50)
MAX_SIDE = 1024
MIN_SIDE = 64
MAX_SAMPLES = 4
GUIDANCE = (1.0, 20.0)
CLIP_SKIP = (1, 8)
SAFETY_CHECKER_TYPES = ("blur", "sensitive_content_text", "pixelate", "black")
YES_NO = ("yes", "no")
# Fields the API takes as "yes"/"no" strings rather than booleans.
YES_NO_FIELDS = (
    "safety_checker",
    "enhance_prompt",
    "tomesd",
    "use_karras_sigmas",
    "base64",
    "temp",
)
# Normalized fields ModelsLab's text2img/img2img/inpaint have no equivalent for.
UNSUPPORTED_ENHANCE = (
    "super_resolution",
    "face_correct",
    "hires_fix",
    "inpaint_faces",
    "face_swap",
    "film_grain",
)
ENDPOINTS = {"txt2img": "text2img", "img2img": "img2img", "inpaint": "inpaint"}
