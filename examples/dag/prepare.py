"""Task `prepare`: read the dataset attached with `data: [words]`."""
from pysprinter import data_path


def prepare(limit: int = 100):
    # A dataset put from one file: data_path() is that file.
    with open(data_path("words")) as f:
        words = f.read().split()[:limit]
    return {"words": words, "count": len(words)}
