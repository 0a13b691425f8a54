"""Two independent tasks on the same input: they run concurrently."""
import time


def lengths(prepared):
    time.sleep(0.5)
    return [len(w) for w in prepared["words"]]


def initials(prepared):
    time.sleep(0.5)
    return sorted({w[0] for w in prepared["words"] if w})
