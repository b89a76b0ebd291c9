#!/usr/bin/env bash
# Make .gpu/ (ignored by git): what loadtests/bench_gpu.sh needs on a GPU machine that has PyTorch but no Java
# and no TorchServe, small enough to travel with the repository (the device tool sends at most 64 MiB in all,
# and the tracked checkpoint model_store/art-category.pt is 30 MB of that).
#   1. ../shared/tools/gpu-carry.sh: a jlink'ed Java 17 (.gpu/jre17.txz, 17.4 MB) and the TorchServe and
#      model-archiver wheels (.gpu/whl, 42.2 MB: too much beside the repository);
#   2. captum, which TorchServe's stock image_classifier imports (0.5 MB);
#   3. the TorchServe wheel's frontend jar (45.9 MB) re-packed as a solid xz archive of its classes without the
#      native libraries of other platforms (.gpu/ts-frontend.txz), the wheel left without it; bench_gpu.sh
#      rebuilds the jar there.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -f .gpu/jre17.txz ]] || ! ls .gpu/whl/torchserve-*.whl >/dev/null 2>&1; then
  ../shared/tools/gpu-carry.sh
fi
python3 -m pip download -q --no-deps --only-binary=:all: -d .gpu/whl captum==0.9.0
wheel=$(ls .gpu/whl/torchserve-*.whl)
if unzip -l "$wheel" ts/frontend/model-server.jar >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  unzip -q "$wheel" ts/frontend/model-server.jar -d "$tmp"
  mkdir "$tmp/jar" && unzip -q "$tmp/ts/frontend/model-server.jar" -d "$tmp/jar"
  rm -rf "$tmp"/jar/META-INF/native/{*windows*,*osx*,*macos*,*kqueue*,*aarch*,linux32}
  tar -C "$tmp/jar" -cf - . | xz -9 -T1 > .gpu/ts-frontend.txz
  python3 - "$wheel" <<'PY'
import sys, zipfile, os
path, jar = sys.argv[1], "ts/frontend/model-server.jar"
with zipfile.ZipFile(path) as old, zipfile.ZipFile(path + ".new", "w", zipfile.ZIP_DEFLATED) as new:
    for item in old.infolist():
        if item.filename == jar:
            continue
        data = old.read(item)
        if item.filename.endswith(".dist-info/RECORD"):
            data = b"".join(line for line in data.splitlines(True) if not line.startswith(jar.encode()))
        new.writestr(item, data)
os.replace(path + ".new", path)
PY
  rm -rf "$tmp"
fi
du -b .gpu/jre17.txz .gpu/ts-frontend.txz .gpu/whl/*
tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
carry=$(du -cb .gpu/jre17.txz .gpu/ts-frontend.txz .gpu/whl/* | tail -1 | cut -f1)
echo "tracked files ${tracked} + .gpu ${carry} = $((tracked + carry)) bytes; the device tool takes 67108864 (64 MiB)"
