/* shared: helpers that need a library, one of each (systemd's src/shared
 * beside src/basic): SHA-256 (libcrypto), YAML -> JSON (libyaml), and the
 * JSON walkers every module repeated (jansson).
 *
 * Contract: libcrypto and libyaml types never cross this header (a YAML
 * document is the opaque YamlDoc, its nodes are YamlNode). jansson's json_t
 * does: it is the project's value type for JSON and YAML alike. Functions
 * return >= 0 on success and a negative errno on failure; ret_* outputs are
 * written only on success; messages for users come back in *ret_error
 * (caller frees). */
#pragma once

#include <jansson.h>

#include "basic.h"

/* ---- SHA-256 ----------------------------------------------------------- */

#define SHA256_DIGEST_SIZE 32
#define SHA256_HEX_SIZE 65 /* 64 lowercase hex digits and the NUL */

/* One-shot digest of data[0..n). Inputs up to 64 KiB are hashed by a
 * built-in FIPS 180-4 implementation: libcrypto's first EVP call costs
 * ~1.5 ms (config and provider loading), most of the budget of a cached
 * run, which hashes one short key. Larger inputs go through libcrypto. */
void sha256_digest(const void *data, size_t n, uint8_t ret[static SHA256_DIGEST_SIZE]);
/* The digest as 64 lowercase hex digits into ret (65 bytes with the NUL).
 * Example: sha256_hex("abc", 3, h) -> "ba7816bf…f20015ad". */
void sha256_hex(const void *data, size_t n, char ret[static SHA256_HEX_SIZE]);
/* The same, allocated (caller frees). */
char *sha256_hex_dup(const void *data, size_t n);

/* Streaming digest with the built-in code, on the caller's stack: for
 * short texts made of pieces (an env key hashes its parts, ~30 KB of
 * wheel tags among them, without joining them first), where libcrypto's
 * first EVP call would cost more than the hash. */
typedef struct Sha256Small {
        uint32_t h[8];
        uint64_t total;
        size_t used;
        uint8_t block[64];
} Sha256Small;
void sha256_small_init(Sha256Small *s);
void sha256_small_update(Sha256Small *s, const void *data, size_t n);
/* Writes the digest; s must be initialised again before another use. */
void sha256_small_final(Sha256Small *s, uint8_t ret[static SHA256_DIGEST_SIZE]);
void sha256_small_final_hex(Sha256Small *s, char ret[static SHA256_HEX_SIZE]);

/* Streaming digest (wheels, downloads, dataset trees). Allocation failure
 * inside libcrypto aborts like xmalloc does. */
typedef struct Sha256 Sha256;
Sha256 *sha256_new(void);
void sha256_update(Sha256 *h, const void *data, size_t n);
/* Writes the digest; h may then only be freed. */
void sha256_final(Sha256 *h, uint8_t ret[static SHA256_DIGEST_SIZE]);
void sha256_final_hex(Sha256 *h, char ret[static SHA256_HEX_SIZE]);
Sha256 *sha256_free(Sha256 *h);
/* A copy of h's running state: the digest of the bytes so far can be
 * taken from it while h goes on (a resumed download asks whether the bytes
 * it kept are already the whole file). Aborts on OOM like sha256_new. */
Sha256 *sha256_dup(const Sha256 *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(Sha256 *, sha256_free);

/* Reads fd to its end and returns the hex digest and the byte count
 * (ret_size may be NULL). -errno of a failed read(). Does not close fd. */
int sha256_fd_hex(int fd, char ret[static SHA256_HEX_SIZE], uint64_t *ret_size);
/* The same for a path (opened O_RDONLY|O_CLOEXEC); -errno of open/read. */
int sha256_file_hex(const char *path, char ret[static SHA256_HEX_SIZE]);

/* True if s is 64 lowercase hex digits (what sha256_hex writes). */
bool sha256_hex_is_valid(const char *s);

/* ---- base64 (shared-base64.c) ------------------------------------------ */

/* data[0..n) in base64 (RFC 4648, standard alphabet, padded), NUL-terminated
 * (caller frees). Example: base64_encode("hi", 2) -> "aGk=". */
char *base64_encode(const void *data, size_t n);
/* Padded base64 s[0..n) decoded into *ret (malloc'd, NUL-terminated for
 * convenience) and *ret_len; -EINVAL when s is not padded base64. */
int base64_decode(const char *s, size_t n, char **ret, size_t *ret_len);

/* ---- YAML -> JSON ---------------------------------------------------------
 *
 * One scalar rule for every YAML file we read (config, DAG files, --param
 * values): the YAML 1.2 core schema, applied to plain (unquoted) scalars.
 *
 *   null, Null, NULL, ~, empty     -> null
 *   true, True, TRUE / false, …    -> true / false  (yes/no/on/off/y/n stay strings)
 *   [-+]?[0-9]+                    -> integer       (012 is 12; beyond int64: error)
 *   0o[0-7]+ / 0x[0-9a-fA-F]+      -> integer       (octal / hex)
 *   [-+]?(.[0-9]+|[0-9]+(.[0-9]*)?)([eE][-+]?[0-9]+)? -> real (1e3, .5, 1.)
 *   [-+]?.inf, .nan (any of the core spellings)       -> error: JSON cannot hold
 *                                      them; quote the value to keep the text
 *   anything else (2026-11-30, 1_000, 0x, +0x1F, "yes") -> string
 *
 * Quoted scalars ('…', "…") and block scalars (|, >) are always strings.
 * Tags are not interpreted. Mapping keys are scalars and stay strings; a
 * mapping that has a key twice (compared as text once quotes and escapes
 * are read: a, 'a' and "a" are one key) is refused when the document is
 * loaded, so no reader keeps "the last one". `<<` is an ordinary key (no
 * YAML 1.1 merge). Aliases expand, counted against the node budget.
 * docs/internals/yaml.md has the table with examples. */

typedef enum YamlKind {
        YAML_KIND_SCALAR,
        YAML_KIND_SEQUENCE,
        YAML_KIND_MAPPING,
} YamlKind;

#define YAML_MAX_DEPTH 64
#define YAML_DEFAULT_MAX_NODES 1000000

/* The core-schema rule for one scalar's text: *ret is a new reference.
 * plain=false (quoted) always gives a string. -EINVAL with a message (no
 * position: the caller adds it) for .inf/.nan and out-of-range numbers. */
int yaml_scalar_to_json(const char *text, size_t len, bool plain, json_t **ret, char **ret_error);

typedef struct YamlDoc YamlDoc;
typedef struct YamlNode YamlNode; /* a node inside its YamlDoc; never freed alone */

/* Parses the first document of text[0..len). filename prefixes messages
 * ("FILE:LINE:COL: YAML error: …"). max_nodes bounds what yaml_doc_json may
 * build from it (aliases count each time they expand); 0 means
 * YAML_DEFAULT_MAX_NODES. -EINVAL on a syntax error, and on a mapping
 * (at any depth) with a key given twice: "FILE:LINE:COL: duplicate key 'k'
 * (first at line N)", at the second one (with several, the one that comes
 * first in the file). -ENOMEM. */
int yaml_doc_load(const char *text, size_t len, const char *filename, size_t max_nodes, YamlDoc **ret,
                  char **ret_error);
YamlDoc *yaml_doc_free(YamlDoc *doc);
DEFINE_TRIVIAL_CLEANUP_FUNC(YamlDoc *, yaml_doc_free);

/* The root node, NULL for an empty stream. */
const YamlNode *yaml_doc_root(YamlDoc *doc);
const char *yaml_doc_filename(const YamlDoc *doc);

/* The node walker: kind, 1-based line and column of the node's first
 * character, scalar text (NULL unless a scalar), and the children. */
YamlKind yaml_node_kind(const YamlNode *n);
unsigned yaml_node_line(const YamlNode *n);
unsigned yaml_node_column(const YamlNode *n);
const char *yaml_node_scalar(const YamlNode *n);
bool yaml_node_is_plain(const YamlNode *n);
/* Items of a sequence or pairs of a mapping; 0 for a scalar. */
size_t yaml_node_count(const YamlNode *n);
const YamlNode *yaml_node_item(YamlDoc *doc, const YamlNode *seq, size_t i);
const YamlNode *yaml_node_key(YamlDoc *doc, const YamlNode *map, size_t i);
const YamlNode *yaml_node_value(YamlDoc *doc, const YamlNode *map, size_t i);

/* A message about node n for a user: "FILE:LINE:COL: <fmt…>" into
 * *ret_error (just "FILE: …" when n is NULL). Returns -EINVAL, so a parser
 * can `return yaml_node_error(doc, n, ret_error, "…", …);`. */
int yaml_node_error(const YamlDoc *doc, const YamlNode *n, char **ret_error, const char *fmt, ...) _printf_(4, 5);
int yaml_node_verror(const YamlDoc *doc, const YamlNode *n, char **ret_error, const char *fmt, va_list ap)
        _printf_(4, 0);

/* The subtree at n as JSON with the scalar rule above (n NULL: the root).
 * Errors name the position: "FILE:LINE:COL: …" — a non-scalar mapping key,
 * .inf/.nan, more than YAML_MAX_DEPTH levels or the doc's node budget. */
int yaml_doc_json(YamlDoc *doc, const YamlNode *n, json_t **ret, char **ret_error);

/* Convenience: load text and convert its root (an empty document is null). */
int yaml_to_json(const char *text, size_t len, const char *filename, json_t **ret, char **ret_error);

/* ---- JSON Schema over YAML (shared-schema.c, docs/stack.md) ------------
 *
 * Checks node n of doc (NULL: the root) against schema, a JSON Schema
 * document using the subset shared-schema.c lists (type, enum, const,
 * properties, required, additionalProperties, propertyNames, items,
 * min/maxItems, uniqueItems, min/maxLength, pattern as POSIX ERE,
 * minimum/maximum, oneOf, anyOf, $ref "#/$defs/NAME", and the formats
 * "duration", "size", "cron" and "every" of the project's parsers). 0 when n
 * conforms; -EINVAL with every mistake (at most 20), one per line as
 * "FILE:LINE:COL: message", in *ret_error; -ENOTSUP when the schema uses
 * something the checker does not know (the message names it). */
int schema_check_yaml(const json_t *schema, YamlDoc *doc, const YamlNode *n, char **ret_error);

/* ---- JSON helpers -------------------------------------------------------- */

/* Stored JSON text as a value: NULL -> null; JSON text (any value, NULs
 * allowed) -> that value; text that is not JSON -> a string of it. New
 * reference. */
json_t *json_parse_or_string(const char *text);
/* json_parse_or_string(*text), freeing *text (set to NULL) on the way: a
 * text that is one JSON string is decoded in its own buffer and copied
 * once into the value, so a result of 15 MB is two copies at most, not the
 * text, jansson's saved text of the string and the string. */
json_t *json_parse_or_string_take(char **text);

/* A parse error's text for the user: jansson's own, except where it names
 * one of its flags ("\\u0000 is not allowed without JSON_ALLOW_NUL").
 * Borrowed from e or static. */
const char *json_error_text(const json_error_t *e);
/* o[key] when o is an object and the member a string, else NULL. Borrowed. */
const char *json_get_string(const json_t *o, const char *key);
/* The result table's bytes marker (docs/python.md): when v is exactly
 * {"$bytes": "BASE64"}, its decoded bytes in *ret (malloc'd, NUL-terminated
 * for convenience) and *ret_len, returning 1; 0 when v is anything else;
 * -EINVAL when the marker's text is not base64. */
int json_bytes_marker_decode(const json_t *v, uint8_t **ret, size_t *ret_len);
/* o[key] when an integer, else def. */
json_int_t json_get_integer(const json_t *o, const char *key, json_int_t def);

/* Typed reads of a value found under `key` (the name users see in messages,
 * e.g. "limits.memory_bytes"). On a wrong type: -EINVAL and
 * "'KEY' must be …" in *ret_error; *ret untouched. */
int json_want_uint(const json_t *v, const char *key, uint64_t *ret, char **ret_error);
int json_want_bool(const json_t *v, const char *key, bool *ret, char **ret_error);
/* Replaces *ret (freed) with a copy of the string. */
int json_want_string(const json_t *v, const char *key, char **ret, char **ret_error);
/* A list of strings: replaces *ret (strv_free'd) with a NULL-terminated copy,
 * an empty list when v is []. "'KEY[I]' must be a string" names the item. */
int json_want_strv(const json_t *v, const char *key, char ***ret, char **ret_error);

/* A NULL-terminated string vector as a JSON array (NULL -> []). */
json_t *json_strv_new(char *const *v);

/* One value of a raw_kwargs object (docs/api.md: the API's, and a
 * pipeline task's, docs/dag.md) as the engine's argument item: true (a
 * flag given without a value, `--NAME`) is {"bare": true}, a string or a
 * non-empty array of strings (the option given once per element) is
 * {"raw": v}. NULL for any other value: the caller names the key. */
json_t *json_raw_kwarg_item(const json_t *v);

/* Appends s (valid UTF-8) as a JSON string, quotes included, escaped
 * byte for byte as json_dumps() without JSON_ENSURE_ASCII escapes it
 * (\" \\ \b \f \n \r \t, other controls as \u00XX): for texts whose
 * schema is fixed and written directly, where a jansson object and its
 * json_dumps() cost more than the text (docs/internals/performance-log.md "Invoke
 * path: round 7"). NULL appends null. Returns buf_append()'s result. */
int json_buf_append_string(Buf *b, const char *s);
/* Appends member (an object member's name with its punctuation, e.g.
 * ",\"filename\":", text of ours: nothing to escape), then s as
 * json_buf_append_string() does. */
int json_buf_append_member(Buf *b, const char *member, const char *s);

/* Whether json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL) reads text
 * back, answered without building the value: jansson 2.14's grammar
 * (strict JSON, integers within 64 bits, reals that do not overflow,
 * valid UTF-8, paired surrogates, no NUL in a key, nesting below
 * JSON_TEXT_MAX_DEPTH). A result of 16 MiB is checked in place instead of
 * being parsed into two more copies (its text and its string). */
#define JSON_TEXT_MAX_DEPTH 2048
bool json_text_loadable(const char *text);

/* Writes the value of JSON text through callback, piece by piece, as
 * json_dump_callback(json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL),
 * callback, data, flags | JSON_ENCODE_ANY) writes it, without building the
 * value: a result of 200,000 objects is its text, not ~15 times its size
 * in jansson's nodes. flags must hold JSON_COMPACT and no indent, key
 * sorting or escaping options. One difference: an object that names a key
 * twice keeps both members (jansson keeps the last value, at the first
 * place); the runner never writes such a text (to_jsonable() refuses two
 * keys that are one JSON key). -EINVAL (nothing written) when jansson
 * would not read text (json_text_loadable()); -EIO when callback failed. */
int json_text_dump(const char *text, size_t flags, json_dump_callback_t callback, void *data);
/* A json_dump_callback_t that appends each piece to the Buf data: -1 past
 * its cap. */
int json_buf_dump(const char *piece, size_t size, void *data);

/* Whether text (JSON jansson reads) is an object with a member named key
 * (as its decoded name), answered without building the value: a function
 * URL's answer of 200,000 objects is looked at for "statusCode", not
 * parsed into ~15 times its size. False for anything else. */
bool json_text_names_member(const char *text, const char *key);

/* ---- held values: a large result as its JSON text, not its nodes ----
 *
 * A run's result of 200,000 objects is ~13 MB of text and ~150 MB as
 * jansson's nodes. Where a result is only passed on and printed (the CLI's
 * run/invoke/dag run, the daemon's run and DAG objects), it is *held*: an
 * object whose one key begins with a NUL, which no JSON text's key can
 * (jansson refuses one), so no user's value is ever taken for it; its
 * member is the value's JSON text. json_dump_held() writes a tree that holds
 * such values as json_dump_callback() writes the tree with each one parsed
 * (json_text_dump()). Code that looks into a result must parse it
 * (json_held_text()); anything else sees an object with no member it knows.
 *
 * json_held_new(): a held value of text [0, len), a copy; NULL when it is
 * under JSON_HELD_MIN bytes, not an array or object jansson reads, or may
 * hold a marker a reader looks into ({"$bytes": …}, {"$pickle": …}: those
 * are parsed). PYSPRINTER_TEST_HELD_MIN (bytes) lowers the size for tests. */
#define JSON_HELD_MIN 4096
json_t *json_held_new(const char *text, size_t len);
/* json_held_new(text) or, where it gives NULL, json_parse_or_string(text). */
json_t *json_held_or_parse(const char *text);
/* json_held_new(*text) or, where it gives NULL, json_parse_or_string_take():
 * *text is freed and NULL after either. */
json_t *json_held_or_parse_take(char **text);
/* The JSON text v holds when it is json_held_new()'s, else NULL. Borrowed. */
const char *json_held_text(const json_t *v);
/* json_dump_callback(v, callback, data, flags | JSON_ENCODE_ANY) with each
 * held value written from its text; flags as json_text_dump() takes them.
 * 0, or -EIO when a write (or jansson) failed. */
int json_dump_held(const json_t *v, size_t flags, json_dump_callback_t callback, void *data);
/* The same as text (caller frees); NULL when v is NULL or a write failed. */
char *json_dumps_held(const json_t *v, size_t flags);
/* v as the project prints JSON to its users (the daemon's answers, the
 * CLI's output): compact, exact reals (17 digits) respelled in their
 * shortest round-trip form as json_shorten_reals() respells them (0.1, not
 * 0.10000000000000001), held values written from their text; spaced:
 * ", " and ": " between items (Python's json.dumps() default). The same
 * bytes as json_shorten_reals(json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY
 * | JSON_REAL_PRECISION(17))) with each held value parsed, without the
 * text held twice. 0, or -EIO when out (or jansson) failed. */
int json_dump_short(const json_t *v, bool spaced, json_dump_callback_t out, void *data);
/* The same (not spaced) as text in an allocation of its size; NULL when v
 * is NULL or jansson failed. Caller frees. */
char *json_dumps_short(const json_t *v);
/* json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL) (text has a NUL
 * after it), except that the array or object value of each object member
 * named key, anywhere, is held where json_held_new() holds it: an API run
 * or DAG object is read with its results kept as text. NULL when jansson
 * would not read text. */
json_t *json_loads_held(const char *text, size_t len, const char *key);

/* Decodes the JSON string literal that starts at s (its opening quote) as
 * json_loads() would: into out, which may be s itself (the writer never
 * passes the reader), or NULL to only check it. Returns the decoded length
 * and the byte past the closing quote in *ret_end; -EINVAL when jansson
 * refuses it (a control character, a bad escape, a lone surrogate, bytes
 * that are not UTF-8, no closing quote before the text's NUL). The output
 * is not NUL-terminated and may hold NULs ("\u0000"). */
ssize_t json_literal_decode(const char *s, char *out, const char **ret_end);

/* ---- sealed values: AES-256-GCM (shared-seal.c, docs/secrets.md) ------- */

#define SEAL_KEY_SIZE 32
#define SEAL_NONCE_SIZE 12
#define SEAL_TAG_SIZE 16
#define SEAL_OVERHEAD (SEAL_NONCE_SIZE + SEAL_TAG_SIZE)

/* The 32-byte key in path: read when the file exists (it must be a regular
 * file of exactly 32 bytes, not readable by group or others), else created
 * with random bytes, mode 0600, O_EXCL (two processes starting at once both
 * end up with the one that won). -EPERM when the file's mode lets others
 * read it, -EBADMSG when its size is wrong; *ret_error says which. */
int seal_key_load(const char *path, uint8_t ret[static SEAL_KEY_SIZE], char **ret_error);
/* The key file path names, its symbolic links resolved (caller frees):
 * an operator's key file is often one (a Kubernetes secret volume's
 * PATH -> ..data/PATH, a key shared by a link into the data directory),
 * which seal_key_load() refuses to follow (O_NOFOLLOW: it was "Too many
 * levels of symbolic links", exit 7). path itself when it cannot be
 * resolved (no file yet: seal_key_load() makes it there). */
char *seal_key_path(const char *path);
/* The same checks on an existing key file, never created: -ENOENT (with
 * *ret_error) when path does not exist. */
int seal_key_read(const char *path, uint8_t ret[static SEAL_KEY_SIZE], char **ret_error);
/* Encrypts plain[0..n) under key with a fresh random nonce; aad (may be
 * NULL) is authenticated, not stored. *ret (caller frees) is
 * nonce || ciphertext || tag, n + SEAL_OVERHEAD bytes. */
int seal_encrypt(const uint8_t key[static SEAL_KEY_SIZE], const void *aad, size_t aad_len, const void *plain,
                 size_t n, uint8_t **ret, size_t *ret_len);
/* The inverse: -EBADMSG when the box is short, was altered, or was sealed
 * with another key or aad. *ret (caller frees) is NUL-terminated. */
int seal_decrypt(const uint8_t key[static SEAL_KEY_SIZE], const void *aad, size_t aad_len, const uint8_t *box,
                 size_t len, char **ret, size_t *ret_len);
