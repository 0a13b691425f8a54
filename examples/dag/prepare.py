"""Task `prepare`: read the dataset attached with `data: [words]`."""
import os

from pysprinter import data_path


def prepare(limit: int = 100):
    with open(os.path.join(data_path("words"), "words.txt")) as f:
        words = f.read().split()[:limit]
    return {"words": words, "count": len(words)}
