"""Diffusion generator backends (diffusers): category prompt and reference style.

* ``category-diffusion``: Stable Diffusion inpainting (optionally ControlNet inpainting) of the
  background around the product, with the prompt template
  ``"A photo of [category], in the background of [D]"`` where ``D`` is a per-category background
  description (``DEFAULT_BACKGROUNDS``, overridable) and ``[category]`` may be preceded by a
  per-category identifier token (e.g. a DreamBooth/LoRA token such as ``"sks"``).
* ``reference-diffusion``: the product is composited onto a reference scene, the reference is
  noised to ``strength`` and denoised with the product kept (img2img-style initial latent from the
  reference, as in the JD category-commonality / personalized-style paper); optionally an
  IP-Adapter conditions on the reference image as well.

In both, the mask handed to the pipeline is the background (inverse of the product alpha) and the
original product pixels are alpha-composited back after decoding, so the product is never altered
by the VAE. Generation is seeded with a CPU ``torch.Generator`` per candidate (seed, seed+1, ...),
so a candidate is reproducible on any device and independent of ``num_candidates``.

Weights are never downloaded: models load with ``local_files_only=True`` from a local folder or
from a hub id already present in the Hugging Face cache. Configuration comes from constructor
arguments, falling back to the environment variables ``STAGECRAFT_SD_INPAINT_MODEL``,
``STAGECRAFT_CONTROLNET_MODEL`` and ``STAGECRAFT_IP_ADAPTER`` (see docs/generation-learned.md).

No Django imports here.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from .backends import (
    BackendUnavailable,
    Candidate,
    GenerationFailed,
    GeneratorBackend,
    ProductInput,
    register,
)
from .diffusion_utils import (
    as_rgb,
    cover_resize,
    load_image_param,
    paste_product,
    product_alpha,
    resolve_device,
    resolve_dtype,
    working_size,
)

SD_INPAINT_ENV = "STAGECRAFT_SD_INPAINT_MODEL"
CONTROLNET_ENV = "STAGECRAFT_CONTROLNET_MODEL"
IP_ADAPTER_ENV = "STAGECRAFT_IP_ADAPTER"

PROMPT_TEMPLATE = "A photo of {subject}, in the background of {background}"
DEFAULT_NEGATIVE_PROMPT = (
    "blurry, low quality, distorted, deformed, duplicate product, extra objects, text, watermark, logo"
)
# Background description D per category (lower-case keys; "default" for anything else).
DEFAULT_BACKGROUNDS: dict[str, str] = {
    "default": "a softly lit tabletop in a bright, minimal interior, shallow depth of field",
    "fruit": "a rustic wooden kitchen table with a linen cloth and soft morning window light",
    "vegetables": "a farmhouse kitchen counter with fresh herbs and natural daylight",
    "packages": "a clean supermarket shelf-style kitchen counter with soft studio lighting",
    "bowl": "a marble kitchen counter with soft natural light",
    "backpack": "a sunny mountain trail with blurred pine trees",
    "shoes": "a polished concrete floor in a modern loft with soft daylight",
    "clothing": "a minimal boutique interior with neutral walls and warm light",
    "bag": "a marble console table in an elegant hallway",
    "watch": "a dark walnut desk with soft reflections and moody light",
    "jewelry": "a velvet display tray with soft bokeh highlights",
    "cosmetics": "a bathroom vanity with white marble and fresh flowers",
    "bottle": "a sunlit patio table with soft shadows",
    "electronics": "a tidy modern desk with a blurred office background",
    "furniture": "a bright Scandinavian living room with wooden floors",
    "toy": "a colourful playroom floor with soft daylight",
    "kitchenware": "a modern kitchen counter with tiles and soft light",
    "book": "a cosy reading nook with a knitted blanket and warm lamp light",
}
# Optional identifier token per category, e.g. {"fruit": "sks"} for a DreamBooth/LoRA fine-tune.
DEFAULT_IDENTIFIERS: dict[str, str] = {}

ProgressCallback = Callable[[float, str], None]


def background_description(category: str, backgrounds: dict[str, str] | None = None) -> str:
    table = {**DEFAULT_BACKGROUNDS, **{k.lower(): v for k, v in (backgrounds or {}).items()}}
    key = (category or "").strip().lower()
    return table.get(key) or table["default"]


def build_prompt(
    category: str,
    *,
    background: str | None = None,
    backgrounds: dict[str, str] | None = None,
    identifiers: dict[str, str] | None = None,
    template: str = PROMPT_TEMPLATE,
) -> str:
    """``"A photo of [identifier ]category, in the background of D"``."""
    cat = (category or "").strip() or "product"
    ids = {**DEFAULT_IDENTIFIERS, **{k.lower(): v for k, v in (identifiers or {}).items()}}
    ident = ids.get(cat.lower(), "").strip()
    subject = f"{ident} {cat}" if ident else cat
    return template.format(subject=subject, background=background or background_description(cat, backgrounds))


# --- configuration and loading -------------------------------------------------------------------

def _is_local(ref: str) -> bool:
    return Path(ref).expanduser().exists()


def _in_hf_cache(repo_id: str, filename: str, subfolder: str | None = None) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, filename if not subfolder else f"{subfolder}/{filename}")
        return isinstance(found, str)
    except Exception:
        return False


def _check_model_ref(ref: str, marker: str, what: str, env: str, example: str) -> str | None:
    """None when `ref` points at usable weights, else the reason for the user."""
    if _is_local(ref):
        path = Path(ref).expanduser()
        if path.is_dir() and not (path / marker).exists():
            return f"{env}={ref!r}: folder has no {marker}; it must be a diffusers folder of {what} (e.g. {example})"
        return None
    if ref.count("/") == 1 and _in_hf_cache(ref, marker):
        return None
    return (f"{env}={ref!r} is neither a local folder nor a hub id in the local Hugging Face cache "
            f"(weights are never downloaded at run time); download {what} (e.g. {example}) on a "
            f"connected machine and point {env} at the folder")


def parse_ip_adapter(ref: str) -> tuple[str, str, str]:
    """(repo_or_folder, subfolder, weight_name) from a weight-file reference.

    Accepts a local file (``/models/IP-Adapter/models/ip-adapter_sd15.safetensors``; the image
    encoder is expected in ``image_encoder/`` beside it) or a cached hub path
    ``owner/repo/sub/folders/weight.safetensors`` (e.g. ``h94/IP-Adapter/models/ip-adapter_sd15.safetensors``).
    """
    path = Path(ref).expanduser()
    if path.is_file():
        return str(path.parent), "", path.name
    parts = [p for p in ref.split("/") if p]
    if len(parts) < 3:
        raise ValueError(f"{IP_ADAPTER_ENV}={ref!r}: expected a weight file path or owner/repo/subfolder/weight_name")
    return "/".join(parts[:2]), "/".join(parts[2:-1]), parts[-1]


def _check_ip_adapter(ref: str) -> str | None:
    try:
        repo, sub, weight = parse_ip_adapter(ref)
    except ValueError as exc:
        return str(exc)
    if Path(repo).is_dir():
        enc = Path(repo) / sub / "image_encoder"
        if not enc.is_dir():
            return f"{IP_ADAPTER_ENV}={ref!r}: no image_encoder/ folder beside the weight file ({enc})"
        return None
    if _in_hf_cache(repo, weight, sub or None):
        return None
    return (f"{IP_ADAPTER_ENV}={ref!r} is not a local file nor in the local Hugging Face cache; download "
            f"h94/IP-Adapter (models/ip-adapter_sd15.safetensors and models/image_encoder/) first")


_PIPELINES: dict[tuple, Any] = {}
_PIPELINES_LOCK = threading.Lock()


def load_pipeline(
    model: str,
    *,
    controlnet: str | None = None,
    ip_adapter: str | None = None,
    device: str | None = None,
    dtype: Any = None,
):
    """Load (and cache per process) a SD inpainting pipeline, ControlNet-inpainting when given."""
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    key = (model, controlnet, ip_adapter, device, str(torch_dtype))
    with _PIPELINES_LOCK:
        if key in _PIPELINES:
            return _PIPELINES[key]
        from diffusers import (
            ControlNetModel,
            StableDiffusionControlNetInpaintPipeline,
            StableDiffusionInpaintPipeline,
        )

        kw: dict[str, Any] = {"dtype": torch_dtype, "local_files_only": True}
        try:
            if controlnet:
                cn = ControlNetModel.from_pretrained(controlnet, **kw)
                pipe = StableDiffusionControlNetInpaintPipeline.from_pretrained(model, controlnet=cn, **kw)
            else:
                pipe = StableDiffusionInpaintPipeline.from_pretrained(model, **kw)
            if ip_adapter:
                repo, sub, weight = parse_ip_adapter(ip_adapter)
                pipe.load_ip_adapter(repo, subfolder=sub, weight_name=weight, local_files_only=True)
        except (OSError, ValueError, EnvironmentError) as exc:
            raise BackendUnavailable(f"could not load diffusion weights ({model}"
                                     f"{', ' + controlnet if controlnet else ''}"
                                     f"{', ' + ip_adapter if ip_adapter else ''}): {exc}")
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        _PIPELINES[key] = pipe
        return pipe


def clear_pipeline_cache() -> None:
    with _PIPELINES_LOCK:
        _PIPELINES.clear()


def control_image_for(init_rgb: np.ndarray, regenerate: np.ndarray, mode: str):
    """ControlNet conditioning: "inpaint" (control_v11p_sd15_inpaint style) or "canny"."""
    import torch
    from PIL import Image

    if mode == "inpaint":
        img = init_rgb.astype(np.float32) / 255.0
        img[regenerate] = -1.0
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
    if mode == "canny":
        edges = cv2.Canny(cv2.cvtColor(init_rgb, cv2.COLOR_RGB2GRAY), 100, 200)
        return Image.fromarray(np.repeat(edges[:, :, None], 3, axis=2))
    raise GenerationFailed(f"unknown control_mode {mode!r}; use 'inpaint' or 'canny'")


# --- backends ------------------------------------------------------------------------------------

_COMMON_PARAMS = {
    "prompt", "background", "negative_prompt", "num_inference_steps", "guidance_scale", "resolution",
    "strength", "controlnet_conditioning_scale", "control_mode", "progress_callback",
}


class _DiffusionBackend(GeneratorBackend):
    version = "1.0"
    default_strength = 1.0
    extra_params: set[str] = set()
    uses_ip_adapter = False

    def __init__(
        self,
        model: str | None = None,
        *,
        controlnet: str | None = None,
        ip_adapter: str | None = None,
        device: str | None = None,
        dtype: Any = None,
        backgrounds: dict[str, str] | None = None,
        identifiers: dict[str, str] | None = None,
        negative_prompt: str = DEFAULT_NEGATIVE_PROMPT,
        num_inference_steps: int = 30,
        guidance_scale: float = 7.5,
        resolution: int = 512,
    ):
        self.model = model if model is not None else (os.environ.get(SD_INPAINT_ENV) or None)
        self.controlnet = controlnet if controlnet is not None else (os.environ.get(CONTROLNET_ENV) or None)
        ip = ip_adapter if ip_adapter is not None else (os.environ.get(IP_ADAPTER_ENV) or None)
        self.ip_adapter = ip if self.uses_ip_adapter else None
        self.device = device
        self.dtype = dtype
        self.backgrounds = dict(backgrounds or {})
        self.identifiers = dict(identifiers or {})
        self.negative_prompt = negative_prompt
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = float(guidance_scale)
        self.resolution = int(resolution)

    # availability never loads the weights: it only checks that they are present locally.
    def availability(self) -> tuple[bool, str]:
        if not self.model:
            return False, (f"set {SD_INPAINT_ENV} to a local folder or hub id (already in the local Hugging "
                           f"Face cache) of a Stable Diffusion inpainting model in diffusers format, e.g. "
                           f"stable-diffusion-v1-5/stable-diffusion-inpainting; weights are never downloaded")
        reason = _check_model_ref(self.model, "model_index.json", "a Stable Diffusion inpainting pipeline",
                                  SD_INPAINT_ENV, "stable-diffusion-v1-5/stable-diffusion-inpainting")
        if reason is None and self.controlnet:
            reason = _check_model_ref(self.controlnet, "config.json", "a ControlNet", CONTROLNET_ENV,
                                      "lllyasviel/control_v11p_sd15_inpaint")
        if reason is None and self.ip_adapter:
            reason = _check_ip_adapter(self.ip_adapter)
        return (reason is None), (reason or "")

    def pipeline(self):
        ok, reason = self.availability()
        if not ok:
            raise BackendUnavailable(reason)
        return load_pipeline(self.model, controlnet=self.controlnet, ip_adapter=self.ip_adapter,
                             device=self.device, dtype=self.dtype)

    def _init_image(self, rgb: np.ndarray, alpha: np.ndarray, params: dict) -> np.ndarray:
        return rgb

    def _extra_call_kwargs(self, pipe, params: dict, size: tuple[int, int]) -> dict:
        return {}

    def generate(self, product: ProductInput, *, seed: int, num_candidates: int = 1, **params: Any) -> list[Candidate]:
        import torch
        from PIL import Image

        ok, reason = self.availability()
        if not ok:
            raise BackendUnavailable(reason)
        if num_candidates < 1:
            raise GenerationFailed("num_candidates must be at least 1")
        rgb = as_rgb(product.image, "product image")
        alpha = product_alpha(product, rgb)
        init = self._init_image(rgb, alpha, params)
        pipe = self.pipeline()

        resolution = int(params.get("resolution", self.resolution))
        h, w = working_size(rgb.shape[0], rgb.shape[1], resolution)
        small = cv2.resize(init, (w, h), interpolation=cv2.INTER_AREA)
        small_alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
        regenerate = small_alpha < 0.5  # the background: inverse of the product alpha
        mask_img = Image.fromarray((regenerate * 255).astype(np.uint8))

        background = params.get("background")
        prompt = params.get("prompt") or build_prompt(
            product.category, background=background, backgrounds=self.backgrounds, identifiers=self.identifiers)
        negative = params.get("negative_prompt", self.negative_prompt)
        steps = int(params.get("num_inference_steps", self.num_inference_steps))
        guidance = float(params.get("guidance_scale", self.guidance_scale))
        strength = float(params.get("strength", self.default_strength))
        if not 0.0 < strength <= 1.0:
            raise GenerationFailed(f"strength must be in (0, 1], got {strength}")
        progress: ProgressCallback | None = params.get("progress_callback")

        kwargs: dict[str, Any] = dict(
            prompt=prompt, negative_prompt=negative or None, image=Image.fromarray(small), mask_image=mask_img,
            height=h, width=w, strength=strength, num_inference_steps=steps, guidance_scale=guidance,
            output_type="np",
        )
        meta_extra: dict[str, Any] = {}
        if self.controlnet:
            mode = params.get("control_mode", "inpaint")
            kwargs["control_image"] = control_image_for(small, regenerate, mode)
            kwargs["controlnet_conditioning_scale"] = float(params.get("controlnet_conditioning_scale", 0.5))
            meta_extra.update(controlnet=self.controlnet, control_mode=mode,
                              controlnet_conditioning_scale=kwargs["controlnet_conditioning_scale"])
        extra = self._extra_call_kwargs(pipe, params, (h, w))
        meta_extra.update(extra.pop("_meta", {}))
        kwargs.update(extra)
        ignored = sorted(set(params) - _COMMON_PARAMS - self.extra_params)

        candidates: list[Candidate] = []
        for i in range(num_candidates):
            cand_seed = int(seed) + i
            generator = torch.Generator("cpu").manual_seed(cand_seed)

            def on_step(_pipe, step, _t, cb_kwargs, _i=i):
                if progress is not None:
                    progress((_i + (step + 1) / max(1, steps)) / num_candidates,
                             f"candidate {_i + 1}/{num_candidates}, step {step + 1}")
                return cb_kwargs

            with torch.inference_mode():
                out = pipe(generator=generator, callback_on_step_end=on_step, **kwargs).images[0]
            gen = np.clip(np.rint(np.asarray(out, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
            final = paste_product(gen, rgb, alpha)
            meta = {
                "backend": self.name, "version": self.version, "model": self.model, "prompt": prompt,
                "negative_prompt": negative, "seed": cand_seed, "num_inference_steps": steps,
                "guidance_scale": guidance, "strength": strength, "working_size": [w, h],
                "product_pasted_back": True, **meta_extra,
            }
            if ignored:
                meta["ignored_params"] = ignored
            candidates.append(Candidate(image=final, metadata=meta, product_mask=alpha.copy()))
        if progress is not None:
            progress(1.0, "done")
        return candidates


@register
class CategoryDiffusionBackend(_DiffusionBackend):
    """SD (ControlNet-)inpainting of the background with the category prompt template."""

    name = "category-diffusion"
    default_strength = 1.0


@register
class ReferenceDiffusionBackend(_DiffusionBackend):
    """Reference-style staging: initial latent = the reference scene (with the product) noised to
    ``strength``; optional IP-Adapter on the reference. Needs ``reference_image`` (array or path)."""

    name = "reference-diffusion"
    default_strength = 0.7
    uses_ip_adapter = True
    extra_params = {"reference_image", "ip_adapter_scale"}

    def _init_image(self, rgb: np.ndarray, alpha: np.ndarray, params: dict) -> np.ndarray:
        ref = params.get("reference_image")
        if ref is None:
            raise GenerationFailed("reference-diffusion needs a reference_image (the scene whose style to follow)")
        ref_rgb = load_image_param(ref, "reference image")
        scene = cover_resize(ref_rgb, rgb.shape[0], rgb.shape[1])
        return paste_product(scene, rgb, alpha)

    def _extra_call_kwargs(self, pipe, params: dict, size: tuple[int, int]) -> dict:
        if not self.ip_adapter:
            return {}
        from PIL import Image

        scale = float(params.get("ip_adapter_scale", 0.6))
        pipe.set_ip_adapter_scale(scale)
        ref_rgb = load_image_param(params["reference_image"], "reference image")
        return {"ip_adapter_image": Image.fromarray(ref_rgb),
                "_meta": {"ip_adapter": self.ip_adapter, "ip_adapter_scale": scale}}
