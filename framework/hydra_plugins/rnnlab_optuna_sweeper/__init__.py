"""rnnlab's Optuna sweeper as Hydra finds it (installed as ``hydra_plugins.rnnlab_optuna_sweeper``).

Hydra instantiates sweepers only from the ``hydra_plugins`` namespace package and imports every
module there at start-up; this one stays tiny and leaves the work (and the Optuna import) to
framework/sweeps/optuna_sweeper.py, loaded when a sweep starts.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper


class RnnlabOptunaSweeper(Sweeper):
    """``hydra/sweeper=optuna`` (conf/hydra/sweeper/optuna.yaml): an Optuna study via ask/tell."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.impl: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        from framework.sweeps.optuna_sweeper import OptunaStudySweeper

        self.hydra_context, self.config = hydra_context, config
        self.impl = OptunaStudySweeper(self.options, hydra_context=hydra_context,
                                       task_function=task_function, config=config)
        self.launcher = self.impl.launcher

    def sweep(self, arguments: list[str]) -> Any:
        return self.impl.sweep(arguments)
