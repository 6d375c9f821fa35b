"""rnnlab: a plugin-based experiment framework for recurrent sequence models in NumPy.

The modules directly in this package are the public entry points: ``registry`` (the plugin
registries), ``errors`` (the user-facing error types), ``plugins`` (plugin discovery) and one module
per command (``python -m framework``, ``framework.generate``, ``framework.compare``,
``framework.bench``, ``framework.coursebench``, ``framework.vanishing``). The work is done in the
subpackages: ``nn`` (numerical core), ``data`` (datasets and feeds), ``training`` (config, trainer,
checkpoints, process runtime), ``tracking`` (MLflow and sweeps), ``cli`` (the commands),
``course`` (the course reproduction) and ``studies`` (benchmarks and studies).
"""

from pathlib import Path

__version__ = "0.1.0"

# The repository root: conf/, experiments/ and the plugin folders cells/ and datasets/ live here.
ROOT = Path(__file__).resolve().parent.parent
