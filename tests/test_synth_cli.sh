#!/bin/sh
# albef-synth as a program: options, exit codes, what a run writes, and
# byte-identical output for a given seed. Prints TAP. Run from the repository
# root; the program is "$ALBEF_BUILD/bin/albef-synth" (ALBEF_BUILD defaults to build).
set -u
. tests/tap.sh

bin="${ALBEF_BUILD:-build}/bin/albef-synth"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ ! -x "$bin" ]; then
    echo "not ok 1 - $bin is built"
    echo "1..1"
    exit 1
fi
py=$(command -v python3 || true)

# Every manifest a run writes.
manifests="pretrain.json retrieval_train.json retrieval_val.json retrieval_test.json
vqa_train.json vqa_val.json vqa_test.json vqa_test_answers.json vg_qa.json answer_list.json
nlvr_train.json nlvr_dev.json nlvr_test.json ve_train.json ve_dev.json ve_test.json scenes.json"

json_valid() {
    if [ -n "$py" ]; then
        "$py" -c 'import json, sys; json.load(open(sys.argv[1]))' "$1" 2>/dev/null
    else
        head -c 1 "$1" | grep -q '[[{]' && tail -c 2 "$1" | grep -q '[]}]'
    fi
}

# ---- options and exit codes ----

"$bin" --help >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 0 ] && grep -q '^Usage: albef-synth' "$tmp/out" && grep -q -- '--seed' "$tmp/out" && [ ! -s "$tmp/err" ]
tap_ok $? "--help: usage on stdout, nothing on stderr, exit 0"

"$bin" -h >"$tmp/out" 2>"$tmp/err"
[ $? -eq 0 ] && grep -q '^Usage: albef-synth' "$tmp/out"
tap_ok $? "-h: same as --help"

"$bin" --version >"$tmp/out" 2>"$tmp/err"
[ $? -eq 0 ] && grep -Eq '^albef-synth [0-9]+\.[0-9]+\.[0-9]+$' "$tmp/out" && [ ! -s "$tmp/err" ]
tap_ok $? "--version: 'albef-synth X.Y.Z' on stdout, exit 0"

usage_error() { # NAME EXPECTED-STDERR ARGS...
    name=$1 want=$2
    shift 2
    (cd "$tmp" && "$OLDPWD/$bin" "$@") >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ $rc -eq 2 ] && [ ! -s "$tmp/out" ] && grep -q "^albef-synth: .*$want" "$tmp/err"
    status=$?
    [ $status -ne 0 ] && tap_diag "exit $rc, stderr: $(cat "$tmp/err")"
    tap_ok $status "$name: exit 2, message on stderr"
}
usage_error "unknown option" "--bogus: unknown option" --bogus
usage_error "unknown short option" "-x: unknown option" -x
usage_error "missing argument" "--out: missing argument" --out
usage_error "size out of range" "--size: expected an integer in 32..512, got '20'" --size 20
usage_error "size not a number" "--size: .*got '64px'" --size 64px
usage_error "negative image count" "--images: .*got '-5'" --images -5
usage_error "unknown format" "--format: expected png or jpeg, got 'gif'" --format gif
usage_error "quality out of range" "--quality: .*got '0'" --quality 0
usage_error "seed too large" "--seed: " --seed 18446744073709551616
usage_error "threads out of range" "--threads: expected an integer in 1..64, got '0'" --threads 0
usage_error "stray argument" "unexpected argument 'extra'" extra
[ ! -e "$tmp/synth" ]
tap_ok $? "usage errors write nothing (no default output folder)"

echo x >"$tmp/file"
"$bin" --quiet --out "$tmp/file/sub" --images 2 --val 0 --test 0 >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] && [ ! -s "$tmp/out" ] && grep -q "^albef-synth: .*$tmp/file" "$tmp/err"
status=$?
[ $status -ne 0 ] && tap_diag "exit $rc, stderr: $(cat "$tmp/err")"
tap_ok $status "unwritable --out: exit 1, the library's message naming the path"

# ---- a small run ----

"$bin" --out "$tmp/a" --seed 5 --images 20 --val 6 --test 7 --quiet >"$tmp/summary" 2>"$tmp/err"
rc=$?
[ $rc -eq 0 ] && [ ! -s "$tmp/err" ] && [ "$(wc -l <"$tmp/summary")" -eq 1 ] && json_valid "$tmp/summary"
tap_ok $? "a small run exits 0, --quiet keeps stderr empty, one JSON line on stdout"

missing=""
for m in $manifests; do
    json_valid "$tmp/a/$m" || missing="$missing $m"
done
[ -z "$missing" ]
status=$?
[ $status -ne 0 ] && tap_diag "missing or invalid:$missing"
tap_ok $status "every manifest is written and is valid JSON"

[ -s "$tmp/a/vocab.txt" ] && [ "$(sed -n 1p "$tmp/a/vocab.txt")" = "[PAD]" ] &&
    grep -qx '\[UNK\]' "$tmp/a/vocab.txt" && grep -qx '\[CLS\]' "$tmp/a/vocab.txt" &&
    grep -qx '\[SEP\]' "$tmp/a/vocab.txt" && grep -qx '\[MASK\]' "$tmp/a/vocab.txt" &&
    grep -qx '##q' "$tmp/a/vocab.txt" && grep -qx 'triangle' "$tmp/a/vocab.txt"
tap_ok $? "vocab.txt: BERT special tokens, words and ## pieces"

n_png=$(ls "$tmp/a/images/train" | grep -c '\.png$')
n_jpg=$(ls "$tmp/a/images/train" | grep -c '\.jpg$')
n_val=$(ls "$tmp/a/images/val" | grep -c '\.png$')
n_test=$(ls "$tmp/a/images/test" | grep -c '\.png$')
[ "$n_png" -eq 20 ] && [ "$n_jpg" -eq 20 ] && [ "$n_val" -eq 6 ] && [ "$n_test" -eq 7 ]
status=$?
[ $status -ne 0 ] && tap_diag "train png $n_png jpg $n_jpg, val $n_val, test $n_test"
tap_ok $status "image files: one PNG per image, plus the JPEG SNLI-VE reads"

if [ -n "$py" ]; then
    "$py" - "$tmp/a" "$tmp/summary" <<'PY'
import json, os, sys
d, summary = sys.argv[1], json.load(open(sys.argv[2]))
for name, n in summary["manifests"].items():
    data = json.load(open(os.path.join(d, name)))
    if name == "scenes.json":
        data = [s for split in data["splits"].values() for s in split]
    assert len(data) == n, (name, len(data), n)
assert summary["images"] == {"train": 20, "val": 6, "test": 7}, summary["images"]
root = os.path.join(d, "images")
pre = json.load(open(os.path.join(d, "pretrain.json")))
assert all(os.path.isabs(x["image"]) and os.path.exists(x["image"]) for x in pre)
assert all(isinstance(x["caption"], (str, list)) for x in pre)
for x in json.load(open(os.path.join(d, "retrieval_train.json"))):
    assert set(x) == {"image", "caption", "image_id"} and isinstance(x["caption"], str)
    assert os.path.exists(os.path.join(root, x["image"]))
for x in json.load(open(os.path.join(d, "retrieval_test.json"))):
    assert set(x) == {"image", "caption"} and isinstance(x["caption"], list) and len(x["caption"]) == 5
for x in json.load(open(os.path.join(d, "vqa_train.json"))):
    assert x["dataset"] == "vqa" and len(x["answer"]) == 10 and isinstance(x["question_id"], int)
for x in json.load(open(os.path.join(d, "vg_qa.json"))):
    assert x["dataset"] == "vg" and isinstance(x["answer"], str)
for x in json.load(open(os.path.join(d, "vqa_test.json"))):
    assert set(x) == {"question_id", "question", "image", "dataset"}
for x in json.load(open(os.path.join(d, "nlvr_dev.json"))):
    assert x["label"] in ("True", "False") and len(x["images"]) == 2
for x in json.load(open(os.path.join(d, "ve_test.json"))):
    assert x["label"] in ("entailment", "neutral", "contradiction")
    assert os.path.exists(os.path.join(root, x["image"] + ".jpg")), x["image"]
answers = set(json.load(open(os.path.join(d, "answer_list.json"))))
for x in json.load(open(os.path.join(d, "vqa_test_answers.json"))):
    assert x["answer"] in answers
PY
    tap_ok $? "manifests have ALBEF's fields and types; the summary counts match the files"
else
    tap_skip "manifests have ALBEF's fields and types" "no python3"
fi

# ---- determinism ----

"$bin" --out "$tmp/b" --seed 5 --images 20 --val 6 --test 7 --threads 1 --quiet >/dev/null 2>&1
differ=""
for f in $(cd "$tmp/a" && find . -type f | sort); do
    case "$f" in
    ./pretrain.json)
        # Absolute paths name each run's folder; the rest must match.
        sed "s|$tmp/a/|DIR/|g" "$tmp/a/$f" >"$tmp/pa"
        sed "s|$tmp/b/|DIR/|g" "$tmp/b/$f" >"$tmp/pb"
        cmp -s "$tmp/pa" "$tmp/pb" || differ="$differ $f"
        ;;
    *) cmp -s "$tmp/a/$f" "$tmp/b/$f" || differ="$differ $f" ;;
    esac
done
[ -z "$differ" ] && [ "$(cd "$tmp/a" && find . -type f | wc -l)" -eq "$(cd "$tmp/b" && find . -type f | wc -l)" ]
status=$?
[ $status -ne 0 ] && tap_diag "differ:$differ"
tap_ok $status "the same seed writes identical files (8 writer threads or 1)"

"$bin" --out "$tmp/c" --seed 6 --images 20 --val 6 --test 7 --quiet >/dev/null 2>&1
! cmp -s "$tmp/a/images/train/000000.png" "$tmp/c/images/train/000000.png" &&
    ! cmp -s "$tmp/a/vqa_train.json" "$tmp/c/vqa_train.json"
tap_ok $? "another seed writes other images and texts"

"$bin" --out "$tmp/a" --seed 5 --images 20 --val 6 --test 7 --quiet >/dev/null 2>&1
[ -z "$(find "$tmp/a" -name '*.tmp.*')" ] && cmp -s "$tmp/a/vqa_train.json" "$tmp/b/vqa_train.json"
tap_ok $? "writing over an earlier run leaves the same files and no temporary files"

# ---- JPEG ----

"$bin" --out "$tmp/j" --format jpeg --quality 80 --size 32 --images 5 --val 2 --test 2 --quiet >"$tmp/summary" 2>&1
[ $? -eq 0 ] && [ "$(ls "$tmp/j/images/train" | grep -c '\.jpg$')" -eq 5 ] &&
    [ "$(ls "$tmp/j/images/train" | grep -c '\.png$')" -eq 0 ] &&
    grep -q '"format":"jpeg"' "$tmp/summary" && grep -q '"train/000000.jpg"' "$tmp/j/retrieval_train.json"
tap_ok $? "--format jpeg writes JPEG images only and names them in the manifests"

# ---- progress and logs go to stderr ----

"$bin" --out "$tmp/l" --images 3 --val 1 --test 1 >"$tmp/out" 2>"$tmp/err"
[ $? -eq 0 ] && [ "$(wc -l <"$tmp/out")" -eq 1 ] && [ -s "$tmp/err" ]
tap_ok $? "without --quiet the log goes to stderr and stdout keeps the one summary line"

# ---- the man page ----

if command -v man >/dev/null 2>&1; then
    out=$(MANWIDTH=80 man -l man/man1/albef-synth.1 2>"$tmp/err")
    [ $? -eq 0 ] && [ ! -s "$tmp/err" ] && echo "$out" | grep -q 'EXIT STATUS' && echo "$out" | grep -q 'EXAMPLES'
    tap_ok $? "the man page renders without warnings"
else
    tap_skip "the man page renders" "man is not installed"
fi

tap_end
