/* daemon: the trust decisions as pure functions — what a tenant is granted,
 * which addresses a URL dataset may reach, which request targets are
 * refused, and AWS SigV4 verification — and the API's shape: the route
 * table, the errno -> status map, the Lambda names and calling rule, request
 * bodies and the config file.
 * Nothing here opens a socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "daemon.h"
#include "daemon-ui.h"
#include "data.h"

/* ---- URL-source address policy ---------------------------------------------- */

static bool allowed(const char *addr, char *const *allow) {
        struct sockaddr_storage ss = {};
        struct sockaddr_in *in4 = (struct sockaddr_in *) &ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
        if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1)
                in4->sin_family = AF_INET;
        else {
                assert_int_equal(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1);
                in6->sin6_family = AF_INET6;
        }
        const char *why = NULL;
        bool ok = data_address_allowed((struct sockaddr *) &ss, allow, &why);
        if (!ok)
                assert_non_null(why);
        return ok;
}

static void test_address_policy(void **state) {
        static const struct {
                const char *addr;
                bool ok;
        } t[] = {
                /* loopback, unspecified */
                { "127.0.0.1", false },
                { "127.255.255.254", false },
                { "0.0.0.0", false },
                { "0.1.2.3", false },
                { "::1", false },
                { "::", false },
                /* RFC 1918, CGNAT */
                { "10.0.0.1", false },
                { "10.255.255.255", false },
                { "172.16.0.1", false },
                { "172.31.255.255", false },
                { "192.168.1.1", false },
                { "100.64.0.1", false },
                { "100.127.255.255", false },
                /* link-local, cloud metadata */
                { "169.254.169.254", false },
                { "169.254.0.1", false },
                { "fe80::1", false },
                { "febf::1", false },
                { "fd00:ec2::254", false },
                /* unique local, site-local, multicast, broadcast, reserved */
                { "fc00::1", false },
                { "fdff:ffff::1", false },
                { "fec0::1", false },
                { "ff02::1", false },
                { "224.0.0.1", false },
                { "239.255.255.250", false },
                { "255.255.255.255", false },
                { "240.0.0.1", false },
                { "192.0.0.170", false },
                { "198.18.0.1", false },
                /* IPv4 carried in IPv6: judged by the IPv4 address */
                { "::ffff:127.0.0.1", false },
                { "::ffff:169.254.169.254", false },
                { "::ffff:10.1.2.3", false },
                { "::127.0.0.1", false },
                { "64:ff9b::a9fe:a9fe", false },
                { "::ffff:8.8.8.8", true },
                { "64:ff9b::808:808", true },
                /* local-use NAT64 (RFC 8215): a translator of the local
                 * network, whose prefix length (where the IPv4 sits) the
                 * daemon cannot know; 6to4 carries its IPv4 in bits 16-47 */
                { "64:ff9b:1::a9fe:a9fe", false },
                { "64:ff9b:1:a9fe:a9:fe00::", false },
                { "64:ff9b:1:ffff:ffff::", false },
                { "2002:a9fe:a9fe::1", false },
                { "2002:7f00:1::", false },
                { "2002:a00:1::", false },
                { "2002:808:808::1", true },
                { "64:ff9b:2::1", true },
                /* public */
                { "8.8.8.8", true },
                { "1.1.1.1", true },
                { "172.15.255.255", true },
                { "172.32.0.1", true },
                { "100.63.255.255", true },
                { "100.128.0.1", true },
                { "169.253.0.1", true },
                { "11.0.0.1", true },
                { "2001:4860:4860::8888", true },
                { "2606:4700::1111", true },
                { "fbff::1", true },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                if (allowed(t[i].addr, NULL) != t[i].ok)
                        fail_msg("%s: expected %s", t[i].addr, t[i].ok ? "allowed" : "refused");
        }
}

static void test_address_allow_list(void **state) {
        char *allow[] = { (char *) "127.0.0.0/8", (char *) "10.1.0.0/16", (char *) "fd00::/8",
                          (char *) "169.254.169.254", NULL };
        assert_true(allowed("127.0.0.1", allow));
        assert_true(allowed("::ffff:127.0.0.1", allow)); /* the IPv4 it carries is allowed */
        assert_true(allowed("10.1.200.3", allow));
        assert_false(allowed("10.2.0.1", allow));
        assert_true(allowed("fd12::1", allow));
        assert_false(allowed("fc00::1", allow));
        assert_true(allowed("169.254.169.254", allow));
        assert_false(allowed("169.254.169.253", allow));
        assert_false(allowed("::1", allow)); /* IPv6 loopback is not 127/8 */

        const char *good[] = { "10.0.0.0/8", "1.2.3.4", "::/0", "fe80::/10", "0.0.0.0/0", "::1" };
        const char *bad[] = { "", "10.0.0.0/33", "::/129", "10.0.0/8", "x", "10.0.0.0/", "10.0.0.0/-1", "1.2.3.4/8x" };
        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                assert_int_equal(data_cidr_valid(good[i]), 0);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (data_cidr_valid(bad[i]) != -EINVAL)
                        fail_msg("'%s' accepted as a CIDR", bad[i]);
}

/* ---- limits granted to a tenant ---------------------------------------------- */

static void config_of(DaemonConfig *cfg, const char *yaml) {
        char *err = NULL;
        daemon_config_init(cfg);
        int r = daemon_config_parse(cfg, yaml, strlen(yaml), "test.yaml", &err);
        if (r < 0)
                fail_msg("%s", err);
}

/* Storage per tenant (daemon-quota.c): the cap a tenant gets, and the
 * accounting rule a write passes or not. */
static void test_stored_cap(void **state) {
        DaemonConfig cfg;
        const char *key = NULL;
        unsetenv("PYSPRINTER_DATA_TENANT_MAX_BYTES");
        config_of(&cfg, "{}");
        assert_int_equal(daemon_stored_cap(&cfg, "alice", &key), DATA_DEFAULT_MAX_TENANT_BYTES);
        setenv("PYSPRINTER_DATA_TENANT_MAX_BYTES", "1500", 1);
        assert_int_equal(daemon_stored_cap(&cfg, "alice", &key), 1500);
        assert_string_equal(key, "PYSPRINTER_DATA_TENANT_MAX_BYTES");
        daemon_config_done(&cfg);
        config_of(&cfg, "disk: {max_stored_bytes: 1G, reserve_bytes: 1M}\n"
                        "tenants: {alice: {max_stored_bytes: 6000}, bob: {network: true}}\n");
        assert_int_equal(cfg.retention.reserve_bytes, 1 << 20); /* the rest of disk: still read */
        assert_int_equal(daemon_stored_cap(&cfg, "alice", &key), 6000);
        assert_string_equal(key, "tenants.NAME.max_stored_bytes");
        assert_int_equal(daemon_stored_cap(&cfg, "bob", &key), 1ULL << 30);
        assert_string_equal(key, "disk.max_stored_bytes");
        assert_int_equal(daemon_stored_cap(&cfg, "carol", NULL), 1ULL << 30);
        daemon_config_done(&cfg);
        unsetenv("PYSPRINTER_DATA_TENANT_MAX_BYTES");
        static const char *const bad[] = {
                "disk: {max_stored_bytes: 0}\n",
                "disk: {max_stored_bytes: lots}\n",
                "disk: {max_stored_bytes: -5}\n",
                "tenants: {alice: {max_stored_bytes: 0}}\n",
                "tenants: {alice: {max_stored_bytes: [1]}}\n",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *err = NULL;
                daemon_config_init(&cfg);
                assert_int_equal(daemon_config_parse(&cfg, bad[i], strlen(bad[i]), "test.yaml", &err), -EINVAL);
                assert_non_null(strstr(err, "max_stored_bytes"));
                free(err);
                daemon_config_done(&cfg);
        }
}

static void test_stored_check(void **state) {
        static const struct {
                uint64_t data, code, adding, cap;
                int want;
        } rows[] = {
                { 0, 0, 0, 1, 0 },
                { 4000, 0, 2000, 6000, 0 }, /* exactly the cap fits */
                { 4000, 0, 2001, 6000, -EDQUOT },
                { 3000, 3000, 0, 6000, 0 }, /* code and data share it */
                { 3000, 3001, 0, 6000, -EDQUOT },
                { 7000, 0, 0, 6000, -EDQUOT },                     /* already over (a lowered cap): nothing more */
                { UINT64_MAX - 1, 5, 5, UINT64_MAX - 1, -EDQUOT }, /* saturates, never wraps to small */
                { 0, 0, UINT64_MAX, UINT64_MAX, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                char *err = NULL;
                StoredUsage u = { .data_bytes = rows[i].data, .code_bytes = rows[i].code };
                int r = daemon_stored_check("alice", &u, rows[i].adding, rows[i].cap, "disk.max_stored_bytes", &err);
                if (r != rows[i].want)
                        fail_msg("row %zu: %d, want %d", i, r, rows[i].want);
                if (r < 0) {
                        assert_non_null(strstr(err, "tenant 'alice'"));
                        assert_non_null(strstr(err, "(disk.max_stored_bytes)"));
                        assert_non_null(strstr(err, "nothing was stored"));
                } else
                        assert_null(err);
                free(err);
        }
        char *err = NULL;
        StoredUsage u = { .data_bytes = 10, .code_bytes = 5 };
        assert_int_equal(daemon_stored_check("bob", &u, 1, 15, NULL, &err), -EDQUOT);
        assert_string_equal(
                err, "tenant 'bob' would keep 16 bytes in the daemon (datasets 10, function code 5, this "
                     "write 1), over its storage cap of 15 bytes: nothing was stored; remove datasets or "
                     "versions (pysprinter data rm) or function versions (pysprinter functions rm NAME:V), or ask the "
                     "operator for more");
        free(err);
}

static void test_retries_grant(void **state) {
        DaemonConfig cfg;
        int attempts = -7;
        char *err = NULL;
        static const struct {
                const char *yaml, *tenant;
                int asked;       /* -1: none */
                int ret;         /* 0 or -EPERM */
                int attempts;    /* on success */
                const char *key; /* on -EPERM: the key that binds */
        } rows[] = {
                /* No key: today's behaviour (server.max_attempts the default). */
                { "", "alice", -1, 0, 3, NULL },
                { "", "alice", 10, 0, 11, NULL },
                { "server: {max_attempts: 1}\n", "alice", 3, 0, 4, NULL },
                /* The global cap: above it refused, the default lowered. */
                { "limits: {maxima: {retries: 1}}\n", "alice", -1, 0, 2, NULL },
                { "limits: {maxima: {retries: 1}}\n", "alice", 1, 0, 2, NULL },
                { "limits: {maxima: {retries: 1}}\n", "alice", 2, -EPERM, 0, "'limits.maxima'" },
                { "limits: {maxima: {retries: 0}}\n", "alice", -1, 0, 1, NULL },
                /* A default below the cap stays (never raised). */
                { "limits: {maxima: {retries: 5}}\nserver: {max_attempts: 2}\n", "alice", -1, 0, 2, NULL },
                /* A tenant's cap binds when it is the lower. */
                { "tenants: {bob: {maxima: {retries: 0}}}\n", "bob", 1, -EPERM, 0, "'tenants.bob.maxima'" },
                { "tenants: {bob: {maxima: {retries: 0}}}\n", "bob", -1, 0, 1, NULL },
                { "tenants: {bob: {maxima: {retries: 0}}}\n", "alice", 4, 0, 5, NULL },
                { "limits: {maxima: {retries: 1}}\ntenants: {bob: {maxima: {retries: 3}}}\n", "bob", 2, -EPERM, 0,
                  "'limits.maxima'" },
                { "limits: {maxima: {retries: 3}}\ntenants: {bob: {maxima: {retries: 1}}}\n", "bob", 2, -EPERM, 0,
                  "'tenants.bob.maxima'" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                config_of(&cfg, rows[i].yaml);
                err = NULL;
                attempts = -7;
                int r = daemon_retries_grant(&cfg, rows[i].tenant, rows[i].asked, &attempts, &err);
                if (r != rows[i].ret)
                        fail_msg("row %zu: %d, not %d", i, r, rows[i].ret);
                if (r == 0 && attempts != rows[i].attempts)
                        fail_msg("row %zu: %d attempts, not %d", i, attempts, rows[i].attempts);
                if (r < 0) {
                        assert_int_equal(attempts, -7); /* written only on success */
                        if (!strstr(err, rows[i].key))
                                fail_msg("row %zu: '%s' does not name %s", i, err, rows[i].key);
                        free(err);
                }
                daemon_config_done(&cfg);
        }

        /* A stored max_attempts (a deploy's, a recovered run's) is lowered
         * to the grant now, never raised; 0 is the config's default. */
        config_of(&cfg, "limits: {maxima: {retries: 2}}\ntenants: {bob: {maxima: {retries: 0}}}\n");
        assert_int_equal(daemon_retries_clamp(&cfg, "alice", 11), 3);
        assert_int_equal(daemon_retries_clamp(&cfg, "alice", 2), 2);
        assert_int_equal(daemon_retries_clamp(&cfg, "alice", 0), 3);
        assert_int_equal(daemon_retries_clamp(&cfg, "bob", 5), 1);
        assert_int_equal(daemon_retries_clamp(&cfg, "bob", 0), 1);
        daemon_config_done(&cfg);
        config_of(&cfg, "");
        assert_int_equal(daemon_retries_clamp(&cfg, "alice", 11), 11);
        daemon_config_done(&cfg);

        /* Bad values are the config's error, naming the key. */
        static const char *const bad[] = { "limits: {maxima: {retries: 11}}\n", "limits: {maxima: {retries: -1}}\n",
                                           "limits: {maxima: {retries: one}}\n", "limits: {defaults: {retries: 1}}\n",
                                           "tenants: {bob: {maxima: {retries: 11}}}\n" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                daemon_config_init(&cfg);
                err = NULL;
                assert_int_equal(daemon_config_parse(&cfg, bad[i], strlen(bad[i]), "test.yaml", &err), -EINVAL);
                assert_non_null(strstr(err, "retries"));
                free(err);
                daemon_config_done(&cfg);
        }
}

static void test_limits_grant(void **state) {
        DaemonConfig cfg;
        config_of(&cfg, "limits:\n"
                        "  defaults: {timeout_ms: 60000}\n"
                        "  maxima: {timeout_ms: 600000, memory_bytes: 1000000000, max_procs: 100, max_output_bytes: 5000}\n"
                        "tenants:\n"
                        "  bob: {network: true, maxima: {timeout_ms: 1000, max_procs: 500}}\n");
        RunLimits out;
        char *err = NULL;

        /* Nothing asked: defaults (the tenant's maximum when lower). */
        assert_int_equal(daemon_limits_grant(&cfg, "alice", &(RunLimits) {}, &out, &err), 0);
        assert_int_equal(out.timeout_ms, 60000);
        assert_int_equal(out.max_output_bytes, 5000); /* default 10 MiB lowered to the maximum */
        assert_false(out.network);
        assert_int_equal(daemon_limits_grant(&cfg, "bob", &(RunLimits) {}, &out, &err), 0);
        assert_int_equal(out.timeout_ms, 1000);

        /* Every limit above the grant is -EPERM naming it. */
        static const struct {
                const char *tenant;
                RunLimits asked;
                const char *name;
        } refused[] = {
                { "alice", { .timeout_ms = 600001 }, "timeout_ms" },
                { "alice", { .memory_bytes = 1000000001 }, "memory_bytes" },
                { "alice", { .max_procs = 101 }, "max_procs" },
                { "alice", { .max_output_bytes = 5001 }, "max_output_bytes" },
                { "alice", { .network = true }, "network" },
                { "bob", { .timeout_ms = 1001 }, "timeout_ms" },
                { "bob", { .max_procs = 101 }, "max_procs" }, /* a tenant cannot be granted above the global */
        };
        for (size_t i = 0; i < ELEMENTSOF(refused); i++) {
                err = NULL;
                assert_int_equal(daemon_limits_grant(&cfg, refused[i].tenant, &refused[i].asked, &out, &err), -EPERM);
                assert_non_null(strstr(err, refused[i].name));
                free(err);
        }
        /* Within the grant: as asked. */
        assert_int_equal(daemon_limits_grant(&cfg, "bob", &(RunLimits) { .timeout_ms = 500, .network = true }, &out, &err),
                         0);
        assert_int_equal(out.timeout_ms, 500);
        assert_true(out.network);

        /* A grant made under an older config is lowered to bob's caps now,
         * never raised; within them it stays. */
        RunLimits old = { .timeout_ms = 5000, .memory_bytes = 1, .max_procs = 0, .network = true };
        assert_true(daemon_limits_clamp(&cfg, "bob", &old));
        assert_int_equal(old.timeout_ms, 1000);
        assert_int_equal(old.memory_bytes, 1);
        assert_int_equal(old.max_procs, 100);
        assert_true(old.network);
        RunLimits fine = { .timeout_ms = 500, .memory_bytes = 1, .max_procs = 1, .max_output_bytes = 1 };
        assert_false(daemon_limits_clamp(&cfg, "bob", &fine));
        assert_int_equal(fine.timeout_ms, 500);
        daemon_config_done(&cfg);

        /* limits.maxima.network is the default grant; a tenant may be denied. */
        config_of(&cfg, "limits:\n  maxima: {network: true}\ntenants:\n  eve: {network: false}\n");
        assert_int_equal(daemon_limits_grant(&cfg, "alice", &(RunLimits) { .network = true }, &out, &err), 0);
        err = NULL;
        assert_int_equal(daemon_limits_grant(&cfg, "eve", &(RunLimits) { .network = true }, &out, &err), -EPERM);
        free(err);
        RunLimits was_granted = { .network = true };
        assert_true(daemon_limits_clamp(&cfg, "eve", &was_granted));
        assert_false(was_granted.network);
        daemon_config_done(&cfg);

        /* No maxima: nothing asked is the config's default of the moment
         * (a SIGHUP's), not 0 left to the engine's defaults of the start. */
        config_of(&cfg, "limits:\n  defaults: {timeout_ms: 300, max_output_bytes: 1000}\n");
        assert_int_equal(daemon_limits_grant(&cfg, "alice", &(RunLimits){}, &out, &err), 0);
        assert_int_equal(out.timeout_ms, 300);
        assert_int_equal(out.max_output_bytes, 1000);
        assert_int_equal(out.memory_bytes, RUN_DEFAULT_MEMORY_BYTES);
        assert_int_equal(out.max_procs, RUN_DEFAULT_MAX_PROCS);
        /* A run recorded with no timeout (0: the engine's default) keeps
         * it; one past the 7-day ceiling is lowered to it. */
        RunLimits unset = {};
        assert_false(daemon_limits_clamp(&cfg, "alice", &unset));
        assert_int_equal(unset.timeout_ms, 0);
        RunLimits huge = { .timeout_ms = RUN_MAX_TIMEOUT_MS + 1 };
        assert_true(daemon_limits_clamp(&cfg, "alice", &huge));
        assert_int_equal(huge.timeout_ms, RUN_MAX_TIMEOUT_MS);
        daemon_config_done(&cfg);
}

/* ---- request targets ------------------------------------------------------------ */

static void test_target_check(void **state) {
        const char *good[] = { "/v1/runs", "/v1/runs/r0abc", "/v1/data/x?filename=a%20b.txt", "/v1/x?y=%7e%41",
                               "/healthz", "/v1/x?a=%", "/v1/x?a=%zz" };
        const char *bad[] = { "/v1/runs/r0%00zzzz", "/v1/data/x?filename=a%00b", "/v1/x?y=%0a", "/v1/x?y=%0D",
                              "/v1/x%1b", "/v1/x?y=%7F", "/v1/x\x01", "/v1/x?y=a\tb" };
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                char *err = NULL;
                if (http_target_check(good[i], &err) != 0)
                        fail_msg("'%s' refused: %s", good[i], err);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *err = NULL;
                if (http_target_check(bad[i], &err) != -EINVAL)
                        fail_msg("'%s' accepted", bad[i]);
                free(err);
        }
}

/* ---- SigV4 ------------------------------------------------------------------------
 *
 * AWS's published test suite (aws-sig-v4-test-suite): get-vanilla and
 * get-vanilla-query-order-key-case, credentials AKIDEXAMPLE /
 * wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, us-east-1, service "service";
 * the third row was signed by botocore (double-encoded path, encoded
 * query values). */

typedef struct Headers {
        const char *host, *date, *content_sha256;
} Headers;

static const char *header_of(void *userdata, const char *name) {
        const Headers *h = userdata;
        if (streq(name, "host"))
                return h->host;
        if (streq(name, "x-amz-date"))
                return h->date;
        if (streq(name, "x-amz-content-sha256"))
                return h->content_sha256;
        return NULL;
}

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define AUTH(sig) "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, " \
                  "SignedHeaders=host;x-amz-date, Signature=" sig

static int verify(const char *method, const char *target, const char *auth, Headers *h, const char *body,
                  const char *secret, usec_t now) {
        SigV4Auth a = {};
        char *err = NULL;
        int r = sigv4_parse_authorization(auth, &a, &err);
        if (r < 0) {
                free(err);
                return r;
        }
        SigV4Request rq = { .method = method, .raw_target = target, .header = header_of, .userdata = h,
                            .body = body, .body_len = body ? strlen(body) : 0 };
        r = sigv4_verify(&rq, &a, secret, now, &err);
        free(err);
        sigv4_auth_done(&a);
        return r;
}

static void test_sigv4_vectors(void **state) {
        Headers h = { .host = "example.amazonaws.com", .date = "20150830T123600Z" };
        assert_int_equal(verify("GET", "/", AUTH("5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"), &h,
                                NULL, SECRET, 0),
                         0);
        assert_int_equal(verify("GET", "/?Param2=value2&Param1=value1",
                                AUTH("b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"), &h, NULL,
                                SECRET, 0),
                         0);
        assert_int_equal(verify("GET", "/a%20b/c?x=a%2Fb&y=~z",
                                AUTH("4b9804a5a66f45642c9a75032bea5af82663129e89ec35f599ba428bbf7012d5"), &h, NULL,
                                SECRET, 0),
                         0);
        /* Uppercase hex in the signature is the same signature. */
        assert_int_equal(verify("GET", "/", AUTH("5FA00FA31553B73EBF1942676E86291E8372FF2A2260956D9B8AAE1D763FBF31"), &h,
                                NULL, SECRET, 0),
                         0);
}

static void test_sigv4_refusals(void **state) {
        const char *good = AUTH("5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
        Headers h = { .host = "example.amazonaws.com", .date = "20150830T123600Z" };
        usec_t signed_at = 1440938160ULL * USEC_PER_SEC; /* 2015-08-30T12:36:00Z */

        /* tampered signature, method, path, query, host, body, secret */
        assert_int_equal(verify("GET", "/", AUTH("5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf30"), &h,
                                NULL, SECRET, 0),
                         -EPERM);
        assert_int_equal(verify("POST", "/", good, &h, NULL, SECRET, 0), -EPERM);
        assert_int_equal(verify("GET", "/x", good, &h, NULL, SECRET, 0), -EPERM);
        assert_int_equal(verify("GET", "/?a=1", good, &h, NULL, SECRET, 0), -EPERM);
        assert_int_equal(verify("GET", "/", good, &h, "{}", SECRET, 0), -EPERM);
        assert_int_equal(verify("GET", "/", good, &h, NULL, SECRET "x", 0), -EPERM);
        Headers other = h;
        other.host = "evil.example.com";
        assert_int_equal(verify("GET", "/", good, &other, NULL, SECRET, 0), -EPERM);

        /* The 15-minute window, both ways. */
        assert_int_equal(verify("GET", "/", good, &h, NULL, SECRET, signed_at + 14 * 60 * USEC_PER_SEC), 0);
        assert_int_equal(verify("GET", "/", good, &h, NULL, SECRET, signed_at - 14 * 60 * USEC_PER_SEC), 0);
        assert_int_equal(verify("GET", "/", good, &h, NULL, SECRET, signed_at + 16 * 60 * USEC_PER_SEC), -EPERM);
        assert_int_equal(verify("GET", "/", good, &h, NULL, SECRET, signed_at - 16 * 60 * USEC_PER_SEC), -EPERM);

        /* A declared payload hash must be the body's; UNSIGNED-PAYLOAD is
         * signed as that literal, so it cannot stand in for a body hash. */
        Headers decl = h;
        decl.content_sha256 = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        assert_int_equal(verify("GET", "/", good, &decl, "x", SECRET, 0), -EPERM);
        decl.content_sha256 = "UNSIGNED-PAYLOAD";
        assert_int_equal(verify("GET", "/", good, &decl, NULL, SECRET, 0), -EPERM);

        /* Malformed headers */
        const char *bad[] = {
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service, SignedHeaders=host, Signature=00",
                "AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=x-amz-date, "
                "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                "Bearer x",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(verify("GET", "/", bad[i], &h, NULL, SECRET, 0), -EINVAL);
        Headers nodate = { .host = "example.amazonaws.com" };
        assert_int_equal(verify("GET", "/", good, &nodate, NULL, SECRET, 0), -EPERM);
}

/* ---- the route table ------------------------------------------------------------ */

static const struct {
        const char *method, *path;
        int expect;               /* 0, -ENOENT (404), -EOPNOTSUPP (405) */
        DaemonHandler handler;    /* expect 0 */
        const char *allow;        /* expect -EOPNOTSUPP */
} route_cases[] = {
        { "GET", "/healthz", 0, daemon_api_healthz, NULL },
        { "HEAD", "/healthz", 0, daemon_api_healthz, NULL },
        { "POST", "/healthz", -EOPNOTSUPP, NULL, "GET, HEAD" },
        { "GET", "/metrics", 0, daemon_api_metrics, NULL },
        { "GET", "/v1/runs", 0, daemon_api_runs_list, NULL },
        { "POST", "/v1/runs", 0, daemon_api_runs_submit, NULL },
        { "PUT", "/v1/runs", -EOPNOTSUPP, NULL, "GET, HEAD, POST" },
        { "DELETE", "/v1/runs", -EOPNOTSUPP, NULL, "GET, HEAD, POST" },
        { "GET", "/v1/runs/r123", 0, daemon_api_run_get, NULL },
        { "DELETE", "/v1/runs/r123", 0, daemon_api_run_cancel, NULL },
        { "POST", "/v1/runs/r123", -EOPNOTSUPP, NULL, "GET, HEAD, DELETE" },
        { "GET", "/v1/runs/r123/logs", 0, daemon_api_run_logs, NULL },
        /* Split as sent, then decoded: an encoded '/' stays in its segment. */
        { "GET", "/v1/runs/r1%2Flogs", 0, daemon_api_run_get, NULL },
        { "GET", "/v1/r%75ns/r123", 0, daemon_api_run_get, NULL },
        { "GET", "/v1/runs/r%001", -ENOENT, NULL, NULL },
        { "POST", "/v1/runs/r123/logs", -EOPNOTSUPP, NULL, "GET, HEAD" },
        { "GET", "/v1/runs/r123/other", -ENOENT, NULL, NULL },
        { "POST", "/v1/validate", 0, daemon_api_validate, NULL },
        { "GET", "/v1/validate", -EOPNOTSUPP, NULL, "POST" },
        { "GET", "/v1/functions", 0, daemon_api_functions_list, NULL },
        { "POST", "/v1/functions", 0, daemon_api_function_deploy, NULL },
        { "GET", "/v1/functions/f", 0, daemon_api_function_get, NULL },
        { "DELETE", "/v1/functions/f", 0, daemon_api_function_delete, NULL },
        { "PUT", "/v1/functions/f", -EOPNOTSUPP, NULL, "GET, HEAD, DELETE" },
        { "POST", "/v1/functions/f/invoke", 0, daemon_api_function_invoke, NULL },
        { "GET", "/v1/functions/f/invoke", -EOPNOTSUPP, NULL, "POST" },
        { "GET", "/v1/workers", 0, daemon_api_workers, NULL },
        { "POST", "/v1/workers", -EOPNOTSUPP, NULL, "GET, HEAD" },
        { "GET", "/v1/envs", 0, daemon_api_envs, NULL },
        { "GET", "/v1/dags", 0, daemon_dag_handle, NULL },
        { "POST", "/v1/dags", 0, daemon_dag_handle, NULL },
        { "DELETE", "/v1/dags/d1", 0, daemon_dag_handle, NULL },
        { "GET", "/v1/dags/d1/tasks/t/logs", 0, daemon_dag_handle, NULL },
        { "POST", "/v1/dags/d1/tasks/t/logs", -EOPNOTSUPP, NULL, "GET, HEAD" },
        { "GET", "/v1/dags/d1/tasks/t", -ENOENT, NULL, NULL },
        { "GET", "/v1/data", 0, daemon_data_handle, NULL },
        { "PUT", "/v1/data/ds", 0, daemon_data_handle, NULL },
        { "POST", "/v1/data/ds", -EOPNOTSUPP, NULL, "GET, HEAD, PUT, DELETE" },
        { "GET", "/v1/data/ds/content", 0, daemon_data_handle, NULL },
        { "GET", "/2015-03-31/functions", 0, daemon_api_lambda_list, NULL },
        { "GET", "/2015-03-31/functions/", 0, daemon_api_lambda_list, NULL },
        { "GET", "/2015-03-31/functions/f", 0, daemon_api_lambda_get, NULL },
        { "GET", "/2015-03-31/functions/arn:aws:lambda:us-east-1:1:function:f:3/configuration", 0,
          daemon_api_lambda_configuration, NULL },
        { "POST", "/2015-03-31/functions/f/invocations", 0, daemon_api_lambda_invoke, NULL },
        { "GET", "/2015-03-31/functions/f/invocations", -EOPNOTSUPP, NULL, "POST" },
        { "DELETE", "/2015-03-31/functions/f", 0, daemon_api_lambda_delete, NULL },
        { "PUT", "/2015-03-31/functions/f", -EOPNOTSUPP, NULL, "GET, HEAD, DELETE" },
        { "GET", "/", -ENOENT, NULL, NULL },
        { "GET", "/v1", -ENOENT, NULL, NULL },
        { "GET", "/v2/runs", -ENOENT, NULL, NULL },
        { "GET", "/v1//runs", -ENOENT, NULL, NULL },
        { "GET", "v1/runs", -ENOENT, NULL, NULL },
        { "GET", "/v1/a/b/c/d/e/f/g", -ENOENT, NULL, NULL },
        { "PATCH", "/v1/runs", -EOPNOTSUPP, NULL, "GET, HEAD, POST" },
        /* "**" rows: one or more segments after the prefix, not none. */
        { "GET", "/fn/t/f/x", 0, daemon_api_endpoint, NULL },
        { "DELETE", "/fn/t/f/x/y/z", 0, daemon_api_endpoint, NULL },
        /* Below the name, the function's own path: any depth, "//" too. */
        { "GET", "/fn/t/f/a/b/c/d/e/f/g/h", 0, daemon_api_endpoint, NULL },
        { "GET", "/fn/t/f/a//b", 0, daemon_api_endpoint, NULL },
        { "GET", "/fn/t/f//", 0, daemon_api_endpoint, NULL },
        { "GET", "/fn/t//f/a", -ENOENT, NULL, NULL },
        { "GET", "/fn//t/f", -ENOENT, NULL, NULL },
        { "TRACE", "/fn/t/f/a/b/c/d/e", -EOPNOTSUPP, NULL, "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS" },
        { "GET", "/fn/t", -ENOENT, NULL, NULL },
        { "GET", "/ui/", 0, daemon_ui_handle, NULL },
        { "PATCH", "/fn/t/f/x", 0, daemon_api_endpoint, NULL },
        { "OPTIONS", "/fn/t/f", 0, daemon_api_endpoint, NULL },
        { "TRACE", "/fn/t/f/x", -EOPNOTSUPP, NULL, "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS" },
        { "OPTIONS", "/v1/runs", -EOPNOTSUPP, NULL, "GET, HEAD, POST" },
        { "GET", "/ui/assets/app.js", 0, daemon_ui_handle, NULL },
        { "GET", "/ui", 0, daemon_ui_handle, NULL },
        { "GET", "/uix", -ENOENT, NULL, NULL },
        { "GET", "/v1/run", -ENOENT, NULL, NULL },
        { "GET", "/v1/runsx", -ENOENT, NULL, NULL },
};

static void test_routes(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(route_cases); i++) {
                char seg[DAEMON_MAX_SEGMENTS][DAEMON_SEGMENT_MAX];
                const DaemonRoute *route = NULL;
                unsigned allow = 0;
                int n = 0;
                int k = daemon_route_find(route_cases[i].method, route_cases[i].path, seg, &n, &route, &allow);
                if (k != route_cases[i].expect)
                        fail_msg("%s %s: %d, expected %d", route_cases[i].method, route_cases[i].path, k,
                                 route_cases[i].expect);
                if (k == 0)
                        assert_ptr_equal(route->handler, route_cases[i].handler);
                if (k == 0 && strstr(route_cases[i].path, "%2F"))
                        assert_string_equal(seg[2], "r1/logs");
                if (k == -EOPNOTSUPP) {
                        char a[DAEMON_ALLOW_MAX];
                        assert_string_equal(daemon_route_allow(allow, a), route_cases[i].allow);
                }
        }
}

/* Every row resolves to itself for each of its methods (no row is
 * shadowed by an earlier one), and its pattern is well formed. */
static void test_routes_all_resolve(void **state) {
        static const char *const methods[] = { "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS" };
        size_t n_routes;
        const DaemonRoute *routes = daemon_routes(&n_routes);
        assert_true(n_routes >= 20);
        for (size_t i = 0; i < n_routes; i++) {
                char path[256], seg[DAEMON_MAX_SEGMENTS][DAEMON_SEGMENT_MAX];
                size_t o = 0;
                assert_non_null(routes[i].handler);
                assert_true(routes[i].methods != 0);
                for (const char *p = routes[i].pattern; *p && o + 2 < sizeof(path); p++)
                        o += (size_t) snprintf(path + o, sizeof(path) - o, *p == '*' ? "x1" : "%c", *p);
                for (size_t m = 0; m < ELEMENTSOF(methods); m++) {
                        if (!(routes[i].methods & daemon_route_method(methods[m])))
                                continue;
                        const DaemonRoute *got = NULL;
                        int n = 0;
                        assert_int_equal(daemon_route_find(methods[m], path, seg, &n, &got, NULL), 0);
                        assert_ptr_equal(got, &routes[i]);
                }
        }
}

static void test_errno_status(void **state) {
        static const struct {
                int r;
                unsigned status;
                const char *code;
        } cases[] = {
                { -ENOENT, 404, "not_found" },       { -EBUSY, 429, "too_many_requests" },
                { -ESHUTDOWN, 503, "shutting_down" }, { -EINVAL, 400, "bad_request" },
                { -EPERM, 403, "forbidden" },         { -ENOSPC, 507, "insufficient_storage" },
                { -EIO, 500, "internal" },            { -ENOMEM, 500, "internal" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const char *code = NULL;
                assert_int_equal(daemon_errno_status(cases[i].r, &code), cases[i].status);
                assert_string_equal(code, cases[i].code);
        }
}

/* ---- the Lambda API's names and calling rule ----------------------------------- */

static void test_lambda_function_ref(void **state) {
        static const struct {
                const char *ref, *name, *qualifier; /* name NULL: -EINVAL */
        } cases[] = {
                { "echo", "echo", NULL },
                { "echo:3", "echo", "3" },
                { "echo:$LATEST", "echo", "$LATEST" },
                { "arn:aws:lambda:us-east-1:123456789012:function:echo", "echo", NULL },
                { "arn:aws:lambda:eu-west-1:000000000000:function:my-fn_2:7", "my-fn_2", "7" },
                { "arn:aws-cn:lambda:cn-north-1:1:function:f", "f", NULL },
                /* Lambda's partial ARN: ACCOUNT:function:NAME[:QUALIFIER]. */
                { "123456789012:function:echo", "echo", NULL },
                { "123456789012:function:echo:3", "echo", "3" },
                { "000000000000:function:echo:$LATEST", "echo", "$LATEST" },
                { "12345678901:function:echo", NULL, NULL },
                { "12345678901x:function:echo", NULL, NULL },
                { "123456789012:layer:echo", NULL, NULL },
                { "123456789012:function:", NULL, NULL },
                { "123456789012:function:echo:", NULL, NULL },
                { "123456789012:function:echo:3:x", NULL, NULL },
                { "arn:aws:s3:us-east-1:1:function:f", NULL, NULL },
                { "arn:aws:lambda:us-east-1:1:layer:f", NULL, NULL },
                { "arn:aws:lambda:us-east-1:1:function:", NULL, NULL },
                { "arn:aws:lambda:us-east-1:1:function:f:3:x", NULL, NULL },
                { "arn:aws:lambda:us-east-1:1:function:f:", NULL, NULL },
                { "echo:", NULL, NULL },
                { "a:b:c", NULL, NULL },
                { "bad/name", NULL, NULL },
                { "", NULL, NULL },
                { "with space", NULL, NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *name = NULL, *qualifier = NULL;
                int k = lambda_function_ref_parse(cases[i].ref, &name, &qualifier);
                if (!cases[i].name) {
                        if (k != -EINVAL)
                                fail_msg("'%s' parsed", cases[i].ref);
                        continue;
                }
                if (k < 0)
                        fail_msg("'%s': %d", cases[i].ref, k);
                assert_string_equal(name, cases[i].name);
                if (cases[i].qualifier)
                        assert_string_equal(qualifier, cases[i].qualifier);
                else
                        assert_null(qualifier);
        }
}

static void test_lambda_call_rule(void **state) {
        static const struct {
                const char *params;
                LambdaCall call;
        } cases[] = {
                { "[\"event\",\"context\"]", LAMBDA_CALL_EVENT_CONTEXT },
                { "[\"e\",\"c\"]", LAMBDA_CALL_EVENT_CONTEXT },
                { "[\"event\"]", LAMBDA_CALL_EVENT },
                { "[]", LAMBDA_CALL_KWARGS },
                { "[\"a\",\"b\",\"c\"]", LAMBDA_CALL_KWARGS },
                { "[\"event\",\"*args\"]", LAMBDA_CALL_KWARGS },
                { "[\"**kw\"]", LAMBDA_CALL_KWARGS },
                { "[\"*\",\"a\"]", LAMBDA_CALL_KWARGS },
                { "[\"a\",\"*\",\"b\"]", LAMBDA_CALL_KWARGS },
                { "[\"event\",\"context\",\"**kw\"]", LAMBDA_CALL_KWARGS },
                { NULL, LAMBDA_CALL_KWARGS },
                { "not json", LAMBDA_CALL_KWARGS },
                { "{\"event\":1}", LAMBDA_CALL_KWARGS },
                /* The text scan and jansson agree at every edge. */
                { " [ \"e\" ,\t\"c\" ]\n", LAMBDA_CALL_EVENT_CONTEXT },
                { "[\"\\u0065\",\"c\"]", LAMBDA_CALL_EVENT_CONTEXT },
                { "[\"\\u002a\",\"c\"]", LAMBDA_CALL_KWARGS },
                { "[\"\xc3\xa9v\",\"c\"]", LAMBDA_CALL_EVENT_CONTEXT },
                { "[\"\xc3v\",\"c\"]", LAMBDA_CALL_KWARGS },
                { "[\"e\x01\",\"c\"]", LAMBDA_CALL_KWARGS },
                { "[\"e\",\"c\"] x", LAMBDA_CALL_KWARGS },
                { "[\"e\",\"c\",]", LAMBDA_CALL_KWARGS },
                { "[\"e\" \"c\"]", LAMBDA_CALL_KWARGS },
                { "[\"e\",1]", LAMBDA_CALL_KWARGS },
                { "[\"\",\"c\"]", LAMBDA_CALL_KWARGS },
                { "[\"e\"", LAMBDA_CALL_KWARGS },
                { "[\"e", LAMBDA_CALL_KWARGS },
                { "", LAMBDA_CALL_KWARGS },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                if (lambda_call_rule(cases[i].params) != cases[i].call)
                        fail_msg("%s: %d, expected %d", cases[i].params ?: "NULL", lambda_call_rule(cases[i].params),
                                 cases[i].call);
}

static void test_lambda_error_body(void **state) {
        static const struct {
                RunStatus status;
                const char *type, *message, *want;
        } msgs[] = {
                { RUN_FAILED, "ValueError", "ValueError: bad", "bad" },
                { RUN_FAILED, "ValueError", "ValueError", "" },
                { RUN_FAILED, "E", "E: ('a', 2)", "('a', 2)" },
                { RUN_FAILED, "E", "E: E: twice", "E: twice" },
                { RUN_FAILED, "E", "Else", "Else" },
                { RUN_FAILED, "E", NULL, "" },
                { RUN_KILLED, "TimeLimit", "time limit (1.5s)", "time limit (1.5s)" },
                { RUN_INVALID, "ValidationError", "ValidationError", "ValidationError" },
                { RUN_ERROR, NULL, "boom", "boom" },
                /* The CLI's hint is not a Lambda caller's. */
                { RUN_INVALID, "ValidationError",
                  "add() missing 1 required argument: 'b' (give positional values with -a VALUE, named ones with "
                  "--NAME VALUE)",
                  "add() missing 1 required argument: 'b'" },
                { RUN_INVALID, "ValidationError",
                  "ValidationError: f() missing 1 required argument: 'x' (give positional values with -a VALUE, "
                  "named ones with --NAME VALUE)",
                  "f() missing 1 required argument: 'x'" },
        };
        for (size_t i = 0; i < ELEMENTSOF(msgs); i++) {
                _cleanup_free_ char *m = lambda_error_message(msgs[i].status, msgs[i].type, msgs[i].message);
                assert_string_equal(m, msgs[i].want);
        }
        static const struct {
                const char *tb, *want; /* want: the frames as a JSON array */
        } tbs[] = {
                { NULL, "[]" },
                { "", "[]" },
                { "no frames here\n", "[]" },
                { "Traceback (most recent call last):\n  File \"main.py\", line 4, in f\n    raise E()\nmain.E\n",
                  "[\"  File \\\"main.py\\\", line 4, in f\\n    raise E()\\n\"]" },
                /* Two frames, 3.11's carets, no newline at the end. */
                { "Traceback (most recent call last):\n  File \"a.py\", line 9, in f\n    g()\n"
                  "  File \"a.py\", line 2, in g\n    1/0\n    ~^~\nZeroDivisionError: division by zero",
                  "[\"  File \\\"a.py\\\", line 9, in f\\n    g()\\n\","
                  "\"  File \\\"a.py\\\", line 2, in g\\n    1/0\\n    ~^~\\n\"]" },
                /* A chain: the last exception's frames only. */
                { "Traceback (most recent call last):\n  File \"a.py\", line 3, in f\n    {}[1]\nKeyError: 1\n\n"
                  "The above exception was the direct cause of the following exception:\n\n"
                  "Traceback (most recent call last):\n  File \"a.py\", line 5, in f\n    raise E() from e\nE\n",
                  "[\"  File \\\"a.py\\\", line 5, in f\\n    raise E() from e\\n\"]" },
                /* An ExceptionGroup: its own frames, the margin taken off;
                 * not its sub-exceptions'. */
                { "  + Exception Group Traceback (most recent call last):\n"
                  "  |   File \"main.py\", line 3, in handler\n"
                  "  |     raise ExceptionGroup(\"many\", [ValueError(\"a\")])\n"
                  "  | ExceptionGroup: many (1 sub-exception)\n"
                  "  +-+---------------- 1 ----------------\n"
                  "    | Traceback (most recent call last):\n"
                  "    |   File \"main.py\", line 9, in g\n"
                  "    | ValueError: a\n"
                  "    +------------------------------------\n",
                  "[\"  File \\\"main.py\\\", line 3, in handler\\n"
                  "    raise ExceptionGroup(\\\"many\\\", [ValueError(\\\"a\\\")])\\n\"]" },
                /* A group raised from a plain exception: the group's. */
                { "Traceback (most recent call last):\n  File \"a.py\", line 2, in f\n    1/0\nZeroDivisionError\n\n"
                  "During handling of the above exception, another exception occurred:\n\n"
                  "  + Exception Group Traceback (most recent call last):\n"
                  "  |   File \"a.py\", line 4, in f\n"
                  "  | ExceptionGroup: g (1 sub-exception)\n"
                  "  +-+---------------- 1 ----------------\n"
                  "    | KeyError: 1\n"
                  "    +------------------------------------\n",
                  "[\"  File \\\"a.py\\\", line 4, in f\\n\"]" },
                /* A frame without its code line. */
                { "Traceback (most recent call last):\n  File \"<string>\", line 1, in <module>\nE: x\n",
                  "[\"  File \\\"<string>\\\", line 1, in <module>\\n\"]" },
        };
        for (size_t i = 0; i < ELEMENTSOF(tbs); i++) {
                json_t *got = lambda_stack_trace(tbs[i].tb);
                _cleanup_free_ char *text = json_dumps(got, JSON_COMPACT);
                json_decref(got);
                if (!streq(text, tbs[i].want))
                        fail_msg("case %zu: %s, expected %s", i, text, tbs[i].want);
        }
}

/* ---- request bodies (daemon-request.c) --------------------------------------- */

static void test_request_parse_table(void **state) {
        static const struct {
                RequestKind kind;
                const char *body;
                bool ok;
                const char *names; /* refused: a piece of the message */
        } cases[] = {
                { REQUEST_RUN, "{\"source\":\"def f():\\n    return 1\\n\"}", true, NULL },
                { REQUEST_RUN, "{\"source\":\"x\",\"raw_args\":[\"5\"],\"kwargs\":{\"n\":3},\"retries\":0}", true,
                  NULL },
                { REQUEST_RUN, "{\"source\":\"x\",\"limits\":{\"timeout_ms\":1000,\"network\":false}}", true, NULL },
                { REQUEST_RUN, "{}", false, "source" },
                { REQUEST_RUN, "{\"source\":\"x\",\"sauce\":1}", false, "sauce" },
                { REQUEST_RUN, "{\"source\":\"x\",\"retries\":11}", false, "retries" },
                { REQUEST_RUN, "{\"source\":\"x\",\"retries\":-1}", false, "retries" },
                { REQUEST_RUN, "{\"source\":\"x\",\"limits\":{\"timeout\":1}}", false, "timeout" },
                { REQUEST_RUN, "{\"source\":\"x\",\"args\":{}}", false, "args" },
                { REQUEST_RUN, "{\"source\":\"x\",\"filename\":\"a\\u0000b\"}", false, "'filename' holds a NUL" },
                /* Python's str holds NUL: arguments and a source (which the
                 * engine refuses in words) may; names and options may not. */
                { REQUEST_RUN, "{\"source\":\"x\\u0000\",\"args\":[\"a\\u0000\"],\"kwargs\":{\"k\":[\"\\u0000\"]}}",
                  true, NULL },
                { REQUEST_RUN, "{\"source\":\"x\",\"raw_args\":[\"\\u0000\"],\"raw_kwargs\":{\"k\":\"\\u0000\"}}", true,
                  NULL },
                { REQUEST_RUN, "{\"source\":\"x\",\"function\":\"f\\u0000g\"}", false, "'function' holds a NUL" },
                { REQUEST_RUN, "{\"source\":\"x\",\"env\":{\"A\":\"\\u0000\"}}", false, "'env' holds a NUL" },
                { REQUEST_RUN, "{\"source\":\"x\",\"secrets\":[\"A\\u0000\"]}", false, "'secrets' holds a NUL" },
                { REQUEST_RUN, "{\"source\":\"x\",\"data\":[\"d\\u0000\"]}", false, "'data' holds a NUL" },
                { REQUEST_RUN, "{\"source\":\"x\",\"kwargs\":{\"k\\u0000\":1}}", false, "NUL byte in object key" },
                { REQUEST_RUN, "{\"source\":\"x\",\"filename\":\"a\\\\u0000b\"}", true, NULL }, /* "\\u0000": no NUL */
                { REQUEST_DEPLOY, "{\"name\":\"f\\u0000\",\"source\":\"x\"}", false, "'name' holds a NUL" },
                { REQUEST_DEPLOY, "{\"name\":\"f\",\"source\":\"x\",\"description\":\"\\u0000\"}", false,
                  "'description' holds" },
                { REQUEST_INVOKE, "{\"args\":[{\"\\u0000\":1}]}", false, "NUL byte in object key" },
                { REQUEST_INVOKE, "{\"args\":[{\"a\":\"\\u0000\"}]}", true, NULL },
                { REQUEST_RUN, "{\"source\":\"x\",\"source\":\"y\"}", false, "source" },
                { REQUEST_RUN, "[1,2]", false, "" },
                { REQUEST_DEPLOY, "{\"name\":\"f\",\"source\":\"x\"}", true, NULL },
                { REQUEST_DEPLOY, "{\"name\":\"no spaces\",\"source\":\"x\"}", false, "name" },
                { REQUEST_DEPLOY, "{\"name\":\"f\",\"source\":\"x\",\"requirements\":{\"six\":1}}", false,
                  "requirements.six" },
                { REQUEST_INVOKE, "{\"version\":0}", false, "field 'version' must be a positive integer" },
                { REQUEST_INVOKE, "{\"version\":-1}", false, "field 'version' must be a positive integer" },
                { REQUEST_INVOKE, "{\"version\":\"1\"}", false, "field 'version' must be a positive integer" },
                { REQUEST_INVOKE, "{\"version\":2147483648}", false, "field 'version' must be a positive integer" },
                { REQUEST_INVOKE, "{\"version\":2147483647}", true, NULL },
                { REQUEST_INVOKE, "{\"raw_args\":[\"1\"],\"version\":2}", true, NULL },
                { REQUEST_VALIDATE, "{\"source\":\"x\",\"limits\":{}}", false, "limits" },
        };
        RequestCaps caps = { .max_depth = 16, .max_values = 1000 };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                RunRequest req = {};
                _cleanup_free_ char *err = NULL;
                int r = request_parse(cases[i].kind, cases[i].body, strlen(cases[i].body), &caps, &req, &err);
                if (cases[i].ok) {
                        if (r < 0)
                                fail_msg("case %zu (%s) refused: %s", i, cases[i].body, err);
                } else {
                        if (r >= 0)
                                fail_msg("case %zu (%s) accepted", i, cases[i].body);
                        if (!err || !strstr(err, cases[i].names))
                                fail_msg("case %zu: '%s' does not name '%s'", i, err ? err : "(null)", cases[i].names);
                }
                run_request_done(&req);
        }
}

/* What a NUL-holding request keeps: the source's every byte (the engine's
 * check names it), the argument's NUL (as \u0000 in args_json); a Lambda
 * event may hold one anywhere, another body only where caps say. */
static void test_request_keeps_nul_where_allowed(void **state) {
        RequestCaps caps = { .max_depth = 16, .max_values = 1000 };
        static const char body[] = "{\"source\":\"a\\u0000b\\u00e9\",\"args\":[\"x\\u0000y\"]}";
        RunRequest req = {};
        _cleanup_free_ char *err = NULL;
        assert_int_equal(request_parse(REQUEST_RUN, body, strlen(body), &caps, &req, &err), 0);
        assert_int_equal(req.source_len, 5);
        assert_memory_equal(req.source, "a\0b\xc3\xa9", 6);
        assert_non_null(strstr(req.args_json, "x\\u0000y"));
        run_request_done(&req);

        /* Bytes that are not UTF-8 still come back into a source holding NUL. */
        static const char latin[] = "{\"source\":\"\\u0000\xe9\"}";
        assert_int_equal(request_parse(REQUEST_RUN, latin, strlen(latin), &caps, &req, &err), 0);
        assert_int_equal(req.source_len, 2);
        assert_memory_equal(req.source, "\0\xe9", 3);
        run_request_done(&req);

        static const char event[] = "{\"a\":[\"\\u0000\"]}";
        void *j = NULL;
        assert_int_equal(request_json_parse(event, strlen(event), &caps, &j, &err), -EINVAL);
        assert_non_null(strstr(err, "field 'a' holds a NUL"));
        free(err);
        err = NULL;
        caps.nul_anywhere = true;
        assert_int_equal(request_json_parse(event, strlen(event), &caps, &j, &err), 0);
        assert_int_equal(json_string_length(json_array_get(json_object_get(j, "a"), 0)), 1);
        json_decref(j);
        caps.nul_anywhere = false;
        static const char *const members[] = { "a", NULL };
        caps.nul_members = members;
        assert_int_equal(request_json_parse(event, strlen(event), &caps, &j, &err), 0);
        json_decref(j);
        static const char top[] = "[\"\\u0000\"]";
        assert_int_equal(request_json_parse(top, strlen(top), &caps, &j, &err), -EINVAL);
}

static void test_request_retries_become_attempts(void **state) {
        RequestCaps caps = { .max_depth = 16, .max_values = 1000 };
        RunRequest req = {};
        _cleanup_free_ char *err = NULL;
        const char *body = "{\"source\":\"x\",\"retries\":0}";
        assert_int_equal(request_parse(REQUEST_RUN, body, strlen(body), &caps, &req, &err), 0);
        assert_int_equal(req.max_attempts, 1);
        run_request_done(&req);
        body = "{\"source\":\"x\"}";
        assert_int_equal(request_parse(REQUEST_RUN, body, strlen(body), &caps, &req, &err), 0);
        assert_int_equal(req.max_attempts, 0); /* the function's or the config's */
        run_request_done(&req);
}

/* ---- the config file (daemon-config.c) --------------------------------------- */

static int parse_config(const char *text, DaemonConfig *cfg, char **err) {
        daemon_config_init(cfg);
        return daemon_config_parse(cfg, text, strlen(text), "t.yaml", err);
}

static void test_config_table(void **state) {
        static const struct {
                const char *text;
                const char *error; /* NULL: accepted */
        } cases[] = {
                { "tokens:\n  - tenant: a\n    token: 0123456789abcdef0\n", NULL },
                { "tokens:\n  - tenant: a\n    token: short\n", "16" },
                /* one token under two tenants (or roles) would act as either */
                { "tokens:\n  - tenant: a\n    token: 0123456789abcdef0\n  - tenant: b\n    token: 0123456789abcdef0\n",
                  "'tokens[1]' is the same token as 'tokens[0]'" },
                { "tokens:\n  - tenant: a\n    token: 0123456789abcdef0\n  - tenant: a\n    role: readonly\n"
                  "    token_sha256: d4022b7a487c57c12cde98550a8adb6da38f7f30aa3b44deb347c9cbb5383514\n",
                  "'tokens[1]' is the same token as 'tokens[0]'" },
                { "tokens:\n  - tenant: a\n    token: 0123456789abcdef0\n  - tenant: b\n    token: 0123456789abcdef1\n",
                  NULL },
                { "tokens:\n  - tenant: 'a b'\n    token: 0123456789abcdef0\n", "tenant" },
                { "server:\n  max_attempts: 0\n", "max_attempts" },
                { "server:\n  max_attempts: 12\n", "max_attempts" },
                { "server:\n  max_wait_s: yes\n", "max_wait_s" },
                { "server:\n  nonsense: 1\n", "nonsense" },
                { "server:\n  http_threads: 257\n", "http_threads" },
                { "server:\n  http_threads: 0\n", NULL },
                { "server:\n  max_queued_per_tenant: -1\n", "max_queued_per_tenant" },
                { "server:\n  max_queued_per_tenant: 1000001\n", "max_queued_per_tenant" },
                { "limits:\n  maxima: {network: yes}\n", "network" },
                { "limits:\n  maxima: {network: false, timeout_ms: 1000}\n", NULL },
                { "listen: [1]\n", "listen" },
                { "tokens: {}\n", "tokens" },
                { ": :\n  - [\n", "t.yaml" },
                { "pool:\n  validation_cache_mb: 16\n", NULL },
                { "pool:\n  validation_cache_mb: 0\n", "pool.validation_cache_mb" },
                { "pool:\n  validation_cache_mb: lots\n", "pool.validation_cache_mb" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                DaemonConfig cfg;
                _cleanup_free_ char *err = NULL;
                int r = parse_config(cases[i].text, &cfg, &err);
                if (!cases[i].error) {
                        if (r < 0)
                                fail_msg("case %zu refused: %s", i, err);
                } else {
                        if (r >= 0)
                                fail_msg("case %zu (%s) accepted", i, cases[i].text);
                        if (!err || !strstr(err, cases[i].error))
                                fail_msg("case %zu: '%s' does not name '%s'", i, err ? err : "(null)", cases[i].error);
                }
                daemon_config_done(&cfg);
        }
}

/* The memo of the last matched token: the same bytes match without the
 * digest, other bytes and another config (a reload) look it up again, so
 * a token the new config dropped matches nothing. */
static void test_config_token_memo(void **state) {
        DaemonConfig cfg, reloaded;
        _cleanup_free_ char *err = NULL;
        TokenMemo memo = {};
        assert_int_equal(parse_config("tokens:\n  - tenant: alice\n    token: 0123456789abcdef0\n"
                                      "  - tenant: bob\n    token: 0123456789abcdef1\n    role: readonly\n",
                                      &cfg, &err),
                         0);
        for (int i = 0; i < 3; i++) {
                const DaemonToken *t = daemon_config_find_token_memo(&cfg, "0123456789abcdef1", &memo);
                assert_non_null(t);
                assert_string_equal(t->tenant, "bob");
                assert_int_equal(memo.generation, cfg.generation);
        }
        /* One byte off, shorter, longer: not the memo's. */
        assert_null(daemon_config_find_token_memo(&cfg, "0123456789abcdef2", &memo));
        assert_null(daemon_config_find_token_memo(&cfg, "0123456789abcdef", &memo));
        assert_null(daemon_config_find_token_memo(&cfg, "0123456789abcdef10", &memo));
        assert_string_equal(daemon_config_find_token_memo(&cfg, "0123456789abcdef0", &memo)->tenant, "alice");
        assert_string_equal(daemon_config_find_token_memo(&cfg, "0123456789abcdef1", &memo)->tenant, "bob");

        /* The reload drops bob; alice's entry takes bob's index. */
        assert_int_equal(parse_config("tokens:\n  - tenant: carol\n    token: 0123456789abcdef9\n"
                                      "  - tenant: alice\n    token: 0123456789abcdef0\n",
                                      &reloaded, &err),
                         0);
        assert_int_not_equal(reloaded.generation, cfg.generation);
        assert_null(daemon_config_find_token_memo(&reloaded, "0123456789abcdef1", &memo));
        assert_string_equal(daemon_config_find_token_memo(&reloaded, "0123456789abcdef0", &memo)->tenant, "alice");
        assert_null(daemon_config_find_token_memo(&reloaded, "0123456789abcdef1", &memo));

        /* Longer than the memo holds: looked up each time, still found. */
        daemon_config_done(&reloaded);
        char long_token[200];
        memset(long_token, 'x', sizeof(long_token) - 1);
        long_token[sizeof(long_token) - 1] = 0;
        _cleanup_free_ char *text = xasprintf("tokens:\n  - tenant: dave\n    token: %s\n", long_token);
        assert_int_equal(parse_config(text, &reloaded, &err), 0);
        assert_string_equal(daemon_config_find_token_memo(&reloaded, long_token, &memo)->tenant, "dave");
        assert_string_equal(daemon_config_find_token_memo(&reloaded, long_token, &memo)->tenant, "dave");
        daemon_config_done(&reloaded);
        daemon_config_done(&cfg);
}

/* A relative data_dir is the config file's neighbour (under systemd the
 * working directory is /); an absolute one stays as written. */
static void test_config_data_dir_beside_the_file(void **state) {
        char dir[] = "/tmp/pysprinter-cfg-XXXXXX";
        assert_non_null(mkdtemp(dir));
        _cleanup_free_ char *file = path_join(dir, "d.yaml");
        _cleanup_free_ char *want = path_join(dir, "state/data");
        const char *text = "data_dir: state/data\n";
        DaemonConfig cfg;
        _cleanup_free_ char *err = NULL;
        daemon_config_init(&cfg);
        assert_int_equal(daemon_config_parse(&cfg, text, strlen(text), file, &err), 0);
        assert_string_equal(cfg.data_dir, want);
        daemon_config_done(&cfg);
        text = "data_dir: /srv/p\n";
        daemon_config_init(&cfg);
        assert_int_equal(daemon_config_parse(&cfg, text, strlen(text), file, &err), 0);
        assert_string_equal(cfg.data_dir, "/srv/p");
        daemon_config_done(&cfg);
        text = "data_dir: ''\n";
        daemon_config_init(&cfg);
        assert_true(daemon_config_parse(&cfg, text, strlen(text), file, &err) < 0);
        assert_non_null(strstr(err, "data_dir"));
        daemon_config_done(&cfg);
        assert_int_equal(rmdir(dir), 0);
}

static void test_config_values_land(void **state) {
        DaemonConfig cfg;
        _cleanup_free_ char *err = NULL;
        assert_int_equal(parse_config("server:\n  max_attempts: 5\n  max_concurrent_runs: 3\n  http_threads: 4\n"
                                      "tokens:\n  - tenant: alice\n    token: 0123456789abcdef0\n    role: readonly\n",
                                      &cfg, &err),
                         0);
        assert_int_equal(cfg.max_attempts, 5);
        assert_int_equal(cfg.max_concurrent_runs, 3);
        assert_int_equal(cfg.http_threads, 4);
        const DaemonToken *t = daemon_config_find_token(&cfg, "0123456789abcdef0");
        assert_non_null(t);
        assert_string_equal(t->tenant, "alice");
        assert_int_equal(t->role, TOKEN_ROLE_READONLY);
        assert_null(daemon_config_find_token(&cfg, "0123456789abcdef1"));
        daemon_config_done(&cfg);
        /* The validation cache's byte bound (0 when unset: the engine's default). */
        assert_int_equal(parse_config("pool:\n  spares: 2\n", &cfg, &err), 0);
        assert_int_equal(cfg.pool_validation_cache_bytes, 0);
        daemon_config_done(&cfg);
        assert_int_equal(parse_config("pool:\n  validation_cache_mb: 16\n", &cfg, &err), 0);
        assert_int_equal(cfg.pool_validation_cache_bytes, 16ULL << 20);
        daemon_config_done(&cfg);
        /* A tenant's share of the queue: half of it unless configured,
         * 0 included (that tenant's runs never wait). */
        assert_int_equal(parse_config("server:\n  max_queued_runs: 7\n", &cfg, &err), 0);
        assert_int_equal(daemon_config_queued_per_tenant(&cfg), 4);
        daemon_config_done(&cfg);
        assert_int_equal(parse_config("server:\n  max_queued_runs: 0\n", &cfg, &err), 0);
        assert_int_equal(daemon_config_queued_per_tenant(&cfg), 0);
        daemon_config_done(&cfg);
        assert_int_equal(parse_config("server:\n  max_queued_per_tenant: 0\n", &cfg, &err), 0);
        assert_int_equal(daemon_config_queued_per_tenant(&cfg), 0);
        daemon_config_done(&cfg);
        assert_int_equal(parse_config("server:\n  max_queued_per_tenant: 300\n", &cfg, &err), 0);
        assert_int_equal(daemon_config_queued_per_tenant(&cfg), 300);
        daemon_config_done(&cfg);
}

/* The queued request written as text is byte for byte jansson's dump,
 * for every field combination and string the text way takes, and what it
 * does not take (not UTF-8, NUL in the source, base64) goes jansson's way. */
static void test_request_json_text_is_jansson(void **state) {
        (void) state;
        static char *strv[] = { "a", "b\"c", "\xc3\xa9\xe2\x80\xa8/\x7f", NULL };
        static char *empty[] = { NULL };
        static const char *strings[] = {
                "plain", "", "quote \" back \\ slash /", "ctl \x01\x1f\b\f\n\r\t end",
                "unicode \xc3\xa9 \xf0\x9f\x98\x80 \xe2\x80\xa8", "\xff not utf-8",
        };
        for (size_t i = 0; i < ELEMENTSOF(strings); i++)
                for (unsigned mask = 0; mask < 64; mask++) {
                        const char *v = strings[i];
                        char source[64];
                        size_t n = (size_t) snprintf(source, sizeof(source), "def f():\n    return %s\n", v);
                        if (mask & 32)
                                source[3] = 0; /* NUL inside: jansson's way */
                        DRun r = {
                                .filename = (char *) ((mask & 1) ? v : "f.py"),
                                .function = (mask & 2) ? (char *) v : NULL,
                                .args_json = (mask & 4) ? (char *) "[1,\"x\"]" : NULL,
                                .kwargs_json = (mask & 4) ? (char *) v : NULL,
                                .fn_name = (mask & 8) ? (char *) "fn" : NULL,
                                .fn_version = (mask & 8) ? 3 : 0,
                                .context_json = (mask & 16) ? (char *) v : NULL,
                                .idem_key = (mask & 2) ? (char *) v : NULL,
                                .requirements_json = (mask & 16) ? (char *) "{\"requests\":\"*\"}" : NULL,
                                .source = source,
                                .source_len = n,
                                .lambda = mask & 1,
                                .endpoint = mask & 4,
                                .limits = { .timeout_ms = 30000,
                                            .memory_bytes = 1ULL << 40,
                                            .max_procs = 7,
                                            .max_output_bytes = 0,
                                            .network = mask & 2 },
                                .data = (mask & 4) ? strv : NULL,
                                .output_data = (mask & 2) ? (char *) v : NULL,
                                .secrets = (mask & 8) ? empty : NULL,
                                .env = (mask & 16) ? strv : NULL,
                        };
                        for (int by_ref = 0; by_ref <= 1; by_ref++) {
                                _cleanup_free_ char *text = drun_request_json(&r, by_ref);
                                _cleanup_free_ char *want = drun_request_json_jansson(&r, by_ref);
                                if (!want) {
                                        assert_null(text);
                                        continue;
                                }
                                assert_non_null(text);
                                assert_string_equal(text, want);
                        }
                }
}

/* A Function URL's return value: an answer the daemon can send, or a
 * MalformedResponse whose message names the problem (the run's record
 * says it, docs/endpoints.md "The response"). */
static void test_endpoint_response_check(void **state) {
        (void) state;
        static const struct {
                const char *json, *repr;
                const char *want; /* NULL: fine; else a part of the message */
        } rows[] = {
                { "\"plain\"", NULL, NULL },
                { "[1,2]", NULL, NULL },
                { NULL, NULL, NULL }, /* None */
                { "{\"a\":1}", NULL, NULL },
                { "{\"statusCode\":204}", NULL, NULL },
                { "{\"statusCode\":200,\"headers\":{\"x-n\":3,\"x-s\":\"v\"},\"body\":{\"k\":1}}", NULL, NULL },
                { "{\"statusCode\":200,\"body\":\"aGk=\",\"isBase64Encoded\":true,\"cookies\":[\"a=1\"]}", NULL, NULL },
                { NULL, "{1, 2}", "no JSON view" },
                { "{\"statusCode\":\"abc\"}", NULL, "statusCode must be an integer from 200 to 599, not \"abc\"" },
                { "{\"statusCode\":99}", NULL, "not 99" },
                { "{\"statusCode\":100}", NULL, "not 100" },
                { "{\"statusCode\":199}", NULL, "not 199" },
                { "{\"statusCode\":600}", NULL, "not 600" },
                { "{\"statusCode\":200.0}", NULL, "statusCode" },
                { "{\"statusCode\":null}", NULL, "not null" },
                { "{\"statusCode\":200,\"headers\":[]}", NULL, "headers must be an object" },
                { "{\"statusCode\":200,\"cookies\":\"a=1\"}", NULL, "cookies must be an array" },
                { "{\"statusCode\":200,\"cookies\":[1]}", NULL, "cookies[0]: not a string" },
                { "{\"statusCode\":200,\"cookies\":[\"a=1\",\"b=1\\r\\nX: 1\"]}", NULL,
                  "cookies[1]: the cookie holds a control" },
                { "{\"statusCode\":200,\"cookies\":[\"pysprinter_session=x\"]}", NULL,
                  "cookies[0]: sets the dashboard's cookie" },
                { "{\"statusCode\":200,\"headers\":{\"x a\":\"1\"}}", NULL, "header \"x a\": not a valid field name" },
                { "{\"statusCode\":200,\"headers\":{\"X-A\":\"1\",\"x-a\":\"2\"}}", NULL,
                  "header \"x-a\": named twice (as \"X-A\" too)" },
                { "{\"statusCode\":200,\"headers\":{\"X-A\":\"1\",\"x-b\":\"2\"}}", NULL, NULL },
                { "{\"statusCode\":200,\"headers\":{\"x-a\":\"1\\n2\"}}", NULL,
                  "header \"x-a\": its value holds a control" },
                { "{\"statusCode\":200,\"headers\":{\"Set-Cookie\":\"pysprinter_session=1\"}}", NULL,
                  "header \"Set-Cookie\": sets" },
                /* Cookies stay within the tenant's own /fn/ paths on this
                 * host (the rows check as tenant "alice"). */
                { "{\"statusCode\":200,\"cookies\":[\"a=1; Path=/fn/alice\",\"b=1; path = /fn/alice/x \"]}", NULL,
                  NULL },
                { "{\"statusCode\":200,\"cookies\":[\"a=1; Path=ui\",\"b=1; Path=\",\"c=1; Domain=\"]}", NULL, NULL },
                { "{\"statusCode\":200,\"cookies\":[\"a=1; Path=/fn/bob/x\"]}", NULL, "cookies[0]: its Path reaches" },
                { "{\"statusCode\":200,\"cookies\":[\"a=1; Path=/fn/alicex\"]}", NULL, "cookies[0]: its Path" },
                { "{\"statusCode\":200,\"cookies\":[\"a=1; Path=/fn\"]}", NULL, "cookies[0]: its Path" },
                { "{\"statusCode\":200,\"cookies\":[\"a=1; Path=/fn/alice; Path=/\"]}", NULL, "cookies[0]: its Path" },
                { "{\"statusCode\":200,\"headers\":{\"set-cookie\":\"a=1; PATH=/v1\"}}", NULL,
                  "header \"set-cookie\": its Path" },
                { "{\"statusCode\":200,\"cookies\":[\"a=1; domain=example.com\"]}", NULL,
                  "cookies[0]: it names a Domain" },
                { "{\"statusCode\":200,\"body\":3,\"isBase64Encoded\":true}", NULL, "body must be a string" },
                { "{\"statusCode\":200,\"body\":\"%%%\",\"isBase64Encoded\":true}", NULL, "body is not valid base64" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                char *type = NULL, *msg = NULL;
                int k = daemon_endpoint_response_check("alice", rows[i].json, rows[i].repr, &type, &msg);
                if (!rows[i].want) {
                        assert_int_equal(k, 0);
                        assert_null(type);
                        assert_null(msg);
                        continue;
                }
                assert_int_equal(k, -EINVAL);
                assert_string_equal(type, ENDPOINT_MALFORMED_RESPONSE);
                assert_true(startswith(msg, "not a valid Function URL response: "));
                if (!strstr(msg, rows[i].want))
                        fail_msg("row %zu: \"%s\" does not hold \"%s\"", i, msg, rows[i].want);
                free(type);
                free(msg);
        }
}

/* A public endpoint's rate counts a client per IPv4 address and per IPv6
 * /64: before, per address, so a client given a /64 (any IPv6 host) had a
 * bucket for each of its 2^64 addresses and no limit at all. The
 * addresses are a table's, never connected to. */
static bool rate_allows(const char *addr) {
        struct sockaddr_storage ss = {};
        if (strchr(addr, ':')) {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *) &ss;
                a->sin6_family = AF_INET6;
                assert_int_equal(inet_pton(AF_INET6, addr, &a->sin6_addr), 1);
        } else {
                struct sockaddr_in *a = (struct sockaddr_in *) &ss;
                a->sin_family = AF_INET;
                assert_int_equal(inet_pton(AF_INET, addr, &a->sin_addr), 1);
        }
        /* 1 a second, burst 2: a slow host takes a 3rd within a second. */
        return daemon_endpoint_rate_allow((struct sockaddr *) &ss, 1, 2);
}

static size_t rate_slot_of(const uint8_t *key, size_t len) {
        return (size_t) (daemon_seeded_hash(1, key, len) % 4096);
}

static void test_endpoint_rate_per_ipv6_prefix(void **state) {
        (void) state;
        /* Seed 1: the clients below have slots of their own (checked),
         * so no two share a bucket by chance. */
        daemon_endpoint_rate_reset(1);
        const uint8_t p1[8] = { 0x20, 0x01, 0x0d, 0xb8, 0xaa, 0xaa, 0, 1 },
                      p2[8] = { 0x20, 0x01, 0x0d, 0xb8, 0xaa, 0xaa, 0, 2 };
        const uint8_t v7[4] = { 198, 51, 100, 7 }, v8[4] = { 198, 51, 100, 8 };
        size_t slots[] = { rate_slot_of(p1, 8), rate_slot_of(p2, 8), rate_slot_of(v7, 4), rate_slot_of(v8, 4) };
        for (size_t i = 0; i < ELEMENTSOF(slots); i++)
                for (size_t j = 0; j < i; j++)
                        assert_int_not_equal(slots[i], slots[j]);
        /* One /64: its second address finds the bucket the first emptied. */
        assert_true(rate_allows("2001:db8:aaaa:1::1"));
        assert_true(rate_allows("2001:db8:aaaa:1::2"));
        assert_false(rate_allows("2001:db8:aaaa:1:ffff:ffff:ffff:ffff"));
        /* The next /64 is another client. */
        assert_true(rate_allows("2001:db8:aaaa:2::1"));
        /* IPv4, and the same address mapped into IPv6: one client. */
        assert_true(rate_allows("198.51.100.7"));
        assert_true(rate_allows("::ffff:198.51.100.7"));
        assert_false(rate_allows("198.51.100.7"));
        assert_true(rate_allows("198.51.100.8"));
        /* A client of no address (a unix socket) has a bucket too. */
        daemon_endpoint_rate_reset(1);
        assert_true(daemon_endpoint_rate_allow(NULL, 1, 1));
        assert_false(daemon_endpoint_rate_allow(NULL, 1, 1));
}

/* Keyed: the same bytes move with the seed (a client who does not know it
 * cannot aim at another's slot), and every byte counts. */
static void test_seeded_hash(void **state) {
        (void) state;
        const uint8_t a[8] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1 }, b[8] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 2 };
        assert_int_equal(daemon_seeded_hash(1, a, 8), daemon_seeded_hash(1, a, 8));
        assert_int_not_equal(daemon_seeded_hash(1, a, 8), daemon_seeded_hash(2, a, 8));
        assert_int_not_equal(daemon_seeded_hash(1, a, 8), daemon_seeded_hash(1, b, 8));
        assert_int_not_equal(daemon_seeded_hash(1, a, 4), daemon_seeded_hash(1, a, 8));
}

/* A function URL's CORS settings (daemon-cors.c): which AllowOrigins
 * items are origins, table-driven. */
static void test_cors_origin_is_valid(void **state) {
        static const struct {
                const char *origin;
                bool ok;
        } rows[] = {
                { "*", true },
                { "https://app.example", true },
                { "http://localhost:8080", true },
                { "http://127.0.0.1:1", true },
                { "https://[::1]:8443", true },
                { "https://[::1]", true },
                { "chrome-extension://abcdef", true },
                { "HTTPS://APP.EXAMPLE", true },
                { "https://a.example:65535", true },
                { "", false },
                { "**", false },
                { "null", false },
                { "app.example", false },
                { "https://", false },
                { "://app.example", false },
                { "https://app.example/", false },
                { "https://app.example/path", false },
                { "https://app.example:", false },
                { "https://app.example:0", false },
                { "https://app.example:65536", false },
                { "https://app.example:123456", false },
                { "https://app.example:80x", false },
                { "https://app.example\r\nX-Evil: 1", false },
                { "https://app.example, https://b.example", false },
                { "https://a b.example", false },
                { "https://.example", false },
                { "https://app.example.", false },
                { "https://*.example", false },
                { "https://[]", false },
                { "https://[::1", false },
                { "https://[::1]x", false },
                { "1http://app.example", false },
                { "ht tp://app.example", false },
                { "https://user@app.example", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++)
                if (daemon_cors_origin_is_valid(rows[i].origin) != rows[i].ok)
                        fail_msg("%s: want %s", rows[i].origin, rows[i].ok ? "valid" : "invalid");
        char long_origin[300] = "https://";
        memset(long_origin + 8, 'a', 250);
        long_origin[258] = 0;
        assert_false(daemon_cors_origin_is_valid(long_origin));
}

/* What daemon_cors_parse() keeps and what it refuses, and with which words. */
static void test_cors_parse(void **state) {
        static const struct {
                const char *in, *out, *err; /* out: the canonical text; err: a word of the error */
        } rows[] = {
                { "{}", "{}", NULL },
                { "{\"AllowOrigins\": [\"*\"]}", "{\"AllowOrigins\":[\"*\"]}", NULL },
                { "{\"AllowOrigins\": [\"HTTPS://App.Example\"], \"AllowMethods\": [\"get\", \"*\"]}",
                  "{\"AllowOrigins\":[\"https://app.example\"],\"AllowMethods\":[\"GET\",\"*\"]}", NULL },
                { "{\"MaxAge\": 0, \"AllowCredentials\": false}", "{\"MaxAge\":0,\"AllowCredentials\":false}", NULL },
                { "{\"MaxAge\": 86400}", "{\"MaxAge\":86400}", NULL },
                { "{\"AllowHeaders\": [\"*\", \"X-Api-Key\"], \"ExposeHeaders\": [\"x-fn\"]}",
                  "{\"AllowHeaders\":[\"*\",\"X-Api-Key\"],\"ExposeHeaders\":[\"x-fn\"]}", NULL },
                { "{\"AllowOrigins\": [\"https://a.example\"], \"AllowCredentials\": true}",
                  "{\"AllowOrigins\":[\"https://a.example\"],\"AllowCredentials\":true}", NULL },
                { "[]", NULL, "object" },
                { "\"*\"", NULL, "object" },
                { "{\"Origins\": []}", NULL, "unknown key \"Origins\"" },
                { "{\"allowOrigins\": []}", NULL, "unknown key" },
                { "{\"AllowOrigins\": \"*\"}", NULL, "list" },
                { "{\"AllowOrigins\": [7]}", NULL, "AllowOrigins[0]" },
                { "{\"AllowOrigins\": [\"*\"], \"AllowCredentials\": true}", NULL, "AllowCredentials" },
                { "{\"AllowOrigins\": [\"https://a.example\", \"*\"], \"AllowCredentials\": true}", NULL,
                  "AllowCredentials" },
                { "{\"AllowCredentials\": \"yes\"}", NULL, "AllowCredentials" },
                { "{\"AllowMethods\": [\"TRACE\"]}", NULL, "AllowMethods[0]" },
                { "{\"AllowMethods\": [\"GET\\r\\n\"]}", NULL, "AllowMethods[0]" },
                { "{\"AllowMethods\": [\"GET\",\"GET\",\"GET\",\"GET\",\"GET\",\"GET\",\"GET\",\"GET\"]}", NULL,
                  "at most 7" },
                { "{\"AllowHeaders\": [\"x-a, x-b\"]}", NULL, "AllowHeaders[0]" },
                { "{\"AllowHeaders\": [\"x-a\\nx-b: 1\"]}", NULL, "AllowHeaders[0]" },
                { "{\"AllowHeaders\": [\"\"]}", NULL, "AllowHeaders[0]" },
                { "{\"ExposeHeaders\": [\"a:b\"]}", NULL, "ExposeHeaders[0]" },
                { "{\"ExposeHeaders\": [\"x\\u0000y\"]}", NULL, "ExposeHeaders[0]" },
                { "{\"MaxAge\": 86401}", NULL, "MaxAge" },
                { "{\"MaxAge\": -1}", NULL, "MaxAge" },
                { "{\"MaxAge\": 1.5}", NULL, "MaxAge" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                json_t *j = json_loads(rows[i].in, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                assert_non_null(j);
                char *out = NULL, *err = NULL;
                int r = daemon_cors_parse(j, &out, &err);
                if (rows[i].out) {
                        if (r < 0 || !streq(out, rows[i].out))
                                fail_msg("%s: got %s / %s", rows[i].in, out ?: "-", err ?: "-");
                } else if (r >= 0 || !err || !strstr(err, rows[i].err))
                        fail_msg("%s: want an error naming %s, got %s", rows[i].in, rows[i].err, err ?: "none");
                free(out);
                free(err);
                json_decref(j);
        }
        /* 100 origins are taken, 101 are not. */
        json_t *j = json_object(), *list = json_array();
        json_object_set_new(j, "AllowOrigins", list);
        for (int i = 0; i < 101; i++) {
                char o[64];
                snprintf(o, sizeof(o), "https://a%d.example", i);
                json_array_append_new(list, json_string(o));
        }
        char *out = NULL, *err = NULL;
        assert_true(daemon_cors_parse(j, &out, &err) < 0);
        assert_non_null(strstr(err, "at most 100"));
        free(err);
        err = NULL;
        json_array_remove(list, 0);
        assert_int_equal(daemon_cors_parse(j, &out, &err), 0);
        free(out);
        json_decref(j);
}

/* Which request Origins the settings let read. */
static void test_cors_origin_allowed(void **state) {
        json_t *named = json_loads("{\"AllowOrigins\":[\"https://app.example\",\"http://localhost:8080\"]}", 0, NULL);
        json_t *any = json_loads("{\"AllowOrigins\":[\"*\"]}", 0, NULL);
        json_t *none = json_loads("{\"MaxAge\":5}", 0, NULL);
        assert_true(daemon_cors_origin_allowed(named, "https://app.example"));
        assert_true(daemon_cors_origin_allowed(named, "HTTPS://APP.EXAMPLE"));
        assert_true(daemon_cors_origin_allowed(named, "http://localhost:8080"));
        assert_false(daemon_cors_origin_allowed(named, "http://localhost:8081"));
        assert_false(daemon_cors_origin_allowed(named, "http://app.example"));
        assert_false(daemon_cors_origin_allowed(named, "https://app.example.evil"));
        assert_false(daemon_cors_origin_allowed(named, "https://app.example/"));
        assert_false(daemon_cors_origin_allowed(named, "null"));
        assert_false(daemon_cors_origin_allowed(named, NULL));
        assert_true(daemon_cors_origin_allowed(any, "https://whoever.example"));
        assert_true(daemon_cors_origin_allowed(any, "null"));
        assert_false(daemon_cors_origin_allowed(none, "https://app.example"));
        assert_false(daemon_cors_origin_allowed(NULL, "https://app.example"));
        json_decref(named);
        json_decref(any);
        json_decref(none);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_endpoint_response_check),
                cmocka_unit_test(test_address_policy),
                cmocka_unit_test(test_address_allow_list),
                cmocka_unit_test(test_limits_grant),
                cmocka_unit_test(test_retries_grant),
                cmocka_unit_test(test_target_check),
                cmocka_unit_test(test_sigv4_vectors),
                cmocka_unit_test(test_sigv4_refusals),
                cmocka_unit_test(test_routes),
                cmocka_unit_test(test_routes_all_resolve),
                cmocka_unit_test(test_errno_status),
                cmocka_unit_test(test_lambda_function_ref),
                cmocka_unit_test(test_lambda_call_rule),
                cmocka_unit_test(test_lambda_error_body),
                cmocka_unit_test(test_request_parse_table),
                cmocka_unit_test(test_request_keeps_nul_where_allowed),
                cmocka_unit_test(test_request_retries_become_attempts),
                cmocka_unit_test(test_config_table),
                cmocka_unit_test(test_config_values_land),
                cmocka_unit_test(test_config_data_dir_beside_the_file),
                cmocka_unit_test(test_config_token_memo),
                cmocka_unit_test(test_request_json_text_is_jansson),
                cmocka_unit_test(test_endpoint_rate_per_ipv6_prefix),
                cmocka_unit_test(test_seeded_hash),
                cmocka_unit_test(test_stored_cap),
                cmocka_unit_test(test_stored_check),
                cmocka_unit_test(test_cors_origin_is_valid),
                cmocka_unit_test(test_cors_parse),
                cmocka_unit_test(test_cors_origin_allowed),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
