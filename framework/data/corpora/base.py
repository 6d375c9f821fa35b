"""Base of the dataset plugins that load a labelled or series corpus (not a text).

Files are found exactly as for the text datasets (:func:`framework.data.locate`:
``dataset.path``, then ``$RNNLAB_DATA_DIR``, then the sha256-checked download cache) and read by
:mod:`framework.data.files.readers`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from framework.errors import ConfigError
from framework.registry import Plugin


class TaskDataset(Plugin):
    """Base of the task dataset plugins: ``TaskDataset(cfg)``, then ``load()`` -> corpus.

    Subclasses set ``kind`` ("labelled" or "series") and either ``source`` (one
    :class:`~framework.data.Source`) or ``sources`` (several, e.g. one file per class).
    """

    kind: ClassVar[str]
    source: ClassVar[Any] = None
    sources: ClassVar[tuple[Any, ...]] = ()
    needs_path: ClassVar[bool] = False

    def __init__(self, cfg: Any = None, /, **options: Any) -> None:
        super().__init__(cfg, **options)
        self.config = self.cfg
        if self.needs_path and not str(getattr(self.config, "path", "") or "").strip():
            raise ConfigError(f"dataset '{self.name}' has no default file; "
                              f"set dataset.path=/path/to/your/data")

    def load(self) -> Any:  # a LabelledCorpus or a SeriesCorpus
        raise NotImplementedError

