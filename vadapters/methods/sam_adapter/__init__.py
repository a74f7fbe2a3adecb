"""SAM-Adapter: explicit visual prompts + adapters in SAM's ViT encoder (being built; see issue 5)."""
