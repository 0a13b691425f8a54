import errno

@requirements({})
def main(where: str = "/tmp"):
    written = 0
    chunk = b"x" * (1 << 20)
    try:
        with open(where + "/fill", "wb") as f:
            while written < (4 << 30):
                f.write(chunk)
                f.flush()
                written += len(chunk)
    except OSError as e:
        return {"errno": errno.errorcode.get(e.errno, e.errno), "written_mib": written >> 20}
    return {"errno": None, "written_mib": written >> 20}
