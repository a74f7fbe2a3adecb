"""Test-time adaptation for classifiers: LAME, visual domain prompts and baselines (being built; see issue 6)."""
