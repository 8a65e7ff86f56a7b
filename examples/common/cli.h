/* cli.h — command-line parsing shared by the example programs (zero-mlp, zero-gpt2).
 *
 * A program's parse loop walks argv itself and handles its value-less flags (--help, --quiet,
 * ...); for every other argument cli_split gives the flag name and its value, written either
 * "--flag value" or "--flag=value", and cli_parse_* convert the value. The messages of a bad
 * command line are cli_unknown_option and cli_bad_value; both return 2, the examples' exit
 * status for a bad command line. */
#ifndef ZERO_EXAMPLES_CLI_H
#define ZERO_EXAMPLES_CLI_H

#include <stddef.h>
#include <stdint.h>

/* A decimal int in [lo, hi], the whole of s. Returns 0 and sets *out, else -1 (*out untouched). */
int cli_parse_int(const char *s, int lo, int hi, int *out);

/* A uint64_t, the whole of s, in any base strtoull accepts with base 0 (decimal, 0x hex, 0
 * octal); no sign, no overflow. Returns 0 and sets *out, else -1 (*out untouched). */
int cli_parse_u64(const char *s, uint64_t *out);

/* A finite float >= lo, the whole of s. Returns 0 and sets *out, else -1 (*out untouched). */
int cli_parse_float(const char *s, float lo, float *out);

/* Splits argv[*i] into the flag name and its value. "--flag=value": name is the part before the
 * first '=', the value what follows it. Otherwise name is the whole argument and the value is the
 * next argument, consumed by advancing *i; NULL when argv[*i] is the last one. name (name_size
 * bytes, at least 1) receives the name, cut to name_size - 1 characters. Returns the value. */
const char *cli_split(int argc, char **argv, int *i, char *name, size_t name_size);

/* Prints "<prog>: unknown option '<arg>'" on stderr; returns 2. */
int cli_unknown_option(const char *prog, const char *arg);

/* Prints "<prog>: bad value '<val>' for <name>" on stderr, or "<prog>: <name> needs a value" when
 * val is NULL; returns 2. */
int cli_bad_value(const char *prog, const char *name, const char *val);

#endif
