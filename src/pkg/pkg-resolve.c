/* pkg-resolve.c: a backtracking resolver over transitive Requires-Dist.
 *
 * State is the stack of decisions (project -> version). At each step the
 * full set of constraints is recomputed from the root requirements and the
 * decided packages' dependencies (with the extras asked of them), the
 * decisions are checked against it, and the next undecided project (one
 * the user named first, then the one with the fewest acceptable versions)
 * is decided, newest version first; a failure goes back to the newest
 * decision it depends on (conflict sets, below). The
 * order of everything is fixed, so one index state gives one lock. Sizes
 * are small (tens to hundreds of packages), so clarity wins over
 * incremental updates; but each question about a project reads only its
 * own constraints (Constraints.head) and finds it by hash, so a step costs
 * O(constraints), not O(projects x constraints). */
#include "pkg-mgr.h"

#include <strings.h>

typedef struct Cand {
        PkgVersion *version;
        char *vstr;              /* normalised */
        const PkgFile *file;     /* best non-yanked wheel, or NULL */
        const PkgFile *yanked;   /* best yanked wheel, or NULL */
        /* Filled when first decided: */
        bool meta_loaded;
        int meta_error;          /* <0: unusable (message in meta_why) */
        char *meta_why;
        PkgRequirement **deps;
        size_t n_deps;
        char **provides_extra; /* normalised; may be NULL */
} Cand;

typedef struct Proj {
        char *name;              /* normalised */
        bool loaded;
        int load_error;
        char *load_why;
        Cand *cands;             /* newest first */
        size_t n_cands;
        char **notes;            /* why versions were dropped (sdist only, tags, python) */
        bool fallback_asked;     /* a requirement seen on it names a pre-release or pins with == */
        size_t idx;              /* its index in Resolver.projs */
        size_t decided;          /* the depth of its decision on the stack; SIZE_MAX: undecided */
} Proj;

typedef struct Constraint {
        const char *name;        /* normalised */
        size_t proj;             /* the index of its project in Resolver.projs */
        size_t next;             /* the next constraint on the same project; SIZE_MAX: none */
        const PkgRequirement *req;
        char *from;              /* "your requirements" or "pkg 1.0" */
        size_t depth;            /* the decision it comes from; SIZE_MAX: a root */
        size_t asker;            /* on only for an extra of its package: the constraint
                                  * (an index into Constraints.c, always an earlier one)
                                  * that asked for it; else SIZE_MAX */
} Constraint;

typedef struct Decision {
        size_t proj;
        size_t cand;
} Decision;

typedef struct Resolver {
        PkgIndex *ix;
        const PkgResolveOptions *o;
        PkgVersion *python;
        PkgRequirement *const *roots; /* as given: the lock lists them so */
        size_t n_roots;
        PkgRequirement **root_order; /* sorted: the order resolution reads them in */
        Proj **projs;
        size_t n_projs;
        size_t *slots; /* open addressing over projs by name: index + 1, 0 empty */
        size_t n_slots;
        Decision *stack;
        size_t depth;
        unsigned steps, max_steps;
        size_t unwind_to; /* a leaf refused the decision at this depth; SIZE_MAX: none */
        /* The explanation of the deepest failure seen. */
        char *why;
        size_t why_depth;
        int why_code;
        char *fatal;             /* a network/index error: stop at once */
        int fatal_code;
} Resolver;

/* The constraints of one step, each project's chained in the order they
 * were added (head/tail by project index): every question asked of them
 * is about one project, and scanning them all for its name at each step
 * made resolving N packages cost N^3 string compares (400 packages took
 * seconds). */
typedef struct Constraints {
        Constraint *c;
        size_t n, cap;
        size_t *head, *tail;
        size_t n_projs;
} Constraints;

static void constraints_done(Constraints *cs) {
        for (size_t i = 0; i < cs->n; i++)
                free(cs->c[i].from);
        free(cs->c);
        free(cs->head);
        free(cs->tail);
        *cs = (Constraints) {};
}

/* The first constraint on project pi, or SIZE_MAX; the next is .next. */
static size_t cs_first(const Constraints *cs, size_t pi) {
        return pi < cs->n_projs ? cs->head[pi] : SIZE_MAX;
}

static size_t proj_index(Resolver *rs, const char *name);

static void constraints_add(Resolver *rs, Constraints *cs, const PkgRequirement *req, const char *from, size_t depth,
                            size_t asker) {
        size_t pi = proj_index(rs, req->normalized);
        if (cs->n == cs->cap) {
                cs->cap = cs->cap ? 2 * cs->cap : 64;
                cs->c = xrealloc(cs->c, cs->cap * sizeof(Constraint));
        }
        if (pi >= cs->n_projs) {
                size_t n = rs->n_projs;
                cs->head = xrealloc(cs->head, n * sizeof(size_t));
                cs->tail = xrealloc(cs->tail, n * sizeof(size_t));
                for (size_t k = cs->n_projs; k < n; k++)
                        cs->head[k] = cs->tail[k] = SIZE_MAX;
                cs->n_projs = n;
        }
        size_t i = cs->n++;
        cs->c[i] = (Constraint){ .name = req->normalized,
                                 .proj = pi,
                                 .next = SIZE_MAX,
                                 .req = req,
                                 .from = xstrdup(from),
                                 .depth = depth,
                                 .asker = asker };
        if (cs->tail[pi] == SIZE_MAX)
                cs->head[pi] = i;
        else
                cs->c[cs->tail[pi]].next = i;
        cs->tail[pi] = i;
}

/* Conflict sets (conflict-directed backjumping): a failure below depth D
 * marks conf[d] for each decision d it depends on — no solution holds
 * all of them, whatever the other decisions are. A failure that does not
 * involve the decision at D is not changed by another version there, so
 * the search goes straight back to the deepest decision it involves
 * instead of trying every combination of the unrelated ones between
 * (chronological backtracking tried x's versions again under each of the
 * 2^n choices of n unrelated packages, and gave up).
 *
 * conflict_add_source() marks what makes constraint c of cs exist: its
 * package's decision, and for one on only for an extra, what made the
 * constraint that asked for the extra exist (with `x[feat]` asked by
 * your requirements, x's `y>=2; extra == "feat"` is x's doing alone). */
static void conflict_add_source(bool *conf, const Constraints *cs, const Constraint *c) {
        for (;;) {
                if (c->depth != SIZE_MAX)
                        conf[c->depth] = true;
                if (c->asker == SIZE_MAX)
                        return;
                c = &cs->c[c->asker];
        }
}

/* What requires `name` at all and narrows its versions: the sources of
 * every constraint on it. */
static void conflict_add_project(bool *conf, const Constraints *cs, const Proj *p) {
        for (size_t i = cs_first(cs, p->idx); i != SIZE_MAX; i = cs->c[i].next)
                conflict_add_source(conf, cs, &cs->c[i]);
}

static void note_failure(Resolver *rs, int code, char *why) {
        /* Keep the failure of the deepest attempt: it is the one closest to
         * a solution, so it names the real conflict rather than the first
         * guess that was backtracked over. */
        if (!rs->why || rs->depth > rs->why_depth) {
                free(rs->why);
                rs->why = why;
                rs->why_depth = rs->depth;
                rs->why_code = code;
        } else
                free(why);
}

static size_t name_hash(const char *s) {
        size_t h = 1469598103934665603ULL; /* FNV-1a */
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 1099511628211ULL;
        return h;
}

/* The index of project `name` (normalised) in rs->projs, added when new. */
static size_t proj_index(Resolver *rs, const char *name) {
        if (rs->n_slots > 0)
                for (size_t h = name_hash(name) & (rs->n_slots - 1); rs->slots[h]; h = (h + 1) & (rs->n_slots - 1))
                        if (streq(rs->projs[rs->slots[h] - 1]->name, name))
                                return rs->slots[h] - 1;
        if (2 * (rs->n_projs + 1) > rs->n_slots) {
                free(rs->slots);
                rs->n_slots = rs->n_slots ? 2 * rs->n_slots : 64;
                rs->slots = xcalloc(rs->n_slots, sizeof(size_t));
                for (size_t i = 0; i < rs->n_projs; i++) {
                        size_t h = name_hash(rs->projs[i]->name) & (rs->n_slots - 1);
                        while (rs->slots[h])
                                h = (h + 1) & (rs->n_slots - 1);
                        rs->slots[h] = i + 1;
                }
        }
        size_t h = name_hash(name) & (rs->n_slots - 1);
        while (rs->slots[h])
                h = (h + 1) & (rs->n_slots - 1);
        rs->slots[h] = rs->n_projs + 1;
        rs->projs = xrealloc(rs->projs, (rs->n_projs + 1) * sizeof(Proj *));
        Proj *p = xcalloc(1, sizeof(Proj));
        p->name = xstrdup(name);
        p->idx = rs->n_projs;
        p->decided = SIZE_MAX;
        rs->projs[rs->n_projs] = p;
        return rs->n_projs++;
}

static bool python_ok(Resolver *rs, const char *requires_python) {
        if (!requires_python || !*requires_python)
                return true;
        PkgSpecifierSet *s = NULL;
        _cleanup_free_ char *err = NULL;
        if (pkg_specifier_set_parse(requires_python, &s, &err) < 0)
                return true; /* unparseable metadata: pip ignores it too */
        bool ok = pkg_specifier_set_contains(s, rs->python, true);
        pkg_specifier_set_free(s);
        return ok;
}

static int cand_cmp(const void *a, const void *b) {
        /* Newest first. */
        return -pkg_version_compare(((const Cand *) a)->version, ((const Cand *) b)->version);
}

static void proj_note(Proj *p, char *note) {
        if (strv_length(p->notes) < 6)
                p->notes = strv_append(p->notes, note);
        free(note);
}

/* The caller cancelled (PkgResolveOptions.cancel): a fatal end, whatever
 * the step was doing. */
static bool resolve_cancelled(Resolver *rs) {
        if (!pkg_cancelled(rs->o->cancel))
                return false;
        if (!rs->fatal || rs->fatal_code != -ECANCELED) {
                free(rs->fatal);
                rs->fatal = xstrdup("cancelled");
                rs->fatal_code = -ECANCELED;
        }
        return true;
}

/* Whether wheel f (of tag priority prio) installs rather than old, a wheel
 * of the same version: the better tags, then (PEP 427) the higher build
 * tag — a fixed wheel re-uploaded under the same tags —, then the file
 * name, so that one index state gives one lock. */
static bool wheel_better(const PkgTags *tags, const PkgFile *f, int prio, const PkgFile *old) {
        int old_prio = pkg_tags_wheel_priority(tags, old->filename);
        if (prio != old_prio)
                return prio < old_prio;
        PkgWheelName *a = NULL, *b = NULL;
        int c = 0;
        if (pkg_wheel_name_parse(f->filename, &a) >= 0 && pkg_wheel_name_parse(old->filename, &b) >= 0)
                c = pkg_wheel_build_compare(a->build, b->build);
        pkg_wheel_name_free(a);
        pkg_wheel_name_free(b);
        if (c != 0)
                return c > 0;
        return strcmp(f->filename, old->filename) < 0;
}

static int proj_load(Resolver *rs, Proj *p) {
        if (p->loaded)
                return p->load_error;
        p->loaded = true;
        const PkgProject *pp = NULL;
        _cleanup_free_ char *err = NULL;
        if (rs->o->progress)
                rs->o->progress("resolving", p->name, rs->n_projs, rs->n_projs, rs->o->userdata);
        /* Refused before its page is read: nothing of it is fetched. */
        int r = rs->o->admit ? rs->o->admit(rs->o->admit_userdata, p->name, &err) : 0;
        if (r >= 0)
                r = pkg_index_project(rs->ix, p->name, &pp, &err);
        if (r < 0 && resolve_cancelled(rs))
                return -ECANCELED;
        if (r < 0) {
                p->load_error = r;
                p->load_why = TAKE_PTR(err);
                return r;
        }
        bool any_sdist = false, any_incompatible = false, any_python = false;
        _cleanup_free_ char *sdist_example = NULL, *incompat_example = NULL, *python_example = NULL;
        for (size_t i = 0; i < pp->n_files; i++) {
                const PkgFile *f = &pp->files[i];
                if (!endswith(f->filename, ".whl")) {
                        if (endswith(f->filename, ".tar.gz") || endswith(f->filename, ".zip") ||
                            endswith(f->filename, ".tar.bz2")) {
                                any_sdist = true;
                                if (!sdist_example)
                                        sdist_example = xstrdup(f->filename);
                        }
                        continue;
                }
                PkgWheelName *wn = NULL;
                if (pkg_wheel_name_parse(f->filename, &wn) < 0)
                        continue;
                _cleanup_free_ char *wnorm = pkg_name_normalize(wn->name);
                PkgVersion *v = NULL;
                bool ok = wnorm && streq(wnorm, p->name) && pkg_version_parse(wn->version, &v) >= 0;
                pkg_wheel_name_free(wn);
                if (!ok)
                        continue;
                int prio = pkg_tags_wheel_priority(rs->o->tags, f->filename);
                if (prio < 0) {
                        any_incompatible = true;
                        if (!incompat_example)
                                incompat_example = xstrdup(f->filename);
                        pkg_version_free(v);
                        continue;
                }
                if (!python_ok(rs, f->requires_python)) {
                        any_python = true;
                        if (!python_example)
                                python_example = xasprintf("%s requires Python %s", f->filename, f->requires_python);
                        pkg_version_free(v);
                        continue;
                }
                Cand *c = NULL;
                for (size_t k = 0; k < p->n_cands; k++)
                        if (pkg_version_compare(p->cands[k].version, v) == 0) {
                                c = &p->cands[k];
                                break;
                        }
                if (!c) {
                        p->cands = xrealloc(p->cands, (p->n_cands + 1) * sizeof(Cand));
                        c = &p->cands[p->n_cands++];
                        *c = (Cand) { .version = v, .vstr = pkg_version_to_string(v) };
                        v = NULL;
                }
                pkg_version_free(v);
                const PkgFile **slot = f->yanked ? &c->yanked : &c->file;
                if (!*slot || wheel_better(rs->o->tags, f, prio, *slot))
                        *slot = f;
        }
        qsort(p->cands, p->n_cands, sizeof(Cand), cand_cmp);
        if (any_sdist)
                proj_note(p, xasprintf("%s is published as a source distribution (%s); pysprinter installs wheels only, "
                                       "because building an sdist runs the package's code at install time "
                                       "(--allow-sdist will build it inside the sandbox once sandboxed builds exist)",
                                       p->name, sdist_example));
        if (any_incompatible)
                proj_note(p, xasprintf("wheels such as %s do not fit this interpreter (Python %s on %s)", incompat_example,
                                       rs->o->python_full_version, rs->o->marker_env->platform_machine));
        if (any_python)
                proj_note(p, xasprintf("%s (this is %s)", python_example, rs->o->python_full_version));
        return 0;
}

/* Whether req could justify a fallback of its project: it names a
 * pre-release or pins one version (which may be yanked). */
static bool asks_for_fallback(const PkgRequirement *req) {
        if (pkg_specifier_set_allows_prereleases(req->specifiers))
                return true;
        _cleanup_free_ char *s = pkg_specifier_set_to_string(req->specifiers);
        return s && startswith(s, "==") && !strchr(s, ',') && !strchr(s, '*');
}

static bool exactly_pins(const PkgRequirement *req, const PkgVersion *v) {
        _cleanup_free_ char *s = pkg_specifier_set_to_string(req->specifiers);
        if (!s || !startswith(s, "==") || strchr(s, ',') || strchr(s, '*'))
                return false;
        const char *vs = s + (startswith(s, "===") ? 3 : 2);
        PkgVersion *pv = NULL;
        if (pkg_version_parse(vs, &pv) < 0)
                return false;
        bool eq = pkg_version_compare(pv, v) == 0;
        pkg_version_free(pv);
        return eq;
}

/* Whether c meets every specifier on its project in cs. */
static bool cand_satisfies(const Constraints *cs, const Proj *p, const Cand *c, bool prereleases) {
        for (size_t i = cs_first(cs, p->idx); i != SIZE_MAX; i = cs->c[i].next)
                if (!pkg_specifier_set_contains(cs->c[i].req->specifiers, c->version, prereleases))
                        return false;
        return true;
}

/* Whether a constraint of cs pins c with == or === (PEP 592: what lets a
 * yanked file be used). */
static bool cand_pinned(const Constraints *cs, const Proj *p, const Cand *c) {
        for (size_t i = cs_first(cs, p->idx); i != SIZE_MAX; i = cs->c[i].next)
                if (exactly_pins(cs->c[i].req, c->version))
                        return true;
        return false;
}

/* The file a candidate would install under cs, or NULL when it does not
 * satisfy every constraint on its project. */
static const PkgFile *cand_accepts(const Constraints *cs, const Proj *p, const Cand *c, bool prereleases) {
        if (!cand_satisfies(cs, p, c, prereleases))
                return NULL;
        if (c->file)
                return c->file;
        return cand_pinned(cs, p, c) ? c->yanked : NULL;
}

static bool prereleases_asked(const Constraints *cs, const Proj *p) {
        for (size_t i = cs_first(cs, p->idx); i != SIZE_MAX; i = cs->c[i].next)
                if (pkg_specifier_set_allows_prereleases(cs->c[i].req->specifiers))
                        return true;
        return false;
}

/* Candidates of p to try under cs, newest first, into idx (capacity
 * p->n_cands); returns how many. The first *ret_options are those PEP 440
 * and 592 accept now: pre-releases only when a constraint asks for them or
 * nothing else matches, yanked files only when pinned. The pre-releases
 * and yanked versions that meet the specifiers follow as fallbacks: a
 * package decided later may ask for one ({'pr': '', 'needpr': ''}, needpr
 * requiring pr>=2.0b1, or pr==2.0 of a yanked 2.0), and
 * unjustified_decision() refuses, once everything is decided, one nothing
 * asked for. */
static size_t matching(const Constraints *cs, const Proj *p, size_t *idx, size_t *ret_options) {
        bool pre = prereleases_asked(cs, p);
        _cleanup_free_ bool *taken = xcalloc(p->n_cands + 1, sizeof(bool));
        size_t n = 0;
        for (size_t k = 0; k < p->n_cands; k++)
                if (!p->cands[k].meta_error && cand_accepts(cs, p, &p->cands[k], pre))
                        taken[idx[n++] = k] = true;
        if (n == 0 && !pre)
                for (size_t k = 0; k < p->n_cands; k++)
                        if (!p->cands[k].meta_error && cand_accepts(cs, p, &p->cands[k], true))
                                taken[idx[n++] = k] = true;
        if (ret_options)
                *ret_options = n;
        for (size_t k = 0; k < p->n_cands; k++)
                if (!taken[k] && !p->cands[k].meta_error && cand_satisfies(cs, p, &p->cands[k], true))
                        idx[n++] = k;
        return n;
}

/* PEP 440 and 592 over the final constraints: the depth of the shallowest
 * decision they do not allow (a pre-release no specifier asks for while a
 * final release matches them all, a yanked file nothing pins), or
 * SIZE_MAX. */
static size_t unjustified_decision(Resolver *rs, const Constraints *cs) {
        for (size_t d = 0; d < rs->depth; d++) {
                const Proj *p = rs->projs[rs->stack[d].proj];
                const Cand *c = &p->cands[rs->stack[d].cand];
                if (!c->file && !cand_pinned(cs, p, c))
                        return d;
                if (!pkg_version_is_prerelease(c->version) || prereleases_asked(cs, p))
                        continue;
                for (size_t k = 0; k < p->n_cands; k++)
                        if (!p->cands[k].meta_error && !pkg_version_is_prerelease(p->cands[k].version) &&
                            cand_accepts(cs, p, &p->cands[k], false))
                                return d;
        }
        return SIZE_MAX;
}

static int cand_load_meta(Resolver *rs, Proj *p, Cand *c) {
        if (c->meta_loaded)
                return c->meta_error;
        c->meta_loaded = true;
        const PkgFile *f = c->file ? c->file : c->yanked;
        _cleanup_free_ char *text = NULL, *err = NULL;
        int r = pkg_index_metadata(rs->ix, f, &text, &err);
        if (r < 0 && resolve_cancelled(rs)) {
                c->meta_loaded = false; /* not the candidate's fault */
                return -ECANCELED;
        }
        if (r < 0) {
                /* Network and integrity errors are not a property of the
                 * candidate: stop instead of silently picking another. */
                rs->fatal = xasprintf("%s %s: %s", p->name, c->vstr, err ? err : strerror(-r));
                rs->fatal_code = r;
                c->meta_error = r;
                return r;
        }
        PkgMetadata *m = NULL;
        r = pkg_metadata_parse(text, &m, &err);
        if (r < 0) {
                c->meta_error = r;
                c->meta_why = xasprintf("%s %s: unreadable metadata: %s", p->name, c->vstr, err ? err : "");
                return r;
        }
        _cleanup_free_ char *mn = pkg_name_normalize(m->name);
        if (!mn || !streq(mn, p->name)) {
                c->meta_error = -EBADMSG;
                c->meta_why = xasprintf("%s: its metadata names a different project (%s)", f->filename, m->name);
                pkg_metadata_free(m);
                return -EBADMSG;
        }
        /* The candidate's version is the file name's: metadata that says
         * another would lock one version and install another. */
        PkgVersion *mv = NULL;
        bool same = m->version && pkg_version_parse(m->version, &mv) >= 0 && pkg_version_compare(mv, c->version) == 0;
        pkg_version_free(mv);
        if (!same) {
                c->meta_error = -EBADMSG;
                c->meta_why = xasprintf("%s: its metadata gives version %s, the file name %s (an inconsistent wheel)",
                                        f->filename, m->version ?: "(none)", c->vstr);
                pkg_metadata_free(m);
                return -EBADMSG;
        }
        if (!python_ok(rs, m->requires_python)) {
                c->meta_error = -ENOEXEC;
                c->meta_why = xasprintf("%s %s requires Python %s (this is %s)", p->name, c->vstr, m->requires_python,
                                        rs->o->python_full_version);
                pkg_metadata_free(m);
                return -ENOEXEC;
        }
        for (char **d = m->requires_dist; d && *d; d++) {
                PkgRequirement *req = NULL;
                _cleanup_free_ char *perr = NULL;
                if (pkg_requirement_parse(*d, &req, &perr) < 0) {
                        c->meta_error = -EBADMSG;
                        c->meta_why = xasprintf("%s %s: invalid Requires-Dist '%s': %s", p->name, c->vstr, *d,
                                                perr ? perr : "");
                        break;
                }
                c->deps = xrealloc(c->deps, (c->n_deps + 1) * sizeof(PkgRequirement *));
                c->deps[c->n_deps++] = req;
        }
        c->provides_extra = TAKE_PTR(m->provides_extra);
        pkg_metadata_free(m);
        return c->meta_error;
}

static bool req_active(Resolver *rs, const PkgRequirement *req, const char *extra) {
        if (!req->marker)
                return extra == NULL;
        return pkg_marker_evaluate(req->marker, rs->o->marker_env, extra);
}

/* Constraints of the current stack: the roots, then each decision's
 * dependencies for the extras asked of it, until nothing new appears. */
static void collect(Resolver *rs, Constraints *cs) {
        for (size_t i = 0; i < rs->n_roots; i++) {
                const PkgRequirement *req = rs->root_order[i];
                if (!req->marker || pkg_marker_evaluate(req->marker, rs->o->marker_env, NULL))
                        constraints_add(rs, cs, req, "your requirements", SIZE_MAX, SIZE_MAX);
        }
        /* Which dependencies of each decision are in already (a Requires-Dist
         * belongs to one candidate, so the pointer names the edge). */
        _cleanup_free_ bool **added = xcalloc(rs->depth + 1, sizeof(bool *));
        for (size_t d = 0; d < rs->depth; d++)
                added[d] = xcalloc(rs->projs[rs->stack[d].proj]->cands[rs->stack[d].cand].n_deps + 1, sizeof(bool));
        for (bool changed = true; changed;) {
                changed = false;
                for (size_t d = 0; d < rs->depth; d++) {
                        Proj *p = rs->projs[rs->stack[d].proj];
                        Cand *c = &p->cands[rs->stack[d].cand];
                        _cleanup_free_ char *from = xasprintf("%s %s", p->name, c->vstr);
                        /* extras asked of p by any constraint so far, and
                         * the first constraint asking each */
                        char **extras = NULL;
                        _cleanup_free_ size_t *askers = NULL;
                        for (size_t i = cs_first(cs, p->idx); i != SIZE_MAX; i = cs->c[i].next)
                                for (char **e = cs->c[i].req->extras; e && *e; e++)
                                        if (!strv_contains(extras, *e)) {
                                                size_t ne = strv_length(extras);
                                                extras = strv_append(extras, *e);
                                                askers = xrealloc(askers, (ne + 1) * sizeof(size_t));
                                                askers[ne] = i;
                                        }
                        for (size_t k = 0; k < c->n_deps; k++) {
                                const PkgRequirement *req = c->deps[k];
                                size_t asker = SIZE_MAX;
                                bool on = req_active(rs, req, NULL);
                                for (size_t e = 0; !on && extras && extras[e]; e++)
                                        if ((on = req_active(rs, req, extras[e])))
                                                asker = askers[e];
                                if (on && !added[d][k]) {
                                        added[d][k] = true;
                                        constraints_add(rs, cs, req, from, d, asker);
                                        changed = true;
                                }
                        }
                        strv_free(extras);
                }
        }
        for (size_t d = 0; d < rs->depth; d++)
                free(added[d]);
}

/* "your requirements want", "a 1.0 wants". */
static bool is_root(const Constraint *c) {
        return c->depth == SIZE_MAX;
}

static char *describe_constraints(const Constraints *cs, const char *name) {
        Buf b;
        buf_init(&b, 1 << 16);
        for (size_t i = 0; i < cs->n; i++) {
                if (!streq(cs->c[i].name, name))
                        continue;
                _cleanup_free_ char *spec = pkg_specifier_set_to_string(cs->c[i].req->specifiers);
                buf_printf(&b, "%s%s %s %s%s", b.len ? "; " : "", cs->c[i].from, is_root(&cs->c[i]) ? "want" : "wants",
                           name, spec && *spec ? spec : " (any version)");
        }
        return buf_steal(&b);
}

static char *describe_available(const Proj *p) {
        Buf b;
        buf_init(&b, 4096);
        size_t shown = 0;
        for (size_t k = 0; k < p->n_cands && shown < 12; k++) {
                buf_printf(&b, "%s%s%s", shown ? ", " : "", p->cands[k].vstr, p->cands[k].file ? "" : " (yanked)");
                shown++;
        }
        if (p->n_cands > shown)
                buf_printf(&b, ", … (%zu in all)", p->n_cands);
        if (shown == 0)
                buf_appends(&b, "none usable");
        return buf_steal(&b);
}

static char *describe_notes(const Constraints *cs, const Proj *p) {
        Buf b;
        buf_init(&b, 1 << 16);
        for (char **n = p->notes; n && *n; n++)
                buf_printf(&b, " Note: %s.", *n);
        for (size_t k = 0; k < p->n_cands; k++)
                if (p->cands[k].meta_why)
                        buf_printf(&b, " Note: %s.", p->cands[k].meta_why);
        /* "(available: 1.0 (yanked))" alone leaves the user guessing how
         * to get the yanked version that would match. */
        for (size_t k = 0; k < p->n_cands; k++)
                if (!p->cands[k].file && cand_satisfies(cs, p, &p->cands[k], true)) {
                        buf_printf(&b, " Note: a yanked version is used only when pinned with == (e.g. %s==%s).",
                                   p->name, p->cands[k].vstr);
                        break;
                }
        return buf_steal(&b);
}

/* "; a 1.0 wants b>=1" for each package that brought name in: a project
 * missing from the index that the user never named is otherwise a riddle. */
static void describe_requirers(Buf *b, const Constraints *cs, const char *name) {
        for (size_t i = 0; i < cs->n; i++) {
                if (!streq(cs->c[i].name, name) || streq(cs->c[i].from, "your requirements"))
                        continue;
                /* As describe_constraints() words it: a marker after the
                 * specifiers would read as the next item of this list. */
                _cleanup_free_ char *spec = pkg_specifier_set_to_string(cs->c[i].req->specifiers);
                buf_printf(b, "; %s wants %s%s", cs->c[i].from, name, spec ? spec : "");
        }
}

static void fail_not_found(Resolver *rs, const Constraints *cs, Proj *p) {
        _cleanup_strv_free_ char **names = NULL;
        _cleanup_free_ char *err = NULL;
        Buf b;
        buf_init(&b, 1 << 16);
        buf_printf(&b, "%s", p->load_why ? p->load_why : "not found");
        describe_requirers(&b, cs, p->name);
        if (p->load_error == -ENOENT) {
                (void) pkg_index_names(rs->ix, &names, &err);
                _cleanup_strv_free_ char **close = pkg_close_names(p->name, names, 5);
                if (close) {
                        buf_appends(&b, ". Did you mean ");
                        for (char **c = close; *c; c++)
                                buf_printf(&b, "%s'%s'", c == close ? "" : c[1] ? ", " : " or ", *c);
                        buf_appends(&b, "?");
                }
        }
        if (p->load_error != -ENOENT) {
                rs->fatal = buf_steal(&b);
                rs->fatal_code = p->load_error;
        } else
                note_failure(rs, -ENOENT, buf_steal(&b));
        buf_free(&b);
}

static int solve(Resolver *rs, bool *conf);

/* Every version of p that could be tried was, and each failed: the
 * failure said names the one it met last (the deepest), so it says so
 * too, as pip's "Cannot install x==1.0, x==2.0 and x==3.0" and uv's "all
 * versions of x depend on …" do (naming x 3.0 alone sent users pinning
 * x<3, which fails the same way). */
static void note_all_tried(Resolver *rs, const Proj *p, char **tried) {
        size_t n = strv_length(tried);
        if (n < 2 || !rs->why)
                return;
        Buf b;
        buf_init(&b, 1 << 16);
        buf_printf(&b, "%s%s Note: %s ", rs->why, endswith(rs->why, ".") ? "" : ".", p->name);
        for (size_t i = 0; i < n; i++) {
                if (i >= 5 && i + 1 < n)
                        continue;
                buf_printf(&b, "%s%s", i == 0 ? "" : i + 1 == n ? " and " : ", ", tried[i]);
                if (i == 4 && n > 6)
                        buf_appends(&b, ", …");
        }
        if (n > 6)
                buf_printf(&b, " (%zu versions)", n);
        buf_appends(&b, " were each tried; none works with the rest.");
        free(rs->why);
        rs->why = buf_steal(&b);
}

/* Decides project pi at depth rs->depth; on failure conf (rs->depth
 * entries) holds the decisions the failure depends on. */
static int try_project(Resolver *rs, Constraints *cs, size_t pi, bool *conf) {
        Proj *p = rs->projs[pi];
        const size_t here = rs->depth;
        conflict_add_project(conf, cs, p);
        _cleanup_free_ size_t *idx = xcalloc(p->n_cands + 1, sizeof(size_t));
        size_t options = 0;
        size_t n = matching(cs, p, idx, &options);
        if (options == 0) {
                _cleanup_free_ char *who = describe_constraints(cs, p->name);
                _cleanup_free_ char *avail = describe_available(p);
                _cleanup_free_ char *notes = describe_notes(cs, p);
                bool several = false;
                const char *first = NULL;
                for (size_t i = 0; i < cs->n; i++)
                        if (streq(cs->c[i].name, p->name)) {
                                if (first && !streq(first, cs->c[i].from))
                                        several = true;
                                first = cs->c[i].from;
                        }
                if (several)
                        note_failure(rs, -EDEADLK,
                                     xasprintf("conflicting requirements on %s: %s; no version satisfies them all "
                                               "(available: %s).%s",
                                               p->name, who, avail, notes));
                else
                        note_failure(rs, -ESRCH,
                                     xasprintf("no version of %s matches: %s (available: %s).%s", p->name, who,
                                               avail, notes));
                /* Said now; its fallbacks are still tried, in case a package
                 * decided later pins or asks for one. */
                if (n == 0)
                        return -ESRCH;
        }
        bool any_usable = false;
        _cleanup_strv_free_ char **tried = NULL;
        for (size_t k = 0; k < n; k++) {
                /* Past the versions accepted now, a fallback can only be
                 * justified by a requirement that names a pre-release or
                 * pins: unless one was met on this project somewhere in the
                 * search, trying them would only multiply the cost of a
                 * failing resolution. With nothing else to try they are
                 * tried anyway (the pinning package may come later). */
                if (k >= options && options > 0 && !p->fallback_asked)
                        break;
                if (resolve_cancelled(rs))
                        return -ECANCELED;
                if (++rs->steps > rs->max_steps) {
                        rs->fatal = xasprintf("resolution gave up after %u attempts: the requirements are too loose "
                                              "for the backtracking search; pin some versions",
                                              rs->max_steps);
                        rs->fatal_code = -ELOOP;
                        return -ELOOP;
                }
                Cand *c = &p->cands[idx[k]];
                if (cand_load_meta(rs, p, c) < 0) {
                        if (rs->fatal)
                                return rs->fatal_code;
                        continue;
                }
                any_usable = true;
                tried = strv_append(tried, c->vstr);
                p->decided = rs->depth;
                rs->stack[rs->depth++] = (Decision) { pi, idx[k] };
                _cleanup_free_ bool *sub = xcalloc(here + 1, sizeof(bool));
                const PkgFile *f = c->file ? c->file : c->yanked;
                /* A fallback is a long shot (it holds only if a package
                 * decided later asks for it): not worth a download yet. */
                if (rs->o->pinned && f && k < options)
                        rs->o->pinned(rs->o->pin_userdata, f);
                int r = solve(rs, sub);
                if (r >= 0)
                        return r;
                rs->depth--;
                p->decided = SIZE_MAX;
                if (rs->fatal)
                        return r;
                if (!sub[here]) {
                        /* Not this decision's doing: no other version of
                         * p fixes it; back to the deepest one it is. */
                        memcpy(conf, sub, here * sizeof(bool));
                        return -ESRCH;
                }
                for (size_t d = 0; d < here; d++)
                        conf[d] = conf[d] || sub[d];
                /* A leaf refused a decision below this one: none of this
                 * project's other versions changes that; unwind to it. */
                if (rs->unwind_to != SIZE_MAX) {
                        if (rs->unwind_to < rs->depth)
                                return -ESRCH;
                        rs->unwind_to = SIZE_MAX;
                }
        }
        if (!any_usable) {
                /* Every matching version was unusable (metadata naming another
                 * project, Requires-Python, …): say why, not "resolution
                 * failed". */
                _cleanup_free_ char *who = describe_constraints(cs, p->name);
                _cleanup_free_ char *notes = describe_notes(cs, p);
                note_failure(rs, -ESRCH, xasprintf("no usable version of %s matches: %s.%s", p->name, who, notes));
        }
        note_all_tried(rs, p, tried);
        return -ESRCH;
}

static int solve(Resolver *rs, bool *conf) {
        Constraints cs = {};
        collect(rs, &cs);
        int r = 0;
        /* Check the decisions against everything now required. */
        for (size_t d = 0; d < rs->depth; d++) {
                Proj *p = rs->projs[rs->stack[d].proj];
                Cand *c = &p->cands[rs->stack[d].cand];
                for (size_t i = cs_first(&cs, p->idx); i != SIZE_MAX; i = cs.c[i].next) {
                        if (!p->fallback_asked && asks_for_fallback(cs.c[i].req))
                                p->fallback_asked = true;
                        if (!pkg_specifier_set_contains(cs.c[i].req->specifiers, c->version, true)) {
                                _cleanup_free_ char *spec = pkg_specifier_set_to_string(cs.c[i].req->specifiers);
                                _cleanup_free_ char *who = describe_constraints(&cs, p->name);
                                note_failure(
                                        rs, -EDEADLK,
                                        xasprintf(
                                                "conflicting requirements on %s: %s; %s %s was the best candidate for "
                                                "the others but %s %s %s%s",
                                                p->name, who, p->name, c->vstr, cs.c[i].from,
                                                is_root(&cs.c[i]) ? "require" : "requires", p->name, spec));
                                conf[d] = true;
                                conflict_add_source(conf, &cs, &cs.c[i]);
                                r = -EDEADLK;
                                goto out;
                        }
                }
        }
        /* Next project: one of yours before the dependencies, as pip and uv
         * decide them (deciding a dependency first, for having the fewest
         * versions left, took its newest and held back a package you named
         * that wants an older one); then the undecided one with the fewest
         * options. A project with none left comes before all. */
        size_t best = SIZE_MAX, best_n = SIZE_MAX, best_order_n = SIZE_MAX;
        bool best_direct = false;
        for (size_t i = 0; i < cs.n; i++) {
                size_t pi = cs.c[i].proj;
                /* Each project once, at its first constraint. */
                if (cs.head[pi] != i || rs->projs[pi]->decided != SIZE_MAX)
                        continue;
                Proj *p = rs->projs[pi];
                if (resolve_cancelled(rs)) {
                        r = -ECANCELED;
                        goto out;
                }
                if (proj_load(rs, p) < 0) {
                        if (rs->fatal_code == -ECANCELED) {
                                r = -ECANCELED;
                                goto out;
                        }
                        fail_not_found(rs, &cs, p);
                        conflict_add_project(conf, &cs, p);
                        r = rs->fatal ? rs->fatal_code : -ENOENT;
                        goto out;
                }
                _cleanup_free_ size_t *idx = xcalloc(p->n_cands + 1, sizeof(size_t));
                size_t n = 0;
                size_t all = matching(&cs, p, idx, &n);
                /* Counted among its options for the order: the pre-releases
                 * its specifiers match, which a package decided later may
                 * ask for. Not counting them made {'a': '', 'pr': ''}
                 * decide pr first (one final release, "fewest options")
                 * where a 1.0 wants pr>=2.0b1: pr 1.0 held a back to 0.5,
                 * while pip takes a 1.0 and pr 2.0b1. */
                size_t order_n = n;
                for (size_t k = n; k < all && n > 0; k++)
                        if (p->cands[idx[k]].file && pkg_version_is_prerelease(p->cands[idx[k]].version))
                                order_n++;
                /* The version this project will be tried with first: its
                 * wheel can be fetched now, while the other projects are
                 * looked up (numpy's page is read ~20 ms before it is
                 * decided). */
                const Cand *first = n > 0 ? &p->cands[idx[0]] : NULL;
                const PkgFile *ff = first ? (first->file ? first->file : first->yanked) : NULL;
                if (rs->o->pinned && ff)
                        rs->o->pinned(rs->o->pin_userdata, ff);
                /* collect() puts your requirements first */
                bool direct = is_root(&cs.c[cs.head[pi]]);
                /* One with no option left first, whoever wants it: the
                 * dead end is met now, not after deciding every other
                 * package you named (each combination of theirs). */
                bool better;
                if (best == SIZE_MAX)
                        better = true;
                else if ((n == 0) != (best_n == 0))
                        better = n == 0;
                else if (direct != best_direct)
                        better = direct;
                else
                        better = order_n < best_order_n;
                if (better) {
                        best = pi;
                        best_n = n;
                        best_order_n = order_n;
                        best_direct = direct;
                }
        }
        if (best == SIZE_MAX) {
                /* Everything decided and consistent. A fallback (a
                 * pre-release or yanked version tried after the others
                 * failed) needs its justification now; without one this is
                 * a dead end, said by the failure that made the others
                 * fail, and the search unwinds to that decision. */
                rs->unwind_to = unjustified_decision(rs, &cs);
                r = rs->unwind_to == SIZE_MAX ? 0 : -ESRCH;
                /* "Nothing asks for it" holds until a decision brings a
                 * requirement that does: one made after it, or another
                 * version of what constrains its project. An earlier,
                 * unrelated decision whose other versions would pin it is
                 * not looked for (uv looks for none: it takes a yanked
                 * or pre-release version only when your own requirements
                 * name it); counting every decision in made one yanked
                 * release among a dozen packages try all their
                 * combinations and give up. */
                if (rs->unwind_to != SIZE_MAX) {
                        for (size_t d = rs->unwind_to; d < rs->depth; d++)
                                conf[d] = true;
                        conflict_add_project(conf, &cs, rs->projs[rs->stack[rs->unwind_to].proj]);
                }
                goto out;
        }
        if (rs->depth >= 4096) {
                rs->fatal = xstrdup("more than 4096 packages in one environment");
                rs->fatal_code = -E2BIG;
                r = -E2BIG;
                goto out;
        }
        r = try_project(rs, &cs, best, conf);
out:
        constraints_done(&cs);
        return r;
}

static int lock_entry_cmp(const void *a, const void *b) {
        return strcmp(((const PkgLockEntry *) a)->name, ((const PkgLockEntry *) b)->name);
}

/* Whether the candidate has the extra: its Provides-Extra lists it, or
 * (metadata older than 2.1 may not list them) one of its Requires-Dist
 * markers turns on for it alone. */
static bool cand_has_extra(Resolver *rs, const Cand *c, const char *extra) {
        if (strv_contains(c->provides_extra, extra))
                return true;
        for (size_t k = 0; k < c->n_deps; k++)
                if (req_active(rs, c->deps[k], extra) && !req_active(rs, c->deps[k], NULL))
                        return true;
        return false;
}

/* What pip and uv warn of and still install: a yanked version used because
 * it is pinned with == (PEP 592 asks installers to say so, with the
 * reason), and an extra the package does not have (it adds nothing: a
 * typo in "requests[socks]" goes unnoticed otherwise). */
static void lock_warnings(Resolver *rs, const Constraints *cs, const Proj *p, const Cand *c, char ***warnings) {
        if (!c->file && c->yanked)
                *warnings = strv_append_take(*warnings, *c->yanked->yanked
                                                                ? xasprintf("`%s==%s` is yanked (reason: \"%s\")",
                                                                            p->name, c->vstr, c->yanked->yanked)
                                                                : xasprintf("`%s==%s` is yanked", p->name, c->vstr));
        _cleanup_strv_free_ char **seen = NULL;
        for (size_t i = 0; i < cs->n; i++) {
                if (!streq(cs->c[i].name, p->name))
                        continue;
                for (char **e = cs->c[i].req->extras; e && *e; e++) {
                        if (strv_contains(seen, *e))
                                continue;
                        seen = strv_append(seen, *e);
                        if (!cand_has_extra(rs, c, *e))
                                *warnings = strv_append_take(
                                        *warnings, xasprintf("the package `%s==%s` does not have an extra named `%s`",
                                                             p->name, c->vstr, *e));
                }
        }
}

static int build_lock(Resolver *rs, PkgLock **ret_lock, char **ret_error) {
        PkgLock *l = xcalloc(1, sizeof(*l));
        l->from_index = true;
        l->entries = xcalloc(rs->depth + 1, sizeof(PkgLockEntry));
        for (size_t i = 0; i < rs->n_roots; i++) {
                _cleanup_free_ char *s = pkg_requirement_to_string(rs->roots[i]);
                l->requirements = strv_append(l->requirements, s ? s : rs->roots[i]->name);
        }
        for (size_t i = 0; i < rs->n_roots; i++) {
                const PkgRequirement *req = rs->root_order[i];
                if (!req->marker || pkg_marker_evaluate(req->marker, rs->o->marker_env, NULL))
                        continue;
                /* The normalised requirement's text after its ';' (names,
                 * extras and specifiers hold none). */
                _cleanup_free_ char *s = pkg_requirement_to_string(req);
                const char *m = s ? strchr(s, ';') : NULL;
                l->ignored = strv_append(l->ignored, req->name);
                l->ignored_markers = strv_append(l->ignored_markers, m ? m + 1 + strspn(m + 1, " ") : "");
        }
        Constraints cs = {};
        collect(rs, &cs);
        for (size_t d = 0; d < rs->depth; d++) {
                Proj *p = rs->projs[rs->stack[d].proj];
                Cand *c = &p->cands[rs->stack[d].cand];
                const PkgFile *f = c->file;
                if (!f)
                        f = c->yanked;
                const char *sha = NULL;
                int r = pkg_index_file_sha256(rs->ix, f, &sha, ret_error);
                if (r < 0) {
                        constraints_done(&cs);
                        pkg_lock_free(l);
                        return r;
                }
                lock_warnings(rs, &cs, p, c, &l->warnings);
                PkgLockEntry *e = &l->entries[l->n_entries++];
                *e = (PkgLockEntry) { .name = xstrdup(p->name), .version = xstrdup(c->vstr),
                                      .filename = xstrdup(f->filename), .url = xstrdup(f->url), .sha256 = xstrdup(sha) };
                _cleanup_free_ char *from = xasprintf("%s %s", p->name, c->vstr);
                /* A package that requires itself only asks for more of its
                 * own extras (selfext[b]; extra == "a"): not an edge. */
                for (size_t i = 0; i < cs.n; i++)
                        if (streq(cs.c[i].from, from) && !streq(cs.c[i].name, p->name) &&
                            !strv_contains(e->dependencies, cs.c[i].name))
                                e->dependencies = strv_append(e->dependencies, cs.c[i].name);
        }
        constraints_done(&cs);
        qsort(l->entries, l->n_entries, sizeof(PkgLockEntry), lock_entry_cmp);
        *ret_lock = l;
        return 0;
}

static int root_cmp(const void *a, const void *b) {
        const PkgRequirement *x = *(PkgRequirement *const *) a, *y = *(PkgRequirement *const *) b;
        int c = strcmp(x->normalized, y->normalized);
        if (c != 0)
                return c;
        _cleanup_free_ char *sx = pkg_requirement_to_string(x), *sy = pkg_requirement_to_string(y);
        return strcmp(sx ?: "", sy ?: "");
}

int pkg_resolve(PkgIndex *ix, PkgRequirement *const *reqs, size_t n_reqs, const PkgResolveOptions *o,
                PkgLock **ret_lock, char **ret_error) {
        Resolver rs = { .ix = ix,
                        .o = o,
                        .roots = reqs,
                        .n_roots = n_reqs,
                        .max_steps = o->max_steps ? o->max_steps : 20000,
                        .unwind_to = SIZE_MAX };
        int r = pkg_version_parse(o->python_full_version, &rs.python);
        if (r < 0) {
                *ret_error = xasprintf("invalid interpreter version '%s'", o->python_full_version);
                return -EINVAL;
        }
        /* The order of the keys of a dict is not part of the requirement
         * set (the lock cache key ignores it): resolving in the order
         * given made {'app': '', 'lib': ''} and {'lib': '', 'app': ''}
         * two different locks, whichever came first then cached for
         * both. */
        rs.root_order = xcalloc(n_reqs + 1, sizeof(PkgRequirement *));
        if (n_reqs > 0)
                memcpy(rs.root_order, reqs, n_reqs * sizeof(PkgRequirement *));
        qsort(rs.root_order, n_reqs, sizeof(PkgRequirement *), root_cmp);
        /* Every project appears at most once on the stack. */
        rs.stack = xcalloc(4097, sizeof(Decision));
        pkg_index_set_cancel(ix, o->cancel);
        bool conf[1] = { false };
        r = solve(&rs, conf);
        pkg_index_set_cancel(ix, NULL);
        if (r >= 0 && resolve_cancelled(&rs))
                r = -ECANCELED;
        if (r >= 0)
                r = build_lock(&rs, ret_lock, ret_error);
        else if (rs.fatal) {
                *ret_error = TAKE_PTR(rs.fatal);
                r = rs.fatal_code;
        } else if (rs.why) {
                *ret_error = TAKE_PTR(rs.why);
                r = rs.why_code;
        } else
                *ret_error = xstrdup("dependency resolution failed");
        for (size_t i = 0; i < rs.n_projs; i++) {
                Proj *p = rs.projs[i];
                for (size_t k = 0; k < p->n_cands; k++) {
                        Cand *c = &p->cands[k];
                        pkg_version_free(c->version);
                        free(c->vstr);
                        free(c->meta_why);
                        for (size_t j = 0; j < c->n_deps; j++)
                                pkg_requirement_free(c->deps[j]);
                        free(c->deps);
                        strv_free(c->provides_extra);
                }
                free(p->cands);
                free(p->name);
                free(p->load_why);
                strv_free(p->notes);
                free(p);
        }
        free(rs.projs);
        free(rs.slots);
        free(rs.root_order);
        free(rs.stack);
        free(rs.why);
        free(rs.fatal);
        pkg_version_free(rs.python);
        return r;
}
