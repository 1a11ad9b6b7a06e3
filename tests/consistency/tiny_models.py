"""Tiny randomly initialised GroundingDINO and SAM, written with save_pretrained into a folder,
so tests exercise the real transformers loading and inference code without any download."""
from __future__ import annotations

from pathlib import Path

WORDS = ["product", "bottle", "juice", "carton", "fruit", "packages", "vegetables", "can", "vase", "bowl", "."]


def build_tiny_grounding_dino(folder: Path) -> Path:
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessorPil,
        GroundingDinoProcessor,
        SwinConfig,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"))  # vocab_file= is ignored in transformers 5
    backbone = SwinConfig(image_size=64, patch_size=4, num_channels=3, embed_dim=8, depths=[1, 1], num_heads=[1, 1],
                          window_size=2, out_features=["stage1", "stage2"])
    text = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=64)
    config = GroundingDinoConfig(
        backbone_config=backbone, text_config=text, use_timm_backbone=False, d_model=32, encoder_layers=1,
        decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, num_queries=8, num_feature_levels=2, encoder_n_points=2, decoder_n_points=2,
        max_text_len=16,
    )
    model = GroundingDinoForObjectDetection(config).eval()
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def build_tiny_sam(folder: Path, hidden: int = 8) -> Path:
    """`hidden`: the width shared by the image embeddings, prompt encoder and mask decoder (the
    decoder's output masks read hidden / 8 channels)."""
    from transformers import (
        SamConfig,
        SamImageProcessorPil,
        SamMaskDecoderConfig,
        SamModel,
        SamProcessor,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vision = SamVisionConfig(hidden_size=16, output_channels=hidden, num_hidden_layers=2, num_attention_heads=2,
                             image_size=64, patch_size=8, mlp_dim=32, window_size=2, global_attn_indexes=[1],
                             num_pos_feats=hidden // 2)
    prompt = SamPromptEncoderConfig(hidden_size=hidden, image_size=64, patch_size=8, mask_input_channels=4)
    decoder = SamMaskDecoderConfig(hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2, mlp_dim=16,
                                   iou_head_hidden_dim=8)
    model = SamModel(SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)).eval()
    image_processor = SamImageProcessorPil(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
    SamProcessor(image_processor=image_processor).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder
