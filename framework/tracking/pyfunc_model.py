"""MLflow "models from code" entry file: MLflow runs it to obtain the model object.

It only constructs :class:`framework.tracking.pyfunc.CharRNNTextModel`; the weights come from the
checkpoint artifact in ``load_context``.  No pickle is involved at any point.
"""

import mlflow.models

from framework.tracking.pyfunc import CharRNNTextModel

mlflow.models.set_model(CharRNNTextModel())
