/* zero-envdoc — prints docs/ENV.md, the reference of every ZERO_* variable, generated from the
 * table in runtime/config.c. Usage: zero-envdoc [OUTPUT.md]   (default: stdout) */
#include <stdio.h>
#include <string.h>

#include "runtime/config.h"

int main(int argc, char **argv) {
    if (argc > 2 || (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))) {
        fprintf(stderr, "usage: %s [OUTPUT.md]\n"
                        "Writes the ZERO_* environment reference (docs/ENV.md) to OUTPUT.md or "
                        "stdout.\n",
                argv[0]);
        return argc > 2 ? 2 : 0;
    }
    const char *path = argc == 2 ? argv[1] : NULL;
    FILE *f = path ? fopen(path, "w") : stdout;
    if (!f) {
        perror(path);
        return 1;
    }
    zr_config_write_markdown(f);
    int bad = ferror(f);
    if (path) bad |= fclose(f) != 0;
    else bad |= fflush(f) != 0;
    if (bad) {
        fprintf(stderr, "zero-envdoc: writing %s failed\n", path ? path : "stdout");
        return 1;
    }
    return 0;
}
