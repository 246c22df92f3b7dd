"""ComfyUI's vocabulary (its core `comfy/samplers.py` lists), as data the conversion reads."""

from __future__ import annotations

from typing import NamedTuple

from adapters.normalized import Scheduler


class SamplerChoice(NamedTuple):
    sampler_name: str  # KSampler's `sampler_name`
    scheduler: str  # KSampler's `scheduler` (the sigma schedule)
    approximation: str | None = None  # why it is not exact, when it is not


SCHEDULERS: dict[Scheduler, SamplerChoice] = {
    Scheduler.EULER: SamplerChoice("euler", "normal"),
    Scheduler.EULER_A: SamplerChoice("euler_ancestral", "normal"),
    Scheduler.HEUN: SamplerChoice("heun", "normal"),
    Scheduler.LMS: SamplerChoice("lms", "normal"),
    Scheduler.DPM2: SamplerChoice("dpm_2", "normal"),
    Scheduler.DPM2_A: SamplerChoice("dpm_2_ancestral", "normal"),
    Scheduler.DPMPP_2M: SamplerChoice("dpmpp_2m", "normal"),
    Scheduler.DPMPP_2M_KARRAS: SamplerChoice("dpmpp_2m", "karras"),
    Scheduler.DPMPP_SDE: SamplerChoice("dpmpp_sde", "normal"),
    Scheduler.DPMPP_SDE_KARRAS: SamplerChoice("dpmpp_sde", "karras"),
    Scheduler.DPMPP_2M_SDE: SamplerChoice("dpmpp_2m_sde", "normal"),
    # DDIM's own timestep spacing is what ComfyUI calls ddim_uniform.
    Scheduler.DDIM: SamplerChoice("ddim", "ddim_uniform"),
    Scheduler.DDPM: SamplerChoice("ddpm", "normal"),
    Scheduler.PNDM: SamplerChoice(
        "ipndm", "normal", "no PNDM sampler in ComfyUI; nearest is iPNDM (improved PNDM)"
    ),
    Scheduler.UNIPC: SamplerChoice("uni_pc", "normal"),
    Scheduler.DEIS: SamplerChoice("deis", "normal"),
    # ComfyUI's LCM examples pair the sampler with sgm_uniform, LCM's own spacing.
    Scheduler.LCM: SamplerChoice("lcm", "sgm_uniform"),
    Scheduler.TCD: SamplerChoice(
        "lcm", "sgm_uniform", "no TCD sampler in ComfyUI's core; nearest is LCM"
    ),
}

# comfy/samplers.py (recent core): KSAMPLER_NAMES + ["ddim", "uni_pc", "uni_pc_bh2"].
SAMPLER_NAMES = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
    "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v", "deis",
    "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp",
    "er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc",
    "uni_pc_bh2",
)  # fmt: skip

SCHEDULER_NAMES = (
    "normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta",
    "linear_quadratic", "kl_optimal",
)  # fmt: skip

# Files ComfyUI lists in its models folders (checkpoints, loras, controlnet) end like this.
MODEL_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft")

# Data-URI media types and the file extension an upload of that type gets.
IMAGE_SUFFIXES = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/jpg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/bmp": "bmp",
    "image/tiff": "tiff",
}

# Normalized fields ComfyUI's core nodes have no equivalent for.
UNSUPPORTED_ENHANCE = (
    "super_resolution",
    "face_correct",
    "hires_fix",
    "inpaint_faces",
    "face_swap",
    "film_grain",
)

SEED_RANGE = 2**32  # the normalized seed range; split submissions wrap within it
