"""MLflow "models from code" entry file: MLflow runs it to obtain the model object.

It loads rnnlab's plugins (``RNNLAB_PLUGIN_PATH`` folders and entry points), so that a checkpoint
of a plugin task or cell is served, then constructs
:class:`framework.tracking.pyfunc.CharRNNTextModel`; the weights come from the checkpoint
artifact in ``load_context``.  No pickle is involved at any point.
"""

import mlflow.models

from framework.plugins import load_plugins
from framework.tracking.pyfunc import CharRNNTextModel

load_plugins()
mlflow.models.set_model(CharRNNTextModel())
