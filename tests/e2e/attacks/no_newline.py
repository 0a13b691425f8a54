import sys

@requirements({})
def main():
    sys.stdout.write("partial line without newline")
    sys.stderr.write("err without newline")
    return 7
