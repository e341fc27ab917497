# attention, by hand, in C
#
#   make run        the tour of every chapter on built-in toy data
#   make test       every gradient check and property test
#   make bench      speed figures (medians), see README.md
#   make sanitize   the tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   make omp        the same programs with OpenMP (optional; plain build ignores it)
#   make experiments  every experiment NOTES.md quotes (several minutes)
#   make report     every picture and table in one page, report/index.html
#
# CFLAGS may be overridden (make CFLAGS=-O2). The default -O3 -march=native
# was measured against -O2 on the matmul kernels: see README.md, "Speed".
# No -ffast-math: the gradient checks need IEEE arithmetic. -ffp-contract=off
# keeps clang from fusing a*b+c by itself, as gcc already does not under
# -std=c99, so the two compilers' builds print the same numbers (the matmul
# kernel asks for fused multiply-adds explicitly, with fma(), where it wants them).

CC      ?= cc
CFLAGS  ?= -O3 -march=native
WARN    := -std=c99 -Wall -Wextra -Wpedantic -Wshadow
FP      := -ffp-contract=off
LDLIBS  := -lm

# the chapters present in this checkout, in textbook order
CHAPTERS := $(basename $(wildcard attention.c seq2seq.c transformer.c))
SOURCES  := $(addsuffix .c,$(CHAPTERS))

all: $(CHAPTERS) tests

# each chapter compiles alone; later chapters #include attention.c
attention: attention.c
	$(CC) $(CFLAGS) $(WARN) $(FP) -o $@ $< $(LDLIBS)
seq2seq: seq2seq.c attention.c
	$(CC) $(CFLAGS) $(WARN) $(FP) -o $@ $< $(LDLIBS)
transformer: transformer.c attention.c
	$(CC) $(CFLAGS) $(WARN) $(FP) -o $@ $< $(LDLIBS)
tests: tests.c $(SOURCES)
	$(CC) $(CFLAGS) $(WARN) $(FP) -o $@ $< $(LDLIBS)

run: $(CHAPTERS)
	@for c in $(CHAPTERS); do echo "######## ./$$c"; ./$$c || exit 1; echo; done

test: tests
	./tests

bench: $(CHAPTERS)
	@for c in $(CHAPTERS); do ./$$c --bench || exit 1; done

sanitize: tests.c $(SOURCES)
	$(CC) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	    -fno-sanitize-recover=all $(WARN) $(FP) -o tests-sanitize $< $(LDLIBS)
	./tests-sanitize

omp: $(SOURCES)
	@for c in $(CHAPTERS); do \
	    $(CC) $(CFLAGS) -fopenmp $(WARN) $(FP) -o $$c-omp $$c.c $(LDLIBS) || exit 1; done

# ---- chapter 3 (transformer.c): the experiments of NOTES.md, chapter 3 ----
# positions: reverse with --pos none/learned/sin; heads: 1, 2, 4, 8 heads on
# sort; cost: self-attention time and memory vs length (timings on stdout);
# extrapolate: sinusoidal vs learned positions beyond the trained length.
tf-experiments: transformer
	./transformer --experiment positions --steps 1500
	./transformer --experiment heads --task sort --steps 1000
	./transformer --experiment cost
	./transformer --experiment extrapolate

# ---- chapter 2 (seq2seq.c): the experiments of NOTES.md, chapter 2 ----
# length: none vs bahdanau vs luong, exact accuracy and the attention weights'
# entropy by source length (3 to 6 minutes on one core); pooling: last vs mean
# vs attention pooling; cnn: the same beside a CNN with max, mean and attention
# pooling; gradient: the
# gradient reaching each source token by its distance, with and without attention;
# exposure: token error by output position, teacher-forced vs free running, and
# what greedy, beam and sampling return (about 35 s); parallel: a GRU encoder's
# and a self-attention layer's forward time against length (a few seconds);
# params: each decoder's fewest parameters for 90% held-out exact (about 5
# minutes); encoder: each decoder over uni/bi encoders of 1 and 2 layers (about 1);
# pair: two texts, a siamese CNN vs attention before and after the convolution (1 s).
s2s-experiments: seq2seq
	./seq2seq --experiment length
	./seq2seq --experiment pooling
	./seq2seq --experiment cnn
	./seq2seq --experiment gradient
	./seq2seq --experiment exposure
	./seq2seq --experiment parallel
	./seq2seq --experiment params
	./seq2seq --experiment encoder
	./seq2seq --experiment pair

# every experiment NOTES.md quotes, chapter by chapter (several minutes)
experiments: s2s-experiments tf-experiments

# every chapter's pictures and tables, with the commands that made them, in
# one self-contained page: report/index.html (runs the experiments too)
report: $(CHAPTERS)
	mkdir -p report
	./attention --report report

clean:
	rm -f attention seq2seq transformer tests tests-sanitize *-omp

.PHONY: all run test bench sanitize omp clean experiments tf-experiments s2s-experiments report
