"""``python -m spirl_ray.plot EXPERIMENT_DIR``: see :mod:`spirl_ray.experiments.plot`."""

import sys

from spirl_ray.experiments.plot import main

if __name__ == "__main__":
    sys.exit(main())
