"""data/scripted."""
