"""rl/spirl."""
