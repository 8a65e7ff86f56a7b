#!/usr/bin/env bash
# count_changes.sh — counts the lines the libzero port changed, by kind: the table of
# docs/PORTING.md. Usage: count_changes.sh [DIR]   (DIR holds train_plain.c and train_zero.c;
# default: this script's directory). VERBOSE=1 first lists every hunk and the kinds of its lines.
#
# How: `diff --minimal -U0 train_plain.c train_zero.c` cuts the port into hunks, each one
# contiguous change: lines removed from train_plain.c, then lines added in train_zero.c. Every
# change in train_zero.c carries a "libzero: [kind]" tag on one of its added lines.
#  - An added line counts for the kind of the last tag at or above it in its hunk (lines above
#    the hunk's first tag: that first tag).
#  - The removed lines of a hunk count for the hunk's first tag (the port is laid out so that a
#    hunk's removed lines are all of the kind its first tag names; VERBOSE=1 shows each hunk).
#  - Hunks in the file's opening comment (above the first #include) count as "header"; any other
#    hunk without a tag as "untagged" (there should be none).
#  - Comment-only lines (starting with /*, * or //) are also counted apart.
# The totals are those of `diff --minimal -U0 ... | grep -c '^[-+]'` less the two file lines.
set -euo pipefail
DIR=${1:-$(cd "$(dirname "$0")" && pwd)}
cd "$DIR"
first_include=$(grep -n -m1 '^#include' train_zero.c | cut -d: -f1)
{ diff --minimal -U0 train_plain.c train_zero.c || [ $? -eq 1 ]; } |
    awk -v first_include="$first_include" -v verbose="${VERBOSE:-0}" '
    function comment_only(s) { return s ~ /^[ \t]*(\/\*|\*|\/\/)/ }
    function flush(   i, k, first, cur) {
        if (np + nm == 0) return
        first = ""
        for (i = 1; i <= np && first == ""; i++) first = ptag[i]
        if (first == "") first = start < first_include ? "header" : "untagged"
        cur = first
        for (i = 1; i <= np; i++) {
            if (ptag[i] != "") cur = ptag[i]
            added[cur]++; if (comment_only(pl[i])) added_comment[cur]++
            seen[cur] = 1; hk[cur]++
        }
        removed[first] += nm; seen[first] = 1
        for (i = 1; i <= nm; i++) if (comment_only(ml[i])) removed_comment[first]++
        hunks++
        if (verbose) {
            printf "hunk %d (%s):", hunks, hdr
            for (k in hk) printf " %s +%d", k, hk[k]
            if (nm) printf " | %s -%d", first, nm
            printf "\n"
        }
        delete hk; np = 0; nm = 0
    }
    /^(---|\+\+\+) / { next }
    /^@@/ { flush(); hdr = $2 " " $3; split($3, a, ","); start = substr(a[1], 2) + 0; next }
    /^-/ { ml[++nm] = substr($0, 2); next }
    /^\+/ {
        s = substr($0, 2); pl[++np] = s; ptag[np] = ""
        if (match(s, /libzero: \[[a-z]+\]/)) ptag[np] = substr(s, RSTART + 10, RLENGTH - 11)
        next
    }
    END {
        flush()
        n = split("registration init gather grads step schedule eval data precision setup " \
                  "output header untagged", order, " ")
        printf "| kind | removed | added | added, comment-only | changed (removed + added) |\n"
        printf "|---|---:|---:|---:|---:|\n"
        for (i = 1; i <= n; i++) {
            k = order[i]; known[k] = 1
            if (!seen[k]) continue
            printf "| %s | %d | %d | %d | %d |\n", k, removed[k], added[k], added_comment[k],
                   removed[k] + added[k]
            tr += removed[k]; ta += added[k]; tc += added_comment[k]
        }
        for (k in seen) if (!(k in known)) {
            printf "| %s (unknown kind) | %d | %d | %d | %d |\n", k, removed[k], added[k],
                   added_comment[k], removed[k] + added[k]
            tr += removed[k]; ta += added[k]; tc += added_comment[k]
        }
        printf "| **all** | **%d** | **%d** | **%d** | **%d** |\n", tr, ta, tc, tr + ta
        printf "\n%d hunks (diff --minimal -U0)\n", hunks
    }'
