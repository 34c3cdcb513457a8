"""``python -m spirl_ray.viz {exploration,trajectories} ...``: see :mod:`spirl_ray.experiments.viz`."""

import sys

from spirl_ray.experiments.viz import main

if __name__ == "__main__":
    sys.exit(main())
