#!/usr/bin/env bash
# Builds llama.cpp's reference tools for the tests (tests/llamacpp_ref.py) from
# the llama.cpp that PyPI's llama-cpp-python sdist vendors, into a cache
# outside the checkout:
#
#   tests/llamacpp/build_reference.sh [--source] [CACHE_DIR]
#
# --source only fetches and extracts the sdist (seconds, no compiler): what
# the tests that run llama.cpp's converter scripts need. `make test` does that.
#
# CACHE_DIR defaults to $TINYLM_LLAMACPP_CACHE, else ~/.cache/tinylm/llama.cpp.
# Layout:  CACHE_DIR/llama_cpp_python-VERSION.tar.gz   the sdist
#          CACHE_DIR/llama_cpp_python-VERSION/         the sdist, extracted
#          CACHE_DIR/tinylm-source.stamp               written once extracted: version, source path
#          CACHE_DIR/build/                            the cmake tree
#          CACHE_DIR/build/bin/                        tools and shared libraries
#          CACHE_DIR/build/tinylm-reference.stamp      written last: what was built
#          CACHE_DIR/pydeps-pyX.Y/                     pip --target: what the converter and
#                                                      the sdist's ctypes bindings import
#                                                      beyond the test venv
# A second run with the same version and options does nothing.
# Environment: PYTHON (the tests' interpreter: default the checkout's .venv,
# else python3), TINYLM_LLAMACPP_JOBS (default 2).
set -euo pipefail

VERSION=0.3.36  # llama-cpp-python; the one place the reference version is pinned
SOURCE_ONLY=0
if [ "${1:-}" = "--source" ]; then SOURCE_ONLY=1; shift; fi
CACHE=${1:-${TINYLM_LLAMACPP_CACHE:-$HOME/.cache/tinylm/llama.cpp}}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
# convert_hf_to_gguf.py imports sentencepiece before it looks for a
# tokenizer.model (so even tokenizer.json-only Llama folders need it); the
# llama_cpp package imports diskcache. Neither is the project's dependency.
PYDEPS=(sentencepiece==0.2.3 diskcache==5.6.3)
JOBS=${TINYLM_LLAMACPP_JOBS:-2}

SRC=$CACHE/llama_cpp_python-$VERSION
LLAMA=$SRC/vendor/llama.cpp
BUILD=$CACHE/build
STAMP=$BUILD/tinylm-reference.stamp
TARGETS=(llama ggml llama-perplexity llama-quantize llama-tokenize llama-bench)

# Portable: no -march=native, so a cache built on one CI machine runs on the
# others. AVX2/FMA/F16C/BMI2 (x86-64-v3) run on AVX2-only EPYCs and on
# AVX-512 Xeons alike. The quantizers in libggml-base (the bit-exact oracle)
# are scalar C compiled without these flags whatever is chosen here.
OPTIONS=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=ON
  -DGGML_NATIVE=OFF
  -DGGML_CCACHE=OFF
  -DLLAMA_OPENSSL=OFF
  -DLLAMA_BUILD_COMMON=ON
  -DLLAMA_BUILD_TOOLS=ON
  -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_SERVER=OFF
  -DLLAMA_BUILD_APP=OFF
)
if [ "$(uname -m)" = x86_64 ]; then
  OPTIONS+=(-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
            -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF)
fi
mkdir -p "$CACHE"
if [ ! -f "$LLAMA/CMakeLists.txt" ]; then
  if [ ! -f "$SRC.tar.gz" ]; then
    # The sdist, never a wheel. Not --no-binary :all:, which would also build the
    # sdist's build backend's requirements (cmake, ninja) from source for the
    # metadata step pip download runs.
    "$PYTHON" -m pip download --no-binary llama-cpp-python --no-deps "llama-cpp-python==$VERSION" -d "$CACHE"
  fi
  tar -xzf "$SRC.tar.gz" -C "$CACHE"
fi
SOURCE_KEY="version=$VERSION
source=$LLAMA"
if [ ! -f "$CACHE/tinylm-source.stamp" ] || [ "$(cat "$CACHE/tinylm-source.stamp")" != "$SOURCE_KEY" ]; then
  printf '%s\n' "$SOURCE_KEY" > "$CACHE/tinylm-source.stamp"
fi
if [ "$SOURCE_ONLY" = 1 ]; then
  echo "llama.cpp $VERSION source is in $LLAMA"
  exit 0
fi
PYDEPS_DIR=$CACHE/pydeps-py$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PYDEPS_STAMP=$PYDEPS_DIR/tinylm-pydeps.stamp
if [ ! -f "$PYDEPS_STAMP" ] || [ "$(cat "$PYDEPS_STAMP")" != "${PYDEPS[*]}" ]; then
  rm -rf "$PYDEPS_DIR"
  "$PYTHON" -m pip install -q --no-deps --target "$PYDEPS_DIR" "${PYDEPS[@]}"
  printf '%s\n' "${PYDEPS[*]}" > "$PYDEPS_STAMP"
fi

KEY="version=$VERSION
source=$LLAMA
options=${OPTIONS[*]}
targets=${TARGETS[*]}"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ]; then
  echo "llama.cpp reference $VERSION is up to date in $BUILD/bin"
  exit 0
fi


GENERATOR="Unix Makefiles"
if command -v ninja >/dev/null 2>&1; then GENERATOR=Ninja; fi
# A tree configured for another source (another version) or generator cannot be reused.
if [ -f "$BUILD/CMakeCache.txt" ] && ! { grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$LLAMA" "$BUILD/CMakeCache.txt" &&
                                       grep -qxF "CMAKE_GENERATOR:INTERNAL=$GENERATOR" "$BUILD/CMakeCache.txt"; }; then
  rm -rf "$BUILD"
fi
rm -f "$STAMP"

start=$SECONDS
cmake -S "$LLAMA" -B "$BUILD" -G "$GENERATOR" "${OPTIONS[@]}"
cmake --build "$BUILD" --config Release -j "$JOBS" --target "${TARGETS[@]}"
printf '%s\n' "$KEY" > "$STAMP"
echo "llama.cpp reference $VERSION built in $((SECONDS - start)) s into $BUILD/bin"
