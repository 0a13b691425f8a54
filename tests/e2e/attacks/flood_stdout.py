import sys

@requirements({})
def main():
    block = "x" * (1 << 20)
    for _ in range(1024):  # 1 GiB, no newline
        sys.stdout.write(block)
    return "done"
