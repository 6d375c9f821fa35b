"""Tokenizer plugins: ``chars`` and ``tokens`` give exactly today's vocabularies (so every seeded
number stays), ``words`` follows its documented rule, fits on the training texts only, bounds its
vocabulary and survives a checkpoint's JSON; untrusted vocabulary JSON is refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from framework.data.corpora.labelled import labelled_corpus
from framework.data.corpora.text import lines_corpus, stream_corpus, token_lines_corpus
from framework.data.files.fetch import read_text
from framework.data.tokenizers.rules import split_words
from framework.data.vocab import MAX_TOKEN_CHARS, MAX_VOCAB, Vocab
from framework.errors import ConfigError, DataError
from framework.registry import DATASETS, TOKENIZERS
from tests.conftest import needs_data


def words(**options):
    return TOKENIZERS.build({"name": "words", **options})


def test_registered_kinds() -> None:
    assert {"chars", "tokens", "words"} <= set(TOKENIZERS.names())


@needs_data("dinos.txt")
def test_chars_is_the_character_vocabulary_of_every_text_corpus() -> None:
    chars = TOKENIZERS.build({"name": "chars"})
    path = DATASETS.build({"name": "dinos"}).locate()
    text = read_text(path, lower=True)
    lines = lines_corpus("dinos", text, val_fraction=0.1)
    assert chars.fit([text], eos="\n") == lines.vocab
    assert lines.vocab.stoi["\n"] == 0 and lines.vocab.stoi["a"] == 1  # the course's ids
    stream = stream_corpus("s", text, val_fraction=0.1)
    assert chars.fit([text]) == stream.vocab
    texts = ["Ab", "cd", "Ab"]
    assert chars.fit(texts) == labelled_corpus("l", texts, ["x", "y", "y"],
                                               val_fraction=0.0).vocab
    assert chars.split("a b") == ["a", " ", "b"]


def test_tokens_is_the_music_event_vocabulary() -> None:
    pieces = [["C4", "_", "|", "E4"], ["G3", "_", "C4"]]
    corpus = token_lines_corpus("music", pieces, eos="<end>", val_fraction=0.0)
    tokens = TOKENIZERS.build({"name": "tokens"})
    assert tokens.fit(pieces, eos="<end>") == corpus.vocab
    assert tokens.fit(["C4 _ | E4", "G3 _ C4"], eos="<end>") == corpus.vocab
    assert tokens.check_vocab(corpus.vocab) is corpus.vocab


def test_word_rule_splits_punctuation_and_keeps_contractions() -> None:
    text = "It's a fun, FUN movie -- don't miss it!"
    assert split_words(text) == ["it's", "a", "fun", ",", "fun", "movie", "-", "-", "don't",
                                 "miss", "it", "!"]
    assert split_words("Café au lait.", lower=False) == ["Café", "au", "lait", "."]
    assert words(lower=False).split("The END") == ["The", "END"]


def test_word_vocabulary_order_min_count_max_size() -> None:
    train = ["the movie is good", "the movie is bad", "the plot"]
    vocab = words(min_count=2).fit(train)
    assert vocab.chars == ("<unk>", "the", "is", "movie")  # by count, ties alphabetical
    assert vocab.unk_id == 0 and vocab.kind == "words" and vocab.unit == "word"
    assert words(max_size=3).fit(train).chars == ("<unk>", "the", "is")
    # The order of the texts does not change the ids.
    assert words().fit(train[::-1]) == words().fit(train)


def test_fitted_on_training_texts_only_unknown_and_padding() -> None:
    corpus = labelled_corpus("t", ["good fun", "bad plot", "great acting", "dull plot"],
                             ["p", "n", "p", "n"], val_fraction=0.5)
    vocab = words().fit(corpus.train_texts)
    held_out_words = {w for t in corpus.val_texts for w in split_words(t)}
    train_words = {w for t in corpus.train_texts for w in split_words(t)}
    for w in held_out_words - train_words:
        assert w not in vocab.stoi
    ids = vocab.encode("GOOD unseen plot")
    assert ids.tolist() == [vocab.stoi.get("good", 0), 0, vocab.stoi.get("plot", 0)]
    # The padding token encodes to -1 in a list of words; in a text the rule splits it into
    # punctuation and a word, so no text can produce it.
    assert vocab.encode(["plot", "<pad>"]).tolist() == [vocab.stoi.get("plot", 0), -1]
    assert vocab.decode(vocab.encode(corpus.train_texts[0])) == " ".join(
        split_words(corpus.train_texts[0]))


def test_end_token_for_language_models() -> None:
    vocab = words().fit(["a b", "b c"], eos="</s>")
    assert vocab.chars[:2] == ("<unk>", "</s>") and vocab.eos_id == 1


def test_word_vocabulary_round_trips_through_checkpoint_json() -> None:
    vocab = words(lower=False, unk="[UNK]", pad="[PAD]").fit(["Good movie .", "bad movie"],
                                                             eos="</s>")
    again = Vocab.from_json(vocab.to_json())
    assert again == vocab and again.lower is False and again.pad == "[PAD]"
    np.testing.assert_array_equal(again.encode("Good film"), vocab.encode("Good film"))
    data = json.loads(vocab.to_json())
    assert data["version"] == 3 and data["rule"] == "words-1"
    # Character vocabularies keep their version-1 JSON byte for byte (resume compares it).
    assert Vocab.from_text("ab\n", eos="\n").to_json() == (
        '{"format": "rnnlab-vocab", "version": 1, "chars": ["\\n", "a", "b"], "eos": "\\n"}')


def _vocab_json(**changes) -> str:
    data = json.loads(words().fit(["a b c"]).to_json())
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(("changes", "match"), [
    ({"rule": "words-0"}, "word rule"),
    ({"words": ["a", "<unk>"]}, "starts with its unknown token"),
    ({"words": ["<unk>", "a", "a"]}, "unique"),
    ({"words": ["<unk>", "x" * (MAX_TOKEN_CHARS + 1)]}, "at most"),
    ({"words": "abc"}, "list"),
    ({"pad": "a"}, "padding token"),
    ({"lower": "yes"}, "lower"),
    ({"words": ["<unk>"] + [f"w{i}" for i in range(MAX_VOCAB)]}, "1 to"),
])
def test_untrusted_word_vocabulary_json_is_refused_in_one_line(changes, match) -> None:
    with pytest.raises(DataError, match=match) as info:
        Vocab.from_json(_vocab_json(**changes))
    assert "\n" not in str(info.value) and str(info.value).startswith("malformed vocabulary")


@pytest.mark.parametrize(("options", "match"), [
    ({"min_count": 0}, "min_count"),
    ({"max_size": 1}, "max_size"),
    ({"unk": "unk"}, "could be a word"),
    ({"unk": "<x>", "pad": "<x>"}, "differ"),
    ({"pad": "a b"}, "whitespace"),
])
def test_bad_options_are_one_line_config_errors(options, match) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        words(**options)
    assert "\n" not in str(info.value) and "tokenizer 'words'" in str(info.value)


def test_nothing_to_keep_and_wrong_kind_are_data_errors() -> None:
    with pytest.raises(DataError, match="min_count"):
        words(min_count=5).fit(["a b", "c"])
    with pytest.raises(DataError, match="trained with"):
        words().check_vocab(Vocab.from_text("abc"))
