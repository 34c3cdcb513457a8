"""Examples (run from the repository root, so ``examples.*`` imports)."""
