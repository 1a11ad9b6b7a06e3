"""A tiny, randomly initialised BLIP written to a local folder (real loading code path, no weights)."""
from __future__ import annotations

from pathlib import Path

WORDS = ["a", "photo", "of", "product", "fruit", "vegetables", "packages", "bowl", "can", "vase", "shoe"]


def write_tiny_blip(folder: Path, arch: str = "BlipForImageTextRetrieval", seed: int = 0) -> Path:
    import torch
    from transformers import BertTokenizerFast, BlipConfig, BlipForImageTextRetrieval, BlipModel
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + list("abcdefghijklmnopqrstuvwxyz")
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)  # vocab_file= is ignored in transformers 5
    tok.save_pretrained(str(folder))
    config = BlipConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=4, max_position_embeddings=40, encoder_hidden_size=32,
                         pad_token_id=0, bos_token_id=2, sep_token_id=3),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16,
        image_text_hidden_size=16,
    )
    torch.manual_seed(seed)
    model = (BlipModel if arch == "BlipModel" else BlipForImageTextRetrieval)(config)
    model.save_pretrained(str(folder))
    BlipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(str(folder))
    return folder
