@requirements({})
def main():
    held = []
    try:
        while True:
            held.append(open("/dev/null"))
    except OSError as e:
        return {"opened": len(held), "error": e.strerror}
