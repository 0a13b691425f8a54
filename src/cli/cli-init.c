/* pysprinter init [DIR] (docs/cli.md "Starting a project"): writes a
 * starter function, a test for it and a pipeline example. An existing file
 * is never overwritten: init refuses before writing anything. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char hello_py[] =
        "\"\"\"A pysprinter function: `pysprinter run hello.py -a world`.\n"
        "\n"
        "@requirements lists the pip packages the function needs ('' = any version);\n"
        "pysprinter installs them once, in a cache, and runs the function in a sandbox.\n"
        "\"\"\"\n"
        "\n"
        "\n"
        "@requirements({})\n"
        "def hello(name: str, excited: bool = False):\n"
        "    greeting = f\"hello, {name}\"\n"
        "    return greeting + \"!\" if excited else greeting\n";

static const char test_py[] =
        "\"\"\"Runs hello.py the way users will: through pysprinter (pytest -q).\"\"\"\n"
        "import json\n"
        "import os\n"
        "import pathlib\n"
        "import subprocess\n"
        "\n"
        "HERE = pathlib.Path(__file__).resolve().parent\n"
        "PYSPRINTER = os.environ.get(\"PYSPRINTER\", \"pysprinter\")\n"
        "\n"
        "\n"
        "def run(*args):\n"
        "    p = subprocess.run([PYSPRINTER, \"run\", \"--json\", str(HERE / \"hello.py\"), *args],\n"
        "                       capture_output=True, text=True, timeout=300)\n"
        "    assert p.returncode == 0, p.stderr\n"
        "    return json.loads(p.stdout.splitlines()[-1])\n"
        "\n"
        "\n"
        "def test_hello():\n"
        "    assert run(\"-a\", \"world\") == \"hello, world\"\n"
        "\n"
        "\n"
        "def test_hello_excited():\n"
        "    assert run(\"-a\", \"world\", \"--excited\", \"true\") == \"hello, world!\"\n";

static const char pipeline_yaml[] =
        "# A pipeline: `pysprinter dag run pipeline.yaml` (docs/dag.md).\n"
        "# Tasks run as soon as the tasks they reference have finished.\n"
        "name: greetings\n"
        "params:\n"
        "  who: world\n"
        "tasks:\n"
        "  plain:\n"
        "    file: hello.py\n"
        "    args: [\"${params.who}\"]\n"
        "  excited:\n"
        "    file: hello.py\n"
        "    args: [\"${params.who}\"]\n"
        "    kwargs: {excited: true}\n"
        "  both:\n"
        "    file: hello.py\n"
        "    args: [\"${plain} and ${excited}\"]\n";

static const struct {
        const char *name, *text;
} files[] = {
        { "hello.py", hello_py },
        { "test_hello.py", test_py },
        { "pipeline.yaml", pipeline_yaml },
};

int verb_init(int argc, char **argv) {
        if (argc > 1 || (argc == 1 && (streq(argv[0], "--help") || streq(argv[0], "-h")))) {
                bool help = argc == 1;
                fputs("Usage: pysprinter init [DIR]\n\n"
                      "Write a starter function (hello.py), a test for it (test_hello.py, run with\n"
                      "pytest) and a pipeline example (pipeline.yaml) into DIR (default: here).\n"
                      "Existing files are never overwritten.\n",
                      help ? stdout : stderr);
                return help ? 0 : EXIT_USAGE;
        }
        const char *dir = argc ? argv[0] : ".";
        if (dir[0] == '-') {
                cli_error("init: unknown option '%s'", dir);
                return EXIT_USAGE;
        }
        int r = mkdir_p(dir, 0755);
        if (r < 0) {
                cli_error("init: cannot create %s: %s", dir, strerror(-r));
                return EXIT_USAGE;
        }
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_free_ char *p = path_join(dir, files[i].name);
                if (access(p, F_OK) == 0) {
                        cli_error("init: %s exists; nothing was written (init never overwrites)", p);
                        return EXIT_USAGE;
                }
        }
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_free_ char *p = path_join(dir, files[i].name);
                r = write_file_atomic(p, files[i].text, strlen(files[i].text), 0644);
                if (r < 0) {
                        cli_error("init: cannot write %s: %s", p, strerror(-r));
                        return EXIT_INTERNAL;
                }
                if (!cli_globals.quiet)
                        printf("wrote %s\n", p);
        }
        if (!cli_globals.quiet)
                printf("\nnext: cd %s && pysprinter run hello.py -a world && pytest -q && pysprinter dag run "
                       "pipeline.yaml\n",
                       dir);
        return 0;
}
