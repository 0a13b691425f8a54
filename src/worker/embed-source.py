# Build step: turns a Python source file into a C string constant and,
# given the code object's filename, the module's code object compiled now
# and marshalled (SYMBOL_code, SYMBOL_code_size), with the bytecode magic
# of the Python that compiled it (SYMBOL_magic). The worker loads the
# marshalled code when its interpreter has the same magic, and compiles
# the source otherwise: compiling runner.py and runtime.py took ~6.7 ms of
# every worker's start-up, on the first run of a cold environment's path.
import importlib.util
import marshal
import sys

src, out, symbol = sys.argv[1], sys.argv[2], sys.argv[3]
code_name = sys.argv[4] if len(sys.argv) > 4 else None
data = open(src, "rb").read()


def emit(f, ctype, name, blob, terminate):
    f.write("const %s %s[] = {\n" % (ctype, name))
    for i in range(0, len(blob), 16):
        f.write("".join("%d," % b for b in blob[i:i + 16]) + "\n")
    f.write("0};\n" if terminate else "};\n")


with open(out, "w") as f:
    f.write("/* generated from %s: do not edit */\n" % src.split("/")[-1])
    f.write("#include <stddef.h>\n")
    emit(f, "char", symbol, data, True)
    if code_name:
        # optimize=0 and no inherited flags: what Py_CompileString() does
        # in the worker (asserts kept).
        code = compile(data, code_name, "exec", dont_inherit=True, optimize=0)
        blob = marshal.dumps(code)
        emit(f, "unsigned char", symbol + "_code", blob, False)
        f.write("const size_t %s_code_size = %d;\n" % (symbol, len(blob)))
        f.write("const long %s_magic = %d;\n" % (symbol, int.from_bytes(importlib.util.MAGIC_NUMBER, "little")))
