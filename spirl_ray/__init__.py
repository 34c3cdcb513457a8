"""spirl-ray: SPiRL (Pertsch, Lee, Lim, CoRL 2020) on Ray RLlib and Ray Tune.

Layers, each importing only the ones before it:

``envs``        the MuJoCo environments (FrankaKitchen-v1 with D4RL's state layout).
``data``        scripted experts, offline data collection, D4RL/Minari readers.
``skills``      the skill VAE and skill prior (offline stage, paper §3.2, eq. 4).
``rl``          the skill env and SPiRL as an RLlib algorithm (online stage, Alg. 1).
``experiments`` validated configs, the data → prior → RL pipeline under Tune.
"""

__version__ = "0.1.0"
