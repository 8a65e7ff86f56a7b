/* config.h — the one declarative table of ZERO_* settings: name, type, allowed values,
 * default, description and where the value goes. Parsing, validation, logging of applied
 * values, warnings for unknown ZERO_* names, and docs/ENV.md are all driven by the table. */
#ifndef ZERO_CONFIG_H
#define ZERO_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/error.h"
#include "zero.h"

/* Everything a context is configured by: the public zero_config plus settings that only the
 * environment sets (logging). */
typedef struct zr_settings {
    zero_config cfg;
    int log_level;          /* ZERO_DEBUG: enum zr_log_level; default WARN */
    unsigned log_mask;      /* ZERO_DEBUG_SUBSYS: enum zr_log_subsys bits; default ALL */
    char log_file[512];     /* ZERO_DEBUG_FILE: "" = stderr */
    char debug_dir[512];    /* ZERO_DEBUG_DIR: flight-recorder dumps; "" = the log only */
    char report_path[512];  /* ZERO_REPORT, or cfg.report_path copied; "" = none */
    int ckpt_keep;          /* ZERO_CKPT_KEEP: checkpoints zero_save keeps; 0 = all */
    int ckpt_io;            /* ZERO_CKPT_IO: enum zr_data_io, how zero_load reads shards */
    int data_prefetch;      /* ZERO_DATA_PREFETCH: batches a data loader prepares ahead */
    int data_verify;        /* ZERO_DATA_VERIFY: enum zr_data_verify */
    int data_io;            /* ZERO_DATA_IO: enum zr_data_io */
    float data_delay_ms;    /* ZERO_DATA_DELAY_MS: artificial delay per batch (benchmarks) */
} zr_settings;

/* ZERO_DATA_VERIFY and ZERO_DATA_IO (also ZERO_CKPT_IO) values. */
enum zr_data_verify { ZR_DATA_VERIFY_AUTO = -1, ZR_DATA_VERIFY_OFF = 0, ZR_DATA_VERIFY_ON = 1 };
enum zr_data_io { ZR_DATA_IO_MMAP = 0, ZR_DATA_IO_PREAD = 1 };

/* One value that came from the environment, for the INFO log after logging is set up. */
typedef struct zr_applied {
    const char *name;
    char value[128];
    char program[64]; /* the program's own value when it had changed the default, else "" */
} zr_applied;

#define ZR_MAX_APPLIED 64
#define ZR_MAX_WARNINGS 16

typedef struct zr_resolve_result {
    int num_applied;
    zr_applied applied[ZR_MAX_APPLIED];
    int num_warnings;               /* unknown ZERO_* names */
    char warnings[ZR_MAX_WARNINGS][256];
} zr_resolve_result;

/* Fills out->cfg from `program` (NULL = ZERO_CONFIG_INIT) and then every ZERO_* variable found
 * by `get` (NULL = getenv), validating each value against the table and the program's own fields.
 * `environ_names`, if not NULL, is a NULL-terminated list of "NAME=value" strings scanned for
 * unknown ZERO_* names (each becomes a warning naming the nearest known variable).
 * Returns ZERO_OK or ZERO_ERR_INVALID with e (may be NULL) naming the variable (or field), the
 * value and what is allowed, e.g.
 *   "ZERO_STAGE=7 is not allowed: expected one of 0 1 2 3". */
zero_status zr_config_resolve(zr_settings *out, const zero_config *program,
                              const char *(*get)(const char *name), char *const *environ_names,
                              zr_resolve_result *result, zr_error *e);

/* The program's configuration over the defaults: checks magic and version, and copies the
 * struct_size bytes the program knows (a larger struct from a newer header is accepted when the
 * fields this libzero does not know are zero). ZERO_ERR_INVALID (not initialised, too old) or
 * ZERO_ERR_UNSUPPORTED (newer fields set) with e naming the problem. program NULL = defaults. */
zero_status zr_config_from_program(zero_config *out, const zero_config *program, zr_error *e);

/* Parses a size: digits with an optional fraction and suffix K M G T (powers of 1024; "KB",
 * "KiB", "MiB", "GB"... accepted, case-insensitive). A bare number is multiplied by
 * default_unit. Returns 0 or -1 (negative, empty, junk, overflow). */
int zr_parse_size(const char *text, uint64_t default_unit, uint64_t *bytes);

/* Writes docs/ENV.md (Markdown) generated from the table. */
void zr_config_write_markdown(FILE *f);

/* Values of the config fields that must agree across ranks, as 64-bit words (for the
 * cross-rank check); returns how many were written (<= max), their names through names[] and
 * through kinds[] how each is shown (zr_config_word_text); names and kinds may be NULL. */
int zr_config_fingerprint(const zr_settings *s, int64_t *words, const char **names, int *kinds,
                          int max);

/* How a fingerprint word is shown: ZR_WORD_INT, a plain integer (words that are not settings,
 * e.g. a tensor count); or, as zr_config_fingerprint writes into kinds[], the setting whose value
 * the word holds, shown as that setting is written (0.001 for ZERO_LR, not its float bits; bf16;
 * dynamic; a size in bytes). */
enum { ZR_WORD_INT = -1 };

/* Word w of kind `kind` as text into buf (n bytes, always terminated). */
void zr_config_word_text(int kind, int64_t w, char *buf, size_t n);

/* Writes the resolved configuration as a JSON object (no trailing newline). */
void zr_config_write_json(const zr_settings *s, FILE *f);

/* The i-th variable of the table (0-based): its name, default text ("" = unset) and what is
 * allowed; any out-pointer may be NULL. Returns 0, or -1 when i is past the end. For tools
 * (zero-info) and tests. */
int zr_config_var(int i, const char **name, const char **default_text, const char **allowed);

/* Names for enums. */
const char *zr_dtype_name(zero_dtype d);
const char *zr_device_name(zero_device_kind d);
const char *zr_offload_name(zero_offload o);

#endif
