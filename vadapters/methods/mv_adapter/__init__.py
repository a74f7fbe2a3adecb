"""MV-Adapter: multi-view consistent generation (being built; see issue 8)."""
