"""Corpora: what a dataset plugin loads (texts, labelled texts, series), split for
training and validation."""
