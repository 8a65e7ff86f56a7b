# The API of issue 13 (test_api13.c): learning-rate schedules through zero_set_lr at every stage
# and offload, an lr that differs across ranks, parameter groups (frozen, weight decay 0, per-group
# lr against a scalar AdamW), zero_grad_reduce, evaluation passes at stage 3, the versioned
# zero_config, the queries, bad groups at zero_init, environment overrides. Included from
# tests/integration/CMakeLists.txt (which defines ZERO_MPIRUN and PkgConfig::JANSSON).
if(NOT DEFINED ZERO_MPIRUN)
  set(ZERO_MPIRUN ${CMAKE_CURRENT_LIST_DIR}/../../scripts/zero-mpirun)
endif()
if(NOT TARGET PkgConfig::JANSSON)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
endif()
if(NOT TARGET MPI::MPI_C)
  find_package(MPI REQUIRED COMPONENTS C)
endif()
add_executable(test_api13 ${CMAKE_CURRENT_LIST_DIR}/test_api13.c)
target_link_libraries(test_api13 zero_static PkgConfig::JANSSON MPI::MPI_C m)
# the scalar AdamW reference is compared bit for bit: no fused multiply-adds (kernels/zero_math.h)
target_compile_options(test_api13 PRIVATE -ffp-contract=off)
foreach(np 1 2 4)
  add_test(NAME api13_np${np} COMMAND ${ZERO_MPIRUN} -np ${np} $<TARGET_FILE:test_api13>)
  set_tests_properties(api13_np${np} PROPERTIES TIMEOUT 180 LABELS "mpi"
                       PASS_REGULAR_EXPRESSION "test_api13: np ${np}, [0-9]+ checks, 0 failures"
                       FAIL_REGULAR_EXPRESSION "FAIL")
endforeach()
# zero-gpt2 --warmup / --lr-min / --eps (api13_gpt2.sh says what it checks)
if(TARGET zero-gpt2)
  add_test(NAME api13_gpt2_schedule COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/api13_gpt2.sh)
  set_tests_properties(api13_gpt2_schedule PROPERTIES
    ENVIRONMENT "BIN=${CMAKE_BINARY_DIR}/bin;OUT=${CMAKE_BINARY_DIR}/test-out;MPIRUN=${ZERO_MPIRUN}"
    TIMEOUT 120 LABELS "mpi" PASS_REGULAR_EXPRESSION "api13 gpt2: PASS")
endif()

# fp32 views at bf16/fp16 (views.sh): the same bits as the model that converts by hand.
add_test(NAME views COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/views.sh)
set_tests_properties(views PROPERTIES ENVIRONMENT "${ZERO_TEST_ENV}" TIMEOUT 180 LABELS "mpi"
                     PASS_REGULAR_EXPRESSION "views: PASS" FAIL_REGULAR_EXPRESSION "FAIL")

# Tensors that span modules (zero_tensor.slices, test_slices.c): the same training as per-layer
# tensors and as one module per tensor, the per-layer device peak at stage 3, checkpoints and
# exports of the whole tensor.
add_executable(test_slices test_slices.c)
target_link_libraries(test_slices zero_static MPI::MPI_C)
foreach(np 1 2 3)
  add_test(NAME slices_np${np}
           COMMAND ${ZERO_MPIRUN} -np ${np} $<TARGET_FILE:test_slices>
                   ${CMAKE_BINARY_DIR}/test-out/slices_np${np})
  set_tests_properties(slices_np${np} PROPERTIES TIMEOUT 120 LABELS "mpi"
                       PASS_REGULAR_EXPRESSION "test_slices: np ${np}, 0 failures")
endforeach()

# ZERO_OPTIMIZER=adam (torch.optim.Adam's L2 weight decay) through the engine: stages 0 and 3
# (optimizer offload on) give the same parameters, and not AdamW's.
add_test(NAME optimizer_adam
         COMMAND bash -c "set -e; r=${CMAKE_BINARY_DIR}/test-out/optimizer_adam; mkdir -p $r; \
for c in 'adam 0 none' 'adam 3 cpu' 'adamw 0 none'; do set -- $c; \
ZERO_OPTIMIZER=$1 ZERO_STAGE=$2 ZERO_OFFLOAD_OPTIMIZER=$3 ZERO_REPORT=$r/$1_$2.json \
${ZERO_MPIRUN} -np 2 $<TARGET_FILE:zero-mlp> --steps 8 --quiet >/dev/null; done; \
a=$($<TARGET_FILE:zero-check> get $r/adam_0.json param_digest); \
b=$($<TARGET_FILE:zero-check> get $r/adam_3.json param_digest); \
w=$($<TARGET_FILE:zero-check> get $r/adamw_0.json param_digest); \
echo \"adam stage 0 $a, stage 3 + offload $b, adamw $w\"; \
[ \"$a\" = \"$b\" ] && [ \"$a\" != \"$w\" ] && echo optimizer_adam: PASS")
set_tests_properties(optimizer_adam PROPERTIES TIMEOUT 120 LABELS "mpi"
                     PASS_REGULAR_EXPRESSION "optimizer_adam: PASS")

# Automatic buffer sizes (no ZERO_BUCKET_MB / ZERO_PREFETCH_MB / ZERO_MAX_LIVE_MB): under a 4 MiB
# cap the bucket is 64 KiB (several chunks for this MLP), chosen alike at every stage, and stages
# 0-3 (3 also with optimizer offload) train the same bits; the report says what was chosen.
add_test(NAME auto_buffers
         COMMAND bash -c "set -e; r=${CMAKE_BINARY_DIR}/test-out/auto_buffers; mkdir -p $r; \
unset ZERO_BUCKET_MB ZERO_PREFETCH_MB ZERO_MAX_LIVE_MB; \
for c in '0 none' '1 none' '2 none' '3 none' '3 cpu'; do set -- $c; \
ZERO_DEVICE=host ZERO_DEVICE_MEMORY=4M ZERO_STAGE=$1 ZERO_OFFLOAD_OPTIMIZER=$2 \
ZERO_REPORT=$r/s$1_$2.json ${ZERO_MPIRUN} -np 2 $<TARGET_FILE:zero-mlp> --steps 6 --quiet \
>/dev/null; done; chk=$<TARGET_FILE:zero-check>; d0=$($chk get $r/s0_none.json param_digest); \
for f in s1_none s2_none s3_none s3_cpu; do d=$($chk get $r/$f.json param_digest); \
[ \"$d\" = \"$d0\" ] || { echo \"$f digest $d != stage 0 $d0\"; exit 1; }; \
[ \"$($chk get $r/$f.json memory.buffers.bucket_bytes)\" = 65536 ] || exit 1; \
[ \"$($chk get $r/$f.json memory.buffers.bucket_auto)\" = true ] || exit 1; done; \
n=$($chk get $r/s3_none.json memory.buffers.num_chunks); [ $n -gt 1 ] || exit 1; \
$chk le $r/s3_none.json memory.buffer_peak_bytes memory.capacity_bytes; \
echo \"auto_buffers: stages 0-3 one digest $d0, bucket 65536, $n chunks: PASS\"")
set_tests_properties(auto_buffers PROPERTIES TIMEOUT 180 LABELS "mpi"
                     ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0"
                     PASS_REGULAR_EXPRESSION "auto_buffers: .*PASS")
