#!/usr/bin/env bash
# Fetch the datasets and CLIP weights into data/ (idempotent, resumable, never destroys complete data).
#
#   ./download_data.sh imagenet-16shot URL_OR_ARCHIVE [--sha256 HEX]   the course dataset (needs your
#                                                                     login: give a URL or a local file)
#   ./download_data.sh imagenet-v2 [URL_OR_ARCHIVE] [--sha256 HEX]     ImageNet-V2 matched-frequency
#   ./download_data.sh imagenet-a  [URL_OR_ARCHIVE] [--sha256 HEX]     ImageNet-A (200 classes)
#   ./download_data.sh imagenet-r  [URL_OR_ARCHIVE] [--sha256 HEX]     ImageNet-R (200 classes)
#   ./download_data.sh imagenet-sketch URL_OR_ARCHIVE [--sha256 HEX]   ImageNet-Sketch (see below)
#   ./download_data.sh weights NAME [PATH]                             CLIP weights by name (RN50, ...),
#                                                                     or copied from PATH (e.g. from OBS)
#   ./download_data.sh cupl [URL_OR_FILE] [--sha256 HEX]               CuPL's GPT-3 prompts for ImageNet
#                                                                     (data/cupl/, templates cupl+tip7)
#
# Downloads go to data/downloads/NAME.part and are resumed with HTTP ranges (a server without range
# support restarts them); a finished archive is checked (SHA-256 pinned for the public sets or given
# with --sha256, then the archive's own integrity), extracted into a temporary folder (every member
# must stay inside it; archives with links are refused), checked for the expected layout and only
# then renamed to data/NAME. A refused archive is moved to data/downloads/*.bad (the next run fetches
# it anew); one that needs more room than the disk has is kept. Every failure is one `error:` line.
# A folder that is already complete (data/NAME/.complete) is left alone.
# Environment: DATA_DIR (default: data), CLIP_CACHE (default: ~/.cache/clip).
set -euo pipefail

DATA_DIR=${DATA_DIR:-data}
CLIP_CACHE=${CLIP_CACHE:-$HOME/.cache/clip}
DL="$DATA_DIR/downloads"

declare -A URLS=(
  [imagenet-v2]="https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/imagenetv2-matched-frequency.tar.gz"
  [imagenet-a]="https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar"
  [imagenet-r]="https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar"
)
# Published SHA-256 of the default archives (TensorFlow Datasets' url_checksums for ImageNet-A/-R;
# the Hugging Face LFS pointer for ImageNet-V2). Used when the default URL is downloaded.
declare -A SHAS=(
  [imagenet-v2]="f0c37fdf925916b19ea1323cd9a2208cdb6959ba2c32eef2a7fc393835c9ca7c"
  [imagenet-a]="3bb3632277e6ba6392ea64c02ddbf4dd2266c9caffd6bc09c9656d28f012589e"
  [imagenet-r]="18c6bf493b39a0d975d48e587437f562caab9c52ae6327dcfa9dd8eb54aa1b52"
)
# CuPL's ImageNet prompts (Pratt et al., ICCV 2023) at a pinned commit of sarahpratt/CuPL; APE ships
# the same file (gpt3_prompts/CuPL_prompts_imagenet.json at 70460de). No SHA-256 is published: the
# file is checked against its git blob SHA-1 in the repository's tree, and its SHA-256 is then
# written beside it (data/cupl/CuPL_image_prompts.json.sha256).
CUPL_URL="https://raw.githubusercontent.com/sarahpratt/CuPL/719619c829792ff8f37298266e941b7f077c7f5c/imagenet_prompts/CuPL_image_prompts.json"
CUPL_BLOB="b5796c20e12c7448a9d78147fc9869b421d908d7"
declare -A TARGETS=(
  [imagenet-16shot]="ImageNet-1K-16shot" [imagenet-v2]="imagenet-v2" [imagenet-a]="imagenet-a"
  [imagenet-r]="imagenet-r" [imagenet-sketch]="imagenet-sketch"
)

EXTRACT_TMP=""  # global, so that the EXIT trap can clean it up under `set -u`
cleanup() { if [[ -n "${EXTRACT_TMP:-}" ]]; then rm -rf -- "$EXTRACT_TMP"; fi; }
trap cleanup EXIT

die() { echo "error: $*" >&2; exit 1; }
say() { echo "[download_data] $*"; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

fetch() {  # fetch URL_OR_FILE DEST: resumable download, or copy of a local file
  local src=$1 dest=$2
  mkdir -p "$(dirname "$dest")"
  if [[ -f "$src" ]]; then
    cp -- "$src" "$dest.part" && mv -- "$dest.part" "$dest"
    return
  fi
  [[ "$src" =~ ^https?:// ]] || die "$src is neither a local file nor an http(s) URL."
  say "downloading $src -> $dest (resumes if interrupted)"
  local rc=0
  curl -fL --retry 3 --retry-delay 2 -C - -o "$dest.part" "$src" || rc=$?
  if [[ $rc == 33 ]]; then  # the server cannot resume: start this file over
    say "the server does not support resuming; downloading $src from the start"
    rm -f -- "$dest.part"
    rc=0
    curl -fL --retry 3 --retry-delay 2 -o "$dest.part" "$src" || rc=$?
  fi
  if [[ $rc != 0 ]]; then
    die "download of $src stopped (curl error $rc); run the same command again to resume ($dest.part is kept)."
  fi
  mv -- "$dest.part" "$dest"
}

check_archive() {  # check_archive FILE: fails if the archive is truncated or corrupt
  local f=$1
  case "$f" in
    *.zip) python3 -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); bad = z.testzip(); sys.exit(1 if bad else 0)" "$f" ;;
    *) tar -tf "$f" >/dev/null ;;
  esac 2>/dev/null
}

extract() {  # extract FILE DIR: exit 1 (one line on stderr) if refused, 3 if the disk has no room
  python3 - "$1" "$2" <<'PY'
import errno, os, shutil, stat, sys, tarfile, zipfile, zlib
src, dest = sys.argv[1], os.path.realpath(sys.argv[2])
def outside(name):
    return not os.path.realpath(os.path.join(dest, name)).startswith(dest + os.sep)
def size(n):
    return f"{n / 2**30:,.1f} GB" if n >= 2**30 else f"{n / 2**20:,.1f} MB"
def room(total):
    free = shutil.disk_usage(dest).free
    if total > free:  # a zip bomb, or a disk too small: refused before a byte is written
        print(f"it unpacks to {size(total)} but only {size(free)} are free in {os.path.dirname(dest)}; free space or set "
              f"DATA_DIR to a bigger disk, then run the command again", file=sys.stderr)
        sys.exit(3)
try:
    if src.endswith(".zip"):
        with zipfile.ZipFile(src) as z:
            bad = [i.filename for i in z.infolist()
                   if outside(i.filename) or stat.S_ISLNK(i.external_attr >> 16)]
            if bad:
                sys.exit("the archive holds links or paths outside its folder (refused): " + ", ".join(bad[:5]))
            room(sum(i.file_size for i in z.infolist()))
            z.extractall(dest)
    else:
        with tarfile.open(src) as t:
            members = t.getmembers()
            bad = [m.name for m in members if outside(m.name) or not (m.isfile() or m.isdir())]
            if bad:
                sys.exit("the archive holds links, devices or paths outside its folder (refused): " + ", ".join(bad[:5]))
            room(sum(m.size for m in members))
            t.extractall(dest, members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
except OSError as err:
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        print(f"the disk or a file-size limit ran out while extracting ({err.strerror}); free space or "
              f"set DATA_DIR to a bigger disk, then run the command again", file=sys.stderr)
        sys.exit(3)
    member = os.path.relpath(err.filename, dest) if isinstance(err.filename, str) else "?"
    sys.exit(f"the archive cannot be extracted (refused): member {member}: {err.strerror or err}")
except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, ValueError) as err:
    sys.exit(f"the archive cannot be extracted (refused): {type(err).__name__}: {err}")
PY
}

refuse() {  # refuse ARCHIVE WHY: move the download aside (the next run fetches it anew) and stop
  mv -- "$1" "$1.bad"
  die "$1 $2 (moved to $1.bad, so that the next run downloads it anew); nothing in $DATA_DIR was changed."
}

check_layout() {  # check_layout NAME DIR: prints what is wrong, if the folder is not what NAME should be
  local name=$1 dir=$2
  case "$name" in
    imagenet-16shot)
      for p in train val classnames.txt; do [[ -e "$dir/$p" ]] || { echo "has no $p at its top level: is it ImageNet-1K-16shot?"; return; }; done ;;
    *) [[ -n "$(find "$dir" -mindepth 1 -maxdepth 1 -type d | head -n 1)" ]] || echo "holds no class folders." ;;
  esac
}

get_dataset() {
  local name=$1 src=${2:-} sha=${3:-}
  local target="$DATA_DIR/${TARGETS[$name]}"
  if [[ -f "$target/.complete" ]]; then say "$target is complete; nothing to do."; return; fi
  if [[ -d "$target" ]]; then
    die "$target exists but was not completed by this script. Check it with 'python -m fewshot check-data $target'; if it is good, run 'touch $target/.complete'; if not, move it away and run again."
  fi
  if [[ -z "$src" ]]; then
    src=${URLS[$name]:-}
    [[ -n "$sha" ]] || sha=${SHAS[$name]:-}  # the published checksum of the default archive
  fi
  [[ -n "$src" ]] || die "$name needs a URL or a local archive (its host needs your login or an agreement): ./download_data.sh $name URL_OR_ARCHIVE"
  local base; base=$(basename "${src%%\?*}")
  local archive="$DL/$name--$base"
  [[ -f "$archive" ]] || fetch "$src" "$archive"
  if [[ -n "$sha" ]] && [[ "$(sha256_of "$archive")" != "$sha" ]]; then
    mv -- "$archive" "$archive.bad"
    die "$archive does not have SHA-256 $sha (moved to $archive.bad). Download it again."
  fi
  if ! check_archive "$archive"; then
    mv -- "$archive" "$archive.bad"
    die "$archive is corrupt or truncated (moved to $archive.bad). Run the command again to download it anew; nothing in $DATA_DIR was changed."
  fi
  EXTRACT_TMP=$(mktemp -d "$DATA_DIR/.extract-$name.XXXXXX")
  local tmp=$EXTRACT_TMP
  say "extracting $archive"
  local why rc=0
  why=$(extract "$archive" "$tmp" 2>&1) || rc=$?
  if [[ $rc == 3 ]]; then die "$archive was not extracted: $why ($archive is kept; nothing in $DATA_DIR was changed)."; fi
  if [[ $rc != 0 ]]; then refuse "$archive" "was not extracted: ${why:-the extractor failed}"; fi
  local top="$tmp" only
  only=$(find "$tmp" -mindepth 1 -maxdepth 1)
  if [[ $(printf '%s\n' "$only" | wc -l) == 1 ]] && [[ -d "$only" ]] && [[ ! -L "$only" ]]; then
    top=$only  # archives usually wrap everything in one folder
  fi
  if [[ -n "$(find "$tmp" -type l | head -n 1)" ]]; then
    refuse "$archive" "holds symbolic links (refused: a dataset has none)"
  fi
  why=$(check_layout "$name" "$top")
  [[ -z "$why" ]] || refuse "$archive" "$why"
  touch "$top/.complete"
  mv -- "$top" "$target"
  rm -rf -- "$tmp"
  EXTRACT_TMP=""
  say "$target is ready."
}

clip_url() {  # OpenAI's URL for a model name, from the installed clip package (the one registry)
  local py=${PYTHON:-.venv/bin/python}
  [[ -x "$py" ]] || py=python3
  "$py" -c 'import sys, fewshot, clip; m = clip.clip._MODELS; print(m[sys.argv[1]]) if sys.argv[1] in m else sys.exit("unknown CLIP model " + sys.argv[1] + "; known: " + ", ".join(m))' "$1" \
    || die "could not look up CLIP model $1 (see above; if the suite is not installed yet, run make install)."
}

get_weights() {
  local name=$1 src=${2:-}
  local url; url=$(clip_url "$name")
  local sha; sha=$(basename "$(dirname "$url")")
  local dest; dest="$CLIP_CACHE/$(basename "$url")"
  if [[ -f "$dest" ]] && [[ "$(sha256_of "$dest")" == "$sha" ]]; then say "$dest is complete; nothing to do."; return; fi
  fetch "${src:-$url}" "$dest.new"
  if [[ "$(sha256_of "$dest.new")" != "$sha" ]]; then
    rm -f -- "$dest.new"
    die "the file for $name does not have SHA-256 $sha; it is incomplete or another model."
  fi
  mv -- "$dest.new" "$dest"
  say "$dest is ready (SHA-256 verified)."
}

check_cupl() {  # check_cupl FILE BLOB_SHA1_OR_EMPTY: the JSON layout {class: [prompt, ...]} (and the blob)
  python3 - "$1" "$2" <<'PY'
import hashlib, json, sys
data = open(sys.argv[1], "rb").read()
if sys.argv[2] and hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() != sys.argv[2]:
    sys.exit(f"{sys.argv[1]} is not the published CuPL file (git blob SHA-1 {sys.argv[2]} expected)")
try:
    prompts = json.loads(data)
except ValueError as err:
    sys.exit(f"{sys.argv[1]} is not JSON ({err})")
if not isinstance(prompts, dict) or not prompts or not all(
        isinstance(v, list) and v and all(isinstance(t, str) for t in v) for v in prompts.values()):
    sys.exit(f"{sys.argv[1]} is not an object of class name -> [prompt, ...]")
PY
}

get_cupl() {
  local src=${1:-$CUPL_URL} sha=${2:-}
  local dest="$DATA_DIR/cupl/CuPL_image_prompts.json" part="$DL/cupl--CuPL_image_prompts.json"
  if [[ -f "$dest" ]]; then say "$dest is present; nothing to do."; return; fi
  [[ -f "$part" ]] || fetch "$src" "$part"
  if [[ -n "$sha" ]] && [[ "$(sha256_of "$part")" != "$sha" ]]; then
    mv -- "$part" "$part.bad"
    die "$part does not have SHA-256 $sha (moved to $part.bad). Download it again."
  fi
  local blob=$CUPL_BLOB; [[ -z "$sha" ]] || blob=""  # a given --sha256 replaces the blob check
  if ! check_cupl "$part" "$blob" 2>"$part.why"; then
    local why; why=$(tail -n 1 "$part.why"); rm -f -- "$part.why"; mv -- "$part" "$part.bad"
    die "${why#*: } (moved to $part.bad); run ./download_data.sh cupl again."
  fi
  rm -f -- "$part.why"
  mkdir -p "$(dirname "$dest")"
  sha256_of "$part" > "$dest.sha256"
  mv -- "$part" "$dest"
  say "$dest is ready (SHA-256 $(cat "$dest.sha256"))."
}

main() {
  [[ $# -ge 1 ]] || { sed -n '2,20p' "$0"; exit 2; }
  local what=$1; shift
  local sha="" args=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --sha256)
        [[ $# -ge 2 ]] || die "--sha256 needs a value: the archive's 64-hex-digit SHA-256."
        [[ "$2" =~ ^[0-9a-fA-F]{64}$ ]] || die "--sha256 expects 64 hex digits, got '$2'."
        sha=${2,,}; shift 2 ;;
      -*) die "unknown option $1; the only option is --sha256 HEX." ;;
      *) args+=("$1"); shift ;;
    esac
  done
  mkdir -p "$DATA_DIR" "$DL"
  case "$what" in
    weights) get_weights "${args[0]:-RN50}" "${args[1]:-}" ;;
    cupl)
      [[ ${#args[@]} -le 1 ]] || die "cupl takes one URL or file, got: ${args[*]}"
      get_cupl "${args[0]:-}" "$sha" ;;
    imagenet-16shot|imagenet-v2|imagenet-a|imagenet-r|imagenet-sketch)
      [[ ${#args[@]} -le 1 ]] || die "$what takes one URL or archive, got: ${args[*]}"
      get_dataset "$what" "${args[0]:-}" "$sha" ;;
    *) die "unknown item $what; use imagenet-16shot, imagenet-v2, imagenet-a, imagenet-r, imagenet-sketch, cupl or weights" ;;
  esac
}

main "$@"
