"""The user's labelled texts: a folder of ``<label>.txt`` files (one text per line) or a
two-column ``text<TAB>label`` file."""

from __future__ import annotations

from dataclasses import dataclass

from framework.data import check_common
from framework.data.corpora.labelled import LabelledTextDataset
from framework.data.files.readers import read_label_folder, read_label_tsv, user_path
from framework.registry import DATASETS


@dataclass
class LabelledTextFileConfig:
    name: str = "labelled_textfile"
    path: str | None = None  # required: a folder of <label>.txt files, or a text<TAB>label file
    val_fraction: float = 0.1  # fraction of the distinct texts held out (all their labels)
    split_seed: int = 0
    ascii: bool = False  # fold to ASCII (NFKD, accents dropped)
    lower: bool = False

    def __post_init__(self) -> None:
        check_common(self.val_fraction, self.split_seed)


@DATASETS.register("labelled_textfile", schema=LabelledTextFileConfig)
class LabelledTextFile(LabelledTextDataset):
    schema = LabelledTextFileConfig
    needs_path = True
    contract_skip = "reads the user's labelled files: tests/data/test_taskdata.py writes them"

    def read(self) -> tuple[list[str], list[str], list[str] | None, str]:
        path = user_path(str(self.config.path))
        if path.is_dir():
            texts, labels, classes = read_label_folder(path)
            return texts, labels, classes, str(path)
        texts, labels = read_label_tsv(path)
        return texts, labels, None, str(path)
