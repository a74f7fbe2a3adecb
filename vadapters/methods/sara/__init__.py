"""SaRA: progressive sparse low-rank fine-tuning (being built; see issue 4)."""
