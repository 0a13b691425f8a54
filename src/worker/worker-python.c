/* The embedded CPython: initialisation and calls into runner.py. Python's
 * exceptions are translated to our errors here and never leave this file. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "worker.h"
#include "worker-proto.h"

#include <marshal.h>
#include <poll.h>
#include <sys/mman.h>

/* embed-source.py: each module's source, and its code object compiled and
 * marshalled at build time with the bytecode magic of that Python. */
extern const char pysprinter_runner_source[];
extern const unsigned char pysprinter_runner_source_code[];
extern const size_t pysprinter_runner_source_code_size;
extern const long pysprinter_runner_source_magic;
extern const char pysprinter_runtime_source[];
extern const unsigned char pysprinter_runtime_source_code[];
extern const size_t pysprinter_runtime_source_code_size;
extern const long pysprinter_runtime_source_magic;

static PyObject *runner;

static char *py_exception_text(void) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        char *msg = NULL;
        if (value) {
                PyObject *s = PyObject_Str(value);
                const char *u = s ? PyUnicode_AsUTF8(s) : NULL;
                msg = xasprintf("%s: %s", type ? ((PyTypeObject *) type)->tp_name : "error", u ? u : "?");
                Py_XDECREF(s);
        }
        PyErr_Clear();
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return msg ? msg : xstrdup("unknown Python error");
}

/* Whether the modules were loaded from their build-time code objects
 * (tests look: _pysprinter_runner._precompiled). */
static bool loaded_precompiled = true;

/* The module `name` executed from its code object: the build's marshalled
 * one when this interpreter reads that bytecode (same magic), else compiled
 * from source now. Returns a new reference, NULL with a Python error set. */
static PyObject *py_exec_embedded(const char *name, const char *filename, const char *source,
                                  const unsigned char *code_bytes, size_t code_size, long magic) {
        assert(name && filename && source);
        PyObject *code = NULL;
        if (magic == PyImport_GetMagicNumber()) {
                code = PyMarshal_ReadObjectFromString((const char *) code_bytes, (Py_ssize_t) code_size);
                if (code && !PyCode_Check(code))
                        Py_CLEAR(code);
                /* A blob this interpreter cannot read: compile instead. */
                PyErr_Clear();
        }
        if (!code) {
                loaded_precompiled = false;
                code = Py_CompileString(source, filename, Py_file_input);
                if (!code)
                        return NULL;
        }
        PyObject *mod = PyImport_ExecCodeModule(name, code);
        Py_DECREF(code);
        return mod;
}

/* pymalloc's arenas (1 MiB each, where CPython keeps its objects) come,
 * in the zygote, from 2 MiB-aligned chunks marked MADV_HUGEPAGE, so each
 * chunk is one transparent huge page (a large folio): the kernel copies
 * and tears down the page-table entries of a large folio as a batch (one
 * reference and mapcount update for all of its pages), not one page at a
 * time. Every run is a fork of the zygote and ends with the teardown of
 * its copy, so both get cheaper (issue 15 (c); measured in
 * docs/internals/performance-log.md, round 10: fork -30%, a child's writes and exit
 * -12% on an 8 MiB region). The first write after a fork splits the huge
 * mapping into page-table entries (copy-on-write stays per 4 KiB page);
 * the folio stays large. Cost: up to one chunk's unused half is resident
 * zeroes in each zygote. Children (runs, spares, instances) map new arenas
 * as CPython does (mmap/munmap): a run's memory is charged page by page. */
#define ARENA_CHUNK ((size_t) 2 << 20)
#define ARENA_MAX_CHUNKS 64

static bool arena_chunks_active = true;
static char *arena_chunk[ARENA_MAX_CHUNKS];
static size_t arena_n_chunks;
static size_t arena_chunk_used; /* in the last chunk */
static void *arena_free_list[2 * ARENA_MAX_CHUNKS];
static size_t arena_n_free;

static bool arena_in_chunk(const char *p) {
        for (size_t i = 0; i < arena_n_chunks; i++)
                if (p >= arena_chunk[i] && p < arena_chunk[i] + ARENA_CHUNK)
                        return true;
        return false;
}

static void *arena_mmap(size_t size) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
}

static char *arena_new_chunk(void) {
        /* Twice the size, then the aligned middle kept. */
        char *p = arena_mmap(2 * ARENA_CHUNK);
        if (!p)
                return NULL;
        char *a = (char *) (((uintptr_t) p + ARENA_CHUNK - 1) & ~(uintptr_t) (ARENA_CHUNK - 1));
        if (a > p)
                (void) munmap(p, (size_t) (a - p));
        if (a + ARENA_CHUNK < p + 2 * ARENA_CHUNK)
                (void) munmap(a + ARENA_CHUNK, (size_t) (p + 2 * ARENA_CHUNK - (a + ARENA_CHUNK)));
        /* Advice only: without it (THP off) the chunk is plain memory. */
        (void) madvise(a, ARENA_CHUNK, MADV_HUGEPAGE);
        return a;
}

static void *arena_alloc(void *ctx, size_t size) {
        (void) ctx;
        if (!arena_chunks_active || size > ARENA_CHUNK / 2)
                return arena_mmap(size);
        if (arena_n_free > 0)
                return arena_free_list[--arena_n_free];
        if (arena_n_chunks == 0 || arena_chunk_used + size > ARENA_CHUNK) {
                if (arena_n_chunks == ARENA_MAX_CHUNKS)
                        return arena_mmap(size);
                char *c = arena_new_chunk();
                if (!c)
                        return NULL;
                arena_chunk[arena_n_chunks++] = c;
                arena_chunk_used = 0;
        }
        void *r = arena_chunk[arena_n_chunks - 1] + arena_chunk_used;
        arena_chunk_used += size;
        return r;
}

static void arena_free(void *ctx, void *ptr, size_t size) {
        (void) ctx;
        if (!arena_in_chunk(ptr)) {
                (void) munmap(ptr, size);
                return;
        }
        /* Its pages go back to the kernel; the zygote reuses the range. */
        (void) madvise(ptr, size, MADV_DONTNEED);
        if (arena_chunks_active && arena_n_free < ELEMENTSOF(arena_free_list))
                arena_free_list[arena_n_free++] = ptr;
}

/* A chunk is one huge page mapped by one entry until a write after a
 * fork splits it into 512 (the zygote's own writes split some; others
 * stay whole, copied by fork as one entry). Dropping pages splits it
 * too, so only a chunk with this many pages of zeroes is worth it (the
 * unused half of the last chunk, a run of never-carved pools), not one
 * with a few. */
#define ARENA_DROP_MIN_PAGES 128

size_t py_arenas_drop_zero_pages(void) {
        size_t dropped = 0;
        for (size_t i = 0; i < arena_n_chunks; i++) {
                /* Never the whole chunk: its first page holds the first
                 * arena's first pool (arena_alloc() fills a chunk from its
                 * start). Were the whole range dropped, its huge mapping
                 * would go with it, and the next fault there would fill a
                 * 2 MiB page. */
                size_t n = worker_drop_zero_pages(arena_chunk[i] + 4096, ARENA_CHUNK - 4096, ARENA_DROP_MIN_PAGES);
                /* Else khugepaged may fill the chunk back into a whole
                 * huge page, zeroes and all (it does while fewer than half
                 * of its pages are shared with the children). */
                if (n > 0)
                        (void) madvise(arena_chunk[i], ARENA_CHUNK, MADV_NOHUGEPAGE);
                dropped += n;
        }
        return dropped;
}

void py_arenas_child(void) {
        arena_chunks_active = false;
}

int py_init(char **ret_error) {
        /* Before Python allocates anything. */
        PyObjectArenaAllocator arenas = { NULL, arena_alloc, arena_free };
        PyObject_SetArenaAllocator(&arenas);
        /* UTF-8 mode (PEP 540, `python3 -X utf8`): open()'s default
         * encoding, the file system's and os.environ's are UTF-8 whatever
         * the locale. The worker never calls setlocale(), so its locale is
         * "C", and an isolated config's Python then took ASCII for all of
         * them: open("f", "w").write("café") raised UnicodeEncodeError in
         * a run where `python3` writes it (and Lambda's runtime, whose
         * locale is UTF-8). PEP 686 makes this Python 3.15's default. */
        PyPreConfig preconfig;
        PyPreConfig_InitIsolatedConfig(&preconfig);
        preconfig.utf8_mode = 1;
        PyStatus pre = Py_PreInitialize(&preconfig);
        if (PyStatus_Exception(pre)) {
                *ret_error = xasprintf("cannot start Python: %s", pre.err_msg ? pre.err_msg : "?");
                return -EIO;
        }
        PyConfig config;
        PyConfig_InitIsolatedConfig(&config);
        /* site is imported lazily by runner.add_site_dirs(): the worker's
         * sys.path is the stdlib plus exactly the env's store dirs. */
        config.site_import = 0;
        config.write_bytecode = 0;
        config.install_signal_handlers = 0;
        config.buffered_stdio = 0;
        PyStatus st = Py_InitializeFromConfig(&config);
        PyConfig_Clear(&config);
        if (PyStatus_Exception(st)) {
                *ret_error = xasprintf("cannot start Python: %s", st.err_msg ? st.err_msg : "?");
                return -EIO;
        }
        /* The `pysprinter` module first: the runner imports it, and user code
         * imports it by that name (python/pysprinter/runtime.py). */
        PyObject *rt = py_exec_embedded("pysprinter", "<pysprinter>", pysprinter_runtime_source,
                                        pysprinter_runtime_source_code, pysprinter_runtime_source_code_size,
                                        pysprinter_runtime_source_magic);
        if (!rt) {
                *ret_error = py_exception_text();
                return -EIO;
        }
        Py_DECREF(rt);
        runner = py_exec_embedded("_pysprinter_runner", "<pysprinter-runner>", pysprinter_runner_source,
                                  pysprinter_runner_source_code, pysprinter_runner_source_code_size,
                                  pysprinter_runner_source_magic);
        if (!runner) {
                *ret_error = py_exception_text();
                return -EIO;
        }
        if (PyObject_SetAttrString(runner, "_precompiled", loaded_precompiled ? Py_True : Py_False) < 0) {
                *ret_error = py_exception_text();
                return -EIO;
        }
        return 0;
}

/* pymalloc's partly used pools, plugged when the zygote settles (round 12).
 *
 * pymalloc serves an object of a size class from the first pool on that
 * class's used list: after the env's imports, the zygote's pools each with
 * a few free blocks. A child allocating there writes the pool's header
 * (its count and free list) and the block, on two of the pool's four
 * pages, each shared with the zygote, so a copy-on-write fault; and as
 * each pool fills after a few blocks, the next one's header and block
 * again (round 11: ~37 faults per run in the header updates alone, ~25 in
 * the blocks). So the zygote takes every free block of those pools once,
 * class by class, until pymalloc opens a fresh pool: its first block at
 * the pool's start past the header, the next one right after it (a fresh
 * pool hands its blocks out in order). A child's blocks of that class
 * then come from that pool, packed, page after page.
 *
 * The layout is CPython 3.11's on 64-bit (16 KiB pools, a 48-byte header,
 * 32 classes of 16 bytes; sys._debugmallocstats() shows it); elsewhere
 * this does nothing. A guess that is wrong (another build's layout, a
 * debug allocator) costs only the budget's bytes, never correctness: the
 * blocks are the zygote's, never freed, never read. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && SIZEOF_VOID_P == 8
#define PYMALLOC_KNOWN 1
#else
#define PYMALLOC_KNOWN 0
#endif
#define PYMALLOC_POOL (16u << 10)
#define PYMALLOC_POOL_HEADER 48u
#define PYMALLOC_CLASSES 32u
#define PYMALLOC_STEP 16u
#define PYMALLOC_PLUG_BUDGET (2u << 20)

size_t py_pools_plug(size_t *ret_bytes) {
        size_t n = 0, bytes = 0;
        for (size_t k = 0; PYMALLOC_KNOWN && k < PYMALLOC_CLASSES; k++) {
                size_t size = (k + 1) * PYMALLOC_STEP;
                while (bytes < PYMALLOC_PLUG_BUDGET) {
                        char *p = PyObject_Malloc(size);
                        if (!p)
                                break;
                        n++;
                        bytes += size;
                        if ((uintptr_t) p % PYMALLOC_POOL != PYMALLOC_POOL_HEADER)
                                continue;
                        char *q = PyObject_Malloc(size);
                        if (!q)
                                break;
                        n++;
                        bytes += size;
                        if (q == p + size)
                                break; /* a fresh pool: kept, with its two blocks */
                }
        }
        if (ret_bytes)
                *ret_bytes = bytes;
        return n;
}

const char *py_version(void) {
        return Py_GetVersion();
}

int py_call_str(const char *func, const char *arg, char **ret, char **ret_error) {
        PyObject *res = PyObject_CallMethod(runner, func, "s", arg);
        if (!res) {
                *ret_error = py_exception_text();
                return -EIO;
        }
        if (res == Py_None) {
                Py_DECREF(res);
                *ret = NULL;
                return 0;
        }
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(res, &n);
        if (!s) {
                Py_DECREF(res);
                *ret_error = py_exception_text();
                return -EIO;
        }
        *ret = xstrndup(s, (size_t) n);
        Py_DECREF(res);
        return 0;
}

void py_run_child(const char *run_json, int result_fd) {
        PyObject *res = PyObject_CallMethod(runner, "run", "si", run_json, result_fd);
        if (!res) {
                /* runner.run() catches everything; this is a runner bug. */
                _cleanup_free_ char *msg = py_exception_text();
                fprintf(stderr, "pysprinter-worker: the runner failed: %s\n", msg ? msg : "?");
                dprintf(result_fd, "{\"ok\":false,\"error\":{\"type\":\"InternalError\",\"message\":\"runner failed\"}}");
                return;
        }
        Py_DECREF(res);
}

void py_spare_ready(bool warm) {
        PyObject *res = PyObject_CallMethod(runner, "spare_ready", "O", warm ? Py_True : Py_False);
        /* Only a warm-up: a failure costs the run those page copies, no
         * more. */
        if (!res)
                PyErr_Clear();
        Py_XDECREF(res);
}

void py_spare_warm(void) {
        PyObject *res = PyObject_CallMethod(runner, "spare_warm", NULL);
        if (!res)
                PyErr_Clear();
        Py_XDECREF(res);
}

/* Before the instance's recvmsg(): poll() sleeps for POLLIN only, where a
 * reader asleep in recvmsg() is also woken by the engine's read of each
 * "done" (docs/internals/performance-log.md, round 8 hand-offs). */
static int instance_wait(int sock, void *userdata) {
        (void) userdata;
        struct pollfd p = { .fd = sock, .events = POLLIN };
        return poll(&p, 1, -1) < 0 ? -errno : 0;
}

/* The next invoke message (GIL released while waiting); its fds in fds.
 * -EINTR never comes back: Python's signal handlers run, as they would in
 * select.poll(), and the wait goes on unless one raised. */
static int instance_receive(int sock, ProtoInbuf *in, const char **json, size_t *len,
                            int *fds, size_t *n_fds) {
        *n_fds = 0;
        for (;;) {
                int r;
                Py_BEGIN_ALLOW_THREADS
                r = proto_recv_buffered(sock, in, instance_wait, NULL, json, len,
                                        fds, WORKER_PROTO_MAX_FDS, n_fds);
                Py_END_ALLOW_THREADS
                if (r != -EINTR)
                        return r;
                if (PyErr_CheckSignals() < 0)
                        return -EINTR;
        }
}

/* fds 1 and 2 are the instance's stdout/stderr pipes for its life: the
 * invocation that finds them missing (the first) brings them. A function
 * that closed fd 1 gets it back as is. */
static void instance_adopt_fds(const int *fds, size_t n_fds) {
        if (n_fds >= 2) {
                (void) dup2(fds[0], STDOUT_FILENO);
                (void) dup2(fds[1], STDERR_FILENO);
        }
        for (size_t i = 0; i < n_fds; i++)
                if (fds[i] != STDOUT_FILENO && fds[i] != STDERR_FILENO)
                        close(fds[i]);
}

/* The message as a dict: the decoder's C scanner over the text (no
 * json.loads layers per invoke); anything it does not read whole goes to
 * runner._run_message(), which reads it as json.loads() would. */
static PyObject *instance_decode(PyObject *scan, const char *json, size_t len) {
        PyObject *text = PyUnicode_DecodeUTF8(json, (Py_ssize_t) len, "surrogatepass");
        if (!text)
                return NULL;
        PyObject *msg = NULL;
        PyObject *got = PyObject_CallFunction(scan, "On", text, (Py_ssize_t) 0);
        if (got && PyTuple_Check(got) && PyTuple_GET_SIZE(got) == 2 &&
            PyDict_CheckExact(PyTuple_GET_ITEM(got, 0)) &&
            PyLong_AsSsize_t(PyTuple_GET_ITEM(got, 1)) == PyUnicode_GET_LENGTH(text)) {
                msg = Py_NewRef(PyTuple_GET_ITEM(got, 0));
        } else {
                PyErr_Clear();
                msg = PyObject_CallMethod(runner, "_run_message", "O", text);
        }
        Py_XDECREF(got);
        Py_DECREF(text);
        return msg;
}

/* What the loop looks up in runner once: the message decoder's C scanner,
 * json's two C string encoders, the largest result. */
typedef struct InstanceTools {
        PyObject *scan;        /* _MESSAGE_JSON.scan_once */
        PyObject *ascii_text;  /* _json_ascii_string: json.dumps(str)'s text */
        PyObject *text;        /* _json_string: ensure_ascii=False's */
        Py_ssize_t max_answer; /* _MAX_ANSWER_BYTES */
} InstanceTools;

static bool instance_tools_get(InstanceTools *t) {
        PyObject *decoder = PyObject_GetAttrString(runner, "_MESSAGE_JSON");
        t->scan = decoder ? PyObject_GetAttrString(decoder, "scan_once") : NULL;
        Py_XDECREF(decoder);
        t->ascii_text = PyObject_GetAttrString(runner, "_json_ascii_string");
        t->text = PyObject_GetAttrString(runner, "_json_string");
        PyObject *max = PyObject_GetAttrString(runner, "_MAX_ANSWER_BYTES");
        t->max_answer = max ? PyLong_AsSsize_t(max) : -1;
        Py_XDECREF(max);
        return t->scan && t->ascii_text && t->text && t->max_answer > 0;
}

static void instance_tools_done(InstanceTools *t) {
        Py_XDECREF(t->scan);
        Py_XDECREF(t->ascii_text);
        Py_XDECREF(t->text);
}

/* The common result's JSON text, TEXT of {"ok": true, "json": TEXT} (what
 * runner._result_text() spells out), or NULL (no error) for any other. */
static PyObject *instance_common_text(PyObject *result) {
        if (!PyDict_CheckExact(result) || PyDict_GET_SIZE(result) != 2)
                return NULL;
        Py_ssize_t pos = 0;
        PyObject *key, *ok;
        if (!PyDict_Next(result, &pos, &key, &ok) || !PyUnicode_CheckExact(key) ||
            PyUnicode_CompareWithASCIIString(key, "ok") != 0 || ok != Py_True)
                return NULL;
        PyObject *text = PyDict_GetItemString(result, "json");
        return text && PyUnicode_CheckExact(text) ? text : NULL;
}

/* Appends n bytes at *p. */
static void put(char **p, const char *s, size_t n) {
        memcpy(*p, s, n);
        *p += n;
}

/* "done"'s bytes: runner._done_body(id, result)'s, made here for a string
 * id and the common result (their text by json's C encoders, one bytes
 * object: ~8k instructions of Python per invoke less), by _done_body()
 * for anything else (no result, an error, a result too big). */
static PyObject *instance_done(const InstanceTools *t, PyObject *id, PyObject *result) {
        PyObject *text = PyUnicode_CheckExact(id) ? instance_common_text(result) : NULL;
        PyObject *id_json = text ? PyObject_CallOneArg(t->ascii_text, id) : NULL;
        PyObject *text_json = id_json ? PyObject_CallOneArg(t->text, text) : NULL;
        /* Strict: text with a lone surrogate goes to _done_body(), which
         * escapes it (runner._escape_unencodable). */
        PyObject *data = text_json ? PyUnicode_AsUTF8String(text_json) : NULL;
        Py_XDECREF(text_json);
        const char *idj = id_json ? PyUnicode_AsUTF8(id_json) : NULL; /* ASCII */
        static const char head[] = "{\"type\":\"done\",\"id\":", mid[] = ",\"result\":",
                          ok[] = "{\"ok\": true, \"json\": ", end[] = "}}";
        PyObject *body = NULL;
        /* The result's own cap was checked when it was made (runner's
         * _serialise(): a larger one is not this common shape). */
        if (idj && data && PyBytes_GET_SIZE(data) + (Py_ssize_t) sizeof(ok) <= t->max_answer) {
                size_t n_id = strlen(idj), n_data = (size_t) PyBytes_GET_SIZE(data);
                body = PyBytes_FromStringAndSize(NULL, (Py_ssize_t) (sizeof(head) - 1 + n_id + sizeof(mid) - 1 +
                                                                     sizeof(ok) - 1 + n_data + sizeof(end) - 1));
                if (body) {
                        char *p = PyBytes_AS_STRING(body);
                        put(&p, head, sizeof(head) - 1);
                        put(&p, idj, n_id);
                        put(&p, mid, sizeof(mid) - 1);
                        put(&p, ok, sizeof(ok) - 1);
                        put(&p, PyBytes_AS_STRING(data), n_data);
                        put(&p, end, sizeof(end) - 1);
                }
        }
        Py_XDECREF(id_json);
        Py_XDECREF(data);
        if (body)
                return body;
        PyErr_Clear();
        return PyObject_CallMethod(runner, "_done_body", "OO", id, result);
}

/* Serves invocations until the engine closes the socket (or a send fails):
 * receive, decode, serve_one(msg) -> (id, result), "done", send. */
static void instance_loop(PyObject *serve_one, int sock) {
        InstanceTools tools = {};
        bool ready = instance_tools_get(&tools);
        ProtoInbuf in = {};
        while (ready) {
                const char *json;
                size_t len, n_fds;
                int fds[WORKER_PROTO_MAX_FDS];
                int r = instance_receive(sock, &in, &json, &len, fds, &n_fds);
                if (r < 0) {
                        for (size_t i = 0; i < n_fds; i++)
                                close(fds[i]);
                        break;
                }
                instance_adopt_fds(fds, n_fds);
                PyObject *msg = instance_decode(tools.scan, json, len);
                PyObject *served = msg ? PyObject_CallOneArg(serve_one, msg) : NULL;
                Py_XDECREF(msg);
                PyObject *body = served && PyTuple_Check(served) && PyTuple_GET_SIZE(served) == 2 ?
                        instance_done(&tools, PyTuple_GET_ITEM(served, 0), PyTuple_GET_ITEM(served, 1)) : NULL;
                Py_XDECREF(served);
                char *data;
                Py_ssize_t size;
                if (!body || PyBytes_AsStringAndSize(body, &data, &size) < 0) {
                        Py_XDECREF(body);
                        break;
                }
                Py_BEGIN_ALLOW_THREADS
                r = proto_send(sock, data, (size_t) size, NULL, 0);
                Py_END_ALLOW_THREADS
                Py_DECREF(body);
                if (r < 0)
                        break;
        }
        PyErr_Clear();
        instance_tools_done(&tools);
        proto_inbuf_done(&in);
}

void py_serve_instance(const char *instance_json, int sock_fd) {
        PyObject *serve_one = PyObject_CallMethod(runner, "serve_instance", "si", instance_json, sock_fd);
        if (!serve_one) {
                PyErr_Clear();
                return;
        }
        if (serve_one != Py_None)
                instance_loop(serve_one, sock_fd);
        Py_DECREF(serve_one);
}

int py_compile_dir(const char *dir) {
        PyObject *mod = PyImport_ImportModule("compileall");
        if (!mod) {
                PyErr_Clear();
                return -EIO;
        }
        /* quiet=1: only errors; workers=1: no process pool in here. */
        PyObject *fn = PyObject_GetAttrString(mod, "compile_dir");
        PyObject *args = Py_BuildValue("(s)", dir);
        PyObject *kwargs = Py_BuildValue("{s:i, s:i}", "quiet", 1, "workers", 1);
        PyObject *res = fn && args && kwargs ? PyObject_Call(fn, args, kwargs) : NULL;
        Py_XDECREF(fn);
        Py_XDECREF(args);
        Py_XDECREF(kwargs);
        Py_DECREF(mod);
        if (!res) {
                PyErr_Clear();
                return -EIO;
        }
        Py_DECREF(res);
        return 0;
}
