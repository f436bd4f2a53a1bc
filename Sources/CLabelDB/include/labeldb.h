/* labeldb.h — the C API of LabelDB, an embedded store for labelled machine-learning corpora.
 *
 * DESIGN
 *
 * One engine serves every language. The Swift library holds all of LabelDB's logic (the format,
 * clearances, codecs, regeneration, kNN, provenance); the `labeldb` command line, this C API and
 * the Python package are thin shells over it, so they give the same answers. Nothing here
 * re-implements the format.
 *
 * The API follows LMDB's shape. A store handle (ldb_store) is opened once per process and
 * directory; a transaction handle (ldb_txn) is a snapshot (read) or the one writer (write) under
 * a clearance that decides what it can see. Bulk data crosses the boundary in arrays the caller
 * owns: ids in, columns out, one call per batch rather than per row (ldb_get_many). Small
 * structured results (store information, label sets, projectors, reports) come back as JSON text
 * — the same documents `labeldb --format json` prints (format-spec/cli.md) — and options go in as
 * JSON text, so the ABI stays small as the engine grows.
 *
 * ERRORS
 *
 * Every function that can fail returns an int: LDB_OK (0), or the class of the failure, the same
 * classes as the command line's exit codes:
 *   LDB_NOT_FOUND   (1)  a requested item does not exist or the clearance hides it;
 *   LDB_BAD_INPUT   (2)  bad arguments or data, a misused handle, a refusal; nothing was written;
 *   LDB_STORE_ERROR (3)  damaged bytes, LMDB, the file system.
 * ldb_last_error() then returns a message naming what is wrong and where; ldb_last_error_refused()
 * tells a refusal (a clearance that sees too little, a missing privilege) from other bad input.
 * Both describe the last failing call on the calling thread. No Swift error or trap crosses the
 * boundary: arguments are checked before the engine sees them, and a NULL where an array is
 * needed is LDB_BAD_INPUT, not a crash.
 *
 * MEMORY
 *
 * The caller owns every array it passes, in and out; the library only reads the "in" ones during
 * the call and only writes the "out" ones during the call. Strings and arrays the library
 * allocates are returned through `char **` / `uint64_t **` parameters and freed with ldb_free().
 * Variable-size columns of ldb_get_many (metadata, payloads, taint labels) point into memory the
 * transaction owns: valid until the next call on that transaction, or its end.
 *
 * THREADS AND PROCESSES
 *
 * A store handle may be shared by threads. A transaction handle belongs to the thread that began
 * it: using it from another thread is LDB_BAD_INPUT (LMDB ties a write transaction to its thread).
 * Only one write transaction is open at a time per store across all threads and processes; a
 * second ldb_txn_begin for writing waits for the first to end (on the same thread it is
 * LDB_BAD_INPUT, since it would wait forever). An open read transaction pins the pages of its
 * snapshot: keep it short. LMDB environments must not cross fork(): a handle used in a child
 * process is LDB_BAD_INPUT; open the store again in the child (after exec, or lazily in each
 * worker process). Store handles must have no open transactions when closed.
 */
#ifndef LABELDB_H
#define LABELDB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Return codes: the error classes. */
enum {
    LDB_OK = 0,
    LDB_NOT_FOUND = 1,
    LDB_BAD_INPUT = 2,
    LDB_STORE_ERROR = 3
};

/** Flags of ldb_open. */
enum {
    /** Open for writing (the default is read-only). */
    LDB_WRITE = 1
};

/** Forms of soft labels in ldb_get_many. */
enum {
    LDB_SOFT_NONE = 0,
    /** C floats per row. */
    LDB_SOFT_DENSE = 1,
    /** The K most probable classes, their probabilities and the leftover mass. */
    LDB_SOFT_COMPACT = 2
};

/** An open store. Opaque. */
typedef struct ldb_store ldb_store;
/** A read or write transaction. Opaque. */
typedef struct ldb_txn ldb_txn;

/** The message of the last failing call on this thread ("" when none). Valid until the next
 *  failing call on this thread. */
const char *ldb_last_error(void);

/** 1 when the last failing call on this thread was a refusal (class LDB_BAD_INPUT), else 0. */
int ldb_last_error_refused(void);

/** The library's version and the store format version it writes, as "VERSION format N". Static. */
const char *ldb_version(void);

/** Frees a string or array the library returned. NULL is ignored. */
void ldb_free(void *pointer);

/* ---- Stores ------------------------------------------------------------------------------ */

/** Opens the store in directory `path` (read-only unless flags has LDB_WRITE) into *out.
 *  Errors: LDB_STORE_ERROR when it is not a store or cannot be opened. A directory already open
 *  in this process for reading cannot be opened again for writing (LDB_STORE_ERROR). */
int ldb_open(const char *path, int flags, ldb_store **out);

/** Creates a store in `path` (missing or an empty directory) and opens it for writing.
 *  `schema_json`: {"dimension": d, "classes": ["a", ...] or a count, "element": "f32"|"f16"}.
 *  Errors: LDB_BAD_INPUT for a bad schema or a directory that is not empty; nothing is left behind. */
int ldb_create(const char *path, const char *schema_json, ldb_store **out);

/** Closes the store and frees the handle. LDB_BAD_INPUT (and the handle stays open) while
 *  transactions begun on it are open. NULL is ignored. */
int ldb_close(ldb_store *store);

/** The store's information as JSON in *json (free with ldb_free): path, format_version,
 *  read_only, dimension, element, classes. */
int ldb_info(ldb_store *store, char **json);

/** Checks every record (as `labeldb verify --in-process`); the report JSON in *json. Needs a
 *  clearance that sees the whole store (else LDB_BAD_INPUT, refused). A damaged store is not an
 *  error of this call: the report says what is wrong ("ok": false). */
int ldb_verify(ldb_store *store, const char *clearance, char **json);

/** Fits projector `name` (a new version) from the options JSON: {"from": "SET[@V]", "rank": r
 *  (default 16), "head": name, "max_kl": x, "top1": bool, "epochs": n (fixed passes, no early
 *  stopping), "max_steps": n, "patience": n (the default step budget), "holdout": f, "seed": s,
 *  "fit_temperature": bool, "budget": bytes (needs max_kl: the rank whose parameters plus
 *  corrections take the fewest bytes; "rank" may then be a list of candidates, default powers of
 *  two from 8), "search_rows": n (rows each candidate is fitted on, default 50,000), "agent": text,
 *  "clearance": text}; the version's JSON (as `projector show`) in *json. Runs its own
 *  transactions: no transaction of this thread may be open for writing. */
int ldb_fit_projector(ldb_store *store, const char *name, const char *options_json, char **json);

/** Copies the store, compacted, into `destination` (missing or an empty directory), as
 *  `labeldb backup`. Needs a clearance that sees the whole store (else LDB_BAD_INPUT, refused). */
int ldb_backup(ldb_store *store, const char *destination, const char *clearance);

/* ---- Transactions ------------------------------------------------------------------------ */

/** Begins a transaction under `clearance` ("all", "public", "secrecy=a,b;integrity=c"), for
 *  writing when `write` is non-zero (the store must be open for writing). */
int ldb_txn_begin(ldb_store *store, const char *clearance, int write, ldb_txn **out);

/** Commits a write transaction (a read transaction just ends) and frees the handle, whether or
 *  not it succeeds. After a failing call in a write transaction, commit fails (LDB_BAD_INPUT)
 *  and nothing is written. */
int ldb_txn_commit(ldb_txn *txn);

/** Ends a transaction without writing anything and frees the handle. NULL is ignored. */
void ldb_txn_abort(ldb_txn *txn);

/* ---- Reading ----------------------------------------------------------------------------- */

/** The number of samples the clearance sees. */
int ldb_count(ldb_txn *txn, uint64_t *count);

/** Every visible id in ascending order: *ids (free with ldb_free) and *count. */
int ldb_ids(ldb_txn *txn, uint64_t **ids, size_t *count);

/** Every hard label of label set `set` ("NAME" or "NAME@VERSION") the clearance sees, by
 *  ascending sample id: *ids and *classes (free both with ldb_free), *count rows. Samples
 *  without a hard label there are left out. */
int ldb_hard_labels(ldb_txn *txn, const char *set, uint64_t **ids, int32_t **classes, size_t *count);

/** Where one label set's columns go in ldb_get_many: each pointer may be NULL (not written),
 *  except the ones the soft form needs. n rows; k = compact_k as resolved. */
typedef struct ldb_label_columns {
    int32_t *version;          /**< n: version of the row read, 0 when none */
    int32_t *hard;             /**< n: hard label, -1 when none */
    float *dense;              /**< n*C, LDB_SOFT_DENSE: zeros when no soft label */
    int32_t *top_classes;      /**< n*k, LDB_SOFT_COMPACT: -1 past a row's last class */
    float *top_probabilities;  /**< n*k, LDB_SOFT_COMPACT */
    float *leftover;           /**< n, LDB_SOFT_COMPACT */
} ldb_label_columns;

/** Where one projector's regenerated labels go. */
typedef struct ldb_regen_columns {
    float *probabilities;      /**< n*C, required */
    uint8_t *status;           /**< n: 1 regenerated, 2 corrected, 3 stale, 4 unfitted, 0 absent */
} ldb_regen_columns;

/** One batch read: the request, the caller's buffers, and what the library sets. */
typedef struct ldb_batch {
    /* Request. */
    int embeddings;                 /**< non-zero: fill `embedding` (n*d floats) */
    int metadata;                   /**< non-zero: metadata JSON bytes */
    int payloads;                   /**< non-zero: payload bytes */
    int taints;                     /**< non-zero: taint label indices */
    size_t label_count;             /**< label sets to read */
    const char *const *labels;      /**< "NAME" or "NAME@VERSION", label_count of them */
    int soft_form;                  /**< LDB_SOFT_* */
    int compact_k;                  /**< K of the compact form; 0: the set's topk:K codec's K */
    size_t regen_count;             /**< projectors to regenerate with */
    const char *const *regen;       /**< "NAME" or "NAME@VERSION", regen_count of them */
    /* The caller's buffers (row i for ids[i]). */
    uint8_t *found;                 /**< n: 1 found, 0 absent or hidden (may be NULL) */
    float *embedding;               /**< n*d */
    uint64_t *metadata_offsets;     /**< n+1: row i is metadata_bytes[off[i], off[i+1]) */
    uint64_t *payload_offsets;      /**< n+1 */
    int32_t *taint_index;           /**< n: index into taint_json's array, -1 when absent */
    ldb_label_columns *label_columns; /**< label_count of them */
    ldb_regen_columns *regen_columns; /**< regen_count of them */
    /* Set by the library; valid until the next call on the transaction or its end. */
    size_t found_count;
    const uint8_t *metadata_bytes;
    size_t metadata_size;
    const uint8_t *payload_bytes;
    size_t payload_size;
    const char *taint_json;         /**< JSON array of {"secrecy": [...], "integrity": [...]} */
} ldb_batch;

/** Reads the columns `batch` asks for of `count` ids (any order, repeats allowed) in one call.
 *  An absent or hidden id is not an error: its found byte is 0, its columns zero, labels -1.
 *  Errors: LDB_NOT_FOUND for an unknown label set, version or projector; LDB_BAD_INPUT for a
 *  requested column without a buffer; LDB_STORE_ERROR for damaged bytes. */
int ldb_get_many(ldb_txn *txn, const uint64_t *ids, size_t count, ldb_batch *batch);

/** The views ldb_read_views read: sample i's views are rows offsets[i] .. offsets[i+1]-1 of
 *  every per-view array, in ascending view number. Free with ldb_views_free. */
typedef struct ldb_views {
    size_t samples;            /**< n, the ids given */
    size_t views;              /**< the views read */
    size_t classes;            /**< C */
    size_t k;                  /**< K of the compact form, 0 when not compact (or no soft labels) */
    uint64_t *offsets;         /**< n+1 */
    int32_t *versions;         /**< n: version of the row read, 0 when none (absent, hidden, unlabelled) */
    uint32_t *view;            /**< views: view numbers */
    float *crop;               /**< views*4 */
    uint8_t *flip;             /**< views */
    uint16_t *epoch;           /**< views */
    uint32_t *seed;            /**< views */
    int32_t *hard;             /**< views: -1 when the rows carry none */
    float *dense;              /**< views*C (soft "dense"), else NULL */
    int32_t *top_classes;      /**< views*k (soft "compact"), else NULL; -1 past a row's last */
    float *top_probabilities;  /**< views*k, else NULL */
    float *leftover;           /**< views, else NULL */
    uint64_t *extra_offsets;   /**< views+1 into extra_bytes: each view's extra JSON, empty for none */
    uint8_t *extra_bytes;
} ldb_views;

/** Reads the views of `count` ids in per-view label set `set` ("NAME" or "NAME@V") with their
 *  labels, in one call: every view, or with options {"epoch": E} the one view epoch E replays
 *  (index E mod n of a sample's n views). Options {"soft": "compact" (default) | "dense" |
 *  "none", "k": K}. *out: free with ldb_views_free; NULL when the call fails. The columns the
 *  form asks for are valid pointers even when no view was read. LDB_BAD_INPUT for a per-sample
 *  set. */
int ldb_read_views(ldb_txn *txn, const char *set, const uint64_t *ids, size_t count, const char *options_json, ldb_views **out);

/** Frees what ldb_read_views returned. NULL is ignored. */
void ldb_views_free(ldb_views *views);

/** Runs a filter (the `labeldb query --where` language; NULL or "" for every sample) with
 *  options JSON {"order": "id"|"confidence:SET"|"margin:SET"|"entropy:SET", "descending": bool, "limit": n, "offset": n}:
 *  the matching ids in *ids (free with ldb_free), *count of them. */
int ldb_query(ldb_txn *txn, const char *filter, const char *options_json, uint64_t **ids, size_t *count);

/** Exact k nearest neighbours of `query_count` queries (query_count*d floats): ids and
 *  similarities in caller arrays of query_count*k (id 0 and -inf past the last hit). With
 *  options {"labels": "SET[@V]", "flow": "permissive"|"conservative", "lambda": x, "metric":
 *  "cosine"|"l2", "where": filter}, *json (free with ldb_free; NULL when not asked) receives the
 *  kNN labels per query as `labeldb knn --labels` prints them. */
int ldb_knn(ldb_txn *txn, const float *queries, size_t query_count, size_t k, const char *options_json,
            uint64_t *ids, float *similarities, char **json);

/** Every label set with its versions (as `labeldb labels list --format json`). */
int ldb_label_sets(ldb_txn *txn, char **json);

/** Every projector with its versions (as `labeldb projectors list --format json`). */
int ldb_projectors(ldb_txn *txn, char **json);

/** The provenance log: {"log": the hash-chain check (as `labeldb audit --verify-log`),
 *  "prov": the log as W3C PROV-JSON (as `labeldb provenance export`)}. */
int ldb_provenance(ldb_txn *txn, char **json);

/** Sample `id`'s labels, their taint explanation and lineage (as `labeldb audit ID`).
 *  LDB_NOT_FOUND when the clearance does not see the sample. */
int ldb_audit(ldb_txn *txn, uint64_t id, char **json);

/** How far label sets agree (as `labeldb labels agree`): options {"sets": [SET[@V], ..] (two or
 *  more; projectors may stand in), "where": filter}. JSON {"pairs": [one object per pair, as the
 *  CLI's lines], "fleiss": the Fleiss line, or null for two sets}. LDB_BAD_INPUT for fewer than
 *  two sets, one named twice, or a pair with no common sample. */
int ldb_agreement(ldb_txn *txn, const char *options_json, char **json);

/** The corpus card of what the transaction's clearance sees (as `labeldb card --format json`):
 *  options {"labels": [SET[@V], ..] (default every readable label set and projector), "html":
 *  path (also write the HTML page there), "title": text (the page's title)}. *json: the card's
 *  JSON. LDB_BAD_INPUT when the HTML cannot be written. */
int ldb_corpus_card(ldb_txn *txn, const char *options_json, char **json);

/** Recomputes projector `name` ("NAME" or "NAME@V")'s labels for every fitted sample and checks
 *  its bound (as `labeldb projector check --format json`). */
int ldb_check_projector(ldb_txn *txn, const char *name, char **json);

/* ---- Writing (write transactions only) --------------------------------------------------- */

/** Stores `count` samples: ids, embeddings (count*d floats), and optionally metadata (JSON
 *  objects; count+1 offsets into bytes) and payloads (offsets + bytes). options_json (may be
 *  NULL): {"mode": "replace"|"insert", "secrecy": [..], "integrity": [..], "privilege": [..]}.
 *  *summary_json (may be NULL): {"inserted": n, "replaced": n}. */
int ldb_put(ldb_txn *txn, const uint64_t *ids, size_t count, const float *embeddings,
            const uint64_t *metadata_offsets, const uint8_t *metadata_bytes,
            const uint64_t *payload_offsets, const uint8_t *payload_bytes,
            const char *options_json, char **summary_json);

/** Deletes the samples among `ids` the transaction sees; *deleted (may be NULL) says how many. */
int ldb_delete(ldb_txn *txn, const uint64_t *ids, size_t count, uint64_t *deleted);

/** Imports labels into label set `name` (created when missing) as its next version: exactly one
 *  of soft (count*C floats, rows summing to 1; logits with {"logits": true}), hard (count
 *  class indices) or multi (count+1 offsets into multi_classes). options_json (may be NULL):
 *  {"codec": text, "agent": text, "secrecy": [..], "integrity": [..], "privilege": [..],
 *  "normalize": bool, "logits": bool, "temperature": T}. *json: the version (as `labels list`). */
int ldb_import_labels(ldb_txn *txn, const char *name, const uint64_t *ids, size_t count,
                      const float *soft, const int64_t *hard,
                      const uint64_t *multi_offsets, const int64_t *multi_classes,
                      const char *options_json, char **json);

/** Imports compact soft labels into label set `name` as its next version: per row K classes
 *  (count*k), their probabilities (count*k) and the leftover mass (count; NULL for 1 - sum). With
 *  the codec topk:K:f16 (the default for a new set) rows are stored as given, and the version's
 *  fidelity says "exact" when no value needed rounding. Options as ldb_import_labels (no logits). */
int ldb_import_topk_labels(ldb_txn *txn, const char *name, const uint64_t *ids, size_t count, size_t k,
                           const int32_t *classes, const float *probabilities, const float *leftover,
                           const char *options_json, char **json);

/** The views of a per-view import, one per label row (format-spec/storage.md §10.7). */
typedef struct ldb_view_params {
    const uint32_t *view;          /**< count view numbers (required); each (id, view) once */
    const float *crop;             /**< count*4: x0, y0, x1, y1 in [0, 1], x0 < x1, y0 < y1 (required) */
    const uint8_t *flip;           /**< count: 1 flipped, 0 not; NULL for none flipped */
    const uint16_t *epoch;         /**< count; NULL for 0 */
    const uint32_t *seed;          /**< count; NULL for 0 */
    const uint64_t *extra_offsets; /**< count+1 offsets into extra_bytes (JSON objects; empty for
                                        none); NULL for no extras */
    const uint8_t *extra_bytes;
} ldb_view_params;

/** Imports labels per augmented view into the per-view label set `name` (created when missing)
 *  as its next version: row i labels view views->view[i] of sample ids[i] (ids repeat once per
 *  view); each sample's views replace its view list for this version. Exactly one of soft
 *  (count*C probabilities), hard (count classes), or compact rows (k > 0: top_classes and
 *  top_probabilities count*k, leftover count or NULL). Options as ldb_import_labels (no logits).
 *  LDB_BAD_INPUT for a per-sample set, a view twice, a crop outside [0, 1] or of zero area. */
int ldb_import_view_labels(ldb_txn *txn, const char *name, const uint64_t *ids, size_t count, const ldb_view_params *views,
                           const float *soft, const int64_t *hard,
                           size_t k, const int32_t *top_classes, const float *top_probabilities, const float *leftover,
                           const char *options_json, char **json);

/* ---- Sharded corpora (format-spec/corpus.md) ---- */

/** The manifest of the corpus in directory `path`, checked (K-1), as JSON: format, version,
 *  generation, schema, shards, routing, label_sets, projectors, shard_states. */
int ldb_corpus_manifest(const char *path, char **json);

/** Creates an empty corpus in directory `path` (missing or empty): `shards` empty stores of the
 *  schema {"dimension": d, "classes": [names], "element": "f32"|"f16"}, routed by hash. */
int ldb_create_corpus(const char *path, const char *schema_json, size_t shards);

/** The shard of each of `count` ids under the corpus's routing rule (K-3, K-4): shards[i] is
 *  its index, or -1 when the range rule gives it to no shard. */
int ldb_corpus_route(const char *path, const uint64_t *ids, size_t count, int32_t *shards);

/** Opens shard `shard` of the corpus in `path` read-only, pinned to label-set and projector
 *  versions (later ones, left by an interrupted write or committed since, read as absent):
 *  pin_json, {"label_sets": {...}, "projectors": {...}} from a manifest read earlier (so shards
 *  opened at different times read one committed state; without "projectors", the manifest's
 *  now), or a "label_sets" object alone, or NULL for the manifest's now. */
int ldb_open_shard(const char *path, size_t shard, const char *pin_json, ldb_store **out);

/** Imports one new version of label set `name` into the corpus: each row into the shard of its
 *  id, one version number in every shard, visible once the manifest records it (the corpus's
 *  one writer: LDB_STORE_ERROR while another holds corpus.lock). Exactly one of soft
 *  (count*C), hard (count) or compact rows (k > 0: classes and probabilities count*k,
 *  leftover count or NULL). Options as ldb_import_labels (logits with soft), plus "clearance" (default
 *  "all") and "provenance" (an object of text parameters recorded with the import). *json: the
 *  version across the shards (counts summed), with "shards". With "session" and "shard", one
 *  shard's part of a write session (see ldb_corpus_writer_open): *json that shard's version. */
int ldb_corpus_import_labels(const char *path, const char *name, const uint64_t *ids, size_t count,
                             const float *soft, const int64_t *hard,
                             size_t k, const int32_t *top_classes, const float *top_probabilities, const float *leftover,
                             const char *options_json, char **json);

/** Stores `count` samples in the corpus, each in the shard of its id (columns and options as
 *  ldb_put, plus "clearance" (default "all"), "agent" and "provenance", an object of text
 *  parameters): every shard's part is checked before any is written, then committed shard by
 *  shard, then the manifest (corpus.md K-10). *summary_json: {"inserted", "replaced", "shards"}.
 *  With "session" and "shard", one shard's part of a write session (see ldb_corpus_writer_open). */
int ldb_corpus_put(const char *path, const uint64_t *ids, size_t count, const float *embeddings,
                   const uint64_t *metadata_offsets, const uint8_t *metadata_bytes,
                   const uint64_t *payload_offsets, const uint8_t *payload_bytes,
                   const char *options_json, char **summary_json);

/** Write sessions (corpus.md K-13): the corpus's one writer, held open by a driver, lets other
 *  processes write each shard's part of one write in parallel, then commits it in the manifest.
 *  ldb_corpus_writer_open takes corpus.lock (LDB_STORE_ERROR while another writer holds it);
 *  ldb_corpus_writer_begin opens a session for one sample import (label_set NULL) or one new
 *  version of label set `label_set`: *json {"session", "generation"[, "label_set", "version"]}.
 *  Each shard's part is then written by ldb_corpus_put / ldb_corpus_import_labels with the
 *  options "session" (the session's name), "shard" (its index; every id must route to it) and
 *  "check" (true: every check runs and nothing is written; run it on every shard's part before
 *  any commits, so bad input writes nothing anywhere). ldb_corpus_writer_commit checks that every
 *  shard wrote its part of a label import in this session and writes the next manifest
 *  generation: *json {"generation", "shards"}, and for a label import the version across the
 *  shards (counts summed). While a session is open the writer writes nothing else. abandon ends
 *  the session uncommitted (a label version stays invisible; wait for every shard write to end
 *  first); close abandons and releases the lock. */
typedef struct ldb_corpus_writer ldb_corpus_writer;
int ldb_corpus_writer_open(const char *path, ldb_corpus_writer **out);
int ldb_corpus_writer_begin(ldb_corpus_writer *writer, const char *label_set, char **json);
int ldb_corpus_writer_commit(ldb_corpus_writer *writer, char **json);
int ldb_corpus_writer_abandon(ldb_corpus_writer *writer);
int ldb_corpus_writer_close(ldb_corpus_writer *writer);

/** ldb_knn over every shard of the corpus (or the store) in `path`, read under the option
 *  "clearance" (default "public"), the other options and outputs as ldb_knn: equal to one store's
 *  answer over the same samples (corpus.md §5). */
int ldb_corpus_knn(const char *path, const float *queries, size_t query_count, size_t k, const char *options_json,
                   uint64_t *ids, float *similarities, char **json);

/** `labeldb labels consensus CORPUS NAME`: options as ldb_consensus plus "clearance" (default
 *  "all"); the sources' rows of every shard merged in id order, written as a routed label import
 *  by the corpus's one writer (LDB_STORE_ERROR while another holds corpus.lock). *json as
 *  ldb_consensus, the version's counts summed over the shards. */
int ldb_corpus_consensus(const char *path, const char *name, const char *options_json, char **json);

/** `labeldb provenance export CORPUS` as JSON: every shard's log as a PROV bundle (cli.md);
 *  options: "clearance" (default "public"). For a store, its PROV-JSON. */
int ldb_corpus_provenance(const char *path, const char *options_json, char **json);

/** Fits the next version of projector `name` across the corpus's shards (as `labeldb projector
 *  fit CORPUS`, corpus.md K-11): options as ldb_fit_projector. The corpus's one writer
 *  (LDB_STORE_ERROR while another holds corpus.lock). *json: the version, with the whole fit's
 *  figures. */
int ldb_corpus_fit_projector(const char *path, const char *name, const char *options_json, char **json);

/** Runs one pass of a corpus projector fit over shard `shard` (corpus.md K-17): `request` holds
 *  `length` bytes a fit sent; on success *reply (must be valid until the executor is called
 *  again on the same thread or the fit returns) holds *reply_length bytes. Returns 0, or
 *  anything else to fail the fit. */
typedef int (*ldb_fit_executor)(void *context, int32_t shard, const uint8_t *request, size_t length,
                                const uint8_t **reply, size_t *reply_length);

/** As ldb_corpus_fit_projector, but every pass over a shard's rows (the closed form's sums, the
 *  evaluations, the correction search, the refinement's minibatches) is handed to `executor`,
 *  which runs it where the shard is (ldb_fit_part_serve, e.g. in a Ray actor) and returns the
 *  reply. The figures equal ldb_corpus_fit_projector's up to BLAS's rounding; the writer (this call) still records
 *  the version in every shard. Executor calls may come from several threads at once. */
int ldb_corpus_fit_projector_parts(const char *path, const char *name, const char *options_json,
                                   ldb_fit_executor executor, void *context, char **json);

/** A shard's side of a fit run elsewhere. */
typedef struct ldb_fit_part ldb_fit_part;

/** Opens shard `shard` of the corpus at `path` to serve fit passes; options {"clearance": text}
 *  (default "public"; it must be the fit's). Close with ldb_fit_part_close. */
int ldb_fit_part_open(const char *path, int32_t shard, const char *options_json, ldb_fit_part **out);

/** Serves one request an executor received: *reply (free with ldb_free), *reply_length bytes.
 *  A malformed request, or one naming fitted rows this shard does not hold (another state of
 *  the corpus), is LDB_BAD_INPUT. Calls on one handle are serialised. */
int ldb_fit_part_serve(ldb_fit_part *part, const uint8_t *request, size_t length, uint8_t **reply, size_t *reply_length);

/** Closes the handle. NULL is ignored. */
void ldb_fit_part_close(ldb_fit_part *part);

/** Changes the taint labels of the samples among `ids` the transaction sees (as `labeldb taint`):
 *  options {"add_secrecy": [..], "remove_secrecy": [..], "add_integrity": [..],
 *  "remove_integrity": [..], "privilege": [..], "agent": text}. Removing secrecy (declassify) and
 *  adding integrity (endorse) need the privilege for each tag (else LDB_BAD_INPUT, refused).
 *  *changed (may be NULL): how many labels changed. */
int ldb_relabel(ldb_txn *txn, const uint64_t *ids, size_t count, const char *options_json, uint64_t *changed);

/** Writes a new version of label set `name`, the consensus of several (as `labeldb labels
 *  consensus`): options {"sources": [SET[@V], ..], "method": "mean"|"vote"|"dawid-skene",
 *  "weights": {source: number}, "reference": SET[@V] | "reference_tag": TAG with
 *  "reference_set": SET[@V] (mean and vote: per-class weights from the sources' accuracy on the
 *  reference), "codec": text, "agent": text, "tolerance": number, "max_iterations": n}. *json:
 *  the CLI's JSON. LDB_BAD_INPUT when Dawid–Skene does not converge, or the reference labels no
 *  sample a source labels (nothing written). */
int ldb_consensus(ldb_txn *txn, const char *name, const char *options_json, char **json);

/** Likely label errors by confident learning (as `labeldb labels issues`): options {"given":
 *  hard SET[@V], "probs": soft SET[@V] or projector, "filter": "prune-by-noise-rate"|
 *  "prune-by-class"|"both", "where": filter, "write_set": NAME (a write transaction: the
 *  suggested classes are written as a new version of that hard label set), "agent": text}. JSON
 *  {"given", "probs", "examined", "estimated_errors", "issues": [the CLI's lines, ranked],
 *  "written": the version written, or null}. LDB_BAD_INPUT for a soft given set, hard
 *  probabilities, no common sample, or nothing flagged with write_set (nothing written). */
int ldb_label_issues(ldb_txn *txn, const char *options_json, char **json);

/** Drops label set "SET", or one old version "SET@V" (as `labeldb labels drop --format json`);
 *  the transaction's clearance must see every row dropped. */
int ldb_drop_labels(ldb_txn *txn, const char *name, char **json);

/** Stores base head `name` (rows = d, columns = C floats, row-major), as `labeldb heads import`:
 *  options {"replace": bool, "secrecy": [..], "integrity": [..], "privilege": [..]}. */
int ldb_import_head(ldb_txn *txn, const char *name, const float *values, size_t rows, size_t columns,
                    const char *options_json);

#ifdef __cplusplus
}
#endif

#endif /* LABELDB_H */
