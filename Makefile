# albef: one build for the library, the programs, the tests and the benchmarks.
#
#   make                 library (build/libalbef.a) and programs (build/bin/)
#   make test            install missing packages, build, run every test
#   make demo            install missing packages, build, run the demo
#   make cuda-check      compile and link the CUDA back end (needs nvcc, not a GPU)
#   make cuda-emu        run the CUDA kernels on CPU threads against the CPU (no GPU needed)
#   make bench           build and run the benchmarks (tables on stdout)
#   make fuzz            build the libFuzzer targets with clang and run each one
#   make install         programs and man pages under PREFIX (default /usr/local)
#
# Options: SANITIZE=1 (ASan + UBSan, build/sanitize), CUDA=0|1 (default: 1 when
# nvcc is found), CC=clang, BUILD=dir, FUZZ_SECONDS=N (default 600 per target).

SANITIZE ?=
FUZZ ?=
BUILD ?= build$(if $(SANITIZE),/sanitize)$(if $(FUZZ),/fuzz)

NVCC ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
ifneq ($(SANITIZE)$(FUZZ),)
CUDA ?= 0
else
CUDA ?= $(if $(NVCC),1,0)
endif
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(realpath $(NVCC)))

OPT ?= -O2
CFLAGS_ALL = -std=c11 -D_XOPEN_SOURCE=700 -D_DEFAULT_SOURCE $(OPT) -g -Wall -Wextra -Werror \
             -pthread -fopenmp -Ilib -MMD -MP $(CFLAGS)
LDLIBS_ALL = -fopenmp -lcjson -lutf8proc -lzip -lpng -ljpeg -lopenblas -lm -lpthread $(LDLIBS)

ifneq ($(SANITIZE),)
CFLAGS_ALL += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
endif
ifneq ($(FUZZ),)
CC = clang
CFLAGS_ALL += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -DALBEF_FUZZING
LDFLAGS += -fsanitize=address,undefined
endif

NVCCFLAGS ?= -O2 -std=c++17 -Ilib --Werror all-warnings -Xcompiler -Wall,-Werror \
             -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
             -gencode arch=compute_90,code=compute_90
ifeq ($(CUDA),1)
CFLAGS_ALL += -DALBEF_HAVE_CUDA=1
LDLIBS_ALL += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lnccl -lcudart -lstdc++
endif

LIB_SRC   := $(sort $(shell find lib -name '*.c'))
CUDA_SRC  := $(sort $(wildcard cuda/*.cu))
TOOL_SRC  := $(sort $(wildcard tools/*.c))
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
BENCH_SRC := $(sort $(wildcard bench/bench_*.c))
FUZZ_SRC  := $(sort $(wildcard fuzz/fuzz_*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CUDA_OBJ := $(CUDA_SRC:%.cu=$(BUILD)/obj/%.o)
LIBALBEF := $(BUILD)/libalbef.a
TOOLS    := $(TOOL_SRC:tools/%.c=$(BUILD)/bin/%)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCHES  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
FUZZERS  := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)
TESTUTIL := $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out tests/test_%,$(wildcard tests/*.c)))
BENCHUTIL := $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out bench/bench_%,$(wildcard bench/*.c)))

ARCHIVE_OBJ := $(LIB_OBJ) $(if $(filter 1,$(CUDA)),$(CUDA_OBJ))

PREFIX ?= /usr/local
FUZZ_SECONDS ?= 600

.PHONY: all lib tools tests benches deps test demo cuda-check cuda-emu bench fuzz fuzz-build install clean
.DEFAULT_GOAL := all
.SECONDARY:

all: lib tools
lib: $(LIBALBEF)
tools: $(TOOLS)
tests: $(TESTS) tools
benches: $(BENCHES)

# Rebuild everything when the flags change (SANITIZE, CUDA, CC, ...).
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_TEXT := $(CC) $(CFLAGS_ALL) $(LDFLAGS) $(LDLIBS_ALL) CUDA=$(CUDA) $(NVCCFLAGS)
$(FLAGS_STAMP): FORCE
	@mkdir -p $(@D)
	@echo '$(FLAGS_TEXT)' | cmp -s - $@ || echo '$(FLAGS_TEXT)' > $@
FORCE:

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/obj/%.o: %.cu $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -MF $(@:.o=.d) -c $< -o $@

$(LIBALBEF): $(ARCHIVE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/bin/%: $(BUILD)/obj/tools/%.o $(LIBALBEF)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -pthread $< $(LIBALBEF) $(LDLIBS_ALL) -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TESTUTIL) $(LIBALBEF)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -pthread $< $(TESTUTIL) $(LIBALBEF) $(LDLIBS_ALL) -lcmocka -o $@

# Benchmarks share bench/*.c other than bench_*.c (timing, the PyTorch side) and
# may reuse the tests' reference scenario (a forward + backward step).
$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(BENCHUTIL) $(BUILD)/obj/tests/scenario.o $(LIBALBEF)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -pthread $< $(BENCHUTIL) $(BUILD)/obj/tests/scenario.o $(LIBALBEF) $(LDLIBS_ALL) -o $@

$(BUILD)/fuzz/%: $(BUILD)/obj/fuzz/%.o $(LIBALBEF)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -pthread $< $(LIBALBEF) $(LDLIBS_ALL) -o $@

deps:
	@scripts/deps.sh

test: deps
	@$(MAKE) --no-print-directory tests
	@tests/run.sh $(BUILD)

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh $(BUILD)

cuda-check:
	@test -n "$(NVCC)" || { echo "cuda-check: nvcc not found (install the CUDA toolkit or set NVCC=)" >&2; exit 1; }
	@$(MAKE) --no-print-directory CUDA=1 SANITIZE= FUZZ= BUILD=build/cuda all build/cuda/tests/test_device
	@build/cuda/tests/test_device
	@echo "cuda-check: CUDA back end compiled and linked (cuBLAS, cuBLASLt, NCCL)"

# The hand-written kernels (every cuda/*.cu but the cuBLAS files ops_cuda.cu
# and matmul_lt.cu) run on CPU threads through the emulation in cuda/emu and
# checked against the CPU back end: no GPU, no nvcc, only a C++20 compiler.
# attention_emu includes attention.cu; kernels_emu links the other files,
# each compiled as C++ on its own against cuda/emu/cuda_emu.h. Slow
# (minutes); EMU_ARGS=--quick skips the large shapes.
EMU_KERNELS := elementwise layernorm reduce xent rows sample
EMU_BINS := $(BUILD)/emu/attention_emu $(BUILD)/emu/kernels_emu
cuda-emu: $(EMU_BINS)
	$(BUILD)/emu/attention_emu $(EMU_ARGS)
	$(BUILD)/emu/kernels_emu $(EMU_ARGS)

EMU_FLAGS := -std=c++20 -O2 -g -Wall -Wextra -Werror -Wno-unknown-pragmas -Wno-missing-field-initializers -pthread \
             -fopenmp -ffp-contract=off -Ilib -Icuda/emu/include -MMD -MP \
             -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
EMU_RUNTIME := $(BUILD)/emu/obj/cuda_emu.o $(BUILD)/emu/obj/emu_check.o

$(BUILD)/emu/obj/kernels/%.o: cuda/%.cu
	@mkdir -p $(@D)
	$(CXX) $(EMU_FLAGS) -x c++ -include cuda/emu/cuda_emu.h -c $< -o $@
$(BUILD)/emu/obj/%.o: cuda/emu/%.cc
	@mkdir -p $(@D)
	$(CXX) $(EMU_FLAGS) -c $< -o $@

$(BUILD)/emu/attention_emu: $(BUILD)/emu/obj/attention_emu.o $(EMU_RUNTIME) $(LIBALBEF)
	$(CXX) $(EMU_FLAGS) $(filter %.o,$^) $(LIBALBEF) $(LDLIBS_ALL) -o $@
$(BUILD)/emu/kernels_emu: $(BUILD)/emu/obj/kernels_emu.o $(EMU_KERNELS:%=$(BUILD)/emu/obj/kernels/%.o) $(EMU_RUNTIME) \
                          $(LIBALBEF)
	$(CXX) $(EMU_FLAGS) $(filter %.o,$^) $(LIBALBEF) $(LDLIBS_ALL) -o $@

bench: deps
	@$(MAKE) --no-print-directory benches
	@for b in $(BENCHES); do echo "== $$b"; $$b || exit 1; done

fuzz-build: $(FUZZERS)

fuzz:
	@scripts/deps.sh --fuzz
	@$(MAKE) --no-print-directory FUZZ=1 fuzz-build
	@scripts/fuzz.sh build/fuzz $(FUZZ_SECONDS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 man/man1/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj $(BUILD)/emu -name '*.d' 2>/dev/null)
