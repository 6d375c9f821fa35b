"""Reading dataset files: finding them (user path, data directory, pinned download)
and parsing their formats."""
