"""Feeds (registry FEEDS): turn a corpus into training and validation batches."""
