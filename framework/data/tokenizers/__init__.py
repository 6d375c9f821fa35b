"""Tokenizers (registry TOKENIZERS): split texts into symbols and fit a vocabulary on them."""
