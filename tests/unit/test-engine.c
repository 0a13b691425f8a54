/* Engine tests with the real worker (PYSPRINTER_WORKER, set by meson):
 * warm pool reuse, isolation between runs of one worker, concurrency,
 * warm instances keeping globals, recovery from a killed worker, LRU
 * eviction under a memory budget, cancellation and limits. Sandbox mode
 * none: the sandbox has its own tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine-internal.h"
#include "engine.h"
#include "slow-http.h"

static char home[] = "/tmp/engine-test-XXXXXX";

static Engine *engine_for_test_as(uint64_t budget, bool validator_apart) {
        static int n;
        _cleanup_free_ char *dir = xasprintf("%s/h%d", home, n++);
        EngineConfig cfg = { .data_dir = dir, .pool_memory_budget = budget, .spares = 1, .validator_apart = validator_apart };
        Engine *e = NULL;
        _cleanup_free_ char *err = NULL;
        if (engine_new(&cfg, &e, &err) < 0)
                fail_msg("engine_new: %s", err);
        return e;
}

static Engine *engine_for_test(uint64_t budget) {
        return engine_for_test_as(budget, false);
}

static RunResult *run_source(Engine *e, const char *src, const char *args_json, const char *instance_key,
                             char *const *data) {
        RunSpec spec = {
                .source = src,
                .source_len = strlen(src),
                .filename = "t.py",
                .args_json = args_json,
                .sandbox = SANDBOX_MODE_NONE,
                .instance_key = instance_key,
                .data = data,
                .no_record = true,
        };
        RunResult *res = NULL;
        assert_int_equal(engine_run(e, &spec, NULL, NULL, &res), 0);
        return res;
}

static void assert_ok(RunResult *r, const char *want_json) {
        if (r->status != RUN_SUCCEEDED)
                fail_msg("run failed: %s %s: %s", run_status_to_string(r->status), r->error_type ?: "",
                         r->error_message ?: "");
        if (want_json)
                assert_string_equal(r->value_json, want_json);
}

static void test_warm_reuse_and_isolation(void **state) {
        Engine *e = engine_for_test(0);
        /* A run that dirties everything it can: module state, environment,
         * cwd-independent files are the sandbox's business. */
        const char *dirty = "import json, os, sys\n"
                            "def f():\n"
                            "    json.leaked = 1\n"
                            "    os.environ['PYSPRINTER_LEAK'] = '1'\n"
                            "    sys.modules['leaky_module'] = object()\n"
                            "    return os.getpid()\n";
        const char *check = "import json, os, sys\n"
                            "def f():\n"
                            "    return [hasattr(json, 'leaked'), 'PYSPRINTER_LEAK' in os.environ,\n"
                            "            'leaky_module' in sys.modules]\n";
        RunResult *a = run_source(e, dirty, NULL, NULL, NULL);
        assert_ok(a, NULL);
        RunResult *b = run_source(e, check, NULL, NULL, NULL);
        assert_ok(b, "[false,false,false]");
        assert_false(b->cold); /* the second run found the worker warm */
        RunResult *c = run_source(e, dirty, NULL, NULL, NULL);
        assert_ok(c, NULL);
        assert_string_not_equal(a->value_json, c->value_json); /* a fresh child each time */
        EnginePoolStats s;
        engine_pool_stats(e, &s);
        /* One worker validated and ran them all (the CLI's engine). */
        assert_int_equal(s.workers, 1);
        assert_true(s.hits >= 2);
        run_result_free(a);
        run_result_free(b);
        run_result_free(c);
        engine_free(e);
}

typedef struct Job {
        Engine *e;
        const char *src;
        const char *instance_key;
        const char *run_id;     /* NULL: the engine's own */
        unsigned max_instances; /* 0: the default */
        RunResult *res;
        usec_t ended;
} Job;

static void *job_main(void *p) {
        Job *j = p;
        RunSpec spec = {
                .source = j->src,
                .source_len = strlen(j->src),
                .filename = "c.py",
                .sandbox = SANDBOX_MODE_NONE,
                .instance_key = j->instance_key,
                .run_id = j->run_id,
                .max_instances = j->max_instances,
                .no_record = true,
        };
        (void) engine_run(j->e, &spec, NULL, NULL, &j->res);
        __atomic_store_n(&j->ended, now_monotonic(), __ATOMIC_RELEASE);
        return NULL;
}

static void test_concurrent_runs(void **state) {
        /* As the daemon's engine: validation in a worker of its own. */
        Engine *e = engine_for_test_as(0, true);
        /* Each run says when it slept (CLOCK_MONOTONIC, the host's clock in
         * every process) and in which process. */
        const char *src = "import os, time\ndef f():\n    t0 = time.monotonic()\n    time.sleep(0.3)\n"
                          "    return [os.getpid(), t0, time.monotonic()]\n";
        Job jobs[8];
        pthread_t t[8];
        for (int i = 0; i < 8; i++) {
                jobs[i] = (Job) { .e = e, .src = src };
                pthread_create(&t[i], NULL, job_main, &jobs[i]);
        }
        for (int i = 0; i < 8; i++)
                pthread_join(t[i], NULL);
        double from[8], to[8];
        json_int_t pid[8];
        for (int i = 0; i < 8; i++) {
                assert_ok(jobs[i].res, NULL);
                json_t *v = json_loads(jobs[i].res->value_json, 0, NULL);
                assert_int_equal(json_unpack(v, "[I,F,F]", &pid[i], &from[i], &to[i]), 0);
                json_decref(v);
                for (int k = 0; k < i; k++)
                        assert_true(pid[i] != pid[k]); /* each in a process of its own */
        }
        /* They ran side by side on one worker, not one after another: some
         * run's sleep began while another's had not ended. Judged by the
         * runs' own clocks, not the wall time of the whole (a loaded host
         * took 8 × 300 ms for eight runs in parallel now and then). */
        int most_at_once = 0;
        for (int i = 0; i < 8; i++) {
                int at_once = 0;
                for (int k = 0; k < 8; k++)
                        if (from[k] <= from[i] && from[i] < to[k])
                                at_once++;
                most_at_once = MAX(most_at_once, at_once);
        }
        assert_true(most_at_once >= 2);
        EnginePoolStats s;
        engine_pool_stats(e, &s);
        /* The runs' worker and the validators: a second one when
         * validations overlap (engine-pool.c VALIDATORS_PER_LANE). */
        assert_in_range(s.workers, 2, 3);
        for (int i = 0; i < 8; i++)
                run_result_free(jobs[i].res);
        engine_free(e);
}

static void test_instance_keeps_globals(void **state) {
        Engine *e = engine_for_test(0);
        const char *src = "import os\nCOUNT = 0\ndef f(step: int = 1):\n"
                          "    global COUNT\n    COUNT += step\n    return [COUNT, os.getpid()]\n";
        json_int_t pid = 0;
        for (int i = 1; i <= 3; i++) {
                RunResult *r = run_source(e, src, "[{\"raw\":\"1\"}]", "fn:counter@1", NULL);
                assert_ok(r, NULL);
                json_t *v = json_loads(r->value_json, 0, NULL);
                assert_int_equal(json_integer_value(json_array_get(v, 0)), i);
                if (i == 1)
                        pid = json_integer_value(json_array_get(v, 1));
                else
                        assert_int_equal(json_integer_value(json_array_get(v, 1)), pid);
                assert_true(r->cold == (i == 1));
                json_decref(v);
                run_result_free(r);
        }
        /* Another version of the function is another instance. */
        RunResult *other = run_source(e, src, NULL, "fn:counter@2", NULL);
        assert_ok(other, NULL);
        json_t *v = json_loads(other->value_json, 0, NULL);
        assert_int_equal(json_integer_value(json_array_get(v, 0)), 1);
        json_decref(v);
        run_result_free(other);
        /* An exception does not kill the instance; its globals stay. */
        const char *raising = "N = 0\ndef f(boom: bool = False):\n    global N\n    N += 1\n"
                              "    if boom:\n        raise ValueError('boom')\n    return N\n";
        RunResult *r1 = run_source(e, raising, "[{\"raw\":\"true\"}]", "fn:raising@1", NULL);
        assert_int_equal(r1->status, RUN_FAILED);
        assert_string_equal(r1->error_type, "ValueError");
        assert_non_null(strstr(r1->traceback, "t.py"));
        RunResult *r2 = run_source(e, raising, NULL, "fn:raising@1", NULL);
        assert_ok(r2, "2");
        run_result_free(r1);
        run_result_free(r2);
        engine_free(e);
}

static void test_instances_scale_with_concurrency(void **state) {
        Engine *e = engine_for_test(0);
        const char *src = "import os, time\ndef f():\n    time.sleep(0.4)\n    return os.getpid()\n";
        Job jobs[3];
        pthread_t t[3];
        for (int i = 0; i < 3; i++) {
                jobs[i] = (Job) { .e = e, .src = src, .instance_key = "fn:scale@1" };
                pthread_create(&t[i], NULL, job_main, &jobs[i]);
        }
        for (int i = 0; i < 3; i++)
                pthread_join(t[i], NULL);
        for (int i = 0; i < 3; i++)
                assert_ok(jobs[i].res, NULL);
        EnginePoolStats s;
        engine_pool_stats(e, &s);
        assert_int_equal(s.instances, 3);
        for (int i = 0; i < 3; i++)
                run_result_free(jobs[i].res);
        engine_free(e);
}

static pid_t find_worker_pid(Engine *e) {
        _cleanup_free_ char *list = NULL;
        engine_pool_list(e, &list);
        json_t *arr = json_loads(list, 0, NULL);
        size_t i;
        json_t *w;
        pid_t pid = 0;
        json_array_foreach(arr, i, w) {
                /* The env worker has the network flag of the run, the base
                 * worker validates; both are "worker"s — take the busy one. */
                if (json_integer_value(json_object_get(w, "busy")) > 0)
                        pid = (pid_t) json_integer_value(json_object_get(w, "pid"));
        }
        json_decref(arr);
        return pid;
}

typedef struct Killer {
        Engine *e;
        bool done;
} Killer;

static void *killer_main(void *p) {
        Killer *k = p;
        for (int i = 0; i < 200; i++) {
                usleep(20000);
                pid_t pid = find_worker_pid(k->e);
                if (pid > 0) {
                        usleep(100000);
                        kill(pid, SIGKILL);
                        k->done = true;
                        return NULL;
                }
        }
        return NULL;
}

/* A worker killed under a run (from outside: the run's code cannot) is
 * replaced, and the run started again on the new one while its attempts
 * last; with one attempt (`retries: 0`) it is reported, not hung and not
 * run again. */
static void test_worker_killed_mid_run_is_replaced(void **state) {
        Engine *e = engine_for_test(0);
        Killer k = { .e = e };
        pthread_t t;
        pthread_create(&t, NULL, killer_main, &k);
        RunResult *r = run_source(e, "import time\ndef f():\n    time.sleep(2)\n    return 1\n", NULL, NULL, NULL);
        pthread_join(t, NULL);
        assert_true(k.done);
        assert_ok(r, "1");
        run_result_free(r);

        k = (Killer){ .e = e };
        pthread_create(&t, NULL, killer_main, &k);
        const char *src = "import time\ndef f():\n    time.sleep(10)\n    return 1\n";
        RunSpec spec = { .source = src,
                         .source_len = strlen(src),
                         .filename = "t.py",
                         .sandbox = SANDBOX_MODE_NONE,
                         .no_record = true,
                         .max_attempts = 1 };
        assert_int_equal(engine_run(e, &spec, NULL, NULL, &r), 0);
        pthread_join(t, NULL);
        assert_true(k.done);
        assert_int_equal(r->status, RUN_ERROR);
        assert_string_equal(r->error_type, "WorkerError");
        assert_string_equal(r->error_message, "the worker died during the run");
        assert_true(r->t_run < 8 * USEC_PER_SEC);
        run_result_free(r);
        RunResult *again = run_source(e, "def f():\n    return 'alive'\n", NULL, NULL, NULL);
        assert_ok(again, "\"alive\"");
        run_result_free(again);
        engine_free(e);
}

static void test_eviction_under_budget(void **state) {
        /* A budget smaller than any worker: idle workers are evicted. */
        Engine *e = engine_for_test(1);
        char *d1[] = { (char *) "one=/tmp", NULL };
        char *d2[] = { (char *) "two=/tmp", NULL };
        RunResult *a = run_source(e, "def f():\n    return 1\n", NULL, NULL, d1);
        assert_ok(a, "1");
        RunResult *b = run_source(e, "def f():\n    return 2\n", NULL, NULL, d2);
        assert_ok(b, "2");
        EnginePoolStats s;
        engine_pool_stats(e, &s);
        assert_true(s.evictions >= 1);
        assert_true(s.workers <= 1);
        run_result_free(a);
        run_result_free(b);
        engine_free(e);
}

static void test_pss_measured(void **state) {
        Engine *e = engine_for_test(0);
        RunResult *a = run_source(e, "def f():\n    return 1\n", NULL, NULL, NULL);
        assert_ok(a, "1");
        EnginePoolStats s;
        engine_pool_stats(e, &s);
        assert_true(s.pss_bytes > (1 << 20)); /* an interpreter is megabytes */
        run_result_free(a);
        engine_free(e);
}

typedef struct Canceller {
        Engine *e;
        const char *id;
} Canceller;

static void *cancel_main(void *p) {
        Canceller *c = p;
        for (int i = 0; i < 100; i++) {
                usleep(50000);
                if (engine_cancel(c->e, c->id) == 0 && i > 4)
                        return NULL;
        }
        return NULL;
}

static void test_cancel_and_timeout(void **state) {
        Engine *e = engine_for_test(0);
        const char *src = "import time\ndef f():\n    time.sleep(20)\n";
        Canceller c = { .e = e, .id = "rcancelme" };
        pthread_t t;
        pthread_create(&t, NULL, cancel_main, &c);
        RunSpec spec = { .run_id = "rcancelme", .source = src, .source_len = strlen(src), .filename = "c.py",
                         .sandbox = SANDBOX_MODE_NONE, .no_record = true };
        RunResult *r = NULL;
        assert_int_equal(engine_run(e, &spec, NULL, NULL, &r), 0);
        pthread_join(t, NULL);
        assert_int_equal(r->status, RUN_CANCELLED);
        run_result_free(r);
        spec.run_id = NULL;
        spec.limits.timeout_ms = 300;
        assert_int_equal(engine_run(e, &spec, NULL, NULL, &r), 0);
        assert_int_equal(r->status, RUN_KILLED);
        assert_int_equal(r->exit_code, EXIT_LIMIT);
        assert_string_equal(r->error_message, "time limit (0.3s)");
        run_result_free(r);
        engine_free(e);
}

/* A call waiting for an instance of its function at the function's
 * max_instances ends `cancelled` as soon as it is cancelled, not when the
 * busy instance is free again; the call on that instance goes on. */
static void test_cancel_of_a_call_waiting_at_max_instances(void **state) {
        Engine *e = engine_for_test(0);
        const char *src = "import time\ndef f():\n    time.sleep(4)\n    return 1\n";
        Job busy = { .e = e, .src = src, .instance_key = "fn:one@1", .max_instances = 1 };
        Job waiting = { .e = e, .src = src, .instance_key = "fn:one@1", .max_instances = 1, .run_id = "rwaitsmax" };
        pthread_t tb, tw;
        pthread_create(&tb, NULL, job_main, &busy);
        EnginePoolStats s;
        for (usec_t until = now_monotonic() + 20 * USEC_PER_SEC; now_monotonic() < until; usleep(20000)) {
                engine_pool_stats(e, &s);
                if (s.instances == 1)
                        break;
        }
        assert_int_equal(s.instances, 1);
        pthread_create(&tw, NULL, job_main, &waiting);
        usleep(300 * 1000); /* at the maximum, waiting */
        usec_t asked = now_monotonic();
        assert_int_equal(engine_cancel(e, "rwaitsmax"), 0);
        pthread_join(tw, NULL);
        assert_int_equal(waiting.res->status, RUN_CANCELLED);
        if (waiting.ended - asked > USEC_PER_SEC)
                fail_msg("the cancelled call ended %.2f s after its cancel", (double) (waiting.ended - asked) / 1e6);
        assert_int_equal(__atomic_load_n(&busy.ended, __ATOMIC_ACQUIRE), 0);
        pthread_join(tb, NULL);
        assert_ok(busy.res, "1");
        run_result_free(busy.res);
        run_result_free(waiting.res);
        engine_free(e);
}

/* ---- a cancel in every phase, noticed by an event ---- */

typedef struct InstallCancel {
        Engine *e;
        SlowHttp *http;
        const char *id;
        usec_t at;
} InstallCancel;

static void *install_cancel_main(void *userdata) {
        InstallCancel *c = userdata;
        for (usec_t until = now_monotonic() + 30 * USEC_PER_SEC;
             now_monotonic() < until && !__atomic_load_n(&c->http->body_started, __ATOMIC_ACQUIRE);)
                usleep(5000);
        usleep(200 * 1000); /* mid-download */
        c->at = now_monotonic();
        (void) engine_cancel(c->e, c->id);
        return NULL;
}

/* A run cancelled while its requirement's wheel trickles in (the resolver
 * fetches it for its metadata: the index offers no PEP 658 file) ends
 * within a fraction of a second, `cancelled` as in the run phase, instead
 * of after the download. */
static void test_cancel_while_installing(void **state) {
        _cleanup_free_ char *dir = xasprintf("%s/slowindex", home);
        assert_int_equal(mkdir_p(dir, 0755), 0);
        _cleanup_free_ char *wheel = path_join(dir, "w-1.0-py3-none-any.whl");
        _cleanup_free_ char *bytes = xmalloc(1 << 20);
        for (size_t i = 0; i < (1 << 20); i++)
                bytes[i] = (char) (i * 2654435761u >> 24);
        _cleanup_close_ int fd = open(wheel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_int_equal(write_full(fd, bytes, 1 << 20), 0);
        char sha[SHA256_HEX_SIZE];
        assert_int_equal(sha256_file_hex(wheel, sha), 0);
        _cleanup_free_ char *page = xasprintf(
                "<html><body><a href=\"/files/w-1.0-py3-none-any.whl#sha256=%s\">w-1.0-py3-none-any.whl</a>"
                "</body></html>",
                sha);
        SlowHttp http = { .page = page, .file_path = wheel, .chunk = 4096, .delay_ms = 20 }; /* ~5 s */
        assert_int_equal(slow_http_start(&http), 0);
        _cleanup_free_ char *index = xasprintf("http://127.0.0.1:%u/simple/", http.port);
        _cleanup_free_ char *data = xasprintf("%s/hinstall", home), *err = NULL;
        EngineConfig cfg = { .data_dir = data, .index_url = index };
        Engine *e = NULL;
        if (engine_new(&cfg, &e, &err) < 0)
                fail_msg("engine_new: %s", err);
        const char *src = "@requirements({'w': ''})\ndef f():\n    return 1\n";
        InstallCancel c = { .e = e, .http = &http, .id = "rinstallcancel" };
        pthread_t t;
        pthread_create(&t, NULL, install_cancel_main, &c);
        RunSpec spec = { .run_id = c.id,
                         .source = src,
                         .source_len = strlen(src),
                         .filename = "i.py",
                         .sandbox = SANDBOX_MODE_NONE,
                         .no_record = true };
        RunResult *r = NULL;
        assert_int_equal(engine_run(e, &spec, NULL, NULL, &r), 0);
        usec_t took = now_monotonic() - c.at;
        pthread_join(t, NULL);
        assert_int_equal(r->status, RUN_CANCELLED);
        assert_int_equal(r->exit_code, EXIT_LIMIT);
        assert_string_equal(r->error_message, "cancelled");
        if (took >= 500 * USEC_PER_MSEC)
                fail_msg("the run ended %llu ms after its cancel", (unsigned long long) (took / 1000));
        run_result_free(r);
        engine_free(e);
        slow_http_stop(&http);
}

/* The watch sleeps until the time limit, not 100 ms: a cancel wakes it
 * through the run's eventfd. */
static void test_cancel_wakes_the_watch(void **state) {
        Engine *e = engine_for_test(0);
        const char *src = "import time\ndef f():\n    time.sleep(20)\n";
        RunSpec spec = { .run_id = "rwakeme",
                         .source = src,
                         .source_len = strlen(src),
                         .filename = "w.py",
                         .sandbox = SANDBOX_MODE_NONE,
                         .no_record = true };
        EngineRun *run = engine_run_begin(e, &spec, NULL, NULL);
        struct pollfd pf[ENGINE_RUN_POLLFDS];
        usec_t until = 0;
        assert_false(engine_run_watch_fds(run, pf, &until));
        assert_true(until > now_monotonic() + 30 * USEC_PER_SEC); /* the 60 s limit, no tick */
        assert_true(pf[ENGINE_RUN_POLLFDS - 1].fd >= 0);
        usec_t t0 = now_monotonic();
        assert_int_equal(engine_cancel(e, "rwakeme"), 0);
        assert_true(poll(pf, ENGINE_RUN_POLLFDS, 2000) > 0);
        assert_true(pf[ENGINE_RUN_POLLFDS - 1].revents & POLLIN);
        assert_true(now_monotonic() - t0 < 100 * USEC_PER_MSEC);
        engine_run_watch_events(run, pf);
        (void) engine_run_wait(run, UINT64_MAX);
        RunResult *r = engine_run_end(run);
        assert_int_equal(r->status, RUN_CANCELLED);
        run_result_free(r);
        engine_free(e);
}

typedef struct FileCancel {
        Engine *e;
        const char *id;
        usec_t at;
} FileCancel;

static void *file_cancel_main(void *userdata) {
        FileCancel *c = userdata;
        usleep(1500 * 1000); /* the run is running */
        c->at = now_monotonic();
        assert_int_equal(engine_cancel_request(c->e, c->id), 0);
        return NULL;
}

/* `pysprinter cancel` of a CLI's run: the file $DATA/cancel/RUN_ID is seen
 * through inotify at once (no poll of the directory), acted on and gone. */
static void test_cancel_request_file(void **state) {
        _cleanup_free_ char *data = xasprintf("%s/hfile", home), *err = NULL;
        EngineConfig cfg = { .data_dir = data, .record_owner = true };
        Engine *e = NULL;
        if (engine_new(&cfg, &e, &err) < 0)
                fail_msg("engine_new: %s", err);
        const char *src = "import time\ndef f():\n    time.sleep(20)\n";
        FileCancel c = { .e = e, .id = "rfilecancel" };
        pthread_t t;
        pthread_create(&t, NULL, file_cancel_main, &c);
        RunSpec spec = { .run_id = c.id,
                         .source = src,
                         .source_len = strlen(src),
                         .filename = "f.py",
                         .sandbox = SANDBOX_MODE_NONE };
        RunResult *r = NULL;
        assert_int_equal(engine_run(e, &spec, NULL, NULL, &r), 0);
        usec_t took = now_monotonic() - c.at;
        pthread_join(t, NULL);
        assert_int_equal(r->status, RUN_CANCELLED);
        if (took >= 500 * USEC_PER_MSEC)
                fail_msg("the run ended %llu ms after the request", (unsigned long long) (took / 1000));
        _cleanup_free_ char *f = xasprintf("%s/cancel/rfilecancel", data);
        assert_int_equal(access(f, F_OK), -1);
        run_result_free(r);
        engine_free(e);
}

/* A 1 MiB file needing ~440 MB to parse: over the run's memory limit
 * its validation ends the run as that limit (not "invalid"); over its
 * time limit, as that one; with enough of both it runs. The validator
 * stays up between them (the parse happened in its child). */
static void test_large_file_validation_has_the_runs_limits(void **state) {
        Engine *e = engine_for_test_as(0, true);
        Buf b;
        buf_init(&b, 4ULL << 20);
        buf_appends(&b, "def f():\n    return 'ran'\n\ndef never_called():\n");
        for (int i = 0; b.len < (1U << 20); i++)
                buf_printf(&b, "    g(h(i(j(%d, %d))))\n", i, i);
        RunSpec spec = { .source = b.data,
                         .source_len = b.len,
                         .filename = "big.py",
                         .function = "f",
                         .sandbox = SANDBOX_MODE_NONE,
                         .no_record = true,
                         /* The time limit far off: this case is about memory, and
                          * the default 20 s ran out first on a loaded 2-CPU host. */
                         .limits = { .memory_bytes = 64ULL << 20, .timeout_ms = 180000 } };
        RunResult *r = NULL;
#ifndef __SANITIZE_ADDRESS__ /* no address-space limit there (worker.c) */
        assert_int_equal(engine_run(e, &spec, NULL, NULL, &r), 0);
        assert_int_equal(r->status, RUN_KILLED);
        assert_int_equal(r->exit_code, EXIT_LIMIT);
        assert_string_equal(r->error_type, "MemoryLimit");
        assert_string_equal(r->error_message, "memory limit (64 MiB) while validating big.py");
        run_result_free(r);
#endif
        spec.limits = (RunLimits){ .memory_bytes = 2ULL << 30, .timeout_ms = 10 };
        assert_int_equal(engine_run(e, &spec, NULL, NULL, &r), 0);
        assert_int_equal(r->status, RUN_KILLED);
        assert_string_equal(r->error_message, "time limit (0.01s) while validating big.py");
        run_result_free(r);
        /* Within its limits a large file runs. 128 KiB of it (still the
         * large files' lane, WORKER_VALIDATE_APART_BYTES): the whole MiB
         * ran past validation's own 20 s cap under ASan on a 2-CPU machine
         * busy with other builds (validation and the child each parse and
         * compile it). */
        size_t cut = 128 * 1024;
        while (b.data[cut - 1] != '\n')
                cut--;
        spec.source_len = cut;
        spec.limits = (RunLimits){ .memory_bytes = 2ULL << 30, .timeout_ms = 180000 };
        assert_int_equal(engine_run(e, &spec, NULL, NULL, &r), 0);
        assert_ok(r, "\"ran\"");
        run_result_free(r);
        buf_free(&b);
        engine_free(e);
}

/* Whether each of e's workers has settled (its "stats" reply). */
static bool workers_settled(Engine *e, bool want) {
        pthread_mutex_lock(&e->pool.lock);
        bool all = e->pool.workers != NULL;
        for (PoolWorker *pw = e->pool.workers; pw; pw = pw->next) {
                _cleanup_free_ char *reply = NULL;
                assert_int_equal(worker_send(pw->w, "{\"type\":\"stats\"}", NULL, 0), 0);
                assert_int_equal(worker_recv(pw->w, now_monotonic() + 5 * USEC_PER_SEC, &reply, NULL), 0);
                json_t *v = json_loads(reply, 0, NULL);
                all = all && json_is_boolean(json_object_get(v, "settled")) &&
                      json_is_true(json_object_get(v, "settled")) == want;
                json_decref(v);
        }
        pthread_mutex_unlock(&e->pool.lock);
        return all;
}

/* Round 40: a daemon's worker settles (warm-up runs, collection,
 * gc.freeze) at its first idle moment after its first run; the CLI's
 * (EngineConfig.short_lived) only when a second run comes, since a
 * one-shot CLI's exit waited for the whole settle. Fails before: the
 * short-lived engine's worker had settled too. */
static void test_short_lived_engine_settles_only_for_a_second_run(void **state) {
        for (int short_lived = 0; short_lived <= 1; short_lived++) {
                static int n;
                _cleanup_free_ char *dir = xasprintf("%s/settle%d", home, n++);
                EngineConfig cfg = { .data_dir = dir, .short_lived = short_lived, .no_spares = short_lived };
                Engine *e = NULL;
                _cleanup_free_ char *err = NULL;
                if (engine_new(&cfg, &e, &err) < 0)
                        fail_msg("engine_new: %s", err);
                RunResult *r = run_source(e, "def f():\n    return 1\n", NULL, NULL, NULL);
                assert_ok(r, "1");
                run_result_free(r);
                /* Past the worker's longest wait before it settles (200 ms
                 * after its first run, worker.c): the daemon's until it has
                 * (its warm-up runs and collection took over 2 s with two
                 * other suites spinning beside it), the CLI's for 2 s. */
                bool settled = false;
                for (int i = 0; i < (short_lived ? 40 : 600) && !settled; i++) {
                        usleep(50 * 1000);
                        settled = workers_settled(e, true);
                }
                assert_int_equal(settled, !short_lived);
                if (short_lived) {
                        r = run_source(e, "def f():\n    return 2\n", NULL, NULL, NULL);
                        assert_ok(r, "2");
                        run_result_free(r);
                        assert_true(workers_settled(e, true));
                }
                engine_free(e);
        }
}

/* Round 40: the CLI's engine starts its one worker as it opens
 * (EngineConfig.prewarm), while it opens the store and records the run,
 * and no blank worker beside it (prewarm_no_blank). The first run finds
 * that worker ready: not cold. */
static void test_cli_prewarm_starts_one_worker_and_no_blank(void **state) {
        _cleanup_free_ char *dir = xasprintf("%s/prewarm", home);
        EngineConfig cfg = { .data_dir = dir,
                             .short_lived = true,
                             .no_spares = true,
                             .prewarm = true,
                             .prewarm_no_blank = true,
                             .prewarm_mode = SANDBOX_MODE_NONE };
        Engine *e = NULL;
        _cleanup_free_ char *err = NULL;
        if (engine_new(&cfg, &e, &err) < 0)
                fail_msg("engine_new: %s", err);
        assert_true(engine_prewarm_wait(e, 60 * USEC_PER_SEC));
        pthread_mutex_lock(&e->pool.lock);
        assert_non_null(e->pool.workers);
        assert_null(e->pool.workers->next);
        assert_true(e->pool.workers->ready);
        assert_null(e->pool.blank);
        assert_false(e->pool.blank_enabled);
        pthread_mutex_unlock(&e->pool.lock);
        RunResult *r = run_source(e, "def f():\n    return 3\n", NULL, NULL, NULL);
        assert_ok(r, "3");
        assert_false(r->cold);
        run_result_free(r);
        engine_free(e);
}

typedef struct LateCancel {
        Engine *e;
        const char *id;
        unsigned after_ms;
        usec_t at;
} LateCancel;

static void *late_cancel_main(void *userdata) {
        LateCancel *c = userdata;
        usleep(c->after_ms * 1000);
        c->at = now_monotonic();
        assert_int_equal(engine_cancel(c->e, c->id), 0);
        return NULL;
}

/* A cancel while a large file is validated (seconds, in a validator's
 * child) ends the run at once, `cancelled`; the next run validates in a
 * fresh validator (the cancelled one's reply is still to come). */
static void test_cancel_while_validating(void **state) {
        Engine *e = engine_for_test_as(0, true);
        Buf b;
        buf_init(&b, 4ULL << 20);
        buf_appends(&b, "def f():\n    return 'ran'\n\ndef never_called():\n");
        for (int i = 0; b.len < (1U << 20); i++)
                buf_printf(&b, "    g(h(i(j(%d, %d))))\n", i, i);
        LateCancel c = { .e = e, .id = "rvalidating", .after_ms = 300 };
        pthread_t t;
        pthread_create(&t, NULL, late_cancel_main, &c);
        RunSpec spec = { .run_id = c.id,
                         .source = b.data,
                         .source_len = b.len,
                         .filename = "big.py",
                         .function = "f",
                         .sandbox = SANDBOX_MODE_NONE,
                         .no_record = true,
                         .limits = { .memory_bytes = 2ULL << 30, .timeout_ms = 180000 } };
        RunResult *r = NULL;
        assert_int_equal(engine_run(e, &spec, NULL, NULL, &r), 0);
        usec_t took = now_monotonic() - c.at;
        pthread_join(t, NULL);
        assert_int_equal(r->status, RUN_CANCELLED);
        assert_string_equal(r->error_message, "cancelled");
        if (took >= 500 * USEC_PER_MSEC)
                fail_msg("the run ended %llu ms after its cancel", (unsigned long long) (took / 1000));
        run_result_free(r);
        buf_free(&b);
        RunResult *ok = run_source(e, "def f():\n    return 2\n", NULL, NULL, NULL);
        assert_ok(ok, "2");
        run_result_free(ok);
        engine_free(e);
}

static void test_validation_cached(void **state) {
        Engine *e = engine_for_test(0);
        RunResult *a = run_source(e, "def f(x: int):\n    return x\n", "[{\"raw\":\"2\"}]", NULL, NULL);
        assert_ok(a, "2");
        RunResult *b = run_source(e, "def f(x: int):\n    return x\n", "[{\"raw\":\"2\"}]", NULL, NULL);
        assert_ok(b, "2");
        assert_true(b->t_validate < a->t_validate);
        RunResult *bad = run_source(e, "def f(x: int):\n    return x\n", "[{\"raw\":\"two\"}]", NULL, NULL);
        assert_int_equal(bad->status, RUN_INVALID);
        run_result_free(a);
        run_result_free(b);
        run_result_free(bad);
        engine_free(e);
}

/* The validation cache is bounded by the bytes of the replies it holds,
 * not only by their count: least recently used out first, a reply larger
 * than the whole bound not kept, a replaced key not counted twice. */
/* Keys are looked up by their digest, which each thread memoizes for
 * short keys: keys one byte apart, more of them than the memo holds, in
 * turns, each still finds its own reply and no other's. */
static void test_vcache_short_keys_in_turns(void **state) {
        (void) state;
        ValidationCache *c = vcache_new(64, 1 << 20);
        char key[32], reply[32];
        for (int i = 0; i < 9; i++) {
                snprintf(key, sizeof(key), "env\x1f" "deployed-%d", i);
                snprintf(reply, sizeof(reply), "reply %d", i);
                vcache_put(c, key, reply);
        }
        for (int round = 0; round < 3; round++)
                for (int i = 0; i < 10; i++) {
                        snprintf(key, sizeof(key), "env\x1f" "deployed-%d", i);
                        _cleanup_free_ char *got = vcache_get(c, key);
                        if (i == 9) {
                                assert_null(got);
                                continue;
                        }
                        snprintf(reply, sizeof(reply), "reply %d", i);
                        assert_non_null(got);
                        assert_string_equal(got, reply);
                }
        /* A key longer than the memo keeps and one that is a prefix of another. */
        char long_key[600];
        memset(long_key, 'k', sizeof(long_key) - 1);
        long_key[sizeof(long_key) - 1] = 0;
        vcache_put(c, long_key, "long");
        assert_false(vcache_has(c, "env\x1f" "deployed-"));
        _cleanup_free_ char *got = vcache_get(c, long_key);
        assert_string_equal(got, "long");
        vcache_free(c);
}

static void test_vcache_bounded_by_bytes(void **state) {
        (void) state;
        ValidationCache *c = vcache_new(1024, 1000);
        char reply[300];
        memset(reply, 'r', sizeof(reply) - 1);
        reply[sizeof(reply) - 1] = 0; /* 300 bytes counted */
        char key[16];
        for (int i = 0; i < 3; i++) {
                snprintf(key, sizeof(key), "k%d", i);
                vcache_put(c, key, reply);
        }
        size_t n, bytes;
        vcache_usage(c, &n, &bytes);
        assert_int_equal(n, 3);
        assert_int_equal(bytes, 900);
        /* k0 used last: k1 is the oldest and goes for k3. */
        free(vcache_get(c, "k0"));
        vcache_put(c, "k3", reply);
        vcache_usage(c, &n, &bytes);
        assert_int_equal(n, 3);
        assert_true(bytes <= 1000);
        char *got = vcache_get(c, "k1");
        assert_null(got);
        got = vcache_get(c, "k0");
        assert_non_null(got);
        assert_string_equal(got, reply);
        free(got);
        /* The same key again replaces its entry. */
        vcache_put(c, "k3", "{}");
        vcache_usage(c, &n, &bytes);
        assert_int_equal(n, 3);
        assert_int_equal(bytes, 603);
        /* Larger than the bound: not kept, nothing evicted for it. */
        char *big = xmalloc(2000);
        memset(big, 'b', 1999);
        big[1999] = 0;
        vcache_put(c, "big", big);
        assert_null(vcache_get(c, "big"));
        vcache_usage(c, &n, &bytes);
        assert_int_equal(n, 3);
        /* Many small ones: the count bound still holds. */
        ValidationCache *few = vcache_new(4, 1 << 20);
        for (int i = 0; i < 10; i++) {
                snprintf(key, sizeof(key), "s%d", i);
                vcache_put(few, key, "{}");
        }
        vcache_usage(few, &n, &bytes);
        assert_int_equal(n, 4);
        assert_int_equal(bytes, 12);
        free(big);
        vcache_free(few);
        vcache_free(c);
}

/* A reply kept parsed is handed out shared (the same object, a reference
 * each: no copy, no parse per hit), counted by its text's size, and let go
 * when evicted. */
static void test_vcache_keeps_replies_parsed(void **state) {
        (void) state;
        ValidationCache *c = vcache_new(1024, 100);
        json_t *v = json_pack("{s:b, s:s}", "ok", 1, "compiled", "AAAA");
        vcache_put_json(c, "k", v, 59);
        assert_true(vcache_has(c, "k"));
        assert_false(vcache_has(c, "other"));
        json_t *a = vcache_get_json(c, "k"), *b = vcache_get_json(c, "k");
        assert_ptr_equal(a, v);
        assert_ptr_equal(b, v);
        assert_int_equal(v->refcount, 4); /* ours, the cache's, a, b */
        json_decref(a);
        json_decref(b);
        size_t n, bytes;
        vcache_usage(c, &n, &bytes);
        assert_int_equal(n, 1);
        assert_int_equal(bytes, 60);
        /* A second one does not fit beside it: the first goes, and the
         * cache's reference with it. */
        json_t *w = json_pack("{s:b}", "ok", 1);
        vcache_put_json(c, "k2", w, 59);
        assert_false(vcache_has(c, "k"));
        assert_int_equal(v->refcount, 1);
        json_decref(v);
        json_decref(w);
        vcache_free(c);
}

/* An engine's validation replies (each with the file's marshalled code)
 * stay within EngineConfig.validation_cache_bytes however many distinct
 * large files run, and a file whose reply was kept runs from the cache. */
static void test_engine_validation_cache_stays_within_its_bytes(void **state) {
        (void) state;
        _cleanup_free_ char *dir = xasprintf("%s/vcache", home);
        EngineConfig cfg = { .data_dir = dir, .spares = 1, .validation_cache_bytes = 256 << 10 };
        Engine *e = NULL;
        _cleanup_free_ char *err = NULL;
        if (engine_new(&cfg, &e, &err) < 0)
                fail_msg("engine_new: %s", err);
        /* ~60 KB of constants: each reply holds them marshalled, in base64. */
        Buf body;
        buf_init(&body, 1 << 20);
        for (int i = 0; i < 3000; i++)
                assert_true(buf_printf(&body, "    x%d = 'v%08d'\n", i, i) >= 0);
        size_t n = 0, bytes = 0;
        for (int k = 0; k < 8; k++) {
                _cleanup_free_ char *src = xasprintf("def f(x: int):\n%s    return x + %d\n", body.data, k);
                RunResult *r = run_source(e, src, "[{\"raw\":\"1\"}]", NULL, NULL);
                _cleanup_free_ char *want = xasprintf("%d", 1 + k);
                assert_ok(r, want);
                run_result_free(r);
                vcache_usage(e->vcache, &n, &bytes);
                assert_true(bytes <= 256 << 10);
        }
        /* The replies were big: the byte bound, not the 1024 entries, held them. */
        assert_true(n >= 1 && n < 8);
        buf_free(&body);
        engine_free(e);
}

/* The liveness check behind a warm instance's hand-out: a live process
 * is not doomed; one that exited is, as a zombie and once reaped (the fd
 * stays bound to it, so a reused pid cannot answer for it). */
static void test_proc_status_doomed(void **state) {
        (void) state;
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                pause();
                _exit(0);
        }
        int fd = proc_status_open(pid);
        assert_true(fd >= 0);
        assert_false(proc_status_doomed(fd));
        assert_int_equal(proc_status_ppid(fd), getpid());
        assert_int_equal(kill(pid, SIGKILL), 0);
        siginfo_t si = {};
        assert_int_equal(waitid(P_PID, (id_t) pid, &si, WEXITED | WNOWAIT), 0);
        assert_true(proc_status_doomed(fd)); /* a zombie */
        assert_int_equal(waitpid(pid, NULL, 0), pid);
        assert_true(proc_status_doomed(fd)); /* reaped: ESRCH */
        close(fd);
}

/* The instance's doom check (engine-instance.c), on its own fd: a live
 * process with threads is not doomed; a zombie is, and so is a reaped
 * one (the fd names the process, not the pid number: the read fails).
 * The SIGKILL-pending case needs a frozen cgroup: tests/e2e
 * test_instance_freeze.py and test_pool_lifecycle.py kill idle ones. */
static void *sleeper(void *arg) {
        (void) arg;
        for (;;)
                pause();
        return NULL;
}

/* Stat lines as a dying instance shows them at each step (fields 3, 9
 * and 31 from lines read off instances killed by
 * test_instance_freeze.py; the rest as the kernel writes them). */
static char *stat_line(const char *comm, char state, unsigned long flags, unsigned long pending) {
        /* Fields 4..8, then 9 (flags), 10..30, 31 (pending), 32..52. */
        return xasprintf("17270 (%s) %c 16725 17270 17270 0 -1 %lu 932 0 0 0 0 0 0 0 20 0 1 0 8224185 "
                         "17874944 2609 18446744073709551615 94891281289216 94891281343801 "
                         "140722433268416 0 0 %lu 0 4096 0 1 0 0 17 0 0 0 0 0 0 94891281524464 "
                         "94891281528120 94892056956928 140722433269570 140722433269610 "
                         "140722433269610 140722433269729 0\n",
                         comm, state, flags, pending);
}

static void test_instance_stat_text_doomed(void **state) {
        (void) state;
        const unsigned long live = 4194624;           /* PF_RANDOMIZE|PF_SUPERPRIV|PF_FORKNOEXEC */
        const unsigned long kill_pending = 1ul << 8;  /* SIGKILL's bit */
        struct {
                const char *comm;
                char state;
                unsigned long flags, pending;
                bool doomed;
        } cases[] = {
                { "worker", 'S', live, 0, false },                     /* idle, waiting */
                { "worker", 'R', live, 0, false },                     /* running */
                { "worker", 'S', live, 1ul << 16, false },             /* SIGTERM pending: may be handled */
                { "worker", 'S', live, kill_pending, true },           /* kill() returned */
                { "worker", 'D', live | 0x400 | 0x8, 0, true },        /* dequeued, in do_exit (seen) */
                { "worker", 'R', live | 0x400, 0, true },              /* fatal path taken */
                { "worker", 'R', live | 0x400 | 0x8 | 0x4, 0, true },  /* PF_EXITING */
                { "worker", 'Z', live | 0x400 | 0x8 | 0x4, 0, true },  /* zombie */
                { "a) S 1 (b", 'S', live, 0, false },                  /* comm holding ") " */
                { "a) S 1 (b", 'S', live, kill_pending, true },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *line = stat_line(cases[i].comm, cases[i].state, cases[i].flags,
                                                      cases[i].pending);
                if (instance_stat_text_doomed(line) != cases[i].doomed)
                        fail_msg("case %zu: %s", i, line);
        }
        assert_false(instance_stat_text_doomed("17270 (worker"));  /* cut short: not decided here */
}

static void test_instance_stat_doomed(void **state) {
        (void) state;
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                pthread_t t;
                if (pthread_create(&t, NULL, sleeper, NULL) != 0)
                        _exit(1);
                pause();
                _exit(0);
        }
        int fd = instance_stat_open(pid);
        assert_true(fd >= 0);
        assert_false(instance_stat_doomed(fd));
        assert_int_equal(kill(pid, SIGKILL), 0);
        siginfo_t si = {};
        assert_int_equal(waitid(P_PID, (id_t) pid, &si, WEXITED | WNOWAIT), 0);
        assert_true(instance_stat_doomed(fd)); /* a zombie */
        assert_int_equal(waitpid(pid, NULL, 0), pid);
        assert_true(instance_stat_doomed(fd)); /* reaped: ESRCH */
        close(fd);
        assert_int_equal(instance_stat_open(pid), -ENOENT);
}

/* The pool's doom check (instance_doomed): a live process, however often
 * it is asked about, is not doomed and keeps running; one killed while
 * stopped (it cannot run its exit yet) is doomed as soon as kill()
 * returned; a zombie and a reaped one too. On kernels with
 * process_mrelease(2) (5.15+) the check is that call, not the stat text. */
static void test_instance_doomed(void **state) {
        (void) state;
        int pipefd[2];
        assert_int_equal(pipe(pipefd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                close(pipefd[0]);
                char c;
                /* Alive and well: answers on the pipe after the checks. */
                (void) raise(SIGSTOP);
                c = 'a';
                (void) write(pipefd[1], &c, 1);
                (void) raise(SIGSTOP);
                _exit(0);
        }
        close(pipefd[1]);
        int fd = instance_doom_open(pid);
        assert_true(fd >= 0);
        siginfo_t si = {};
        assert_int_equal(waitid(P_PID, (id_t) pid, &si, WSTOPPED | WNOWAIT), 0);
        for (int i = 0; i < 1000; i++)
                assert_false(instance_doomed(fd));
        assert_int_equal(kill(pid, SIGCONT), 0);
        char c = 0;
        assert_int_equal(read(pipefd[0], &c, 1), 1);
        assert_int_equal(c, 'a');
        close(pipefd[0]);
        /* Stopped again: killed, it is doomed before it can exit. */
        do {
                si = (siginfo_t) {};
                assert_int_equal(waitid(P_PID, (id_t) pid, &si, WSTOPPED | WNOWAIT), 0);
        } while (si.si_status != SIGSTOP);
        assert_false(instance_doomed(fd));
        assert_int_equal(kill(pid, SIGKILL), 0);
        assert_true(instance_doomed(fd));
        assert_int_equal(waitid(P_PID, (id_t) pid, &si, WEXITED | WNOWAIT), 0);
        assert_true(instance_doomed(fd)); /* a zombie */
        assert_int_equal(waitpid(pid, NULL, 0), pid);
        assert_true(instance_doomed(fd)); /* reaped */
        close(fd);
        if (instance_doom_by_mrelease()) {
                /* A pidfd: it says whether its process is in /proc. */
                fd = instance_doom_open(getpid());
                assert_true(fd >= 0);
                assert_false(instance_doomed(fd));
                close(fd);
        }
}

/* The timings' spelling is the one json_shorten_reals() keeps as is (the
 * answer copies it): trailing zeros of the fraction go, one digit stays. */
static void test_ms_spelling(void **state) {
        (void) state;
        static const struct { usec_t us; const char *want; } cases[] = {
                { 0, "0.0" }, { 1, "0.001" }, { 10, "0.01" }, { 100, "0.1" }, { 999, "0.999" }, { 1000, "1.0" },
                { 1010, "1.01" }, { 1234567, "1234.567" }, { 60000000, "60000.0" },
                { 86400000000ULL, "86400000.0" }, { 86399999999ULL, "86399999.999" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Buf b;
                buf_init(&b, 4096);
                (void) buf_append(&b, "{", 1);
                engine_ms_append(&b, "a_ms", cases[i].us);
                engine_ms_append(&b, "b_ms", cases[i].us);
                _cleanup_free_ char *want = xasprintf("{\"a_ms\":%s,\"b_ms\":%s", cases[i].want, cases[i].want);
                assert_string_equal(b.data, want);
                _cleanup_free_ char *closed = xasprintf("%s}", b.data);
                _cleanup_free_ char *shortened = json_shorten_reals(closed);
                assert_string_equal(shortened, closed);
                buf_free(&b);
        }
}

/* ---- the janitor's queue: a spare to make goes ahead of the finishes ---- */

static pthread_mutex_t order_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t order_changed = PTHREAD_COND_INITIALIZER;
static char order[8];
static size_t n_order;
static int gate[2];

static void note_work(Engine *e, void *arg) {
        (void) e;
        pthread_mutex_lock(&order_lock);
        order[n_order++] = (char) (intptr_t) arg;
        pthread_cond_broadcast(&order_changed);
        pthread_mutex_unlock(&order_lock);
}

static void gate_work(Engine *e, void *arg) {
        (void) e;
        (void) arg;
        char c;
        assert_int_equal(read(gate[0], &c, 1), 1);
}

static void test_janitor_runs_first_work_first(void **state) {
        (void) state;
        Engine *e = engine_for_test(0);
        assert_int_equal(pipe(gate), 0);
        /* The janitor blocks on the gate while the rest is queued. */
        engine_janitor_defer(e, gate_work, NULL, false);
        engine_janitor_defer(e, note_work, (void *) (intptr_t) 'a', false);
        engine_janitor_defer(e, note_work, (void *) (intptr_t) 'b', false);
        engine_janitor_defer_first(e, note_work, (void *) (intptr_t) 'F');
        engine_janitor_defer_first(e, note_work, (void *) (intptr_t) 'G');
        engine_janitor_defer(e, note_work, (void *) (intptr_t) 'c', false);
        assert_int_equal(write(gate[1], "x", 1), 1);
        pthread_mutex_lock(&order_lock);
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 30;
        while (n_order < 5 && pthread_cond_timedwait(&order_changed, &order_lock, &deadline) == 0)
                ;
        order[n_order] = 0;
        pthread_mutex_unlock(&order_lock);
        /* First work in its own order, ahead of all the rest, which keeps
         * its order. */
        assert_string_equal(order, "FGabc");
        engine_free(e);
        close(gate[0]);
        close(gate[1]);
}

/* ---- the janitor's wait for exit reports: one poll over all runs ---- */

/* A run whose exit report came is finished (its status socket closed: the
 * peer sees the hang-up) while the runs handed over before it still wait
 * for theirs: the janitor watches them all at once, not each in turn with
 * a 1 ms poll (round 7's way, which took ~1 ms per run ahead of it, here
 * ~1 s). The bound is 10x under that and far over one poll's time. */
static void test_janitor_acts_on_a_report_without_waiting_for_the_others(void **state) {
        (void) state;
        enum { N = 1000 };
        struct rlimit rl;
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
        if (rl.rlim_cur < 2 * N + 64) {
                rl.rlim_cur = MIN(rl.rlim_max, (rlim_t) (2 * N + 64));
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur < 2 * N + 64)
                skip();
        Engine *e = engine_for_test(0);
        e->exit_report_wait_usec = 60 * USEC_PER_SEC; /* the others never report */
        engine_janitor_start(e);
        static int peer[N + 1];
        for (int i = 0; i <= N; i++) {
                int sv[2];
                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
                peer[i] = sv[1];
                if (i == N) /* the last one handed over has reported */
                        assert_int_equal(write(sv[1], "x", 1), 1);
                engine_janitor_finish_after_exit(e, NULL, sv[0]);
        }
        usec_t t0 = now_monotonic();
        struct pollfd p = { .fd = peer[N], .events = POLLIN };
        assert_int_equal(poll(&p, 1, 30000), 1);
        assert_true(p.revents & POLLHUP);
        usec_t took = now_monotonic() - t0;
        assert_true(took < 100 * USEC_PER_MSEC);
        /* The others are still waited for: nothing closed their sockets. */
        for (int i = 0; i < N; i++) {
                struct pollfd q = { .fd = peer[i], .events = POLLIN };
                assert_int_equal(poll(&q, 1, 0), 0);
        }
        /* Stopping finishes them without their report. */
        engine_free(e);
        for (int i = 0; i < N; i++) {
                struct pollfd q = { .fd = peer[i], .events = POLLIN };
                assert_int_equal(poll(&q, 1, 0), 1);
                assert_true(q.revents & POLLHUP);
                close(peer[i]);
        }
        close(peer[N]);
}

/* ---- spare slots asked for: the refill policy ---- */

static void test_spare_slots_are_topped_up_while_runs_are_in_flight(void **state) {
        (void) state;
        static const struct {
                unsigned ready, pending, runs, batch;
                bool concurrent;
                unsigned want;
        } rows[] = {
                /* A run alone: a batch once down to one, none while one is
                 * being made (goal (a): no forks during a sequential run). */
                { 0, 0, 0, 4, false, 4 },
                { 1, 0, 0, 4, false, 4 },
                { 2, 0, 0, 4, false, 0 },
                { 0, 1, 0, 4, false, 0 },
                { 1, 3, 1, 4, false, 0 },
                /* Runs in flight: topped up to batch + runs while earlier
                 * slots are still being made (round 7 asked for nothing
                 * while any was pending: 8-15% of runs at -c8 found none). */
                { 0, 4, 8, 4, true, 8 },
                { 1, 3, 8, 4, true, 8 },
                { 0, 0, 2, 4, true, 6 },
                { 5, 1, 2, 4, true, 0 },
                { 3, 3, 2, 4, true, 0 },
                { 0, 0, 50, 4, true, 12 }, /* runs counted up to 8 */
                { 12, 0, 8, 4, true, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++)
                assert_int_equal(pool_slots_to_ask(rows[i].ready, rows[i].pending, rows[i].runs, rows[i].batch,
                                                   rows[i].concurrent),
                                 rows[i].want);
}

int main(void) {
        assert_non_null(mkdtemp(home));
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_warm_reuse_and_isolation),
                cmocka_unit_test(test_concurrent_runs),
                cmocka_unit_test(test_instance_keeps_globals),
                cmocka_unit_test(test_instances_scale_with_concurrency),
                cmocka_unit_test(test_worker_killed_mid_run_is_replaced),
                cmocka_unit_test(test_eviction_under_budget),
                cmocka_unit_test(test_pss_measured),
                cmocka_unit_test(test_cancel_and_timeout),
                cmocka_unit_test(test_cancel_of_a_call_waiting_at_max_instances),
                cmocka_unit_test(test_cancel_while_installing),
                cmocka_unit_test(test_cancel_wakes_the_watch),
                cmocka_unit_test(test_cancel_request_file),
                cmocka_unit_test(test_cancel_while_validating),
                cmocka_unit_test(test_large_file_validation_has_the_runs_limits),
                cmocka_unit_test(test_short_lived_engine_settles_only_for_a_second_run),
                cmocka_unit_test(test_cli_prewarm_starts_one_worker_and_no_blank),
                cmocka_unit_test(test_validation_cached),
                cmocka_unit_test(test_vcache_bounded_by_bytes),
                cmocka_unit_test(test_vcache_short_keys_in_turns),
                cmocka_unit_test(test_vcache_keeps_replies_parsed),
                cmocka_unit_test(test_engine_validation_cache_stays_within_its_bytes),
                cmocka_unit_test(test_proc_status_doomed),
                cmocka_unit_test(test_instance_stat_doomed),
                cmocka_unit_test(test_instance_doomed),
                cmocka_unit_test(test_instance_stat_text_doomed),
                cmocka_unit_test(test_ms_spelling),
                cmocka_unit_test(test_janitor_runs_first_work_first),
                cmocka_unit_test(test_janitor_acts_on_a_report_without_waiting_for_the_others),
                cmocka_unit_test(test_spare_slots_are_topped_up_while_runs_are_in_flight),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        rm_rf(home);
        return r;
}
