#!/usr/bin/env bash
# zero-tokens on a small text (ctest tokens_tool): usage tokens_tool.sh ZERO_TOKENS DIR. Exit 0 =
# pass; every assertion says what it compared. Only od, stat and shell arithmetic read the files.
#   - TEXT OUT.bin: header words (magic 20240520, version 1, count = the text's bytes), size,
#     tokens equal to the text's bytes; --info prints the count, the magic and the kind
#   - --width 32: version 2, 4-byte tokens; --shards 3: three files of nearly equal counts that
#     sum to the text's length and hold the text in order; --val 0.25: the last quarter apart
#   - a *.bin without the magic, a truncated file, a file longer than its count, an unknown
#     version: --info exits 1 naming the file; bad options exit 2 naming the option; a missing or
#     empty input exits 1 naming it; no failed run leaves a file behind
set -uo pipefail
TOOL=${1:?zero-tokens}
dir=${2:?directory}
rm -rf "${dir:?}"
mkdir -p "$dir"

fail() { echo "FAIL: $*"; exit 1; }

# expect RC LOG ARGS...: zero-tokens ARGS (output to $dir/LOG) must exit RC
expect() {
    local want=$1 log=$dir/$2; shift 2
    "$TOOL" "$@" > "$log" 2>&1
    local rc=$?
    [ $rc -eq "$want" ] || { cat "$log"; fail "zero-tokens $* exited $rc, expected $want"; }
}

# has LOG PATTERN: the log holds PATTERN (grep -E)
has() {
    grep -Eq -- "$2" "$dir/$1" || { cat "$dir/$1"; fail "$1 lacks '$2'"; }
}

# header FILE: the first four header words, as "magic version count word3"
header() {
    od -An -td4 -N16 "$1" | tr -s ' ' ' ' | sed 's/^ //; s/ $//'
}

# tokens FILE WIDTH: the tokens after the header, one decimal a line
tokens() {
    od -An -tu"$2" -v -j1024 "$1" | tr -s ' ' '\n' | grep -v '^$'
}

# bytes FILE: the file's bytes, one decimal a line
bytes() {
    od -An -tu1 -v "$1" | tr -s ' ' '\n' | grep -v '^$'
}

text=$dir/text.txt
# printable, a tab, newlines, a non-ASCII letter (two bytes) and a byte above 127
printf 'The quick brown fox jumps over the lazy dog.\n\tzero-tokens: caf\303\251 \377 end\n' \
    > "$text"
len=$(stat -c %s "$text")
[ "$len" -eq 71 ] || fail "the text is $len bytes, expected 71"
bytes "$text" > "$dir/text.u1"

# ---- TEXT OUT.bin ----
expect 0 plain.log "$text" "$dir/out.bin"
has plain.log "$len tokens.*out\.bin, $((1024 + 2 * len)) bytes"
[ "$(header "$dir/out.bin")" = "20240520 1 $len 0" ] ||
    fail "out.bin header words: '$(header "$dir/out.bin")', expected '20240520 1 $len 0'"
size=$(stat -c %s "$dir/out.bin")
[ "$size" -eq $((1024 + 2 * len)) ] || fail "out.bin is $size bytes, expected $((1024 + 2 * len))"
[ "$(od -An -td4 -v -j16 -N1008 "$dir/out.bin" | tr -d ' 0\n')" = "" ] ||
    fail "out.bin: header words 4..255 are not all 0"
tokens "$dir/out.bin" 2 > "$dir/out.u2"
cmp -s "$dir/text.u1" "$dir/out.u2" || fail "out.bin's uint16 tokens differ from the text's bytes"
echo "ok: TEXT OUT.bin: header 20240520 1 $len, $size bytes, tokens == the text's bytes"

expect 0 info.log --info "$dir/out.bin"
has info.log "^magic: +20240520$"
has info.log "^version: +1$"
has info.log "^tokens: +$len$"
has info.log "^kind: +token file, uint16 tokens"
has info.log "^bytes per token: +2$"
has info.log "^min token: +9$"      # the tab
has info.log "^max token: +255$"
# ' ' is the most frequent byte (11 times), then 'e' and 'o' (6 times each, smaller token first)
has info.log "^ +11 +32  ' '$"
has info.log "^ +6 +101  'e'$"
top=$(sed -n '/^most frequent: *10 of 36 /,$p' "$dir/info.log" | sed -n '2,4p' |
    awk '{printf "%s:%s ", $1, $2}')
want="11:32 6:101 6:111 "
[ "$top" = "$want" ] || { cat "$dir/info.log"; fail "--info: top 3 '$top', expected '$want'"; }
expect 0 info_text.log --info "$text"
has info_text.log "not a token file: read as bytes by zero_data \\($len tokens\\)"
echo "ok: --info: magic, version, count, kind, min/max, most frequent; a text file is bytes"

# ---- --width 32 ----
expect 0 w32.log --width 32 "$text" "$dir/w32.bin"
[ "$(header "$dir/w32.bin")" = "20240520 2 $len 0" ] ||
    fail "w32.bin header words: '$(header "$dir/w32.bin")', expected '20240520 2 $len 0'"
size=$(stat -c %s "$dir/w32.bin")
[ "$size" -eq $((1024 + 4 * len)) ] || fail "w32.bin is $size bytes, expected $((1024 + 4 * len))"
tokens "$dir/w32.bin" 4 > "$dir/w32.u4"
cmp -s "$dir/text.u1" "$dir/w32.u4" || fail "w32.bin's uint32 tokens differ from the text's bytes"
expect 0 info_w32.log --info "$dir/w32.bin"
has info_w32.log "^kind: +token file, uint32 tokens"
has info_w32.log "^version: +2$"
echo "ok: --width 32: version 2, $size bytes, 4-byte tokens == the text's bytes"

# ---- --shards 3 ----
expect 0 shards.log --shards 3 "$text" "$dir/sh.bin"
[ ! -e "$dir/sh.bin" ] || fail "--shards 3 also wrote sh.bin itself"
[ ! -e "$dir/sh_000003.bin" ] || fail "--shards 3 wrote a fourth shard"
sum=0
: > "$dir/shards.u2"
for i in 0 1 2; do
    f=$dir/sh_00000$i.bin
    [ -f "$f" ] || fail "--shards 3: no $f"
    read -r m v c _ <<< "$(header "$f")"
    [ "$m $v" = "20240520 1" ] || fail "$f: magic $m version $v"
    if [ "$c" -lt $((len / 3)) ] || [ "$c" -gt $((len / 3 + 1)) ]; then
        fail "$f holds $c tokens: not a third of $len"
    fi
    [ "$(stat -c %s "$f")" -eq $((1024 + 2 * c)) ] || fail "$f: size disagrees with its count $c"
    tokens "$f" 2 >> "$dir/shards.u2"
    sum=$((sum + c))
done
[ "$sum" -eq "$len" ] || fail "--shards 3: the counts sum to $sum, the text has $len bytes"
cmp -s "$dir/text.u1" "$dir/shards.u2" || fail "--shards 3: the shards' tokens differ from the text"
echo "ok: --shards 3: counts sum to $len, the shards hold the text in order"

# ---- --val 0.25 ----
nval=$(((len * 25 + 50) / 100)) # the nearest whole token: 0.25 x 71 = 17.75 -> 18
expect 0 val.log --val 0.25 --val-out "$dir/val.bin" "$text" "$dir/train.bin"
read -r m v ctrain _ <<< "$(header "$dir/train.bin")"
read -r m2 v2 cval _ <<< "$(header "$dir/val.bin")"
[ "$m $v $m2 $v2" = "20240520 1 20240520 1" ] || fail "--val: headers $m $v and $m2 $v2"
[ "$cval" -eq "$nval" ] || fail "--val 0.25: val.bin holds $cval tokens, expected $nval"
[ "$((ctrain + cval))" -eq "$len" ] || fail "--val: $ctrain + $cval tokens, the text has $len"
{ tokens "$dir/train.bin" 2; tokens "$dir/val.bin" 2; } > "$dir/split.u2"
cmp -s "$dir/text.u1" "$dir/split.u2" || fail "--val: train then val differ from the text"
tail -c "$nval" "$text" > "$dir/last.txt"
bytes "$dir/last.txt" > "$dir/last.u1"
tokens "$dir/val.bin" 2 > "$dir/val.u2"
cmp -s "$dir/last.u1" "$dir/val.u2" || fail "--val: val.bin is not the text's last $nval bytes"
echo "ok: --val 0.25: $ctrain train + $cval val tokens, val.bin = the last $nval bytes"

# ---- bad token files: --info exits 1 naming the file ----
cp "$text" "$dir/x.bin"
expect 1 bad_magic.log --info "$dir/x.bin"
has bad_magic.log "x\.bin.*not a token file"
head -c $((1024 + 2 * len - 2)) "$dir/out.bin" > "$dir/short.bin"
expect 1 truncated.log --info "$dir/short.bin"
has truncated.log "short\.bin.*truncated"
{ cat "$dir/out.bin"; printf 'xy'; } > "$dir/long.bin"
expect 1 long.log --info "$dir/long.bin"
has long.log "long\.bin.*disagrees with the file size"
cp "$dir/out.bin" "$dir/v9.bin"
printf '\011' | dd of="$dir/v9.bin" bs=1 seek=4 conv=notrunc status=none
expect 1 version.log --info "$dir/v9.bin"
has version.log "v9\.bin.*version 9 is not known"
expect 1 missing_info.log --info "$dir/nothing.bin"
has missing_info.log "nothing\.bin"
echo "ok: --info on a bad magic, a truncated and a long file, version 9, a missing file: exit 1"

# ---- bad command lines: exit 2 naming the option ----
expect 2 bad_width.log --width 8 "$text" "$dir/b.bin"
has bad_width.log "--width.*'8'.*16.*32"
expect 2 bad_shards.log --shards 0 "$text" "$dir/b.bin"
has bad_shards.log "--shards.*'0'"
expect 2 bad_shards2.log --shards 2x "$text" "$dir/b.bin"
has bad_shards2.log "--shards.*'2x'"
expect 2 bad_val.log --val 1.5 --val-out "$dir/v.bin" "$text" "$dir/b.bin"
has bad_val.log "--val.*'1\.5'"
expect 2 val_alone.log --val 0.5 "$text" "$dir/b.bin"
has val_alone.log "--val-out"
expect 2 bad_opt.log --bogus "$text" "$dir/b.bin"
has bad_opt.log "unknown option --bogus"
expect 2 no_value.log --width
has no_value.log "--width needs a value"
expect 2 one_arg.log "$text"
expect 2 late_opt.log "$text" "$dir/b.bin" --width 32
has late_opt.log "--width after the arguments"
expect 0 help.log --help
has help.log "^usage: zero-tokens"
echo "ok: bad options exit 2 naming the option; --help exits 0"

# ---- inputs that cannot be read: exit 1 naming them, nothing written ----
expect 1 missing.log "$dir/absent.txt" "$dir/b.bin"
has missing.log "absent\.txt"
: > "$dir/empty.txt"
expect 1 empty.log "$dir/empty.txt" "$dir/b.bin"
has empty.log "empty\.txt.*empty"
printf 'abc' > "$dir/abc.txt"
expect 1 too_many.log --shards 5 "$dir/abc.txt" "$dir/b.bin"
has too_many.log "--shards 5"
for f in b.bin b_000000.bin; do
    [ ! -e "$dir/$f" ] || fail "a failed run left $f behind"
done
left=$(find "$dir" -name '*.tmp' | head -3)
[ -z "$left" ] || fail "temporary files left behind: $left"
echo "ok: a missing, an empty, a too-short input: exit 1 naming it, no file or temporary left"

echo "tokens_tool: PASS"
