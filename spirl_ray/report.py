"""``python -m spirl_ray.report TUNE_DIR --out FOLDER``: see :mod:`spirl_ray.experiments.report`."""

import sys

from spirl_ray.experiments.report import main

if __name__ == "__main__":
    sys.exit(main())
