"""``python -m spirl_ray.prior_report --config FILE --out DIR``: see :mod:`spirl_ray.experiments.prior_report`."""

import sys

from spirl_ray.experiments.prior_report import main

if __name__ == "__main__":
    sys.exit(main())
