import sys

@requirements({})
def main():
    sys.setrecursionlimit(10 ** 7)
    def f(n):
        return f(n + 1) + 1
    return f(0)
