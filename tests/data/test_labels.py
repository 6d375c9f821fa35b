"""Class labels are printed one per line (predict, the per-class table, the confusion matrix), so
a label with a control character is refused when the data is loaded, naming the file."""

from __future__ import annotations

import pytest

from framework.data.corpora.labelled import check_label, labelled_corpus
from framework.errors import DataError


@pytest.mark.parametrize("label, what", [
    ("po\rs", "a control character (CARRIAGE RETURN)"),
    ("a\nb", "a control character (LINE FEED)"),
    ("x\ty", "a control character (TAB)"),
    ("ok\u200b", "a control character (ZERO WIDTH SPACE)"),
    (" ", "nothing but white space"),
])
def test_a_label_that_cannot_be_printed_on_one_line_is_refused(label, what):
    with pytest.raises(DataError) as info:
        labelled_corpus("x", ["t1", "t2", "t3"], [label, "b", label], val_fraction=0.3,
                        source="labels.tsv")
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert message == (f"labels.tsv: class label {label!r} contains {what}; labels are printed "
                       f"one per line: rename the label")


def test_printable_labels_pass():
    assert check_label("Français (fr)") == "Français (fr)"
    corpus = labelled_corpus("x", ["t1", "t2", "t3", "t4"], ["a", "b", "a", "b"],
                             val_fraction=0.25)
    assert corpus.classes == ("a", "b")
