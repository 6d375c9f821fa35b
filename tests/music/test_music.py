"""Music: token vocabularies, the event encoding and its repairs, MIDI files, the chorale and MIDI
datasets, the parsed-corpus cache, training, sampling to MIDI and resume on music.

Tests that parse scores or write MIDI need music21 (``pip install -e ".[music]"``) and skip
without it; the vocabulary, encoding and piano-roll tests do not.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from framework.data.vocab import Vocab
from framework.errors import ConfigError, DataError
from framework.music.encoding import (
    BAR,
    END,
    HOLD,
    REST,
    EncodingOptions,
    Note,
    Piece,
    piece_to_tokens,
    pitch_token,
    token_pitch,
    tokens_to_piece,
)
from framework.nn.generation import generate
from framework.plugins import ROOT, load_plugins
from framework.registry import DATASETS, SAMPLERS
from tests.helpers import cli, run_cli, run_config

HAS_MUSIC21 = importlib.util.find_spec("music21") is not None
needs_music21 = pytest.mark.skipif(not HAS_MUSIC21, reason='music21 is not installed: '
                                   'pip install -e ".[music]"')
OPTS = EncodingOptions(resolution=4, voices=4, transpose=False)
FEW = ["dataset=bach_chorales", "dataset.limit=6", "cell.hidden_size=8", "train.batch_size=2",
       "train.feed=stream", "train.seq_len=16", "train.log_every=1", "train.eval_every=0",
       "train.eval_batches=2", "train.sample_every=2", "train.num_samples=2",
       "train.sample_length=70", "train.checkpoint_every=0", "mlflow.enabled=false"]


# ------------------------------------------------------------------------ token vocabularies


def test_character_vocabulary_json_is_unchanged():
    # Resume compares this JSON verbatim, so old checkpoints depend on every byte of it.
    vocab = Vocab.from_text("ba\n", eos="\n")
    assert vocab.to_json() == ('{"format": "rnnlab-vocab", "version": 1, "chars": ["\\n", "a", '
                               '"b"], "eos": "\\n"}')
    assert Vocab.from_json(vocab.to_json()) == vocab and vocab.is_chars and vocab.sep == ""


def test_token_vocabulary_encodes_decodes_and_round_trips_through_json():
    vocab = Vocab.from_tokens(["C4", "_", "|", "R", "C4", "G3"], eos=END)
    assert vocab.tokens == tuple(sorted({"C4", "_", "|", "R", "G3", END}))
    ids = vocab.encode("| C4 _ G3")
    np.testing.assert_array_equal(ids, vocab.encode(["|", "C4", "_", "G3"]))
    assert vocab.decode(ids) == "| C4 _ G3" and vocab.decode_symbols(ids)[1] == "C4"
    again = Vocab.from_json(vocab.to_json())
    assert again == vocab and again.kind == "tokens" and json.loads(vocab.to_json())["version"] == 2
    with pytest.raises(DataError, match="2 token.*'D9', 'X'"):
        vocab.encode("C4 X D9")
    with pytest.raises(DataError, match="without whitespace"):
        Vocab(("a b",), kind="tokens")


def test_generation_over_tokens_joins_with_spaces_and_names_unknown_prompt_tokens():
    load_plugins()
    vocab = Vocab.from_tokens(["A4", "B4", "C5"], eos=END)
    table = np.zeros((vocab.size + 1, vocab.size))
    table[-1, vocab.stoi["A4"]] = table[vocab.stoi["A4"], vocab.stoi["B4"]] = 20.0
    table[vocab.stoi["B4"], vocab.stoi["C5"]] = table[vocab.stoi["C5"], vocab.stoi[END]] = 20.0

    class Table:
        def zero_state(self, batch):
            return None

        def step(self, ids, state):
            return table[np.asarray(ids)].copy(), state

    greedy = SAMPLERS.build({"name": "greedy"})
    assert generate(Table(), vocab, greedy, length=10) == ["A4 B4 C5"]
    assert generate(Table(), vocab, greedy, prompt="  B4 ", length=10) == ["B4 C5"]
    with pytest.raises(DataError, match="tokens that are not in the vocabulary: 'Q'"):
        generate(Table(), vocab, greedy, prompt="A4 Q")


# ------------------------------------------------------------------------ the encoding


def test_pitch_tokens_are_midi_numbers_spelled_with_sharps():
    assert [pitch_token(m) for m in (60, 61, 69, 0, 127)] == ["C4", "C#4", "A4", "C-1", "G9"]
    assert all(token_pitch(pitch_token(m)) == m for m in range(128))
    assert token_pitch(HOLD) is None
    with pytest.raises(DataError, match="not an event of the music encoding"):
        token_pitch("H4")


def test_piece_and_tokens_round_trip():
    piece = Piece(notes=[Note(0, 0, 4, 72), Note(1, 0, 2, 67), Note(2, 0, 4, 64),
                         Note(3, 1, 4, 48), Note(1, 2, 4, 67)],  # in (start, voice) order
                  n_steps=4, bars=[0], options=OPTS)
    tokens = piece_to_tokens(piece)
    assert tokens == [BAR, "C5", "G4", "E4", REST, HOLD, HOLD, HOLD, "C3",
                      HOLD, "G4", HOLD, HOLD, HOLD, HOLD, HOLD, HOLD]
    back = tokens_to_piece(tokens, OPTS)
    assert back.notes == piece.notes and back.bars == [0] and back.repairs == 0


def test_invalid_sequences_are_repaired_not_refused():
    # A hold in a silent voice; a bar inside a step (it ends the step: the tenor and bass hold
    # and the next token is the soprano's); an unfinished last step; text after <end>.
    tokens = [HOLD, "C4", "G3", "C3", "D4", HOLD, BAR, "E4", "F4", "A3", END, "G4"]
    piece = tokens_to_piece(tokens, OPTS)
    assert piece.repairs == 3 and piece.n_steps == 3 and piece.bars == [2]
    assert piece.voice(0) == [Note(0, 1, 2, 62), Note(0, 2, 3, 64)]
    assert piece.voice(1) == [Note(1, 0, 2, 60), Note(1, 2, 3, 65)]
    assert piece.voice(2) == [Note(2, 0, 2, 55), Note(2, 2, 3, 57)]
    assert piece.voice(3) == [Note(3, 0, 3, 48)]  # held through the cut step and the last one
    with pytest.raises(DataError, match="'x'"):
        tokens_to_piece(["C4", "x"], OPTS)


def test_any_token_sequence_decodes_to_one_note_at_a_time_per_voice():
    rng = np.random.default_rng(0)
    alphabet = [BAR, HOLD, REST, "C4", "E4", "G4", "C3"]
    for _ in range(200):
        tokens = list(rng.choice(alphabet, size=int(rng.integers(0, 40))))
        piece = tokens_to_piece(tokens, OPTS)
        for v in range(OPTS.voices):
            notes = piece.voice(v)
            assert all(a.end <= b.start for a, b in zip(notes, notes[1:], strict=False))
            assert all(0 <= n.start < n.end <= piece.n_steps for n in notes)
        # Re-encoding a repaired piece gives a valid sequence: it decodes with no repair.
        again = tokens_to_piece(piece_to_tokens(piece), OPTS)
        assert again.notes == piece.notes and again.repairs == 0


def test_piano_roll_is_a_png(tmp_path):
    from framework.music.pianoroll import save_piano_roll

    piece = tokens_to_piece([BAR, "C5", "G4", "E4", "C3"] + [HOLD] * 12, OPTS)
    path = save_piano_roll(piece, tmp_path / "roll.png", title="C major")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_music21_the_music_datasets_name_the_extra(monkeypatch):
    load_plugins()
    monkeypatch.setitem(sys.modules, "music21", None)  # makes `import music21` fail
    for name, extra in (("bach_chorales", {}), ("midi", {"path": "x"})):
        with pytest.raises(ConfigError, match=r'needs the optional package music21; install '
                                              r'it with pip install -e "\.\[music\]"'):
            DATASETS.build({"name": name, **extra})


def test_only_music_checkpoints_write_midi(tmp_path):
    from framework.music.generated import encoding_of_checkpoint, output_paths

    meta = {"config": {"dataset": {"name": "dinos"}}, "vocab": Vocab.from_text("ab").to_json()}
    with pytest.raises(ConfigError, match="needs a model trained on a music dataset.*'dinos'"):
        encoding_of_checkpoint(meta)
    meta = {"config": {"dataset": {"name": "bach_chorales", "resolution": 2}}}
    assert encoding_of_checkpoint(meta) == EncodingOptions(resolution=2)
    assert [p.name for p in output_paths(tmp_path / "x.mid", 2)] == ["x_1.mid", "x_2.mid"]


@pytest.mark.parametrize("name", ["bach_chorales", "midi"])
def test_music_config_files_are_the_schema_defaults(name):
    import yaml

    load_plugins()
    node = yaml.safe_load((ROOT / "conf" / "dataset" / f"{name}.yaml").read_text())
    assert set(node) == set(DATASETS.schema(name).__dataclass_fields__)
    assert DATASETS.validate(node) == DATASETS.schema(name)()


def test_music_dataset_options_are_checked():
    load_plugins()
    with pytest.raises(ConfigError, match="resolution must be one of"):
        DATASETS.validate({"name": "bach_chorales", "resolution": 5})
    with pytest.raises(ConfigError, match="limit must be >= 1"):
        DATASETS.validate({"name": "bach_chorales", "limit": 0})
    with pytest.raises(ConfigError, match="val_fraction"):
        DATASETS.validate({"name": "midi", "val_fraction": 1.0})


# ------------------------------------------------------------------------ with music21


@pytest.fixture(scope="module")
def chorale():
    pytest.importorskip("music21", reason='music21 is not installed: pip install -e ".[music]"')
    from music21 import converter

    load_plugins()
    from rnnlab_plugins.datasets.bach_chorales import chorale_files

    name, path = chorale_files(limit=1)[0]
    return name, converter.parse(str(path), forceSource=True)


def _chorales(**options):
    load_plugins()
    return DATASETS.build({"name": "bach_chorales", **options}).load()


@needs_music21
def test_real_chorale_encodes_every_note_and_round_trips(chorale):
    from framework.music.encoding import score_to_piece

    name, score = chorale
    assert name == "bach/bwv269"  # Riemenschneider no. 1, in G major, 3/4 with a pickup
    piece = score_to_piece(score, EncodingOptions())
    assert piece.info == {"key": "G major", "shift": 5}
    for v, part in enumerate(score.parts):
        originals = sorted(n.pitch.midi + 5 for n in part.stripTies().flatten().notes)
        assert sorted(n.pitch for n in piece.voice(v)) == originals  # no note lost
    tokens = piece_to_tokens(piece)
    assert tokens[0] == BAR and len(tokens) == piece.n_steps * 4 + len(piece.bars)
    back = tokens_to_piece(tokens, piece.options)
    assert back.notes == piece.notes and back.repairs == 0 and back.steps_per_bar == 12
    # The soprano's first notes: G4 (pickup), then G4 D5, up a fourth to C.
    assert [pitch_token(n.pitch) for n in piece.voice(0)[:3]] == ["C5", "C5", "G5"]


@needs_music21
def test_midi_file_round_trip(chorale, tmp_path):
    from framework.music.encoding import score_to_piece
    from framework.music.midi import midi_notes, read_midi, write_midi

    piece = score_to_piece(chorale[1], EncodingOptions(resolution=4))
    path = write_midi(piece, tmp_path / "c.mid")
    assert path.read_bytes()[:4] == b"MThd"
    parts = midi_notes(path)
    assert [len(p) for p in parts] == [len(piece.voice(v)) for v in range(4)]
    for v, notes in enumerate(parts):
        assert all(a[1] <= b[0] for a, b in zip(notes, notes[1:], strict=False))  # no overlap
        assert [p for _, _, p in notes] == [n.pitch for n in piece.voice(v)]
    again = score_to_piece(read_midi(path), EncodingOptions(transpose=False))
    assert again.notes == piece.notes


@needs_music21
def test_chorale_corpus_is_split_by_chorale_with_a_fixed_seed():
    corpus = _chorales(limit=6, val_fraction=0.34)
    assert corpus.kind == "lines" and corpus.vocab.kind == "tokens" and corpus.vocab.eos == END
    assert (corpus.n_train, corpus.n_val) == (4, 2)
    pieces = corpus.metadata["pieces"]
    assert len(pieces) == 6 and corpus.metadata["skipped"] == []
    for ids in [*corpus.train, *corpus.val]:  # whole chorales: each starts with a bar line
        assert corpus.vocab.chars[ids[0]] == BAR and corpus.vocab.eos_id not in ids
    again = _chorales(limit=6, val_fraction=0.34)
    assert all(np.array_equal(a, b) for a, b in zip(corpus.val, again.val, strict=True))
    other = _chorales(limit=6, val_fraction=0.34, split_seed=3)
    assert any(not np.array_equal(a, b) for a, b in zip(corpus.val, other.val, strict=True))


@needs_music21
def test_parsed_chorales_are_cached_as_json_and_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNLAB_CACHE_DIR", str(tmp_path))
    first = _chorales(limit=3)
    files = list((tmp_path / "music").glob("bach_chorales-*.json"))
    assert len(files) == 1
    stored = json.loads(files[0].read_text())
    assert stored["key"]["options"] == {"resolution": 4, "voices": 4, "transpose": True}
    assert len(stored["pieces"]) == 3

    import music21.converter

    def no_parsing(*args, **kwargs):
        raise AssertionError("a cached chorale was parsed again")

    monkeypatch.setattr(music21.converter, "parse", no_parsing)
    second = _chorales(limit=3)
    assert all(np.array_equal(a, b) for a, b in zip(first.train, second.train, strict=True))
    # Other encoding options are another cache file, never a stale hit.
    with pytest.raises(DataError, match="parsed again"):
        _chorales(limit=3, resolution=2)


@needs_music21
def test_chorales_are_parsed_without_unpickling(monkeypatch):
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    corpus = _chorales(limit=2, cache=False, val_fraction=0.0)
    assert corpus.n_train == 2 and corpus.metadata["skipped"] == []


@needs_music21
def test_training_logs_samples_as_midi_and_piano_rolls(tmp_path):
    from framework.music.midi import midi_notes
    from framework.training.trainer import Reporter, Trainer

    class Tracker:
        def __init__(self):
            self.artifacts = []

        def log_metrics(self, values, step):
            pass

        def log_artifacts(self, local_dir, artifact_path=None):
            self.artifacts.append((local_dir, artifact_path))

    tracker, lines = Tracker(), []
    rc = run_config([*FEW, "train.steps=4"])
    trainer = Trainer(rc, out_dir=tmp_path, reporter=Reporter(tracker, lines.append))
    result = trainer.run()
    assert result.steps == 4 and np.isfinite(trainer.evaluate()["val_loss"])
    assert [a for _, a in tracker.artifacts] == ["samples/step_0000000", "samples/step_0000002"]
    folder = tmp_path / "samples" / "step_0000002"
    assert sorted(p.name for p in folder.iterdir()) == ["sample_0.mid", "sample_0.png",
                                                        "sample_1.mid", "sample_1.png"]
    assert any(line.startswith("  sample_0.mid: ") and "repairs" in line for line in lines)
    for part in midi_notes(folder / "sample_0.mid"):
        assert all(a[1] <= b[0] for a, b in zip(part, part[1:], strict=False))


@needs_music21
def test_resume_on_the_music_dataset_is_bit_identical(tmp_path):
    from framework.training.trainer import Reporter, Trainer

    class Quiet:
        def log_metrics(self, values, step):
            pass

    def trainer(steps, where):
        rc = run_config([*FEW, f"train.steps={steps}", "train.sample_every=0"])
        return Trainer(rc, out_dir=tmp_path / where, reporter=Reporter(Quiet(), lambda _: None))

    full = trainer(6, "full")
    full.run()
    half = trainer(3, "half")
    half.run()
    resumed = trainer(6, "resumed")
    resumed.restore(half.last_checkpoint)
    resumed.run()
    for name, value in full.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[name], value, err_msg=name)


@needs_music21
def test_generate_writes_each_sample_as_a_midi_file(tmp_path):
    from framework.music.midi import midi_notes
    from framework.training.trainer import Reporter, Trainer

    class Quiet:
        def log_metrics(self, values, step):
            pass

    rc = run_config([*FEW, "train.steps=2", "train.sample_every=0"])
    trainer = Trainer(rc, out_dir=tmp_path, reporter=Reporter(Quiet(), lambda _: None))
    checkpoint = trainer.run().final_checkpoint
    proc = run_cli("framework.generate", [f"checkpoint={checkpoint}", "num_samples=2",
                                          "length=40", "seed=1", "prompt='| C5 G4 E4 C3'",
                                          f"out={tmp_path / 'piece.mid'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    paths = [tmp_path / "piece_1.mid", tmp_path / "piece_2.mid"]
    assert proc.stdout.splitlines()[0].startswith(f"{paths[0]}: ")
    for path in paths:
        parts = midi_notes(path)
        assert len(parts) == 4 and [p[2] for p in parts[0][:1]] == [72]  # the prompt's C5
    # out= names a MIDI file; anything else is one line saying so.
    proc = run_cli("framework.generate", [f"checkpoint={checkpoint}", "out=piece.txt"],
                   cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and ".mid" in proc.stderr


@needs_music21
def test_midi_folder_dataset(tmp_path, chorale):
    from framework.music.encoding import score_to_piece
    from framework.music.midi import write_midi

    piece = score_to_piece(chorale[1], EncodingOptions(transpose=False))
    folder = tmp_path / "midi"
    for i in range(3):
        shifted = Piece([Note(n.voice, n.start, n.end, n.pitch + i) for n in piece.notes],
                        piece.n_steps, piece.bars, piece.options)
        write_midi(shifted, folder / f"song{i}.mid")
    solo = Piece(piece.voice(0), piece.n_steps, piece.bars, EncodingOptions(voices=1))
    write_midi(solo, folder / "sub" / "solo.MID")
    load_plugins()
    corpus = DATASETS.build({"name": "midi", "path": str(folder), "val_fraction": 0.0}).load()
    assert corpus.metadata["pieces"] == ["song0.mid", "song1.mid", "song2.mid"]
    assert corpus.metadata["skipped"] == ["sub/solo.MID: 1 voices with notes, the encoding has 4"]
    assert corpus.n_train == 3
    # Transposed to C, the three transpositions are one piece.
    assert all(np.array_equal(corpus.train[0], t) for t in corpus.train[1:])
    with pytest.raises(ConfigError, match="dataset.path="):
        DATASETS.build({"name": "midi"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .mid or .midi files"):
        DATASETS.build({"name": "midi", "path": str(tmp_path / "empty")}).load()
    with pytest.raises(DataError, match="no piece the encoding can use.*set dataset.voices"):
        DATASETS.build({"name": "midi", "path": str(folder / "sub")}).load()


@needs_music21
@pytest.mark.slow
def test_the_whole_chorale_corpus(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNLAB_CACHE_DIR", str(tmp_path))
    corpus = _chorales()
    n = len(corpus.metadata["pieces"])
    assert n + len(corpus.metadata["skipped"]) == 350
    assert n >= 330 and corpus.n_val == round(n * 0.1)


@needs_music21
@pytest.mark.slow
def test_a_sweep_on_chorales_logs_midi_samples_to_mlflow(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = cli("framework", ["-m", "cell=rnn,gru", "dataset=bach_chorales", "dataset.limit=4",
                             "train.steps=3", "cell.hidden_size=8", "train.batch_size=2",
                             "train.feed=stream", "train.seq_len=16", "train.eval_every=0",
                             "train.sample_every=2", "train.num_samples=1",
                             "train.sample_length=40", "train.checkpoint_every=0",
                             "mlflow.log_model=false", "mlflow.experiment_name=music",
                             f"mlflow.tracking_uri={uri}"], tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("music")
    children = [r for r in client.search_runs([exp.experiment_id])
                if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.params["cell.name"] for r in children) == ["gru", "rnn"]
    for run in children:
        assert run.info.status == "FINISHED"
        files = {a.path for a in client.list_artifacts(run.info.run_id, "samples/step_0000002")}
        assert files == {"samples/step_0000002/sample_0.mid", "samples/step_0000002/sample_0.png"}
