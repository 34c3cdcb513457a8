"""Performance benchmarks of spirl-ray (run: ``python -m benchmarks.run [--quick]``)."""
