"""The benchmark's sentiment row: the preset's model through the trainer, and PyTorch's twin."""

from __future__ import annotations

import numpy as np
import pytest

from framework.studies import bench
from tests.conftest import dataset_files, needs_data


@needs_data(*dataset_files("rotten_tomatoes"))
def test_sentiment_trainer_is_the_presets_model():
    trainer = bench.make_sentiment_trainer(hidden=8, batch=3)
    rc = trainer.rc
    assert (rc.dataset.name, rc.tokenizer.name, rc.cell.name) == ("rotten_tomatoes", "words",
                                                                   "lstm")
    assert rc.model.bidirectional and rc.model.embedding.size == bench.SENTIMENT_EMBEDDING
    assert trainer.model.params["embedding.W"].shape == (trainer.vocab.size, 50)
    before = trainer.model.params["embedding.W"].copy()
    assert int(trainer.train_step().tokens) == 3  # texts
    assert not np.array_equal(before, trainer.model.params["embedding.W"])


@needs_data(*dataset_files("rotten_tomatoes"))
@pytest.mark.parametrize("trainable", [True, False])
def test_torch_twin_embeds_and_pads_with_zeros(trainable: bool):
    torch = pytest.importorskip("torch")
    from framework.studies.bench_refs import TorchClassifyLoop

    trainer = bench.make_sentiment_trainer(hidden=8, batch=4)
    V = trainer.vocab.size
    ref = TorchClassifyLoop("lstm", V, 8, 2, trainer.feed, 1e-3, 5.0, bidirectional=True,
                            embedding=(50, trainable))
    batch = trainer.feed.batch(0)
    assert (batch.inputs == -1).any()  # the check needs padding
    with torch.no_grad():
        x = ref.embedding(torch.from_numpy(batch.inputs) % (V + 1))
        assert torch.equal(x[torch.from_numpy(batch.inputs == -1)], torch.zeros(1, 50).expand(
            int((batch.inputs == -1).sum()), 50))
    table = ref.embedding.weight.detach().clone()
    assert ref.step() == 4
    assert torch.equal(table, ref.embedding.weight) != trainable  # updated only when trainable
