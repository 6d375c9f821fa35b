"""Surnames by language, the PyTorch tutorial's data: 18 classes, one file per language.

20,050 lines; 18,012 distinct (name, language) pairs, 17,450 distinct names.  UTF-8 is kept
(accents and all) unless ``dataset.ascii=true``.  The label is the file name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from framework.data import Source, check_common, github_raw, locate
from framework.data.corpora.labelled import LabelledTextDataset
from framework.data.files.readers import read_label_folder, read_lines, user_path
from framework.errors import DataError
from framework.registry import DATASETS

# spro/practical-pytorch, data/names/ (see shared/data/PROVENANCE.md); sha256 of each file.
_REPO, _COMMIT = "spro/practical-pytorch", "c520c52e68e945d88fff563dba1c028b6ec0197b"
_FILES = {
    "Arabic": "6f424a8dbe51cbbbabab7a57d38b617210125e4e3991f3c657cb79b8f104bafc",
    "Chinese": "09ba8f1f7e38dbc99372d461b26ad4433b811fc6bfa6a3ecca6fe11a9a777465",
    "Czech": "e17ab0ec47616a72c39cb85c783f70c3663ab64488721e5d8378f146d2226be7",
    "Dutch": "924f32b635170eae561f84538632138fc07d4c8bbd70ba3fb980de1ecc4d2af3",
    "English": "9cca037066d3d5989e24bc01801416162de506b5e28e15b7c092a47905d29bf2",
    "French": "81e65b36c60ed5b89a17422f6edcadbb89546f38ad69e960e64e7ba682012a95",
    "German": "7449cd590b97a733e18d613a4155decd77ec35dc5f8aadd7a82204dce4f051db",
    "Greek": "3555b5186de7f401e6d991b088e9e644ca3099116477818c25ab5793801389e6",
    "Irish": "cf8c7013256252a88d2503127b87282a11f21b2ff6db1bded68834c19a1ec058",
    "Italian": "f88414c27d0606a11a678b4859277828c2565d6cc4d9ee932deef6e94f3b35e4",
    "Japanese": "e0e717e114fec3e7eade4d9dabe0067c475f43147e36a22b47902ee76ad9e67f",
    "Korean": "cd54221ccb362a6cba4c78828838cf3268a0e59744767a37cf6ec4b74036b136",
    "Polish": "45bab898af2f60ed3a728bbf6980e28821011a7caa53227553b5785903a40826",
    "Portuguese": "50a8735f41f4f73757c8ce5b16cb0275cd86b2b214bcbc8c9805f508cb131c53",
    "Russian": "0cfe53ac18041e8f63666aa77313e0a3ff378facb132abee052d8ebdc8c3d62c",
    "Scottish": "78d0252711d87d948ea86fe34826c51d2d794a8e52d15b5d6f7b6244d45d62dd",
    "Spanish": "1bcb462ed3316756a85781d68232bddae04498fdddd5d9219c53fd1fbdeba7a7",
    "Vietnamese": "f3f9e4164ab47601178a6e45b216464a64122f49d05541f24bf18a757253281d",
}


@dataclass
class NamesConfig:
    name: str = "names"
    path: str | None = None  # a folder of <Language>.txt (your copy, not checksummed)
    val_fraction: float = 0.1  # fraction of the distinct names held out (all their labels)
    split_seed: int = 0  # seed of the held-out names, fixed independently of the run seed
    ascii: bool = False  # fold to ASCII (NFKD, accents dropped, ß -> ss)
    lower: bool = False

    def __post_init__(self) -> None:
        check_common(self.val_fraction, self.split_seed)


@DATASETS.register("names", schema=NamesConfig)
class Names(LabelledTextDataset):
    schema = NamesConfig
    sources = tuple(
        Source(f"names/{lang}.txt", github_raw(_REPO, _COMMIT, f"data/names/{lang}.txt"), sha)
        for lang, sha in _FILES.items()
    )

    def read(self) -> tuple[list[str], list[str], list[str], str]:
        if self.config.path:
            folder = user_path(self.config.path)
            if not folder.is_dir():
                raise DataError(f"dataset.path {folder} is not a folder; point it at a folder "
                                f"of <Language>.txt files")
            texts, labels, classes = read_label_folder(folder)
            return texts, labels, classes, str(folder)
        texts, labels, classes = [], [], []
        folder = None
        for source in self.sources:
            path = locate(source)
            lang = Path(source.filename).stem
            lines = read_lines(path)
            texts += lines
            labels += [lang] * len(lines)
            classes.append(lang)
            folder = path.parent
        return texts, labels, classes, str(folder)
