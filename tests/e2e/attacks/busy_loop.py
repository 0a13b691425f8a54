@requirements({})
def main():
    while True:
        pass
