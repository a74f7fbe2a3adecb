"""tiny-clip: a real `open_clip` CLIP (image + text towers) small enough to train on this machine's synthetic world.

Its text tower is a standard CLIP text transformer (causal, QuickGELU, CLIP's 49408-token BPE vocabulary and
77-token context), so it converts one-to-one into a transformers `CLIPTextModel`: the text encoder that diffusers'
`StableDiffusionPipeline` and AnimateDiff pipelines hold. `text_encoder_from_open_clip` does that conversion; the
converted encoder's last hidden state equals open_clip's token features (before pooling) exactly.

Example:
    >>> model = tiny_clip(seed=0)
    >>> sum(p.numel() for p in model.visual.parameters()) > 0, model.transformer.width
    (True, 64)
    >>> import torch
    >>> tokens = torch.randint(1, 49000, (2, 77))
    >>> encoder = text_encoder_from_open_clip(model)
    >>> ours = encoder(tokens).last_hidden_state
    >>> theirs = text_tokens(model, tokens)
    >>> bool(torch.allclose(ours, theirs, atol=1e-5))
    True
"""

from __future__ import annotations

import copy
from typing import Any

import torch

__all__ = ["TINY_CLIP_CONFIG", "text_encoder_from_open_clip", "text_tokens", "tiny_clip"]

# open_clip model config (the same JSON shape as open_clip's own `model_configs/*.json`).
TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "patch_size": 4, "width": 96, "layers": 4, "head_width": 32, "mlp_ratio": 4.0},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 3, "mlp_ratio": 4.0},
}


def tiny_clip(seed: int = 0, config: dict[str, Any] | None = None) -> Any:
    """Build the tiny `open_clip.CLIP` of `TINY_CLIP_CONFIG` (random weights, seeded)."""
    import open_clip

    cfg = copy.deepcopy(config or TINY_CLIP_CONFIG)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.CLIP(
            embed_dim=cfg["embed_dim"],
            vision_cfg=open_clip.CLIPVisionCfg(**cfg["vision_cfg"]),
            text_cfg=open_clip.CLIPTextCfg(**cfg["text_cfg"]),
            quick_gelu=cfg.get("quick_gelu", False),
        )
    return model


def text_tokens(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's per-token text features after the final LayerNorm, `[B, L, width]` (what SD's UNet attends to)."""
    x = model.token_embedding(tokens) + model.positional_embedding[: tokens.shape[1]]
    x = model.transformer(x, attn_mask=model.attn_mask[: tokens.shape[1], : tokens.shape[1]])
    return model.ln_final(x)


def text_encoder_from_open_clip(model: Any, pad_token_id: int = 49407) -> Any:
    """A transformers `CLIPTextModel` holding `model`'s text tower, weight for weight (attention `in_proj` split
    into q / k / v). `text_projection` is not part of it (SD's UNet attends to the token features)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    width = model.transformer.width
    blocks = model.transformer.resblocks
    config = CLIPTextConfig(
        vocab_size=model.vocab_size,
        hidden_size=width,
        intermediate_size=blocks[0].mlp.c_fc.out_features,
        num_hidden_layers=len(blocks),
        num_attention_heads=blocks[0].attn.num_heads,
        max_position_embeddings=model.context_length,
        projection_dim=model.text_projection.shape[1] if model.text_projection is not None else width,
        hidden_act="quick_gelu" if "QuickGELU" in type(blocks[0].mlp.gelu).__name__ else "gelu",
        layer_norm_eps=model.ln_final.eps,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=pad_token_id,
    )
    state = {
        "text_model.embeddings.token_embedding.weight": model.token_embedding.weight,
        "text_model.embeddings.position_embedding.weight": model.positional_embedding,
        "text_model.final_layer_norm.weight": model.ln_final.weight,
        "text_model.final_layer_norm.bias": model.ln_final.bias,
    }
    for i, block in enumerate(blocks):
        ours = f"text_model.encoder.layers.{i}."
        q, k, v = block.attn.in_proj_weight.chunk(3)
        qb, kb, vb = block.attn.in_proj_bias.chunk(3)
        state.update({
            ours + "self_attn.q_proj.weight": q, ours + "self_attn.q_proj.bias": qb,
            ours + "self_attn.k_proj.weight": k, ours + "self_attn.k_proj.bias": kb,
            ours + "self_attn.v_proj.weight": v, ours + "self_attn.v_proj.bias": vb,
            ours + "self_attn.out_proj.weight": block.attn.out_proj.weight,
            ours + "self_attn.out_proj.bias": block.attn.out_proj.bias,
            ours + "layer_norm1.weight": block.ln_1.weight, ours + "layer_norm1.bias": block.ln_1.bias,
            ours + "layer_norm2.weight": block.ln_2.weight, ours + "layer_norm2.bias": block.ln_2.bias,
            ours + "mlp.fc1.weight": block.mlp.c_fc.weight, ours + "mlp.fc1.bias": block.mlp.c_fc.bias,
            ours + "mlp.fc2.weight": block.mlp.c_proj.weight, ours + "mlp.fc2.bias": block.mlp.c_proj.bias,
        })  # fmt: skip
    encoder = CLIPTextModel(config)
    prefix = "" if "embeddings.token_embedding.weight" in encoder.state_dict() else "text_model."
    encoder.load_state_dict(
        {prefix + k[len("text_model.") :]: v.detach().clone() for k, v in state.items()}, strict=True
    )
    return encoder.eval()
