# GPU tests (label gpu): the CUDA kernels against their host twins, the cuda device backend, the
# nccl collectives. Built only in CUDA builds; each exits 77 where no GPU is usable, which CTest
# reports as skipped (SKIP_RETURN_CODE). tests/gpu/run.sh is the script a GPU machine runs.
set(_gpu_dir ${CMAKE_CURRENT_LIST_DIR})
# The kernel test evaluates zero_math.h's formulas itself: same flags as kernels.c.
set(_gpu_fp_flags "-ffp-contract=off;-fno-math-errno;-fno-trapping-math")

function(zero_gpu_test name source)
  add_executable(${name} ${_gpu_dir}/${source} ${_gpu_dir}/gpu_test.c)
  target_link_libraries(${name} PRIVATE zero_internal CUDA::cudart)
  set_source_files_properties(${_gpu_dir}/${source} PROPERTIES COMPILE_OPTIONS "${_gpu_fp_flags}")
endfunction()

function(zero_gpu_case name)
  add_test(NAME ${name} COMMAND ${ARGN})
  set_tests_properties(${name} PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 300
                       ENVIRONMENT "OMP_NUM_THREADS=2;OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
endfunction()

zero_gpu_test(test_gpu_kernels test_gpu_kernels.c)
zero_gpu_case(gpu_kernels $<TARGET_FILE:test_gpu_kernels>)

zero_gpu_test(test_gpu_device test_gpu_device.c)
zero_gpu_case(gpu_device $<TARGET_FILE:test_gpu_device>)

# The token loader on the cuda backend: device copies of both outputs equal the host batches.
zero_gpu_test(test_gpu_data test_gpu_data.c)
zero_gpu_case(gpu_data $<TARGET_FILE:test_gpu_data>)

if(ZERO_HAVE_NCCL)
  zero_gpu_test(test_nccl test_nccl.c)
  # World of one (no mpirun), and two ranks (skips unless the node has two GPUs).
  zero_gpu_case(gpu_nccl_np1 $<TARGET_FILE:test_nccl>)
  zero_gpu_case(gpu_nccl_np2 ${CMAKE_SOURCE_DIR}/scripts/zero-mpirun -np 2 $<TARGET_FILE:test_nccl>)
endif()

# Training on the cuda backend (zero-mlp and zero-gpt2 with their cuBLAS paths): stages 0–3 and offloads on one
# GPU, bit-identical among themselves and within rounding of the host backend (train_gpu.sh).
foreach(c mlp_fp32 mlp_bf16 gpt2_fp32 gpt2_bf16)
  add_test(NAME gpu_train_${c} COMMAND bash ${_gpu_dir}/train_gpu.sh ${c})
  set_tests_properties(gpu_train_${c} PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 600
    ENVIRONMENT "BIN=${CMAKE_BINARY_DIR}/bin;OUT=${CMAKE_BINARY_DIR}/test-out;MPIRUN=${CMAKE_SOURCE_DIR}/scripts/zero-mpirun;OMP_NUM_THREADS=2;OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
endforeach()
