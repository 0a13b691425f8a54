import ctypes

@requirements({})
def main():
    ctypes.memset(0, 0, 1)  # write through a NULL pointer
    return "not reached"
