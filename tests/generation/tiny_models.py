"""Tiny, randomly initialised diffusers pipelines written to a local folder for tests.

They exercise the real loading and generation code path (``from_pretrained(folder,
local_files_only=True)``) without any published weights and without network access. The
images they produce are noise-like; tests only check behaviour (sizes, product preservation,
seeding), never quality.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch


def _bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 / CLIP byte-to-printable-character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _write_byte_tokenizer(folder: Path) -> None:
    """A CLIP tokenizer over single bytes: 256 byte symbols, their ``</w>`` forms, start/end."""
    from transformers import CLIPTokenizer

    symbols = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for s in symbols:
        vocab[s] = len(vocab)
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    tok.save_pretrained(str(folder))


def _vocab_size() -> int:
    return 256 * 2 + 2


def tiny_sd_components(*, in_channels: int = 9, seed: int = 0, tmp: Path | None = None) -> dict:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        mid_block_add_attention=False,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=_vocab_size(),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=77,
            projection_dim=16,
            bos_token_id=_vocab_size() - 2,
            eos_token_id=_vocab_size() - 1,
            pad_token_id=_vocab_size() - 1,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    assert tmp is not None
    _write_byte_tokenizer(tmp / "_tok")
    tokenizer = CLIPTokenizer.from_pretrained(str(tmp / "_tok"), local_files_only=True)
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": scheduler,
        "safety_checker": None,
        "feature_extractor": None,
    }


def write_tiny_sd_inpaint(folder: Path, seed: int = 0) -> Path:
    """Save a tiny Stable Diffusion inpainting pipeline (9-channel UNet) to ``folder``."""
    from diffusers import StableDiffusionInpaintPipeline

    folder = Path(folder)
    comps = tiny_sd_components(in_channels=9, seed=seed, tmp=folder.parent / (folder.name + "_work"))
    pipe = StableDiffusionInpaintPipeline(**comps, requires_safety_checker=False)
    pipe.save_pretrained(str(folder))
    return folder


def write_tiny_controlnet(folder: Path, seed: int = 1) -> Path:
    """Save a tiny ControlNet matching the tiny UNet above."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    cn = ControlNetModel(
        in_channels=4,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        layers_per_block=1,
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=8,
        conditioning_embedding_out_channels=(4, 8, 8, 16),
    )
    cn.save_pretrained(str(folder))
    return Path(folder)


def write_tiny_ip_adapter(folder: Path, sd_folder: Path, seed: int = 2) -> Path:
    """Save a tiny IP-Adapter matching the tiny UNet in ``sd_folder``: ``folder/ip-adapter.safetensors``
    with ``folder/image_encoder/`` (a tiny CLIPVisionModelWithProjection) beside it. Returns the file."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(folder)
    torch.manual_seed(seed)
    enc = CLIPVisionModelWithProjection(
        CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         image_size=32, patch_size=8, projection_dim=16)
    )
    enc.save_pretrained(str(folder / "image_encoder"))
    unet = UNet2DConditionModel.from_pretrained(str(sd_folder), subfolder="unet", local_files_only=True)
    cross_dim = unet.config.cross_attention_dim
    tokens = 4
    state = {
        "image_proj.proj.weight": torch.randn(cross_dim * tokens, 16) * 0.2,
        "image_proj.proj.bias": torch.zeros(cross_dim * tokens),
        "image_proj.norm.weight": torch.ones(cross_dim),
        "image_proj.norm.bias": torch.zeros(cross_dim),
    }
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue  # self-attention: diffusers numbers only the cross-attention layers 1, 3, 5, ...
        attn = unet.get_submodule(name[: -len(".processor")])
        shape = attn.to_k.weight.shape
        state[f"ip_adapter.{key_id}.to_k_ip.weight"] = torch.randn(shape) * 0.2
        state[f"ip_adapter.{key_id}.to_v_ip.weight"] = torch.randn(shape) * 0.2
        key_id += 2
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "ip-adapter.safetensors"))
    return folder / "ip-adapter.safetensors"
