#!/usr/bin/env bash
# Builds llama.cpp's llama-server from the llama-cpp-python source distribution on the package
# index (its vendored llama.cpp), once, into a cache outside the repository. Prints the binary's
# path. The test suite uses it as a real OpenAI-compatible engine standing in for vLLM.
# Cost: about 8 minutes on 2 cores the first time; nothing after (the cache is kept).
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${LLMGATEWAY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmgateway}"
DEST="$CACHE/llama-server-$VERSION"
BIN="$DEST/bin/llama-server"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
command -v cmake >/dev/null || { echo "building llama-server needs cmake (apt-get install cmake)" >&2; exit 1; }
PY="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$work" >&2
tar -xzf "$work"/llama_cpp_python-"$VERSION".tar.gz -C "$work"
src="$work/llama_cpp_python-$VERSION/vendor/llama.cpp"
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
  -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$work/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$DEST/bin.tmp"
cp "$work/build/bin/llama-server" "$DEST/bin.tmp/"
rm -rf "$DEST/bin" && mv "$DEST/bin.tmp" "$DEST/bin"
echo "$BIN"
