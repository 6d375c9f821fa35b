"""rnnlab: a plugin-based experiment framework for recurrent sequence models in NumPy.

The modules directly in this package are the public entry points: ``registry`` (the plugin
registries), ``plugins`` (plugin discovery), ``errors`` (the user-facing error types and their
one-line report), ``figures`` (the matplotlib helper every picture shares) and one module per
command (``python -m framework``, ``framework.generate``, ``framework.predict``,
``framework.compare``, ``framework.bench``, ``framework.coursebench``, ``framework.vanishing``).
The work is done in the subpackages, from the bottom floor up: ``nn`` (numerical core: cells'
shared maths, the stack, heads, models, optimizers), ``data`` (files, corpora, vocabularies,
feeds) and ``music`` (music as tokens); ``tasks`` (what differs between tasks) and ``course``
(the course reproduction); ``training`` (config, trainer, checkpoints, process runtime);
``tracking`` (MLflow) and ``sweeps`` (Hydra multiruns, Optuna, Ray); ``cli`` (the commands) and
``studies`` (benchmarks and studies). A module imports only its own floor and those below.
"""

from pathlib import Path

__version__ = "0.1.0"

# The repository root: conf/, experiments/ and the plugin folders cells/ and datasets/ live here.
ROOT = Path(__file__).resolve().parent.parent
